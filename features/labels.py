"""Labels: what happened in the window after the cut-off.

Labels look at ``(as_of, as_of + H]`` only: an order stamped exactly at ``as_of`` belongs to
the features, one exactly at ``as_of + H`` to the label. A purchase is a line with ``amount > 0``.

- churn: ``label = 1`` when the customer makes no purchase in the window, or has an event with
  ``event_type == 'cancellation'`` in it. One row per customer with a transaction at or before ``as_of``.
- next purchase: ``label = 1`` when the customer makes a purchase in the window; ``spend`` is the
  net amount of all transactions in the window (purchases minus refunds, so it can be negative;
  0 without transactions). Same rows as churn.
- days to the next purchase (the weekly hazard of the churn model): fractional days from ``as_of``
  to the customer's first purchase after it, null when the data holds none. Same rows as churn.
- lead: ``label = 1`` when the lead converted within H days of ``created_at``
  (``created_at <= converted_at <= created_at + H``) when ``converted_at`` is known, else the 0/1
  ``converted`` column. One row per lead created at or before ``as_of``.

A label window must have been observed: :func:`check_window_observed` refuses a cut-off whose
window ends after the data does, where days nobody has seen yet would count as "no purchase".
"""

from __future__ import annotations

import datetime as dt

import ibis
import ibis.expr.types as ir

from features.config import CANCELLATION
from features.sources import CanonicalTables
from features.timebase import SECONDS_PER_DAY, AsOf, Cutoff, cutoff, join_on, normalize_as_of

__all__ = [
    "stale_warning",
    "CANCELLATION",
    "MAIN_TABLE",
    "check_window_observed",
    "final_flag_warning",
    "churn_labels",
    "data_span",
    "data_until",
    "days_to_next_purchase",
    "lead_labels",
    "next_purchase_labels",
    "observed_until",
]


# The canonical table each task's population comes from (and its "now": the table's last row).
MAIN_TABLE = {"churn": "transactions", "next_purchase": "transactions", "lead": "leads"}


def _window(table: ir.Table, cut: Cutoff, horizon_days: int, time_column: str = "timestamp") -> ir.Table:
    return table.filter((table[time_column] > cut.at()) & (table[time_column] <= cut.shifted(horizon_days)))


def _customers(tables: CanonicalTables, cut: Cutoff) -> ir.Table:
    t = tables.transactions
    return t.filter(t.timestamp <= cut.at()).select("customer_id").distinct()


def _check(horizon_days: int) -> None:
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")


def churn_labels(tables: CanonicalTables, *, as_of: AsOf | Cutoff, horizon_days: int) -> ir.Table:
    """``customer_id``, ``label`` (1 = churned in ``(as_of, as_of + H]``)."""
    _check(horizon_days)
    cut = cutoff(as_of)
    future = _window(tables.transactions, cut, horizon_days)
    bought = future.filter(future.amount > 0).select("customer_id").distinct().mutate(_bought=ibis.literal(1))
    out = join_on(_customers(tables, cut), [bought], "customer_id")
    churned = out._bought.isnull()
    if tables.events is not None:
        ev = _window(tables.events, cut, horizon_days)
        cancelled = (
            ev.filter(ev.event_type == CANCELLATION).select("customer_id").distinct().mutate(_cancel=ibis.literal(1))
        )
        out = join_on(out, [cancelled], "customer_id")
        churned = out._bought.isnull() | out._cancel.notnull()
    return out.select("customer_id", label=churned.cast("int64"))


def next_purchase_labels(tables: CanonicalTables, *, as_of: AsOf | Cutoff, horizon_days: int) -> ir.Table:
    """``customer_id``, ``label`` (1 = bought in ``(as_of, as_of + H]``), ``spend`` (net amount in the window)."""
    _check(horizon_days)
    cut = cutoff(as_of)
    future = _window(tables.transactions, cut, horizon_days)
    agg = future.group_by("customer_id").aggregate(_n=(future.amount > 0).cast("int64").sum(), _s=future.amount.sum())
    out = join_on(_customers(tables, cut), [agg], "customer_id")
    return out.select(
        "customer_id",
        label=(out._n.fill_null(0) > 0).cast("int64"),
        spend=out._s.fill_null(0.0),
    )


def days_to_next_purchase(tables: CanonicalTables, *, as_of: AsOf | Cutoff) -> ir.Table:
    """``customer_id``, ``days_to_next``: fractional days from ``as_of`` to the first purchase after it.

    Null when the data holds no purchase after ``as_of``. A purchase at exactly ``as_of + H`` is
    ``H`` days away, inside the label window ``(as_of, as_of + H]`` as in :func:`churn_labels`.
    Whoever reads it must censor at the data's end (or earlier): a null says nothing about the
    days after the last row.
    """
    cut = cutoff(as_of)
    t = tables.transactions
    after = t.filter((t.timestamp > cut.at()) & (t.amount > 0))
    first = after.group_by("customer_id").aggregate(_first=after.timestamp.min())
    out = join_on(_customers(tables, cut), [first], "customer_id")
    seconds = out._first.epoch_seconds() - cut.epoch()
    return out.select("customer_id", days_to_next=(seconds / SECONDS_PER_DAY).cast("float64"))


def lead_labels(tables: CanonicalTables, *, as_of: AsOf | Cutoff, horizon_days: int) -> ir.Table:
    """``lead_id``, ``label`` (1 = converted within H days of creation)."""
    _check(horizon_days)
    if tables.leads is None:
        raise ValueError("table 'leads' is not configured: lead labels need tables.leads in the config")
    leads = tables.leads.filter(tables.leads.created_at <= cutoff(as_of).at())
    if "converted_at" in leads.columns:
        within = (
            leads.converted_at.notnull()
            & (leads.converted_at >= leads.created_at)
            & (leads.converted_at <= leads.created_at + ibis.interval(days=horizon_days))
        )
        label = within
        if "converted" in leads.columns:
            # A conversion without a date still counts; one with a date must fall in the window.
            label = ibis.ifelse(leads.converted_at.isnull(), leads.converted.fill_null(0) > 0, within)
    elif "converted" in leads.columns:
        label = leads.converted.fill_null(0) > 0
    else:
        raise ValueError("table 'leads': lead labels need a 'converted' or 'converted_at' column")
    return leads.select("lead_id", label=label.cast("int64"))


def _bound(columns: list[ir.Column], which: str) -> dt.datetime | None:
    """The earliest (``which="min"``) or latest (``"max"``) time in ``columns``; None without rows."""
    values = (getattr(column, which)().to_pyarrow().as_py() for column in columns)
    found = [v.replace(tzinfo=None) for v in values if v is not None]
    return (min if which == "min" else max)(found, default=None)


def _time_columns(tables: CanonicalTables, task: str) -> tuple[str, list[ir.Column]]:
    """The main table of ``task`` and its time columns (empty: no such table).

    The side tables (events, lead events) are left out: touchpoints are sparse, so their last row is
    not the export's end, and an events export that runs on must not hide orders (or leads) that
    stopped arriving, nor an earlier one move where the history starts.
    """
    if task == "lead":
        if tables.leads is None:
            return "leads", []
        columns = [tables.leads.created_at]
        if "converted_at" in tables.leads.columns:
            columns.append(tables.leads.converted_at)
        return "leads", columns
    if tables.transactions is None:
        return "transactions", []
    return "transactions", [tables.transactions.timestamp]


def data_until(tables: CanonicalTables, task: str) -> tuple[str, dt.datetime | None]:
    """The main table of ``task`` and its latest time (None: no rows).

    churn and next purchase: the transactions; lead: ``created_at`` and ``converted_at`` (when
    mapped). Until 2026-12-07 the events (lead events) counted too, so a stale orders export beside
    live touchpoints was not warned of, and a snapshot's ``data_until`` was the events'.
    """
    table, columns = _time_columns(tables, task)
    return table, _bound(columns, "max")


def data_span(tables: CanonicalTables, task: str) -> tuple[str, dt.datetime | None, dt.datetime | None]:
    """The main table of ``task`` and its earliest and latest time.

    The columns are those of :func:`data_until`; ``(table, None, None)`` when there are no rows.
    """
    table, columns = _time_columns(tables, task)
    return table, _bound(columns, "min"), _bound(columns, "max")


def observed_until(tables: CanonicalTables, task: str) -> tuple[str, dt.datetime | None]:
    """Which table bounds ``task``'s labels, and its latest time (None: the labels do not depend on it).

    churn and next purchase: the last transaction. A label is a purchase in the window, so the orders'
    export bounds it; the events table neither extends it (an events export that ran 60 days past the
    orders made a window 20 days past the last order count those days as no purchase, and the refusal
    named the events' end) nor cuts it short (touchpoints are sparse: their last row is not the export's
    end). Lead: the latest ``created_at`` or ``converted_at`` when ``converted_at`` is mapped; with only
    the 0/1 ``converted`` column the outcome is final as exported, whatever the date, so ``None``.
    """
    if task == "lead" and (tables.leads is None or "converted_at" not in tables.leads.columns):
        return "leads", None
    return data_until(tables, task)


def check_window_observed(
    tables: CanonicalTables,
    task: str,
    *,
    as_of: AsOf,
    horizon_days: int,
    observed: tuple[str, dt.datetime | None] | None = None,
) -> None:
    """Raise when the label window ``(as_of, as_of + H]`` ends after the data's last row.

    ``observed`` is :func:`observed_until` of ``tables`` when the caller checks many cut-offs.

    Raises
    ------
    ValueError
        The window reaches past the latest time of the table that bounds the labels (named, with
        the latest cut-off that would be complete).
    """
    _check(horizon_days)
    ts = normalize_as_of(as_of)
    table, until = observed_until(tables, task) if observed is None else observed
    if until is None and task == "lead":  # final flags: no window to observe, but no lead after the data's end
        _, last = data_until(tables, task)
        if last is not None and ts > last:
            raise ValueError(
                f"task 'lead': cut-off {ts:%Y-%m-%d %H:%M} is after the last row of table 'leads' "
                f"({last:%Y-%m-%d %H:%M}): the days between hold no leads, so the population at it is cut short. "
                f"Use a cut-off on or before {last:%Y-%m-%d}"
            )
    end = ts + dt.timedelta(days=horizon_days)
    if until is not None and end > until:
        latest = (until - dt.timedelta(days=horizon_days)).date()
        outcome = "no conversion" if task == "lead" else "no purchase"
        start = data_span(tables, task)[1]
        fix = (
            f"Use a cut-off on or before {latest}"
            if start is None or latest > start.date()
            # A horizon longer than the data: no cut-off has both history and a closed window.
            else f"No cut-off can: the data spans {start:%Y-%m-%d} to {until:%Y-%m-%d}, less than the "
            f"horizon of {horizon_days} days after any cut-off with history; shorten models.{task}.horizon_days"
        )
        raise ValueError(
            f"task '{task}': the label window of cut-off {ts:%Y-%m-%d} ends at {end:%Y-%m-%d %H:%M}, after the last "
            f"row of table '{table}' ({until:%Y-%m-%d %H:%M}); its unobserved days would count as {outcome}. {fix}"
        )


def final_flag_warning(tables: CanonicalTables, task: str, horizon_days: int) -> str | None:
    """A sentence when ``task``'s labels cannot honour its horizon: leads without ``converted_at``, whose
    label is the 0/1 ``converted`` as exported (a conversion months after the cut-off counts), else None."""
    if task != "lead" or tables.leads is None or "converted_at" in tables.leads.columns:
        return None
    return (
        f"lead labels: table 'leads' maps no converted_at, so a lead's label is its converted flag as exported, "
        f"whatever horizon_days ({horizon_days}): a conversion after the cut-off's {horizon_days} days counts too, "
        "and another horizon trains the same labels. Map converted_at for labels within the horizon"
    )


def stale_warning(
    tables: CanonicalTables, task: str, as_of: AsOf, *, found: tuple[str, dt.datetime | None] | None = None
) -> str | None:
    """A sentence when ``as_of`` is more than a day after the last row ``task`` reads, else None.

    A nightly job on an export that stopped arriving still runs: its customers look a day more
    lapsed every night, and its open leads run out. Scores are still written; this says why they
    may be wrong. ``found``: :func:`data_until`'s answer, when the caller already has it (it is a query).
    """
    table, until = data_until(tables, task) if found is None else found
    at = normalize_as_of(as_of)
    if until is None or at - until <= dt.timedelta(days=1):
        return None
    return (
        f"the scoring date {at:%Y-%m-%d %H:%M} is {(at - until).days} days after the last row of table '{table}' "
        f"({until:%Y-%m-%d %H:%M}): those days count as days without a purchase or a new lead (a stale export?)"
    )
