import datetime as dt

import pandas as pd
import pytest

from features.config import ModelConfig
from features.labels import (
    check_window_observed,
    data_span,
    data_until,
    days_to_next_purchase,
    final_flag_warning,
    observed_until,
)
from features.pipeline import build_training_set, labels
from tests.features.conftest import AS_OF_FORMS, make_tables, sorted_frame, tx

# Cut-off 2024-03-31 00:00, horizon 10 days: the label window is (2024-03-31 00:00, 2024-04-10 00:00].
ROWS = [
    ("at_as_of", "2024-03-31 00:00", 10, "o1", "p", 1, "x"),  # a feature, not a label
    ("at_end", "2024-03-01 00:00", 10, "o2", "p", 1, "x"),
    ("at_end", "2024-04-10 00:00", 25, "o3", "p", 1, "x"),  # exactly as_of + H: in the window
    ("after_end", "2024-03-01 00:00", 10, "o4", "p", 1, "x"),
    ("after_end", "2024-04-10 00:00:01", 10, "o5", "p", 1, "x"),  # just past the window
    ("refund_only", "2024-03-01 00:00", 10, "o6", "p", 1, "x"),
    ("refund_only", "2024-04-05 00:00", -4, "o7", "p", -1, "x"),  # a refund is not a purchase
    ("buys_and_returns", "2024-03-01 00:00", 10, "o8", "p", 1, "x"),
    ("buys_and_returns", "2024-04-02 00:00", 30, "o9", "p", 1, "x"),
    ("buys_and_returns", "2024-04-03 00:00", -40, "o10", "p", -1, "x"),
    ("newcomer", "2024-04-02 00:00", 30, "o11", "p", 1, "x"),  # no history at as_of: no row
]
CUSTOMERS = ["after_end", "at_as_of", "at_end", "buys_and_returns", "refund_only"]


@pytest.mark.parametrize("as_of", AS_OF_FORMS)
def test_churn_labels_at_the_boundaries(as_of):
    got = sorted_frame(labels(make_tables(tx(ROWS)), "churn", as_of=as_of, horizon_days=10))
    expected = pd.DataFrame({"customer_id": CUSTOMERS, "label": [1, 1, 0, 0, 1]})
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


@pytest.mark.parametrize("as_of", AS_OF_FORMS)
def test_next_purchase_labels_and_net_spend(as_of):
    got = sorted_frame(labels(make_tables(tx(ROWS)), "next_purchase", as_of=as_of, horizon_days=10))
    expected = pd.DataFrame(
        {"customer_id": CUSTOMERS, "label": [0, 0, 1, 1, 0], "spend": [0.0, 0.0, 25.0, -10.0, -4.0]}
    )
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_cancellation_event_is_churn():
    events = pd.DataFrame(
        {
            "customer_id": ["at_end", "buys_and_returns"],
            "timestamp": pd.to_datetime(["2024-04-10 00:00", "2024-03-30 00:00"]),
            "event_type": ["cancellation", "cancellation"],  # the second is before the window
        }
    )
    got = sorted_frame(labels(make_tables(tx(ROWS), events=events), "churn", as_of="2024-03-31", horizon_days=10))
    assert dict(zip(got.customer_id, got.label, strict=True)) == {
        "after_end": 1,
        "at_as_of": 1,
        "at_end": 1,
        "buys_and_returns": 0,
        "refund_only": 1,
    }


def _leads(with_converted_at: bool) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "lead_id": ["l1", "l2", "l3", "l4", "l5"],
            "created_at": pd.to_datetime(["2024-03-01"] * 4 + ["2024-04-01"]),
            "converted": [1.0, 1.0, 0.0, 1.0, 1.0],
        }
    )
    if with_converted_at:
        # l1 exactly at created_at + 30 days, l2 one second later, l4 converted without a date
        frame["converted_at"] = pd.to_datetime(
            ["2024-03-31", "2024-03-31 00:00:01", None, None, "2024-04-02"], format="ISO8601"
        )
    return frame


@pytest.mark.parametrize(("with_converted_at", "expected"), [(False, [1, 1, 0, 1]), (True, [1, 0, 0, 1])])
def test_lead_labels(with_converted_at, expected):
    tables = make_tables(leads=_leads(with_converted_at))
    got = sorted_frame(labels(tables, "lead", as_of=dt.date(2024, 3, 15), horizon_days=30), key="lead_id")
    pd.testing.assert_frame_equal(
        got, pd.DataFrame({"lead_id": ["l1", "l2", "l3", "l4"], "label": expected}), check_dtype=False
    )


def test_unknown_task_and_bad_horizon():
    tables = make_tables(tx(ROWS))
    with pytest.raises(ValueError, match="task must be one of"):
        labels(tables, "upsell", as_of="2024-03-31", horizon_days=10)
    with pytest.raises(ValueError, match="horizon_days"):
        labels(tables, "churn", as_of="2024-03-31", horizon_days=0)


def test_a_label_window_must_end_within_the_data():
    # The last transaction of ROWS is 2024-04-10 00:00:01: the window (2024-03-31, 2024-04-10] is observed,
    # the window of the next day is not.
    tables = make_tables(tx(ROWS))
    assert observed_until(tables, "churn") == ("transactions", dt.datetime(2024, 4, 10, 0, 0, 1))
    check_window_observed(tables, "churn", as_of="2024-03-31", horizon_days=10)
    with pytest.raises(
        ValueError, match=r"task 'next_purchase'.*2024-04-11 00:00.*table 'transactions'.*on or before 2024-03-31"
    ):
        check_window_observed(tables, "next_purchase", as_of="2024-04-01", horizon_days=10)
    # A horizon longer than the data (ROWS span 2024-03-01 to 2024-04-10): no date to suggest.
    with pytest.raises(
        ValueError, match=r"No cut-off can: the data spans 2024-03-01 to 2024-04-10, less than the horizon"
    ):
        check_window_observed(tables, "churn", as_of="2024-03-01", horizon_days=400)
    # The orders bound the purchase labels. An events export that ran later extended the orders' end, so
    # days after the last order counted as no purchase (a data engineer's exports, 60 days apart); events
    # that end earlier (touchpoints are sparse) do not cut the window short.
    events = pd.DataFrame(
        {"customer_id": ["at_end"], "timestamp": pd.to_datetime(["2024-04-20"]), "event_type": ["email_open"]}
    )
    later = make_tables(tx(ROWS), events=events)
    assert observed_until(later, "churn") == ("transactions", dt.datetime(2024, 4, 10, 0, 0, 1))
    with pytest.raises(ValueError, match=r"after the last row of table 'transactions' \(2024-04-10 00:00\)"):
        check_window_observed(later, "churn", as_of="2024-04-05", horizon_days=10)
    earlier = make_tables(tx(ROWS), events=events.assign(timestamp=pd.to_datetime(["2024-04-01"])))
    assert observed_until(earlier, "churn") == ("transactions", dt.datetime(2024, 4, 10, 0, 0, 1))
    check_window_observed(earlier, "churn", as_of="2024-03-31", horizon_days=10)
    # Nor do they hide a stale orders export, move where the orders' history starts or ends, or stamp a
    # snapshot's data_until (until 2026-12-07 the latest of both tables did).
    from training.score import date_warnings

    assert data_span(later, "churn") == ("transactions", dt.datetime(2024, 3, 1), dt.datetime(2024, 4, 10, 0, 0, 1))
    assert data_until(later, "churn") == observed_until(later, "churn")
    assert date_warnings(later, "churn", "2024-05-20")["stale_warning"].startswith(
        "the scoring date 2024-05-20 00:00 is 39 days after the last row of table 'transactions' (2024-04-10 00:00)"
    )


def test_a_test_cutoff_past_the_data_is_refused():
    config = ModelConfig(horizon_days=10, step_days=5, n_train_cutoffs=2)
    tables = make_tables(tx(ROWS))
    assert len(build_training_set(tables, "churn", model_config=config, test_cutoff="2024-03-31").test) == 5
    with pytest.raises(ValueError, match="no purchase"):
        build_training_set(tables, "churn", model_config=config, test_cutoff="2024-04-01")


def test_lead_windows_are_bounded_only_by_dated_conversions():
    # With only the 0/1 flag the outcome is final as exported; with dates, the latest date bounds it.
    undated = make_tables(leads=_leads(False))
    assert observed_until(undated, "lead") == ("leads", None)
    assert data_until(undated, "lead") == ("leads", dt.datetime(2024, 4, 1))  # the export still ends somewhere
    check_window_observed(undated, "lead", as_of="2024-04-01", horizon_days=30)  # the last lead's day
    # After it the population is cut short: a data scientist's --as-of two weeks past the bundled leads was
    # trained, registered and promoted without a word (2026-12-07).
    with pytest.raises(ValueError, match=r"cut-off 2024-06-01 00:00 is after the last row of table 'leads' "):
        check_window_observed(undated, "lead", as_of="2024-06-01", horizon_days=30)
    assert "whatever horizon_days (30)" in final_flag_warning(undated, "lead", 30)
    assert final_flag_warning(make_tables(leads=_leads(True)), "lead", 30) is None
    dated = make_tables(leads=_leads(True))
    assert observed_until(dated, "lead") == ("leads", dt.datetime(2024, 4, 2))
    with pytest.raises(ValueError, match="no conversion"):
        check_window_observed(dated, "lead", as_of="2024-03-15", horizon_days=30)


def test_data_span_and_the_empty_population_error_name_the_table_and_its_dates():
    from features.pipeline import EmptyPopulationError, check_population, population_features

    tables = make_tables(tx(ROWS))
    assert data_span(tables, "churn") == ("transactions", dt.datetime(2024, 3, 1), dt.datetime(2024, 4, 10, 0, 0, 1))
    config = ModelConfig(lookback_days=30)
    before = population_features(tables, "churn", as_of="2024-02-29", model_config=config)
    after = population_features(tables, "churn", as_of="2024-06-01", model_config=config)
    assert len(before) == len(after) == 0  # before the first row, and 30+ days after the last
    check_population(1, tables, "churn", as_of="2024-06-01", mc=config)  # any row passes
    with pytest.raises(EmptyPopulationError) as caught:
        check_population(len(after), tables, "churn", as_of="2024-06-01", mc=config)
    assert str(caught.value) == (
        "the churn population as of 2024-06-01 00:00 is empty (rule: customers with a purchase in the 30 days up to "
        "the cut-off); table 'transactions': its rows run from 2024-03-01 00:00 to 2024-04-10 00:00. "
        "Nothing was written; pass --allow-empty to write an empty output anyway"
    )
    assert isinstance(caught.value, ValueError)  # the CLIs report it as a bad input (exit 2)
    with pytest.raises(EmptyPopulationError, match=r"rule: leads created in the 30 days .*table 'leads': it has no"):
        check_population(0, make_tables(tx(ROWS)), "lead", as_of="2024-06-01", mc=ModelConfig(step_days=30))


@pytest.mark.parametrize("as_of", AS_OF_FORMS)
def test_days_to_next_purchase_agrees_with_the_churn_label(as_of):
    got = sorted_frame(days_to_next_purchase(make_tables(tx(ROWS)), as_of=as_of))
    expected = pd.DataFrame(
        {
            "customer_id": CUSTOMERS,
            # 1 s past the window; nothing after as_of; exactly as_of + H; two days on; a refund only
            "days_to_next": [10 + 1 / 86_400, float("nan"), 10.0, 2.0, float("nan")],
        }
    )
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    churn = sorted_frame(labels(make_tables(tx(ROWS)), "churn", as_of=as_of, horizon_days=10))
    bought = (got["days_to_next"] <= 10).astype(int)
    assert (churn["label"] == 1 - bought).all()
