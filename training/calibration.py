"""Probability calibration on a later time fold: isotonic or sigmoid (Platt), chosen by Brier score.

Both calibrators map the booster's raw (log-odds) score to a probability and are fitted on a
fold the booster did not train on (the latest training cut-off). The choice between them is
made by Brier score out of fold *within* the calibration fold (two halves split by a hash of
the entity id, each calibrator fitted on one half and scored on the other), so isotonic's
in-sample advantage does not decide; the chosen kind is then refitted on the whole fold.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from models.scorer import Calibrator, rate_shift, shift_log_odds

__all__ = [
    "CalibrationChoice",
    "PriorShift",
    "choose_calibrator",
    "fit_isotonic",
    "fit_sigmoid",
    "intercept_shift",
    "model_adjusted",
    "recalibration_fit",
    "reference_cutoffs",
    "seasonal_prior_shift",
]


# The least slope of a Platt calibrator: a calibrator is increasing, like isotonic regression.
MIN_SIGMOID_SLOPE = 1e-3


def fit_sigmoid(raw: np.ndarray, y: np.ndarray) -> Calibrator:
    """Platt scaling: a logistic regression of ``y`` on the raw score (almost unpenalised).

    A fold on which the scores rank the labels the wrong way (a handful of rows) would give a
    negative slope, and the calibrator would invert every score. The slope is kept at
    :data:`MIN_SIGMOID_SLOPE` instead, with the intercept that matches the fold's base rate: the
    probabilities say "about the base rate" and keep the model's order.
    """
    raw = np.asarray(raw, dtype=np.float64)
    lr = LogisticRegression(C=1e6, max_iter=1000)
    lr.fit(raw.reshape(-1, 1), np.asarray(y, dtype=int))
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if a < MIN_SIGMOID_SLOPE:
        a = MIN_SIGMOID_SLOPE
        b = intercept_shift(1.0 / (1.0 + np.exp(-a * raw)), np.asarray(y, dtype=np.float64))
    return Calibrator(kind="sigmoid", a=a, b=b)


def fit_isotonic(raw: np.ndarray, y: np.ndarray) -> Calibrator:
    """Isotonic regression of ``y`` on the raw score, stored as interpolation knots."""
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
    iso.fit(np.asarray(raw, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return Calibrator(kind="isotonic", x=np.asarray(iso.X_thresholds_), y=np.asarray(iso.y_thresholds_))


class CalibrationChoice:
    """The chosen calibrator and the out-of-fold Brier score of each candidate."""

    def __init__(self, calibrator: Calibrator, brier: dict[str, float]) -> None:
        self.calibrator = calibrator
        self.brier = brier

    @property
    def kind(self) -> str:
        return self.calibrator.kind


def _halves(ids: Sequence[object]) -> np.ndarray:
    # A hash of the id, not a random draw: the same customer always lands in the same half.
    return np.array([zlib.crc32(str(i).encode()) % 2 for i in ids], dtype=int)


# Isotonic regression is a candidate only on a calibration fold of at least this many rows: on fewer
# its steps fit the fold's noise (scikit-learn's guidance is "not advised" far below 1,000), and on a
# 7-row fold it mapped every test lead to one step at P = 0.02 against a base rate of 0.58.
MIN_ISOTONIC_ROWS = 1000


def choose_calibrator(raw: np.ndarray, y: np.ndarray, ids: Sequence[object]) -> CalibrationChoice:
    """Fit isotonic and sigmoid calibrators and keep the one with the lower out-of-fold Brier score.

    Below :data:`MIN_ISOTONIC_ROWS` rows only the sigmoid is fitted (``brier`` then has no isotonic entry).

    Parameters
    ----------
    raw
        Raw scores of the calibration fold (a later time fold the booster did not see).
    y
        Its 0/1 labels.
    ids
        Entity ids of its rows, to split it in two halves.
    """
    raw = np.asarray(raw, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(np.unique(y)) < 2:
        raise ValueError("calibration fold has a single class: cannot calibrate")
    half = _halves(ids)
    # "No calibration" (the booster's own sigmoid) was tried as a third candidate and dropped: on
    # the small lead calibration fold it won by in-fold Brier and doubled the test ECE.
    candidates = [(fit_sigmoid, "sigmoid")]
    if len(y) >= MIN_ISOTONIC_ROWS:
        candidates.insert(0, (fit_isotonic, "isotonic"))
    scores = {name: 0.0 for _, name in candidates}
    for fit, name in candidates:
        squared = 0.0
        for h in (0, 1):
            train, test = half != h, half == h
            if len(np.unique(y[train])) < 2 or not test.any():
                squared = np.inf
                break
            squared += float(np.sum((fit(raw[train], y[train])(raw[test]) - y[test]) ** 2))
        scores[name] = squared / len(y)
    best = min(scores, key=scores.get)
    calibrator = fit_isotonic(raw, y) if best == "isotonic" else fit_sigmoid(raw, y)
    return CalibrationChoice(calibrator, scores)


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


@dataclass(frozen=True)
class PriorShift:
    """A seasonal prior-shift estimate: the log-odds change of the base rate from the calibration
    fold's season to the test window's season, as observed one period earlier.

    ``shift = logit(rate at test_season_cutoff) - logit(rate at calibration_season_cutoff)``; both
    cut-offs are training cut-offs about ``period_days`` before the test and calibration cut-offs,
    so their labels are known long before T. ``applied`` is False (and ``shift`` 0) when no such
    pair of cut-offs exists in the training set, and ``note`` then says which one is missing.
    ``scale`` multiplies the log-odds before the shift (``logit(p') = scale * logit(p) + shift``);
    it is 1 unless the model-adjusted estimate carries a slope (see :func:`model_adjusted`).
    ``test_season_weights`` (model-adjusted only) are the training cut-offs whose recalibrations
    were interpolated for the test season, with their weights (``models.scorer.season_weights``).
    """

    shift: float
    applied: bool
    calibration_rate: float
    test_season_rate: float | None = None
    calibration_season_rate: float | None = None
    test_season_cutoff: str | None = None
    calibration_season_cutoff: str | None = None
    expected_test_rate: float | None = None
    method: str = "base rates"
    rate_shift: float | None = None
    scale: float = 1.0
    note: str | None = None
    test_season_weights: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def intercept_shift(p: np.ndarray, y: np.ndarray) -> float:
    """The log-odds shift ``s`` with ``mean(sigmoid(logit(p) + s)) == mean(y)`` (calibration in the large)."""
    return rate_shift(p, float(np.mean(y)))


def recalibration_fit(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of the logistic recalibration ``y ~ sigmoid(slope * logit(p) + intercept)``.

    Cox's calibration slope: below 1 the probabilities ``p`` are over-confident on these rows.
    Fitted almost unpenalised, like :func:`fit_sigmoid`.
    """
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    y = np.asarray(y, dtype=int)
    if len(np.unique(y)) < 2:
        raise ValueError("recalibration fit: the rows have a single class")
    lr = LogisticRegression(C=1e6, max_iter=1000)
    lr.fit(np.log(p / (1 - p)).reshape(-1, 1), y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def model_adjusted(
    prior: PriorShift,
    scale: float,
    shift: float,
    *,
    p_calibration: np.ndarray,
    slope: bool,
    test_season_weights: Sequence[tuple[str, float]] = (),
) -> PriorShift:
    """A base-rate prior shift refined with the model's own scores on the reference cut-offs.

    The raw base rates of the reference cut-offs also differ because their populations differ
    (a year earlier the history is shorter, the customers younger). The model's calibrated
    probabilities there (without shift) account for the population; what they miss is the
    season of the label window. ``(scale, shift)`` is therefore read from recalibrations of the
    model's probabilities at each reference cut-off (``training.backtest.fit_seasons``: the
    calibration season's recalibration undone, the test season's applied, both interpolated
    between the training cut-offs around them, ``models.scorer.seasonal_correction``). With
    ``slope`` the recalibrations carry a slope as well as an intercept: a label window that is
    harder to rank (on Online Retail II the one holding the Christmas peak) has a lower slope in
    both years, and scores calibrated in an easier season are over-confident there.
    ``p_calibration`` (the calibration fold's probabilities) gives the expected test base rate.
    """
    if not prior.applied:
        return prior
    return PriorShift(
        **{
            **prior.as_dict(),
            "shift": float(shift),
            "scale": float(scale),
            "method": "model-adjusted, slope and intercept" if slope else "model-adjusted",
            "rate_shift": prior.shift,
            "expected_test_rate": float(np.mean(shift_log_odds(p_calibration, shift, scale))),
            "test_season_weights": {c: float(w) for c, w in test_season_weights} or None,
        }
    )


# How far a training cut-off may lie from one year before the test or calibration cut-off to serve
# as that season's reference (see seasonal_prior_shift).
SEASON_TOLERANCE_DAYS = 20


def cutoffs_for_season(
    step_days: int, horizon_days: int, *, period_days: int = 365, tolerance_days: int = SEASON_TOLERANCE_DAYS
) -> int | None:
    """The fewest training cut-offs ``T - H - k * step`` (k = 0, 1, ...) that hold both seasonal references.

    The calibration cut-off is ``T - H`` (k = 0); its reference must lie within ``tolerance_days``
    of ``T - H - period`` and the test cut-off's within that of ``T - period``. None when no ``k``
    of this step lands close enough to either (e.g. a step of 100 days: 300 and 400 are both
    more than 20 days from 365).
    """

    def first(target: int) -> int | None:
        steps = range(target // max(step_days, 1) + 2)
        return next((k for k in steps if abs(k * step_days - target) <= tolerance_days), None)

    k_cal = first(period_days)
    k_test = first(period_days - horizon_days)
    if k_cal is None or k_test is None:
        return None
    return max(k_cal, k_test) + 1


def reference_cutoffs(
    as_of: Sequence[object],
    *,
    test_cutoff: object,
    horizon_days: int,
    history_days: np.ndarray | None = None,
    min_history_days: int = 180,
) -> list[pd.Timestamp]:
    """The training cut-offs a seasonal shift may be read from, sorted.

    Those whose label window ends at or before T (``c + H <= T``) and whose longest history is at
    least ``min_history_days`` (see :func:`seasonal_prior_shift`).
    """
    when = pd.to_datetime(pd.Series(np.asarray(as_of)))
    t = pd.Timestamp(test_cutoff)
    cutoffs = sorted(pd.unique(when.to_numpy()))
    if history_days is not None:
        longest = pd.Series(np.asarray(history_days, dtype=np.float64)).groupby(when.to_numpy()).max()
    else:
        longest = pd.Series(np.inf, index=pd.DatetimeIndex(cutoffs))
    return [
        pd.Timestamp(c)
        for c in cutoffs
        if pd.Timestamp(c) + pd.Timedelta(days=horizon_days) <= t and not longest.get(c, np.inf) < min_history_days
    ]


def seasonal_prior_shift(
    as_of: Sequence[object],
    y: np.ndarray,
    *,
    calibration_cutoff: object,
    test_cutoff: object,
    horizon_days: int,
    period_days: int = 365,
    tolerance_days: int = SEASON_TOLERANCE_DAYS,
    history_days: np.ndarray | None = None,
    min_history_days: int = 180,
) -> PriorShift:
    """Estimate how the base rate moves from the calibration fold to the test window, from the past only.

    The base rate of a churn-like label depends on the season of its label window (a label
    window holding the Christmas peak has far fewer churners). The calibrator is fitted at the
    calibration cut-off and so learns that season's base rate. The shift one period earlier
    between the same two seasons, ``logit(rate(T - period)) - logit(rate(cal - period))``, is the
    expected log-odds shift; it is added after calibration (Saerens et al. 2002 prior adjustment).

    Parameters
    ----------
    as_of, y
        Cut-off and 0/1 label of every training row.
    calibration_cutoff, test_cutoff
        The calibration fold's cut-off and the test cut-off T.
    horizon_days
        H; a reference cut-off is used only if its label window ends at or before T.
    period_days, tolerance_days
        The season's period, and how far a training cut-off may lie from the exact date.
    history_days, min_history_days
        Per row, the days of history behind it (e.g. ``tenure_days``). A reference cut-off whose
        longest history is shorter than ``min_history_days`` sits too close to the start of the
        data: its population is made of recent customers only and its base rate is not comparable
        (on Online Retail II, a cut-off 3.5 months after the data starts has a churn rate 0.2 lower
        for that reason alone). Then no shift is applied.
    """
    when = pd.to_datetime(pd.Series(np.asarray(as_of)))
    labels = pd.Series(np.asarray(y, dtype=np.float64))
    rates = labels.groupby(when.to_numpy()).mean()
    cal = pd.Timestamp(calibration_cutoff)
    t = pd.Timestamp(test_cutoff)
    cal_rate = float(rates.get(cal, labels[(when == cal).to_numpy()].mean()))

    usable = reference_cutoffs(
        as_of, test_cutoff=t, horizon_days=horizon_days, history_days=history_days, min_history_days=min_history_days
    )

    def nearest(target: pd.Timestamp) -> pd.Timestamp | None:
        if not usable:
            return None
        best = min(usable, key=lambda c: abs((c - target).days))
        return best if abs((best - target).days) <= tolerance_days else None

    a = nearest(t - pd.Timedelta(days=period_days))
    b = nearest(cal - pd.Timedelta(days=period_days))
    if a is None or b is None or a == b:
        note = _missing_reference(
            a,
            b,
            test_target=t - pd.Timedelta(days=period_days),
            calibration_target=cal - pd.Timedelta(days=period_days),
            usable=usable,
            all_cutoffs=sorted(pd.Timestamp(c) for c in pd.unique(when.to_numpy())),
            tolerance_days=tolerance_days,
            min_history_days=min_history_days,
        )
        return PriorShift(shift=0.0, applied=False, calibration_rate=cal_rate, note=note)
    shift = _logit(rates[a]) - _logit(rates[b])
    expected = 1.0 / (1.0 + np.exp(-(_logit(cal_rate) + shift)))
    return PriorShift(
        shift=float(shift),
        applied=True,
        calibration_rate=cal_rate,
        test_season_rate=float(rates[a]),
        calibration_season_rate=float(rates[b]),
        test_season_cutoff=str(a.date()),
        calibration_season_cutoff=str(b.date()),
        expected_test_rate=float(expected),
    )


def _missing_reference(
    a: pd.Timestamp | None,
    b: pd.Timestamp | None,
    *,
    test_target: pd.Timestamp,
    calibration_target: pd.Timestamp,
    usable: list[pd.Timestamp],
    all_cutoffs: list[pd.Timestamp],
    tolerance_days: int,
    min_history_days: int,
) -> str:
    """Why no seasonal shift could be read: which reference cut-off is missing, and what there is."""
    if a is not None and a == b:
        return f"the cut-off nearest a year before the test and the calibration cut-offs is the same one ({a.date()})"
    which, target = ("calibration", calibration_target) if b is None else ("test", test_target)
    earliest = f"{all_cutoffs[0].date()}" if all_cutoffs else "none"
    text = (
        f"no training cut-off within {tolerance_days} days of {target.date()}, one year before the {which} "
        f"cut-off (the earliest training cut-off is {earliest}"
    )
    if all_cutoffs and not usable:
        text += f"; none has {min_history_days} days of history behind it"
    elif all_cutoffs and usable[0] != all_cutoffs[0]:
        text += f"; the earliest with {min_history_days} days of history behind it is {usable[0].date()}"
    return text + ")"
