"""``crmscore train``: backtest one model, log it to MLflow, register it and apply the promotion gate."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from features.config import Config
from features.files import check_output, write_text_atomic
from features.labels import final_flag_warning
from features.pipeline import build_training_set
from features.sources import CanonicalTables, load_tables
from models.catalog import model_config_for, spec_for
from models.drift import drift_overview
from models.spec import ModelSpec
from training.backtest import fitted_cutoffs, gain_text, run_backtest
from training.pyfunc import registered_name
from training.report import make_plots, write_report
from training.tracking import check_registry, describe_version, log_and_register, run_settings

__all__ = ["Steps", "backtest_inputs", "normalize_task", "report_path", "train_model"]


def normalize_task(task: str) -> str:
    """The task name for a command-line MODEL (``next-purchase`` -> ``next_purchase``)."""
    return task.strip().replace("-", "_")


def report_path(config: Config, task: str) -> Path:
    """Where the HTML report of a task's latest training run is written (and beside it, as
    ``<task>-v<version>.html``, each registered version's)."""
    return Path(config.output_dir) / "reports" / f"{task}.html"


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def backtest_inputs(
    config: Config, task: str, tables: CanonicalTables, test_cutoff: dt.date | str | None = None
) -> tuple[Any, Any, Any]:
    """What :func:`training.backtest.run_backtest` takes for ``task`` at ``test_cutoff``: the spec,
    the training set and, for customer models, the transactions of the BG/NBD baseline (else None)."""
    model_config = model_config_for(config, task)
    spec = spec_for(task, model_config)
    ts = build_training_set(
        tables,
        task,
        model_config=model_config,
        test_cutoff=test_cutoff,
        hazard_step_days=spec.hazard_step_days if spec.hazard_blend else None,
    )
    transactions = None
    if ts.entity == "customer_id" and tables.transactions is not None:
        transactions = tables.transactions.select("customer_id", "timestamp", "amount").to_pandas()
    return spec, ts, transactions


class Steps:
    """Numbered progress lines with the time since the first (silent without a callback): the long
    commands' ``[2/4  58.5s] backtest at ...`` (train, score)."""

    def __init__(self, progress: Callable[[str], None] | None, total: int) -> None:
        self.progress, self.total, self.i = progress, total, 0
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        if self.progress is not None:
            self.i += 1
            self.progress(f"[{self.i}/{self.total} {time.monotonic() - self.started:5.1f}s] {text}")

    def done(self) -> None:
        if self.progress is not None:
            self.progress(f"trained in {time.monotonic() - self.started:.1f}s")


def _training_rows(train: pd.DataFrame, spec: ModelSpec) -> str:
    """ "25,794 training rows at 6 cut-offs (50,370 at all 13 set the seasonal shift)": what ``n_train`` counts."""
    all_cutoffs = pd.to_datetime(train["as_of"])
    fitted = fitted_cutoffs(train, spec)
    n_fit = int(all_cutoffs.isin(fitted).sum())
    text = f"{n_fit:,} training rows at {len(fitted)} cut-offs"
    n_all = all_cutoffs.nunique()
    if len(fitted) < n_all:
        role = "set the seasonal shift" if spec.seasonal_prior_shift else "are read but not fitted"
        text += f" ({len(train):,} at all {n_all} {role})"
    return text


def train_model(
    config: Config,
    task: str,
    *,
    tables: CanonicalTables | None = None,
    test_cutoff: dt.date | str | None = None,
    force_promote: bool = False,
    metrics_out: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Backtest, calibrate, log, register and (maybe) promote one model.

    Parameters
    ----------
    config
        The run configuration (``models.<task>``, ``tracking_uri``, ``output_dir``).
    task
        ``churn``, ``next_purchase`` (or ``next-purchase``) or ``lead``.
    tables
        Canonical tables already loaded; read from the config when omitted.
    test_cutoff
        The test cut-off T; default ``models.<task>.test_cutoff``.
    force_promote
        Make the new version ``champion`` even if it does not beat the current one.
    reason
        Why ``force_promote``: kept with the promotion (its ``promotion`` tag and the champion history).
    metrics_out
        Also write the returned metrics JSON to this file.
    progress
        Called with one line before each step (tables, features, backtest, report, MLflow), with
        the seconds since the start, and once at the end.

    Returns
    -------
    ``{"model", "version", "test_cutoff", "horizon_days", "n_train", "n_test", "metrics",
    "baselines", "grade"}`` as in DESIGN.md, plus ``registered_model``, ``run_id``, ``alias``
    (``champion`` or ``challenger``), ``promotion`` (the reason), ``report`` (HTML path) and
    ``drift``: the test fold's shift from the training rows (``max_psi``, the ``alert`` features
    and a ``warning`` sentence, None when no feature shifted; see :mod:`models.drift`), ``segments``:
    the test metrics per segment (:mod:`training.segments`), and
    ``warnings``: sentences on what the run could not do as its spec asks (e.g. no seasonal prior
    shift for lack of cut-offs a year back), each with the fix.
    """
    task = normalize_task(task)
    if metrics_out is not None:
        check_output(metrics_out, suffixes=(".json",), option="--metrics-out")
    created = check_registry(config, task)
    if created is not None and progress is not None:
        progress(f"note: {created}")  # the first train of a project, or one run from the wrong folder
    step = Steps(progress, 5 if tables is None else 4)
    if tables is None:
        step("reading and validating the tables")
        tables = load_tables(config)
    mc = model_config_for(config, task)
    step(f"features and labels of {mc.n_train_cutoffs} training cut-offs and the test cut-off")
    spec, ts, transactions = backtest_inputs(config, task, tables, test_cutoff)
    step(
        f"backtest at {ts.test_cutoff}: {_training_rows(ts.train, spec)}, {len(ts.test):,} test rows, calibration, baselines"
    )
    result = run_backtest(ts, spec, transactions=transactions, model_name=registered_name(task, config))
    if (flags := final_flag_warning(tables, task, mc.horizon_days)) is not None:
        result.warnings.append(flags)
        # The label the run trained, not the horizon's: the model spec, the version's description, the
        # report and its plots said "converted within 30 days of creation" of final flags (an auditor's find).
        result.spec = dataclasses.replace(
            result.spec,
            label="1 = converted, the export's final flag (no converted_at: the horizon does not apply)",
            score_label="P(convert), by the export's final flag",
        )
    step(f"plots and the HTML report (ROC AUC {result.metrics['roc_auc']:.3f}, grade {result.grade})")
    plots = make_plots(result)
    report = report_path(config, task)
    step("MLflow: logging the run, registering the version, the promotion gate")
    # The run's own copy of the report, logged with it; the outputs' report is written once the version is
    # registered, so a run that fails to register (a read-only registry, a kill) leaves the last one's.
    with tempfile.TemporaryDirectory(prefix="crmscore-report-") as tmp:
        logged = log_and_register(
            config,
            result,
            test=ts.test,
            train=ts.train,
            fingerprint=tables.fingerprint(),
            plots=plots,
            report=write_report(result, plots, Path(tmp) / report.name),
            force_promote=force_promote,
            reason=reason,
        )
    # The report names the registered version too: as the latest run's and as the version's own (a
    # challenger the gate kept out no longer hides the champion's report).
    run = {**logged, "settings": run_settings(config, task)}
    write_report(result, plots, report, run=run)
    write_report(result, plots, report.with_name(f"{task}-v{logged['version']}.html"), run=run)
    step.done()
    out = _json_safe(
        {
            "model": task,
            "version": logged["version"],
            "test_cutoff": str(result.test_cutoff),
            "horizon_days": spec.horizon_days,
            "n_train": result.n_train,
            "n_test": result.n_test,
            "metrics": result.metrics,
            "baselines": result.baselines,
            "grade": result.grade,
            "registered_model": logged["model_name"],
            "run_id": logged["run_id"],
            "alias": logged["alias"],
            "promotion": logged["reason"],
            "code": logged["code"],
            "data_digests": logged["data_digests"],
            "report": str(report),
            "drift": drift_overview(result.drift),
            "segments": result.segments.to_dict(orient="records"),
            "warnings": result.warnings,
        }
    )
    describe_version(
        config,
        result.spec,
        out["registered_model"],
        out["version"],
        summary_lines(out),
        champion=out["alias"] == "champion",
    )
    if metrics_out is not None:
        write_text_atomic(metrics_out, json.dumps(out, indent=2))
    return out


# The test metrics :func:`summary_lines` sets beside the baselines' (those the task has).
SUMMARY_METRICS = ("roc_auc", "pr_auc", "brier", "ece", "lift_at_10", "rmse", "gini")


def _cell(metric: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.0f}" if metric == "rmse" else f"{value:.3f}"


def summary_lines(result: dict[str, Any]) -> list[str]:
    """What a :func:`train_model` run produced, for a person at a terminal: the registered version and
    the promotion decision, the test metrics beside each baseline's (``-`` where a baseline has no
    such metric, e.g. logistic regression predicts no spend), the gain over the best baseline with its
    interval, the grade and report, then the drift and the run's warnings.

    ``crmscore train`` prints these on stderr after the JSON, ``crmscore demo`` indented in its log.
    """
    metrics, baselines = result["metrics"], result["baselines"]
    lines = [
        f"{result['registered_model']} version {result['version']}, {result['alias']} ({result['promotion']}); "
        f"test cut-off {result['test_cutoff']}, n_train {result['n_train']:,}, n_test {result['n_test']:,}"
    ]
    names = ["model", *baselines]
    rows = [m for m in SUMMARY_METRICS if m in metrics]
    cells = [[_cell(m, (metrics if n == "model" else baselines[n]).get(m)) for n in names] for m in rows]
    label = max(len("metric"), *(len(m) for m in rows))
    widths = [max(len(n), *(len(row[i]) for row in cells)) for i, n in enumerate(names)]
    lines.append("  ".join(["metric".ljust(label), *(n.rjust(w) for n, w in zip(names, widths, strict=True))]))
    for m, row in zip(rows, cells, strict=True):
        lines.append("  ".join([m.ljust(label), *(c.rjust(w) for c, w in zip(row, widths, strict=True))]))
    sentence = gain_text(metrics, baselines)
    if sentence:
        lines.append(sentence)
    lines.append(f"grade {result['grade']}; report {result['report']}")
    if result["drift"]["warning"]:
        lines.append(f"test fold drift: {result['drift']['warning']}")
    lines += [f"warning: {warning}" for warning in result["warnings"]]
    return lines
