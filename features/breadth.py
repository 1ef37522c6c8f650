"""Breadth: how many products and categories a customer buys, basket size, and focus on one category.

Computed over purchase lines (``amount > 0``) at or before ``as_of``. Columns that need an
optional canonical column (``product_id``, ``category``, ``quantity``) appear only when it exists.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
from ibis import _
from ibis.common.deferred import Deferred

from features.timebase import AsOf, Cutoff, history, join_on, order_key

__all__ = ["FEATURES_FROM", "breadth_features"]

# The features each optional canonical column feeds: a scorer whose features include one needs
# the column on every purchase line (``serving.runtime`` checks posted histories against it).
FEATURES_FROM: dict[str, tuple[str, ...]] = {
    "product_id": ("distinct_products", "distinct_products_365d", "lines_per_product"),
    "quantity": ("quantity_per_order", "avg_unit_price"),
    "category": ("distinct_categories", "top_category_share"),
}


def breadth_features(transactions: ir.Table, *, as_of: AsOf | Cutoff) -> ir.Table:
    """Breadth features of every customer with a purchase at or before ``as_of``.

    Columns (key ``customer_id``):

    - ``lines_per_order``: purchase lines per order;
    - ``distinct_products``, ``distinct_products_365d``, ``lines_per_product`` (with ``product_id``;
      lines without a product id count in no product, and a customer with none is null);
    - ``quantity_per_order``, ``avg_unit_price`` (with ``quantity``): units kept per order (units
      bought less units on refund lines, whatever their sign, 0 at least) and value per unit bought;
    - ``distinct_categories``, ``top_category_share`` (with ``category``): the top category's
      share of the customer's gross purchase value.
    """
    t = history(transactions, as_of=as_of)
    p = t.filter(t.amount > 0)
    if "quantity" in t.columns:
        # Units returned: refund lines (amount < 0) count against the units bought, however their
        # source signs the quantity.
        r = t.filter(t.amount < 0)
        returned = r.group_by("customer_id").aggregate(_returned=r.quantity.abs().sum())
    per_order = p.mutate(_order=order_key(p)).group_by("customer_id", "_order").aggregate()
    n_orders = per_order.group_by("customer_id").aggregate(_orders=per_order.count())
    aggs: dict[str, ir.Value] = {"_lines": p.count(), "_gross": p.amount.sum()}
    if "quantity" in p.columns:
        aggs["_quantity"] = p.quantity.sum()
    if "category" in p.columns:
        aggs["distinct_categories"] = p.category.nunique()
    out = p.group_by("customer_id").aggregate(**aggs).inner_join(n_orders, "customer_id")
    if "quantity" in t.columns:
        out = join_on(out, [returned], "customer_id")
    columns: dict[str, Deferred] = {"lines_per_order": _._lines / _._orders}
    if "product_id" in p.columns:
        # One row per (customer, product) first: distinct counts become plain counts.
        known = p.filter(p.product_id.notnull())
        prods = known.group_by("customer_id", "product_id").aggregate(_min_age=known.age_days.min())
        n_prods = prods.group_by("customer_id").aggregate(
            distinct_products=prods.count(),
            distinct_products_365d=prods.count(where=(prods._min_age < 365).fill_null(False)),
        )
        # A customer none of whose lines names its product has unknown breadth (null), not 0.
        out = join_on(out, [n_prods], "customer_id")
        columns["distinct_products"] = _.distinct_products
        columns["distinct_products_365d"] = _.distinct_products_365d
        columns["lines_per_product"] = _._lines / _.distinct_products.nullif(0)
    if "quantity" in p.columns:
        kept = ibis.greatest(_._quantity - _._returned.fill_null(0), 0)
        columns["quantity_per_order"] = kept / _._orders
        columns["avg_unit_price"] = _._gross / _._quantity.nullif(0)
    if "category" in p.columns:
        columns["distinct_categories"] = _.distinct_categories
    out = out.select("customer_id", **columns)
    if "category" in p.columns:
        by_cat = p.group_by("customer_id", "category").aggregate(v=p.amount.sum())
        share = by_cat.group_by("customer_id").aggregate(top_category_share=by_cat.v.max() / by_cat.v.sum())
        out = out.inner_join(share, "customer_id")
    return out
