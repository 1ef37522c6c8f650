"""The MLflow pyfunc that scores *and* explains, and loading the champion model by alias.

:class:`CrmScoreModel` wraps a pickled :class:`models.scorer.Scorer` artifact; its ``predict``
returns one row per input row with the probability, tier or grade, money values and the
reasons as a JSON string (a plain string column keeps the output signature simple for
``spark_udf`` and the REST scoring server). :func:`load_champion` is what serving and batch
scoring use: alias ``champion`` only, never "latest".
"""

from __future__ import annotations

import datetime as dt
import json
import pickle
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd

from models.scorer import Scorer

if TYPE_CHECKING:
    from features.config import Config

__all__ = [
    "CHAMPION",
    "CHALLENGER",
    "ChampionFilesError",
    "ChampionUnavailable",
    "CrmScoreModel",
    "NoChampionError",
    "RegistryUnavailable",
    "set_uris",
    "sqlite_file",
    "champion_info",
    "cli_model_name",
    "load_champion",
    "load_scorer",
    "model_input",
    "predict_frame",
    "reasons_as_json",
    "registered_name",
]

# Where the pyfunc's population anchor comes from when no ``population_shift`` is given (see predict_frame).
ANCHORS = ("model", "batch", "none")
# The optional input column with each row's scoring date (the features' cut-off).
AS_OF = "as_of"
CHAMPION = "champion"
CHALLENGER = "challenger"
SCORER_ARTIFACT = "scorer"
REASON_COLUMNS = ("reasons", "counter_reasons")


def registered_name(task: str, config: Config | None = None) -> str:
    """The registry name (and experiment name) of a task's model: ``<registry_prefix>-<task>``
    (``crmscore-<task>`` by default, or without a config)."""
    return f"{config.registry_prefix if config is not None else 'crmscore'}-{task}"


def cli_model_name(task: str) -> str:
    """The MODEL argument of the command line for a task (``next_purchase`` -> ``next-purchase``)."""
    return task.replace("_", "-")


class ChampionUnavailable(Exception):
    """No usable champion: none registered, or its files cannot be read. Commands exit with the message."""


class NoChampionError(ChampionUnavailable, LookupError):
    """No model version holds alias ``champion``; the message says which command trains one."""


class RegistryUnavailable(ChampionUnavailable):
    """The tracking store or registry did not answer (a server down, a path that cannot be opened)."""


class ChampionFilesError(ChampionUnavailable, OSError):
    """The registry names a champion whose model files cannot be read; the message says where they should be."""


class CrmScoreModel(mlflow.pyfunc.PythonModel):
    """A pyfunc around a pickled :class:`Scorer` (artifact ``scorer``).

    ``predict`` params: ``k`` (reasons per row, default the model's), ``counter_k``
    (counter-reasons per row, default 0), ``explain`` (default True), ``as_of`` (the scoring
    date), ``anchor`` and ``population_shift``, see :func:`predict_frame`.
    """

    def load_context(self, context) -> None:
        with open(context.artifacts[SCORER_ARTIFACT], "rb") as handle:
            self.scorer: Scorer = pickle.load(handle)

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        params = params or {}
        k = int(params.get("k", self.scorer.metadata.get("top_k", 3)))
        as_of = params.get("as_of") or None
        if as_of is None and self.scorer.dated and not _has_dates(model_input):
            warnings.warn(undated_warning(self.scorer), UndatedScoringWarning, stacklevel=2)
        return predict_frame(
            self.scorer,
            model_input,
            k=k,
            explain=bool(params.get("explain", True)),
            as_of=as_of,
            anchor=str(params.get("anchor", "model")),
            population_shift=float(params.get("population_shift", 0.0)),
            counter_k=int(params.get("counter_k", 0)),
        )


class UndatedScoringWarning(UserWarning):
    """A date-dependent model (:attr:`Scorer.dated`) scored without a scoring date."""


def _has_dates(features: pd.DataFrame) -> bool:
    return AS_OF in features.columns and len(features) > 0 and bool(features[AS_OF].notna().all())


def undated_warning(scorer: Scorer) -> str:
    """What a pyfunc caller is told when scoring a :attr:`Scorer.dated` model without ``as_of``."""
    cutoff = scorer.metadata.get("test_cutoff") or "its test cut-off"
    return (
        f"{scorer.model_name} v{scorer.version}: no scoring date (params={{'as_of': ...}} or an "
        f"'as_of' column): the probabilities carry the season of {cutoff}, whatever the rows' date (churn's mean "
        "moved by 0.3 on the bundled data); pass the date the features were computed at, as crmscore score does"
    )


def predict_frame(
    scorer: Scorer,
    features: pd.DataFrame,
    *,
    k: int,
    explain: bool = True,
    as_of: Any = None,
    anchor: str = "model",
    population_shift: float = 0.0,
    counter_k: int = 0,
) -> pd.DataFrame:
    """What the pyfunc returns: :meth:`Scorer.score_frame` with ``reasons`` (and with ``counter_k``,
    ``counter_reasons``) as a JSON string per row.

    The scoring date for the seasonal prior shift is ``as_of``, else the input's ``as_of`` column
    when it holds a single date (rows of several dates are scored date by date), else none (the
    training-time shift).

    The population anchor of an anchored model (the lead model; :meth:`Scorer.population_shift`):
    a non-zero ``population_shift`` is applied to every row as given (``crmscore score`` and the
    Spark batch compute it for the whole population). Otherwise ``anchor`` says where it comes
    from: ``"model"`` (default) the anchor of the latest population training saw
    (:attr:`Scorer.default_population_shift`), which a single row can use; ``"batch"`` these rows,
    date by date, taken as the whole population of their date (what ``crmscore score`` does);
    ``"none"`` no anchor, the model's own level. Other models have no anchor: 0 either way.

    Raises
    ------
    ValueError
        ``anchor`` is not one of ``model``, ``batch``, ``none``.
    """
    if anchor not in ANCHORS:
        raise ValueError(f"param 'anchor' must be one of {', '.join(ANCHORS)}; got {anchor!r}")
    if as_of is None and _has_dates(features):
        dates = pd.to_datetime(features[AS_OF])
        if dates.nunique() > 1:
            parts = [
                predict_frame(
                    scorer,
                    features.loc[(dates == d).to_numpy()],
                    k=k,
                    explain=explain,
                    as_of=d,
                    anchor=anchor,
                    population_shift=population_shift,
                    counter_k=counter_k,
                ).set_axis(np.flatnonzero((dates == d).to_numpy()))
                for d in dates.unique()
            ]
            return pd.concat(parts).sort_index().reset_index(drop=True)
        as_of = dates.iloc[0]
    X = scorer.prepare(features)
    if not population_shift:
        if anchor == "model":
            # Scorers pickled before the default existed have none.
            population_shift = float(getattr(scorer, "default_population_shift", 0.0))
        elif anchor == "batch":
            population_shift = scorer.population_shift(X, as_of=as_of)
    frame = scorer.score_frame(
        features,
        k=k,
        explain=explain,
        as_of=as_of,
        prepared=X,
        population_shift=population_shift,
        counter_k=counter_k,
    )
    return reasons_as_json(frame)


def reasons_as_json(frame: pd.DataFrame) -> pd.DataFrame:
    """``reasons`` and ``counter_reasons`` (lists of dicts per row) as one JSON string per row, in place."""
    for column in REASON_COLUMNS:
        if column in frame.columns:
            frame[column] = [json.dumps(r) for r in frame[column]]
    return frame


def model_input(features: pd.DataFrame, model: Any) -> pd.DataFrame:
    """A feature table (``crmscore features``, :func:`features.pipeline.population_features`) cast
    to a model's input schema, ready for ``model.predict``.

    MLflow's schema check takes neither pandas ``category`` columns for strings nor ``int64`` for
    doubles (unless they hold only 0 and 1), and the feature tables have both. ``model`` is a
    loaded pyfunc (``mlflow.pyfunc.load_model``), its input :class:`mlflow.types.Schema`, or the
    :class:`Scorer` whose signature is being written (entity and categories strings, the rest
    doubles, and the optional ``as_of`` when the table has it). String columns become Python strings
    (a missing value None), double columns float64, ``as_of`` a timestamp; only the schema's columns
    are kept, in its order. ``as_of`` carries each row's scoring date into ``predict`` (models
    registered before 2026-12-07 have no such column: give ``params={"as_of": ...}``).

    Raises
    ------
    ValueError
        A required column of the schema is missing from ``features``, or a double column is not numeric.
    """
    if isinstance(model, Scorer):
        kinds = [(model.entity, "string", True)] + [
            (c, "string" if c in model.categories else "double", True) for c in model.feature_names
        ]
        kinds += [(AS_OF, "datetime", False)] if AS_OF in features.columns else []
    else:
        schema = model.metadata.get_input_schema() if hasattr(model, "metadata") else model
        kinds = [(spec.name, getattr(spec.type, "name", None), spec.required) for spec in schema.inputs]
    out = {}
    for name, kind, required in kinds:
        if name not in features.columns:
            if not required:  # the scoring date: the params' as_of may give it instead
                continue
            raise ValueError(f"model input column '{name}' is missing from the feature table")
        column = features[name]
        if kind == "datetime":
            out[name] = pd.to_datetime(column).astype("datetime64[ns]")
        elif kind == "string":
            out[name] = column.astype(object).where(column.notna(), None).map(lambda v: v if v is None else str(v))
        elif kind == "double":
            try:
                out[name] = pd.to_numeric(column, errors="raise").astype(np.float64)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"model input column '{name}' must be numeric: {exc}") from exc
        else:
            out[name] = column
    return pd.DataFrame(out, index=features.index)


# Seconds a tracking server has to answer the reachability check of set_uris.
_PROBE_TIMEOUT_S = 5.0


def _check_reachable(uri: str, role: str) -> None:
    """One request to an ``http(s)`` tracking server's ``/health``, without retries.

    MLflow retries a request that cannot connect 7 times with exponential backoff (about four
    minutes, measured against a closed port), which is right for a server that blips during a
    training run and wrong for one that is not there. Any HTTP answer counts as reachable; the
    retries then stay in place for the requests that follow.

    Raises
    ------
    RegistryUnavailable
        The server refused the connection, could not be resolved, or did not answer in 5 s.
    """
    if not uri.lower().startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=_PROBE_TIMEOUT_S)
    except requests.exceptions.RequestException as exc:
        if isinstance(exc, requests.exceptions.Timeout):
            reason = f"no answer in {_PROBE_TIMEOUT_S:.0f} s"
        else:  # the OS's words ("[Errno 111] Connection refused") rather than urllib3's wrapping of them
            found = re.search(r"\[Errno -?\d+\] [^'\")]+", str(exc))
            reason = found.group(0) if found else f"{type(exc).__name__}: {exc}"
        raise RegistryUnavailable(
            f"the MLflow {role} server at {uri} does not answer ({reason}); start it, or fix {role}_uri in the config"
        ) from exc


def sqlite_file(uri: str | None) -> Path | None:
    """The database file of a ``sqlite:///`` store URI (a relative one against the working
    directory, as MLflow reads it); None for other stores and for an in-memory database."""
    if not uri or not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path).resolve()


def _missing_store(config: Config) -> Path | None:
    """The SQLite file the tracking or registry URI names, when it does not exist."""
    for uri in (config.tracking_uri, config.registry_uri):
        path = sqlite_file(uri)
        if path is not None and not path.exists():
            return path
    return None


def set_uris(config: Config) -> None:
    """Point MLflow at the configured tracking (and registry) URI, after checking that an HTTP
    server there answers (:func:`_check_reachable`: seconds, not MLflow's minutes of retries).

    Raises
    ------
    RegistryUnavailable
        An ``http(s)`` tracking or registry server does not answer.
    """
    _check_reachable(config.tracking_uri, "tracking")
    mlflow.set_tracking_uri(config.tracking_uri)
    if config.registry_uri:
        if config.registry_uri != config.tracking_uri:
            _check_reachable(config.registry_uri, "registry")
        mlflow.set_registry_uri(config.registry_uri)


def load_scorer(model_uri: str) -> Scorer:
    """Download a logged crmscore model and unpickle its scorer (no pyfunc wrapper)."""
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    matches = sorted(local.rglob(f"{SCORER_ARTIFACT}.pkl"))
    if not matches:
        raise FileNotFoundError(f"{model_uri} holds no {SCORER_ARTIFACT}.pkl artifact: not a crmscore model")
    with open(matches[0], "rb") as handle:
        return pickle.load(handle)


# MLflow's error codes for "no such registered model" and "no such alias".
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def _artifact_location(client: Any, version: Any) -> str:
    """Where the registry says a version's files are: its logged model's location, else its source URI."""
    source = str(version.source)
    if source.startswith("models:/m-"):
        try:
            return str(client.get_logged_model(source.removeprefix("models:/")).artifact_location)
        except Exception:  # the location is only for the message
            pass
    return source


def train_command(config: Config, task: str | None) -> str:
    """The ``crmscore train`` command line that would register a model for ``task`` (``MODEL`` for
    any), for messages."""
    return f"crmscore train {cli_model_name(task) if task else 'MODEL'}{_config_option(config)}"


def _config_option(config: Config) -> str:
    """`` --config FILE`` for a command line in a message: the file the config was read from; else (a
    config built in code) one named after it, if any."""
    guess = config.path or config.base_dir / f"{config.name}.yaml"
    return f" --config {guess if guess.is_file() else '<config.yaml>'}"


def missing_store_message(config: Config, task: str | None, what: str) -> str | None:
    """Why nothing can be read for ``task`` (None: for any) when the SQLite registry file the config names does not
    exist (None when it does, or the store is not a file): ``what`` is what is missing, e.g. "no
    'champion' model". Readers check this first, since opening the store would create an empty one."""
    missing = _missing_store(config)
    if missing is None:
        return None
    return (
        f"{what}{f' for {task!r}' if task else ''}: the registry file {missing} does not exist (a relative sqlite "
        f"path in tracking_uri resolves against the working directory, {Path.cwd()}). Train one with: "
        f"{train_command(config, task)}, or run from the folder that holds the registry, or give tracking_uri "
        "an absolute path (sqlite:////path/to/mlflow.db)"
    )


def registry_client(config: Config, task: str | None, what: str) -> Any:
    """An MLflow client on the config's registry, for reading ``task``'s models (None: any task's).

    Raises
    ------
    NoChampionError
        The SQLite registry file does not exist (:func:`missing_store_message`, ``what`` missing);
        reading must not leave an empty registry behind in the working directory.
    RegistryUnavailable
        An HTTP tracking or registry server does not answer.
    """
    from mlflow.tracking import MlflowClient

    message = missing_store_message(config, task, what)
    if message is not None:
        raise NoChampionError(message)
    set_uris(config)
    return MlflowClient()


def load_version(config: Config, task: str, client: Any, version: Any, *, label: str) -> Scorer:
    """The scorer of one registered model version (``version``: MLflow's ``ModelVersion``), with
    ``version`` set; ``label`` says which one in the error (e.g. "champion").

    Raises
    ------
    ChampionFilesError
        The version is registered but its files cannot be read; the message names where they should be.
    """
    from mlflow.exceptions import MlflowException

    name = registered_name(task, config)
    try:
        scorer = load_scorer(f"models:/{name}/{version.version}")
    except (MlflowException, OSError) as exc:
        raise ChampionFilesError(
            f"'{name}' version {version.version} ({label}) is in the registry at {config.tracking_uri}, but its "
            f"files cannot be read from {_artifact_location(client, version)} ({exc}). The registry keeps the "
            "absolute location each model was logged to: make that path reachable here (mount the artifacts at "
            "the same path), or track with an MLflow server that serves the artifacts (--artifacts-destination)"
        ) from exc
    scorer.version = str(version.version)
    return scorer


def load_champion(config: Config, task: str, *, version: str | None = None) -> tuple[Scorer, dict[str, Any]]:
    """Load the ``champion`` version of a task's registered model (or ``version``, when given: e.g. to
    monitor a challenger or a former champion on the same dates as the champion).

    Returns
    -------
    The scorer (with ``version`` set) and ``{"model_name", "version", "alias", "run_id",
    "trained_at", "test_cutoff", "metrics", "warnings", "promotion", "manual_promotion", "code",
    "settings", "tiers"}`` (the promotion gate's decision on the version, the note of a hand promotion,
    None without one, and the model settings and tiers it was trained with,
    :func:`models.catalog.scoring_config`).

    Raises
    ------
    NoChampionError
        No registered model, or no version with alias ``champion``.
    ChampionFilesError
        The champion is registered but its files cannot be read; the message names where they should be.
    RegistryUnavailable
        The registry did not answer (a tracking server down or unreachable).
    ValueError
        ``version`` is not a registered version; the message lists those there are.
    """
    name = registered_name(task, config)
    client = registry_client(config, task, f"no '{CHAMPION}' model" if version is None else "no model")
    if version is not None:
        chosen, aliases = pick_version(registered_versions(client, config, name), name, version)
        scorer = load_version(config, task, client, chosen, label=f"version {chosen.version}")
        alias = CHAMPION if CHAMPION in aliases else (aliases[0] if aliases else None)
        return scorer, {**version_info(name, chosen, alias), "tiers": dict(scorer.tiers)}
    champion = _champion_version(client, config, task)
    scorer = load_version(config, task, client, champion, label=CHAMPION)
    return scorer, {**version_info(name, champion, CHAMPION), "tiers": dict(scorer.tiers)}


def champion_info(config: Config, task: str) -> dict[str, Any]:
    """The registry facts :func:`load_champion` returns beside the scorer, without loading the model's
    files: one registry call, for telling whether the champion changed (the API's reload).

    Raises
    ------
    NoChampionError, RegistryUnavailable
        As :func:`load_champion`.
    """
    client = registry_client(config, task, f"no '{CHAMPION}' model")
    return version_info(registered_name(task, config), _champion_version(client, config, task), CHAMPION)


def _champion_version(client: Any, config: Config, task: str) -> Any:
    from mlflow.exceptions import MlflowException

    name = registered_name(task, config)
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code not in _NOT_FOUND:  # a server that does not answer is not a missing model
            raise RegistryUnavailable(
                f"cannot read the registry at {config.tracking_uri} for '{name}': {exc.message}"
            ) from exc
        message = (
            f"no '{CHAMPION}' model for '{task}' in the registry at {config.tracking_uri} "
            f"(registered model '{name}'). Train one with: {train_command(config, task)}"
        )
        versions = registered_versions(client, config, name)
        if versions:  # versions the gate held (a first run warned of leakage): said, with how to promote one
            latest = max(versions, key=int)
            reason = (versions[latest][0].tags or {}).get("promotion")
            message = (
                f"no '{CHAMPION}' model for '{task}' in the registry at {config.tracking_uri}: registered model "
                f"'{name}' has {len(versions)} version{'s' if len(versions) > 1 else ''}, none promoted"
                f"{f' (v{latest}: {reason})' if reason else ''}. Read its warnings with crmscore models {cli_model_name(task)}"
                f"{_config_option(config)}; make one champion with crmscore promote {cli_model_name(task)} "
                f"--version {latest}{_config_option(config)} --reason '...', or retrain: {train_command(config, task)}"
            )
        raise NoChampionError(message) from exc


def registered_versions(client: Any, config: Config, name: str) -> dict[str, tuple[Any, list[str]]]:
    """The registered versions of model ``name`` by number, each with its aliases, sorted (empty
    without a registered model).

    Raises
    ------
    RegistryUnavailable
        The registry did not answer.
    """
    from mlflow.exceptions import MlflowException

    try:
        versions = list(client.search_model_versions(f"name = '{name}'"))
        # search_model_versions leaves each version's aliases empty; the registered model has them.
        aliases = client.get_registered_model(name).aliases if versions else {}
    except MlflowException as exc:
        raise RegistryUnavailable(
            f"cannot read the registry at {config.tracking_uri} for '{name}': {exc.message}"
        ) from exc
    return {
        str(v.version): (v, sorted(alias for alias, number in aliases.items() if str(number) == str(v.version)))
        for v in versions
    }


def pick_version(versions: dict[str, tuple[Any, list[str]]], name: str, version: str) -> tuple[Any, list[str]]:
    """The entry of :func:`registered_versions` that ``version`` ("3" or "v3") names.

    Raises
    ------
    ValueError
        No such version; the message lists the registered ones.
    """
    wanted = str(version).strip().removeprefix("v")
    if wanted not in versions:
        known = ", ".join(sorted(versions, key=int)) or "none"
        raise ValueError(f"--version: '{name}' has no version {version!r} (registered: {known})")
    return versions[wanted]


def version_info(name: str, version: Any, alias: str | None) -> dict[str, Any]:
    """What :func:`load_champion` returns beside the scorer, from the version's registry tags."""
    tags = dict(version.tags or {})
    return {
        "model_name": name,
        "version": str(version.version),
        "alias": alias,
        "run_id": version.run_id,
        "trained_at": dt.datetime.fromtimestamp(version.creation_timestamp / 1000, tz=dt.UTC).isoformat(),
        "test_cutoff": tags.get("test_cutoff"),
        "metrics": json.loads(tags["metrics"]) if "metrics" in tags else {},
        "warnings": json.loads(tags["warnings"]) if "warnings" in tags else [],
        "promotion": tags.get("promotion"),
        "manual_promotion": tags.get("manual_promotion"),
        # The crmscore code that trained it (training.tracking.code_version); None before 2026-12-06.
        "code": tags.get("code"),
        # The settings it must be scored with (models.catalog.scoring_config); before 2026-12-07 only the horizon.
        "settings": json.loads(tags["settings"])
        if "settings" in tags
        else ({"horizon_days": int(tags["horizon_days"])} if "horizon_days" in tags else {}),
    }
