import math

import ibis
import pandas as pd
import pytest

from features.cycle import cycle_features
from tests.features.conftest import AS_OF_FORMS, FUTURE_ROWS, ROWS, sorted_frame, tx

NAN = float("nan")
# a: purchase days 2024-01-01, 03-01, 03-31 (gaps 60 and 30); b: one purchase day 351 days back.
EXPECTED = pd.DataFrame(
    {
        "customer_id": ["a", "b"],
        "purchase_days": [3, 1],
        "gap_mean": [45.0, NAN],
        "gap_median": [45.0, NAN],
        "gap_std": [math.sqrt(450.0), NAN],
        "gap_max": [60.0, NAN],
        "gap_last": [30.0, NAN],
        "gap_first": [60.0, NAN],
        "days_since_2nd_last": [30.0, NAN],
        "days_since_3rd_last": [90.0, NAN],
        "purchase_days_90d": [2, 0],  # 2024-01-01 is exactly 90 days back: outside
        "purchase_days_365d": [3, 1],
        "decayed_purchase_days_30d": [1 + math.exp(-1) + math.exp(-3), math.exp(-351 / 30)],
        "active_months_180d": [2, 0],
        "days_since_last": [0.0, 351.0],
        "tenure_days": [90.0, 351.0],
        "recency_over_gap": [0.0, NAN],
        "recency_over_max_gap": [0.0, NAN],
        "purchase_rate_30d": [3 * 30 / 91, 30 / 352],
        "active_months_365d": [2, 1],
        "active_months_all": [2, 1],
        "spend_per_30d": [95 * 30 / 91, 50 * 30 / 352],
        "order_trend": [1, 0],  # last 90 days: o2, o3; the 90 before: o1
        "spend_trend": [35.0, 0.0],
        "order_trend_ratio": [1.5, 1.0],
    }
)


@pytest.mark.parametrize("as_of", AS_OF_FORMS)
def test_cycle_by_hand(as_of):
    got = sorted_frame(cycle_features(ibis.memtable(tx(ROWS)), as_of=as_of))
    pd.testing.assert_frame_equal(got[EXPECTED.columns], EXPECTED, check_dtype=False, rtol=1e-12)


def test_cycle_ignores_rows_after_as_of():
    before = sorted_frame(cycle_features(ibis.memtable(tx(ROWS)), as_of="2024-03-31"))
    after = sorted_frame(cycle_features(ibis.memtable(tx(ROWS + FUTURE_ROWS)), as_of="2024-03-31"))
    pd.testing.assert_frame_equal(before, after)


def test_overdue_customer():
    rows = [("z", f"2024-0{m}-01", 10, f"o{m}", "p", 1, "x") for m in (1, 2, 3)]
    got = sorted_frame(cycle_features(ibis.memtable(tx(rows)), as_of="2024-06-01"))
    # gaps 31 and 29 days (2024 is a leap year); last purchase 92 days before the cut-off
    assert got.loc[0, "gap_mean"] == 30.0
    assert got.loc[0, "recency_over_gap"] == pytest.approx(92 / 30)
    assert got.loc[0, "recency_over_max_gap"] == pytest.approx(92 / 31)
