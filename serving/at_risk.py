"""``crmscore at-risk`` without a server: score the churn population, rank by value at risk, write CSV."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.config import Config, population_rule
from features.files import check_output, write_text_atomic
from features.pipeline import population_features
from features.sources import CanonicalTables
from features.timebase import normalize_as_of
from models.drift import FeatureDrift
from serving import lists
from training.score import BatchWarnings, ChampionPopulation, champion_population, check_since, date_warnings

__all__ = ["ListFile", "at_risk_list"]


@dataclass(frozen=True)
class ListFile(BatchWarnings):
    """What ``crmscore at-risk`` or ``crmscore top`` wrote: the listed rows and the warnings of the date.

    ``drift`` is that of the whole population at the date, not only of the listed rows: the same
    figure ``crmscore score`` reports for it.
    """

    rows: list[dict[str, Any]]
    ranked_by: str  # serving.lists.RANKED_BY of the task
    matched: int  # rows of the population that passed the filters
    drift: tuple[FeatureDrift, ...]
    # A sentence when the date is more than a day after the data's last row (a stale export).
    stale_warning: str | None = None
    # A sentence when the features' look-back reaches before the data's first row.
    history_warning: str | None = None
    # A sentence per --where value no row of the population has (serving.lists.unmatched_filters).
    filter_warnings: tuple[str, ...] = ()
    # With ``since``: how the listed rows moved since that date (serving.lists.with_scores_then).
    since_note: str | None = None
    # With ``exclude``: how many of its ids the population held (serving.lists.excluded_note).
    exclude_note: str | None = None

    @property
    def warnings(self) -> list[str]:
        """The batch's warnings (stale export, short history, drift), then the filters that matched no one."""
        return [*super().warnings, *self.filter_warnings]


def at_risk_list(
    config: Config,
    *,
    top: int,
    out: str | Path,
    as_of: str | None = None,
    min_value: float | None = None,
    tiers: Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
    tables: CanonicalTables | None = None,
    counter_k: int = 1,
    allow_empty: bool = False,
    since: str | None = None,
    exclude: Collection[str] | None = None,
    per: str | None = None,
) -> ListFile:
    """Write the top ``top`` customers by value at risk, with reasons, as CSV.

    Each row has the model's ``top_k_reasons`` reasons (what raises the churn risk) and
    ``counter_k`` counter-reasons (what lowers it: why a large customer near the top of the list
    has a low probability).

    ``as_of`` defaults to the last transaction in the data ("now" for a nightly job). The filters
    are those of the API's ``/at_risk`` (:func:`serving.lists.select_at_risk`).
    The CSV is written whole or not at all (:func:`features.files.write_text_atomic`); an ``out``
    that cannot be written is refused before any scoring (:class:`features.files.OutputError`).
    An empty churn population at ``as_of`` writes nothing
    (:class:`features.pipeline.EmptyPopulationError`) unless ``allow_empty``; filters that match
    no one still write a CSV of just the header. The result carries the rows and the warnings
    ``crmscore score`` would give for the date: a stale export or a history cut short by the
    start of the data (:func:`training.score.date_warnings`) and the population's feature drift.

    ``since``: an earlier date; each listed customer also gets the same champion's probability and
    tier then (``probability_then``, ``tier_then``; empty for a customer outside that date's
    population), so a change in the list is the customers' doing, not the model's
    (:func:`serving.lists.with_scores_then`). ``exclude``: ids never to list (a suppression list,
    :func:`serving.lists.read_ids`); the result says how many of them the population held.
    ``per``: an attribute; the ``top`` customers of each of its values.

    Raises
    ------
    ValueError
        ``since`` is not before the list's date.
    """
    check_output(out, suffixes=(".csv",))
    check_since(since)  # before any scoring
    population = champion_population(config, "churn", as_of=as_of, tables=tables, allow_empty=allow_empty)
    check_since(since, population.as_of)
    listed = lists.rank_population(
        population,
        "churn",
        top=top,
        counter_k=counter_k,
        min_value=min_value,
        tiers=tiers,
        where=where,
        exclude=exclude,
        per=per,
    )
    scorer, k = population.scorer, population.model_config.top_k_reasons
    columns, since_note = lists.SCORE_COLUMNS, None
    if since is not None:
        since_note = scores_then(population, "churn", listed.rows, since)
        columns = (*columns, *lists.THEN_COLUMNS)
    stamp = lists.file_stamp(scorer, population.as_of)
    write_text_atomic(out, lists.to_csv(listed.rows, k=k, counter_k=counter_k, columns=columns, stamp=stamp))
    return ListFile(
        rows=listed.rows,
        ranked_by=lists.RANKED_BY["churn"],
        matched=listed.matched,
        drift=listed.drift,
        **date_warnings(population.tables, "churn", population.as_of),
        filter_warnings=tuple(lists.unmatched_filters(listed.scored, where)),
        since_note=since_note,
        exclude_note=lists.excluded_note(listed.scored, population.scorer.entity, exclude),
    )


def scores_then(population: ChampionPopulation, task: str, rows: Sequence[dict[str, Any]], since: str) -> str:
    """Score ``task``'s population at ``since`` with the same champion, as the list's own date is
    scored (:func:`serving.lists.scored_for_list`), and give each listed row its probability and tier
    then (:func:`serving.lists.with_scores_then`, whose sentence this returns)."""
    scorer = population.scorer
    earlier = population_features(
        population.tables.with_vocabulary(scorer.vocabulary), task, as_of=since, model_config=population.model_config
    )
    then = lists.scored_for_list(scorer, earlier, as_of=normalize_as_of(since)) if len(earlier) else None
    return lists.with_scores_then(
        rows,
        then,
        tier_names=scorer.tier_names,
        since=since,
        columns=lists.list_columns(scorer),
        rule=population_rule(task, population.model_config),
    )
