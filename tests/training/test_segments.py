"""The segment table on hand-made rows: labels, counts, pooling and per-segment metrics."""

from __future__ import annotations

import numpy as np
import pytest

from training import metrics as m
from training.segments import segment_table


def _rows():
    # 12 customers: purchase days 1, 1, 1, 2, 3, 3, 5, 12, 20, NaN (only refunds), 0, 1; countries coded.
    days = np.array([1, 1, 1, 2, 3, 3, 5, 12, 20, np.nan, 0, 1], dtype=float)
    country = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, np.nan])
    X = np.column_stack([days, country])
    y = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 1, 1, 0], dtype=float)
    p = np.array([0.9, 0.6, 0.7, 0.8, 0.3, 0.4, 0.5, 0.2, 0.1, 0.7, 0.6, 0.5])
    baseline = np.array([0.5, 0.4, 0.6, 0.5, 0.5, 0.2, 0.3, 0.3, 0.2, 0.6, 0.5, 0.4])
    return X, y, p, baseline


def test_numeric_bins_are_labelled_counted_and_scored_on_their_own_rows():
    X, y, p, baseline = _rows()
    table = segment_table(
        y, p, X, ["purchase_days", "country"], {"purchase_days": (1, 2, 4, 11)}, baseline=baseline, min_rows=1
    )
    assert table["segment"].tolist() == ["below 1", "1", "2-3", "4-10", "11+", "missing"]
    assert table["rows"].tolist() == [1, 4, 3, 1, 2, 1]
    one = table.set_index("segment").loc["1"]
    mask = np.isin(np.arange(12), [0, 1, 2, 11])
    assert one["base_rate"] == pytest.approx(0.5)
    assert one["mean_probability"] == pytest.approx(p[mask].mean())
    assert one["roc_auc"] == pytest.approx(m.roc_auc(y[mask], p[mask]))
    assert one["roc_auc_se"] == pytest.approx(m.roc_auc_se(y[mask], p[mask]))
    assert one["baseline_roc_auc"] == pytest.approx(m.roc_auc(y[mask], baseline[mask]))
    assert one["ece"] == pytest.approx(m.ece(y[mask], p[mask]))
    # One class in the segment: no ROC AUC, said as NaN rather than a number.
    assert np.isnan(table.set_index("segment").loc["11+", "roc_auc"])


def test_small_categories_are_pooled_as_other_and_unused_features_skipped():
    X, y, p, _ = _rows()
    categories = {"country": ["United Kingdom", "France", "Germany"]}
    table = segment_table(
        y,
        p,
        X,
        ["purchase_days", "country"],
        {"country": "category", "tenure_days": (0, 365)},
        categories=categories,
        min_rows=3,
    )
    assert table["feature"].unique().tolist() == ["country"]
    assert dict(zip(table["segment"], table["rows"], strict=True)) == {"United Kingdom": 8, "other": 3, "missing": 1}
    assert np.isnan(table["baseline_roc_auc"]).all()
    # A numeric feature segmented by value, without a category list: labelled with the value.
    by_value = segment_table(y, p, X, ["purchase_days", "country"], {"country": "category"}, min_rows=2)
    assert dict(zip(by_value["segment"], by_value["rows"], strict=True)) == {"0": 8, "1": 2, "2": 1, "missing": 1}
    # A single small category keeps its name.
    alone = segment_table(
        y, p, X, ["purchase_days", "country"], {"country": "category"}, categories=categories, min_rows=2
    )
    assert dict(zip(alone["segment"], alone["rows"], strict=True)) == {
        "United Kingdom": 8,
        "France": 2,
        "Germany": 1,
        "missing": 1,
    }
