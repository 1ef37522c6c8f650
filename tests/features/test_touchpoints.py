import ibis
import pandas as pd
import pytest

from features.config import ModelConfig
from features.pipeline import vocabularies
from features.touchpoints import touchpoint_features
from tests.features.conftest import AS_OF_FORMS, ROWS, make_tables, tx

EVENTS = pd.DataFrame(
    {
        "customer_id": ["a", "a", "a", "b", "a"],
        "timestamp": pd.to_datetime(["2024-03-30", "2024-01-15", "2024-03-31", "2023-01-01", "2024-04-01"]),
        "event_type": ["email open", "email open", "Support-Ticket", "email open", "email open"],
        "channel": ["email", "email", "phone", "email", "email"],
    }
)


def _features(events: pd.DataFrame, as_of) -> pd.DataFrame:
    out = touchpoint_features(ibis.memtable(events), as_of=as_of, windows=(30, 90))
    return out.to_pandas().sort_values("customer_id").reset_index(drop=True)


@pytest.mark.parametrize("as_of", AS_OF_FORMS)
def test_touchpoints_by_hand(as_of):
    got = _features(EVENTS, as_of)
    expected = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "events_total": [3, 1],
            "events_days_since_last": [0.0, 455.0],
            "events_support_ticket_30d": [1, 0],
            "events_support_ticket_90d": [1, 0],
            "events_support_ticket_all": [1, 0],
            "events_support_ticket_days_since_last": [0.0, float("nan")],
            "events_email_open_30d": [1, 0],
            "events_email_open_90d": [2, 0],
            "events_email_open_all": [2, 1],
            "events_email_open_days_since_last": [1.0, 455.0],
            "events_ch_email_90d": [2, 0],
            "events_ch_email_all": [2, 1],
            "events_ch_phone_90d": [1, 0],
            "events_ch_phone_all": [1, 0],
        }
    )
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_values_that_share_a_column_name_are_counted_together_and_a_type_never_takes_a_channels_column():
    """A CRM export's 'Email' and 'email' (and 'e-mail' beside 'e_mail') each wrote the same column, the
    last one's counts silently replacing the others'; an event type 'ch_phone' overwrote the channel
    'phone''s columns. Now one column counts both spellings, and the type gets columns of its own."""
    events = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a"],
            "timestamp": pd.to_datetime(["2024-03-01", "2024-03-20", "2024-03-25", "2024-03-30"]),
            "event_type": ["Email", "email", "ch_phone", "call"],
            "channel": ["e-mail", "e_mail", "web", "phone"],
        }
    )
    got = _features(events, "2024-03-31").iloc[0]
    assert got["events_email_all"] == 2 and got["events_email_days_since_last"] == 11.0
    assert got["events_ch_e_mail_all"] == 2
    assert got["events_ch_phone_all"] == 1 and got["events_type_ch_phone_all"] == 1


def test_no_events_table_means_no_features():
    assert touchpoint_features(None, as_of="2024-03-31") is None


def test_touchpoints_ignore_events_after_as_of():
    # Later events of a known type change nothing; the vocabulary (column set) is the table's.
    later = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "timestamp": pd.to_datetime(["2024-04-05", "2024-05-01"]),
            "event_type": ["Support-Ticket", "email open"],
            "channel": ["phone", "email"],
        }
    )
    pd.testing.assert_frame_equal(_features(EVENTS, "2024-03-31"), _features(pd.concat([EVENTS, later]), "2024-03-31"))


def test_a_fixed_vocabulary_gives_the_training_columns_to_fewer_events():
    """Posted records hold a few events: with the model's vocabulary they get its columns (a type
    the customer never had counts 0, its recency null), and a type outside it makes none."""
    full = make_tables(tx(ROWS), events=EVENTS)
    vocabulary = vocabularies(full)
    assert vocabulary == {
        "transactions.attributes": (),  # the hand-made lines have no attribute column
        "events.event_type": ("Support-Ticket", "email open"),
        "events.channel": ("email", "phone"),
    }
    b = EVENTS[EVENTS.customer_id == "b"].assign(event_type=["webinar"])  # b's one event, of a new type
    few = make_tables(tx(ROWS), events=b)
    fixed = make_tables(tx(ROWS), events=b)
    fixed.vocabulary = vocabulary
    assert vocabularies(fixed) == vocabulary
    kw = {"as_of": "2024-03-31", "windows": (30, 90)}
    own = touchpoint_features(few.events, **kw).to_pandas()
    got = touchpoint_features(
        fixed.events, event_types=vocabulary["events.event_type"], channels=vocabulary["events.channel"], **kw
    ).to_pandas()
    assert "events_webinar_all" in own.columns and "events_email_open_all" not in own.columns
    assert list(got.columns) == list(_features(EVENTS, "2024-03-31").columns)
    row = got.iloc[0]
    assert (row.events_total, row.events_email_open_all, row.events_ch_email_all) == (1, 0, 1)
    assert pd.isna(row.events_email_open_days_since_last)


def test_features_for_a_model_use_its_vocabulary_whatever_the_export_holds():
    """A later export with no 'Support-Ticket' left: the model's columns for it are still there
    (0 tickets), and a type it never saw makes none; without a vocabulary the export's own rows decide."""
    from features.pipeline import population_features

    mc = ModelConfig(horizon_days=30)
    later = EVENTS.assign(event_type=EVENTS.event_type.replace({"Support-Ticket": "chat"}))
    tables = make_tables(tx(ROWS), events=later)
    vocabulary = {"events.event_type": ("Support-Ticket", "email open"), "events.channel": ("email", "phone")}
    assert tables.with_vocabulary({}) is tables and tables.with_vocabulary(None) is tables
    fixed = population_features(tables.with_vocabulary(vocabulary), "churn", as_of="2024-03-31", model_config=mc)
    own = population_features(tables, "churn", as_of="2024-03-31", model_config=mc)
    assert "events_support_ticket_all" in fixed.columns and "events_chat_all" not in fixed.columns
    assert "events_chat_all" in own.columns and "events_support_ticket_all" not in own.columns
    assert fixed.set_index("customer_id").events_support_ticket_all.to_dict() == {"a": 0, "b": 0}
    assert tables.vocabulary == {}  # the caller's tables are left as they were
