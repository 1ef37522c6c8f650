"""The linear head: the same fit as scikit-learn's pipeline, exact SHAP values, and inside a Scorer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from models.linear import LinearHead

CATEGORIES = ["north", "south", "east", "rare_a", "rare_b", "never_trained"]


def _table(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hand-made matrix: two numeric columns (one with gaps, one skewed) and one category code
    column with two rare codes, missing values and one code the training rows never have."""
    rng = np.random.default_rng(seed)
    gappy = rng.normal(3.0, 2.0, n)
    gappy[rng.random(n) < 0.15] = np.nan
    skewed = rng.lognormal(2.0, 1.0, n)
    region = rng.choice([0, 1, 2], size=n, p=[0.5, 0.3, 0.2]).astype(np.float64)
    region[:6] = [3, 3, 4, np.nan, np.nan, np.nan]  # rare codes and missing values
    logit = 0.8 * np.nan_to_num(gappy) - 0.4 * np.log1p(skewed) + np.where(region == 1, 1.0, 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit + 1.0))).astype(np.float64)
    return np.column_stack([gappy, skewed, region]), y


FEATURES = ["gappy", "skewed", "region"]


def _sklearn(X: np.ndarray, y: np.ndarray) -> Pipeline:
    """The reference: scikit-learn's imputer, signed log, scaler and one-hot encoder in a pipeline."""
    frame = _frame(X)
    numeric = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        FunctionTransformer(lambda v: np.sign(v) * np.log1p(np.abs(v))),
        StandardScaler(),
    )
    prepare = ColumnTransformer(
        [
            ("num", numeric, ["gappy", "skewed"]),
            ("cat", OneHotEncoder(handle_unknown="ignore", min_frequency=20, sparse_output=False), ["region"]),
        ]
    )
    return Pipeline(
        [("prepare", prepare), ("model", LogisticRegression(tol=1e-10, max_iter=10_000, random_state=0))]
    ).fit(frame, y)


def _frame(X: np.ndarray) -> pd.DataFrame:
    names = np.array([*CATEGORIES, "missing"], dtype=object)
    codes = np.where(np.isnan(X[:, 2]), len(CATEGORIES), X[:, 2]).astype(int)
    return pd.DataFrame({"gappy": X[:, 0], "skewed": X[:, 1], "region": names[codes]})


@pytest.fixture(scope="module")
def fitted():
    X, y = _table(1500, seed=0)
    head = LinearHead.fit(X, y, FEATURES, [2], n_categories=[len(CATEGORIES)], seed=0)
    return X, y, head


def test_log_odds_match_scikit_learns_pipeline(fitted):
    X, y, head = fitted
    X_new, _ = _table(400, seed=1)
    X_new[0, 2] = 5  # a category the training rows never had: one-hot all zeros, as with handle_unknown
    X_new[1, 2] = 9  # a code beyond the category list: the same
    reference = _sklearn(X, y).decision_function(_frame(np.where(X_new == 9, 5, X_new)))
    # The reference runs L-BFGS to a tight tolerance: two solvers, one optimum.
    np.testing.assert_allclose(head.decision(X_new), reference, atol=1e-6)


def test_contributions_are_exact_and_centred_on_the_training_rows(fitted):
    X, _, head = fitted
    contrib = head.contributions(X)
    assert contrib.shape == (len(X), len(FEATURES) + 1)
    np.testing.assert_allclose(contrib.sum(axis=1), head.decision(X))
    # SHAP with the training rows as background: every feature's mean contribution is 0 there.
    np.testing.assert_allclose(contrib[:, :-1].mean(axis=0), 0.0, atol=1e-10)
    # A feature's contribution depends on that feature alone.
    moved = X.copy()
    moved[:, 1] *= 3
    changed = head.contributions(moved) - contrib
    assert np.abs(changed[:, 1]).max() > 0
    np.testing.assert_allclose(changed[:, [0, 2, 3]], 0.0)


def test_rare_codes_share_one_effect_and_missing_is_a_category(fitted):
    X, _, head = fitted
    rows = np.array([[1.0, 5.0, 3], [1.0, 5.0, 4], [1.0, 5.0, np.nan], [1.0, 5.0, 5]])
    region = head.contributions(rows)[:, 2]
    assert region[0] == region[1]  # both rare: the shared infrequent column
    assert region[2] == region[0]  # three missing rows: rare too
    assert region[3] == pytest.approx(float(head.unseen_effect[0]))


def test_scaled_head_scales_contributions_and_shifts_the_expected_value(fitted):
    X, _, head = fitted
    scaled = head.scaled(0.5, 2.0)
    np.testing.assert_allclose(scaled.decision(X), 0.5 * head.decision(X) + 2.0)
    np.testing.assert_allclose(scaled.contributions(X)[:, :-1], 0.5 * head.contributions(X)[:, :-1])


def test_fit_rejects_mismatched_or_single_class_labels():
    X, y = _table(100, seed=2)
    with pytest.raises(ValueError, match="X has 100 rows but y has 99"):
        LinearHead.fit(X, y[:-1], FEATURES, [2], n_categories=[len(CATEGORIES)], seed=0)
    with pytest.raises(ValueError, match="single class"):
        LinearHead.fit(X, np.ones(100), FEATURES, [2], n_categories=[len(CATEGORIES)], seed=0)
    with pytest.raises(ValueError, match=r"X must have shape \(n, 3\)"):
        LinearHead.fit(X, y, FEATURES, [2], n_categories=[len(CATEGORIES)], seed=0).contributions(X[:, :2])


def test_fit_is_the_optimum_so_float_noise_in_the_input_does_not_move_it():
    """On the bundled bank leads' training set (real data, 19 features, wide one-hot blocks), a
    relative change of 1e-9 in 50 rows, the size of the noise DuckDB's parallel sums leave, moves no
    test log-odds by more than 1e-6. L-BFGS stopped at its default tolerance moved them by 4e-4
    here (and by 0.16 on the churn training set), so two runs on the same data disagreed."""
    from features.config import load_config
    from features.sources import load_tables
    from models.scorer import encode_frame
    from tests.conftest import CONFIGS
    from training.train import backtest_inputs

    config = load_config(CONFIGS / "bank_leads.yaml")
    spec, ts, _ = backtest_inputs(config, "lead", load_tables(config))
    features = spec.select_features(ts.feature_columns)
    categories = {c: list(ts.train[c].cat.categories) for c in features if c in ts.categorical_columns}
    cat_idx = [i for i, c in enumerate(features) if c in categories]
    n_categories = [len(categories[features[i]]) for i in cat_idx]
    X = encode_frame(ts.train, features, categories)
    y = ts.train["label"].to_numpy(dtype=np.float64)
    nudged = X.copy()
    rows = np.random.default_rng(0).choice(len(X), 50, replace=False)
    nudged[rows] *= 1 + 1e-9
    X_test = encode_frame(ts.test, features, categories)
    a = LinearHead.fit(X, y, features, cat_idx, n_categories=n_categories, seed=0).decision(X_test)
    b = LinearHead.fit(nudged, y, features, cat_idx, n_categories=n_categories, seed=0).decision(X_test)
    assert np.abs(a - b).max() < 1e-6
