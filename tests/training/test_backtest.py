"""The backtest on a synthetic training set: folds, calibration on the test fold, baselines and grade."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from models.churn import spec as churn_spec
from tests.training.synthetic import MODEL_CONFIG, frame, training_set
from training import metrics as m
from training.backtest import context_features, gain_text, grade, run_backtest, seasonal_fits
from training.calibration import intercept_shift


@pytest.fixture(scope="module")
def result():
    return run_backtest(training_set(0, n=2500), churn_spec(MODEL_CONFIG), num_boost_round=300)


def test_model_is_calibrated_on_the_test_fold_and_beats_rfm(result):
    assert result.metrics["ece"] < 0.05
    assert result.metrics["roc_auc"] > 0.75
    assert result.metrics["roc_auc"] > result.baselines["rfm"]["roc_auc"]
    assert set(result.baselines) == {"rfm", "logistic"}  # no transactions: no BG/NBD


def test_fold_roles_never_mix_time(result):
    roles = dict(zip(result.table["cutoff"], result.table["role"], strict=True))
    assert roles == {
        "2011-02-01": "fit",
        "2011-03-03": "fit",
        "2011-04-02": "fit",
        "2011-05-02": "calibration",
        "2011-06-01": "test",
    }
    assert result.params["calibration_cutoff"] == "2011-05-02"


def test_scorer_reproduces_backtest_probabilities(result):
    ts = training_set(0, n=2500)
    scores = result.scorer.score_frame(ts.test, explain=False)
    np.testing.assert_allclose(scores["probability"].to_numpy(), result.predictions["probability"].to_numpy())


def test_the_gain_over_the_best_baseline_comes_with_its_interval(result):
    best = max(result.baselines, key=lambda n: result.baselines[n]["roc_auc"])
    assert result.params["roc_auc_gain_baseline"] == best
    got = result.metrics
    assert got["roc_auc_gain"] == pytest.approx(got["roc_auc"] - result.baselines[best]["roc_auc"])
    assert got["roc_auc_gain_low"] < got["roc_auc_gain"] < got["roc_auc_gain_high"]
    assert 0 <= got["roc_auc_gain_p_value"] <= 1 and 0 < got["roc_auc_gain_se"] < got["roc_auc_se"]
    y, p = result.predictions["label"], result.predictions["probability"]
    assert got["roc_auc_se"] == pytest.approx(m.roc_auc_se(y, p))
    # The same figures read as one sentence in the report and the demo.
    sentence = gain_text(got, result.baselines)
    assert f"over {best} (95% CI {got['roc_auc_gain_low']:+.3f} to {got['roc_auc_gain_high']:+.3f}" in sentence


def test_grade_thresholds():
    assert grade(0.80, [0.77, 0.75]) == "A"
    assert grade(0.78, [0.77]) == "B"
    assert grade(0.76, [0.77, float("nan")]) == "C"
    # No better than a coin is C, even against baselines that rank the wrong way.
    assert grade(0.50, [0.24]) == "C" and grade(0.49, []) == "C"


def test_single_training_cutoff_is_refused():
    ts = training_set(0)
    only = ts.train[ts.train["as_of"] == ts.train["as_of"].max()]
    from dataclasses import replace

    # Four cut-offs configured, three of them empty: the data starts too late or has a gap there,
    # and the message names the empty ones.
    with pytest.raises(ValueError, match="at least two training cut-offs") as short:
        run_backtest(replace(ts, train=only), churn_spec(MODEL_CONFIG))
    said = str(short.value)
    assert "only 1 of the 4 cut-offs before the test cut-off 2011-06-01 have any rows" in said
    assert "at 2011-02-01, 2011-03-03, 2011-04-02: the data starts later or has a gap there" in said
    assert "Use a later test cut-off (--as-of), or raise models.churn.n_train_cutoffs to reach past a gap" in said
    # One cut-off configured: more of them would help.
    with pytest.raises(ValueError, match=r"got 1\. Raise models\.churn\.n_train_cutoffs"):
        run_backtest(replace(ts, train=only, cutoffs=ts.cutoffs[:1]), churn_spec(MODEL_CONFIG))


def test_no_cutoff_a_horizon_before_the_latest_says_what_helps():
    """More cut-offs help when every configured one has rows; when the earlier ones are empty (the data
    starts after them), raising n_train_cutoffs led to 'the data does not reach back far enough'."""
    from dataclasses import replace

    ts = training_set(0)
    two = ts.train[ts.train["as_of"].astype(str) >= "2011-04-02"]  # 30 days apart, the horizon 60
    spec = churn_spec(MODEL_CONFIG.model_copy(update={"horizon_days": 60}))
    with pytest.raises(ValueError, match="the earlier cut-offs have no rows: use a later test cut-off"):
        run_backtest(replace(ts, train=two), spec)
    with pytest.raises(ValueError, match=r"\(2011-05-02\); raise models\.churn\.n_train_cutoffs or step_days"):
        run_backtest(replace(ts, train=two, cutoffs=ts.cutoffs[:2]), spec)


def test_an_empty_test_fold_is_named_as_empty():
    """No row at the test cut-off (the bank leads have none in January-February 2010) is said as
    such, with the population rule, not as a fold with a single class."""
    from dataclasses import replace

    ts = training_set(0)
    with pytest.raises(ValueError, match="the test fold has no rows: nothing is in the population") as empty:
        run_backtest(replace(ts, test=ts.test.iloc[:0]), churn_spec(MODEL_CONFIG))
    assert "at the test cut-off 2011-06-01. Use a test cut-off (--as-of) where the data has rows" in str(empty.value)


def test_linear_blend_scores_and_explains_as_one_model(result):
    import dataclasses
    import pickle

    ts = training_set(0, n=2500)
    blended = run_backtest(
        ts, dataclasses.replace(churn_spec(MODEL_CONFIG), linear_blend=0.5, hazard_blend=None), num_boost_round=300
    )
    scorer = blended.scorer
    assert scorer.linear is not None and scorer.booster_weight > 0
    X = scorer.prepare(ts.test)
    booster_raw = scorer.booster.predict(X, raw_score=True, num_iteration=scorer.num_iteration)
    np.testing.assert_allclose(scorer.raw_score(X), scorer.booster_weight * booster_raw + scorer.linear.decision(X))
    # One decomposition: the SHAP values of both parts sum to the score the calibrator sees.
    np.testing.assert_allclose(scorer.contributions(X).sum(axis=1), scorer.raw_score(X), rtol=1e-9, atol=1e-9)
    # The blend is a different model from the trees alone, and the same one after a pickle round trip.
    assert not np.allclose(blended.predictions["probability"], result.predictions["probability"])
    clone = pickle.loads(pickle.dumps(scorer))
    np.testing.assert_allclose(
        clone.score_frame(ts.test, explain=False)["probability"].to_numpy(), blended.predictions["probability"]
    )
    assert blended.metrics["roc_auc"] > 0.75 and blended.metrics["ece"] < 0.05
    # The logistic baseline is the run's own linear head, unblended: the same whatever the blend.
    assert blended.baselines["logistic"] == result.baselines["logistic"]


def test_the_hazard_head_is_half_the_score_and_half_the_reasons(result):
    import dataclasses

    scorer = result.scorer
    assert scorer.hazard is not None and scorer.hazard.default_as_of == "2011-06-01"
    assert result.params["hazard_weight"] == scorer.hazard_weight > 0 and scorer.booster_weight > 0
    ts = training_set(0, n=2500)
    X = scorer.prepare(ts.test)
    booster_raw = scorer.booster.predict(X, raw_score=True, num_iteration=scorer.num_iteration)
    np.testing.assert_allclose(
        scorer.raw_score(X), scorer.booster_weight * booster_raw + scorer.hazard_weight * scorer.hazard.raw(X)
    )
    for as_of in (None, "2011-12-01"):
        np.testing.assert_allclose(
            scorer.contributions(X, as_of).sum(axis=1), scorer.raw_score(X, as_of), rtol=1e-9, atol=1e-9
        )
    # The planted hazard falls with recency and rises with orders, the planted churn the other way:
    # the head's logit(P(no purchase)) and the booster's churn log-odds agree.
    assert np.corrcoef(scorer.hazard.raw(X), booster_raw)[0, 1] > 0.5
    alone = run_backtest(ts, dataclasses.replace(churn_spec(MODEL_CONFIG), hazard_blend=None), num_boost_round=300)
    assert alone.scorer.hazard is None
    assert not np.allclose(alone.predictions["probability"], result.predictions["probability"])
    with pytest.raises(ValueError, match="hazard_blend needs the training set's hazard rows"):
        run_backtest(dataclasses.replace(ts, hazard=None), churn_spec(MODEL_CONFIG), num_boost_round=50)


def test_context_features_are_those_constant_or_nearly_so_within_every_cutoff(result):
    nan = np.nan
    X = np.array(
        [
            [1.0, 5.0, nan, 1.0, 3.0],
            [1.0, 6.0, nan, 2.0, nan],
            [2.0, 7.0, nan, nan, 4.0],
            [2.0, 7.0, nan, 3.0, 4.0],
            [9.0, 1.0, 1.0, 1.0, 8.0],  # a cut-off of one row says nothing
        ]
    )
    names = ["month_rate", "age", "all_missing", "visits", "constant_but_missing_once"]
    assert context_features(X, np.array(["a", "a", "b", "b", "c"]), names) == [
        "month_rate",
        "all_missing",
        "constant_but_missing_once",
    ]
    assert context_features(X[:1], np.array(["a"]), names) == []
    # Nearly constant within each cut-off, far apart between them (a daily rate in monthly cut-offs):
    # context; a feature that varies as much within as between the cut-offs is not.
    rng = np.random.default_rng(0)
    cut = np.repeat(["a", "b", "c"], 50)
    level = np.repeat([1.0, 3.0, 5.0], 50)
    daily = level + rng.normal(0, 0.05, 150)
    customer = level + rng.normal(0, 2.0, 150)
    assert context_features(np.column_stack([daily, customer]), cut, ["daily_rate", "customer"]) == ["daily_rate"]
    assert context_features(np.column_stack([daily, customer]), cut, ["d", "c"], between_share=0.9999) == []
    # The synthetic customers vary within each cut-off: no churn feature is context.
    assert result.scorer.reasons.context == []


def test_a_churn_model_without_cutoffs_a_year_back_says_it_has_no_seasonal_shift(result):
    # The synthetic set has four monthly cut-offs: nothing a year before the calibration cut-off.
    assert result.calibration["prior_shift"]["applied"] is False
    assert len(result.warnings) == 1
    warning = result.warnings[0]
    assert warning.startswith("no seasonal prior shift: no training cut-off within 20 days of 2010-05-02")
    assert "models.churn.n_train_cutoffs >= 13 at step_days 30" in warning
    assert f"({result.calibration['prior_shift']['calibration_rate']:.3f})" in warning


def test_a_model_with_its_seasonal_shift_has_no_warning():
    import dataclasses

    ts = training_set(1, n=400)
    # Thirteen monthly cut-offs reach a year before the calibration cut-off.
    cutoffs = [ts.test_cutoff - dt.timedelta(days=30 * (k + 1)) for k in range(13)]
    rng = np.random.default_rng(3)
    train = pd.concat([frame(400, c, rng) for c in cutoffs], ignore_index=True)
    full = dataclasses.replace(ts, train=train, cutoffs=tuple(cutoffs))
    out = run_backtest(full, churn_spec(MODEL_CONFIG), num_boost_round=50)
    assert out.calibration["prior_shift"]["applied"] is True
    assert out.warnings == []


def test_each_baseline_gets_its_own_seasonal_correction():
    """SYNTHETIC (a planted season): a year before T the churn rate climbs linearly with the calendar,
    from none at the cut-off T - 390 (the calibration season's reference) to +1.5 log-odds at T - 360;
    every other cut-off, the calibration fold included, has none. The test window's season is that
    of T - 365, 5/6 of the way: +1.25. Each baseline corrects for it from its own scores at the
    reference cut-offs, interpolated as the model's correction is, so its test probabilities follow
    the season as the model's do."""
    import dataclasses

    ts = training_set(2, n=1500)
    rng = np.random.default_rng(5)
    cutoffs = [ts.test_cutoff - dt.timedelta(days=30 * (k + 1)) for k in range(13)]
    # k = 11 (360 days before T) and k = 12 (390) are the cut-offs around T - 365.
    train = pd.concat([frame(1500, c, rng, shift=1.5 if k == 11 else 0.0) for k, c in enumerate(cutoffs)])
    test = frame(1500, ts.test_cutoff, np.random.default_rng(6), shift=1.25)
    seasonal = dataclasses.replace(ts, train=train.reset_index(drop=True), test=test, cutoffs=tuple(cutoffs))
    out = run_backtest(seasonal, churn_spec(MODEL_CONFIG), num_boost_round=100)
    assert out.calibration["prior_shift"]["applied"] is True
    assert out.calibration["prior_shift"]["test_season_cutoff"] == str(cutoffs[11])
    weights = out.calibration["prior_shift"]["test_season_weights"]
    assert weights == {str(cutoffs[12]): pytest.approx(1 / 6), str(cutoffs[11]): pytest.approx(5 / 6)}
    rate = test["label"].mean()
    assert abs(out.predictions["probability"].mean() - rate) < 0.04
    for name in ("rfm", "logistic"):
        p = out.predictions[f"baseline_{name}"]
        # Calibrated on a fold 1.5 log-odds below the test window: only the correction lifts it there.
        assert abs(p.mean() - rate) < 0.04, name
        assert out.baselines[name]["ece"] < 0.06, name


def test_a_reference_cutoff_the_model_does_not_rank_drops_the_seasonal_slope():
    """A slope ratio with a slope at or below zero would invert the scores: intercept-only for every cut-off."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400).astype(float)
    ranked = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.1, 400), 0.01, 0.99)
    inverted = 1 - ranked
    ok_intercepts, ok_slopes, ok_warning = seasonal_fits(
        {"2010-06-01": (ranked, y), "2010-09-01": (ranked, y)}, slope=True
    )
    assert ok_warning is None and all(a > 1 for a in ok_slopes.values()) and set(ok_intercepts) == set(ok_slopes)
    intercepts, slopes, warning = seasonal_fits({"2010-06-01": (ranked, y), "2010-09-01": (inverted, y)}, slope=True)
    assert slopes == {}
    assert intercepts == {"2010-06-01": intercept_shift(ranked, y), "2010-09-01": intercept_shift(inverted, y)}
    assert warning.startswith(
        "seasonal slope not used: the model barely ranks the labels of the reference cut-off(s) 2010-09-01 (slope -"
    )
    assert "on 400 rows" in warning and "2010-06-01" not in warning


def test_few_rows_per_cutoff_are_said_and_still_give_a_model_that_ranks():
    """SYNTHETIC (a planted signal): 80 customers per cut-off, too few for the shipped leaf size of 200."""
    out = run_backtest(training_set(0, n=80), churn_spec(MODEL_CONFIG), num_boost_round=50)
    calibration = [w for w in out.warnings if w.startswith("few rows: the calibration fold")]
    assert len(calibration) == 1 and "has 80 rows" in calibration[0] and "models.churn.step_days" in calibration[0]
    assert any(w.startswith("few rows: the classifier's min_child_samples 200 -> ") for w in out.warnings)
    assert out.params["best_iteration"] > 1 and out.metrics["roc_auc"] > 0.6


def test_the_report_names_test_fold_categories_no_training_row_had(result):
    """A category only the test fold holds gets a code no training row had; the report says which."""
    import dataclasses

    from models.drift import with_unseen
    from training.report import render_report

    assert "no training row had" not in render_report(result, {})
    planted = dataclasses.replace(result, drift=with_unseen(result.drift, {"country": {"Atlantis": 12, "<b>": 1}}, 500))
    page = render_report(planted, {})
    assert (
        "scored as a missing category (rows): country &#x27;Atlantis&#x27; (12), &#x27;&lt;b&gt;&#x27; (1).</p>" in page
    )


def test_the_report_says_the_gates_decision_the_settings_and_the_parameters(result):
    """A version's report said neither why the gate kept it out nor what it was fitted with (``num_leaves``,
    the seed), so two reports of one cut-off could not be told apart."""
    from training.report import render_report

    run = {
        "version": "2",
        "alias": "challenger",
        "promoted": False,
        "reason": "roc_auc 0.7700 <= champion v1 0.7757 on the same test rows (DeLong p = 0.3)",
        "settings": {"horizon_days": 30, "lookback_days": 365, "seed": 7, "engine": "duckdb"},
    }
    page = render_report(result, {}, run=run)
    assert "<th>promotion gate</th><td>kept out: roc_auc 0.7700 &lt;= champion v1 0.7757" in page
    assert "<th>alias when registered</th><td>challenger</td>" in page
    assert "<th>settings</th><td>horizon_days 30, lookback_days 365, seed 7, engine duckdb</td>" in page
    assert "<h2>Parameters</h2>" in page and f"<th>num_leaves</th><td>{result.params['num_leaves']}</td>" in page
    assert "kept out" not in render_report(result, {})  # a report before registration has no decision
