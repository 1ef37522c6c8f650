"""Customer attributes: static columns of the customers table, and attributes derived from transactions.

Each low-cardinality string attribute of the transactions (``country``, ``channel``...) becomes
the customer's most frequent value at or before ``as_of`` (ties: the most recent, then the
smallest value); the customers table's columns come as they are, and win a name both have where
they hold a value. Free
text such as ``description`` is left out by the cardinality cap.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.sources import CanonicalTables
from features.timebase import SECONDS_PER_DAY, AsOf, Cutoff, cutoff, history

__all__ = ["MAX_CARDINALITY", "attribute_features", "transaction_attribute_columns"]

# A string attribute with more distinct values than this is free text or an id, not a category.
MAX_CARDINALITY = 100
_NOT_ATTRIBUTES = frozenset({"customer_id", "timestamp", "amount", "order_id", "product_id", "quantity", "category"})


def transaction_attribute_columns(transactions: ir.Table, *, max_cardinality: int = MAX_CARDINALITY) -> tuple[str, ...]:
    """String attribute columns of ``transactions`` with at most ``max_cardinality`` distinct values."""
    candidates = [c for c in transactions.columns if c not in _NOT_ATTRIBUTES and transactions[c].type().is_string()]
    if not candidates:
        return ()
    counts = transactions.aggregate(**{c: transactions[c].nunique() for c in candidates}).to_pyarrow()
    return tuple(c for c in candidates if counts[c][0].as_py() <= max_cardinality)


def attribute_features(
    tables: CanonicalTables, *, as_of: AsOf | Cutoff, columns: tuple[str, ...] | None = None
) -> ir.Table | None:
    """Attribute features keyed by ``customer_id``, or None when there are none.

    From the customers table: every column but ``customer_id`` and ``signup_at``, plus
    ``days_since_signup`` (null when the signup is after ``as_of``). From the transactions: the most
    frequent value of each transaction attribute in ``columns`` (default:
    :func:`transaction_attribute_columns`) at or before ``as_of``; a name the customers table also
    has is the customers table's, filled from the transactions where it has no value (text columns).
    Until 2026-12-07 a customers table took the place of every transaction attribute, which were
    dropped without a word.
    """
    cut = cutoff(as_of)
    static = _customer_columns(tables.customers, cut) if tables.customers is not None else None
    t = tables.transactions
    if columns is None:
        columns = transaction_attribute_columns(t)
    # A name in both: the customers table's value, and the orders' where it has none (a customer
    # missing from it, or a null there) when both are text; until 2026-12-07 such a customer lost the
    # country its orders carry. Of another type, the customers table's alone.
    shared: tuple[str, ...] = ()
    if static is not None:
        shared = tuple(c for c in columns if c in static.columns and static[c].type().is_string())
        columns = tuple(c for c in columns if c not in static.columns or c in shared)
    derived = _most_frequent(t, columns, cut) if columns else None
    if static is None or derived is None:
        return static if derived is None else derived
    out = static.outer_join(derived, "customer_id")
    filled = {c: ibis.coalesce(out[c], out[f"{c}_right"]) for c in shared}
    return out.mutate(customer_id=ibis.coalesce(out.customer_id, out.customer_id_right), **filled).drop(
        "customer_id_right", *(f"{c}_right" for c in shared)
    )


def _customer_columns(c: ir.Table, cut: Cutoff) -> ir.Table | None:
    """The customers table's columns, one row per customer, with ``days_since_signup``."""
    keep = [col for col in c.columns if col not in ("customer_id", "signup_at")]
    if "signup_at" in c.columns:
        signed = c.signup_at <= cut.at()
        age = (cut.epoch() - c.signup_at.epoch_seconds()) / SECONDS_PER_DAY
        c = c.mutate(days_since_signup=ibis.ifelse(signed, age, ibis.null("float64")))
        keep.append("days_since_signup")
    out = c.select("customer_id", *keep)
    return out.distinct(on="customer_id", keep="first") if keep else None


def _most_frequent(t: ir.Table, columns: tuple[str, ...], cut: Cutoff) -> ir.Table:
    """Each customer's most frequent value of each of ``columns`` at or before the cut-off (ties: the
    most recent, then the smallest value)."""
    h = history(t, as_of=cut)
    out = None
    for col in columns:
        f = h.filter(h[col].notnull())
        g = f.group_by("customer_id", col).aggregate(n=f.count(), last=f.timestamp.max())
        rank = ibis.row_number().over(
            ibis.window(group_by="customer_id", order_by=[ibis.desc("n"), ibis.desc("last"), col])
        )
        top = g.mutate(rk=rank).filter(lambda x: x.rk == 0).select("customer_id", col)
        out = top if out is None else out.outer_join(top, "customer_id")
        if "customer_id_right" in out.columns:
            out = out.mutate(customer_id=ibis.coalesce(out.customer_id, out.customer_id_right)).drop(
                "customer_id_right"
            )
    return out
