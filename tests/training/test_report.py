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


def test_the_report_says_which_cutoffs_the_test_season_was_interpolated_from():
    from training.report import _prior_text

    prior = {
        "applied": True,
        "shift": -0.318,
        "scale": 0.870,
        "method": "model-adjusted, slope and intercept",
        "calibration_season_cutoff": "2010-06-17",
        "test_season_cutoff": "2010-09-15",
        "calibration_season_rate": 0.652,
        "test_season_rate": 0.547,
        "expected_test_rate": 0.565,
        "test_season_weights": {"2010-09-15": 5 / 6, "2010-08-16": 1 / 6},
    }
    text = _prior_text(prior)
    assert text.startswith("log-odds x 0.870, then -0.318 log-odds (model-adjusted, slope and intercept;")
    assert "the test season read from 2010-08-16 (17%) + 2010-09-15 (83%) (interpolated" in text
    assert "read from" not in _prior_text({**prior, "test_season_weights": None})
    assert _prior_text({"applied": False, "note": "no cut-off"}) == "none (no cut-off)"


def test_the_report_says_why_a_calibrator_is_the_only_one_fitted():
    """The lead report said "sigmoid (chosen by out-of-fold Brier on 2009-12-01)" of a 172-row fold where
    isotonic is never fitted (an auditor's find): it says so now; with both fitted, the choice."""
    from types import SimpleNamespace

    from training.report import _calibration_text

    only = SimpleNamespace(calibration={"kind": "sigmoid", "brier_out_of_fold": {"sigmoid": 0.24}})
    only.params = {"calibration_cutoff": "2009-12-01"}
    assert _calibration_text(only) == "sigmoid (the only one fitted on 2009-12-01: isotonic needs 1,000 rows or more)"
    both = SimpleNamespace(calibration={"kind": "isotonic", "brier_out_of_fold": {"sigmoid": 0.2, "isotonic": 0.19}})
    both.params = {"calibration_cutoff": "2011-06-12"}
    assert _calibration_text(both) == "isotonic (chosen by out-of-fold Brier on 2011-06-12)"
