"""How well can churn rank at the test cut-off with these features, given the test window's own labels?

``python -m benchmarks.churn_ceiling`` (about 90 s; not one of the speed suites). A diagnostic, not
a model: it trains on labels of the test cut-off itself, which no real run can know, to bound what
the features carry. Repeated stratified 5-fold cross-validation (3 x 5 folds) on the 4,316 churn
test customers of the bundled data at T = 2011-09-10; in each fold a fifth of the training part
stops the boosting early and the held-out fold is scored. LightGBM with the shipped churn
parameters and monotone constraints throughout. Rows:

- ``T only, <share>``: trained on that share of the fold's own T rows (the learning curve);
- ``stacked cut-offs``: the shipped training rows (the latest 6 cut-offs), early stopping on T rows;
- ``stacked + T rows``: both, the T rows weighted 1 or 5 (a perfect season match with plenty of rows).

If even the last rows stay near 0.78, a higher ROC AUC at T needs information the features lack,
not other training on them.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from features.config import load_config
from features.sources import load_tables
from models.scorer import encode_frame
from training.backtest import fitted_cutoffs
from training.train import backtest_inputs

CONFIG = "configs/online_retail.yaml"


def main() -> None:
    config = load_config(CONFIG)
    spec, ts, _ = backtest_inputs(config, "churn", load_tables(config))
    train = ts.train[pd.to_datetime(ts.train["as_of"]).isin(fitted_cutoffs(ts.train, spec))].reset_index(drop=True)
    features = spec.select_features(ts.feature_columns)
    categorical = [c for c in features if c in ts.categorical_columns]
    categories = {c: list(train[c].cat.categories) for c in categorical}
    cat_idx = [features.index(c) for c in categorical]
    X, y = encode_frame(train, features, categories), train["label"].to_numpy(np.float64)
    Xt, yt = encode_frame(ts.test, features, categories), ts.test["label"].to_numpy(np.float64)
    params = {**spec.lgbm_params, "verbose": -1}
    if any(spec.monotone_constraints(features)):
        params["monotone_constraints"] = spec.monotone_constraints(features)

    def fit_score(Xa, ya, wa, val, held_out):
        data = lgb.Dataset(Xa, ya, weight=wa, feature_name=features, categorical_feature=cat_idx)
        valid = lgb.Dataset(Xt[val], yt[val], reference=data)
        booster = lgb.train(
            params,
            data,
            num_boost_round=spec.num_boost_round,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(spec.early_stopping_rounds, verbose=False)],
        )
        return roc_auc_score(yt[held_out], booster.predict(Xt[held_out]))

    rng = np.random.default_rng(0)
    scores: dict[str, list[float]] = {}
    for repeat in range(3):
        for rest, held_out in StratifiedKFold(5, shuffle=True, random_state=repeat).split(Xt, yt):
            rest = rng.permutation(rest)
            val, fit = rest[: len(rest) // 5], rest[len(rest) // 5 :]
            for share in (0.25, 0.5, 1.0):
                part = fit[: int(len(fit) * share)]
                key = f"T only, {share:.0%} ({len(part):,} rows)"
                scores.setdefault(key.split(" (")[0], []).append(fit_score(Xt[part], yt[part], None, val, held_out))
            scores.setdefault("stacked cut-offs", []).append(fit_score(X, y, None, val, held_out))
            both_X, both_y = np.vstack([X, Xt[fit]]), np.concatenate([y, yt[fit]])
            for weight in (1.0, 5.0):
                w = np.concatenate([np.ones(len(y)), np.full(len(fit), weight)])
                key = f"stacked + T rows x{weight:g}"
                scores.setdefault(key, []).append(fit_score(both_X, both_y, w, val, held_out))
    print(f"churn at {ts.test_cutoff}: {len(yt):,} test customers, {len(y):,} stacked training rows")
    for key, values in scores.items():
        print(f"{key:26s} ROC AUC {np.mean(values):.4f} (sd {np.std(values):.4f}, {len(values)} folds)")


if __name__ == "__main__":
    main()
