"""Seasonality: what the customer did in the same calendar window a year earlier, and their week / year mix.

The window "one year earlier" is ``(as_of - 365d, as_of - 365d + H]``, clipped at ``as_of``
so it never looks past the cut-off. Mixes are shares of the customer's purchase days.
"""

from __future__ import annotations

import calendar
import datetime as dt

import ibis
import ibis.expr.types as ir

from features.timebase import AsOf, Cutoff, cutoff, history, horizon_months, order_key

__all__ = ["horizon_months", "horizon_span", "seasonality_features"]


def horizon_span(as_of: dt.datetime, horizon_days: int) -> str | None:
    """The months of :func:`horizon_months` by name, in calendar order from ``as_of``
    ("December-March"); None when the window touches every month."""
    if len(horizon_months(as_of, horizon_days)) == 12:
        return None
    first, last = ((as_of + dt.timedelta(days=d)).month for d in (1, horizon_days))
    return calendar.month_name[first] if first == last else f"{calendar.month_name[first]}-{calendar.month_name[last]}"


def seasonality_features(transactions: ir.Table, *, as_of: AsOf | Cutoff, horizon_days: int = 90) -> ir.Table:
    """Seasonality features of every customer with a purchase at or before ``as_of``.

    Columns (key ``customer_id``):

    - ``ly_orders``, ``ly_spend``: orders and net spend in the same window one year earlier;
    - ``ly_orders_before``: orders in the ``H`` days before that window (the year-ago "lookback");
    - ``horizon_month_share``: share of purchase days in the calendar months the next ``H`` days cover;
    - ``weekend_share``: share of purchase days on Saturday or Sunday;
    - ``q4_share``: share of purchase days in October to December.
    """
    cut = cutoff(as_of)
    t = history(transactions, as_of=cut)
    key = order_key(t)
    buy = t.amount > 0
    lo = 365 - horizon_days
    in_ly = (t.age_days >= max(lo, 0)) & (t.age_days < 365)
    before_ly = (t.age_days >= 365) & (t.age_days < 365 + horizon_days)
    spend = t.group_by("customer_id").aggregate(_any=buy.any(), ly_spend=ibis.coalesce(t.amount.sum(where=in_ly), 0.0))
    o = t.mutate(_order=key)
    orders = o.group_by("customer_id", "_order").aggregate(_ly=(buy & in_ly).any(), _before=(buy & before_ly).any())
    counts = orders.group_by("customer_id").aggregate(
        ly_orders=orders.count(where=orders._ly.fill_null(False)),
        ly_orders_before=orders.count(where=orders._before.fill_null(False)),
    )
    ly = spend.filter(spend._any).inner_join(counts, "customer_id")
    ly = ly.select("customer_id", "ly_orders", "ly_spend", "ly_orders_before")

    p = t.filter(buy)
    days = p.group_by("customer_id", "day").aggregate(ts=p.timestamp.min())
    dow = days.ts.day_of_week.index()  # Monday = 0
    month = days.ts.month()
    n = days.day.count()
    mix = days.group_by("customer_id").aggregate(
        horizon_month_share=cut.in_horizon_months(month, horizon_days).cast("int64").sum() / n,
        weekend_share=(dow >= 5).cast("int64").sum() / n,
        q4_share=(month >= 10).cast("int64").sum() / n,
    )
    return ly.inner_join(mix, "customer_id")
