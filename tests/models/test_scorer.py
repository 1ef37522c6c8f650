"""The Scorer contract: inputs, outputs, tiers, values, and behaviour of a trained churn model."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from models.churn import spec as churn_spec
from models.drift import FeatureProfile, drift_summary
from models.next_purchase import spec as next_purchase_spec
from models.scorer import Calibrator, encode_frame, unseen_values
from tests.training.synthetic import MODEL_CONFIG, training_set
from training.backtest import run_backtest


@pytest.fixture(scope="module")
def churn():
    return run_backtest(training_set(3), churn_spec(MODEL_CONFIG), num_boost_round=200).scorer


@pytest.fixture(scope="module")
def test_frame():
    return training_set(3).test


def test_prepare_orders_columns_and_encodes_categories(churn, test_frame):
    shuffled = test_frame[list(reversed(test_frame.columns))].copy()
    shuffled["country"] = shuffled["country"].astype(str)
    np.testing.assert_array_equal(churn.prepare(shuffled), churn.prepare(test_frame))
    unseen = test_frame.head(2).copy()
    unseen["country"] = ["Atlantis", None]
    assert np.isnan(churn.prepare(unseen)[:, churn.feature_names.index("country")]).all()


def test_prepare_names_the_missing_column(churn, test_frame):
    with pytest.raises(ValueError, match="'recency_days'"):
        churn.prepare(test_frame.drop(columns="recency_days"))
    with pytest.raises(ValueError, match="'customer_id'"):
        churn.score_frame(test_frame.drop(columns="customer_id"))


def test_score_matrix_fields(churn, test_frame):
    X = churn.prepare(test_frame.head(20))
    scores = churn.score_matrix(X, k=2)
    assert set(scores[0]) == {"probability", "tier", "expected_spend", "value_at_risk", "reasons"}
    for s, row in zip(scores, test_frame.head(20).itertuples(), strict=True):
        assert 0 <= s["probability"] <= 1
        assert s["tier"] in {"high", "medium", "low"}
        assert s["value_at_risk"] == pytest.approx(s["probability"] * max(row.monetary_365d, 0) * 30 / 365)
        assert len(s["reasons"]) <= 2 and all(r["impact"] > 0 for r in s["reasons"])
    fast = churn.score_matrix(X, explain=False)
    assert "reasons" not in fast[0]
    assert [s["probability"] for s in fast] == pytest.approx([s["probability"] for s in scores], abs=1e-12)


def test_each_reason_says_how_much_it_moves_the_probability(churn, test_frame):
    """The probability less that of the raw score without the reason's impact, through the same
    calibration (the date's season, the population's anchor): a marketer's measure, where a log-odds
    impact of 0.02 reads the same at P 0.06 and 0.5."""
    X = churn.prepare(test_frame.head(30))
    as_of = churn.metadata["test_cutoff"]
    scores = churn.score_matrix(X, k=3, counter_k=2, as_of=as_of, population_shift=0.3)
    raw = churn.raw_score(X, as_of=as_of)
    checked = 0
    for i, s in enumerate(scores):
        for r in [*s["reasons"], *s["counter_reasons"]]:
            without = churn.calibrator(np.array([raw[i] - r["impact"]]), as_of=as_of, population_shift=0.3)[0]
            assert r["probability_change"] == pytest.approx(s["probability"] - without, abs=1e-6)
            assert (r["probability_change"] > 0) == (r["impact"] > 0)  # counter-reasons take away
            checked += 1
    assert checked >= 60


def test_precomputed_contributions_give_the_same_scores(churn, test_frame):
    """The API passes SHAP values computed once per snapshot; the result must not change."""
    X = churn.prepare(test_frame.head(30))
    contrib = churn.contributions(X)
    np.testing.assert_allclose(contrib.sum(axis=1), churn.raw_score(X), atol=1e-9)
    for explain in (True, False):
        fresh = churn.score_matrix(X, k=3, explain=explain)
        given = churn.score_matrix(X, k=3, explain=explain, contrib=contrib)
        assert [s.get("reasons") for s in given] == [s.get("reasons") for s in fresh]
        assert [s["probability"] for s in given] == pytest.approx([s["probability"] for s in fresh], abs=1e-12)
    with pytest.raises(ValueError, match=r"contrib must have shape \(30, "):
        churn.score_matrix(X, contrib=contrib[:, :-1])


def test_tiers_follow_thresholds(churn):
    p = np.array([0.95, 0.7, 0.69, 0.4, 0.1, np.nan])
    assert list(churn.tier_of(p)) == ["high", "high", "medium", "medium", "low", "low"]


def test_scorer_pickles(churn, test_frame):
    clone = pickle.loads(pickle.dumps(churn))
    pd.testing.assert_frame_equal(clone.score_frame(test_frame), churn.score_frame(test_frame))


def test_a_more_recent_purchase_lowers_churn_probability(churn, test_frame):
    base = test_frame.head(200).copy()
    recent = base.assign(recency_days=base["recency_days"] * 0.25)
    p_base = churn.score_frame(base, explain=False)["probability"].to_numpy()
    p_recent = churn.score_frame(recent, explain=False)["probability"].to_numpy()
    assert (p_recent <= p_base + 1e-12).all()
    assert (p_recent < p_base).mean() > 0.5


def test_scores_do_not_depend_on_the_customer_id(churn, test_frame):
    renamed = test_frame.assign(customer_id=[f"X{i}" for i in range(len(test_frame))])
    a = churn.score_frame(test_frame)
    b = churn.score_frame(renamed)
    pd.testing.assert_frame_equal(a.drop(columns="customer_id"), b.drop(columns="customer_id"))


def test_next_purchase_expected_value_is_probability_times_spend():
    ts = training_set(4)
    rng = np.random.default_rng(0)
    for frame in (ts.train, ts.test):
        frame["label"] = 1 - frame["label"]  # "buys" = not churned
        frame["spend"] = frame["label"] * rng.gamma(2.0, 40.0, len(frame)) * (1 + frame["frequency_365d"])
    scorer = run_backtest(ts, next_purchase_spec(MODEL_CONFIG), num_boost_round=100).scorer
    scores = scorer.score_matrix(scorer.prepare(ts.test.head(10)), explain=False)
    for s in scores:
        assert set(s) == {"probability", "tier", "expected_spend", "expected_value"}
        assert s["expected_value"] == pytest.approx(s["probability"] * s["expected_spend"])
        assert s["expected_spend"] > 0


def test_calibrator_kinds():
    raw = np.array([-2.0, 0.0, 2.0])
    assert Calibrator()(raw) == pytest.approx(1 / (1 + np.exp(-raw)))
    iso = Calibrator(kind="isotonic", x=np.array([-1.0, 1.0]), y=np.array([0.2, 0.8]))
    assert iso(raw) == pytest.approx([0.2, 0.5, 0.8])


def test_score_matrix_as_of_picks_the_seasonal_shift(churn, test_frame):
    X = churn.prepare(test_frame.head(20))
    test_cutoff = churn.metadata["test_cutoff"]
    assert churn.calibrator.shift_at(test_cutoff) == churn.calibrator.shift
    at_t = [s["probability"] for s in churn.score_matrix(X, explain=False, as_of=test_cutoff)]
    assert at_t == [s["probability"] for s in churn.score_matrix(X, explain=False)]
    seasonal = pickle.loads(pickle.dumps(churn))
    seasonal.calibrator.shift = 0.0
    seasonal.calibrator.seasonal_intercepts = {"2020-01-01": 1.0}
    seasonal.calibrator.seasonal_reference = 0.5
    raw = churn.raw_score(X, as_of="2020-12-31")  # the hazard head reads that date's calendar too
    p = seasonal.score_frame(test_frame.head(20), explain=False, as_of="2020-12-31")["probability"].to_numpy()
    assert np.allclose(
        np.log(p / (1 - p)), np.log(churn.calibrator(raw) / (1 - churn.calibrator(raw))) - churn.calibrator.shift + 0.5
    )


def test_rate_shift_sets_the_mean_probability():
    from models.scorer import rate_shift, shift_log_odds

    p = np.random.default_rng(3).beta(2, 5, size=500)
    for target in (0.05, float(p.mean()), 0.57):
        s = rate_shift(p, target)
        assert shift_log_odds(p, s).mean() == pytest.approx(target, abs=1e-9)
    assert rate_shift(p, float(p.mean())) == pytest.approx(0.0, abs=1e-6)
    assert rate_shift(p, 0.57) > 0 > rate_shift(p, 0.05)


def test_population_anchor_sets_the_population_mean_and_scores_rows_alike(churn, test_frame):
    import copy

    X = churn.prepare(test_frame)
    assert churn.population_shift(X) == 0.0  # no anchor rate: nothing moves
    anchored = copy.deepcopy(churn)
    anchored.calibrator.anchor_rate = 0.6
    shift = anchored.population_shift(X, as_of="2011-09-10")
    p = anchored.probability(X, as_of="2011-09-10", population_shift=shift)
    assert p.mean() == pytest.approx(0.6, abs=1e-9)
    # The ranking is the model's: a shift on the log-odds keeps the order.
    unanchored = churn.probability(X, as_of="2011-09-10")
    assert (np.argsort(p, kind="stable") == np.argsort(unanchored, kind="stable")).all()
    # One row scored with the population's shift gets its score in the batch.
    one = anchored.score_matrix(X[5:6], explain=False, as_of="2011-09-10", population_shift=shift)
    assert one[0]["probability"] == pytest.approx(p[5], abs=1e-12)
    assert anchored.population_shift(X[:0]) == 0.0


def test_calibrator_on_a_linear_map_equals_the_map_then_the_calibrator():
    raw = np.linspace(-3, 3, 41)
    isotonic = Calibrator(kind="isotonic", x=np.array([-2.0, 0.0, 2.0]), y=np.array([0.1, 0.5, 0.8]))
    for calibrator in (Calibrator(kind="sigmoid", a=0.8, b=-0.2), Calibrator(), isotonic):
        composed = calibrator.on_linear(0.7, 0.3)
        np.testing.assert_allclose(composed(raw), calibrator(0.7 * raw + 0.3), rtol=1e-12)
    with pytest.raises(ValueError, match="increasing"):
        Calibrator().on_linear(-1.0, 0.0)


def test_unseen_category_values_are_named_and_scored_as_missing(churn, test_frame):
    rows = test_frame.head(6).copy()
    rows["country"] = rows["country"].astype(object)
    rows.loc[[0, 2], "country"] = "Atlantis"
    rows.loc[3, "country"] = "Narnia"
    blank = rows.copy()
    blank.loc[[0, 2, 3], "country"] = None
    X = churn.prepare(rows)
    unseen = churn.unseen(rows, X)
    assert list(unseen) == ["country"]
    assert unseen["country"].to_dict() == {0: "Atlantis", 2: "Atlantis", 3: "Narnia"}
    assert churn.unseen_counts(rows, X) == {"country": {"Atlantis": 2, "Narnia": 1}}
    assert churn.unseen(blank, churn.prepare(blank)) == {}  # a missing value is not an unseen one
    # The booster reads an unseen value as missing: the same probabilities as with no country.
    assert [s["probability"] for s in churn.score_matrix(X, explain=False)] == pytest.approx(
        [s["probability"] for s in churn.score_matrix(churn.prepare(blank), explain=False)], abs=0
    )

    country = next(d for d in churn.drift(X, rows) if d.feature == "country")
    assert (country.unseen, country.unseen_distinct) == (pytest.approx(0.5), 2)
    assert country.unseen_values == (("Atlantis", 2), ("Narnia", 1))
    assert country.as_dict()["unseen_values"] == {"Atlantis": 2, "Narnia": 1}
    assert next(d for d in churn.drift(X) if d.feature == "country").unseen_values == ()  # the matrix alone
    assert drift_summary(churn.drift(X, rows)).endswith(
        "category values no training row had, scored as missing: country 'Atlantis' (2 rows), 'Narnia' (1 row); "
        "check their spelling at the source, or retrain on data that has them"
    )
    assert churn.known_values("country") == ["France", "Germany", "UK"]

    assert churn.unseen_rows(rows, X) == {
        0: {"country": "Atlantis"},
        2: {"country": "Atlantis"},
        3: {"country": "Narnia"},
    }
    # Reasons name the value, wherever country is one; a blank row's reason stays "missing".
    scored = churn.score_frame(rows, k=len(churn.feature_names), counter_k=len(churn.feature_names))
    blank_scored = churn.score_frame(blank, k=len(churn.feature_names), counter_k=len(churn.feature_names))
    named = 0
    for i in range(len(rows)):
        for kind in ("reasons", "counter_reasons"):
            ours = {r["feature"]: r for r in scored[kind][i]}
            theirs = {r["feature"]: r for r in blank_scored[kind][i]}
            assert ours.keys() == theirs.keys()  # the same SHAP values: the same features each way
            if "country" in ours and i in (0, 2, 3):
                assert ours["country"]["value"] == rows.loc[i, "country"]
                assert ours["country"]["text"].startswith(f"Country {rows.loc[i, 'country']!r}: new to the model")
                assert theirs["country"]["text"].startswith("Country: missing")
                named += 1
            elif "country" in ours:  # rows 1, 4 and 5 are the same in both frames
                assert ours["country"] == theirs["country"]
    assert named >= 3  # every unseen row has country as a reason or a counter-reason (k covers all features)


def test_a_category_only_the_test_fold_had_counts_as_unseen():
    """The encoder knows the categories of the training *and* test frames; a value only the test
    fold had has a code no training row held, which a real LightGBM booster scores as missing."""
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2, 400).astype(float)  # training rows hold "a" and "b" only
    X = np.column_stack([codes, rng.normal(size=400)])
    y = (codes + rng.normal(0, 0.5, 400) > 0.5).astype(float)
    profile = FeatureProfile.from_matrix(X, ["segment", "x"], categorical=[0])
    frame = pd.DataFrame({"segment": ["b", "c", "zz", None], "x": [0.2, 0.2, 0.3, 0.4]})
    encoded = encode_frame(frame, ["segment", "x"], {"segment": ["a", "b", "c"]})
    np.testing.assert_array_equal(encoded[:, 0], [1.0, 2.0, np.nan, np.nan])
    unseen = unseen_values(frame, encoded, ["segment", "x"], {"segment": ["a", "b", "c"]}, profile)
    assert unseen["segment"].to_dict() == {1: "c", 2: "zz"}
    without_profile = unseen_values(frame, encoded, ["segment", "x"], {"segment": ["a", "b", "c"]})
    assert without_profile["segment"].to_dict() == {2: "zz"}

    params = {"objective": "binary", "num_leaves": 4, "min_data_in_leaf": 10, "verbose": -1, "seed": 0}
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=[0]), num_boost_round=10)
    as_missing = encoded.copy()
    as_missing[1, 0] = np.nan
    assert booster.predict(encoded[1:2]) == pytest.approx(booster.predict(as_missing[1:2]), abs=0)
    assert booster.predict(encoded[:1]) != pytest.approx(booster.predict(as_missing[1:2]), abs=1e-6)  # "b" is read
