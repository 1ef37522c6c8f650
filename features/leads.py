"""Lead features: the lead's own attributes, its age at ``as_of`` and its engagement before ``as_of``.

The population scored at ``as_of`` is the leads created in ``(as_of - step, as_of]`` that are
still open (not converted at or before ``as_of`` when ``converted_at`` is known). Attribute
columns are every leads column except the key, the timestamps and the outcome; columns
excluded in the config never reach the canonical table, so never appear here. String
attributes stay strings here and become pandas categoricals at the hand-off.
"""

from __future__ import annotations

import ibis.expr.types as ir

from features.sources import CanonicalTables
from features.timebase import SECONDS_PER_DAY, AsOf, Cutoff, cutoff, join_on
from features.touchpoints import touchpoint_features, vocabulary_of

__all__ = ["OUTCOME_COLUMNS", "lead_attribute_columns", "lead_features"]

OUTCOME_COLUMNS = ("converted", "converted_at")


def lead_attribute_columns(leads: ir.Table) -> tuple[str, ...]:
    """The attribute columns of the leads table (everything but key, creation time and outcome)."""
    return tuple(c for c in leads.columns if c not in ("lead_id", "created_at", *OUTCOME_COLUMNS))


def lead_features(tables: CanonicalTables, *, as_of: AsOf | Cutoff, horizon_days: int, step_days: int) -> ir.Table:
    """Features of the open leads created in ``(as_of - step_days, as_of]``, keyed by ``lead_id``.

    Columns: the attributes, ``days_since_created`` (fractional days) and, with a
    ``lead_events`` table, the touchpoint counts of :func:`features.touchpoints.touchpoint_features`
    with prefix ``lead_events`` over events at or before ``as_of``.

    ``horizon_days`` does not change the features: the label window of a lead is
    ``(created_at, created_at + H]``, applied by :func:`features.labels.lead_labels`; it is kept in
    the signature so that a caller states the cut-off layout in one place.

    Raises
    ------
    ValueError
        No leads table is configured.
    """
    if tables.leads is None:
        raise ValueError("table 'leads' is not configured: lead features need tables.leads in the config")
    if horizon_days <= 0 or step_days <= 0:
        raise ValueError("horizon_days and step_days must be positive")
    cut = cutoff(as_of)
    leads = tables.leads
    lit, start = cut.at(), cut.shifted(-step_days)
    pop = leads.filter((leads.created_at > start) & (leads.created_at <= lit))
    if "converted_at" in pop.columns:
        pop = pop.filter(pop.converted_at.isnull() | (pop.converted_at > lit))
    age = (cut.epoch() - pop.created_at.epoch_seconds()) / SECONDS_PER_DAY
    out = pop.select("lead_id", *lead_attribute_columns(leads), days_since_created=age)
    engagement = None
    if tables.lead_events is not None:
        engagement = touchpoint_features(
            tables.lead_events, as_of=cut, prefix="lead_events", key="lead_id", **vocabulary_of(tables, "lead_events")
        )
    out = join_on(out, [engagement], "lead_id")
    if engagement is not None:
        counts = [c for c in engagement.columns if c != "lead_id" and "days_since_last" not in c]
        out = out.mutate(**{c: out[c].fill_null(0) for c in counts})
    return out
