"""RFM: recency, frequency and monetary value over several windows, order value and refunds.

A purchase is a transaction line with ``amount > 0``; a refund is one with ``amount < 0``.
An order is an ``order_id`` when the table has one, else a calendar day with a purchase.
Window ``w`` means ``(as_of - w days, as_of]``.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.timebase import AsOf, Cutoff, history, order_key

__all__ = ["WINDOWS", "rfm_features"]

WINDOWS = (30, 90, 180, 365)


def rfm_features(transactions: ir.Table, *, as_of: AsOf | Cutoff, windows: tuple[int, ...] = WINDOWS) -> ir.Table:
    """RFM features of every customer with a transaction at or before ``as_of``.

    Columns (key ``customer_id``):

    - ``recency_days``: fractional days from the last purchase to ``as_of`` (null: refunds only);
    - ``frequency_{w}d`` and ``frequency_all``: distinct orders with a purchase;
    - ``monetary_{w}d`` and ``monetary_all``: net spend (purchases minus refunds);
    - ``avg_order_value``: net spend per order, 0 at least (null without an order). Net, because a
      cancelled order is a purchase line and a refund line: the gross value per order would count
      a customer who bought 74,215 units and returned them all as a big spender;
    - ``refund_count``: distinct orders (or days) with a refund line;
    - ``refund_share``: refunded value over gross purchase value (null without purchases).
    """
    t = history(transactions, as_of=as_of)
    t = t.mutate(_order=order_key(t))
    buy = t.amount > 0
    refund = t.amount < 0
    # A NULL condition (an order with refunds only) must count as false on every engine: Spark
    # counts it as NULL, DuckDB as 0. fill_null(False) makes both 0.
    # Count-distinct per window is costly; one row per order first makes every count a plain count.
    orders = t.group_by("customer_id", "_order").aggregate(
        _buy_age=t.age_days.min(where=buy),  # null: the order has no purchase line
        _refund=refund.any(),
    )
    counts: dict[str, ir.Value] = {"recency_days": orders._buy_age.min()}
    for w in windows:
        counts[f"frequency_{w}d"] = orders.count(where=(orders._buy_age < w).fill_null(False))
    counts["frequency_all"] = orders._buy_age.count()
    counts["refund_count"] = orders.count(where=orders._refund.fill_null(False))
    per_order = orders.group_by("customer_id").aggregate(**counts)

    sums: dict[str, ir.Value] = {}
    for w in windows:
        sums[f"monetary_{w}d"] = ibis.coalesce(t.amount.sum(where=t.age_days < w), 0.0)
    sums["monetary_all"] = t.amount.sum()
    sums["_gross"] = t.amount.sum(where=buy)
    sums["_refunded"] = ibis.coalesce(-t.amount.sum(where=refund), 0.0)
    money = t.group_by("customer_id").aggregate(**sums)

    out = per_order.inner_join(money, "customer_id")
    out = out.mutate(
        avg_order_value=ibis.greatest(out.monetary_all, 0.0) / out.frequency_all.nullif(0),
        refund_share=out._refunded / out._gross,
    )
    return out.select(
        "customer_id",
        "recency_days",
        *[f"frequency_{w}d" for w in windows],
        "frequency_all",
        *[f"monetary_{w}d" for w in windows],
        "monetary_all",
        "avg_order_value",
        "refund_count",
        "refund_share",
    )
