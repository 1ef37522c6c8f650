"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training import metrics as m

Y = np.array([1, 0, 1, 0, 0, 1, 0, 0, 0, 0])
P = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.6, 0.1, 0.05, 0.4, 0.15])


def test_roc_auc_counts_ordered_pairs():
    # Positives 0.9, 0.7, 0.6; negatives 0.8 0.3 0.2 0.1 0.05 0.4 0.15: 3*7 = 21 pairs, 19 ordered.
    assert m.roc_auc(Y, P) == pytest.approx(19 / 21)


def test_pr_auc_is_average_precision():
    # Sorted scores 0.9 0.8 0.7 0.6: positives at ranks 1, 3, 4 -> precisions 1, 2/3, 3/4.
    assert m.pr_auc(Y, P) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)


def test_brier():
    assert m.brier([1, 0], [0.8, 0.4]) == pytest.approx((0.04 + 0.16) / 2)


def test_ece_equal_width_bins():
    # Bin [0.1, 0.2): p 0.1, 0.15 -> mean 0.125, y 0; bin [0.9, 1]: p 0.9, 1.0 -> 0.95, y 0.5.
    y = [0, 0, 1, 0]
    p = [0.1, 0.15, 0.9, 1.0]
    assert m.ece(y, p) == pytest.approx((2 * 0.125 + 2 * abs(0.5 - 0.95)) / 4)


def test_lift_and_capture_at_10():
    y = np.array([1] + [0] * 9 + [1] * 2 + [0] * 8)  # 20 rows, 3 positives
    p = np.linspace(1, 0, 20)  # top 10% = first two rows: one positive
    assert m.lift_at_10(y, p) == pytest.approx((1 / 2) / (3 / 20))
    assert m.capture_at_10(y, p) == pytest.approx(1 / 3)


def test_rmse_and_deviances():
    assert m.rmse([1, 3], [2, 1]) == pytest.approx(math.sqrt((1 + 4) / 2))
    # Poisson deviance of y=2, mu=1: 2 * (2 ln 2 - 1); of y=0, mu=1: 2.
    assert m.poisson_deviance([2, 0], [1, 1]) == pytest.approx((2 * (2 * math.log(2) - 1) + 2) / 2)
    # Tweedie p=1.5 at y=mu is 0; at y=0, mu=1: 2 * mu^0.5 / 0.5 = 4.
    assert m.tweedie_deviance([3.0, 0.0], [3.0, 1.0]) == pytest.approx(2.0)
    # A prediction of 0 for an amount spent has infinite deviance: undefined, not a huge finite number.
    assert math.isnan(m.tweedie_deviance([3.0, 0.0], [0.0, 1.0])) and math.isnan(m.poisson_deviance([3.0], [0.0]))
    assert m.tweedie_deviance([0.0, 3.0], [0.0, 3.0]) == 0.0 and m.poisson_deviance([0.0], [0.0]) == 0.0


def test_normalized_gini_perfect_random_and_reversed():
    y = np.array([0.0, 10.0, 0.0, 5.0])
    assert m.normalized_gini(y, y) == pytest.approx(1.0)
    assert m.normalized_gini(y, -y) == pytest.approx(-1.0)
    # Hand value: order by p = [3, 0, 2, 1] -> y = [5, 0, 0, 10]; cumulative shares 1/3, 1/3, 1/3, 1.
    gini = (1 / 3 + 1 / 3 + 1 / 3 + 1) / 4 - 5 / 8
    perfect = (2 / 3 + 1 + 1 + 1) / 4 - 5 / 8
    assert m.normalized_gini(y, np.array([0.5, 0.1, 0.3, 0.9])) == pytest.approx(gini / perfect)


def test_shape_errors_name_the_problem():
    with pytest.raises(ValueError, match="same length"):
        m.brier([1, 0], [0.5])


def test_delong_variance_by_hand():
    # Positives 0.35 and 0.8 sit above half and all of the negatives (placements 0.5, 1); negatives
    # 0.1 and 0.4 sit below all and half of the positives (1, 0.5). Var = 0.125 / 2 + 0.125 / 2.
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    assert m.roc_auc(y, p) == 0.75
    assert m.roc_auc_se(y, p) == pytest.approx(math.sqrt(0.125))
    assert math.isnan(m.roc_auc_se(np.ones(4), p))
    with pytest.raises(ValueError, match="two rows of each class"):
        m.roc_auc_difference(np.array([0, 1, 1]), np.array([0.1, 0.5, 0.9]), np.array([0.2, 0.1, 0.3]))


def test_delong_paired_difference_matches_the_bootstrap():
    # Synthetic scores (a planted signal): b is a noisier copy of a, so they are strongly correlated
    # and the paired standard error is far below the unpaired one.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000)
    a = 0.8 * y + rng.normal(size=4000)
    b = a + 0.5 * rng.normal(size=4000)
    got = m.roc_auc_difference(y, a, b)
    assert got["difference"] == pytest.approx(m.roc_auc(y, a) - m.roc_auc(y, b))
    draws = [rng.integers(0, 4000, 4000) for _ in range(400)]
    boot = np.std([m.roc_auc(y[i], a[i]) - m.roc_auc(y[i], b[i]) for i in draws])
    assert got["se"] == pytest.approx(boot, rel=0.15)
    assert got["se"] < 0.6 * math.hypot(m.roc_auc_se(y, a), m.roc_auc_se(y, b))
    assert got["low"] < got["difference"] < got["high"] and got["p_value"] < 1e-4
    same = m.roc_auc_difference(y, a, 2 * a + 1)  # a monotone transform ranks every pair alike
    assert same["difference"] == 0 and same["se"] == 0 and same["p_value"] == 1.0
