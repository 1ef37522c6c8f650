"""Calibration: the chosen calibrator fixes a miscalibrated score on a later fold."""

from __future__ import annotations

import numpy as np
import pandas as pd

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


def test_seasonal_prior_shift_uses_the_same_seasons_a_year_earlier():
    import pandas as pd

    from training.calibration import seasonal_prior_shift

    rates = {"2010-06-17": 0.5, "2010-09-15": 0.4, "2011-06-12": 0.6}
    as_of, y = [], []
    for cutoff, rate in rates.items():
        n = 1000
        as_of += [pd.Timestamp(cutoff)] * n
        y += [1.0] * int(rate * n) + [0.0] * (n - int(rate * n))
    prior = seasonal_prior_shift(
        as_of, np.array(y), calibration_cutoff="2011-06-12", test_cutoff="2011-09-10", horizon_days=90
    )
    assert prior.applied
    assert prior.test_season_cutoff == "2010-09-15" and prior.calibration_season_cutoff == "2010-06-17"
    assert abs(prior.shift - (np.log(0.4 / 0.6) - np.log(0.5 / 0.5))) < 1e-9
    assert abs(prior.expected_test_rate - 1 / (1 + np.exp(-(np.log(0.6 / 0.4) + prior.shift)))) < 1e-9
    # Reference cut-offs too close to the start of the data (short history): no shift.
    short = seasonal_prior_shift(
        as_of,
        np.array(y),
        calibration_cutoff="2011-06-12",
        test_cutoff="2011-09-10",
        horizon_days=90,
        history_days=np.full(len(y), 100.0),
    )
    assert not short.applied and short.shift == 0.0


def test_calibrator_shift_moves_the_log_odds():
    from models.scorer import Calibrator

    raw = np.array([-1.0, 0.0, 2.0])
    base = Calibrator(kind="sigmoid", a=1.0, b=0.0)
    shifted = Calibrator(kind="sigmoid", a=1.0, b=0.0, shift=-0.5)
    logit = np.log(shifted(raw) / (1 - shifted(raw)))
    assert np.allclose(logit, np.log(base(raw) / (1 - base(raw))) - 0.5)


def test_intercept_shift_matches_the_base_rate_and_model_adjusted_uses_it():
    from training.calibration import PriorShift, intercept_shift, model_adjusted

    rng = np.random.default_rng(3)
    p = rng.uniform(0.1, 0.9, 5000)
    s = intercept_shift(p, np.r_[np.ones(2000), np.zeros(3000)])
    shifted = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + s)))
    assert abs(shifted.mean() - 0.4) < 1e-6
    base = PriorShift(shift=0.1, applied=True, calibration_rate=0.6, test_season_cutoff="a")
    y_a = (rng.random(5000) < 0.3).astype(float)
    y_b = (rng.random(5000) < 0.5).astype(float)
    out = model_adjusted(base, p, y_a, p, y_b, calibration_rate_model=0.6)
    assert out.method == "model-adjusted" and out.rate_shift == 0.1
    assert abs(out.shift - (intercept_shift(p, y_a) - intercept_shift(p, y_b))) < 1e-12
    assert model_adjusted(PriorShift(0.0, False, 0.6), p, y_a, p, y_b, calibration_rate_model=0.6).shift == 0.0


def _seasonal_calibrator():
    from models.scorer import Calibrator

    # Trained with T = 2011-09-10 and the calibration fold at 2011-06-12: the reference is the
    # intercept of 2010-06-13, the test season's that of 2010-09-12, so shift = -0.75 - 0.25.
    return Calibrator(
        kind="sigmoid",
        shift=-1.0,
        seasonal_intercepts={"2010-06-13": 0.25, "2010-09-12": -0.75, "2010-12-11": 0.5},
        seasonal_reference=0.25,
    )


def test_seasonal_shift_at_the_test_cutoff_is_the_stored_shift():
    calibrator = _seasonal_calibrator()
    assert calibrator.shift_at("2011-09-10") == calibrator.shift == -1.0
    assert calibrator.shift_at(None) == -1.0
    assert calibrator.shift_at(pd.Timestamp("2011-09-10 13:45")) == -1.0


def test_seasonal_shift_is_zero_far_from_every_cutoff():
    calibrator = _seasonal_calibrator()
    # 2012-03-15 - 365 days = 2011-03-16: 95 days from 2010-12-11, the nearest cut-off.
    assert calibrator.shift_at("2012-03-15") == 0.0
    # (as_of - 365) 45 days after the 2010-12-11 cut-off still counts, 46 days does not.
    assert calibrator.shift_at(pd.Timestamp("2010-12-11") + pd.Timedelta(days=365 + 45)) == 0.25
    assert calibrator.shift_at(pd.Timestamp("2010-12-11") + pd.Timedelta(days=365 + 46)) == 0.0


def test_seasonal_shift_near_another_cutoff_uses_its_intercept():
    calibrator = _seasonal_calibrator()
    # 2011-12-09 - 365 days = 2010-12-09, two days from the 2010-12-11 cut-off: 0.5 - 0.25.
    assert calibrator.shift_at("2011-12-09") == 0.25
    # Near the calibration season itself the shift vanishes.
    assert calibrator.shift_at("2011-06-12") == 0.0
    raw = np.array([-1.0, 0.0, 2.0])
    logit = np.log(calibrator(raw, as_of="2011-12-09") / (1 - calibrator(raw, as_of="2011-12-09")))
    assert np.allclose(logit, raw + 0.25)


def test_calibrators_pickled_before_the_intercept_table_keep_their_shift():
    calibrator = _seasonal_calibrator()
    for name in ("seasonal_intercepts", "seasonal_reference", "period_days", "tolerance_days"):
        calibrator.__dict__.pop(name, None)
    assert calibrator.shift_at("2011-12-09") == -1.0
