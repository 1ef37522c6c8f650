"""``crmscore score``: batch scores of a task's population with the champion model, written atomically."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from features.config import Config, ModelConfig
from features.files import atomic_output, check_output
from features.labels import MAIN_TABLE, data_span, data_until, stale_warning
from features.pipeline import check_population, population_features
from features.rfm import WINDOWS
from features.sources import CanonicalTables, load_tables
from features.timebase import normalize_as_of
from models.catalog import scoring_config
from models.drift import FeatureDrift, drift_summary
from models.scorer import Scorer
from training.pyfunc import load_champion, reasons_as_json
from training.train import Steps, normalize_task

__all__ = [
    "TABLE_SUFFIXES",
    "BatchScores",
    "BatchWarnings",
    "ChampionPopulation",
    "champion_population",
    "batch_facts",
    "check_since",
    "date_warnings",
    "history_warning",
    "score_batch",
    "score_population",
    "stale_warning",
    "write_atomic",
]

# The table formats batch outputs are written in, by file suffix.
TABLE_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def write_atomic(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write ``frame`` to Parquet or CSV (by suffix), whole or not at all.

    A failure leaves no partial file at ``out`` (see :func:`features.files.atomic_output`).

    Raises
    ------
    features.files.OutputError
        The suffix is neither ``.parquet``/``.pq`` nor ``.csv``, or ``out`` cannot be written.
    """
    out = Path(out)
    with atomic_output(out, suffixes=TABLE_SUFFIXES) as tmp:
        if TABLE_SUFFIXES[out.suffix.lower()] == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
    return out


class BatchWarnings:
    """The warnings of a batch run over one date's population: a config changed since the model was
    trained, a stale export, a history cut short by the start of the data, and feature drift."""

    drift: tuple[FeatureDrift, ...]
    stale_warning: str | None
    history_warning: str | None
    settings_warning: str | None

    @property
    def drift_warning(self) -> str | None:
        """A sentence naming the features that shifted from the training rows, or None."""
        return drift_summary(self.drift)

    @property
    def warnings(self) -> list[str]:
        """The changed-settings, stale-export, short-history and drift sentences that apply, in that order."""
        found = (self.settings_warning, self.stale_warning, self.history_warning, self.drift_warning)
        return [w for w in found if w]


@dataclass(frozen=True)
class BatchScores(BatchWarnings):
    """What a batch scoring run wrote: the row count, the output and the batch's feature drift.

    ``out`` is the written file for :func:`score_batch`, the folder's path or URI (``s3a://...``)
    for :func:`serving.spark_batch.score_spark`.
    """

    rows: int
    out: Path | str
    drift: tuple[FeatureDrift, ...]
    # The log-odds shift that anchored the population's mean to the model's latest training fold's rate (0: none).
    population_shift: float = 0.0
    # A sentence when the scoring date is more than a day after the data's last row (a stale export).
    stale_warning: str | None = None
    # A sentence when the features' look-back reaches before the data's first row (history_warning).
    history_warning: str | None = None
    # A sentence when the config's model settings differ from the model's (models.catalog.scoring_config).
    settings_warning: str | None = None
    # The registered model that scored (load_champion's facts), and the data's last row the task reads.
    model_name: str | None = None
    model_version: str | None = None
    data_until: str | None = None


def history_warning(tables: CanonicalTables, task: str, as_of: Any) -> str | None:
    """A sentence when the customer features at ``as_of`` look back before the data's first row, else None.

    Churn and next purchase read up to a year of each customer's history (the longest RFM window);
    scored within a year of the first transaction, every history is cut short where the data
    starts, so customers look newer and less active than they are, which the model never saw in
    a customer of that standing. Scores are still written; this says why they may be wrong. Leads
    are scored on their own attributes: None.
    """
    if task == "lead":
        return None
    table, since, _ = data_span(tables, task)
    at = normalize_as_of(as_of)
    reach = dt.timedelta(days=max(WINDOWS))
    if since is None or at < since or at - since >= reach:
        return None
    return (
        f"the scoring date {at:%Y-%m-%d %H:%M} is {(at - since).days} days after the first row of table '{table}' "
        f"({since:%Y-%m-%d %H:%M}), less than the {reach.days} days the {task} features look back: histories "
        "are cut short where the data starts, so customers look newer and less active than they are"
    )


def check_since(
    since: Any, as_of: Any = None, *, what: str = "the list's date", name: str = "--since"
) -> dt.datetime | None:
    """``--since`` as a cut-off (None stays None), refused when it is not a date or, given the scoring
    date ``as_of`` (``what`` names it in the message), not before it; ``name`` is the option or
    field the messages name."""
    if since is None:
        return None
    try:
        then = normalize_as_of(since)
    except ValueError:
        raise ValueError(f"{name} {since!r} is not an ISO date or datetime (e.g. '2011-11-09')") from None
    if as_of is not None and then >= normalize_as_of(as_of):
        raise ValueError(f"{name} {since} must be before {what}, {as_of}")
    return then


def batch_facts(info: dict[str, Any], tables: CanonicalTables, task: str, as_of: Any) -> dict[str, str | None]:
    """What a batch says of itself: the model that scored, the data's last row (a nightly job compares
    that with the night's date, whatever the warnings' wording) and :func:`date_warnings`, the data's
    last row read once for both."""
    found = data_until(tables, task)
    until = found[1]
    return {
        "model_name": info.get("model_name"),
        "model_version": None if info.get("version") is None else str(info["version"]),
        "data_until": None if until is None else until.isoformat(sep=" "),
        "stale_warning": stale_warning(tables, task, as_of, found=found),
        "history_warning": history_warning(tables, task, as_of),
    }


def date_warnings(tables: CanonicalTables, task: str, as_of: Any) -> dict[str, str | None]:
    """``stale_warning`` and ``history_warning`` of a batch at ``as_of``: where the date sits in the data."""
    return {
        "stale_warning": stale_warning(tables, task, as_of),
        "history_warning": history_warning(tables, task, as_of),
    }


def score_population(
    scorer: Scorer, features: pd.DataFrame, *, as_of: Any, k: int = 3, explain: bool = False, counter_k: int = 0
) -> tuple[pd.DataFrame, tuple[FeatureDrift, ...], float]:
    """Score one date's whole population as the nightly batch does: the frame, its drift, its anchor.

    The rows are taken as the population of ``as_of``: an anchored model (lead) shifts them all
    by one log-odds offset to the base rate of the model's latest training fold, which is returned (0 for the others).
    """
    X = scorer.prepare(features)
    drift = tuple(scorer.drift(X, features))
    shift = scorer.population_shift(X, as_of=as_of)
    scores = scorer.score_frame(
        features, k=k, explain=explain, as_of=as_of, prepared=X, population_shift=shift, counter_k=counter_k
    )
    return scores, drift, shift


@dataclass(frozen=True)
class ChampionPopulation:
    """A task's champion and its population at one date: what the batch and the lists score."""

    scorer: Scorer
    info: dict[str, Any]  # load_champion's registry facts
    model_config: ModelConfig  # the config's section, with the settings the champion was trained with
    tables: CanonicalTables
    as_of: Any
    features: pd.DataFrame  # computed with the champion's vocabulary, index 0..n-1
    settings_warning: str | None = None  # models.catalog.scoring_config's: the config has changed them since


def check_task_table(config: Config, task: str) -> None:
    """Refuse, before any work, a config that does not map the table ``task``'s population comes from
    (``crmscore top lead`` with the retail config said "table 'leads' is not configured: no data to
    take a date from")."""
    needed = MAIN_TABLE[task]
    if getattr(config.tables, needed) is not None:
        return
    mapped = [name for name in type(config.tables).model_fields if getattr(config.tables, name) is not None]
    where = f" ({config.path})" if config.path else ""
    raise ValueError(
        f"the {task.replace('_', ' ')} model scores the rows of table '{needed}', which config {config.name!r}{where} "
        f"does not map (tables.{needed}; it maps {', '.join(mapped) or 'no table'}): use the config of that data, "
        "the one the model was trained with"
    )


def champion_population(
    config: Config,
    task: str,
    *,
    as_of: Any = None,
    tables: CanonicalTables | None = None,
    allow_empty: bool = False,
    step: Callable[[str], None] | None = None,
    version: str | None = None,
) -> ChampionPopulation:
    """Load ``task``'s champion and compute its population's features at ``as_of`` (default: the last
    row of the task's main table, "now" for a nightly job), as the model was trained to read them.

    ``step``, if given, announces the features once the champion has loaded (a registry's error comes
    before any step line). ``version``: a registered version instead of the champion.

    Raises
    ------
    training.pyfunc.NoChampionError
        No champion model is registered for ``task``.
    features.pipeline.EmptyPopulationError
        The population at ``as_of`` is empty and ``allow_empty`` is false.
    """
    check_task_table(config, task)
    scorer, info = load_champion(config, task, version=version)
    model_config, settings_warning = scoring_config(config, task, info)
    if step is not None:
        step(("reading the tables and " if tables is None else "") + "the population's features")
    if tables is None:
        tables = load_tables(config)
    if as_of is None:
        as_of = tables.last_timestamp(MAIN_TABLE[task])
    features = population_features(
        tables.with_vocabulary(scorer.vocabulary), task, as_of=as_of, model_config=model_config
    ).reset_index(drop=True)
    if not allow_empty:
        check_population(len(features), tables, task, as_of=as_of, mc=model_config)
    return ChampionPopulation(scorer, info, model_config, tables, as_of, features, settings_warning)


def score_batch(
    config: Config,
    task: str,
    *,
    as_of: dt.date | dt.datetime | str,
    out: str | Path,
    explain: bool = False,
    tables: CanonicalTables | None = None,
    allow_empty: bool = False,
    progress: Callable[[str], None] | None = None,
    version: str | None = None,
) -> BatchScores:
    """Score the whole population of ``task`` at ``as_of`` with the champion, or a registered
    ``version`` (a past one's scores again, for an audit; ``progress``: a callback given each step's
    line, ``[2/3   4.1s] scoring ...``, as ``train`` prints them).

    Columns: entity id, ``as_of``, ``probability``, ``tier`` (or ``grade``), the task's money
    values, ``model_name``, ``model_version`` and, with ``explain``, ``reasons`` (a JSON list of
    ``{"text", "feature", "value", "impact"}`` per row: the features that raise the score most) and
    ``counter_reasons`` (the same for the features that lower it most), each ``top_k_reasons`` long.

    Returns the row count, the path and the drift of the batch's features from the training rows
    (empty for an empty population or a model trained before drift profiles).

    Raises
    ------
    training.pyfunc.NoChampionError
        No champion model is registered for ``task``.
    features.pipeline.EmptyPopulationError
        The population at ``as_of`` is empty and ``allow_empty`` is false; nothing is written.
    """
    task = normalize_task(task)
    check_output(out, suffixes=TABLE_SUFFIXES)
    step = Steps(progress, 3)
    population = champion_population(
        config, task, as_of=as_of, tables=tables, allow_empty=allow_empty, step=step, version=version
    )
    scorer, info, features, tables = population.scorer, population.info, population.features, population.tables
    k = population.model_config.top_k_reasons
    step(f"scoring {len(features):,} rows" + (" with reasons" if explain else ""))
    scores, drift, shift = score_population(scorer, features, as_of=as_of, k=k, explain=explain, counter_k=k)
    step(f"writing {out}")
    scores.insert(1, "as_of", features["as_of"].to_numpy() if "as_of" in features.columns else pd.Timestamp(as_of))
    reasons_as_json(scores)
    scores["model_name"] = info["model_name"]
    scores["model_version"] = info["version"]
    return BatchScores(
        rows=len(scores),
        out=write_atomic(scores, out),
        drift=drift,
        population_shift=shift,
        settings_warning=population.settings_warning,
        **batch_facts(info, tables, task, as_of),
    )
