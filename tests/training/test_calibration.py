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


def test_intercept_shift_matches_the_base_rate():
    from training.calibration import intercept_shift

    rng = np.random.default_rng(3)
    p = rng.uniform(0.1, 0.9, 5000)
    s = intercept_shift(p, np.r_[np.ones(2000), np.zeros(3000)])
    shifted = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + s)))
    assert abs(shifted.mean() - 0.4) < 1e-6


def test_model_adjusted_records_the_correction_and_its_expected_rate():
    from training.calibration import PriorShift, model_adjusted

    p = np.random.default_rng(3).uniform(0.1, 0.9, 5000)
    base = PriorShift(shift=0.1, applied=True, calibration_rate=0.6, test_season_cutoff="2010-09-15")
    weights = (("2010-08-16", 1 / 6), ("2010-09-15", 5 / 6))
    out = model_adjusted(base, 0.8, -0.4, p_calibration=p, slope=True, test_season_weights=weights)
    assert (out.scale, out.shift, out.rate_shift) == (0.8, -0.4, 0.1)
    assert out.method == "model-adjusted, slope and intercept"
    assert out.expected_test_rate == pytest.approx(np.mean(1 / (1 + np.exp(-(0.8 * np.log(p / (1 - p)) - 0.4)))))
    assert out.test_season_weights == {"2010-08-16": 1 / 6, "2010-09-15": 5 / 6}
    assert model_adjusted(base, 1.0, -0.4, p_calibration=p, slope=False).method == "model-adjusted"
    unapplied = PriorShift(0.0, False, 0.6)
    assert model_adjusted(unapplied, 0.8, -0.4, p_calibration=p, slope=True) is unapplied


# Monthly training cut-offs a year before a model trained with T = 2011-09-10 and its calibration
# fold at 2011-06-12: the reference (calibration season) is 2010-06-12's intercept, the test
# season's is 2010-09-10's, so at T the shift is -0.75 - 0.25.
_INTERCEPTS = {
    "2010-06-12": 0.25,
    "2010-07-12": 0.0,
    "2010-08-11": -0.5,
    "2010-09-10": -0.75,
    "2010-10-10": -0.5,
    "2010-11-09": 0.0,
    "2010-12-09": 0.5,
}
_SLOPES = {
    "2010-06-12": 0.5,
    "2010-07-12": 0.5,
    "2010-08-11": 0.45,
    "2010-09-10": 0.375,
    "2010-10-10": 0.4,
    "2010-11-09": 0.5,
    "2010-12-09": 0.625,
}


def _seasonal_calibrator():
    from models.scorer import Calibrator

    return Calibrator(kind="sigmoid", shift=-1.0, seasonal_intercepts=dict(_INTERCEPTS), seasonal_reference=0.25)


def test_seasonal_shift_at_the_test_cutoff_is_the_stored_shift():
    calibrator = _seasonal_calibrator()
    assert calibrator.shift_at("2011-09-10") == calibrator.shift == -1.0
    assert calibrator.shift_at(None) == -1.0
    assert calibrator.shift_at(pd.Timestamp("2011-09-10 13:45")) == -1.0
    assert calibrator.shift_at(pd.Timestamp("2011-09-10 23:30", tz="Europe/London")) == -1.0


def test_seasonal_shift_interpolates_between_cutoffs():
    calibrator = _seasonal_calibrator()
    # 2011-09-25 - 365 days = 2010-09-25, half way from 2010-09-10 (-0.75) to 2010-10-10 (-0.5).
    assert calibrator.shift_at("2011-09-25") == pytest.approx(-0.625 - 0.25, abs=1e-12)
    # A third of the way from 2010-11-09 (0.0) to 2010-12-09 (0.5).
    assert calibrator.shift_at("2011-11-19") == pytest.approx(0.5 / 3 - 0.25, abs=1e-12)
    raw = np.array([-1.0, 0.0, 2.0])
    p = calibrator(raw, as_of="2011-09-25")
    assert np.allclose(np.log(p / (1 - p)), raw - 0.875)


def test_seasonal_shift_never_steps_from_one_day_to_the_next():
    # Until 2026-12-07 each date took the nearest cut-off's intercept: from 2011-11-24 to 11-25
    # (2010-11-24 -> 11-25, where the nearest cut-off changes) the shift jumped by 0.5 here.
    calibrator = _seasonal_calibrator()
    days = pd.date_range("2011-04-01", "2012-03-31", freq="D")
    shifts = np.array([calibrator.shift_at(d) for d in days])
    steepest = max(abs(a - b) for a, b in zip(list(_INTERCEPTS.values())[1:], _INTERCEPTS.values(), strict=False)) / 30
    assert np.max(np.abs(np.diff(shifts))) <= max(steepest, 0.25 / 45) + 1e-12
    # Near the calibration season it vanishes; after the last cut-off it fades to 0 over the 45 days'
    # tolerance (2010-12-09's 0.25 at 2011-12-09, half of it 22.5 days on); far from every cut-off it is 0.
    assert calibrator.shift_at("2011-06-12") == 0.0
    assert calibrator.shift_at("2011-05-20") == 0.0
    assert calibrator.shift_at("2011-12-09") == pytest.approx(0.25, abs=1e-12)
    assert calibrator.shift_at("2011-12-27") == pytest.approx(0.25 * (1 - 18 / 45), abs=1e-12)
    assert calibrator.shift_at("2012-01-23") == 0.0
    assert calibrator.shift_at("2012-03-15") == 0.0


def test_season_weights_sum_to_one_between_cutoffs_and_fade_outside():
    from models.scorer import season_weights

    keys = tuple(_INTERCEPTS)
    assert season_weights(keys, "2011-09-10", 365, 45) == (("2010-09-10", 1.0),)
    (a, wa), (b, wb) = season_weights(keys, "2011-09-20", 365, 45)
    assert (a, b) == ("2010-09-10", "2010-10-10") and (wa, wb) == pytest.approx((2 / 3, 1 / 3))
    # Before the first cut-off: the first, fading (or held, taper=False); beyond 45 days, none.
    assert season_weights(keys, "2011-06-02", 365, 45) == (("2010-06-12", pytest.approx(1 - 10 / 45)),)
    assert season_weights(keys, "2011-06-02", 365, 45, False) == (("2010-06-12", 1.0),)
    assert season_weights(keys, "2011-04-01", 365, 45) == ()
    # Neighbours further apart than twice the tolerance are not interpolated: the nearest counts.
    sparse = ("2010-01-01", "2010-07-01")
    assert season_weights(sparse, "2011-01-21", 365, 45) == (("2010-01-01", pytest.approx(1 - 20 / 45)),)
    assert season_weights(sparse, "2011-04-01", 365, 45) == ()
    assert season_weights((), "2011-04-01", 365, 45) == ()


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


def test_fit_seasons_undoes_the_calibration_season_and_applies_the_interpolated_test_season():
    from models.scorer import Calibrator
    from training.backtest import fit_seasons
    from training.calibration import recalibration_fit

    # Synthetic (planted recalibrations): three monthly reference cut-offs, each with its own slope
    # and intercept of the true log-odds on the model's.
    rng = np.random.default_rng(7)
    p = rng.uniform(0.05, 0.95, 20_000)
    z = np.log(p / (1 - p))
    planted = {"2010-06-12": (0.8, -0.3), "2010-07-12": (0.7, -0.5), "2010-08-11": (0.6, -0.8)}
    scored = {
        c: (p, (rng.random(len(p)) < 1 / (1 + np.exp(-(a * z + b)))).astype(float)) for c, (a, b) in planted.items()
    }
    calibrator = Calibrator(kind="identity")
    # T - 365 = 2010-07-22: a third of the way from 2010-07-12 to 2010-08-11.
    scale, shift, warning = fit_seasons(
        calibrator, scored, slope=True, calibration_cutoff="2011-06-12", test_cutoff="2011-07-22"
    )
    fits = {c: recalibration_fit(*scored[c]) for c in planted}
    a_test = 2 / 3 * fits["2010-07-12"][0] + 1 / 3 * fits["2010-08-11"][0]
    b_test = 2 / 3 * fits["2010-07-12"][1] + 1 / 3 * fits["2010-08-11"][1]
    a_cal, b_cal = fits["2010-06-12"]
    assert warning is None
    assert scale == pytest.approx(a_test / a_cal, rel=1e-12)
    assert shift == pytest.approx(b_test - scale * b_cal, rel=1e-12)
    assert scale == pytest.approx((2 / 3 * 0.7 + 1 / 3 * 0.6) / 0.8, abs=0.05)
    # The correction at T is the calibrator's own, with and without the date.
    assert (calibrator.scale, calibrator.shift) == (scale, shift) == calibrator.correction_at("2011-07-22")
    raw = np.array([-1.0, 0.5])
    assert np.array_equal(calibrator(raw), calibrator(raw, as_of="2011-07-22"))
    # Without the slope the scale stays 1 and the shift is the difference of intercepts.
    flat = Calibrator(kind="identity")
    assert fit_seasons(flat, scored, slope=False, calibration_cutoff="2011-06-12", test_cutoff="2011-07-22")[0] == 1.0


def _sloped_calibrator():
    from models.scorer import Calibrator

    # Reference (calibration season) 2010-06-12: slope 0.5, intercept 0.25; the test season
    # 2010-09-10: slope 0.375, intercept -0.75. At T: scale 0.75, shift -0.75 - 0.75 * 0.25.
    return Calibrator(
        kind="sigmoid",
        shift=-0.9375,
        scale=0.75,
        seasonal_intercepts=dict(_INTERCEPTS),
        seasonal_reference=0.25,
        seasonal_slopes=dict(_SLOPES),
        seasonal_reference_slope=0.5,
    )


def test_seasonal_scale_and_shift_follow_the_scoring_date():
    calibrator = _sloped_calibrator()
    assert calibrator.scale_at("2011-09-10") == calibrator.scale == 0.75
    assert calibrator.shift_at("2011-09-10") == calibrator.shift == -0.9375
    assert calibrator.scale_at(None) == 0.75
    # On the 2010-12-09 cut-off: scale 0.625 / 0.5, shift 0.5 - 1.25 * 0.25.
    assert calibrator.scale_at("2011-12-09") == 1.25
    assert calibrator.shift_at("2011-12-09") == 0.1875
    # Half way from 2010-11-09 to 2010-12-09: slope 0.5625, intercept 0.25.
    assert calibrator.scale_at("2011-11-24") == pytest.approx(1.125, abs=1e-12)
    assert calibrator.shift_at("2011-11-24") == pytest.approx(0.25 - 1.125 * 0.25, abs=1e-12)
    # 15 days after the last cut-off, two thirds of its season and one third of the reference's.
    assert calibrator.scale_at("2011-12-24") == pytest.approx((0.625 * 2 / 3 + 0.5 / 3) / 0.5, abs=1e-12)
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
