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

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from models.scorer import Calibrator

__all__ = ["CalibrationChoice", "choose_calibrator", "fit_isotonic", "fit_sigmoid"]


def fit_sigmoid(raw: np.ndarray, y: np.ndarray) -> Calibrator:
    """Platt scaling: a logistic regression of ``y`` on the raw score (almost unpenalised)."""
    lr = LogisticRegression(C=1e6, max_iter=1000)
    lr.fit(np.asarray(raw, dtype=np.float64).reshape(-1, 1), np.asarray(y, dtype=int))
    return Calibrator(kind="sigmoid", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))


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


def choose_calibrator(raw: np.ndarray, y: np.ndarray, ids: Sequence[object]) -> CalibrationChoice:
    """Fit isotonic and sigmoid calibrators and keep the one with the lower out-of-fold Brier score.

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
    scores = {"isotonic": 0.0, "sigmoid": 0.0}
    for fit, name in ((fit_isotonic, "isotonic"), (fit_sigmoid, "sigmoid")):
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
