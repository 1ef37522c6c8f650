"""Rolling-origin backtest: fit on stacked training cut-offs, calibrate on a later one, test at T.

The layout, never a random split:

- **early-stopping fit**: the training cut-offs whose label window ends at or before the latest
  training cut-off (``c + H <= latest``). Cut-offs in between are purged: their label windows
  overlap the latest one's, and a customer's later outcome would leak into the stopping fold;
- **calibration fold**: the latest training cut-off. The booster stops early on it and the
  calibrator (isotonic or sigmoid, by Brier) is fitted on that booster's scores there;
- **final fit**: all training cut-offs, with the early-stopped number of trees; it keeps the
  calibrator (same trees, more recent rows: its scores are on the scale the calibrator saw);
- **test fold**: the test cut-off T, whose label window lies after every training label window.

A spec with ``linear_blend`` adds the logistic regression of the early-stopping rows (the same
:class:`models.linear.LinearHead` as the baseline) to the booster's log-odds, both weighted by
their Platt slopes on the calibration fold, before the calibrator is fitted. One with
``hazard_blend`` adds the weekly hazard head (:mod:`models.hazard`) alike: fitted on the
person-weeks that ended by the calibration cut-off for the calibrator, then refitted on those that
ended by T, as the booster is.

Baselines (RFM rule, logistic regression, BG/NBD when the transactions are given) are
fitted and calibrated on the same folds and evaluated on the same test rows. The quality
grade compares the model with the best baseline on the task's primary metric (ROC AUC):
A when it gains at least 0.02, B when it is at least level, C otherwise.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.drift import FeatureDrift, FeatureProfile, drift_overview
from models.linear import LinearHead
from models.reasons import ReasonWriter
from models.scorer import Calibrator, Scorer, encode_frame, rate_shift, season_weights, seasonal_value, shift_log_odds
from models.spec import ModelSpec, leaf_size_for
from training import metrics as m
from training.baselines import bgnbd_scores, rfm_score
from training.calibration import (
    SEASON_TOLERANCE_DAYS,
    PriorShift,
    choose_calibrator,
    cutoffs_for_season,
    fit_sigmoid,
    intercept_shift,
    model_adjusted,
    recalibration_fit,
    reference_cutoffs,
    seasonal_prior_shift,
)
from training.hazard import fit_hazard
from training.leakage import leakage_warnings
from training.segments import segment_table

__all__ = ["GRADE_A_GAIN", "BacktestResult", "best_baseline", "fitted_cutoffs", "gain_text", "grade", "run_backtest"]

# Gain in ROC AUC over the best baseline for grade A; level or better is B, below is C.
GRADE_A_GAIN = 0.02


# Below this many rows in the calibration fold the run warns that early stopping and calibration rest on few
# (a sigmoid has two parameters; the bundled lead fold has 172 rows, a 1,500-lead sample of it 7).
MIN_CALIBRATION_ROWS = 100

# The least recalibration slope a seasonal reference cut-off may have for the slope to be used: at or
# below it the model's scores do not rank that cut-off's labels.
MIN_SEASONAL_SLOPE = 0.1


def seasonal_fits(
    scored: dict[str, tuple[np.ndarray, np.ndarray]], *, slope: bool
) -> tuple[dict[str, float], dict[str, float], str | None]:
    """Recalibration intercepts (and with ``slope`` slopes) of each reference cut-off's (p, y), and a warning.

    A slope at or below :data:`MIN_SEASONAL_SLOPE` says the model does not rank that cut-off's labels
    (a few rows, noise): a ratio of slopes would then flatten or invert the scores instead of
    recalibrating them, so every cut-off falls back to the intercept-only shift and the warning says why.
    """
    if slope:
        fits = {c: recalibration_fit(p, y) for c, (p, y) in scored.items()}
        flat = {c: a for c, (a, _) in fits.items() if not a > MIN_SEASONAL_SLOPE}
        if not flat:
            return {c: b for c, (_, b) in fits.items()}, {c: a for c, (a, _) in fits.items()}, None
        shown = ", ".join(f"{c} (slope {a:.2f} on {len(scored[c][1]):,} rows)" for c, a in sorted(flat.items()))
        warning = (
            f"seasonal slope not used: the model barely ranks the labels of the reference cut-off(s) {shown}, "
            "so the seasonal correction shifts the base rate only (scale 1); usually too few customers per cut-off"
        )
    else:
        warning = None
    return {c: intercept_shift(p, y) for c, (p, y) in scored.items()}, {}, warning


def fit_seasons(
    calibrator: Calibrator,
    scored: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    slope: bool,
    calibration_cutoff: Any,
    test_cutoff: Any,
) -> tuple[float, float, str | None]:
    """Give ``calibrator`` its seasonal table from the reference cut-offs' unshifted ``(p, y)``, and
    return the correction at the test cut-off ``(scale, shift)`` with :func:`seasonal_fits`' warning.

    The table holds each cut-off's recalibration (:func:`seasonal_fits`); the reference is the
    calibration season's, interpolated between the cut-offs around ``calibration_cutoff`` one
    period earlier (the nearest within the tolerance at the ends of the table). The correction
    at T is :meth:`Calibrator.correction_at` itself, so the test metrics measure the function that
    scores every other date, and it becomes the calibrator's ``scale``/``shift``.
    """
    intercepts, slopes, warning = seasonal_fits(scored, slope=slope)
    calibrator.seasonal_intercepts = intercepts
    calibrator.seasonal_slopes = slopes
    reference = calibrator.season_weights(calibration_cutoff, taper=False)
    calibrator.seasonal_reference = seasonal_value(reference, intercepts)
    calibrator.seasonal_reference_slope = seasonal_value(reference, slopes) if slopes else None
    calibrator.scale, calibrator.shift = calibrator.correction_at(test_cutoff)
    return calibrator.scale, calibrator.shift, warning


def grade(model_metric: float, baseline_metrics: list[float], *, chance: float | None = 0.5) -> str:
    """Quality grade A/B/C from the model's gain over the best baseline (higher metric = better).

    A model at or below ``chance`` (ROC AUC 0.5: it ranks no better than a coin) is C whatever the
    baselines score; beating a baseline that ranks worse than chance is not quality.
    """
    if chance is not None and not model_metric > chance:
        return "C"
    finite = [b for b in baseline_metrics if b is not None and np.isfinite(b)]
    if not finite:
        return "B"
    gain = model_metric - max(finite)
    return "A" if gain >= GRADE_A_GAIN else "B" if gain >= 0 else "C"


@dataclass
class BacktestResult:
    """What one backtest produced: the scorer, test metrics, baselines, grade and the evidence behind them."""

    task: str
    spec: ModelSpec
    scorer: Scorer
    test_cutoff: dt.date
    cutoffs: tuple[dt.date, ...]
    n_train: int
    n_test: int
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    grade: str
    table: pd.DataFrame
    predictions: pd.DataFrame
    params: dict[str, Any]
    calibration: dict[str, Any]
    test_X: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    drift: list[FeatureDrift] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    segments: pd.DataFrame = field(default_factory=pd.DataFrame)


def context_features(
    X: np.ndarray, cutoff: np.ndarray, feature_names: list[str], *, between_share: float = 0.95
) -> list[str]:
    """The features that (nearly) take one value within every cut-off's rows of ``X``.

    Such a feature tells the cut-off apart, not the rows of one population (the bundled leads'
    economic indicators are monthly, and their ``created_at`` has month precision, so every lead of
    a cut-off has the same age): it never becomes a reason (``ReasonWriter(context=...)``). A
    feature is context when it is constant within every cut-off (NaN aside), or when at least
    ``between_share`` of its variance lies between the cut-offs' means: the leads' daily 3-month
    Euribor varies a little within a month (97.8% of its variance is between cut-offs), against at
    most 27% for any customer feature of the bundled retail data.
    Cut-offs with a single row say nothing and are skipped; with none left, no feature is context.
    """
    groups = [idx for idx in pd.Series(np.arange(len(cutoff))).groupby(cutoff).indices.values() if len(idx) > 1]
    if not groups:
        return []
    rows = np.concatenate(groups)
    X = np.asarray(X, dtype=np.float64)
    constant = np.ones(X.shape[1], dtype=bool)
    within = np.zeros(X.shape[1])
    for idx in groups:
        block = X[idx]
        missing = np.isnan(block)
        # Largest minus smallest value: 0 for one value, -inf for an all-NaN column.
        spread = np.where(missing, -np.inf, block).max(axis=0) - np.where(missing, np.inf, block).min(axis=0)
        constant &= ~(spread > 0)
        within += _sum_of_squares(block)
    total = _sum_of_squares(X[rows])
    between = np.divide(total - within, total, out=np.zeros_like(total), where=total > 0)
    flags = constant | (between >= between_share)
    return [name for name, flag in zip(feature_names, flags, strict=True) if flag]


def _sum_of_squares(block: np.ndarray) -> np.ndarray:
    """Per column, the sum of squared deviations from the column's mean, NaN left out (0 if all NaN)."""
    missing = np.isnan(block)
    counts = (~missing).sum(axis=0)
    means = np.divide(np.where(missing, 0.0, block).sum(axis=0), counts, out=np.zeros(block.shape[1]), where=counts > 0)
    return (np.where(missing, 0.0, block - means) ** 2).sum(axis=0)


def _train_booster(
    params: dict[str, Any],
    X_fit: np.ndarray,
    y_fit: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    feature_names: list[str],
    categorical: list[int],
    num_boost_round: int,
    early_stopping_rounds: int,
) -> tuple[lgb.Booster, int]:
    train = lgb.Dataset(X_fit, y_fit, feature_name=feature_names, categorical_feature=categorical, free_raw_data=False)
    valid = lgb.Dataset(X_val, y_val, reference=train)
    booster = lgb.train(
        params,
        train,
        num_boost_round=num_boost_round,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
    return booster, int(best)


def _refit(
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    *,
    feature_names: list[str],
    categorical: list[int],
    rounds: int,
) -> lgb.Booster:
    data = lgb.Dataset(X[mask], y[mask], feature_name=feature_names, categorical_feature=categorical)
    return lgb.train(params, data, num_boost_round=rounds)


@dataclass(frozen=True)
class _Seasons:
    """What a baseline needs to estimate its own seasonal correction as the model does
    (:func:`fit_seasons`): the rows and labels of the reference cut-offs, and the calibration and
    test cut-offs."""

    rows: dict[str, pd.DataFrame]
    X: dict[str, np.ndarray]
    slope: bool
    calibration_cutoff: Any
    test_cutoff: Any

    def correction(self, calibrator: Calibrator, raw_at: Any) -> tuple[float, float]:
        """``(shift, scale)`` at T for scores whose raw values at a reference cut-off are ``raw_at(cutoff)``.

        Only the cut-offs the interpolation at T and at the calibration cut-off reads are scored.
        """
        keys, period, tolerance = tuple(self.rows), calibrator.period_days, calibrator.tolerance_days
        needed = {
            c
            for as_of, taper in ((self.test_cutoff, True), (self.calibration_cutoff, False))
            for c, _ in season_weights(keys, as_of, period, tolerance, taper)
        }
        scored = {c: (calibrator(raw_at(c)), self.rows[c]["label"].to_numpy(dtype=np.float64)) for c in sorted(needed)}
        scale, shift, _ = fit_seasons(
            calibrator,
            scored,
            slope=self.slope,
            calibration_cutoff=self.calibration_cutoff,
            test_cutoff=self.test_cutoff,
        )
        return shift, scale


def _calibrated(
    raw_cal: np.ndarray,
    y_cal: np.ndarray,
    ids_cal: np.ndarray,
    raw_test: np.ndarray,
    shift: float = 0.0,
    scale: float = 1.0,
    *,
    seasons: _Seasons | None = None,
    raw_at: Any = None,
) -> tuple[np.ndarray, Calibrator]:
    """A baseline's test probabilities: calibrated on the calibration fold, then corrected for the
    season by ``(shift, scale)``, or, with ``seasons``, by its own correction estimated as the model's
    is from ``raw_at(cutoff)``, its raw scores at a reference cut-off (read only with ``seasons``)."""
    choice = choose_calibrator(raw_cal, y_cal, ids_cal)
    if seasons is not None:
        shift, scale = seasons.correction(choice.calibrator, raw_at)
    choice.calibrator.shift = shift
    choice.calibrator.scale = scale
    return choice.calibrator(raw_test), choice.calibrator


def fitted_cutoffs(train: pd.DataFrame, spec: ModelSpec) -> list[pd.Timestamp]:
    """The training cut-offs whose rows fit and calibrate the model: the latest ``spec.fit_cutoffs``.

    The older ones (all of them are labelled) only estimate the seasonal shift of the base rate.
    """
    cutoffs = sorted(pd.to_datetime(train["as_of"]).unique())
    return cutoffs if spec.fit_cutoffs is None else cutoffs[-spec.fit_cutoffs :]


def run_backtest(
    ts: Any,
    spec: ModelSpec,
    *,
    transactions: pd.DataFrame | None = None,
    model_name: str | None = None,
    num_boost_round: int | None = None,
) -> BacktestResult:
    """Fit, calibrate and evaluate one model and its baselines on a training set.

    Parameters
    ----------
    ts
        A :class:`features.pipeline.TrainingSet` (train rows of several cut-offs in ``as_of``,
        test rows of the test cut-off).
    spec
        The model spec.
    transactions
        ``customer_id``, ``timestamp``, ``amount`` of the whole history, for the BG/NBD baseline
        (customer models only); without it that baseline is skipped.
    model_name
        Registered model name stored in the scorer (default ``crmscore-<task>``).
    num_boost_round
        Cap on boosting rounds (tests use a small one); default the spec's.

    Raises
    ------
    ValueError
        Fewer than two training cut-offs (one to fit, a later one to calibrate), or a fold
        with a single class.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    entity = ts.entity
    train = ts.train
    test = ts.test
    cutoffs = sorted(pd.to_datetime(train["as_of"]).unique())
    # Configured cut-offs without rows: the data starts after them (or has a gap), so more of them
    # further back cannot help.
    some_empty = len(ts.cutoffs) > len(cutoffs)
    if len(cutoffs) < 2:
        need = (
            f"task '{spec.task}': the backtest needs at least two training cut-offs (fit, then calibrate on the latest)"
        )
        if some_empty:
            # The data starts after the empty cut-offs, or has a gap there (the bank leads have none
            # in January-February 2010): the message names them and both ways out.
            with_rows = set(cutoffs)
            empty = sorted(pd.Timestamp(c) for c in ts.cutoffs if pd.Timestamp(c) not in with_rows)
            raise ValueError(
                f"{need}; only {len(cutoffs)} of the {len(ts.cutoffs)} cut-offs before the test cut-off "
                f"{pd.Timestamp(ts.test_cutoff):%Y-%m-%d} have any rows. Nothing is in the population "
                f"({spec.population}) at " + ", ".join(f"{c:%Y-%m-%d}" for c in empty) + ": the data starts "
                "later or has a gap there. Use a later test cut-off (--as-of), or raise "
                f"models.{spec.task}.n_train_cutoffs to reach past a gap"
            )
        raise ValueError(f"{need}; got {len(cutoffs)}. Raise models.{spec.task}.n_train_cutoffs")
    latest = cutoffs[-1]
    full_train = train
    # The calibration fold's base rate is that of its season; the shift to the test window's season
    # is estimated on every training cut-off (the year-old ones included), before any is dropped.
    if spec.seasonal_prior_shift:
        prior = seasonal_prior_shift(
            train["as_of"].to_numpy(),
            train["label"].to_numpy(dtype=np.float64),
            calibration_cutoff=latest,
            test_cutoff=ts.test_cutoff,
            horizon_days=spec.horizon_days,
            history_days=train["tenure_days"].to_numpy() if "tenure_days" in train.columns else None,
        )
    else:
        cal_labels = train.loc[pd.to_datetime(train["as_of"]) == latest, "label"].to_numpy(dtype=np.float64)
        prior = PriorShift(shift=0.0, applied=False, calibration_rate=float(cal_labels.mean()))
    warnings = [] if prior.applied or not spec.seasonal_prior_shift else [_no_seasonal_shift(spec, prior, cutoffs)]
    fitted = fitted_cutoffs(train, spec)
    if len(fitted) < len(cutoffs):
        # Only the most recent cut-offs train the model and the baselines; older ones served the prior.
        cutoffs = fitted
        train = train.loc[pd.to_datetime(train["as_of"]).isin(cutoffs)].reset_index(drop=True)
        ts = dataclasses.replace(ts, train=train, cutoffs=tuple(pd.Timestamp(c).date() for c in reversed(cutoffs)))
    as_of = pd.to_datetime(train["as_of"])
    cal_mask = (as_of == latest).to_numpy()
    fit_mask = (as_of <= latest - pd.Timedelta(days=spec.horizon_days)).to_numpy()
    if not fit_mask.any():
        fix = (
            "the earlier cut-offs have no rows: use a later test cut-off (--as-of), so that a cut-off with rows "
            f"lies the horizon ({spec.horizon_days} days) before the latest"
            if some_empty
            else f"raise models.{spec.task}.n_train_cutoffs or step_days"
        )
        raise ValueError(
            f"task '{spec.task}': no training cut-off has its label window end before the latest one "
            f"({pd.Timestamp(latest).date()}); {fix}"
        )
    all_mask = np.ones(len(train), dtype=bool)

    features = spec.select_features(ts.feature_columns)
    categorical = [c for c in features if c in ts.categorical_columns]
    categories = {c: list(train[c].cat.categories) for c in categorical}
    cat_idx = [features.index(c) for c in categorical]
    X = encode_frame(train, features, categories)
    y = train["label"].to_numpy(dtype=np.float64)
    X_test = encode_frame(test, features, categories)
    y_test = test["label"].to_numpy(dtype=np.float64)
    if len(test) == 0:
        raise ValueError(
            f"task '{spec.task}': the test fold has no rows: nothing is in the population "
            f"({spec.population}) at the test cut-off {pd.Timestamp(ts.test_cutoff):%Y-%m-%d}. "
            "Use a test cut-off (--as-of) where the data has rows"
        )
    for name, labels in (("calibration", y[cal_mask]), ("test", y_test), ("fit", y[fit_mask])):
        if len(np.unique(labels)) < 2:
            raise ValueError(f"task '{spec.task}': the {name} fold has a single class; cannot train or evaluate")

    n_cal = int(cal_mask.sum())
    if n_cal < MIN_CALIBRATION_ROWS:
        warnings.append(
            f"few rows: the calibration fold (cut-off {pd.Timestamp(latest).date()}) has {n_cal:,} rows, "
            f"{int(y[cal_mask].sum()):,} positive: early stopping and the calibration rest on them. More rows per "
            f"cut-off (a longer models.{spec.task}.step_days, or more history) make both steadier"
        )

    # A column taken as it is that alone all but separates the labels is most likely recorded after the outcome.
    warnings += leakage_warnings(
        X, y, features, cat_idx, fit_mask=fit_mask, check_mask=cal_mask, task=spec.task, as_is=ts.as_is
    )

    # -- the classifier -----------------------------------------------------------------------
    rounds = num_boost_round or spec.num_boost_round
    params, leaf_note = leaf_size_for(spec.lgbm_params, int(fit_mask.sum()))
    if leaf_note:
        warnings.append(f"few rows: the classifier's {leaf_note}")
    if any(spec.monotone_constraints(features)):
        params["monotone_constraints"] = spec.monotone_constraints(features)
    booster, best = _train_booster(
        params,
        X[fit_mask],
        y[fit_mask],
        X[cal_mask],
        y[cal_mask],
        feature_names=features,
        categorical=cat_idx,
        num_boost_round=rounds,
        early_stopping_rounds=spec.early_stopping_rounds,
    )
    ids_cal = train.loc[cal_mask, entity].astype(str).to_numpy()
    raw_cal = booster.predict(X[cal_mask], raw_score=True, num_iteration=best)
    # The logistic regression of the early-stopping rows: the baseline, and the linear head of a blend.
    logistic = LinearHead.fit(
        X[fit_mask],
        y[fit_mask],
        features,
        cat_idx,
        n_categories=[len(categories[c]) for c in categorical],
        seed=spec.seed,
    )
    logistic_cal = logistic.decision(X[cal_mask])
    linear, booster_weight = None, 1.0
    if spec.linear_blend:
        # Both parts on the calibration fold's log-odds scale (_blend_weights), then one calibrator.
        weights = _blend_weights(float(spec.linear_blend), raw_cal, logistic_cal, y[cal_mask])
        if weights is not None:
            booster_weight, linear_weight = weights
            linear = logistic.scaled(linear_weight, 0.0)
            raw_cal = booster_weight * raw_cal + linear_weight * logistic_cal
    hazard, hazard_weight = None, 0.0
    if spec.hazard_blend:
        # The weekly hazard head, fitted on the person-weeks that ended by the calibration cut-off
        # (out of sample there, like the early-stopped booster); both parts on the calibration
        # fold's log-odds scale first, as for the linear blend, then one calibrator for the blend.
        if ts.hazard is None:
            raise ValueError(f"task '{spec.task}': hazard_blend needs the training set's hazard rows")
        X_hazard = encode_frame(ts.hazard, features, categories)

        def hazard_fit(end: Any) -> Any:
            return fit_hazard(
                X_hazard,
                ts.hazard["as_of"].to_numpy(),
                ts.hazard["days_to_next"].to_numpy(dtype=np.float64),
                end=end,
                horizon_days=spec.horizon_days,
                feature_names=features,
                categorical=cat_idx,
                params=_hazard_params(spec, features),
                rounds=spec.hazard_rounds,
                default_as_of=ts.test_cutoff,
                outcome=_hazard_outcome(spec),
            )

        hazard = hazard_fit(latest)
        hazard_cal = hazard.raw(X[cal_mask], as_of=latest)
        weights = _blend_weights(float(spec.hazard_blend), raw_cal, hazard_cal, y[cal_mask])
        if weights is not None:
            booster_weight, hazard_weight = weights
            raw_cal = booster_weight * raw_cal + hazard_weight * hazard_cal
        else:  # neither part ranks the calibration fold: keep the booster alone, as without a blend
            hazard = None
    choice = choose_calibrator(raw_cal, y[cal_mask], ids_cal)
    calibrator = choice.calibrator
    if spec.refit_all:
        early = booster
        booster = _refit(params, X, y, all_mask, feature_names=features, categorical=cat_idx, rounds=best)
        if hazard is not None:
            # The hazard head is refitted too, on every person-week that ended by T: the latest
            # weeks before T are what it is for.
            hazard = hazard_fit(ts.test_cutoff)
        if spec.align_refit:
            # The calibrator maps the early-stopped booster's scores; the refit has also learnt the
            # calibration fold's base rate, so its scores sit higher (or lower) when that rate differs
            # from the fit folds'. A least-squares line from the refit's scores to the early-stopped
            # one's on the calibration fold puts them back on the scale the calibrator knows.
            a, b = np.polyfit(
                booster.predict(X[cal_mask], raw_score=True),
                early.predict(X[cal_mask], raw_score=True, num_iteration=best),
                1,
            )
            if linear is not None:
                # Only the booster's part moves: v (a refit + b) + linear = a (v refit + linear / a) + v b.
                linear = linear.scaled(1.0 / float(a), 0.0)
                b = booster_weight * b
            elif hazard is not None:
                # Each part gets its own line, the constants go to the calibrator:
                # v (a refit + b) + u (c head + d) = (v a) refit + (u c) head + (v b + u d).
                c, d = np.polyfit(hazard.raw(X[cal_mask], as_of=latest), hazard_cal, 1)
                b = booster_weight * b + hazard_weight * d
                booster_weight, hazard_weight, a = booster_weight * float(a), hazard_weight * float(c), 1.0
            calibrator = calibrator.on_linear(float(a), float(b))
    timings["fit_classifier_s"] = time.perf_counter() - started

    # -- the spend head (next purchase): expected net spend given a purchase -----------------
    spend_booster, spend_best, spend_blend = None, None, None
    if spec.spend_params is not None:
        spend = train["spend"].to_numpy(dtype=np.float64).clip(0, None)
        # Hurdle (buyers only, times P(buy)) or unconditional (every customer, zeros included).
        buyers = np.ones(len(y), dtype=bool) if spec.spend_unconditional else y == 1
        spend_params, leaf_note = leaf_size_for(spec.spend_params, int((fit_mask & buyers).sum()))
        if leaf_note:
            warnings.append(f"few rows: the spend head's {leaf_note}")
        spend_booster, spend_best = _train_booster(
            spend_params,
            X[fit_mask & buyers],
            spend[fit_mask & buyers],
            X[cal_mask & buyers],
            spend[cal_mask & buyers],
            feature_names=features,
            categorical=cat_idx,
            num_boost_round=rounds,
            early_stopping_rounds=spec.early_stopping_rounds,
        )
        spend_blend = None
        naive_column = spec.rfm_columns[2] if spec.rfm_columns is not None else None
        if spec.spend_blend and naive_column in features:
            # Blend the model's expected value with the naive projection (last 365 days' spend x H / 365),
            # weights by non-negative least squares on the calibration fold, out of sample for both boosters.
            from scipy.optimize import nnls

            ev_cal = choice.calibrator(raw_cal) * np.clip(
                spend_booster.predict(X[cal_mask], num_iteration=spend_best), 0.0, None
            )
            naive_cal = np.clip(np.nan_to_num(X[cal_mask, features.index(naive_column)]), 0.0, None) * (
                spec.horizon_days / 365
            )
            weights, _ = nnls(np.column_stack([ev_cal, naive_cal]), spend[cal_mask])
            spend_blend = (float(weights[0]), float(weights[1]), naive_column)
        spend_booster = _refit(
            spend_params, X, spend, buyers, feature_names=features, categorical=cat_idx, rounds=spend_best
        )
    timings["fit_total_s"] = time.perf_counter() - started

    scorer = Scorer(
        task=spec.task,
        entity=entity,
        feature_names=features,
        categories=categories,
        booster=booster,
        num_iteration=best,
        calibrator=calibrator,
        tiers=spec.tiers,
        tier_key=spec.tier_key,
        reasons=ReasonWriter(
            features,
            spec.reason_templates,
            spec.reason_direction,
            categories,
            context=context_features(X, train["as_of"].to_numpy(), features),
            codes=spec.reason_codes,
            groups=spec.reason_groups,
            activity=spec.reason_activity,
        ),
        model_name=model_name or f"crmscore-{spec.task}",
        horizon_days=spec.horizon_days,
        spend_booster=spend_booster,
        spend_num_iteration=spend_best,
        spend_feature=spec.spend_feature if spec.spend_feature in features else None,
        spend_window_days=spec.spend_window_days,
        spend_unconditional=spec.spend_unconditional,
        spend_blend=spend_blend,
        metadata={
            "test_cutoff": str(ts.test_cutoff),
            "trained_cutoffs": [str(c) for c in ts.cutoffs],
            # Posted records get the touchpoint columns of training (serving.runtime.history_features).
            "vocabulary": dict(getattr(ts, "vocabulary", {})),
        },
        # The rows of the final fit: what the trees have seen.
        profile=FeatureProfile.from_matrix(X, features, cat_idx),
        linear=linear,
        booster_weight=booster_weight,
        hazard=hazard,
        hazard_weight=hazard_weight,
    )

    # -- the seasonal prior shift, refined with the model's scores on the reference cut-offs ------
    # The intercept (and with ``seasonal_slope`` the slope) of every usable training cut-off is kept,
    # so scoring at another date can pick the correction of its own season
    # (``Calibrator.correction_at``); at T it is the one below.
    seasons = None
    if prior.applied and spec.model_adjusted_prior:
        ref_when = pd.to_datetime(full_train["as_of"])
        scored_refs, ref_rows, ref_X = {}, {}, {}
        for cutoff in reference_cutoffs(
            full_train["as_of"].to_numpy(),
            test_cutoff=ts.test_cutoff,
            horizon_days=spec.horizon_days,
            history_days=full_train["tenure_days"].to_numpy() if "tenure_days" in full_train.columns else None,
        ):
            key = str(cutoff.date())
            ref_rows[key] = full_train.loc[(ref_when == cutoff).to_numpy()]
            ref_X[key] = encode_frame(ref_rows[key], features, categories)
            scored_refs[key] = (
                calibrator(scorer.raw_score(ref_X[key], as_of=cutoff)),
                ref_rows[key]["label"].to_numpy(dtype=np.float64),
            )
        # The calibration fold's unshifted probabilities, before fit_seasons gives the calibrator its shift.
        p_cal_now = calibrator(scorer.raw_score(X[cal_mask], as_of=latest))
        scale, shift, slope_warning = fit_seasons(
            calibrator, scored_refs, slope=spec.seasonal_slope, calibration_cutoff=latest, test_cutoff=ts.test_cutoff
        )
        if slope_warning:
            warnings.append(slope_warning)
        # The baselines' own corrections are read from the same reference rows.
        seasons = _Seasons(
            rows=ref_rows,
            X=ref_X,
            slope=spec.seasonal_slope,
            calibration_cutoff=latest,
            test_cutoff=ts.test_cutoff,
        )
        prior = model_adjusted(
            prior,
            scale,
            shift,
            p_calibration=p_cal_now,
            slope=bool(calibrator.seasonal_slopes),
            test_season_weights=calibrator.season_weights(ts.test_cutoff),
        )
    calibrator.shift = prior.shift
    calibrator.scale = prior.scale
    if spec.anchor_rate:
        # The latest labelled fold's rate, persisted: each scored population's mean is set to it.
        calibrator.anchor_rate = prior.calibration_rate

    # -- test metrics ---------------------------------------------------------------------------
    raw_test = scorer.raw_score(X_test, as_of=ts.test_cutoff)
    population_shift = scorer.population_shift(X_test, raw=raw_test)
    scorer.default_population_shift = population_shift
    p_test = scorer.calibrator(raw_test, population_shift=population_shift)
    metrics = m.binary_metrics(y_test, p_test)
    if spec.anchor_rate:
        metrics["population_shift_logit"] = population_shift
        unanchored = scorer.calibrator(raw_test)
        metrics["ece_without_anchor"] = m.ece(y_test, unanchored)
        metrics["brier_without_anchor"] = m.brier(y_test, unanchored)
    drift = scorer.drift(X_test, test)
    overview = drift_overview(drift)
    metrics["drift_max_psi"] = overview["max_psi"]
    metrics["drift_features_alert"] = float(len(overview["alert"]))
    metrics["prior_shift_logit"] = prior.shift
    metrics["prior_scale"] = prior.scale
    metrics["calibration_base_rate"] = prior.calibration_rate
    metrics["expected_test_base_rate"] = (
        prior.expected_test_rate if prior.expected_test_rate is not None else prior.calibration_rate
    )
    predictions = pd.DataFrame({entity: test[entity].to_numpy(), "label": y_test, "probability": p_test})
    if spend_booster is not None:
        values = scorer.values(X_test, p_test)
        predictions["spend"] = test["spend"].to_numpy(dtype=np.float64)
        predictions["expected_value"] = values["expected_value"]
        metrics.update(m.spend_metrics(predictions["spend"].to_numpy(), values["expected_value"]))

    # -- baselines, same folds --------------------------------------------------------------
    baselines, baseline_scores = _baselines(
        ts,
        spec,
        logistic_cal,
        logistic.decision(X_test),
        cal_mask,
        ids_cal,
        transactions,
        cutoffs,
        predictions,
        prior.shift,
        prior.scale,
        calibrator.anchor_rate,
        seasons=seasons,
        logistic=logistic,
    )
    for name, scores in baseline_scores.items():
        predictions[f"baseline_{name}"] = scores
    timings["baselines_s"] = time.perf_counter() - started - timings["fit_total_s"]

    metrics["roc_auc_se"] = m.roc_auc_se(y_test, p_test)
    gain_baseline = _gain_against_best(metrics, y_test, p_test, baselines, baseline_scores)

    table = _backtest_table(ts, scorer, X, y, fit_mask, cal_mask, X_test, y_test, cutoffs, population_shift)
    segments = segment_table(
        y_test,
        p_test,
        X_test,
        features,
        spec.segments,
        categories=categories,
        baseline=baseline_scores.get(gain_baseline),
    )
    result_grade = grade(metrics[spec.primary_metric], [b.get(spec.primary_metric) for b in baselines.values()])
    return BacktestResult(
        task=spec.task,
        spec=spec,
        scorer=scorer,
        test_cutoff=ts.test_cutoff,
        cutoffs=tuple(ts.cutoffs),
        n_train=int(len(train)),
        n_test=int(len(test)),
        metrics=metrics,
        baselines=baselines,
        grade=result_grade,
        table=table,
        predictions=predictions,
        segments=segments,
        params={
            **params,
            "num_boost_round": rounds,
            "best_iteration": best,
            "spend_best_iteration": spend_best,
            "spend_blend": None
            if spend_blend is None
            else f"{spend_blend[0]:.4f} x model + {spend_blend[1]:.4f} x naive",
            "linear_blend": spec.linear_blend,
            "hazard_blend": spec.hazard_blend,
            "hazard_weight": hazard_weight,
            "roc_auc_gain_baseline": gain_baseline,
            "booster_weight": booster_weight,
            "n_features": len(features),
            "context_features": ",".join(scorer.reasons.context) or None,
            "calibration_cutoff": str(pd.Timestamp(latest).date()),
            "prior_shift": prior.shift,
            "prior_scale": prior.scale,
        },
        calibration={
            "kind": choice.kind,
            "brier_out_of_fold": choice.brier,
            "prior_shift": prior.as_dict(),
            "seasonal_intercepts": calibrator.seasonal_intercepts,
            "seasonal_slopes": calibrator.seasonal_slopes,
        },
        test_X=X_test,
        timings=timings,
        drift=drift,
        warnings=warnings,
    )


def _blend_weights(
    w: float, booster_cal: np.ndarray, other_cal: np.ndarray, y_cal: np.ndarray
) -> tuple[float, float] | None:
    """The weights of a blend ``(1 - w) x booster + w x other head``, each part first put on the
    calibration fold's log-odds scale by its Platt slope there (out of sample for both), so ``w``
    means the same at every origin and a part that ranks nothing there gets no weight. None when
    neither part ranks the fold."""
    slope_booster = max(fit_sigmoid(booster_cal, y_cal).a, 0.0)
    slope_other = max(fit_sigmoid(other_cal, y_cal).a, 0.0)
    if slope_booster + slope_other <= 0:
        return None
    return (1.0 - w) * slope_booster, w * slope_other


def _hazard_outcome(spec: ModelSpec) -> str:
    """What the hazard head's score is the log-odds of: churn's absence of a purchase, else a purchase."""
    return "no_purchase" if spec.task == "churn" else "purchase"


def _hazard_params(spec: ModelSpec, features: list[str]) -> dict[str, Any]:
    """The hazard head's LightGBM parameters: the spec's, with ``monotone`` as the weekly purchase
    hazard reads it (flipped for churn, whose constraints are on the absence of a purchase)."""
    params = dict(spec.hazard_params or {})
    params.setdefault("seed", spec.seed)
    sign = -1 if _hazard_outcome(spec) == "no_purchase" else 1
    constraints = [sign * c for c in spec.monotone_constraints(features)]
    if any(constraints):
        params["monotone_constraints"] = constraints
    return params


def _no_seasonal_shift(spec: ModelSpec, prior: PriorShift, cutoffs: list[Any]) -> str:
    """The warning of a model meant to carry a seasonal prior shift that could not get one, with the fix."""
    days = np.diff(np.array(sorted(pd.to_datetime(cutoffs)), dtype="datetime64[D]").astype(np.int64))
    step = int(days.min()) if len(days) else 30
    needed = cutoffs_for_season(step, spec.horizon_days)
    if needed is None:
        fix = (
            f"At step_days {step} no training cut-off lands within {SEASON_TOLERANCE_DAYS} days of a year before "
            f"the calibration or the test cut-off: set models.{spec.task}.step_days 30 and n_train_cutoffs 13"
        )
    elif len(cutoffs) < needed:
        fix = (
            f"Give the training cut-offs a year: models.{spec.task}.n_train_cutoffs >= {needed} at step_days "
            f"{step} (the data must reach back that far)"
        )
    else:
        fix = "The training cut-offs reach a year back; the data does not reach far enough behind them"
    return (
        f"no seasonal prior shift: {prior.note}. The probabilities keep the calibration fold's base rate "
        f"({prior.calibration_rate:.3f}) whatever the season of the scoring window, so expect them to be "
        f"miscalibrated when the season differs. {fix}"
    )


def _baselines(
    ts: Any,
    spec: ModelSpec,
    logistic_cal: np.ndarray,
    logistic_test: np.ndarray,
    cal_mask: np.ndarray,
    ids_cal: np.ndarray,
    transactions: pd.DataFrame | None,
    cutoffs: list[pd.Timestamp],
    predictions: pd.DataFrame,
    shift: float = 0.0,
    scale: float = 1.0,
    anchor_rate: float | None = None,
    *,
    seasons: _Seasons | None,
    logistic: LinearHead,
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """The baselines on the model's folds, with the model's population anchor and a seasonal correction.

    With ``seasons`` (a model-adjusted seasonal prior), each baseline gets its own correction,
    estimated from its own scores on the reference cut-offs as the model's is: the model's
    (``shift``, ``scale``) suits scores that rank and calibrate as its own do, and a model whose
    hazard head reads the calendar needs less correction than a baseline that does not. Without
    it every baseline gets ``shift`` and ``scale``."""
    train, test, entity = ts.train, ts.test, ts.entity

    def anchored(p: np.ndarray) -> np.ndarray:
        return p if anchor_rate is None else shift_log_odds(p, rate_shift(p, anchor_rate))

    y = train["label"].to_numpy(dtype=np.float64)
    y_cal = y[cal_mask]
    y_test = test["label"].to_numpy(dtype=np.float64)
    out: dict[str, dict[str, float]] = {}
    scores: dict[str, np.ndarray] = {}
    has_spend = "spend" in test.columns and spec.spend_params is not None
    h = spec.horizon_days

    if spec.rfm_columns is not None and all(c in train.columns for c in spec.rfm_columns):
        cal = train.loc[cal_mask]
        p, _ = _calibrated(
            rfm_score(cal, spec.rfm_columns, task=spec.task),
            y_cal,
            ids_cal,
            rfm_score(test, spec.rfm_columns, task=spec.task),
            shift,
            scale,
            seasons=seasons,
            raw_at=lambda c: rfm_score(seasons.rows[c], spec.rfm_columns, task=spec.task),
        )
        p = anchored(p)
        out["rfm"] = m.binary_metrics(y_test, p)
        scores["rfm"] = p
        if has_spend:
            # The naive projection: last year's net spend scaled to H.
            naive = test[spec.rfm_columns[2]].to_numpy(dtype=np.float64).clip(0, None) * h / 365
            out["rfm"].update(m.spend_metrics(predictions["spend"].to_numpy(), np.nan_to_num(naive)))

    # Fitted on the purged folds, like the model's early-stopping fit (the run's LinearHead).
    p = anchored(
        _calibrated(
            logistic_cal,
            y_cal,
            ids_cal,
            logistic_test,
            shift,
            scale,
            seasons=seasons,
            raw_at=lambda c: logistic.decision(seasons.X[c]),
        )[0]
    )
    out["logistic"] = m.binary_metrics(y_test, p)
    scores["logistic"] = p

    if transactions is not None and entity == "customer_id":
        latest = pd.Timestamp(cutoffs[-1]).to_pydatetime()
        test_cut = pd.Timestamp(ts.test_cutoff).to_pydatetime()
        cal_ids = train.loc[cal_mask, entity].astype(str).to_numpy()
        bg_cal = bgnbd_scores(transactions, cal_ids, as_of=latest, horizon_days=h)
        bg_test = bgnbd_scores(transactions, test[entity].astype(str).to_numpy(), as_of=test_cut, horizon_days=h)
        sign = 1.0 if spec.task == "churn" else -1.0

        def bg_at(c: str) -> np.ndarray:
            ids = seasons.rows[c][entity].astype(str).to_numpy()
            at = bgnbd_scores(transactions, ids, as_of=pd.Timestamp(c).to_pydatetime(), horizon_days=h)
            return sign * _logit(at["p_no_purchase"].to_numpy())

        p, _ = _calibrated(
            sign * _logit(bg_cal["p_no_purchase"].to_numpy()),
            y_cal,
            ids_cal,
            sign * _logit(bg_test["p_no_purchase"].to_numpy()),
            shift,
            scale,
            seasons=seasons,
            raw_at=bg_at,
        )
        p = anchored(p)
        out["bgnbd"] = m.binary_metrics(y_test, p)
        scores["bgnbd"] = p
        if has_spend:
            out["bgnbd"].update(m.spend_metrics(predictions["spend"].to_numpy(), bg_test["expected_spend"].to_numpy()))
    return out, scores


def best_baseline(baselines: dict[str, dict[str, float]]) -> str | None:
    """The baseline with the highest finite ROC AUC (None without one): what the grade and the gain compare to."""
    ranked = [n for n, b in baselines.items() if np.isfinite(b.get("roc_auc", float("nan")))]
    return max(ranked, key=lambda n: baselines[n]["roc_auc"], default=None)


def _gain_against_best(
    metrics: dict[str, float],
    y: np.ndarray,
    p: np.ndarray,
    baselines: dict[str, dict[str, float]],
    scores: dict[str, np.ndarray],
) -> str | None:
    """Add the ROC AUC gain over the best baseline with DeLong's paired 95% interval to ``metrics``.

    ``roc_auc_gain``, ``roc_auc_gain_se``, ``roc_auc_gain_low``, ``roc_auc_gain_high`` and
    ``roc_auc_gain_p_value``: whether the lead the grade rests on is more than the noise of one test
    fold. Returns the baseline's name (None without a baseline that ranked the test rows, or with
    fewer than two test rows of a class).
    """
    best = best_baseline(baselines)
    if best is None or min(y.sum(), len(y) - y.sum()) < 2:
        return None
    d = m.roc_auc_difference(y, p, np.asarray(scores[best], dtype=np.float64))
    metrics.update({f"roc_auc_gain{'' if k == 'difference' else '_' + k}": v for k, v in d.items()})
    return best


def gain_text(metrics: dict[str, float], baselines: dict[str, dict[str, float]]) -> str | None:
    """The ROC AUC, its standard error and the gain over the best baseline with its 95% interval,
    as one sentence (None before the gain was measured)."""
    best = best_baseline(baselines)
    if "roc_auc_gain" not in metrics or best is None:
        return None
    return (
        f"ROC AUC {metrics['roc_auc']:.3f} (standard error {metrics['roc_auc_se']:.3f}); "
        f"{metrics['roc_auc_gain']:+.3f} over {best} (95% CI {metrics['roc_auc_gain_low']:+.3f} to "
        f"{metrics['roc_auc_gain_high']:+.3f}, DeLong p = {metrics['roc_auc_gain_p_value']:.2g})"
    )


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def _backtest_table(
    ts: Any,
    scorer: Scorer,
    X: np.ndarray,
    y: np.ndarray,
    fit_mask: np.ndarray,
    cal_mask: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    cutoffs: list[pd.Timestamp],
    population_shift: float = 0.0,
) -> pd.DataFrame:
    """One row per cut-off: role, rows, base rate and the final model's metrics there."""
    as_of = pd.to_datetime(ts.train["as_of"]).to_numpy()
    rows = []
    folds = [(c, as_of == np.datetime64(c)) for c in cutoffs]
    for cutoff, mask in folds:
        # "refit only": purged from the early-stopping fit, used in the final fit.
        role = "calibration" if cal_mask[mask].all() else "fit" if fit_mask[mask].all() else "refit only"
        rows.append(_fold_row(cutoff, role, scorer, X[mask], y[mask]))
    rows.append(
        _fold_row(pd.Timestamp(ts.test_cutoff), "test", scorer, X_test, y_test, population_shift=population_shift)
    )
    return pd.DataFrame(rows)


def _fold_row(
    cutoff: pd.Timestamp, role: str, scorer: Scorer, X: np.ndarray, y: np.ndarray, *, population_shift: float = 0.0
) -> dict[str, Any]:
    # Scored as of the fold's own cut-off, as the scorer would on that date: the hazard head reads
    # its calendar and the calibrator applies its season's correction (none where no training
    # cut-off lies a year before it), so a fold's mean probability is comparable to its base rate.
    # The test fold keeps the training-time correction, as the headline metrics do.
    season = None if role == "test" else cutoff
    p = scorer.calibrator(scorer.raw_score(X, as_of=cutoff), as_of=season, population_shift=population_shift)
    one_class = len(np.unique(y)) < 2
    return {
        "cutoff": str(pd.Timestamp(cutoff).date()),
        "role": role,
        "rows": int(len(y)),
        "base_rate": float(y.mean()),
        "mean_probability": float(p.mean()),
        "roc_auc": float("nan") if one_class else m.roc_auc(y, p),
        "brier": m.brier(y, p),
        "ece": m.ece(y, p),
    }
