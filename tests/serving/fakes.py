"""A stand-in for ``models.scorer.Scorer`` with the same interface, for tests that need no training."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


class FakeScorer:
    """probability = sigmoid(sum of features - 1); reasons are the k largest features."""

    def __init__(self, task: str = "churn", feature_names: tuple[str, ...] = ("recency", "frequency")) -> None:
        self.task = task
        self.entity = "lead_id" if task == "lead" else "customer_id"
        self.feature_names = list(feature_names)
        self.model_name = f"crmscore-{task}"
        self.version = "1"

    def prepare(self, features: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.feature_names if c not in features.columns]
        if missing:
            raise ValueError(f"feature column '{missing[0]}' is missing")
        return features[self.feature_names].to_numpy(dtype=float)

    def score_matrix(self, X: np.ndarray, *, k: int = 3, explain: bool = True, rows: Any = None) -> list[dict]:
        p = 1.0 / (1.0 + np.exp(-(X.sum(axis=1) - 1.0)))
        out = []
        for x, prob in zip(X, p, strict=True):
            item: dict[str, Any] = {"probability": float(prob)}
            if self.task == "lead":
                item["grade"] = "A" if prob >= 0.5 else "D"
            else:
                item["tier"] = "high" if prob >= 0.7 else "medium" if prob >= 0.4 else "low"
            if self.task == "churn":
                item["expected_spend"] = float(x[-1] * 100)
                item["value_at_risk"] = float(prob * x[-1] * 100)
            if self.task == "next_purchase":
                item["expected_spend"] = float(x[-1] * 10)
                item["expected_value"] = float(prob * x[-1] * 10)
            if explain and k:
                order = np.argsort(-x)[:k]
                item["reasons"] = [
                    {
                        "text": f"{self.feature_names[j]} is {x[j]:g}",
                        "feature": self.feature_names[j],
                        "value": float(x[j]),
                        "impact": float(x[j]),
                    }
                    for j in order
                ]
            out.append(item)
        return out
