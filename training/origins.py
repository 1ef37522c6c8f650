"""Rolling-origin evaluation: the backtest of ``crmscore train`` repeated at a series of test cut-offs.

One test cut-off says little about a model whose data drifts: the lead model's 264 test leads at
T give an ECE with a wide margin, and a calibration method chosen there may only suit that month.
:func:`evaluate_origins` runs the same backtest (its own training cut-offs, calibration fold and
baselines) at every origin and returns one row per origin, so a choice can rest on many. Nothing
is logged to MLflow or registered: this is an evaluation, not a training run.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from features.config import Config
from features.sources import CanonicalTables, load_tables
from training.backtest import best_baseline, run_backtest
from training.train import backtest_inputs, normalize_task

__all__ = ["evaluate_origins", "origin_dates"]

_METRICS = ("roc_auc", "pr_auc", "brier", "ece", "lift_at_10")
# Present only for models with a population anchor (the lead model).
_ANCHOR = ("population_shift_logit", "ece_without_anchor", "brier_without_anchor")
# DeLong's paired test against the best baseline (see training.backtest).
_GAIN = ("roc_auc_gain_low", "roc_auc_gain_high", "roc_auc_gain_p_value")


def origin_dates(start: str | dt.date, end: str | dt.date, every: str = "MS") -> list[dt.date]:
    """Test cut-offs from ``start`` to ``end`` (both included when on the grid), every ``every``.

    ``every`` is a pandas frequency: ``MS`` (month starts), ``30D``, ``W-MON``, ...

    Raises
    ------
    ValueError
        ``every`` is not a frequency, ``end`` is before ``start``, or the range holds no date.
    """
    try:
        with warnings.catch_warnings():  # pandas warns about the case of an unknown alias before it fails
            warnings.simplefilter("ignore", FutureWarning)
            dates = pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq=every)
    except ValueError as exc:
        raise ValueError(f"--every {every!r} is not a pandas frequency (e.g. MS, 30D, W-MON): {exc}") from exc
    if pd.Timestamp(end) < pd.Timestamp(start):
        raise ValueError(f"--to {end} is before --from {start}")
    if len(dates) == 0:
        raise ValueError(f"no test cut-off between {start} and {end} every {every!r}")
    return [d.date() for d in dates]


def evaluate_origins(
    config: Config,
    task: str,
    origins: Sequence[str | dt.date],
    *,
    tables: CanonicalTables | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> pd.DataFrame:
    """The backtest at each test cut-off in ``origins``: one row per origin.

    Columns: ``test_cutoff``, ``n_test``, ``base_rate`` (observed), ``calibration_base_rate`` (the
    latest labelled fold's), ``mean_probability``, the model's ``roc_auc``, ``pr_auc``, ``brier``,
    ``ece``, ``lift_at_10``, for anchored models ``population_shift_logit``,
    ``ece_without_anchor`` and ``brier_without_anchor``, then ``best_baseline``, its
    ``baseline_roc_auc``, the 95% interval and p-value of the model's gain over it
    (``roc_auc_gain_low``, ``roc_auc_gain_high``, ``roc_auc_gain_p_value``), ``grade``, ``error`` and
    ``warning`` (what the run could not do as its spec asks, e.g. no seasonal prior shift for lack of
    cut-offs a year back: see ``BacktestResult.warnings``). An origin that cannot be evaluated (too few
    training cut-offs before it, a fold with a single class, no rows) keeps its row with the
    reason in ``error`` and the metrics empty, so the table shows every origin asked for.

    ``progress(i, n, cutoff)`` is called before each origin.
    """
    task = normalize_task(task)
    if tables is None:
        tables = load_tables(config)
    rows: list[dict[str, Any]] = []
    for i, origin in enumerate(origins):
        cutoff = str(pd.Timestamp(origin).date())
        if progress is not None:
            progress(i, len(origins), cutoff)
        row: dict[str, Any] = {"test_cutoff": cutoff}
        try:
            spec, ts, transactions = backtest_inputs(config, task, tables, cutoff)
            result = run_backtest(ts, spec, transactions=transactions)
        except ValueError as exc:
            rows.append({**row, "error": str(exc)})
            continue
        metrics = result.metrics
        best = best_baseline(result.baselines)
        row.update(
            n_test=result.n_test,
            base_rate=metrics["base_rate"],
            calibration_base_rate=metrics["calibration_base_rate"],
            mean_probability=float(result.predictions["probability"].mean()),
            **{k: metrics[k] for k in _METRICS},
            **{k: metrics[k] for k in _ANCHOR if k in metrics},
            best_baseline=best,
            baseline_roc_auc=None if best is None else result.baselines[best]["roc_auc"],
            **{k: metrics.get(k) for k in _GAIN},
            grade=result.grade,
            error=None,
            warning="; ".join(result.warnings) or None,
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ("error", "warning"):
        if column not in frame.columns:
            frame[column] = None
    return frame
