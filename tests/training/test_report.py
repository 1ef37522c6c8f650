"""The HTML report's figures that are computed, not drawn: SHAP strength by reason group."""

from __future__ import annotations

import numpy as np
import pytest

from models.reasons import ReasonWriter
from training.report import group_strength


def test_a_groups_strength_sums_its_members_per_row_before_taking_the_absolute_value():
    features = ["days_since_last", "purchase_days_90d", "country", "month"]
    contrib = np.array([[0.5, -0.5, 0.2, 1.0], [0.3, 0.1, -0.4, -1.0]])
    groups = {"recency": ["days_since_last", "purchase_days_90d"]}
    strength = group_strength(contrib, ReasonWriter(features, {}, "raises", groups=groups, context=["month"]))
    # Row 1's halves cancel (0.5 - 0.5 = 0), as its reason would: (|0| + |0.4|) / 2, not the members' 0.7.
    assert strength == pytest.approx({"recency (2 features)": 0.2, "country": 0.3, "month (context)": 1.0})
    # Without groups every feature stands alone, as in the per-feature SHAP summary.
    assert group_strength(contrib, ReasonWriter(features, {}, "raises")) == pytest.approx(
        {"days_since_last": 0.4, "purchase_days_90d": 0.3, "country": 0.3, "month": 1.0}
    )
