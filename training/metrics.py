"""Evaluation metrics of the protocol: ranking, calibration, top-decile lift, and spend errors.

All functions take plain arrays: ``y`` (0/1 labels or amounts) and ``p`` (scores or predictions).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import norm, rankdata
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = [
    "binary_metrics",
    "brier",
    "capture_at_10",
    "ece",
    "lift_at_10",
    "normalized_gini",
    "poisson_deviance",
    "pr_auc",
    "rmse",
    "roc_auc",
    "roc_auc_difference",
    "roc_auc_se",
    "spend_metrics",
    "top_fraction",
    "tweedie_deviance",
]


def _arrays(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"y and p must be 1-d arrays of the same length, got {y.shape} and {p.shape}")
    if len(y) == 0:
        raise ValueError("y and p are empty")
    return y, p


def roc_auc(y: Any, p: Any) -> float:
    """Area under the ROC curve (NaN when only one class is present)."""
    y, p = _arrays(y, p)
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def _delong(y: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUCs of ``scores`` and their covariance matrix (DeLong, DeLong & Clarke-Pearson 1988).

    Placement values by midranks (Sun & Xu 2014): for each positive, the share of negatives
    scored below it (ties count half); for each negative, the share of positives scored above it.
    The AUC is the mean of either, and its variance the variance of the positives' placements
    over m plus the negatives' over n.
    """
    positive = y == 1
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's variance needs two rows of each class, got {m} positive and {n} negative")
    v10, v01 = [], []
    for p in scores:
        pos, neg = p[positive], p[~positive]
        both = rankdata(np.concatenate([pos, neg]))
        v10.append((both[:m] - rankdata(pos)) / n)
        v01.append(1.0 - (both[m:] - rankdata(neg)) / m)
    v10, v01 = np.asarray(v10), np.asarray(v01)
    cov = np.atleast_2d(np.cov(v10, ddof=1)) / m + np.atleast_2d(np.cov(v01, ddof=1)) / n
    return v10.mean(axis=1), cov


def roc_auc_se(y: Any, p: Any) -> float:
    """The standard error of the ROC AUC of ``p`` on these rows (DeLong's method; NaN with fewer
    than two rows of a class)."""
    y, p = _arrays(y, p)
    if min(y.sum(), len(y) - y.sum()) < 2:
        return float("nan")
    return float(np.sqrt(_delong(y, [p])[1][0, 0]))


def roc_auc_difference(y: Any, p: Any, q: Any, *, level: float = 0.95) -> dict[str, float]:
    """ROC AUC of ``p`` minus that of ``q`` on the same rows, with DeLong's paired test.

    Returns ``difference``, its standard error ``se`` (which accounts for both scores ranking the
    same rows), the two-sided ``level`` confidence interval ``low`` .. ``high`` and the
    two-sided ``p_value`` of "no difference".
    """
    y, p = _arrays(y, p)
    _, q = _arrays(y, q)
    aucs, cov = _delong(y, [p, q])
    difference = float(aucs[0] - aucs[1])
    se = float(np.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))
    z = float(norm.ppf(0.5 + level / 2))
    if se > 0:
        p_value = float(2 * norm.sf(abs(difference) / se))
    else:  # the two scores rank every pair alike (or one is a monotone transform of the other)
        p_value = 1.0 if difference == 0 else 0.0
    return {
        "difference": difference,
        "se": se,
        "low": difference - z * se,
        "high": difference + z * se,
        "p_value": p_value,
    }


def pr_auc(y: Any, p: Any) -> float:
    """Area under the precision-recall curve (average precision)."""
    y, p = _arrays(y, p)
    return float(average_precision_score(y, p)) if y.sum() > 0 else float("nan")


def brier(y: Any, p: Any) -> float:
    """Mean squared error of probabilities."""
    y, p = _arrays(y, p)
    return float(np.mean((p - y) ** 2))


def ece(y: Any, p: Any, *, n_bins: int = 10) -> float:
    """Expected calibration error over ``n_bins`` equal-width probability bins.

    The weighted mean over bins of ``|mean(y) - mean(p)|``, weights = share of rows in the bin.
    A probability of exactly 1 falls in the last bin.
    """
    y, p = _arrays(y, p)
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(total / len(y))


def top_fraction(p: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the top ``fraction`` of rows by score (at least one; ties broken by position)."""
    n = max(1, int(round(len(p) * fraction)))
    return np.argsort(-p, kind="stable")[:n]


def lift_at_10(y: Any, p: Any) -> float:
    """Positive rate in the top 10% by score over the overall positive rate."""
    y, p = _arrays(y, p)
    base = y.mean()
    return float(y[top_fraction(p, 0.1)].mean() / base) if base > 0 else float("nan")


def capture_at_10(y: Any, p: Any) -> float:
    """Share of all positives found in the top 10% by score."""
    y, p = _arrays(y, p)
    total = y.sum()
    return float(y[top_fraction(p, 0.1)].sum() / total) if total > 0 else float("nan")


def rmse(y: Any, p: Any) -> float:
    """Root mean squared error."""
    y, p = _arrays(y, p)
    return float(np.sqrt(np.mean((p - y) ** 2)))


def _undefined(y: np.ndarray, p: np.ndarray) -> bool:
    """Whether a deviance is infinite: a prediction of 0 (or less) for a positive amount. A floor
    (1e-9) made it a finite number that read as a baseline 26,000 times worse than the model (a
    rule predicting 0 for a customer who then spent), where RMSE said 12%."""
    return bool(np.any((p <= 0) & (y > 0)))


def tweedie_deviance(y: Any, p: Any, *, power: float = 1.5) -> float:
    """Mean Tweedie deviance (1 < power < 2); negative amounts count as 0; NaN (undefined) when a
    prediction of 0 or less meets a positive amount."""
    y, p = _arrays(y, p)
    if not 1 < power < 2:
        raise ValueError("power must lie in (1, 2)")
    y = np.clip(y, 0.0, None)
    if _undefined(y, p):
        return float("nan")
    p = np.clip(p, 0.0, None)
    # y * p^(1 - power) is 0 where y is, a prediction of 0 there included (p^(1 - power) is inf).
    cross = y * np.power(np.where(y > 0, p, 1.0), 1 - power)
    dev = 2 * (
        np.power(y, 2 - power) / ((1 - power) * (2 - power))
        - cross / (1 - power)
        + np.power(p, 2 - power) / (2 - power)
    )
    return float(np.mean(dev))


def poisson_deviance(y: Any, p: Any) -> float:
    """Mean Poisson deviance; negative amounts count as 0; NaN (undefined) when a prediction of 0 or
    less meets a positive amount."""
    y, p = _arrays(y, p)
    y = np.clip(y, 0.0, None)
    if _undefined(y, p):
        return float("nan")
    p = np.clip(p, 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(y > 0, y * np.log(y / p), 0.0)
    return float(np.mean(2 * (term - (y - p))))


def _gini(y: np.ndarray, p: np.ndarray) -> float:
    # Sort by prediction (descending; ties by position), accumulate the share of the actual total.
    order = np.argsort(-p, kind="stable")
    cum = np.cumsum(y[order]) / y.sum()
    n = len(y)
    return float(cum.sum() / n - (n + 1) / (2 * n))


def normalized_gini(y: Any, p: Any) -> float:
    """Gini of the predictions over the Gini of a perfect ordering (1 = perfect, 0 = random)."""
    y, p = _arrays(y, p)
    if y.sum() == 0:
        return float("nan")
    return _gini(y, p) / _gini(y, y)


def binary_metrics(y: Any, p: Any) -> dict[str, float]:
    """The classification metrics of the protocol for one set of probabilities."""
    return {
        "roc_auc": roc_auc(y, p),
        "pr_auc": pr_auc(y, p),
        "brier": brier(y, p),
        "ece": ece(y, p),
        "lift_at_10": lift_at_10(y, p),
        "capture_at_10": capture_at_10(y, p),
        "base_rate": float(np.mean(y)),
    }


def spend_metrics(spend: Any, predicted: Any) -> dict[str, float]:
    """The spend metrics of the protocol: RMSE, Tweedie and Poisson deviance, normalised Gini."""
    return {
        "rmse": rmse(spend, predicted),
        "tweedie_deviance": tweedie_deviance(spend, predicted),
        "poisson_deviance": poisson_deviance(spend, predicted),
        "gini": normalized_gini(spend, predicted),
    }
