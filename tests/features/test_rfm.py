import ibis
import pandas as pd
import pytest

from features.rfm import rfm_features
from tests.features.conftest import AS_OF_FORMS, FUTURE_ROWS, ROWS, sorted_frame, tx

EXPECTED = pd.DataFrame(
    {
        "customer_id": ["a", "b"],
        "recency_days": [0.0, 350.5],
        "frequency_30d": [1, 0],
        "frequency_90d": [2, 0],  # o1 is exactly 90 days old: outside (as_of - 90d, as_of]
        "frequency_180d": [3, 0],
        "frequency_365d": [3, 1],
        "frequency_all": [3, 1],
        "monetary_30d": [35.0, 0.0],  # the refund (-5) and o3 (40); o2 is exactly 30 days old
        "monetary_90d": [65.0, 0.0],
        "monetary_180d": [95.0, 0.0],
        "monetary_365d": [95.0, 50.0],
        "monetary_all": [95.0, 50.0],
        "avg_order_value": [95 / 3, 50.0],  # net: the refund counts against the orders
        "refund_count": [1, 0],
        "refund_share": [0.05, 0.0],
    }
)


@pytest.mark.parametrize("as_of", AS_OF_FORMS)
def test_rfm_by_hand(as_of):
    got = sorted_frame(rfm_features(ibis.memtable(tx(ROWS)), as_of=as_of))
    pd.testing.assert_frame_equal(got, EXPECTED, check_dtype=False, rtol=1e-12)


def test_rfm_ignores_rows_after_as_of():
    before = sorted_frame(rfm_features(ibis.memtable(tx(ROWS)), as_of="2024-03-31"))
    after = sorted_frame(rfm_features(ibis.memtable(tx(ROWS + FUTURE_ROWS)), as_of="2024-03-31"))
    pd.testing.assert_frame_equal(before, after)


def test_frequency_counts_purchase_days_without_order_id():
    frame = tx(ROWS).drop(columns=["order_id"])
    got = sorted_frame(rfm_features(ibis.memtable(frame), as_of="2024-03-31"))
    # a bought on three days; the refund day is not a purchase day but is a refund "order".
    assert got["frequency_all"].tolist() == [3, 1]
    assert got["refund_count"].tolist() == [1, 0]
