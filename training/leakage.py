"""A guard against post-outcome columns: a feature that alone all but separates the labels.

A column recorded after the outcome (a lead's status, a call's duration, a "closed" flag) makes
a model that scores its own history almost perfectly and anyone new badly, because the column is
not yet filled when it matters. The point-in-time feature code cannot catch it: the column is
an attribute the data hands over as it is. So every training run checks each feature alone on
the calibration fold (the latest training cut-off; the test fold stays untouched): a numeric
feature by its values, a category by its categories' positive rate on the fitting rows. One that
reaches :data:`LEAKAGE_AUC` is named in the run's warnings. On the bundled data the best single
feature reaches 0.75 (churn), 0.79 (next purchase) and 0.70 (leads, ``duration`` included).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

__all__ = ["LEAKAGE_AUC", "leakage_warnings", "univariate_auc"]

LEAKAGE_AUC = 0.95


def univariate_auc(
    x_fit: np.ndarray, y_fit: np.ndarray, x_check: np.ndarray, y_check: np.ndarray, *, categorical: bool
) -> float:
    """How well one feature alone ranks ``y_check``: ROC AUC, either direction (0.5 to 1).

    A numeric feature ranks by its value (a missing value below every other); a category by its
    positive rate among the fitting rows (``x_fit``, ``y_fit``: codes, NaN for missing, which is
    a category of its own; a code they lack takes their overall rate).
    """
    if categorical:
        fit_codes = np.where(np.isnan(x_fit), -1, x_fit).astype(np.int64)
        check_codes = np.where(np.isnan(x_check), -1, x_check).astype(np.int64)
        codes, inverse = np.unique(fit_codes, return_inverse=True)
        rates = np.bincount(inverse, weights=y_fit) / np.bincount(inverse)
        position = np.clip(np.searchsorted(codes, check_codes), 0, len(codes) - 1)
        known = codes[position] == check_codes
        values = np.where(known, rates[position], y_fit.mean())
    else:
        finite = x_check[~np.isnan(x_check)]
        floor = finite.min() - 1.0 if len(finite) else 0.0
        values = np.where(np.isnan(x_check), floor, x_check)
    if len(np.unique(y_check)) < 2:
        return 0.5
    auc = float(roc_auc_score(y_check, values))
    return max(auc, 1.0 - auc)


def leakage_warnings(
    X: np.ndarray,
    y: np.ndarray,
    features: Sequence[str],
    categorical: Sequence[int],
    *,
    fit_mask: np.ndarray,
    check_mask: np.ndarray,
    task: str,
    threshold: float = LEAKAGE_AUC,
) -> list[str]:
    """A sentence for each feature whose :func:`univariate_auc` on the ``check_mask`` rows reaches
    ``threshold``, highest first, saying what to do about it."""
    found = []
    for j, name in enumerate(features):
        auc = univariate_auc(X[fit_mask, j], y[fit_mask], X[check_mask, j], y[check_mask], categorical=j in categorical)
        if auc >= threshold:
            found.append((auc, name))
    table = "tables.leads" if task == "lead" else "its table (tables.customers or tables.transactions)"
    who = "leads" if task == "lead" else "customers"
    return [
        f"possible leakage: '{name}' alone separates the labels of the calibration fold (ROC AUC {auc:.3f}; "
        f"no single feature of the bundled data passes 0.8). A value recorded after the outcome (a lead's status, "
        f"a call's duration) gives a model that scores its history well and new {who} badly: if '{name}' is known "
        f"only afterwards, list it under exclude of {table} and retrain"
        for auc, name in sorted(found, reverse=True)
    ]
