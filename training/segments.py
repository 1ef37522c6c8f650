"""Test metrics by segment: where the model ranks and calibrates well, and where it does not.

One test fold's ROC AUC is an average over very different customers: on the bundled retail data
the churn model ranks customers with more than ten purchase days far better than those with two
or three. The segment table puts that in every run (report, MLflow, metrics JSON), each segment
with the standard error of its ROC AUC, so that a small segment's figure is read as the noise it
may be, and with the best baseline's ROC AUC on the same rows.

Segments come from :attr:`models.spec.ModelSpec.segments`: per feature, the lower bounds of
numeric bins (``(1, 2, 4, 11)`` gives 1, 2-3, 4-10, 11+) or ``"category"`` (each value with at
least ``min_rows`` test rows, the rest pooled as "other" when there are several). A feature the model does not use is
skipped; missing values form their own segment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from training import metrics as m

__all__ = ["MIN_ROWS", "segment_table"]

# A category with fewer test rows is pooled into "other": below this its ROC AUC is mostly noise.
MIN_ROWS = 50

COLUMNS = [
    "feature",
    "segment",
    "rows",
    "base_rate",
    "mean_probability",
    "roc_auc",
    "roc_auc_se",
    "baseline_roc_auc",
    "ece",
]


def _bin_labels(edges: Sequence[float]) -> list[str]:
    """``(1, 2, 4, 11)`` -> ``["1", "2-3", "4-10", "11+"]`` (bins of whole numbers)."""
    labels = []
    for lo, hi in zip(edges, [*edges[1:], None], strict=True):
        if hi is None:
            labels.append(f"{lo:g}+")
        elif hi - lo == 1:
            labels.append(f"{lo:g}")
        else:
            labels.append(f"{lo:g}-{hi - 1:g}")
    return labels


def _groups(
    values: np.ndarray, rule: Any, categories: Sequence[Any] | None, min_rows: int
) -> list[tuple[str, np.ndarray]]:
    """``(label, row mask)`` per segment of one feature's test values."""
    missing = np.isnan(values)
    out: list[tuple[str, np.ndarray]] = []
    if rule == "category":
        # Category codes decoded; a numeric feature segmented by value is labelled with the value.
        labels = np.array(
            [
                None if miss else categories[int(v)] if categories is not None else f"{v:g}"
                for v, miss in zip(values, missing, strict=True)
            ],
            dtype=object,
        )
        present = pd.Series(labels[~missing]).value_counts()
        small = [label for label, count in present.items() if count < min_rows]
        out.extend((str(label), labels == label) for label, count in present.items() if count >= min_rows)
        if small:  # pooled, unless there is only one to pool
            out.append((str(small[0]) if len(small) == 1 else "other", np.isin(labels, small)))
    else:
        edges = [float(e) for e in rule]
        for label, lo, hi in zip(_bin_labels(edges), edges, [*edges[1:], np.inf], strict=True):
            out.append((label, ~missing & (values >= lo) & (values < hi)))
        below = ~missing & (values < edges[0])
        if below.any():
            out.insert(0, (f"below {edges[0]:g}", below))
    if missing.any():
        out.append(("missing", missing))
    return [(label, mask) for label, mask in out if mask.any()]


def segment_table(
    y: np.ndarray,
    probability: np.ndarray,
    X: np.ndarray,
    feature_names: Sequence[str],
    segments: Mapping[str, Any],
    *,
    categories: Mapping[str, Sequence[Any]] | None = None,
    baseline: np.ndarray | None = None,
    min_rows: int = MIN_ROWS,
) -> pd.DataFrame:
    """One row per segment of the test fold: rows, base rate, mean probability, ROC AUC with its
    standard error, the best baseline's ROC AUC on the same rows and the ECE.

    ``y``, ``probability``, ``baseline`` and the rows of ``X`` (in ``feature_names`` order, category
    codes as the scorer encodes them, decoded with ``categories``) are the test fold's. ROC AUC and
    its standard error are NaN in a segment with one class (or fewer than two rows of one).
    """
    y = np.asarray(y, dtype=np.float64)
    probability = np.asarray(probability, dtype=np.float64)
    rows = []
    for feature, rule in segments.items():
        if feature not in feature_names:
            continue
        values = np.asarray(X[:, list(feature_names).index(feature)], dtype=np.float64)
        cats = (categories or {}).get(feature)
        for label, mask in _groups(values, rule, cats, min_rows):
            ys, ps = y[mask], probability[mask]
            rows.append(
                {
                    "feature": feature,
                    "segment": label,
                    "rows": int(mask.sum()),
                    "base_rate": float(ys.mean()),
                    "mean_probability": float(ps.mean()),
                    "roc_auc": m.roc_auc(ys, ps),
                    "roc_auc_se": m.roc_auc_se(ys, ps),
                    "baseline_roc_auc": m.roc_auc(ys, baseline[mask]) if baseline is not None else float("nan"),
                    "ece": m.ece(ys, ps),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)
