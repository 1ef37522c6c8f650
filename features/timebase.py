"""The one meaning of ``as_of``, and the point-in-time views of a table that every feature family starts from.

``as_of`` is a point in time (a naive timestamp, wall-clock as in the data contract).
A ``date`` (or a date-only ISO string such as ``"2011-09-10"``) means **midnight at the start
of that day**: ``2011-09-10`` is ``2011-09-10 00:00:00``. A timezone-aware datetime is
converted to UTC and made naive.

Features see rows with ``timestamp <= as_of``; labels see rows in ``(as_of, as_of + H]``.
So an order stamped exactly at ``as_of`` is a feature, and one stamped exactly at
``as_of + H`` is in the label window.

Day arithmetic is done on epoch seconds (``epoch_seconds`` is portable across Ibis
backends; both DuckDB and the Spark session used here read naive timestamps as UTC).
"""

from __future__ import annotations

import datetime as dt
import re

import ibis
import ibis.expr.types as ir

__all__ = [
    "AsOf",
    "SECONDS_PER_DAY",
    "as_of_literal",
    "as_of_day",
    "column_name",
    "epoch_seconds",
    "history",
    "join_on",
    "normalize_as_of",
    "order_key",
]

AsOf = dt.datetime | dt.date | str
SECONDS_PER_DAY = 86_400
_EPOCH = dt.datetime(1970, 1, 1)


def normalize_as_of(as_of: AsOf) -> dt.datetime:
    """Return ``as_of`` as a naive datetime; a date (or date-only string) is midnight at the start of that day.

    Raises
    ------
    TypeError
        ``as_of`` is None or of another type.
    ValueError
        A string that is not an ISO date or datetime.
    """
    if isinstance(as_of, str):
        try:
            as_of = dt.datetime.fromisoformat(as_of.strip())
        except ValueError as exc:
            raise ValueError(f"as_of: {as_of!r} is not an ISO date or datetime (e.g. '2011-09-10')") from exc
    if hasattr(as_of, "to_pydatetime"):  # pandas.Timestamp
        as_of = as_of.to_pydatetime()
    if isinstance(as_of, dt.datetime):
        if as_of.tzinfo is not None:
            as_of = as_of.astimezone(dt.UTC).replace(tzinfo=None)
        return as_of
    if isinstance(as_of, dt.date):
        return dt.datetime.combine(as_of, dt.time())
    raise TypeError(f"as_of must be a date, datetime or ISO string, got {type(as_of).__name__}")


def as_of_literal(as_of: dt.datetime) -> ir.TimestampScalar:
    return ibis.literal(as_of, type="timestamp")


def epoch_seconds(as_of: dt.datetime) -> float:
    return (as_of - _EPOCH).total_seconds()


def history(table: ir.Table, *, as_of: dt.datetime, time_column: str = "timestamp") -> ir.Table:
    """Rows at or before ``as_of``, with ``age_days`` (fractional days before ``as_of``) and ``day``.

    ``day`` is the calendar day number (days since 1970-01-01) of the row; ``as_of_day`` is
    the calendar day number of ``as_of``, so ``as_of_day - day`` counts whole calendar days.
    """
    t = table.filter(table[time_column] <= as_of_literal(as_of))
    seconds = t[time_column].epoch_seconds()
    return t.mutate(
        age_days=(ibis.literal(epoch_seconds(as_of)) - seconds) / SECONDS_PER_DAY,
        day=(seconds // SECONDS_PER_DAY).cast("int64"),
    )


def as_of_day(as_of: dt.datetime) -> int:
    return int(epoch_seconds(as_of) // SECONDS_PER_DAY)


def order_key(t: ir.Table) -> ir.Value:
    """What counts as one order: ``order_id`` when the table has one, else the purchase's calendar day."""
    return t.order_id if "order_id" in t.columns else t.day.cast("string")


def join_on(base: ir.Table, others: list[ir.Table | None], key: str) -> ir.Table:
    """Left-join each table in ``others`` onto ``base`` by ``key``, keeping one key column."""
    out = base
    for other in others:
        if other is None:
            continue
        clash = (set(other.columns) & set(out.columns)) - {key}
        if clash:
            raise ValueError(f"feature columns defined twice: {sorted(clash)}")
        out = out.left_join(other, key)
        out = out.drop(f"{key}_right") if f"{key}_right" in out.columns else out
    return out


def column_name(value: object) -> str:
    """A value (event type, channel) as a safe lower-case column-name fragment."""
    name = re.sub(r"[^0-9a-zA-Z]+", "_", str(value)).strip("_").lower()
    return name or "blank"
