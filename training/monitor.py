"""Outcome monitoring: how the registered champion did on the dates whose outcomes are now known.

The backtest measures a model once, at its test cut-off. In production the question comes back
every week: the champion scored the population at D, H days have passed, what happened? For each
date D, :func:`monitor_champion` scores D's population exactly as ``crmscore score`` would have
(features as of D, the seasonal correction of D's window, the lead model's anchor to the
population), joins the labels of ``(D, D + H]`` and reports the protocol's metrics beside the
ones the champion was promoted on. Dates before the champion's test cut-off overlap the data it
was fitted on and are flagged ``out_of_sample = False``; a date whose label window has not closed
yet keeps its row with the reason. Nothing is logged or registered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.config import Config
from features.labels import check_window_observed, data_until, observed_until
from features.pipeline import ENTITY, labels, population_features
from features.sources import CanonicalTables, load_tables
from features.timebase import normalize_as_of
from models.catalog import model_config_for, scoring_config
from training import metrics as m
from training.origins import origin_dates
from training.pyfunc import load_champion
from training.score import score_population
from training.train import normalize_task

__all__ = ["latest_closed_cutoff", "monitor_champion", "monitor_dates"]

_METRICS = ("roc_auc", "pr_auc", "brier", "ece", "lift_at_10")
_SPEND = ("rmse", "gini")


def monitor_dates(start: str | dt.date, end: str | dt.date, every: str = "MS") -> list[dt.date]:
    """``start``, every ``every`` date of the grid between, and ``end``: the champion's own test
    cut-off (``start`` by default) and the latest closed window (``end`` by default) are both
    monitored even when they are off the grid.

    Raises
    ------
    ValueError
        ``end`` is before ``start``, or ``every`` is not a frequency.
    """
    first, last = pd.Timestamp(start).date(), pd.Timestamp(end).date()
    if last < first:
        raise ValueError(f"--from {first} is after --to {last}, the latest date to monitor")
    try:
        grid = origin_dates(first, end, every)
    except ValueError as exc:
        if "no test cut-off" not in str(exc):
            raise
        grid = []
    return sorted({first, *grid, last})


def latest_closed_cutoff(
    config: Config, task: str, *, tables: CanonicalTables | None = None, horizon_days: int | None = None
) -> dt.date:
    """The latest date whose label window ``(D, D + H]`` the data has fully observed (``H``: the
    config's horizon, or ``horizon_days``).

    For leads without conversion dates (the outcome is final as exported), the latest lead's
    creation date.
    """
    task = normalize_task(task)
    if tables is None:
        tables = load_tables(config)
    _, until = observed_until(tables, task)
    if until is None:
        _, last = data_until(tables, task)
        if last is None:
            raise ValueError(f"task '{task}': its tables have no rows, so no outcome window has closed")
        return last.date()
    h = model_config_for(config, task).horizon_days if horizon_days is None else horizon_days
    return (until - dt.timedelta(days=h)).date()


def monitor_champion(
    config: Config,
    task: str,
    dates: Sequence[str | dt.date] | None = None,
    *,
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
    every: str = "MS",
    tables: CanonicalTables | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    version: str | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The champion's metrics on the realised outcomes of each date in ``dates`` (or those of a
    registered ``version``: the same table for a challenger or a former champion, so that two
    versions tested at different cut-offs can be compared on the same dates).

    Without ``dates``: :func:`monitor_dates` from ``start`` (default the champion's test cut-off)
    to ``end`` (default :func:`latest_closed_cutoff`) every ``every``.

    Returns the table and the champion's registry info (``version``, ``test_cutoff``,
    ``metrics``, ..., and ``settings_warning``: :func:`models.catalog.scoring_config`'s). Columns: ``as_of``, ``out_of_sample`` (the date is on or after the
    champion's test cut-off), ``n``, ``base_rate``, ``mean_probability``, ``roc_auc``,
    ``pr_auc``, ``brier``, ``ece``, ``lift_at_10``, ``roc_auc_se`` (DeLong), ``roc_auc_change``
    (against the champion's own test ROC AUC), for next purchase ``mean_expected_value``, ``mean_spend``, ``rmse`` and
    ``gini`` of the expected value against the realised net spend, ``drift_alerts`` (features
    with PSI >= 0.25 against the training rows), ``max_psi`` and ``max_psi_feature``,
    ``population_shift`` and ``error``. A date that cannot be evaluated (label window not closed, no rows, one class)
    keeps its row with the reason in ``error``.

    ``progress(i, n, date)`` is called before each date.

    Raises
    ------
    training.pyfunc.NoChampionError
        No champion is registered for ``task``.
    ValueError
        No dates: the range is empty or reversed (``start`` after the latest closed window).
    """
    task = normalize_task(task)
    scorer, info = load_champion(config, task, version=version)
    # Its own population, features and horizon (the labels it is measured on), whatever the config says now.
    mc, settings_warning = scoring_config(config, task, info)
    info = {**info, "settings_warning": settings_warning}
    if tables is None:
        tables = load_tables(config)
    entity = ENTITY[task]
    trained_at = pd.Timestamp(info["test_cutoff"]).date() if info.get("test_cutoff") else None
    if dates is None:
        start = start or trained_at
        if start is None:
            raise ValueError(f"the '{task}' champion has no test_cutoff tag: pass a start date")
        dates = monitor_dates(
            start, end or latest_closed_cutoff(config, task, tables=tables, horizon_days=mc.horizon_days), every
        )
    trained_auc = info.get("metrics", {}).get("roc_auc")
    observed = observed_until(tables, task)  # one query for every date's check
    model_tables = tables.with_vocabulary(scorer.vocabulary)  # features as the champion was trained on
    rows: list[dict[str, Any]] = []
    for i, date in enumerate(dates):
        as_of = normalize_as_of(date)
        if progress is not None:
            progress(i, len(dates), f"{as_of:%Y-%m-%d}")
        row: dict[str, Any] = {
            "as_of": as_of.date(),
            "out_of_sample": None if trained_at is None else as_of.date() >= trained_at,
        }
        try:
            check_window_observed(tables, task, as_of=as_of, horizon_days=mc.horizon_days, observed=observed)
            features = population_features(model_tables, task, as_of=as_of, model_config=mc)
            if features.empty:
                raise ValueError(f"no {task} population at {as_of:%Y-%m-%d}")
            scores, drift, shift = score_population(scorer, features, as_of=as_of)
            outcome = labels(tables, task, as_of=as_of, horizon_days=mc.horizon_days).to_pandas()
            outcome[entity] = outcome[entity].astype(str)
            joined = scores.assign(**{entity: scores[entity].astype(str)}).merge(outcome, on=entity, how="left")
            if joined["label"].isna().any():  # every scored row has a label by construction; say so if not
                raise ValueError(
                    f"{int(joined['label'].isna().sum())} scored {entity}s have no label at {as_of:%Y-%m-%d}"
                )
            y = joined["label"].to_numpy(dtype=np.float64)
            if y.min() == y.max():
                raise ValueError(f"every label at {as_of:%Y-%m-%d} is {int(y[0])}: no ranking to measure")
        except ValueError as exc:
            rows.append({**row, "error": str(exc)})
            continue
        p = joined["probability"].to_numpy(dtype=np.float64)
        got = m.binary_metrics(y, p)
        row.update(n=len(joined), base_rate=got["base_rate"], mean_probability=float(p.mean()))
        row.update({k: got[k] for k in _METRICS})
        # A date's drop is noise unless it is large against this (DeLong; 0.043 for the 174 leads of 2010-04).
        row["roc_auc_se"] = m.roc_auc_se(y, p)
        row["roc_auc_change"] = None if trained_auc is None else got["roc_auc"] - float(trained_auc)
        if "expected_value" in joined.columns and "spend" in joined.columns:
            spend = joined["spend"].to_numpy(dtype=np.float64)
            value = joined["expected_value"].to_numpy(dtype=np.float64)
            row.update(mean_expected_value=float(value.mean()), mean_spend=float(spend.mean()))
            row.update({k: v for k, v in m.spend_metrics(spend, value).items() if k in _SPEND})
        worst = max(drift, key=lambda d: d.psi, default=None)
        row.update(
            drift_alerts=sum(d.level == "alert" for d in drift),
            max_psi=None if worst is None else worst.psi,
            max_psi_feature=None if worst is None else worst.feature,
            population_shift=shift,
            error=None,
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    if "error" not in frame.columns:
        frame["error"] = None
    return frame, info
