"""MLflow tracking and the registry gate.

One experiment per model (``crmscore-<task>``). A run logs the config, the data fingerprint, the
training rows and test fold as MLflow datasets (with a digest of every value), the code version,
parameters, test metrics of the model and of each baseline, the backtest table, the plots and
the pyfunc model with its signature and an input example. Every run registers a version and
moves alias ``challenger`` to it; alias ``champion`` moves only when the new version beats the
champion on the same test fold (the champion is re-scored on this run's test rows, which is
fair when its own test cut-off is not later than this one), when there is no champion yet, or
when ``force_promote`` is set. The tracking URI is set here, inside functions, from the config.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import math
import os
import pickle
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

from features.config import Config, ConfigError, feature_settings, masked_url, registry_prefix_for
from models.catalog import model_config_for
from training import metrics as m
from training.backtest import BacktestResult
from training.leakage import leaky_features
from training.pyfunc import (
    AS_OF,
    CHALLENGER,
    CHAMPION,
    SCORER_ARTIFACT,
    RegistryUnavailable,
    load_scorer,
    model_input,
    predict_frame,
    registered_name,
    registered_versions,
    set_uris,
    sqlite_file,
    train_command,
)
from training.registry import config_tag, other_question, question_of, record_champion

__all__ = [
    "Promotion",
    "run_settings",
    "check_registry",
    "code_version",
    "decide_promotion",
    "describe_version",
    "ensure_experiment",
    "frame_digest",
    "log_and_register",
]

_PACKAGES = Path(__file__).resolve().parents[1]
MODEL_CODE = Path(__file__).with_name("pyfunc_code.py")

# What a logged model needs to load and score: crmscore (training.pyfunc and the features code the
# models package reads), the libraries those import, and those the pickled scorer is made of
# (LightGBM's booster, scikit-learn's calibrators). MLflow would otherwise infer the list by loading
# the model in a subprocess, 3-4 s per model, and it left LightGBM out.
MODEL_REQUIREMENTS = (
    "crmscore",
    "mlflow",
    "lightgbm",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "scipy",
    "ibis-framework",
    "pydantic",
    "pyyaml",
    "requests",
)


# The folders whose files are crmscore's code, and the files that pin what it runs on: a change to one
# of them, not yet committed, makes a run's code differ from its commit.
CODE_FOLDERS = ("features", "models", "training", "serving", "pyproject.toml", "constraints.txt")
# The packages whose versions decide a run's numbers (the feature engine's among them), logged with it
# as environment.json: an installation that differs from constraints.txt shows there.
RUN_PACKAGES = (*MODEL_REQUIREMENTS[1:], "duckdb", "sqlglot", "shap")


def code_version() -> dict[str, Any]:
    """The crmscore code a run trains with, for whoever audits the model later.

    ``{"crmscore": package version, "commit": git commit, "dirty": bool, "text": one line}``. The
    commit is that of the checkout crmscore's own packages are in, and ``dirty`` says whether their
    tracked files differ from it (code not committed trained the model); both are None when
    crmscore does not run from a git checkout (a wheel, a Bento), or inside another project's
    repository (a virtualenv there), whose commit would say nothing about crmscore's code.
    """
    try:
        package = importlib.metadata.version("crmscore")
    except importlib.metadata.PackageNotFoundError:
        package = None
    commit = dirty = None

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(_PACKAGES), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is not None and Path(top).resolve() == _PACKAGES:
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no", "--", *CODE_FOLDERS)
        dirty = None if commit is None or status is None else bool(status)
    text = f"crmscore {package or '(not installed)'}"
    if commit:
        text += f", git {commit}" + (" with uncommitted changes to its code" if dirty else "")
    # The uncommitted change itself, which a run logs as code.diff: the flag alone did not say what trained it.
    diff = git("diff", "HEAD", "--", *CODE_FOLDERS) if dirty else None
    return {"crmscore": package, "commit": commit, "dirty": dirty, "text": text, "diff": diff}


def frame_digest(frame: pd.DataFrame) -> str:
    """SHA-256 (first 16 hex digits) of a frame's column names and every value, column by column: two
    training sets with one value apart differ (MLflow's own digest reads a sample of the rows).

    Defined on the values alone, not on a library's hashing or storage types, so the same rows give the
    same digest across pandas versions and dtypes: numbers as float64 (an int 3 and a float 3.0 alike;
    missing as NaN), times as nanoseconds since the epoch (missing as a marker), anything else as its
    text (missing as a marker). The index is not part of it; the column order is.
    """
    digest = hashlib.sha256()
    for name in frame.columns:
        column = frame[name]
        digest.update(b"\x00column\x00" + str(name).encode())
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
            digest.update(b"number" + np.ascontiguousarray(values).tobytes())
        elif pd.api.types.is_datetime64_any_dtype(column):
            stamps = column.dt.tz_localize(None) if column.dt.tz is not None else column
            text = "\x1f".join("\x00" if pd.isna(v) else str(pd.Timestamp(v).value) for v in stamps)
            digest.update(b"time" + text.encode())
        else:
            digest.update(b"text" + "\x1f".join("\x00" if pd.isna(v) else str(v) for v in column).encode())
    return digest.hexdigest()[:16]


def _log_datasets(task: str, frames: dict[str, pd.DataFrame], fingerprint: dict[str, Any]) -> dict[str, str]:
    """The run's inputs as MLflow datasets (the UI's "Datasets used" and ``run.inputs``): the training
    rows and the test fold, each with :func:`frame_digest`, schema, row count, the label as target and
    the task's main source table (a database URL, which MLflow cannot resolve, leaves the source out).
    Returns each logged frame's digest by context."""
    table = "leads" if "leads" in fingerprint else "transactions"
    source = (fingerprint.get(table) or {}).get("source")
    digests = {}
    for context, frame in frames.items():
        options = {
            "targets": "label" if "label" in frame.columns else None,
            "name": f"{task}-{context}",
            "digest": frame_digest(frame),
        }
        digests[context] = options["digest"]
        with warnings.catch_warnings():  # MLflow's hints on integer columns and on a local path's two readings
            warnings.simplefilter("ignore", UserWarning)
            try:
                dataset = mlflow.data.from_pandas(frame, source=source, **options)
            except mlflow.exceptions.MlflowException:
                dataset = mlflow.data.from_pandas(frame, **options)
            mlflow.log_input(dataset, context=context)
    return digests


def model_requirements() -> list[str]:
    """:data:`MODEL_REQUIREMENTS` pinned to the versions installed here, the model's
    ``requirements.txt`` (what ``mlflow models serve`` without ``--env-manager local`` installs)."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in MODEL_REQUIREMENTS]


def run_environment() -> dict[str, Any]:
    """Python's version and those of :data:`RUN_PACKAGES` as installed here (None: not installed)."""

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {"python": sys.version.split()[0], "packages": {name: version(name) for name in RUN_PACKAGES}}


def _artifact_root(tracking_uri: str) -> str | None:
    # A SQLite store keeps artifacts beside the database file (not in the working directory).
    db = sqlite_file(tracking_uri)
    return None if db is None else (db.parent / "mlruns").as_uri()


def ensure_experiment(config: Config, task: str) -> str:
    """The id of experiment ``crmscore-<task>``, created when missing."""
    name = registered_name(task, config)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    root = _artifact_root(config.tracking_uri)
    return client.create_experiment(name, artifact_location=None if root is None else f"{root}/{name}")


def check_registry(config: Config, task: str) -> str | None:
    """Fail in the first second, not after the backtest, when the tracking store does not answer or
    cannot be written. Returns a sentence when a SQLite registry file does not exist yet and is created
    here (``train`` run from another folder than the registry's: its version would land in a new
    registry nobody serves), else None.

    Raises
    ------
    RegistryUnavailable
        The tracking server is down or unreachable, the store cannot be opened, or its SQLite file (or
        folder) is read-only; the message names the URI or the file.
    """
    from mlflow.exceptions import MlflowException

    files = {path for path in (sqlite_file(config.tracking_uri), sqlite_file(config.registry_uri)) if path}
    for path in sorted(files):
        # SQLite writes a journal beside the file: both must be writable, or the run fails after the backtest.
        unwritable = next((p for p in (path, path.parent) if p.exists() and not os.access(p, os.W_OK)), None)
        if unwritable is not None:
            raise RegistryUnavailable(
                f"the MLflow registry {path} cannot be written ({unwritable} is read-only): train registers a "
                "version there; make it writable, or point tracking_uri at a registry that is"
            )
    new = sorted(path for path in files if not path.exists())
    set_uris(config)
    try:
        ensure_experiment(config, task)
    except MlflowException as exc:
        raise RegistryUnavailable(
            f"cannot reach the MLflow tracking store at {config.tracking_uri}: {exc.message}"
        ) from exc
    check_project(config, task)
    if not new:
        return None
    return (
        f"no registry at {new[0]}: a new one is created there (a relative sqlite path in tracking_uri resolves against "
        f"the working directory, {Path.cwd()}); if the champions live in another registry, run from its folder or give "
        "tracking_uri an absolute path"
    )


def _config_name(tag: str | None) -> str | None:
    """The ``name`` of the config a version's ``config`` tag holds (whole JSON since 2026-12-07, the compact
    form of :func:`training.registry.config_tag` keeping it; before, cut at 4,900 characters, so read from its
    start when the whole does not parse); None without one."""
    if not tag:
        return None
    try:
        return json.loads(tag).get("name")
    except (ValueError, AttributeError):
        found = re.match(r'\{"name": ("(?:[^"\\]|\\.)*")', tag)
        return json.loads(found.group(1)) if found else None


# What evaluation.json's metrics are, over test_predictions.parquet's label and probability columns.
METRIC_DEFINITIONS = {
    "roc_auc": "sklearn.metrics.roc_auc_score(label, probability)",
    "pr_auc": "sklearn.metrics.average_precision_score(label, probability)",
    "brier": "mean((probability - label)^2)",
    "ece": "sum over 10 equal-width probability bins [0, 0.1), ..., [0.9, 1] of (rows in bin / rows) * "
    "|mean(label) - mean(probability)| in the bin",
    "lift_at_10": "mean(label) of the round(10% of rows) highest probabilities (ties: the earlier row) / mean(label)",
}


def check_project(config: Config, task: str) -> None:
    """Refuse to train into a registered model whose latest version another config (by ``name``) trained:
    two projects on one tracking store (a folder's ``mlflow.db``, a team's server) shared ``crmscore-churn``,
    the gate compared one's champion with the other's runs, and a new user's SaaS champion then served the
    retail config (``feature column 'events_total' is missing``). ``registry_prefix`` keeps them apart.

    Raises
    ------
    ConfigError
        The latest version of ``<registry_prefix>-<task>`` was trained with a config of another name.
    """
    name = registered_name(task, config)
    versions = registered_versions(MlflowClient(), config, name)
    if not versions:
        return
    latest = max(versions, key=int)
    other = _config_name((versions[latest][0].tags or {}).get("config"))
    if other is None or other == config.name:
        return
    raise ConfigError(
        f"registered model '{name}' in {config.tracking_uri} holds the models of config '{other}' (latest v{latest}), "
        f"not of this config '{config.name}': its champion would be compared with and replaced by this project's. "
        f"Give this config a registry_prefix of its own (registry_prefix: {registry_prefix_for(config.name)}) or its own "
        f"tracking_uri; if it is the same project renamed, keep name: {other}"
    )


def _clean(value: Any) -> Any:
    """JSON-safe: NaN becomes None, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) else value
    if isinstance(value, np.integer):
        return int(value)
    return value


# A ROC AUC difference with DeLong's p at least this is level (within one test fold's noise).
LEVEL_P = 0.05
# A ROC AUC gain over the champion, from features it does not read, that is held for review rather than
# promoted: the size of gain a column recorded after the outcome gives (a CRM status filled for half the
# won leads: 0.711 -> 0.817), and more than any retrain of the bundled models moved (0.02 at most).
SUSPECT_GAIN = 0.05
# Below this a Brier difference is rounding (the same model retrained on the same data); above it,
# a lower Brier promotes only when a paired test puts it beyond the fold's noise (p < LEVEL_P).
BRIER_MARGIN = 1e-6


class Promotion:
    """The registry decision for one new version."""

    def __init__(self, promote: bool, reason: str, champion_metric: float | None = None) -> None:
        self.promote = promote
        self.reason = reason
        self.champion_metric = champion_metric


def decide_promotion(
    client: MlflowClient, name: str, result: BacktestResult, test: pd.DataFrame, *, force: bool = False
) -> Promotion:
    """Whether the new model should become ``champion``.

    The current champion is re-scored on this run's test rows and compared on the task's
    primary metric (higher is better). A ROC AUC that is not higher but level within the noise
    of the test fold (DeLong's paired p >= ``LEVEL_P``) promotes when the Brier score, which also
    counts calibration, is lower: a retrain that fixes the probabilities without moving the
    ranking should not need ``--force-promote``. Otherwise a tie keeps the champion.
    """
    from mlflow.exceptions import MlflowException

    if force:
        return Promotion(True, "forced (--force-promote)")
    leaks = leaky_features(result.warnings)
    if leaks:
        return Promotion(
            False,
            f"held for review: the run's warnings name possible leakage in {', '.join(map(repr, leaks))}; a column "
            "recorded after the outcome scores the past well and new cases badly. Exclude it and retrain, or, if it is "
            "known before the outcome, promote by hand (crmscore promote, or --force-promote)",
        )
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return Promotion(True, "no champion yet")
    tags = champion.tags or {}
    other = other_question(tags, question_of(result.spec))
    if other:
        theirs = ", ".join(f"{key} {value!r}" for key, (value, _) in other.items())
        ours = ", ".join(f"{key} {value!r}" for key, (_, value) in other.items())
        return Promotion(
            False,
            f"champion v{champion.version} answers another question ({theirs}; this run: {ours}): the scores do not "
            "compare, so the gate cannot choose (use --force-promote to replace it, or train with the champion's "
            "settings)",
        )
    champion_cutoff = tags.get("test_cutoff")
    if champion_cutoff and dt.date.fromisoformat(champion_cutoff) > result.test_cutoff:
        return Promotion(
            False,
            f"champion v{champion.version} was tested at {champion_cutoff}, after this run's test cut-off "
            f"{result.test_cutoff}: its training data may include this test period, so they cannot be compared "
            "(use --force-promote to promote anyway)",
        )
    scorer = load_scorer(f"models:/{name}/{champion.version}")
    try:
        X = scorer.prepare(test)
    except ValueError as exc:
        lacking = sorted(set(scorer.feature_names) - set(test.columns))
        said = (
            f"it reads {', '.join(map(repr, lacking[:5]))}{' and more' if len(lacking) > 5 else ''}, which this run's "
            "features lack (under the config's exclude, or not mapped?)"
            if lacking
            else str(exc)
        )
        return Promotion(
            False,
            f"champion v{champion.version} cannot score this run's test rows: {said}. To compare them, run `crmscore "
            f"monitor {result.spec.task} --version N` for each with the config it was trained with (the version's "
            "`config` tag), then promote the better by hand (crmscore promote) or use --force-promote",
        )
    metric = result.spec.primary_metric
    y = test["label"].to_numpy(dtype=np.float64)
    champion_p = batch_probability(scorer, X, result.test_cutoff)
    champion_value = float(getattr(m, metric)(y, champion_p))
    new_value = float(result.metrics[metric])
    noise, p_value = "", None
    new_p = result.predictions["probability"].to_numpy(dtype=np.float64)
    if metric == "roc_auc" and min(y.sum(), len(y) - y.sum()) >= 2:
        # How far the difference is from the noise of one test fold.
        p_value = m.roc_auc_difference(y, new_p, champion_p)["p_value"]
        noise = f" (DeLong p = {p_value:.2g})"
    # On the test rows the champion was tested on (the same cut-off), a higher ROC AUC within the noise of
    # the fold is a tie: a seed's change read 0.7758 > 0.7757 (p = 0.89) and moved 87 customers' tiers. On
    # later rows (a retrain on newer data) a higher one promotes however small, as a newer model should.
    same_rows = champion_cutoff == result.test_cutoff.isoformat()
    level = p_value is not None and p_value >= LEVEL_P
    if new_value > champion_value and not (same_rows and level):
        reason = f"{metric} {new_value:.4f} > champion v{champion.version} {champion_value:.4f}{noise}"
        added = sorted(set(result.scorer.feature_names) - set(scorer.feature_names))
        if metric == "roc_auc" and new_value - champion_value >= SUSPECT_GAIN and added:
            return Promotion(
                False,
                f"held for review: {reason}, a gain of {new_value - champion_value:.3f} from features the champion "
                f"does not read ({', '.join(map(repr, added[:5]))}{' and more' if len(added) > 5 else ''}): a column "
                "recorded after the outcome looks like this. Check that each is known before the outcome, then promote "
                "by hand (crmscore promote, or --force-promote)",
                champion_value,
            )
        return _unless_graded_c(result, reason, champion_value)
    brier = ""
    if level:
        new_brier, champion_brier, brier_p = _brier_difference(y, new_p, champion_p)
        digits = _digits(new_brier, champion_brier)
        said = f"brier {new_brier:.{digits}f}"
        versus = f"{champion_brier:.{digits}f} (paired t-test p = {brier_p:.2g})"
        if new_brier < champion_brier - BRIER_MARGIN and brier_p < LEVEL_P:
            return _unless_graded_c(
                result,
                f"{metric} {new_value:.4f} level with champion v{champion.version} {champion_value:.4f} on the same "
                f"test rows{noise}, and {said} < {versus}",
                champion_value,
            )
        if new_brier < champion_brier - BRIER_MARGIN:  # lower, but within the noise of the fold
            brier = f"; {said} against {versus}: not lower beyond the noise"
        else:
            brier = f"; {said}, not lower than {versus}"
        spend = _spend_comparison(result, test, scorer, X, champion_p)
        if spend is not None and spend[0]:
            return _unless_graded_c(
                result,
                f"{metric} {new_value:.4f} level with champion v{champion.version} {champion_value:.4f} on the same "
                f"test rows{noise}{brier}, and {spend[1]}",
                champion_value,
            )
        brier += f"; {spend[1]}" if spend is not None else ""
    compared = ">" if new_value > champion_value else "<="
    within = ", within the noise of the fold" if new_value > champion_value else ""
    return Promotion(
        False,
        f"{metric} {new_value:.4f} {compared} champion v{champion.version} {champion_value:.4f} on the same test "
        f"rows{noise}{within}{brier}",
        champion_value,
    )


def batch_probability(scorer: Any, X: np.ndarray, as_of: Any) -> np.ndarray:
    """The probabilities batch scoring gives the population ``X`` at ``as_of``: the model's calendar,
    and for an anchored model its anchor solved on these rows (as a new model's test probabilities
    are), so that a champion and a challenger compare on the same footing. (The gate used the
    champion's anchor of its own test cut-off: a lead champion's Brier score read 0.366 for 0.227.)"""
    return scorer.probability(X, as_of=as_of, population_shift=scorer.population_shift(X, as_of=as_of))


def _unless_graded_c(result: BacktestResult, reason: str, champion_value: float) -> Promotion:
    """A challenger that beat the champion is promoted, unless it ranked below one of its own
    baselines at the test cut-off (grade C): a champion is not replaced by a model a rule beats."""
    if result.grade == "C":
        return Promotion(
            False,
            f"{reason}, but graded C: it ranked below a baseline (use --force-promote to promote anyway)",
            champion_value,
        )
    return Promotion(True, reason, champion_value)


def _brier_difference(y: np.ndarray, new_p: np.ndarray, champion_p: np.ndarray) -> tuple[float, float, float]:
    """Both Brier scores on the same rows, and the one-sided p-value of the new one being lower
    (a paired t-test on the rows' squared errors): a retrain that only moves the fourth decimal
    does not replace a champion (0.191892 against 0.191860 did, until 2026-12-07)."""
    return _squared_errors_lower(y, new_p, champion_p)


def _squared_errors_lower(y: np.ndarray, new: np.ndarray, champion: np.ndarray) -> tuple[float, float, float]:
    """The mean squared errors of ``new`` and ``champion`` on the same rows, and the one-sided p-value
    of the new one being lower (a paired t-test on the rows' squared errors)."""
    from scipy import stats

    new_sq, champion_sq = (new - y) ** 2, (champion - y) ** 2
    diff = new_sq - champion_sq
    p_value = 1.0 if not np.any(diff) else float(stats.ttest_rel(new_sq, champion_sq, alternative="less").pvalue)
    return float(new_sq.mean()), float(champion_sq.mean()), p_value


def _spend_comparison(
    result: BacktestResult, test: pd.DataFrame, scorer: Any, X: np.ndarray, champion_p: np.ndarray
) -> tuple[bool, str] | None:
    """For a model with a spend head (next purchase), whose probabilities were level with the champion's:
    whether its expected values (P(buy) x expected spend, what ``top next-purchase`` ranks by) are closer
    to the spend that followed, by RMSE beyond the fold's noise (paired t-test p < ``LEVEL_P``), and the
    sentence that says so. None without a spend head. A retrain of the spend model alone tied on
    ROC AUC and was never promoted, the reason silent on the spend (1,760 against 1,824 stayed out)."""
    theirs = scorer.values(X, champion_p).get("expected_value")
    if "expected_value" not in result.predictions or "spend" not in test.columns or theirs is None:
        return None
    spend = test["spend"].to_numpy(dtype=np.float64)
    new_value = result.predictions["expected_value"].to_numpy(dtype=np.float64)
    champion_value = np.asarray(theirs, dtype=np.float64)
    new_sq, champion_sq, p_value = _squared_errors_lower(spend, new_value, champion_value)
    new_rmse, champion_rmse = float(np.sqrt(new_sq)), float(np.sqrt(champion_sq))
    said = f"expected-value rmse {new_rmse:,.1f} against {champion_rmse:,.1f} (paired t-test p = {p_value:.2g})"
    lower = new_rmse < champion_rmse and p_value < LEVEL_P
    return lower, said + ("" if lower else ": not lower beyond the noise")


def _digits(a: float, b: float) -> int:
    """Decimals that tell ``a`` from ``b`` apart (4 at least, 8 at most)."""
    for digits in range(4, 9):
        if f"{a:.{digits}f}" != f"{b:.{digits}f}":
            return digits
    return 8


def _input_example(test: pd.DataFrame, result: BacktestResult, n: int = 5) -> pd.DataFrame:
    # Doubles in the signature for numeric features (a missing value is allowed), strings for the rest,
    # and the rows' scoring date (the test cut-off), which the probabilities depend on.
    return model_input(test.head(n), result.scorer).reset_index(drop=True)


def _as_of_optional(signature: ModelSignature) -> ModelSignature:
    """``signature`` with its ``as_of`` input column optional: a row's scoring date, which the params'
    ``as_of`` may give instead. Without the column, MLflow's schema check dropped an ``as_of`` passed
    in the rows, and a churn model scored without its date carried the test cut-off's season (mean
    P(churn) 0.43 against 0.73 on the bundled data's last day)."""
    columns = [ColSpec(spec.type, spec.name, required=spec.name != AS_OF) for spec in signature.inputs.inputs]
    return ModelSignature(Schema(columns), signature.outputs, signature.params)


def _outside_run(client: MlflowClient, config: Config) -> None:
    """Let go of a run ``mlflow run`` started in another tracking store.

    ``mlflow run . -e train`` starts a run where ``MLFLOW_TRACKING_URI`` points (by default a store
    in its working folder) and hands its id to the command in ``MLFLOW_RUN_ID``; MLflow then resumes
    that id in the config's store, which does not hold it, and the command failed after the whole
    training ("Run with id=... not found"). Such a run is left as it is, said on stderr, and this
    training logs a run of its own where the config says.
    """
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return
    try:
        client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        del os.environ["MLFLOW_RUN_ID"]
        print(
            f"warning: MLFLOW_RUN_ID {run_id} (the run `mlflow run` started) is not in this config's tracking "
            f"store {masked_url(config.tracking_uri)}: this training logs a run of its own there; to log into "
            "mlflow run's run, set MLFLOW_TRACKING_URI to the config's tracking_uri before `mlflow run`",
            file=sys.stderr,
        )


def _champion_number(client: MlflowClient, name: str) -> str | None:
    """The version ``champion`` points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def config_as_run(config: Config, task: str, test_cutoff: Any) -> dict[str, Any]:
    """The configuration as a run used it, for ``config.json`` and the version's ``config`` tag: the
    file's, with ``models.<task>.test_cutoff`` the run's (``--as-of`` overrides the file's; the file's
    own would train another model)."""
    data = config.to_dict()
    data["models"][task]["test_cutoff"] = str(pd.Timestamp(test_cutoff).date())
    return data


def run_settings(config: Config, task: str) -> dict[str, Any]:
    """The settings that tell two training runs of one test cut-off apart (every run of the bundled
    churn data is ``churn-T2011-09-10``): MLflow parameters of the run, so the runs table filters on
    them, and a line of its report (which gives the horizon, the model's own, apart). ``config.json``
    holds them all."""
    mc = model_config_for(config, task)
    return {
        "lookback_days": mc.lookback_days,
        "step_days": mc.step_days,
        "n_train_cutoffs": mc.n_train_cutoffs,
        "seed": mc.seed,
        "engine": config.engine,
    }


def log_and_register(
    config: Config,
    result: BacktestResult,
    *,
    test: pd.DataFrame,
    fingerprint: dict[str, Any],
    plots: dict[str, bytes],
    train: pd.DataFrame,
    report: Path | None = None,
    force_promote: bool = False,
    reason: str | None = None,
) -> dict[str, Any]:
    """Log one backtest to MLflow, register its model and apply the promotion gate (``reason``: why
    ``force_promote``, kept with it).

    Returns
    -------
    ``{"run_id", "model_name", "version", "promoted", "alias", "reason", "code", "data_digests"}``;
    ``alias`` is ``champion`` when promoted, else ``challenger``; ``code`` is :func:`code_version`'s
    text and ``data_digests`` the :func:`frame_digest` of the training rows and test fold by context.
    """
    set_uris(config)
    task = result.task
    name = registered_name(task, config)
    client = MlflowClient()
    experiment_id = ensure_experiment(config, task)
    metrics_clean = _clean(result.metrics)
    baselines_clean = _clean(result.baselines)
    code = code_version()
    ran = config_as_run(config, task, result.test_cutoff)
    test_day = ran["models"][task]["test_cutoff"]
    command = train_command(config, task) + (
        f" --as-of {test_day}" if str(model_config_for(config, task).test_cutoff) != test_day else ""
    )
    command += " --force-promote" if force_promote else ""
    _outside_run(client, config)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{task}-T{result.test_cutoff}") as run:
        mlflow.set_tags(
            {
                "task": task,
                "test_cutoff": str(result.test_cutoff),
                "grade": result.grade,
                "calibration": result.calibration["kind"],
                "config_name": config.name,
                # What re-runs it from the same code and data (the file as it is now: config.json holds it as run).
                "command": command,
                "code": code["text"],
                # MLflow's own tag: the UI shows the commit beside the run's source.
                **({"mlflow.source.git.commit": code["commit"]} if code["commit"] else {}),
            }
        )
        if result.warnings:
            # In the runs table of the UI, beside the metrics: what this run could not do as its spec asks.
            mlflow.set_tag("warnings", " | ".join(result.warnings)[:5000])
        mlflow.log_dict(ran, "config.json")
        if code["diff"]:
            mlflow.log_text(code["diff"], "code.diff")
        mlflow.log_dict(run_environment(), "environment.json")
        mlflow.log_dict(_clean(fingerprint), "data_fingerprint.json")
        digests = _log_datasets(task, {"training": train, "test": test}, fingerprint)
        mlflow.log_dict(result.spec.describe(), "model_spec.json")
        params = {k: v for k, v in result.params.items() if v is not None}
        params.update(
            {
                **run_settings(config, task),
                "horizon_days": result.spec.horizon_days,
                "train_cutoffs": ",".join(str(c) for c in sorted(result.cutoffs)),
                "n_train": result.n_train,
                "n_test": result.n_test,
                "data_rows": ",".join(f"{t}:{v.get('rows_kept')}" for t, v in fingerprint.items()),
            }
        )
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics({k: v for k, v in metrics_clean.items() if v is not None})
        for baseline, values in baselines_clean.items():
            mlflow.log_metrics({f"baseline.{baseline}.{k}": v for k, v in values.items() if v is not None})
        mlflow.log_metrics({f"time.{k}": v for k, v in result.timings.items()})
        mlflow.log_table(result.table, "backtest.json")
        if not result.segments.empty:
            mlflow.log_table(result.segments, "segments.json")
        mlflow.log_dict(
            {
                "metrics": metrics_clean,
                "baselines": baselines_clean,
                "grade": result.grade,
                "calibration": _clean(result.calibration),
                "warnings": result.warnings,
                # How the metrics are computed from test_predictions.parquet, for an auditor to recompute them.
                "metric_definitions": METRIC_DEFINITIONS,
            },
            "evaluation.json",
        )
        # The test fold's rows as scored (id, label, probability, the baselines' scores; spend and expected
        # value for next purchase): an auditor recomputes every test metric from MLflow alone (they had to
        # rebuild the fold with crmscore's code and data to check them).
        with tempfile.TemporaryDirectory() as tmp:
            predictions = Path(tmp) / "test_predictions.parquet"
            result.predictions.assign(as_of=str(result.test_cutoff)).to_parquet(predictions, index=False)
            mlflow.log_artifact(str(predictions))
        mlflow.log_dict(
            {
                "compared": f"test fold ({result.test_cutoff}) against the {result.n_train} training rows",
                "features": [_clean(d.as_dict()) for d in result.drift],
            },
            "drift.json",
        )
        with tempfile.TemporaryDirectory() as tmp:
            for plot, png in plots.items():
                (Path(tmp) / f"{plot}.png").write_bytes(png)
            mlflow.log_artifacts(tmp, "plots")
        if report is not None:
            mlflow.log_artifact(str(report), "report")

        example = _input_example(test, result)
        scorer = result.scorer
        scorer.metadata.update(
            {
                "top_k": result.spec.top_k,
                "run_id": run.info.run_id,
                "trained_at": dt.datetime.now(dt.UTC).isoformat(),
                "code": code["text"],
            }
        )
        # The output example holds every column the model can return (counter-reasons are opt-in).
        output = predict_frame(scorer, example, k=result.spec.top_k, counter_k=result.spec.top_k)
        signature = infer_signature(
            example,
            output,
            params={
                "k": result.spec.top_k,
                "counter_k": 0,
                "explain": True,
                "as_of": "",
                "anchor": "model",
                "population_shift": 0.0,
            },
        )
        signature = _as_of_optional(signature)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{SCORER_ARTIFACT}.pkl"
            path.write_bytes(pickle.dumps(scorer))
            info = mlflow.pyfunc.log_model(
                name="model",
                # Models from code: the wrapper is this readable file in the model's code/ folder,
                # not a cloudpickled object; the trained state is the scorer artifact.
                python_model=str(MODEL_CODE),
                artifacts={SCORER_ARTIFACT: str(path)},
                # The scorer unpickles with the models code it was trained with.
                code_paths=[str(_PACKAGES / "models")],
                pip_requirements=model_requirements(),
                signature=signature,
                input_example=example,
                registered_model_name=name,
                await_registration_for=60,
            )
        version = str(info.registered_model_version)
        run_id = run.info.run_id

    tags = {
        "test_cutoff": str(result.test_cutoff),
        "metrics": json.dumps(metrics_clean),
        "baselines": json.dumps(baselines_clean),
        "grade": result.grade,
        **question_of(result.spec),
        # What the model must be scored with, whatever the config says later (models.catalog.scoring_config).
        "settings": json.dumps(feature_settings(model_config_for(config, task), task)),
        # Whole JSON always: the config itself, or a compact form when too long (config.json holds it all).
        "config": config_tag(ran),
        "command": command,
        # A tag holds at most 5,000 characters: a few warnings, each cut short if it must be.
        "warnings": json.dumps([w[:1000] for w in result.warnings[:4]]),
        "code": code["text"],
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    scorer.version = version
    decision = decide_promotion(client, name, result, test, force=force_promote)
    if force_promote and reason:
        decision.reason = f"{decision.reason}: {reason}"
    client.set_registered_model_alias(name, CHALLENGER, version)
    if decision.promote:
        previous = _champion_number(client, name)
        client.set_registered_model_alias(name, CHAMPION, version)
        how = "forced at training (--force-promote)" if force_promote else "the promotion gate at training"
        record_champion(client, name, version=version, previous=previous, how=how, reason=decision.reason)
    client.set_model_version_tag(name, version, "promotion", decision.reason)
    return {
        "run_id": run_id,
        "model_name": name,
        "version": version,
        "promoted": decision.promote,
        "alias": CHAMPION if decision.promote else CHALLENGER,
        "reason": decision.reason,
        "code": code["text"],
        "data_digests": digests,
    }


def describe_version(
    config: Config, spec: Any, name: str, version: str, summary: list[str], *, champion: bool = True
) -> None:
    """The descriptions MLflow's UI shows on the registered model's page and on the version's: what the
    model answers (score, population, label), and the version's run summary (``summary``, the lines of
    :func:`training.train.summary_lines`: the gate's decision, the test metrics beside the baselines').
    The model's page describes the champion: a version that stays challenger describes only itself."""
    set_uris(config)
    client = MlflowClient()
    if champion:
        client.update_registered_model(
            name,
            description=(
                f"{spec.score_label}. Population: {spec.population}. Label: {spec.label}. Registered by "
                "`crmscore train`; alias `champion` is the version the API and batch scoring use, moved by the "
                "promotion gate or by `crmscore promote`."
            ),
        )
    # Markdown: a fenced block keeps the metrics table's columns. Said to be as registered: the alias it names
    # moves later (a later champion, crmscore promote), and "champion" read weeks on was wrong.
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    note = f"As registered on {when}; `crmscore models` shows its aliases now and the champion history.\n"
    client.update_model_version(name, version, description=note + "```\n" + "\n".join(summary) + "\n```")
