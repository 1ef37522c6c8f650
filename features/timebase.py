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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir

__all__ = [
    "AsOf",
    "SECONDS_PER_DAY",
    "Cutoff",
    "as_of_literal",
    "as_of_text",
    "column_name",
    "cutoff",
    "epoch_seconds",
    "history",
    "horizon_months",
    "join_on",
    "normalize_as_of",
    "order_key",
]

AsOf = dt.datetime | dt.date | str
SECONDS_PER_DAY = 86_400
_EPOCH = dt.datetime(1970, 1, 1)


def as_of_text(as_of: AsOf) -> str:
    """A scoring date as files and answers write it: the day alone at midnight (``2011-09-10``), else
    with its time of day (``2011-12-09 12:50:00``), so one list has one ``as_of`` whether the API or
    a command wrote it."""
    moment = normalize_as_of(as_of)
    return str(moment.date()) if moment.time() == dt.time() else str(moment)


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


def horizon_months(as_of: dt.datetime, horizon_days: int) -> tuple[int, ...]:
    """Calendar months (1-12) that the window ``(as_of, as_of + H]`` touches."""
    if horizon_days < 1:
        return ()
    first, last = as_of + dt.timedelta(days=1), as_of + dt.timedelta(days=horizon_days)
    # Every month from the first day's to the last day's, at most all twelve. Counted, not
    # stepped day by day: the API's requests ask for it (a pandas Timestamp took 0.3 ms).
    n = min(12, (last.year - first.year) * 12 + last.month - first.month + 1)
    return tuple(sorted((first.month - 1 + i) % 12 + 1 for i in range(n)))


def _variable(dtype: str) -> Callable[[str], ir.Scalar]:
    """DuckDB's ``getvariable(name)`` typed as ``dtype`` for Ibis."""

    @ibis.udf.scalar.builtin(name="getvariable", signature=(("string",), dtype))
    def getvariable(variable):  # type: ignore[no-untyped-def]  # the argument's name: Ibis ops own ``name``
        """The value of a DuckDB variable (``SET VARIABLE``) of this connection."""

    return getvariable


# The DuckDB variables of a Cutoff: crmscore_as_of_at, _epoch, _months_<H>.
_PREFIX = "crmscore_as_of_"
_VARIABLES = {"timestamp": _variable("timestamp"), "float64": _variable("float64"), "array": _variable("array<int64>")}


@dataclass(frozen=True)
class Cutoff:
    """``as_of`` as the feature SQL reads it: the cut-off and the values derived from it.

    By default they are literals, so the SQL holds the date. With ``variables`` (DuckDB only) the
    SQL reads them from variables of the connection instead (``getvariable``), which
    :meth:`bind` sets: one compiled query then serves every cut-off (the API's posted histories,
    each call at its own ``as_of``). The two give the same values (tested).
    """

    ts: dt.datetime
    variables: bool = False

    def at(self) -> ir.TimestampScalar:
        """The cut-off itself."""
        return _VARIABLES["timestamp"](f"{_PREFIX}at") if self.variables else as_of_literal(self.ts)

    def shifted(self, days: int) -> ir.TimestampScalar:
        """The cut-off plus ``days`` (negative: before it)."""
        if self.variables:
            return self.at() + ibis.interval(days=days)
        return ibis.literal(self.ts + dt.timedelta(days=days), type="timestamp")

    def epoch(self) -> ir.FloatingScalar:
        """Seconds from 1970-01-01 to the cut-off (fractional)."""
        return _VARIABLES["float64"](f"{_PREFIX}epoch") if self.variables else ibis.literal(epoch_seconds(self.ts))

    def day(self) -> ir.IntegerScalar:
        """The calendar day number of the cut-off (days since 1970-01-01), as ``history``'s ``day``."""
        if self.variables:
            return (self.epoch() // SECONDS_PER_DAY).cast("int64")
        return ibis.literal(int(epoch_seconds(self.ts) // SECONDS_PER_DAY), type="int64")

    def in_horizon_months(self, month: ir.IntegerValue, horizon_days: int) -> ir.BooleanValue:
        """Whether ``month`` (1-12) is one that ``(as_of, as_of + horizon_days]`` touches."""
        if self.variables:
            return _VARIABLES["array"](f"{_PREFIX}months_{horizon_days}").contains(month.cast("int64"))
        return month.isin(horizon_months(self.ts, horizon_days))

    def bind(self, con: Any, horizon_days: Iterable[int] = ()) -> None:
        """Set this cut-off's variables on the DuckDB connection ``con`` (an Ibis backend), with
        the horizon months of each of ``horizon_days``."""
        months = {h: list(horizon_months(self.ts, h)) for h in horizon_days}
        con.raw_sql(
            "; ".join(
                [
                    f"SET VARIABLE {_PREFIX}at = TIMESTAMP '{self.ts.isoformat(sep=' ')}'",
                    f"SET VARIABLE {_PREFIX}epoch = {epoch_seconds(self.ts)!r}::DOUBLE",
                    *(f"SET VARIABLE {_PREFIX}months_{h} = {m!r}::BIGINT[]" for h, m in months.items()),
                ]
            )
        )


def cutoff(as_of: AsOf | Cutoff) -> Cutoff:
    """``as_of`` as a :class:`Cutoff` (literals), or the one given."""
    return as_of if isinstance(as_of, Cutoff) else Cutoff(normalize_as_of(as_of))


def history(table: ir.Table, *, as_of: AsOf | Cutoff, time_column: str = "timestamp") -> ir.Table:
    """Rows at or before ``as_of``, with ``age_days`` (fractional days before ``as_of``) and ``day``.

    ``day`` is the calendar day number (days since 1970-01-01) of the row; ``Cutoff.day`` is
    the calendar day number of ``as_of``, so ``Cutoff.day - day`` counts whole calendar days.
    """
    cut = cutoff(as_of)
    t = table.filter(table[time_column] <= cut.at())
    seconds = t[time_column].epoch_seconds()
    return t.mutate(
        age_days=(cut.epoch() - seconds) / SECONDS_PER_DAY,
        day=(seconds // SECONDS_PER_DAY).cast("int64"),
    )


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
