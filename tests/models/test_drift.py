"""Feature drift against the training profile: PSI, out-of-range share, categories, missing values."""

import math

import numpy as np
import pytest

from models.drift import PSI_ALERT, FeatureProfile, drift_summary


def _by_name(drift):
    return {d.feature: d for d in drift}


def test_the_same_rows_have_no_drift():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=2000), rng.integers(0, 3, size=2000).astype(float)])
    drift = FeatureProfile.from_matrix(X, ["x", "code"], categorical=[1]).compare(X)
    assert all(d.psi == pytest.approx(0.0, abs=1e-12) for d in drift)
    assert all(d.level == "stable" and d.out_of_range == 0.0 for d in drift)


def test_psi_of_a_hand_made_shift():
    # Training: 0..9 once each; deciles put one value per bin (edges 0.9, 1.8, ..., 8.1).
    train = np.arange(10, dtype=float)[:, None]
    profile = FeatureProfile.from_matrix(train, ["x"])
    # New rows: half at 0, half at 9. Bins 0 and 9 hold 0.5 each, the other 8 bins are empty.
    new = np.array([0.0] * 5 + [9.0] * 5)[:, None]
    (d,) = profile.compare(new)
    expected = 2 * (0.5 - 0.1) * math.log(0.5 / 0.1) + 8 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert d.psi == pytest.approx(expected)
    assert d.level == "alert"
    assert d.out_of_range == 0.0


def test_values_beyond_the_training_range_are_counted_even_when_psi_cannot_see_them():
    # A feature that held one value in training (a monthly macro index, say): one edge, and a new
    # value below it lands in the same bin, so only the range check catches it.
    train = np.full((100, 1), 5.0)
    new = np.array([4.0] * 30 + [5.0] * 70)[:, None]
    (d,) = FeatureProfile.from_matrix(train, ["rate"]).compare(new)
    assert d.psi == pytest.approx(0.0, abs=1e-12)
    assert d.out_of_range == pytest.approx(0.3)


def test_unseen_categories_and_missing_values_fill_the_missing_bin():
    train = np.array([[0.0], [1.0], [0.0], [1.0]])
    new = np.array([[0.0], [np.nan], [np.nan], [np.nan]])
    (d,) = FeatureProfile.from_matrix(train, ["country"], categorical=[0]).compare(new)
    assert d.missing == pytest.approx(0.75)
    assert d.training_missing == 0.0
    # Training shares (0.5, 0.5, 0) against (0.25, 0, 0.75), the empty ones floored at 1e-4.
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    expected += (0.75 - 1e-4) * math.log(0.75 / 1e-4)
    assert d.psi == pytest.approx(expected)
    assert d.out_of_range == 0.0  # no range for codes


def test_results_come_worst_first_and_the_summary_names_the_alerts():
    rng = np.random.default_rng(1)
    train = np.column_stack([rng.normal(size=1000), rng.normal(size=1000)])
    new = np.column_stack([rng.normal(size=1000), rng.normal(loc=3.0, size=1000)])
    drift = FeatureProfile.from_matrix(train, ["steady", "moved"]).compare(new)
    assert [d.feature for d in drift] == ["moved", "steady"]
    moved = _by_name(drift)["moved"]
    assert moved.psi >= PSI_ALERT and moved.out_of_range > 0.3
    text = drift_summary(drift)
    assert text.startswith("1 of 2 features have shifted") and "moved (PSI" in text and "steady" not in text
    assert drift_summary(drift[1:]) is None


def test_shapes_are_checked():
    profile = FeatureProfile.from_matrix(np.zeros((3, 2)), ["a", "b"])
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        profile.compare(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="empty"):
        profile.compare(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="empty training matrix"):
        FeatureProfile.from_matrix(np.zeros((0, 2)), ["a", "b"])


def test_counts_of_parts_add_up_to_the_drift_of_the_whole():
    # What Spark scoring relies on: each partition counts its rows, the driver compares the sum.
    rng = np.random.default_rng(1)
    train = np.column_stack([rng.normal(size=3000), rng.integers(0, 4, size=3000).astype(float)])
    profile = FeatureProfile.from_matrix(train, ["x", "code"], categorical=[1])
    new = np.column_stack([rng.normal(0.8, 1.5, size=900), rng.integers(1, 6, size=900).astype(float)])
    new[::7, 0] = np.nan
    parts = [new[:100], new[100:101], new[101:]]
    merged = profile.compare_counts(sum(profile.counts(p) for p in parts))
    whole = profile.compare(new)
    assert [d.feature for d in merged] == [d.feature for d in whole]
    for m, w in zip(merged, whole, strict=True):
        assert m.psi == pytest.approx(w.psi, rel=1e-12)
        assert (m.out_of_range, m.missing, m.level) == pytest.approx((w.out_of_range, w.missing, w.level))
    assert _by_name(whole)["x"].out_of_range > 0 and _by_name(whole)["x"].missing == pytest.approx(129 / 900)


def test_counts_must_have_the_profile_layout():
    profile = FeatureProfile.from_matrix(np.arange(20, dtype=float)[:, None], ["x"])
    with pytest.raises(ValueError, match="vector of"):
        profile.compare_counts(np.zeros(3))
    with pytest.raises(ValueError, match="empty"):
        profile.compare_counts(profile.counts(np.empty((0, 1))))


def test_never_missing_names_the_numeric_features_lightgbm_would_read_as_zero():
    """The serving check on posted records rests on LightGBM's rule, asserted here on a real booster:
    a feature never missing in training gets no missing direction, and NaN is scored as 0."""
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    x = rng.uniform(1.0, 10.0, 500)  # never missing, and 0 is below its range
    sometimes = np.where(rng.uniform(size=500) < 0.2, np.nan, rng.normal(size=500))
    code = rng.integers(0, 3, 500).astype(float)
    X = np.column_stack([x, sometimes, code])
    profile = FeatureProfile.from_matrix(X, ["x", "sometimes", "code"], categorical=[2])
    assert profile.never_missing() == ["x"]
    gappy = X.copy()
    gappy[:50, 0] = gappy[:50, 2] = np.nan  # x and an unseen code missing in 10% of the rows
    drift = _by_name(profile.compare(gappy))
    assert drift["x"].read_as_zero == pytest.approx(0.1)
    assert drift["code"].read_as_zero == 0.0 and drift["sometimes"].read_as_zero == 0.0
    assert drift_summary(list(drift.values())).endswith(
        "missing where no training row was: x (10% of rows); the model reads those values as 0, "
        "so fill them at the source or retrain on data that has the gaps"
    )

    y = (x + rng.normal(0, 1, 500) > 5).astype(float)
    params = {"objective": "binary", "num_leaves": 4, "min_data_in_leaf": 10, "verbose": -1, "seed": 0}
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=[2]), num_boost_round=10)
    row = X[:1].copy()
    as_nan, as_zero, as_low = row.copy(), row.copy(), row.copy()
    as_nan[0, 0], as_zero[0, 0], as_low[0, 0] = np.nan, 0.0, 1.0
    assert booster.predict(as_nan) == pytest.approx(booster.predict(as_zero), abs=0)
    assert booster.predict(as_nan) == pytest.approx(booster.predict(as_low), abs=0)  # 0 is read as the lowest bin
