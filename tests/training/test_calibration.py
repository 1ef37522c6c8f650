"""Calibration: the chosen calibrator fixes a miscalibrated score on a later fold."""

from __future__ import annotations

import numpy as np

from training.calibration import choose_calibrator
from training.metrics import ece


def _fold(rng, n, slope):
    raw = rng.normal(0, 2, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-slope * raw))).astype(float)
    return raw, y


def test_calibrator_fitted_on_one_fold_is_calibrated_on_a_later_one():
    rng = np.random.default_rng(0)
    # The booster is over-confident: the true slope of the log-odds is 0.5, not 1.
    raw_cal, y_cal = _fold(rng, 4000, 0.5)
    raw_test, y_test = _fold(rng, 4000, 0.5)
    choice = choose_calibrator(raw_cal, y_cal, [f"c{i}" for i in range(len(y_cal))])
    uncalibrated = 1 / (1 + np.exp(-raw_test))
    assert ece(y_test, uncalibrated) > 0.08
    assert ece(y_test, choice.calibrator(raw_test)) < 0.03
    # A logistic truth: sigmoid wins out of fold, and its slope is close to 0.5.
    assert choice.kind == "sigmoid"
    assert abs(choice.calibrator.a - 0.5) < 0.1


def test_isotonic_wins_when_the_link_is_not_logistic():
    rng = np.random.default_rng(1)
    raw = rng.uniform(-3, 3, 6000)
    p = np.where(raw > 0, 0.9, 0.1)  # a step: no sigmoid fits it
    y = (rng.random(len(raw)) < p).astype(float)
    choice = choose_calibrator(raw, y, [f"c{i}" for i in range(len(y))])
    assert choice.kind == "isotonic"
    assert choice.brier["isotonic"] < choice.brier["sigmoid"]
