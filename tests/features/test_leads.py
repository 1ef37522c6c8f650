import pandas as pd
import pytest

from features.leads import lead_features
from tests.features.conftest import make_tables

LEADS = pd.DataFrame(
    {
        "lead_id": ["l1", "l2", "l3", "l4", "l5"],
        "created_at": pd.to_datetime(["2024-02-29", "2024-03-01", "2024-03-31", "2024-03-20", "2024-04-01"]),
        "converted": [0.0, 1.0, 0.0, 1.0, 0.0],
        "converted_at": pd.to_datetime([None, "2024-03-05", None, "2024-04-02", None]),
        "job": ["admin", "admin", "services", "admin", "admin"],
        "age": [30, 40, 50, 60, 70],
    }
)
LEAD_EVENTS = pd.DataFrame(
    {
        "lead_id": ["l3", "l3", "l4", "l4"],
        "timestamp": pd.to_datetime(["2024-03-31", "2024-04-01", "2024-03-21", "2024-03-25"]),
        "event_type": ["call", "call", "call", "email"],
    }
)


@pytest.mark.parametrize("as_of", ["2024-03-31", pd.Timestamp("2024-03-31").date()])
def test_open_leads_of_the_last_step(as_of):
    tables = make_tables(leads=LEADS, lead_events=LEAD_EVENTS)
    got = lead_features(tables, as_of=as_of, horizon_days=30, step_days=30).to_pandas()
    got = got.sort_values("lead_id").reset_index(drop=True)
    # created in (2024-03-01, 2024-03-31]: l3, l4 (l2 is on the boundary and converted anyway;
    # l1 before; l5 after). Outcome columns never appear.
    expected = pd.DataFrame(
        {
            "lead_id": ["l3", "l4"],
            "job": ["services", "admin"],
            "age": [50, 60],
            "days_since_created": [0.0, 11.0],
            "lead_events_total": [1, 2],
            "lead_events_days_since_last": [0.0, 6.0],
            "lead_events_call_30d": [1, 1],
        }
    )
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)
    assert "converted" not in got.columns and "converted_at" not in got.columns


def test_converted_leads_are_not_open():
    tables = make_tables(leads=LEADS)
    got = lead_features(tables, as_of="2024-04-03", horizon_days=30, step_days=30).to_pandas()
    assert sorted(got.lead_id) == ["l3", "l5"]  # l4 converted on 2024-04-02
