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
