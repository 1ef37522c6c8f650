"""``crmscore at-risk`` without a server: score the churn population, rank by value at risk, write CSV."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from features.config import Config, ModelConfig, population_rule
from features.files import check_output, write_text_atomic
from features.pipeline import population_features
from features.sources import CanonicalTables
from features.timebase import normalize_as_of
from models.drift import FeatureDrift
from serving import lists
from training.score import BatchWarnings, ChampionPopulation, champion_population, check_since, date_warnings

__all__ = [
    "LEAD_SINCE",
    "ListFile",
    "SinceError",
    "at_risk_list",
    "check_list_since",
    "scored_at",
    "scored_then",
    "write_list",
]


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
    # A sentence when the config's model settings differ from the champion's (models.catalog.scoring_config).
    settings_warning: str | None = None
    # A sentence per --where value no row of the population has, and for a --min-value above every row or a
    # --tier no row is in (serving.lists.unmatched_filters).
    filter_warnings: tuple[str, ...] = ()
    # With ``since``: how the listed rows moved since that date (serving.lists.with_scores_then).
    since_note: str | None = None
    # With ``exclude``: how many of its ids the population held (serving.lists.Suppression.note), a
    # warning instead when ids matched only as spelt otherwise, matched none, or the list held none.
    exclude_note: str | None = None
    exclude_warning: str | None = None
    # The scoring date: --as-of, or by default the data's last row (said, since it is not in the command).
    as_of: Any = None

    @property
    def warnings(self) -> list[str]:
        """The batch's warnings (changed settings, stale export, short history, drift), then the filters
        that matched no one."""
        return [*super().warnings, *self.filter_warnings, *([self.exclude_warning] if self.exclude_warning else [])]


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
    moved_up: bool = False,
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
    ``per``: an attribute; the ``top`` customers of each of its values. ``moved_up`` (with
    ``since``): list only the customers in a higher risk tier than at ``since`` (the newly at risk).

    Raises
    ------
    ValueError
        ``since`` is not before the list's date.
    """
    check_output(out, suffixes=(".csv",))
    check_list_since(since, moved_up, task="churn")  # before any scoring
    population = champion_population(config, "churn", as_of=as_of, tables=tables, allow_empty=allow_empty)
    filters = lists.ListFilters(min_value=min_value, tiers=tiers, where=where, exclude=exclude, per=per)
    return write_list(
        population, "churn", out=out, top=top, counter_k=counter_k, filters=filters, since=since, moved_up=moved_up
    )


# Why the lead lists refuse --since (the API's since).
LEAD_SINCE = (
    "compares customers over time; a lead's population is the leads created in the last "
    "step_days, so the open leads of two dates are mostly different leads"
)


class SinceError(ValueError):
    """A list's ``since`` or ``moved_up`` refused; ``field`` is the one named (``since``, ``moved_up``)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def check_list_since(
    since: str | None,
    moved_up: bool,
    *,
    task: str,
    as_of: Any = None,
    what: str = "the list's date",
    options: tuple[str, str] = ("--since", "--moved-up"),
) -> Any:
    """A list's ``since`` (:func:`training.score.check_since`, against ``as_of`` when given) and
    ``moved_up``, which needs it, checked before any scoring; lead lists refuse ``since``. The commands
    name their options, the API its fields (``options``). Returns ``since`` as a cut-off (or None).

    Raises
    ------
    SinceError
        Naming the field: ``moved_up`` without ``since``, ``since`` for leads or not a date before ``as_of``.
    """
    since_name, moved_up_name = options
    if moved_up and since is None:
        raise SinceError(
            f"{moved_up_name} lists those in a higher tier than at an earlier date: give it with {since_name} D",
            field="moved_up",
        )
    if since is not None and task == "lead":
        raise SinceError(f"{since_name} {LEAD_SINCE}", field="since")
    try:
        return check_since(since, as_of, what=what, name=since_name)
    except ValueError as exc:
        raise SinceError(str(exc), field="since") from exc


def write_list(
    population: ChampionPopulation,
    task: str,
    *,
    out: str | Path,
    top: int,
    counter_k: int,
    filters: lists.ListFilters,
    since: str | None = None,
    moved_up: bool = False,
) -> ListFile:
    """What ``crmscore at-risk`` and ``crmscore top`` do once the champion's population is loaded:
    rank it (:func:`serving.lists.rank_population` with ``filters``), give the listed rows their
    scores at ``since`` (and with ``moved_up`` keep only those in a higher tier than then), write
    the CSV atomically and say what the list and the date warrant."""
    scorer = population.scorer
    check_since(since, population.as_of)
    then = scored_then(population, task, since) if since is not None else None
    listed = lists.rank_population(
        population, task, top=top, counter_k=counter_k, filters=filters, moved_up_from=then, only_moved_up=moved_up
    )
    columns, since_note = lists.list_columns(scorer), None
    if since is not None:
        since_note = lists.with_scores_then(
            listed.rows,
            then,
            tier_names=scorer.tier_names,
            since=since,
            columns=columns,
            rule=population_rule(task, population.model_config),
            season=lists.seasonal_move(scorer, since, population.as_of),
        )
        columns = (*columns, *lists.THEN_COLUMNS)
    k, stamp = population.model_config.top_k_reasons, lists.file_stamp(scorer, population.as_of)
    attributes = lists.attribute_columns(listed.scored, lists.list_columns(scorer), filters.named)
    text = lists.to_csv(
        listed.rows,
        k=k,
        counter_k=counter_k,
        columns=columns,
        stamp=stamp,
        attributes=attributes,
        none_said=lists.none_material(scorer),
    )
    write_text_atomic(out, text)
    return ListFile(
        rows=listed.rows,
        ranked_by=lists.RANKED_BY[task],
        matched=listed.matched,
        drift=listed.drift,
        settings_warning=population.settings_warning,
        **date_warnings(population.tables, task, population.as_of),
        filter_warnings=tuple(
            lists.unmatched_filters(
                listed.scored,
                filters.where,
                scorer.tier_names,
                min_value=filters.min_value,
                rank=lists.RANKED_BY[task],
                tiers=filters.tiers,
            )
        ),
        since_note=since_note,
        **_suppression_notes(listed.suppression),
        as_of=population.as_of,
    )


def _suppression_notes(suppression: lists.Suppression | None) -> dict[str, str | None]:
    """A list file's ``exclude_note``, or its ``exclude_warning`` when the suppression list's ids did not all
    match as given or it held none (an opted-out customer listed is the costly mistake: said as a warning)."""
    if suppression is None:
        return {}
    warns = suppression.unmatched or not suppression.given
    return {"exclude_warning" if warns else "exclude_note": suppression.note}


def scored_then(population: ChampionPopulation, task: str, since: str) -> pd.DataFrame | None:
    """``task``'s population at ``since`` scored by the same champion, as the list's own date is
    (:func:`serving.lists.scored_for_list`); None when it was empty then."""
    return scored_at(population.scorer, population.tables, population.model_config, task, since)


def scored_at(
    scorer: Any, tables: CanonicalTables, model_config: ModelConfig, task: str, as_of: Any
) -> pd.DataFrame | None:
    """``task``'s population at ``as_of`` computed from ``tables`` and scored by ``scorer`` as a list
    scores it (:func:`serving.lists.scored_for_list`); None when it is empty. The commands' and the
    API's ``since`` both use it."""
    earlier = population_features(
        tables.with_vocabulary(scorer.vocabulary), task, as_of=as_of, model_config=model_config
    )
    return lists.scored_for_list(scorer, earlier, as_of=normalize_as_of(as_of)) if len(earlier) else None
