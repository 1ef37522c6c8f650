import datetime as dt

import ibis
import pandas as pd
import pytest

from features.seasonality import horizon_months, seasonality_features
from tests.features.conftest import AS_OF_FORMS, FUTURE_ROWS, ROWS, sorted_frame, tx

EXPECTED = pd.DataFrame(
    {
        "customer_id": ["a", "b"],
        "ly_orders": [0, 1],  # b's order, 350.5 days back, is inside (as_of - 365d, as_of - 275d]
        "ly_spend": [0.0, 50.0],
        "ly_orders_before": [0, 0],
        "horizon_month_share": [0.0, 1.0],  # the next 90 days cover April to June
        "weekend_share": [1 / 3, 1.0],  # 2024-03-31 was a Sunday, 2023-04-15 a Saturday
        "q4_share": [0.0, 0.0],
    }
)


@pytest.mark.parametrize("as_of", AS_OF_FORMS)
def test_seasonality_by_hand(as_of):
    got = sorted_frame(seasonality_features(ibis.memtable(tx(ROWS)), as_of=as_of, horizon_days=90))
    pd.testing.assert_frame_equal(got, EXPECTED, check_dtype=False, rtol=1e-12)


def test_seasonality_ignores_rows_after_as_of():
    before = sorted_frame(seasonality_features(ibis.memtable(tx(ROWS)), as_of="2024-03-31", horizon_days=400))
    after = sorted_frame(
        seasonality_features(ibis.memtable(tx(ROWS + FUTURE_ROWS)), as_of="2024-03-31", horizon_days=400)
    )
    pd.testing.assert_frame_equal(before, after)


def test_horizon_months():
    assert horizon_months(dt.datetime(2011, 9, 10), 90) == (9, 10, 11, 12)
    assert horizon_months(dt.datetime(2011, 12, 1), 45) == (1, 12)


@pytest.mark.parametrize("horizon", [0, 1, 27, 28, 29, 30, 31, 59, 89, 90, 91, 334, 335, 365, 366, 800])
def test_horizon_months_are_the_months_of_the_days_after_the_date(horizon):
    # Counted from the first and last day, not stepped day by day; the same months as each day's,
    # at every day of a leap year and the next, at midnight and later, as a datetime or a Timestamp.
    start = dt.datetime(2011, 12, 31, 13, 5)
    for offset in range(0, 400, 1 if horizon in (28, 90, 335) else 7):
        as_of = start + dt.timedelta(days=offset)
        days = {(as_of + dt.timedelta(days=d)).month for d in range(1, horizon + 1)}
        assert horizon_months(as_of, horizon) == tuple(sorted(days)), (as_of, horizon)
        assert horizon_months(pd.Timestamp(as_of), horizon) == tuple(sorted(days))
