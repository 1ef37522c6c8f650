"""``crmscore top``: the list a campaign planner or a sales team works from, with the reasons.

Next purchase ranks customers by expected value over the horizon (P(buy) x expected spend: who is
worth a cross-sell or upsell campaign); leads rank by P(convert) (who to call first). Churn has its
own list, ranked by value at risk: :mod:`serving.at_risk`. The whole population is scored as
``crmscore score`` scores it (same features, seasonal correction and lead anchor); only the listed
rows are explained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from features.config import Config
from features.files import check_output, write_text_atomic
from features.pipeline import check_population, population_features
from features.sources import CanonicalTables, load_tables
from models.catalog import model_config_for
from models.drift import FeatureDrift
from serving import lists
from training.pyfunc import load_champion
from training.score import BatchWarnings, date_warnings, score_population

__all__ = ["RANKED_BY", "TopList", "top_list"]

# What each list is ranked by (highest first; ties by probability, then id).
RANKED_BY = {"next_purchase": "expected_value", "lead": "probability"}
_TABLE = {"next_purchase": "transactions", "lead": "leads"}


@dataclass(frozen=True)
class TopList(BatchWarnings):
    """What ``crmscore top`` wrote: the listed rows (the population's drift and date warnings beside)."""

    rows: list[dict[str, Any]]
    ranked_by: str
    matched: int  # rows of the population that passed the filters
    drift: tuple[FeatureDrift, ...]
    stale_warning: str | None = None
    history_warning: str | None = None


def top_list(
    config: Config,
    task: str,
    *,
    top: int,
    out: str | Path,
    as_of: str | None = None,
    tiers: Sequence[str] | None = None,
    counter_k: int = 1,
    tables: CanonicalTables | None = None,
    allow_empty: bool = False,
) -> TopList:
    """Write the top ``top`` of ``task``'s population by :data:`RANKED_BY`, with reasons, as CSV.

    ``as_of`` defaults to the data's last row ("now" for a nightly job); ``tiers`` keeps the rows
    of these tiers (grades, for leads). The CSV is written whole or not at all; an ``out`` that
    cannot be written is refused before any scoring.

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
    check_output(out, suffixes=(".csv",))
    scorer, _ = load_champion(config, task)
    unknown = [t for t in tiers or () if t not in scorer.tier_names]
    if top < 1 or unknown:
        raise lists.FilterError(
            "top" if top < 1 else "tiers",
            f"must be at least 1, got {top}"
            if top < 1
            else f"unknown {scorer.tier_key} {unknown[0]!r}; the model's: {list(scorer.tier_names)}",
        )
    mc = model_config_for(config, task)
    if tables is None:
        tables = load_tables(config)
    if as_of is None:
        as_of = tables.last_timestamp(_TABLE[task])
    features = population_features(
        tables.with_vocabulary(scorer.vocabulary), task, as_of=as_of, model_config=mc
    ).reset_index(drop=True)
    if not allow_empty:
        check_population(len(features), tables, task, as_of=as_of, mc=mc)
    scores, drift, shift = score_population(scorer, features, as_of=as_of, k=0, explain=False)
    rank = RANKED_BY[task]
    keep = np.ones(len(scores), dtype=bool)
    if tiers:
        keep &= scores[scorer.tier_key].isin(list(tiers)).to_numpy()
    positions = np.flatnonzero(keep)
    ids = scores[scorer.entity].astype(str).to_numpy()
    order = np.lexsort(
        (
            ids[positions],
            -scores["probability"].to_numpy(dtype=float)[positions],
            -scores[rank].to_numpy(dtype=float)[positions],
        )
    )
    picked = positions[order][:top]
    k = mc.top_k_reasons
    explained = scorer.score_frame(
        features.iloc[picked], k=k, explain=True, as_of=as_of, population_shift=shift, counter_k=counter_k
    )
    columns = [scorer.entity, "probability", scorer.tier_key, *scorer.value_names]
    rows = [
        {
            **{c: (str(record[c]) if c == scorer.entity else record[c]) for c in columns},
            "reasons": record["reasons"],
            "counter_reasons": record.get("counter_reasons"),
        }
        for record in explained.to_dict("records")
    ]
    stamp = lists.file_stamp(scorer, as_of)
    write_text_atomic(out, lists.to_csv(rows, k=k, counter_k=counter_k, columns=columns, stamp=stamp))
    return TopList(rows=rows, ranked_by=rank, matched=len(positions), drift=drift, **date_warnings(tables, task, as_of))
