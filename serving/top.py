"""``crmscore top``: the list a campaign planner or a sales team works from, with the reasons.

Next purchase ranks customers by expected value over the horizon (P(buy) x expected spend: who is
worth a cross-sell or upsell campaign); leads rank by P(convert) (who to call first). Churn has its
own list, ranked by value at risk: :mod:`serving.at_risk`. The whole population is scored as
``crmscore score`` scores it (same features, seasonal correction and lead anchor); only the listed
rows are explained.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from features.config import Config
from features.files import check_output
from features.sources import CanonicalTables
from serving import lists
from serving.at_risk import ListFile, check_list_since, write_list
from training.score import champion_population

__all__ = ["RANKED_BY", "top_list"]

# The lists of this command (churn's is crmscore at-risk), by what each is ranked by.
RANKED_BY = {task: rank for task, rank in lists.RANKED_BY.items() if task != "churn"}


def top_list(
    config: Config,
    task: str,
    *,
    top: int,
    out: str | Path,
    as_of: str | None = None,
    tiers: Sequence[str] | None = None,
    min_value: float | None = None,
    where: Mapping[str, Any] | None = None,
    counter_k: int = 1,
    tables: CanonicalTables | None = None,
    allow_empty: bool = False,
    since: str | None = None,
    exclude: Collection[str] | None = None,
    per: str | None = None,
    moved_up: bool = False,
) -> ListFile:
    """Write the top ``top`` of ``task``'s population by :data:`RANKED_BY`, with reasons, as CSV.

    ``as_of`` defaults to the data's last row ("now" for a nightly job); ``tiers`` keeps the rows
    of these tiers (grades, for leads), ``min_value`` those whose expected value (P(convert), for
    leads) is at least this, ``where`` those with these attribute values (the filters of the API's
    lists, :func:`serving.lists.select_at_risk`; a value no row has is a warning). The CSV is written whole or not at all; an ``out`` that
    cannot be written is refused before any scoring. ``since`` (next purchase): an earlier date whose
    scores each row also gets, as ``crmscore at-risk --since`` gives them
    (:func:`serving.at_risk.write_list`). ``exclude``: ids never to list, ``per``, the
    ``top`` of each value of an attribute, and ``moved_up``, as ``crmscore at-risk``'s.

    Raises
    ------
    ValueError
        A task without such a list (churn: ``crmscore at-risk``), ``top`` below 1, or a tier the
        model does not have (the message lists its tiers).
    features.pipeline.EmptyPopulationError
        The population at ``as_of`` is empty and ``allow_empty`` is false; nothing is written.
    """
    if task not in RANKED_BY:
        raise ValueError(f"crmscore top lists next-purchase or lead; the churn list is crmscore at-risk (got {task!r})")
    if top < 1:
        raise lists.FilterError("top", f"must be at least 1, got {top}")
    check_list_since(since, moved_up, task=task)  # before any scoring (leads refuse --since)
    check_output(out, suffixes=(".csv",))
    population = champion_population(config, task, as_of=as_of, tables=tables, allow_empty=allow_empty)
    scorer = population.scorer
    lists.check_tiers(tiers, scorer.tier_names, scorer.tier_key)  # before the population is scored
    filters = lists.ListFilters(min_value=min_value, tiers=tiers, where=where, exclude=exclude, per=per)
    return write_list(
        population, task, out=out, top=top, counter_k=counter_k, filters=filters, since=since, moved_up=moved_up
    )
