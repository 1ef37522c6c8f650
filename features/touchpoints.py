"""Touchpoints: counts and recency of a customer's interactions (emails, visits, calls, tickets) per type and channel.

The columns are one per value of ``event_type`` (and ``channel``) found in the events
table: the vocabulary is read from the whole table so that every cut-off of a training set
has the same columns. A trained model keeps its vocabulary (:func:`features.pipeline.vocabularies`), and records
posted to the API are given it (``CanonicalTables.vocabulary``): a customer who posts emails
only still gets the model's visit columns, at 0, as in training. Values only ever count events
at or before ``as_of``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NamedTuple

import ibis
import ibis.expr.types as ir

from features.timebase import AsOf, Cutoff, column_name, history

if TYPE_CHECKING:
    from features.sources import CanonicalTables

__all__ = [
    "EVENT_WINDOWS",
    "EVENT_TABLES",
    "TouchpointColumn",
    "event_vocabulary",
    "touchpoint_column",
    "touchpoint_features",
    "vocabulary_of",
]

EVENT_TABLES = ("events", "lead_events")

EVENT_WINDOWS = (30, 90, 365)
# Cap on the number of types / channels turned into columns (the most frequent ones win).
MAX_VALUES = 20


class TouchpointColumn(NamedTuple):
    """What a column of :func:`touchpoint_features` counts, read back from its name."""

    prefix: str  # the events table: "events" or "lead_events"
    kind: str  # "type" (one event type), "channel" (one channel) or "" (every event)
    value: str  # the type's or channel's name fragment (features.timebase.column_name), "" for every event
    measure: str  # "total", "all", "days_since_last" or a window such as "30d"


# The names touchpoint_features writes, in the order it writes them: a channel's columns before a
# type's, as "ch_phone_90d" would otherwise read as the 90-day count of a type "ch_phone".
_COLUMN = re.compile(
    rf"^(?P<prefix>{'|'.join(EVENT_TABLES)})_(?:(?P<every>total|days_since_last)"
    r"|ch_(?P<channel>[0-9a-z_]+?)_(?P<ch_measure>90d|all)"
    r"|(?P<type>[0-9a-z_]+?)_(?P<measure>\d+d|all|days_since_last))$"
)


def touchpoint_column(name: str) -> TouchpointColumn | None:
    """The :class:`TouchpointColumn` of a column name of :func:`touchpoint_features`, None for
    another name: ``"events_support_ticket_30d"`` -> ``("events", "type", "support_ticket", "30d")``."""
    match = _COLUMN.match(name)
    if match is None:
        return None
    prefix, every, channel = match["prefix"], match["every"], match["channel"]
    if every:
        return TouchpointColumn(prefix, "", "", every)
    if channel:
        return TouchpointColumn(prefix, "channel", channel, match["ch_measure"])
    return TouchpointColumn(prefix, "type", match["type"], match["measure"])


def event_vocabulary(events: ir.Table, column: str, *, limit: int = MAX_VALUES) -> tuple[str, ...]:
    """The ``limit`` most frequent non-null values of ``column``, sorted."""
    present = events.filter(events[column].notnull())
    counts = present.group_by(column).aggregate(n=present.count())
    top = counts.order_by([ibis.desc("n"), column]).limit(limit).to_pyarrow()
    return tuple(sorted(str(v) for v in top[column].to_pylist()))


def vocabulary_of(tables: CanonicalTables, table: str) -> dict[str, tuple[str, ...] | None]:
    """``event_types`` and ``channels`` for :func:`touchpoint_features` of ``table``: the fixed
    vocabulary of ``tables`` (None where there is none: read from the rows)."""
    fixed = tables.vocabulary
    return {"event_types": fixed.get(f"{table}.event_type"), "channels": fixed.get(f"{table}.channel")}


def touchpoint_features(
    events: ir.Table | None,
    *,
    as_of: AsOf | Cutoff,
    windows: tuple[int, ...] = EVENT_WINDOWS,
    event_types: tuple[str, ...] | None = None,
    channels: tuple[str, ...] | None = None,
    prefix: str = "events",
    key: str = "customer_id",
) -> ir.Table | None:
    """Touchpoint features per ``key``, or None when there is no events table.

    Columns: ``{prefix}_total``, ``{prefix}_days_since_last``; per event type ``T``:
    ``{prefix}_{T}_{w}d`` for each window, ``{prefix}_{T}_all`` and ``{prefix}_{T}_days_since_last``;
    per channel ``C``: ``{prefix}_ch_{C}_90d`` and ``{prefix}_ch_{C}_all``.
    """
    if events is None:
        return None
    if event_types is None:
        event_types = event_vocabulary(events, "event_type")
    if channels is None:
        channels = event_vocabulary(events, "channel") if "channel" in events.columns else ()
    t = history(events, as_of=as_of)
    aggs: dict[str, ir.Value] = {
        f"{prefix}_total": t.count(),
        f"{prefix}_days_since_last": t.age_days.min(),
    }
    for fragment, values in _by_column(event_types, avoid="ch_").items():
        name = f"{prefix}_{fragment}"
        is_type = t.event_type.isin(values)
        for w in windows:
            aggs[f"{name}_{w}d"] = t.count(where=is_type & (t.age_days < w))
        aggs[f"{name}_all"] = t.count(where=is_type)
        aggs[f"{name}_days_since_last"] = t.age_days.min(where=is_type)
    for fragment, values in _by_column(channels).items():
        name = f"{prefix}_ch_{fragment}"
        is_channel = t.channel.isin(values)
        aggs[f"{name}_90d"] = t.count(where=is_channel & (t.age_days < 90))
        aggs[f"{name}_all"] = t.count(where=is_channel)
    return t.group_by(key).aggregate(**aggs)


def _by_column(values: tuple[str, ...], *, avoid: str | None = None) -> dict[str, list[str]]:
    """``values`` by the column-name fragment they share (:func:`features.timebase.column_name`): 'Email'
    and 'email', 'e-mail' and 'e_mail' are one column counting both, where each wrote the same column and
    the last one's counts silently replaced the others'. A type fragment beginning with ``avoid`` (``ch_``,
    the channels' columns: a type 'ch_phone' overwrote the channel 'phone') is prefixed ``type_``."""
    out: dict[str, list[str]] = {}
    for value in values:
        fragment = column_name(value)
        if avoid is not None and fragment.startswith(avoid):
            fragment = f"type_{fragment}"
        out.setdefault(fragment, []).append(value)
    return out
