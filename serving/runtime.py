"""What the scoring API serves from: the champion of each task and its latest feature snapshot.

A :class:`State` is built whole (models loaded, snapshot rows indexed by id into one numpy
matrix per task, the churn list pre-scored) and never changed afterwards. :class:`Runtime`
holds one reference to the current state; a reload builds a new state and swaps the
reference in one assignment, so a request that has already read the old state finishes on it.

The hot path of scoring by id is a dict lookup, a numpy row gather and
``Scorer.score_matrix`` on the snapshot's raw scores, computed when the snapshot is loaded, and
for reasons on its SHAP values (:class:`SnapshotContributions`), computed for every row once,
after the load, by a background pass, or for a row asked for before that pass reached it: no
pandas and no tree pass per request once a row's values are there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import tempfile
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.config import FEATURE_SETTINGS, Config, population_rule
from features.pipeline import (
    ATTRIBUTES_VOCABULARY,
    SNAPSHOT_DATA_UNTIL_KEY,
    SNAPSHOT_SETTINGS_KEY,
    CompiledQueries,
    snapshot_dir,
)
from features.timebase import as_of_text
from models.catalog import scoring_config
from models.drift import FeatureDrift, drift_overview
from models.scorer import rows_at
from serving import lists
from serving.posted_rules import PostedRule, posted_rules
from serving.posted_rules import describe as describe_posted_rules

__all__ = [
    "TASKS",
    "ModelUnavailable",
    "RequestError",
    "Runtime",
    "Snapshot",
    "SnapshotContributions",
    "State",
    "TaskModel",
    "build_state",
    "changed_tasks",
    "scores_then",
    "as_posted_histories",
    "at_risk",
    "history_features",
    "ids_explained",
    "ranked_list",
    "load_snapshot",
    "models_info",
    "score_ids",
    "score_posted",
    "snapshot_dir",
    "trained_config",
]

TASKS: tuple[str, ...] = ("churn", "next_purchase", "lead")
# The CLI spells the tasks with a hyphen.
_CLI_NAME = {"churn": "churn", "next_purchase": "next-purchase", "lead": "lead"}

# A child of BentoML's logger, which its server logging prints at INFO (the root logger is at WARNING).
LOG = logging.getLogger("bentoml.crmscore")

Loader = Callable[[Config, str], tuple[Any, dict[str, Any]]]
# (config, task) -> the champion's registry facts, without loading it: what a reload compares.
Peek = Callable[[Config, str], dict[str, Any]]


class ModelUnavailable(LookupError):
    """A task without a champion or without a snapshot; the message says how to make one."""


class RequestError(ValueError):
    """A request the API refuses with a 4xx; ``field`` is the request field it names."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.field, self.status = message, field, status


# Rows whose SHAP values a load computes at once, which also checks the model can explain the
# snapshot before it serves it; the rest come from the background pass or the first request.
EAGER_ROWS = 256
# Rows per step of the background pass: a step holds the GIL-free tree passes of that many rows.
FILL_ROWS = 2_000


class SnapshotContributions:
    """The SHAP values of a snapshot's rows (``Scorer.contributions``), computed when first needed.

    Indexed like the array it stands for (``contrib[rows]``, ``contrib[row]``): rows not yet
    computed are computed then and kept. :meth:`fill` computes the rest, a block at a time, which
    the service runs in a background thread after each load. A load used to compute every row
    before serving: ~1 ms a customer on one thread for the models with a weekly hazard head (its 13
    tree passes), 4 s for the bundled churn snapshot and 17 minutes for a million churn customers, where
    the raw scores a request without reasons needs take ~0.04 ms a customer. Values do not depend
    on which rows are computed together, so a row's reasons are the same whoever computed it.
    """

    def __init__(self, scorer: Any, matrix: np.ndarray, as_of: str) -> None:
        self._scorer, self._matrix, self._as_of = scorer, matrix, as_of
        # np.empty of a large array maps pages that hold no memory until written.
        self._values = np.empty((len(matrix), matrix.shape[1] + 1), dtype=np.float64)
        self._done = np.zeros(len(matrix), dtype=bool)

    @property
    def computed(self) -> int:
        """Rows whose values are there."""
        return int(np.count_nonzero(self._done))

    def ready(self, rows: Sequence[int]) -> bool:
        """Whether every one of ``rows`` has its values (reading them then runs no tree pass)."""
        return bool(self._done[np.asarray(rows, dtype=np.intp)].all()) if len(rows) else True

    def __getitem__(self, rows: Any) -> np.ndarray:
        positions = np.asarray(rows, dtype=np.intp)
        flat = positions.reshape(-1)
        missing = flat[~self._done[flat]]
        if len(missing):
            self._compute(np.unique(missing))
        return self._values[positions]

    def _compute(self, rows: np.ndarray) -> None:
        values = self._scorer.contributions(self._matrix[rows], self._as_of)
        self._values[rows] = values
        self._done[rows] = True  # after the values: a reader that sees the flag sees them

    def fill(self, *, rows: int = FILL_ROWS, keep_going: Callable[[], bool] = lambda: True) -> bool:
        """Compute every row not yet computed, ``rows`` at a time, while ``keep_going()``; True when all are."""
        for start in range(0, len(self._done), rows):
            if not keep_going():
                return False
            todo = np.flatnonzero(~self._done[start : start + rows]) + start
            if len(todo):
                self._compute(todo)
        return True


@dataclass(frozen=True)
class Snapshot:
    """The rows of one feature snapshot, as the model's input matrix, indexed by entity id."""

    path: str
    as_of: str
    ids: np.ndarray
    index: Mapping[str, int]
    matrix: np.ndarray
    # ``Scorer.raw_score`` of every row, at the snapshot's date: what a score without reasons reads.
    raw: np.ndarray = field(repr=False)
    # SHAP values of every row: the snapshot does not change until a reload, so each row's tree
    # passes are done once and a request with reasons only gathers rows (SnapshotContributions).
    contrib: SnapshotContributions = field(repr=False)
    frame: pd.DataFrame = field(repr=False)
    # How far the snapshot's features have moved from the model's training rows (models.drift).
    drift: tuple[FeatureDrift, ...] = field(default=(), repr=False)
    # The snapshot is the population at ``as_of``: its anchor (``Scorer.population_shift``; 0 for
    # models without one) applies to every row scored from it, and to posted records.
    population_shift: float = 0.0
    # Row -> the sentences of its category values no training row had (scored as missing), which
    # the row's score carries as ``warnings`` (``Scorer.unseen_warnings``).
    warnings: Mapping[int, tuple[str, ...]] = field(default_factory=dict, repr=False)
    # Row -> {feature: value} of those same values (``Scorer.unseen_rows``), named in the reasons.
    unseen: Mapping[int, Mapping[str, str]] = field(default_factory=dict, repr=False)
    # The last row of the data the snapshot was built from (its metadata; None before 2026-12-07).
    data_until: str | None = None


@dataclass(frozen=True)
class TaskModel:
    """One task's champion, its registry facts and its snapshot (None when there is none)."""

    task: str
    scorer: Any
    info: Mapping[str, Any]
    snapshot: Snapshot | None
    snapshot_error: str | None = None
    scored: pd.DataFrame | None = field(default=None, repr=False)
    # The configuration the model was trained with (from the registry); features of posted
    # records are computed with it. The serving config when the registry does not hold one.
    config: Config = field(default=None, repr=False)  # type: ignore[assignment]
    # When the model and snapshot were loaded (UTC, ISO), and the snapshot file's identity then
    # (None without one): a reload keeps the task whole while its champion and this file are the same.
    loaded_at: str = ""
    snapshot_file: tuple[int, int, int] | None = field(default=None, repr=False)
    # The lists' ``since``: the population at an earlier date scored by this champion, by date (a
    # reload that keeps the task keeps them; one that loads it again starts empty).
    scored_then: dict[str, pd.DataFrame | None] = field(default_factory=dict, repr=False, compare=False)
    # What the lists of ``scored`` filter on (``lists.filterable``), for /models: worked out once per load,
    # not per call (value counts of every text attribute: 6 ms for 51,000 customers, on the event loop).
    list_filters: Mapping[str, Any] | None = field(default=None, repr=False)
    # The features the feature code computes from a history (not attributes): :func:`computed_features`.
    computed: frozenset[str] | None = field(default=None, repr=False, compare=False)
    # The config's row filters of the task's line tables, rewritten onto posted fields (``posted_rules``).
    posted_rules: tuple[PostedRule, ...] = field(default=(), repr=False, compare=False)


@dataclass(frozen=True)
class State:
    """Everything one request reads; built whole, then never changed."""

    models: Mapping[str, TaskModel]
    missing: Mapping[str, str]
    loaded_at: str

    def model(self, task: str) -> TaskModel:
        """The task's model, or :class:`ModelUnavailable` saying which ``crmscore train`` to run."""
        if task not in self.models:
            raise ModelUnavailable(self.missing.get(task) or _no_champion(task))
        return self.models[task]

    def snapshot(self, task: str) -> tuple[TaskModel, Snapshot]:
        """The task's model and snapshot, or :class:`ModelUnavailable` saying how to make the missing one."""
        model = self.model(task)
        if model.snapshot is None:
            raise ModelUnavailable(model.snapshot_error or f"no feature snapshot for {task}")
        return model, model.snapshot


def _no_champion(task: str) -> str:
    return (
        f"no champion model for {task}: train one with "
        f"`crmscore train {_CLI_NAME[task]} --config <config.yaml>` (or `crmscore demo`)"
    )


def check_snapshot_settings(path: Path, task: str, info: Mapping[str, Any], metadata: Mapping[bytes, bytes]) -> None:
    """Refuse a snapshot built with other :data:`features.config.FEATURE_SETTINGS` than its model was
    trained with: its rows would be another population, or features built for another horizon, and
    the model's scores of them wrong without a sign. A snapshot written before 2026-12-07, or a model
    registered before then, carries none: nothing to compare.

    Raises
    ------
    ValueError
        Naming the snapshot, each setting both ways, and how to rebuild it.
    """
    stored = metadata.get(SNAPSHOT_SETTINGS_KEY)
    built, trained = (json.loads(stored) if stored else {}), info.get("settings") or {}
    differ = [
        name for name in FEATURE_SETTINGS[task] if name in built and name in trained and built[name] != trained[name]
    ]
    if differ:
        raise ValueError(
            f"snapshot {path}: built with "
            + ", ".join(f"models.{task}.{name} {built[name]}" for name in differ)
            + f", but {info.get('model_name')} v{info.get('version')} was trained with "
            + ", ".join(f"{name} {trained[name]}" for name in differ)
            + ": its rows are not the population or features the model reads; write the snapshot again with the "
            "model's settings (`crmscore features --snapshots` from the config it was trained with), or retrain"
        )


def load_snapshot(path: Path, scorer: Any, info: Mapping[str, Any] | None = None) -> Snapshot:
    """Read a snapshot written by ``features.pipeline.write_snapshot`` and index it by entity id.

    When the file holds several cut-offs, only the latest ``as_of`` is kept.

    Raises
    ------
    ValueError
        The snapshot lacks a column the model needs (named by ``Scorer.prepare``), the id column
        or ``as_of``; or it was built with other settings than the model (``info["settings"]``) was
        trained with, :func:`check_snapshot_settings`.
    """
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:  # a file cut short or not Parquet: say which task's and where
        raise ValueError(
            f"snapshot {path} ({scorer.task}) cannot be read as Parquet ({exc}); write it again with "
            "`crmscore features --config <config.yaml> --as-of <date> --snapshots`"
        ) from exc
    check_snapshot_settings(path, scorer.task, info or {}, table.schema.metadata or {})
    frame = table.to_pandas()
    entity = scorer.entity
    if entity not in frame.columns:
        raise ValueError(f"snapshot {path}: column '{entity}' is missing")
    if "as_of" not in frame.columns or frame["as_of"].isna().all():
        raise ValueError(f"snapshot {path}: column 'as_of' (the cut-off of the features) is missing or empty")
    latest = frame["as_of"].max()
    frame = frame[frame["as_of"] == latest]
    # The cut-off with its time of day, as the commands' files give it (2011-12-09 12:50:00): a date
    # alone made the API's lists and the CLI's disagree on the as_of column of one list.
    as_of = as_of_text(latest)
    frame = frame.drop_duplicates(subset=entity, keep="last").reset_index(drop=True)
    ids = frame[entity].astype(str).to_numpy()
    matrix = np.ascontiguousarray(scorer.prepare(frame))
    raw = scorer.raw_score(matrix, as_of)
    contrib = SnapshotContributions(scorer, matrix, as_of)
    contrib[np.arange(min(len(matrix), EAGER_ROWS))]
    warnings = scorer.unseen_warnings(frame, matrix)
    return Snapshot(
        path=str(path),
        as_of=as_of,
        ids=ids,
        index={customer: row for row, customer in enumerate(ids)},
        matrix=matrix,
        raw=raw,
        contrib=contrib,
        frame=frame,
        drift=tuple(scorer.drift(matrix, frame)),
        population_shift=scorer.population_shift(matrix, as_of=as_of, raw=raw),
        warnings={row: tuple(w) for row, w in warnings.items()},
        unseen=scorer.unseen_rows(frame, matrix),
        data_until=((table.schema.metadata or {}).get(SNAPSHOT_DATA_UNTIL_KEY) or b"").decode() or None,
    )


def _list_frame(model: TaskModel) -> pd.DataFrame | None:
    """The snapshot pre-scored without reasons: the frame the lists select from (``/at_risk``, ``/top``)."""
    if model.snapshot is None:
        return None
    snapshot = model.snapshot
    return lists.scored_for_list(model.scorer, snapshot.frame, snapshot.matrix, as_of=snapshot.as_of, raw=snapshot.raw)


def trained_config(config: Config, task: str, info: Mapping[str, Any]) -> Config | None:
    """The configuration a registered model was trained with, or None when the registry lacks it.

    Training tags each model version with ``config`` (the config as JSON; since 2026-12-07 a
    compact form marked ``truncated`` when too long, before cut at 4,900 characters) and logs
    ``config.json`` in its run; the tag is read first, the artifact when the tag is missing,
    cut or compact. The serving config may be another data set's (the retail config
    serving the lead model), so posted records must use the model's own ``tables`` and
    ``models.<task>`` sections.
    """
    name, version, run_id = info.get("model_name"), info.get("version"), info.get("run_id")
    if not name or version is None:
        return None
    from mlflow.tracking import MlflowClient

    data = None
    client = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.registry_uri)
    try:
        tag = (client.get_model_version(name, str(version)).tags or {}).get("config")
        data = json.loads(tag) if tag else None
        if isinstance(data, dict) and data.get("truncated"):
            data = None  # a config too long for its tag: the tag holds a compact form, the artifact the whole
    except Exception:  # noqa: BLE001 - a cut or missing tag: fall back to the run artifact
        data = None
    if data is None and run_id:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                data = json.loads(Path(client.download_artifacts(run_id, "config.json", tmp)).read_text())
        except Exception:  # noqa: BLE001 - no artifact: the caller uses the serving config
            data = None
    if not isinstance(data, dict):
        return None
    try:
        return Config.model_validate(data)
    except ValueError:
        return None


def _default_loader(config: Config, task: str) -> tuple[Any, dict[str, Any]]:
    try:
        from training.pyfunc import load_champion
    except ImportError as exc:
        raise ModelUnavailable(f"the training package cannot be imported ({exc}); {_no_champion(task)}") from exc
    return load_champion(config, task)


def _default_peek(config: Config, task: str) -> dict[str, Any]:
    from training.pyfunc import champion_info

    return champion_info(config, task)


def _champion_errors() -> tuple[type[BaseException], ...]:
    try:
        from training.pyfunc import NoChampionError
    except ImportError:  # training not importable: every task is simply without a champion
        return (ModelUnavailable,)
    return (NoChampionError, ModelUnavailable)


def _missing(task: str, exc: BaseException) -> str:
    return f"{exc} ({_no_champion(task)})" if "crmscore train" not in str(exc) else str(exc)


def _file_identity(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, modification time in ns) of a file, None when there is none: a snapshot
    rewritten in place or replaced by a rename (``write_snapshot``) gets another identity."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _same_version(info: Mapping[str, Any], loaded: Mapping[str, Any]) -> bool:
    keys = ("model_name", "version", "run_id")
    return all(str(info.get(key)) == str(loaded.get(key)) for key in keys) and info.get("version") is not None


def build_state(
    config: Config,
    *,
    loader: Loader | None = None,
    tasks: Sequence[str] = TASKS,
    previous: State | None = None,
    peek: Peek | None = None,
) -> State:
    """Load each task's champion and snapshot; a task without a champion is listed in ``missing``.

    Parameters
    ----------
    config
        The run configuration (tracking URI, output folder, serving options).
    loader
        ``(config, task) -> (scorer, info)``; by default ``training.pyfunc.load_champion``.
    tasks
        The tasks to load.
    previous, peek
        The state serving now, and ``(config, task) -> info`` (the champion's registry facts without its
        files, ``training.pyfunc.champion_info``). A task of ``previous`` whose champion is the same
        version and whose snapshot file is the same file is kept as it is, with the registry's facts
        read again (a hand promotion's note may have changed): loading the model and taking the
        snapshot's SHAP values again would give the same state, seconds later. Without ``peek``
        every task is loaded again.
    """
    no_champion = _champion_errors()
    loader = loader or _default_loader
    models: dict[str, TaskModel] = {}
    missing: dict[str, str] = {}
    folder = snapshot_dir(config)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    for task in tasks:
        path = folder / f"{task}.parquet"
        identity = _file_identity(path)
        loaded = previous.models.get(task) if previous is not None else None
        if peek is not None and loaded is not None and identity is not None and loaded.snapshot_file == identity:
            try:
                info = peek(config, task)
            except no_champion as exc:
                missing[task] = _missing(task, exc)
                continue
            if _same_version(info, loaded.info):
                models[task] = dataclasses.replace(loaded, info=dict(info))
                continue
        try:
            scorer, info = loader(config, task)
        except no_champion as exc:
            missing[task] = _missing(task, exc)
            continue
        snapshot, snapshot_error = None, None
        if identity is not None:
            snapshot = load_snapshot(path, scorer, info)
        else:
            snapshot_error = (
                f"no feature snapshot for {task} at {path.resolve()}: write one with "
                f"`crmscore features --config <config.yaml> --as-of <date> --snapshots` (every task's, into "
                f"{path.parent}; or `--task {task} --out {path}`, or `crmscore demo`), "
                "then reload"
            )
        model = TaskModel(
            task=task,
            scorer=scorer,
            info=dict(info),
            snapshot=snapshot,
            snapshot_error=snapshot_error,
            config=trained_config(config, task, info) or config,
            loaded_at=now,
            snapshot_file=identity,
        )
        scored = _list_frame(model)
        filters = None if scored is None else lists.filterable(scored, lists.list_columns(scorer), scorer.tier_names)
        rules = tuple(posted_rules(model.config, task))
        models[task] = dataclasses.replace(model, scored=scored, list_filters=filters, posted_rules=rules)
    return State(models=models, missing=missing, loaded_at=now)


class Runtime:
    """Holds the current :class:`State`; :meth:`reload` replaces it atomically.

    Readers take ``runtime.state`` once per request and use only that object.
    """

    def __init__(
        self,
        config: Config,
        *,
        loader: Loader | None = None,
        peek: Peek | None = None,
        background: bool | None = None,
    ) -> None:
        self.config = config
        self._loader = loader
        # A reload keeps the tasks whose champion and snapshot file are unchanged; with a loader of
        # its own (tests) and no peek, it loads everything again.
        self._peek = peek if peek is not None or loader is not None else _default_peek
        self._reload_lock = threading.Lock()
        # The background pass of the snapshots' SHAP values: serving.explain_snapshots unless given.
        self._background = config.serving.explain_snapshots == "background" if background is None else background
        self.explaining: threading.Thread | None = None  # the background pass, and the snapshots it was given
        self._explaining: list[Snapshot] = []
        self.state: State = build_state(config, loader=loader)
        self._explain_snapshots()

    def _explain_snapshots(self) -> None:
        """Compute the SHAP values of the served snapshots' rows in a daemon thread, one snapshot after
        another, so that requests with reasons find them (:class:`SnapshotContributions`); a snapshot
        no longer served (a reload replaced it) is left where it is. Without ``background``, nothing:
        each row is computed when first asked for."""
        if not self._background:
            return
        pending = [m.snapshot for m in self.state.models.values() if m.snapshot is not None]
        pending = [s for s in pending if s.contrib.computed < len(s.ids)]
        previous = self.explaining
        running = previous is not None and previous.is_alive()
        if not pending or (running and all(any(s is p for p in self._explaining) for s in pending)):
            return  # nothing left, or a pass running through these already (a reload that kept them)

        def served(snapshot: Snapshot) -> bool:
            return any(m.snapshot is snapshot for m in self.state.models.values())

        def run() -> None:
            if previous is not None:  # one pass at a time: it stops at a snapshot no longer served
                previous.join()
            for snapshot in pending:
                try:
                    snapshot.contrib.fill(keep_going=lambda snapshot=snapshot: served(snapshot))
                except Exception as exc:  # a request for such a row computes it, and gets the error
                    LOG.warning("SHAP values of the %s snapshot: %s: %s", snapshot.path, type(exc).__name__, exc)

        self._explaining = pending
        self.explaining = threading.Thread(target=run, name="crmscore-snapshot-shap", daemon=True)
        self.explaining.start()

    def reload(self) -> State:
        """Build a new state from the registry and snapshots, then swap it in; returns it.

        A task whose champion is the same registered version and whose snapshot is the same file as
        in the current state is kept (its ``loaded_at`` stays); the others are loaded again.

        Raises
        ------
        ModelUnavailable
            The new state could not be built (unreadable model files, a broken snapshot); the
            current state keeps serving and the message says why.
        """
        with self._reload_lock:  # two reloads at once would only load everything twice
            try:
                state = build_state(self.config, loader=self._loader, previous=self.state, peek=self._peek)
            except Exception as exc:
                raise ModelUnavailable(f"reload failed, still serving the models loaded before: {exc}") from exc
            self.state = state
            self._explain_snapshots()
        return state

    def refresh(
        self,
        first: Callable[[], None] | None = None,
        on_change: Callable[[list[str], State], None] | None = None,
    ) -> str | None:
        """``first()`` (the service reads its API keys again), then :meth:`reload`, whichever fails;
        ``on_change(tasks, state)`` after a reload that loaded a task again, or found one new or gone
        (:func:`changed_tasks`), not after one that kept everything. Returns the
        :class:`ModelUnavailable` messages of what failed, joined (None when nothing did)."""
        errors = []
        if first is not None:
            try:
                first()
            except ModelUnavailable as exc:
                errors.append(str(exc))
        before = self.state
        try:
            after = self.reload()
        except ModelUnavailable as exc:
            errors.append(str(exc))
        else:
            changed = changed_tasks(before, after)
            if changed and on_change is not None:
                on_change(changed, after)
        return "; ".join(errors) or None

    def watch(
        self,
        every_s: float,
        *,
        on_change: Callable[[list[str], State], None],
        on_error: Callable[[str], None],
        stop: threading.Event,
        first: Callable[[], None] | None = None,
    ) -> threading.Thread:
        """Reload every ``every_s`` seconds in a daemon thread until ``stop`` is set: a new champion
        (``crmscore train``'s gate, ``crmscore promote``) or snapshot file (the nightly ``crmscore
        features``) is served without a call to ``/reload``.

        Each round is a :meth:`refresh` with ``first`` and ``on_change``; ``on_error(message)`` when
        ``first`` or the reload failed (what was loaded keeps serving), once until the message changes.
        """

        def loop() -> None:
            failed = None
            while not stop.wait(every_s):
                error = self.refresh(first, on_change)
                if error != failed and error is not None:
                    on_error(error)
                failed = error

        thread = threading.Thread(target=loop, name="crmscore-reload-watch", daemon=True)
        thread.start()
        return thread


def changed_tasks(before: State, after: State) -> list[str]:
    """Tasks whose model ``after`` loaded again (a new champion version or snapshot file), or that
    one state serves and the other does not; a task kept as loaded (the same scorer and snapshot
    objects, :func:`build_state`) is unchanged."""
    served = set(before.models) | set(after.models)
    return sorted(
        task
        for task in served
        if task not in before.models
        or task not in after.models
        or after.models[task].scorer is not before.models[task].scorer
        or after.models[task].snapshot is not before.models[task].snapshot
    )


# -- posted histories -> the same feature code as training ------------------------------------


def _column(values: list[Any]) -> pd.Series:
    """A column of posted values: numbers when every present value is a number, else strings."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pd.Series(values, dtype="float64")
    return pd.Series([None if v is None else str(v) for v in values], dtype="string")


def _frame(rows: list[dict[str, Any]], columns: Sequence[str], types: Mapping[str, str]) -> pd.DataFrame:
    data = {}
    for name in columns:
        values = [row.get(name) for row in rows]
        kind = types.get(name)
        if kind == "timestamp":
            data[name] = pd.to_datetime(pd.Series(values, dtype="object"), utc=True).dt.tz_localize(None)
            data[name] = data[name].astype("datetime64[us]")
        elif kind == "float64":
            data[name] = pd.to_numeric(pd.Series(values, dtype="object")).astype("float64")
        elif kind == "string":
            data[name] = pd.Series([None if v is None else str(v) for v in values], dtype="string")
        else:
            data[name] = _column(values)
    return pd.DataFrame(data)


def as_posted_histories(lines: pd.DataFrame, attributes: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Canonical transaction lines (``customer_id``, ``timestamp``, ``amount``, ``order_id``,
    ``product_id``, ``quantity``) as the ``customers`` of a posted-history call: one record per
    customer, in the order of their first line, with each of ``attributes`` the customer's most
    frequent value of that column (the inverse of what :func:`history_features` builds)."""
    out = []
    for cid, rows in lines.groupby("customer_id", sort=False):
        purchases = [
            {
                "timestamp": r.timestamp.isoformat(),
                "amount": float(r.amount),
                "order_id": str(r.order_id),
                "product_id": str(r.product_id),
                "quantity": float(r.quantity),
            }
            for r in rows.itertuples()
        ]
        values = {name: str(rows[name].mode()[0]) for name in attributes}
        out.append({"customer_id": str(cid), "attributes": values, "purchases": purchases})
    return out


_TYPES = {
    "customer_id": "string",
    "lead_id": "string",
    "order_id": "string",
    "product_id": "string",
    "category": "string",
    "channel": "string",
    "event_type": "string",
    "timestamp": "timestamp",
    "created_at": "timestamp",
    "amount": "float64",
    "quantity": "float64",
    "value": "float64",
}


# Names an attribute may not take: the feature table's own columns.
_RESERVED = frozenset({"as_of", "customer_id", "lead_id", "created_at", "converted", "converted_at", *_TYPES})


def _configured_columns(config: Config, table: str) -> list[str] | None:
    spec = getattr(config.tables, table)
    if spec is None:
        return None
    attributes = [] if spec.attributes == "*" else [a for a in spec.attributes if a not in spec.exclude]
    return [*spec.columns, *attributes]


def attribute_types(scorer: Any) -> dict[str, str]:
    """The column type of each attribute a model reads, for :func:`history_features`: text for its
    categorical features, numbers for the others (a posted column has the type the model was
    trained on, and the feature SQL compiled for one call serves the next)."""
    return {name: "string" if name in scorer.categories else "float64" for name in scorer.feature_names}


# The feature SQL of posted records, reused across calls with the same cut-off, columns and model
# vocabulary: building and compiling it is most of the time of a posted call.
COMPILED = CompiledQueries()


def history_features(
    config: Config,
    task: str,
    *,
    as_of: dt.datetime,
    customers: Sequence[Mapping[str, Any]] = (),
    leads: Sequence[Mapping[str, Any]] = (),
    vocabulary: Mapping[str, Sequence[str]] | None = None,
    attribute_types: Mapping[str, str] | None = None,
    compiled: CompiledQueries | None = COMPILED,
) -> pd.DataFrame:
    """Features of posted customers (churn, next purchase) or leads, by the training feature code.

    The posted records become in-memory canonical tables on a fresh DuckDB connection with the
    columns the config maps (so optional columns absent from a request are nulls, as in training),
    and ``features.pipeline.population_features`` computes the features as of ``as_of``.
    ``vocabulary`` is the model's touchpoint vocabulary (``Scorer.vocabulary``): the
    event types and channels with columns, so that a customer posting emails only gets the visit
    columns too, as in training (without it, the posted events' own types make the columns).
    ``attribute_types``: ``"float64"`` or ``"string"`` per attribute name (:func:`attribute_types`),
    so that an attribute's column has the model's type whatever a call posts (``35`` or ``"35"``,
    or nulls only); other attributes are numbers when every posted value is one, else text.
    ``compiled``: where the feature SQL is kept between calls (None: built afresh every call).

    Returns
    -------
    One row per entity in the task's population at ``as_of``; posted entities outside it
    (e.g. no purchase in the churn lookback window) have no row.
    """
    from features.pipeline import population_features
    from features.sources import CanonicalTables

    for record in (*customers, *leads):
        reserved = sorted(set(record.get("attributes") or {}) & _RESERVED)
        if reserved:
            raise ValueError(f"attributes: {reserved} name columns the feature code computes; rename them")

    types = {**(attribute_types or {}), **_TYPES}
    con = _posted_connection(config)
    tables = CanonicalTables(con=con).with_vocabulary(vocabulary)
    if task in ("churn", "next_purchase"):
        lines, events, people = [], [], []
        tx_attributes = set(_configured_columns(config, "transactions") or ()) - set(_TYPES) - _RESERVED
        if vocabulary is not None and ATTRIBUTES_VOCABULARY in vocabulary:
            tx_attributes |= set(vocabulary[ATTRIBUTES_VOCABULARY])
        for customer in customers:
            cid, attributes = customer["customer_id"], dict(customer.get("attributes") or {})
            people.append({"customer_id": cid, **attributes})
            # Transaction attributes (country...) are columns of the transactions, as in training; with a
            # customers table, its own columns are the customers' (a name in both: both, the same value).
            extra = (
                attributes
                if config.tables.customers is None
                else {k: attributes[k] for k in tx_attributes if k in attributes}
            )
            for purchase in customer["purchases"]:
                line = {**extra, **purchase, "customer_id": cid}
                if line.get("order_id") is None:  # a line without an order id is an order of its own
                    line["order_id"] = f"{cid}@{pd.Timestamp(line['timestamp']).isoformat()}"
                lines.append(line)
            events.extend({**event, "customer_id": cid} for event in customer.get("events") or ())
        columns = _configured_columns(config, "transactions") or ["customer_id", "timestamp", "amount"]
        columns += sorted({k for line in lines for k in line} - set(columns))
        tables.transactions = con.create_table("transactions", _frame(lines, columns, types), temp=True, overwrite=True)
        if config.tables.customers is not None:
            people_columns = [c for c in _configured_columns(config, "customers") or [] if c != "signup_at"]
            people_columns += sorted({k for p in people for k in p} - set(people_columns))
            tables.customers = con.create_table(
                "customers", _frame(people, people_columns, types), temp=True, overwrite=True
            )
        if config.tables.events is not None:
            event_columns = _configured_columns(config, "events") or ["customer_id", "timestamp", "event_type"]
            tables.events = con.create_table("events", _frame(events, event_columns, _TYPES), temp=True, overwrite=True)
    else:
        records, events = [], []
        for lead in leads:
            records.append(
                {**dict(lead.get("attributes") or {}), "lead_id": lead["lead_id"], "created_at": lead["created_at"]}
            )
            events.extend({**event, "lead_id": lead["lead_id"]} for event in lead.get("events") or ())
        columns = ["lead_id", "created_at", *sorted({k for r in records for k in r} - {"lead_id", "created_at"})]
        tables.leads = con.create_table("leads", _frame(records, columns, types), temp=True, overwrite=True)
        if config.tables.lead_events is not None or events:
            event_columns = ["lead_id", "timestamp", "event_type", "channel"]
            tables.lead_events = con.create_table(
                "lead_events", _frame(events, event_columns, _TYPES), temp=True, overwrite=True
            )
    model_config = getattr(config.models, task)
    return population_features(tables, task, as_of=as_of, model_config=model_config, compiled=compiled)


_POSTED = threading.local()


def _posted_connection(config: Config) -> Any:
    """This thread's DuckDB connection for posted records, made on its first call and kept: opening
    and closing one took ~18 ms of a ~70 ms call from the compiled-SQL cache. Each call replaces the
    tables it posts (same names) and sets its own cut-off variables, and reads only those tables."""
    con = getattr(_POSTED, "con", None)
    if con is None:
        from features.engine import connect

        con = _POSTED.con = connect(config.model_copy(update={"engine": "duckdb"}))
    return con


# -- requests: what each endpoint computes, on one state -----------------------------------------


def reasons_k(role: str | None, k: int | None, default: int, *, max_k: int, field: str = "k") -> int:
    """Reasons per item: the request's k, else the model's default for roles entitled to reasons, else 0.

    ``field`` names the request field in the error (``k``, or ``counter_k`` for counter-reasons).

    Raises
    ------
    RequestError
        403 when a role not entitled to reasons asks for k > 0.
    """
    from serving.auth import REASONS_ROLE, entitled

    may = entitled(role, REASONS_ROLE)
    if k is None:
        return min(default, max_k) if may else 0
    if k > 0 and not may:
        raise RequestError(f"reasons need role {REASONS_ROLE!r} or above: ask with {field}=0", field=field, status=403)
    return k


def _item(model: TaskModel, key: str, result: dict[str, Any], warnings: Sequence[str] = ()) -> dict[str, Any]:
    item = {"id": key, **result, "model_name": model.scorer.model_name, "model_version": model.scorer.version}
    if warnings:
        item["warnings"] = list(warnings)
    return item


def check_batch(n: int, max_batch: int, field: str, what: str) -> None:
    """:class:`RequestError` for more than ``serving.max_batch`` ids or records in one call."""
    if n > max_batch:
        raise RequestError(f"{n} {what} is over the maximum of {max_batch} per call", field=field)


def check_posted_rows(records: Sequence[Any], max_rows: int | None, field: str) -> None:
    """:class:`RequestError` for more purchases and events in one call than ``serving.max_posted_rows``
    (records as posted: lines that are not a list, of a record that is not an object, are not counted:
    the schema names them)."""
    if max_rows is None:
        return
    rows = sum(
        len(lines)
        for record in records
        if isinstance(record, Mapping)
        for lines in (record.get("purchases"), record.get("events"))
        if isinstance(lines, list)
    )
    if rows > max_rows:
        raise RequestError(
            f"{rows:,} purchases and events in one call is over the maximum of {max_rows:,} "
            "(serving.max_posted_rows); send fewer records per call",
            field=field,
        )


def ids_explained(state: State, task: str, ids: Sequence[str], *, k: int, counter_k: int = 0) -> bool:
    """Whether :func:`score_ids` of ``ids`` would find every SHAP value it needs computed: false when it
    would run tree passes first (~1 ms a row), which an event loop should not wait on."""
    if k <= 0 and counter_k <= 0:
        return True
    model = state.models.get(task)
    if model is None or model.snapshot is None:
        return True  # an error answer, at once
    index = model.snapshot.index
    return model.snapshot.contrib.ready([row for row in map(index.get, ids) if row is not None])


def score_ids(
    state: State, task: str, ids: Sequence[str], *, k: int, max_batch: int, counter_k: int = 0
) -> dict[str, Any]:
    """Score ids from the task's snapshot; an unknown id gets a per-item error, the rest are scored."""
    from training.explain import id_hint

    check_batch(len(ids), max_batch, "ids", "ids")
    model, snapshot = state.snapshot(task)
    rows = [snapshot.index.get(key) for key in ids]
    known = [row for row in rows if row is not None]
    explain = k > 0 or counter_k > 0
    results = iter(
        model.scorer.score_matrix(
            snapshot.matrix[known],
            k=k,
            counter_k=counter_k,
            explain=explain,
            as_of=snapshot.as_of,
            contrib=snapshot.contrib[known] if explain else None,
            raw=snapshot.raw[known],
            population_shift=snapshot.population_shift,
            unseen=rows_at(snapshot.unseen, known),
        )
        if known
        else ()
    )
    entity = model.scorer.entity
    # An id outside the population may be a customer all the same (a lapsed one): the rule says who is in it.
    rule = population_rule(task, getattr(model.config.models, task)) if None in rows else ""
    items = [
        _item(model, key, next(results), snapshot.warnings.get(row, ()))
        if row is not None
        else {
            "id": key,
            "error": f"unknown {entity} {key!r}: not in the {task} snapshot as of {snapshot.as_of} ({rule})"
            + id_hint(snapshot.index, key),
        }
        for key, row in zip(ids, rows, strict=True)
    ]
    return {"task": task, "as_of": snapshot.as_of, "items": items}


def _naive_utc(value: Any) -> pd.Timestamp:
    """A posted time as the feature tables hold it: UTC without a zone (a naive time is taken as UTC)."""
    ts = pd.Timestamp(value)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _utc_moment(value: Any) -> Any:
    """:func:`_naive_utc` without pandas for the ``datetime`` a validated record holds (a line's check
    per posted line, in a quarter of the time), comparable with a naive UTC ``datetime``."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo is not None else value
    return _naive_utc(value).to_pydatetime()


def _check_unique(field_name: str, key: str, records: Sequence[Mapping[str, Any]]) -> None:
    """Refuse a batch that posts one id twice: the features would merge both records' histories
    and score each item on the union.

    Raises
    ------
    RequestError
        Naming ``<field_name>.i.<key>`` of the second record and the first one's place.
    """
    first: dict[str, int] = {}
    for i, record in enumerate(records):
        value = str(record[key])
        if value in first:
            raise RequestError(
                f"{field_name}[{i}].{key} {value!r} is also {field_name}[{first[value]}].{key}: post each "
                f"{'lead' if key == 'lead_id' else 'customer'} once, with its whole history",
                field=f"{field_name}.{i}.{key}",
            )
        first[value] = i


def _check_purchases(model: TaskModel, task: str, customers: Sequence[Mapping[str, Any]]) -> None:
    """Refuse a posted purchase line without a column the model's features are computed from.

    Such a line would make the feature (e.g. ``distinct_products``) unknown for a customer
    whose training rows always had it, and the score and reasons would rest on the gap.

    Raises
    ------
    RequestError
        Naming ``customers.i.purchases.j.<column>`` and the features that need it.
    """
    from features.breadth import FEATURES_FROM

    used = set(model.scorer.feature_names)
    needed = {column: [f for f in features if f in used] for column, features in FEATURES_FROM.items()}
    for i, customer in enumerate(customers):
        for j, purchase in enumerate(customer["purchases"]):
            if purchase["amount"] <= 0:
                continue
            for column, features in needed.items():
                if features and purchase.get(column) is None:
                    raise RequestError(
                        f"customers[{i}].purchases[{j}] has no {column}: the {task} model's features "
                        f"{', '.join(features)} are computed from it, so every purchase (amount > 0) must carry it",
                        field=f"customers.{i}.purchases.{j}.{column}",
                    )


def _check_attributes(scorer: Any, task: str, field_name: str, records: Sequence[Mapping[str, Any]]) -> None:
    """Refuse a posted attribute that is text where the model's feature of that name is a number.

    Raises
    ------
    RequestError
        Naming ``<field_name>.i.attributes.<name>`` and the value.
    """
    numeric = set(scorer.feature_names) - set(scorer.categories)
    for i, record in enumerate(records):
        for name, value in (record.get("attributes") or {}).items():
            if name in numeric and isinstance(value, str):
                try:
                    float(value)
                except ValueError:
                    raise RequestError(
                        f"{field_name}[{i}].attributes.{name} is {value!r}: the {task} model's feature {name} is a number",
                        field=f"{field_name}.{i}.attributes.{name}",
                    ) from None


def _table_columns(config: Config, task: str) -> tuple[set[str], set[str], dict[str, str]]:
    """The canonical columns, the configured attribute names and the excluded attributes (each with
    its config key) of the tables a task's posted records fill (leads; or transactions and
    customers). ``attributes: "*"`` names none: every posted attribute of such a table is a column."""
    columns, attributes, excluded = set(_RESERVED), set(), {}
    for table in ("leads",) if task == "lead" else ("transactions", "customers"):
        spec = getattr(config.tables, table)
        if spec is not None:
            columns |= set(spec.columns)
            excluded |= {a: f"tables.{table}.exclude" for a in spec.exclude}
            if spec.attributes != "*":
                attributes |= {a for a in spec.attributes if a not in spec.exclude}
    return columns, attributes, excluded


def _not_posted(task: str, field_name: str, absent: Sequence[str], unread: Collection[str]) -> RequestError:
    """The error for model attributes ``absent`` from every posted record, naming the first (and a
    posted name ``unread`` by the model that is close to it: ``contry`` for ``country``)."""
    close = lists.closest(absent[0], sorted(unread), n=1)
    return RequestError(
        f"{field_name}[0].attributes has no {absent[0]}: the {task} model's features include it"
        + (f" (and {', '.join(absent[1:6])})" if len(absent) > 1 else "")
        + "; post it in the attributes of every record"
        + (f" ({close[0]!r} was posted)" if close else ""),
        field=f"{field_name}.0.attributes.{absent[0]}",
    )


def computed_features(model: TaskModel, task: str) -> frozenset[str]:
    """The model's features that the feature code computes from a record's history, not read from its
    attributes (``recency_days``, ``days_since_created``): those of one bare record (no attributes)
    with the model's configuration, less the configured and vocabulary attributes (present as empty
    columns). Worked out at the first posted call of a load (one feature build, the SQL not cached)."""
    if model.computed is not None:
        return model.computed
    as_of = dt.datetime(2000, 1, 2)
    if task == "lead":
        records: dict[str, Any] = {"leads": [{"lead_id": "x", "created_at": as_of}]}
    else:
        line = {"timestamp": as_of, "amount": 1.0, "order_id": "o", "product_id": "p", "quantity": 1.0}
        records = {"customers": [{"customer_id": "x", "purchases": [line]}]}
    frame = history_features(
        model.config,
        task,
        as_of=as_of,
        vocabulary=model.scorer.vocabulary,
        attribute_types=attribute_types(model.scorer),
        compiled=None,
        **records,
    )
    _, configured, _ = _table_columns(model.config, task)
    attributes = configured | set((model.scorer.vocabulary or {}).get(ATTRIBUTES_VOCABULARY, ()))
    computed = frozenset(set(frame.columns) & set(model.scorer.feature_names) - attributes)
    object.__setattr__(model, "computed", computed)  # one load's fact, kept with it
    return computed


def _check_attribute_names(
    model: TaskModel, task: str, field_name: str, key: str, records: Sequence[Mapping[str, Any]]
) -> dict[str, list[str]]:
    """Check posted attribute names against the model's before any feature is computed.

    Column names are not case-sensitive in the feature engine, so ``Country`` beside the column
    ``country`` (or beside another record's ``country``) would be one column twice; an attribute
    named like a column the feature code computes would replace it. A model attribute that no
    record posts would be scored as missing for every record: the request is refused naming it,
    as when a table maps no such column. The rest is said per item, by id: an attribute the
    model does not read (a typo, or a column left out of the features) was not used, and a model
    attribute a record leaves out or posts as null was scored as missing.

    Raises
    ------
    RequestError
        Naming ``<field_name>.i.attributes.<name>``.
    """
    columns, configured, excluded = _table_columns(model.config, task)
    computed = computed_features(model, task)
    features = set(model.scorer.feature_names) - computed
    seen: dict[str, tuple[str, int]] = {c.lower(): (c, -1) for c in columns | configured}
    for i, record in enumerate(records):
        for name in record.get("attributes") or {}:
            other, j = seen.setdefault(name.lower(), (name, i))
            if other == name and (j >= 0 or other not in _RESERVED):
                continue
            if j < 0 and other in _RESERVED:
                why = f"{other!r} is a column the feature code fills itself; rename it"
            else:
                where = f"{field_name}[{j}].attributes.{other}" if j >= 0 else f"the column {other!r}"
                why = f"{name!r} is {where}; post it as {other!r} in every record"
            case = "names are not case-sensitive, and " if other != name else ""
            raise RequestError(
                f"{field_name}[{i}].attributes.{name}: {case}{why}",
                field=f"{field_name}.{i}.attributes.{name}",
            )
    posted = {name for record in records for name in record.get("attributes") or {}}
    absent = sorted(features & configured - posted)
    if absent:
        raise _not_posted(task, field_name, absent, posted - features)
    read = sorted(features & (configured | posted))
    out: dict[str, list[str]] = {}
    for record in records:
        attributes = record.get("attributes") or {}
        said = out.setdefault(str(record[key]), [])
        for name in sorted(set(attributes) - features - columns):
            if name in computed:
                said.append(
                    f"attributes.{name} is a feature the {task} model computes from the history, so the posted value "
                    "was not used"
                )
                continue
            if name in excluded:
                said.append(f"attributes.{name} is excluded from the features ({excluded[name]}), so it was not used")
                continue
            close = lists.closest(name, read, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            said.append(
                f"attributes.{name} is not a feature of the {task} model, so it was not used "
                f"({hint}its attributes: {', '.join(read) or 'none'})"
            )
        said.extend(
            f"attributes.{name} is null or not posted for this record, so it was scored as missing"
            for name in read
            if name in posted and attributes.get(name) is None
        )
    return {k: v for k, v in out.items() if v}


def _unused_events(
    config: Config, task: str, field_name: str, key: str, records: Sequence[Mapping[str, Any]]
) -> dict[str, str]:
    """Records that post events a model trained without an events table cannot read, by ``key``
    (the entity id), with a sentence: no feature of such a model comes from events, so they are
    dropped, and said to be."""
    table = "lead_events" if task == "lead" else "events"
    if getattr(config.tables, table) is not None:
        return {}
    out = {}
    for i, record in enumerate(records):
        n = len(record.get("events") or ())
        if n:
            out[str(record[key])] = (
                f"{field_name}[{i}].events: the {task} model's training config maps no {table} table, so no feature "
                f"reads events; {'the 1 posted event was' if n == 1 else f'the {n} posted events were'} not used"
            )
    return out


def _outside(task: str, mc: Any, as_of: dt.datetime, record: Mapping[str, Any] | None) -> str:
    """Why a posted record has no score: the population rule, and where the record stands against it
    (lines after ``as_of``; for churn, refunds only or a latest purchase before the lookback; for a
    lead, created after ``as_of`` or before its window)."""
    message = f"not in the {task} population at {as_of:%Y-%m-%d %H:%M} (rule: {population_rule(task, mc)})"
    if record is None:
        return message
    if task == "lead":
        created = _naive_utc(record["created_at"])
        if created > as_of:
            return message + f"; created_at {created:%Y-%m-%d %H:%M} is after as_of"
        days = (as_of - created).days
        return message + (
            f"; created_at {created:%Y-%m-%d %H:%M} is {days:,} days before as_of" if days >= mc.step_days else ""
        )
    lines = [(_naive_utc(p["timestamp"]), p["amount"]) for p in record["purchases"]]
    if not lines:
        return message + "; it posts no purchases"
    later = sum(when > as_of for when, _ in lines)
    if later:
        message += f"; {later} of its {len(lines)} posted purchases fall after as_of and are not history"
    if task == "churn":
        history = [(when, amount) for when, amount in lines if when <= as_of]
        bought = [when for when, amount in history if amount > 0]
        if history and not bought:
            message += f"; its {len(history)} posted line(s) up to as_of are refunds only (amount <= 0)"
        elif bought:
            latest = max(bought)
            message += f"; its latest purchase up to as_of, {latest:%Y-%m-%d %H:%M}, is {(as_of - latest).days:,} days before it"
    return message


def _unknown_to_the_model(
    scorer: Any,
    matrix: np.ndarray,
    keys: Sequence[str],
    task: str,
    attribute_names: frozenset[str],
) -> dict[str, str]:
    """Posted records missing a numeric feature no training row had missing, by key, with why.

    The booster would read the gap as 0 (``FeatureProfile.never_missing``): a lead posted with
    ``pdays: null`` scored as if contacted today. Such a record gets a per-item error naming the
    feature, not a score resting on a value it does not have.
    """
    if scorer.profile is None or not len(keys):
        return {}
    never = scorer.profile.never_missing()
    if not never:
        return {}
    from features.breadth import FEATURES_FROM

    source = {feature: column for column, features in FEATURES_FROM.items() for feature in features}
    columns = [scorer.feature_names.index(f) for f in never]
    out = {}
    for i, key in enumerate(keys):
        missing = [never[j] for j in np.flatnonzero(np.isnan(matrix[i, columns]))]
        if missing:
            named = ", ".join(missing)
            posted = [f"attributes.{f}" for f in missing if f in attribute_names]
            # avg_unit_price of lines whose quantity is 0 or absent: say which field of the purchases it needs.
            fed = sorted({source[f] for f in missing if f in source})
            out[key] = (
                f"cannot score: {named} {'is' if len(missing) == 1 else 'are'} missing, and no training row of the "
                f"{task} model had {'it' if len(missing) == 1 else 'them'} missing (the model would read 0)"
                + (f"; post a value for {', '.join(posted)}" if posted else "")
                + (
                    f"; computed from the purchases' {' and '.join(fed)}, which no purchase (amount > 0) carries "
                    "as a usable value (a quantity must be above 0)"
                    if fed
                    else ""
                )
            )
    return out


def _drop_filtered_lines(
    config: Config,
    rules: Sequence[PostedRule],
    field_name: str,
    entity: str,
    records: Sequence[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], dict[str, str]]:
    """The records without the lines the config's row filters drop (:mod:`serving.posted_rules`), and a
    sentence per record that lost any, by id, naming each filter and its count.

    Batch scoring and training read the stored rows with the filters applied; a posted history is held
    to those that posted fields can express (``Price > 0`` as ``amount / quantity > 0`` when
    ``amount: Quantity * Price``), or raw lines scored otherwise than the same customer by id (12346:
    0.945 against 0.937). A line without a field a filter reads (no ``product_id``) is kept: the
    filter cannot judge it. Each dropped line is counted under the first filter it fails, as in the
    stored data's report. A line's fields are its own over its record's attributes.
    """
    rules = [r for r in rules if r.sql is not None]
    if not rules:  # a config without filters the posted fields can express: nothing to copy or check
        return list(records), {}
    out = [dict(record) for record in records]
    sentences: dict[int, list[str]] = {}
    for key in dict.fromkeys(r.key for r in rules):
        mine = [r for r in rules if r.key == key]
        fields = sorted({f for r in mine for f in r.fields})
        rows = []  # every record's lines in one frame: one query per filter for the whole call
        for record in out:
            own = {**dict(record.get("attributes") or {}), entity: record[entity]}
            for line in record.get(key) or ():
                rows.append({f: line.get(f, own.get(f)) for f in fields})
        if not rows:
            continue
        flags = iter(_rule_flags(config, _arrow_table(rows, fields), mine, f"{field_name}[].{key}"))
        for i, record in enumerate(out):
            lines = list(record.get(key) or ())
            dropped: dict[str, int] = {}
            kept = []
            for line in lines:
                failed = next((r.name for r, keep in zip(mine, next(flags), strict=True) if keep is False), None)
                if failed is None:
                    kept.append(line)
                else:
                    dropped[failed] = dropped.get(failed, 0) + 1
            if dropped:
                record[key] = kept
                counts = ", ".join(f"{n} by '{name}'" for name, n in dropped.items())
                n = sum(dropped.values())
                sentences.setdefault(i, []).append(
                    f"{field_name}[{i}].{key}: {n} of the {len(lines)} lines {'was' if n == 1 else 'were'} dropped "
                    f"by the config's row filters ({counts}; tables.{mine[0].table}.filters), as in the stored data"
                )
    return out, {str(out[i][entity]): "; ".join(said) for i, said in sentences.items()}


def _arrow_table(rows: list[dict[str, Any]], fields: Sequence[str]) -> Any:
    """:func:`_frame`'s columns as an Arrow table, text and number fields built directly (a pandas
    frame and its scan took 5 of the 7 ms of filtering 20 posted lines)."""
    import pyarrow as pa

    columns = {}
    for name in fields:
        values = [row.get(name) for row in rows]
        kind = _TYPES.get(name)
        if kind == "string":
            columns[name] = pa.array([None if v is None else str(v) for v in values], pa.string())
        elif kind == "float64" and all(v is None or isinstance(v, (int, float)) for v in values):
            columns[name] = pa.array(values, pa.float64())
        else:
            columns[name] = pa.Array.from_pandas(_frame(rows, [name], _TYPES)[name])
    return pa.table(columns)


def _rule_flags(config: Config, lines: Any, rules: Sequence[PostedRule], where: str) -> list[tuple[bool | None, ...]]:
    """Each row's value of each rule (None: null, the filter cannot judge the row), by DuckDB on this
    thread's connection for posted records; a rule DuckDB cannot evaluate on the posted values (a text
    attribute compared with a number) is a 400 naming it."""
    import duckdb

    con = _posted_connection(config).con
    con.register("posted_lines", lines)
    try:
        selects = ", ".join(f"({rule.sql}) AS keep_{i}" for i, rule in enumerate(rules))
        try:
            return con.execute(f"SELECT {selects} FROM posted_lines").fetchall()
        except duckdb.Error:  # which one: each alone
            for rule in rules:
                try:
                    con.execute(f"SELECT ({rule.sql}) FROM posted_lines").fetchall()
                except duckdb.Error as exc:
                    raise RequestError(
                        f"{where}: the config's filter '{rule.name}' (tables.{rule.table}.filters, on posted lines "
                        f"{rule.sql}) cannot be evaluated on the posted values: {str(exc).splitlines()[0]}",
                        field=where,
                    ) from exc
            raise
    finally:
        con.unregister("posted_lines")


def _drop_repeated_lines(
    config: Config, task: str, field_name: str, records: Sequence[Mapping[str, Any]]
) -> tuple[list[Mapping[str, Any]], dict[str, str]]:
    """The records without the purchase (and event) lines that copy another line of the same record
    exactly, when the training config drops exact duplicate rows of that table
    (``tables.<table>.drop_duplicates``), and a sentence per record that lost any, by id.

    Batch scoring and training read the stored tables with the rule applied; a posted history is
    held to it too, or a line sent twice counted twice (value at risk 42.60 -> 65.89 for one repeat).
    Times are compared in UTC, so one instant written with and without its offset is one line.
    """
    entity = "lead_id" if task == "lead" else "customer_id"
    tables = (("lead_events", "events"),) if task == "lead" else (("transactions", "purchases"), ("events", "events"))
    rules = [(table, key) for table, key in tables if getattr(getattr(config.tables, table), "drop_duplicates", False)]
    if not rules:
        return list(records), {}
    out, said = [], {}
    for i, record in enumerate(records):
        record = dict(record)
        sentences = []
        for table, key in rules:
            lines, seen, kept = record.get(key) or (), set(), []
            for line in lines:
                identity = tuple(sorted((k, _utc_moment(v) if k == "timestamp" else v) for k, v in line.items()))
                if identity not in seen:
                    seen.add(identity)
                    kept.append(line)
            if len(kept) < len(lines):
                n = len(lines) - len(kept)
                record[key] = kept
                sentences.append(
                    f"{field_name}[{i}].{key}: {'1 line was an exact copy' if n == 1 else f'{n} lines were exact copies'} "
                    f"of another and {'was' if n == 1 else 'were'} dropped, as in the stored data "
                    f"(tables.{table}.drop_duplicates)"
                )
        if sentences:
            said[str(record[entity])] = "; ".join(sentences)
        out.append(record)
    return out, said


def _posted_but_unread(
    scorer: Any, task: str, field_name: str, records: Sequence[Mapping[str, Any]], as_of: dt.datetime
) -> dict[str, list[str]]:
    """What a posted customer record carries that its score does not rest on, or that looks wrong, by
    id: purchase fields no feature of the model is computed from (``category`` for a model trained
    without categories), lines whose amount and quantity have opposite signs, and purchases after
    ``as_of``, which are not history."""
    from features.breadth import FEATURES_FROM

    used = set(scorer.feature_names)
    unread = [column for column, features in FEATURES_FROM.items() if not used & set(features)]
    unread += [] if "channel" in used else ["channel"]
    out: dict[str, list[str]] = {}
    for i, record in enumerate(records):
        said = out.setdefault(str(record["customer_id"]), [])
        purchases = record.get("purchases") or ()
        for column in unread:
            n = sum(p.get(column) is not None for p in purchases)
            if n:
                said.append(
                    f"{field_name}[{i}].purchases: {column} ({n} of {len(purchases)} lines) is not read by the {task} "
                    "model (none of its features is computed from it), so it was not used"
                )
        crossed = sum(
            p.get("quantity") is not None and p["amount"] * p["quantity"] < 0 for p in purchases
        )  # 10.0 for -5 units: a refund whose amount lost its sign, or a sale whose quantity did
        if crossed:
            said.append(
                f"{field_name}[{i}].purchases: {crossed} of the {len(purchases)} lines have an amount and a quantity "
                "of opposite signs (a refund has both negative); each was taken by its amount's sign"
            )
        later = sum(_utc_moment(p["timestamp"]) > as_of for p in purchases)
        if later:
            said.append(
                f"{field_name}[{i}].purchases: {later} of the {len(purchases)} lines fall after as_of "
                f"({as_of:%Y-%m-%d %H:%M}) and are not history, so they were not used"
            )
    return {k: v for k, v in out.items() if v}


def score_posted(
    state: State,
    task: str,
    keys: Sequence[str],
    *,
    as_of: dt.datetime,
    k: int,
    max_batch: int,
    counter_k: int = 0,
    customers: Sequence[Mapping[str, Any]] = (),
    leads: Sequence[Mapping[str, Any]] = (),
    max_rows: int | None = None,
) -> dict[str, Any]:
    """Score posted histories (churn, next purchase) or lead records with the model's own feature config
    (``max_rows``: the most purchases and events of all records together, ``serving.max_posted_rows``)."""
    field_name = "leads" if task == "lead" else "customers"
    check_batch(len(keys), max_batch, field_name, "records")
    check_posted_rows(leads if task == "lead" else customers, max_rows, field_name)
    model = state.model(task)
    as_of = _naive_utc(as_of).to_pydatetime()
    posted = leads if task == "lead" else customers
    entity = model.scorer.entity
    _check_unique(field_name, entity, posted)
    posted, filtered = _drop_filtered_lines(model.config, model.posted_rules, field_name, entity, posted)
    posted, repeated = _drop_repeated_lines(model.config, task, field_name, posted)
    customers, leads = ([], posted) if task == "lead" else (posted, [])
    _check_purchases(model, task, customers)
    _check_attributes(model.scorer, task, field_name, posted)
    named = _check_attribute_names(model, task, field_name, entity, posted)
    for key, sentences in _posted_but_unread(model.scorer, task, field_name, customers, as_of).items():
        named.setdefault(key, []).extend(sentences)
    try:
        frame = history_features(
            model.config,
            task,
            as_of=as_of,
            customers=customers,
            leads=leads,
            vocabulary=model.scorer.vocabulary,
            attribute_types=attribute_types(model.scorer),
        )
    except ValueError as exc:
        raise RequestError(f"cannot compute the {task} features: {exc}", field=f"{field_name}.attributes") from exc
    absent = [f for f in model.scorer.feature_names if f not in frame.columns]
    if absent:  # every computed feature is a column: what is absent is an attribute no record posted
        posted_names = {name for record in posted for name in record.get("attributes") or {}}
        raise _not_posted(task, field_name, absent, posted_names - set(model.scorer.feature_names))
    matrix = model.scorer.prepare(frame)
    found = frame[entity].astype(str).tolist()
    records = {str(r[entity]): r for r in posted}
    # A feature some record posts as an attribute is one (a record without it, or with a null, has the gap).
    attribute_names = frozenset(name for r in records.values() for name in (r.get("attributes") or {}))
    warnings = {found[row]: w for row, w in model.scorer.unseen_warnings(frame, matrix, attribute_names).items()}
    unseen = model.scorer.unseen_rows(frame, matrix)
    for key, sentences in named.items():
        warnings.setdefault(key, []).extend(sentences)
    for key, sentence in _unused_events(model.config, task, field_name, entity, posted).items():
        warnings.setdefault(key, []).append(sentence)
    for said in (filtered, repeated):
        for key, sentence in said.items():
            warnings.setdefault(key, []).append(sentence)
    gaps = _unknown_to_the_model(model.scorer, matrix, found, task, attribute_names)
    if gaps:
        keep = [i for i, key in enumerate(found) if key not in gaps]
        matrix, found, unseen = matrix[keep], [found[i] for i in keep], rows_at(unseen, keep)
    # A few posted records are not a population: they get the served snapshot's anchor.
    shift = model.snapshot.population_shift if model.snapshot is not None else 0.0
    results = dict(
        zip(
            found,
            model.scorer.score_matrix(
                matrix,
                k=k,
                counter_k=counter_k,
                explain=k > 0 or counter_k > 0,
                as_of=as_of,
                population_shift=shift,
                unseen=unseen,
            )
            if found
            else (),
            strict=True,
        )
    )
    mc = getattr(model.config.models, task)

    def _with_dropped(error: str, key: str) -> str:
        # An error item has no warnings: the lines the stored data's rules dropped are said in its error
        # ("it posts no purchases" of a record whose one line was a price-0 line read otherwise).
        said = "; ".join(s for s in (filtered.get(key), repeated.get(key)) if s)
        return f"{error} (after the stored data's rules: {said})" if said else error

    items = [
        _item(model, key, results[key], warnings.get(key, ()))
        if key in results
        else {"id": key, "error": _with_dropped(gaps.get(key) or _outside(task, mc, as_of, records.get(key)), key)}
        for key in keys
    ]
    # The cut-off as used: a date, or with its time of day (UTC), which decides what counts as history;
    # written as scores by id write theirs (until 2026-12-07 with a "T" here and a space there).
    return {"task": task, "as_of": as_of_text(as_of), "items": items}


def at_risk(state: State, **options: Any) -> dict[str, Any]:
    """Top customers by value at risk: :func:`ranked_list` of churn."""
    return ranked_list(state, "churn", **options)


def ranked_list(
    state: State,
    task: str,
    *,
    top: int,
    min_value: float | None = None,
    tiers: Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
    k: int = 3,
    format: str = "json",
    counter_k: int = 1,
    id_key: str | None = None,
    exclude: Collection[str] | None = None,
    per: str | None = None,
    since: str | None = None,
    moved_up: bool = False,
    config: Config | None = None,
) -> dict[str, Any]:
    """The task's list from its snapshot, by :data:`serving.lists.RANKED_BY` (value at risk, expected
    value, P(convert)), filtered, with reasons (and ``counter_k`` counter-reasons): a JSON-able dict
    whose ``items`` are the rows, or with ``format="csv"`` whose ``csv`` is their CSV text, beside the
    same ``as_of``, model, ``n_matched``, ``drift`` and ``warnings``. ``id_key`` renames the rows' id
    field (``customer_id``, ``lead_id``) in the JSON items. ``exclude``: ids never to list;
    ``n_excluded`` counts the snapshot's rows among them. ``per``: the ``top``
    rows of each value of this attribute. ``since``: an earlier date; each row also gets the same
    champion's ``probability_then`` and ``tier_then`` there (:func:`scores_then`, from ``config``'s
    sources), ``since_note`` says how many moved up a tier, and with ``moved_up`` only those in a
    higher tier than then are listed, as ``crmscore at-risk --since D --moved-up`` lists them."""
    model, snapshot = state.snapshot(task)
    scored, columns = model.scored, lists.list_columns(model.scorer)
    then = scores_then(config or model.config, model, since, moved_up=moved_up)
    # Posted ids as the suppression file's are read: "15749.0" from a spreadsheet is 15749.
    exclude = None if exclude is None else lists.clean_ids(exclude)
    filters = lists.ListFilters(min_value=min_value, tiers=tiers, where=where, exclude=exclude, per=per)
    # Matched once, for the selection, the count and the warning.
    filters, suppression = lists.with_suppression(filters, scored, columns[0], "the ids sent")
    if moved_up:
        filters = lists.moved_up_only(filters, model.scorer, scored, then)
    try:
        rows, matched = lists.ranked_rows(
            model.scorer,
            scored,
            snapshot.matrix,
            task,
            top=top,
            k=k,
            counter_k=counter_k,
            filters=filters,
            as_of=snapshot.as_of,
            contrib=snapshot.contrib,
            unseen=snapshot.unseen,
        )
    except lists.FilterError as exc:
        raise RequestError(str(exc), field=exc.field) from exc
    since_note = ""
    if since is not None:
        since_note = lists.with_scores_then(
            rows,
            then,
            tier_names=model.scorer.tier_names,
            since=since,
            columns=columns,
            rule=population_rule(task, getattr((config or model.config).models, task)),
            season=lists.seasonal_move(model.scorer, since, snapshot.as_of),
        )
        columns = (*columns, *lists.THEN_COLUMNS)
    # The CSV is a file that travels: every row says its scoring date (the snapshot's, as the JSON and
    # the header give it) and model, as the commands' lists do.
    stamp = {**lists.file_stamp(model.scorer, snapshot.as_of), "as_of": snapshot.as_of}
    attributes = lists.attribute_columns(scored, lists.list_columns(model.scorer), filters.named)
    listed_ids = [str(row[columns[0]]) for row in rows]  # for the audit record (serving.audit.of_list)
    if id_key is not None and format != "csv":  # the CSV keeps the id's own name, as crmscore top writes it
        rows = [{id_key: row.pop(columns[0]), **row} for row in rows]
    return {
        "task": task,
        "ranked_by": lists.RANKED_BY[task],
        "as_of": snapshot.as_of,
        "model_name": model.scorer.model_name,
        "model_version": str(model.scorer.version),
        "n_matched": matched,
        "n_listed": len(rows),
        "n_excluded": 0 if suppression is None else suppression.rows,
        "listed_ids": listed_ids,
        **(
            {
                "csv": lists.to_csv(
                    rows,
                    k=k,
                    counter_k=counter_k,
                    columns=columns,
                    stamp=stamp,
                    attributes=attributes,
                    none_said=lists.none_material(model.scorer),
                )
            }
            if format == "csv"
            else {"items": rows}
        ),
        "drift": drift_overview(snapshot.drift),
        "warnings": [
            *lists.unmatched_filters(
                scored, where, model.scorer.tier_names, min_value=min_value, rank=lists.RANKED_BY[task], tiers=tiers
            ),
            *([suppression.note] if suppression is not None and suppression.unmatched else []),
        ],
        "since_note": since_note,
    }


# Computing a list's ``since`` population reads the sources and scores everyone (4-8 s, ~80 MB on the
# bundled data): one at a time per worker, so that eight calls with eight dates wait in turn rather than
# take 640 MB and every thread of the pool at once (a marketer's key did), and a second call for a date
# being computed takes its result.
_SINCE_LOCK = threading.Lock()


def scores_then(config: Config, model: TaskModel, since: str | None, *, moved_up: bool = False) -> pd.DataFrame | None:
    """A list's ``since``: the task's population at ``since``, an earlier date than the snapshot's,
    computed from ``config``'s sources and scored by the same champion (:func:`serving.at_risk.scored_at`,
    as the commands' ``--since`` scores it), kept per date on ``model``; None without ``since`` or
    when the population was empty then.

    Raises
    ------
    RequestError
        ``moved_up`` without ``since`` (field ``moved_up``); a lead list (its open leads of two dates
        are different leads), or a ``since`` that is not a date before the snapshot's (field ``since``).
    ModelUnavailable
        The sources of ``config`` cannot be read from the server (503).
    """
    from features.sources import load_tables
    from serving.at_risk import SinceError, check_list_since, scored_at

    as_of = model.snapshot.as_of if model.snapshot else None
    try:
        then = check_list_since(
            since, moved_up, task=model.task, as_of=as_of, what="the snapshot's date", options=("since", "moved_up")
        )
    except SinceError as exc:
        raise RequestError(str(exc), field=exc.field) from exc
    if then is None:
        return None
    key = str(then)
    with _SINCE_LOCK:  # one population at a time per worker: each reads the sources and scores everyone
        if key in model.scored_then:
            return model.scored_then[key]
        if config.tables.transactions is None:  # a server for leads that also serves a customer model
            raise ModelUnavailable(
                f"since needs the {model.task} population at {key}, computed from table 'transactions' of "
                f"config {config.name!r}, which maps none; serve this list from a config that does"
            )
        try:
            tables = load_tables(config)
        except Exception as exc:  # noqa: BLE001 - a server without access to the sources: said, not hidden
            # The cause (paths, hosts) goes to the server's log, for its operator, not to the caller.
            LOG.warning("since: the sources of config %r cannot be read: %s", config.name, exc)
            raise ModelUnavailable(
                f"since needs the population at {key}, computed from the sources of config {config.name!r}, "
                "which this server cannot read (its log says why)"
            ) from exc
        # The model's own population and horizon, whatever the serving config's models section says.
        mc = scoring_config(config, model.task, model.info)[0]
        scored = scored_at(model.scorer, tables, mc, model.task, key)
        if len(model.scored_then) >= 8:  # a few dates (last week's, last month's): the oldest goes
            model.scored_then.pop(next(iter(model.scored_then)))
        model.scored_then[key] = scored
    return model.scored_then[key]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def models_info(state: State) -> dict[str, Any]:
    """The champion of each task (registry facts, test metrics, snapshot date) and the missing ones."""
    infos = []
    for task, model in state.models.items():
        info = model.info
        infos.append(
            {
                "task": task,
                "model_name": info.get("model_name") or model.scorer.model_name,
                "version": _text(info.get("version")),
                "alias": info.get("alias"),
                "run_id": info.get("run_id"),
                "trained_at": _text(info.get("trained_at")),
                "test_cutoff": _text(info.get("test_cutoff")),
                "metrics": {k: _finite(v) for k, v in (info.get("metrics") or {}).items()},
                "warnings": list(info.get("warnings") or []),
                "promotion": info.get("promotion"),
                "manual_promotion": info.get("manual_promotion"),
                "code": info.get("code"),
                "config_name": model.config.name if model.config is not None else None,
                "loaded_at": model.loaded_at or None,
                "snapshot_as_of": model.snapshot.as_of if model.snapshot else None,
                "snapshot_rows": len(model.snapshot.ids) if model.snapshot else 0,
                "snapshot_rows_explained": model.snapshot.contrib.computed if model.snapshot else 0,
                "snapshot_drift": drift_overview(model.snapshot.drift) if model.snapshot else None,
                "snapshot_anchor": model.snapshot.population_shift if model.snapshot else None,
                "list_filters": model.list_filters,
                "posted_filters": describe_posted_rules(model.posted_rules),
            }
        )
    missing = [{"task": task, "error": error} for task, error in state.missing.items()]
    return {"loaded_at": state.loaded_at, "models": infos, "missing": missing}
