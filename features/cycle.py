"""The customer purchase cycle: gaps between purchase days, recency relative to the usual gap, tenure, trend.

A purchase day is a calendar day with at least one ``amount > 0`` line. Gaps are whole
days between consecutive purchase days. ``days_since_last`` and ``tenure_days`` count
calendar days from the last and the first purchase day to the day of ``as_of``.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.timebase import AsOf, Cutoff, cutoff, history, order_key

__all__ = ["DECAY_DAYS", "cycle_features"]

# Time constants of the exponentially decayed purchase-day counts.
DECAY_DAYS = (30, 90, 365)


def cycle_features(transactions: ir.Table, *, as_of: AsOf | Cutoff) -> ir.Table:
    """Purchase-cycle features of every customer with a purchase at or before ``as_of``.

    Columns (key ``customer_id``):

    - ``purchase_days``: number of distinct purchase days;
    - ``gap_mean``, ``gap_median``, ``gap_std``, ``gap_max``, ``gap_last``: gaps in days between
      consecutive purchase days (null below two purchase days; ``gap_std`` below three);
    - ``days_since_last``, ``tenure_days``: days from the last / first purchase day to ``as_of``;
    - ``recency_over_gap``: ``days_since_last / gap_mean`` (how overdue the next purchase is);
    - ``recency_over_max_gap``: ``days_since_last / gap_max`` (> 1: the longest silence yet);
    - ``purchase_rate_30d``: purchase days per 30 days of tenure (tenure counted from day 1);
    - ``spend_per_30d``: net spend per 30 days of tenure;
    - ``active_months_365d``, ``active_months_all``: distinct calendar months with a purchase;
    - ``order_trend``, ``spend_trend``: orders / net spend in the last 90 days minus the 90 before;
    - ``order_trend_ratio``: ``(orders last 90 + 1) / (orders the 90 before + 1)``.
    """
    cut = cutoff(as_of)
    today = cut.day()
    t = history(transactions, as_of=cut)
    buy = t.amount > 0

    p = t.filter(buy)
    days = p.group_by("customer_id", "day").aggregate(
        _min_age=p.age_days.min(), _month=(p.timestamp.year() * 12 + p.timestamp.month()).max()
    )
    w = ibis.window(group_by="customer_id", order_by="day")
    back = ibis.window(group_by="customer_id", order_by=ibis.desc("day"))
    days = days.mutate(
        gap=days.day - days.day.lag().over(w),
        is_last=days.day.lead().over(w).isnull(),
        nth_last=ibis.row_number().over(back),  # 0 = the last purchase day
        nth=ibis.row_number().over(w),  # 0 = the first purchase day
    )
    cyc = days.group_by("customer_id").aggregate(
        purchase_days=days.day.count(),
        first_day=days.day.min(),
        last_day=days.day.max(),
        gap_mean=days.gap.mean(),
        gap_median=days.gap.median(),
        gap_std=days.gap.std(),
        gap_max=days.gap.max(),
        gap_last=days.gap.max(where=days.is_last),
        gap_first=days.gap.max(where=days.nth == 1),
        _day_2nd_last=days.day.max(where=days.nth_last == 1),
        _day_3rd_last=days.day.max(where=days.nth_last == 2),
        purchase_days_90d=days.day.count(where=(days.day > today - 90).fill_null(False)),
        purchase_days_365d=days.day.count(where=(days.day > today - 365).fill_null(False)),
        active_weeks_90d=(days.day // 7).nunique(where=days.day > today - 91),
        active_weeks_365d=(days.day // 7).nunique(where=days.day > today - 364),
        active_months_180d=days._month.nunique(where=days._min_age < 180),
        active_months_365d=days._month.nunique(where=days._min_age < 365),
        active_months_all=days._month.nunique(),
        **{f"decayed_purchase_days_{tau}d": (-(today - days.day) / float(tau)).exp().sum() for tau in DECAY_DAYS},
    )
    days_since_last = today - cyc.last_day
    tenure = today - cyc.first_day
    cyc = cyc.mutate(
        gap_mean=cyc.gap_mean.cast("float64"),
        gap_median=cyc.gap_median.cast("float64"),
        gap_max=cyc.gap_max.cast("float64"),
        gap_last=cyc.gap_last.cast("float64"),
        gap_first=cyc.gap_first.cast("float64"),
        days_since_2nd_last=(today - cyc._day_2nd_last).cast("float64"),
        days_since_3rd_last=(today - cyc._day_3rd_last).cast("float64"),
        gap_last_over_mean=cyc.gap_last / cyc.gap_mean.nullif(0),
        days_since_last=days_since_last.cast("float64"),
        tenure_days=tenure.cast("float64"),
        recency_over_gap=days_since_last / cyc.gap_mean.nullif(0),
        recency_over_max_gap=days_since_last / cyc.gap_max.nullif(0),
        purchase_rate_30d=cyc.purchase_days * 30.0 / (tenure + 1),
    ).drop("last_day", "_day_2nd_last", "_day_3rd_last")

    last90 = t.age_days < 90
    prev90 = (t.age_days >= 90) & (t.age_days < 180)
    sums = t.group_by("customer_id").aggregate(
        _net=t.amount.sum(),
        _s90=ibis.coalesce(t.amount.sum(where=last90), 0.0),
        _sprev=ibis.coalesce(t.amount.sum(where=prev90), 0.0),
    )
    # One row per order first: the trend's order counts become plain counts.
    o = t.mutate(_order=order_key(t))
    orders = o.group_by("customer_id", "_order").aggregate(_in90=(buy & last90).any(), _inprev=(buy & prev90).any())
    counts = orders.group_by("customer_id").aggregate(
        _o90=orders.count(where=orders._in90.fill_null(False)),
        _oprev=orders.count(where=orders._inprev.fill_null(False)),
    )
    out = cyc.inner_join(sums, "customer_id").inner_join(counts, "customer_id")
    out = out.mutate(
        spend_per_30d=out._net * 30.0 / (today - out.first_day + 1),
        order_trend=out._o90 - out._oprev,
        spend_trend=out._s90 - out._sprev,
        order_trend_ratio=(out._o90 + 1.0) / (out._oprev + 1.0),
    )
    return out.drop("first_day", "_net", "_o90", "_oprev", "_s90", "_sprev")
