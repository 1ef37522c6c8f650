"""The weekly hazard head: its calendar, the chaining of weeks into P(no purchase in H), exact reasons."""

from __future__ import annotations

import datetime as dt
import pickle

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.hazard import HazardHead, week_calendar, week_weights


def test_week_weights_cover_the_horizon():
    assert week_weights(90).tolist() == [1.0] * 12 + [pytest.approx(6 / 7)]
    assert week_weights(90).sum() == pytest.approx(90 / 7)
    assert week_weights(7).tolist() == [1.0]
    assert week_weights(8).tolist() == [1.0, pytest.approx(1 / 7)]
    with pytest.raises(ValueError, match="horizon_days must be positive"):
        week_weights(0)


@pytest.mark.parametrize(
    "as_of", ["2011-09-10", dt.date(2011, 9, 10), dt.datetime(2011, 9, 10, 15, 30), pd.Timestamp("2011-09-10")]
)
def test_week_calendar_is_the_day_of_year_each_week_starts(as_of):
    assert week_calendar(as_of, 3).tolist() == [253.0, 260.0, 267.0]
    assert week_calendar(as_of, [0, 2]).tolist() == [253.0, 267.0]


def test_week_calendar_crosses_the_new_year():
    assert week_calendar("2011-12-28", 2).tolist() == [362.0, 4.0]


@pytest.fixture(scope="module")
def head():
    """A real booster on synthetic person-weeks (a planted signal): the hazard falls with column 0
    (days since the last purchase), rises with column 1 and in the last weeks of the year; column 2
    is constant, so no tree can split on it."""
    rng = np.random.default_rng(3)
    n = 30_000
    X = np.column_stack([rng.exponential(60, n), rng.poisson(3, n), np.full(n, 5.0)])
    week = rng.integers(0, 13, n).astype(float)
    doy = rng.integers(1, 366, n).astype(float)
    logit = -2.0 - 0.02 * X[:, 0] + 0.3 * X[:, 1] + 1.0 * (doy > 300)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    params = {"objective": "binary", "num_leaves": 7, "learning_rate": 0.1, "verbosity": -1, "seed": 1}
    booster = lgb.train(params, lgb.Dataset(np.column_stack([X, week, doy]), y), num_boost_round=60)
    return HazardHead(
        booster=booster, feature_names=("recency", "orders", "flat"), horizon_days=90, default_as_of="2011-09-10"
    )


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(4)
    return np.column_stack([rng.exponential(60, 200), rng.poisson(3, 200), np.full(200, 5.0)])


def test_survival_chains_the_weekly_hazards(head, rows):
    calendar = week_calendar("2011-09-10", 13)
    by_hand = np.ones(len(rows))
    for k, doy in enumerate(calendar):
        design = np.column_stack([rows, np.full(len(rows), k), np.full(len(rows), doy)])
        h = head.booster.predict(design)
        by_hand *= (1 - h) ** (6 / 7 if k == 12 else 1.0)
    np.testing.assert_allclose(head.survival(rows, "2011-09-10"), by_hand, rtol=1e-10)
    np.testing.assert_allclose(head.raw(rows, "2011-09-10"), np.log(by_hand / (1 - by_hand)), rtol=1e-9)
    # No date: the training run's test cut-off.
    np.testing.assert_array_equal(head.raw(rows), head.raw(rows, "2011-09-10"))


def test_the_calendar_of_the_scoring_date_moves_the_score(head, rows):
    # The planted hazard is higher after day 300: a window reaching into it buys more, churns less.
    assert (head.survival(rows, "2011-10-01") < head.survival(rows, "2011-03-01")).mean() > 0.95


def test_reasons_sum_exactly_to_the_score(head, rows):
    for as_of in ("2011-09-10", "2012-02-01"):
        contrib = head.contributions(rows, as_of)
        assert contrib.shape == (len(rows), 4)
        np.testing.assert_allclose(contrib.sum(axis=1), head.raw(rows, as_of), rtol=1e-9, atol=1e-9)
        # A column no tree splits on explains nothing.
        np.testing.assert_array_equal(contrib[:, 2], 0.0)


def test_reasons_point_the_way_the_features_push(head, rows):
    contrib = head.contributions(rows)
    recency, orders = rows[:, 0], rows[:, 1]
    # Long silence: fewer purchases ahead, so it raises P(no purchase); many orders lower it.
    assert (contrib[recency > 150, 0] > 0).all() and (contrib[recency < 10, 0] < 0).all()
    assert np.corrcoef(orders, contrib[:, 1])[0, 1] < -0.8


def test_the_head_checks_its_input_and_pickles(head, rows):
    with pytest.raises(ValueError, match=r"X must have shape \(n, 3\)"):
        head.raw(rows[:, :2])
    clone = pickle.loads(pickle.dumps(head))
    np.testing.assert_array_equal(clone.contributions(rows), head.contributions(rows))


def test_a_next_purchase_head_scores_the_purchase(head, rows):
    import dataclasses

    buys = dataclasses.replace(head, outcome="purchase")
    np.testing.assert_allclose(buys.raw(rows), -head.raw(rows))
    np.testing.assert_allclose(buys.contributions(rows).sum(axis=1), buys.raw(rows), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(buys.survival(rows), head.survival(rows))  # the same weeks, the other outcome
    with pytest.raises(ValueError, match="outcome must be one of"):
        dataclasses.replace(head, outcome="churn")


def test_reasons_are_computed_in_blocks_alike(head, rows, monkeypatch):
    import models.hazard

    whole = head.contributions(rows)
    monkeypatch.setattr(models.hazard, "CHUNK_ROWS", 7)
    np.testing.assert_array_equal(head.contributions(rows), whole)
