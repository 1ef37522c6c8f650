"""A small synthetic training set with a planted signal, for model and training tests.

Churn-like: ``label = 1`` is more likely with a long recency and few orders; ``country`` is a
categorical with a small effect; ``noise`` carries nothing. Cut-offs are 30 days apart with
H = 30, so every training cut-off but the latest can be used for early stopping.

The hazard rows (``TrainingSet.hazard``, for the churn spec's weekly hazard head) are drawn
alike at cut-offs 14 days apart: the days to the next purchase are exponential, sooner with a
short recency and many orders, and unknown (NaN) past the test cut-off plus H, the data's end.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from features.config import ModelConfig
from features.pipeline import TrainingSet

COUNTRIES = ["France", "Germany", "UK"]
MODEL_CONFIG = ModelConfig(horizon_days=30, lookback_days=365, step_days=30, n_train_cutoffs=4, seed=7)


def frame(n: int, as_of: dt.date, rng: np.random.Generator, *, shift: float = 0.0) -> pd.DataFrame:
    recency = rng.exponential(60, n)
    freq = rng.poisson(3, n).astype(float)
    monetary = freq * rng.gamma(2.0, 50.0, n)
    country = rng.choice(COUNTRIES, n)
    logit = -0.5 + 0.025 * recency - 0.35 * freq + 0.3 * (country == "UK") + shift
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    out = pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "as_of": pd.Timestamp(as_of),
            "recency_days": recency,
            "frequency_365d": freq,
            "monetary_365d": monetary,
            "gap_mean": rng.gamma(2.0, 15.0, n),
            "noise": rng.normal(size=n),
            "country": pd.Categorical(country, categories=COUNTRIES),
            "label": label,
        }
    )
    out.loc[rng.random(n) < 0.05, "gap_mean"] = np.nan
    return out


def hazard_frame(n: int, as_of: dt.date, rng: np.random.Generator, *, data_end: dt.date) -> pd.DataFrame:
    """Rows of the weekly hazard head at ``as_of``: the features of :func:`frame` and ``days_to_next``."""
    out = frame(n, as_of, rng).drop(columns="label")
    rate = np.exp(-3.0 - 0.02 * out["recency_days"] + 0.3 * out["frequency_365d"])  # purchases per day
    wait = rng.exponential(1.0 / rate)
    out["days_to_next"] = np.where(wait <= (data_end - as_of).days, wait, np.nan)
    return out


def training_set(seed: int = 0, *, n: int = 800, shuffle_train_labels: bool = False) -> TrainingSet:
    rng = np.random.default_rng(seed)
    test_cutoff = dt.date(2011, 6, 1)
    cutoffs = tuple(test_cutoff - dt.timedelta(days=30 * (k + 1)) for k in range(4))
    train = pd.concat([frame(n, c, rng) for c in cutoffs], ignore_index=True)
    if shuffle_train_labels:
        train["label"] = rng.permutation(train["label"].to_numpy())
    # Its own generator: the test rows are the same whatever happens to the training rows.
    test = frame(n, test_cutoff, np.random.default_rng(seed + 1000))
    features = ("recency_days", "frequency_365d", "monetary_365d", "gap_mean", "noise", "country")
    end = test_cutoff + dt.timedelta(days=MODEL_CONFIG.horizon_days)
    hazard_rng = np.random.default_rng(seed + 2000)
    hazard = pd.concat(
        [
            hazard_frame(n // 2, test_cutoff - dt.timedelta(days=7 + 14 * k), hazard_rng, data_end=end)
            for k in range(12)
        ],
        ignore_index=True,
    )
    return TrainingSet(
        train=train,
        test=test,
        cutoffs=cutoffs,
        test_cutoff=test_cutoff,
        feature_columns=features,
        categorical_columns=("country",),
        entity="customer_id",
        task="churn",
        hazard=hazard,
    )
