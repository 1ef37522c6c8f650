"""Calibration: the chosen calibrator fixes a miscalibrated score on a later fold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.calibration import MIN_SIGMOID_SLOPE, choose_calibrator, fit_sigmoid
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


def test_a_small_calibration_fold_gets_the_sigmoid_only():
    """The same step link on 600 rows: isotonic's steps would fit the noise of so few."""
    rng = np.random.default_rng(1)
    raw = rng.uniform(-3, 3, 600)
    y = (rng.random(len(raw)) < np.where(raw > 0, 0.9, 0.1)).astype(float)
    choice = choose_calibrator(raw, y, [f"c{i}" for i in range(len(y))])
    assert choice.kind == "sigmoid" and set(choice.brier) == {"sigmoid"}


def test_a_fold_ranked_the_wrong_way_does_not_invert_the_scores():
    rng = np.random.default_rng(2)
    raw = rng.normal(0, 1, 300)
    y = (rng.random(300) < 1 / (1 + np.exp(2 * raw))).astype(float)  # higher raw, fewer positives
    calibrator = fit_sigmoid(raw, y)
    assert calibrator.a == MIN_SIGMOID_SLOPE
    p = calibrator(raw)
    assert np.all(np.diff(p[np.argsort(raw)]) >= 0)  # the order of the scores is kept
    assert p.mean() == pytest.approx(y.mean(), abs=1e-6) and p.max() - p.min() < 0.01  # about the base rate


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
    assert short.note == (
        "no training cut-off within 20 days of 2010-06-12, one year before the calibration cut-off "
        "(the earliest training cut-off is 2010-06-17; none has 180 days of history behind it)"
    )
    # Without the year-old cut-offs (a training set of the latest months only): no shift, and why.
    recent = [c for c in as_of if c.year == 2011]
    latest_only = seasonal_prior_shift(
        recent, np.array(y)[-len(recent) :], calibration_cutoff="2011-06-12", test_cutoff="2011-09-10", horizon_days=90
    )
    assert not latest_only.applied and latest_only.shift == 0.0
    assert latest_only.note.startswith(
        "no training cut-off within 20 days of 2010-06-12, one year before the calibration"
    )
    assert "the earliest training cut-off is 2011-06-12" in latest_only.note


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


def test_recalibration_fit_recovers_slope_and_intercept():
    from training.calibration import recalibration_fit

    rng = np.random.default_rng(5)
    z = rng.normal(0.0, 1.5, 200_000)
    y = (rng.random(len(z)) < 1 / (1 + np.exp(-(0.6 * z - 0.4)))).astype(float)
    slope, intercept = recalibration_fit(1 / (1 + np.exp(-z)), y)
    assert slope == pytest.approx(0.6, abs=0.01)
    assert intercept == pytest.approx(-0.4, abs=0.015)
    with pytest.raises(ValueError, match="single class"):
        recalibration_fit(np.full(3, 0.5), np.ones(3))


def test_model_adjusted_with_slope_undoes_the_calibration_season_and_applies_the_test_season():
    from training.calibration import PriorShift, model_adjusted, recalibration_fit

    rng = np.random.default_rng(7)
    p = rng.uniform(0.05, 0.95, 20_000)
    z = np.log(p / (1 - p))
    y_test_season = (rng.random(len(p)) < 1 / (1 + np.exp(-(0.65 * z - 0.7)))).astype(float)
    y_cal_season = (rng.random(len(p)) < 1 / (1 + np.exp(-(0.8 * z - 0.3)))).astype(float)
    base = PriorShift(shift=0.1, applied=True, calibration_rate=0.6, test_season_cutoff="a")
    out = model_adjusted(
        base, p, y_test_season, p, y_cal_season, calibration_rate_model=0.6, slope=True, p_calibration=p
    )
    a_t, b_t = recalibration_fit(p, y_test_season)
    a_c, b_c = recalibration_fit(p, y_cal_season)
    assert out.scale == pytest.approx(a_t / a_c, rel=1e-12)
    assert out.shift == pytest.approx(b_t - out.scale * b_c, rel=1e-12)
    assert out.scale == pytest.approx(0.65 / 0.8, abs=0.05)
    assert out.method == "model-adjusted, slope and intercept" and out.rate_shift == 0.1
    assert out.expected_test_rate == pytest.approx(np.mean(1 / (1 + np.exp(-(out.scale * z + out.shift)))), rel=1e-12)
    # Without the slope the scale stays 1 and the shift is the difference of intercepts.
    assert model_adjusted(base, p, y_test_season, p, y_cal_season, calibration_rate_model=0.6).scale == 1.0


def _sloped_calibrator():
    from models.scorer import Calibrator

    # Reference (calibration season) 2010-06-13: slope 0.5, intercept 0.25; the test season
    # 2010-09-12: slope 0.375, intercept -0.75. At T: scale 0.75, shift -0.75 - 0.75 * 0.25.
    return Calibrator(
        kind="sigmoid",
        shift=-0.9375,
        scale=0.75,
        seasonal_intercepts={"2010-06-13": 0.25, "2010-09-12": -0.75, "2010-12-11": 0.5},
        seasonal_reference=0.25,
        seasonal_slopes={"2010-06-13": 0.5, "2010-09-12": 0.375, "2010-12-11": 0.625},
        seasonal_reference_slope=0.5,
    )


def test_seasonal_scale_and_shift_follow_the_scoring_date():
    calibrator = _sloped_calibrator()
    assert calibrator.scale_at("2011-09-10") == calibrator.scale == 0.75
    assert calibrator.shift_at("2011-09-10") == calibrator.shift == -0.9375
    assert calibrator.scale_at(None) == 0.75
    # Near the 2010-12-11 cut-off: scale 0.625 / 0.5, shift 0.5 - 1.25 * 0.25.
    assert calibrator.scale_at("2011-12-09") == 1.25
    assert calibrator.shift_at("2011-12-09") == 0.1875
    # Near the calibration season itself the correction vanishes; far from every cut-off it is off.
    assert (calibrator.scale_at("2011-06-12"), calibrator.shift_at("2011-06-12")) == (1.0, 0.0)
    assert (calibrator.scale_at("2012-03-15"), calibrator.shift_at("2012-03-15")) == (1.0, 0.0)
    raw = np.array([-1.0, 0.0, 2.0])
    p = calibrator(raw, as_of="2011-09-10")
    assert np.allclose(np.log(p / (1 - p)), 0.75 * raw - 0.9375)


def test_calibrators_pickled_before_the_slope_table_keep_their_intercept_shift():
    calibrator = _seasonal_calibrator()
    for name in ("scale", "seasonal_slopes", "seasonal_reference_slope"):
        calibrator.__dict__.pop(name, None)
    assert calibrator.scale_at("2011-12-09") == 1.0
    assert calibrator.shift_at("2011-12-09") == 0.25
    raw = np.array([-1.0, 0.0, 2.0])
    p = calibrator(raw)
    assert np.allclose(np.log(p / (1 - p)), raw - 1.0)


def test_the_fewest_cutoffs_that_hold_both_seasonal_references():
    from training.calibration import cutoffs_for_season

    # Monthly, H = 90: T - H - 12 x 30 = T - 450 lies 5 days from T - H - 365 (k = 12).
    assert cutoffs_for_season(30, 90) == 13
    assert cutoffs_for_season(90, 90) == 5  # T - H - 360 and T - 360
    assert cutoffs_for_season(7, 30) == 51  # k = 50 (350 days); 49 weeks, 343 days, is 22 days short
    # Steps of 100 days land 65 or 35 days from a year: no layout of that step holds them.
    assert cutoffs_for_season(100, 90) is None
