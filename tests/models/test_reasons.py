"""Reason sentences from SHAP rows: templates with the customer's values, fallbacks, direction."""

from __future__ import annotations

import datetime as dt

import ibis
import numpy as np
import pandas as pd
import pytest

from features.config import ModelConfig
from features.seasonality import horizon_months
from models.lead_qualification import LEAD_TEMPLATES
from models.lead_qualification import spec as lead_spec
from models.reasons import ReasonWriter, dated_values, humanize, singularize, tidy
from models.texts import CUSTOMER_REASON_GROUPS, NO_PURCHASE, customer_templates

TEMPLATES_90 = customer_templates(90)

FEATURES = ["days_since_last", "gap_mean", "country", "orders_90d"]
TEMPLATES = {
    "days_since_last": (
        "No purchase for {days_since_last:.0f} days; usually buys every {gap_mean:.0f} days",
        "No purchase for {days_since_last:.0f} days",
    ),
    "country": ("Based in {country}",),
    "unknown_feature": ("Never used {nope}",),
}


def writer():
    return ReasonWriter(FEATURES, TEMPLATES, "raises churn risk", {"country": ["France", "UK"]})


def test_top_reasons_use_the_customers_values_and_only_push_up():
    X = np.array([[143.0, 21.0, 1.0, 2.0]])
    contrib = np.array([[0.9, -0.5, 0.2, 0.0]])
    (reasons,) = writer().explain(contrib, X, k=3)
    assert [r["feature"] for r in reasons] == ["days_since_last", "country"]  # zero and negative left out
    assert reasons[0]["text"] == "No purchase for 143 days; usually buys every 21 days (raises churn risk)"
    assert reasons[0]["impact"] == 0.9 and reasons[0]["value"] == 143.0
    assert reasons[1] == {"text": "Based in UK (raises churn risk)", "feature": "country", "value": "UK", "impact": 0.2}


def test_counter_reasons_are_the_features_that_pull_the_score_down():
    X = np.array([[143.0, 21.0, 1.0, 2.0], [5.0, 7.0, 0.0, 9.0]])
    contrib = np.array([[0.9, -0.5, 0.2, -0.7], [0.1, 0.3, 0.2, 0.4]])
    first, second = writer().explain(contrib, X, k=3, counter=True)
    assert [r["feature"] for r in first] == ["orders_90d", "gap_mean"]  # largest pull down first
    assert first[0] == {
        "text": "Orders 90d: 2 (lowers churn risk)",
        "feature": "orders_90d",
        "value": 2.0,
        "impact": -0.7,
    }
    assert first[1]["impact"] == -0.5
    assert second == []  # nothing lowers this score
    context = ReasonWriter(FEATURES, TEMPLATES, "raises churn risk", context=["orders_90d"], counter_direction="keeps")
    (only,) = context.explain(contrib[:1], X[:1], k=3, counter=True)
    assert [r["text"] for r in only] == ["Gap mean: 21 (keeps)"]  # context features are never counter-reasons
    assert contrib[0, 3] == -0.7  # the caller's SHAP values are left as they were
    assert ReasonWriter(FEATURES, TEMPLATES, "pushes the score").counter_direction == "against: pushes the score"


def test_missing_value_falls_back_to_the_next_template_then_to_the_name():
    X = np.array([[60.0, np.nan, np.nan, 3.0]])
    contrib = np.array([[0.3, 0.0, 0.2, 0.1]])
    (reasons,) = writer().explain(contrib, X, k=3)
    assert reasons[0]["text"] == "No purchase for 60 days (raises churn risk)"
    assert reasons[1]["text"] == "Country: missing (raises churn risk)"
    assert reasons[2]["text"] == "Orders 90d: 3 (raises churn risk)"


def test_a_category_value_new_to_the_model_is_named_in_its_reason():
    """The matrix holds an unseen value as missing; the reason names what was posted, both ways."""
    X = np.array([[60.0, 20.0, np.nan, 3.0], [60.0, 20.0, np.nan, 3.0]])
    contrib = np.array([[0.3, 0.0, 0.2, 0.1], [0.3, 0.0, -0.2, 0.1]])
    first, second = writer().explain(contrib, X, k=3, unseen={0: {"country": "Atlantis"}, 1: {"country": "Narnia"}})
    assert first[1] == {
        "text": "Country 'Atlantis': new to the model, scored as missing (raises churn risk)",
        "feature": "country",
        "value": "Atlantis",
        "impact": 0.2,
    }
    assert [r["feature"] for r in second] == ["days_since_last", "orders_90d"]
    (counter,) = writer().explain(contrib[1:], X[1:], k=1, counter=True, unseen={0: {"country": "Narnia"}})
    assert counter[0]["text"] == "Country 'Narnia': new to the model, scored as missing (lowers churn risk)"
    # A row left out of ``unseen`` had a missing value, not a new one.
    (blank,) = writer().explain(contrib[:1], X[:1], k=3, unseen={1: {"country": "Atlantis"}})
    assert blank[1]["text"] == "Country: missing (raises churn risk)" and blank[1]["value"] is None


def test_missing_purchase_features_say_why_they_are_missing():
    features = ["gap_std", "gap_mean", "purchase_days", "active_weeks_90d", "country"]
    writer = ReasonWriter(features, TEMPLATES_90, "raises churn risk", {"country": ["UK"]})
    contrib = np.array([[0.4, 0.3, 0.0, 0.2, 0.1]] * 3)
    X = np.array(
        [
            [np.nan, 30.0, 2.0, 2.0, 0.0],  # two purchase days: a gap, but no spread of gaps yet
            [np.nan, np.nan, 1.0, 1.0, 0.0],  # one purchase day: no gap at all
            [np.nan, np.nan, np.nan, np.nan, np.nan],  # only returns: no purchase feature at all
        ]
    )
    two, one, refunds_only = ([r["text"] for r in row] for row in writer.explain(contrib, X, k=4))
    assert two[0] == "Purchase days so far: 2, too few to show a buying rhythm (raises churn risk)"
    assert two[1] == "Usually buys every 30 days (raises churn risk)"
    assert one[1] == "Bought on 1 day so far: no gap between purchases yet (raises churn risk)"
    # Said once (it was three times: one fact, three reasons), then the next reason, which makes no such claim.
    assert refunds_only == [f"{NO_PURCHASE} (raises churn risk)", "Country: missing (raises churn risk)"]


def test_k_limits_and_rows_override_values():
    X = np.array([[10.0, 5.0, 0.0, 1.0], [20.0, 5.0, 1.0, 1.0]])
    contrib = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    out = writer().explain(contrib, X, k=2, rows=[{"orders_90d": 7}, {}])
    assert [r["feature"] for r in out[0]] == ["orders_90d", "country"]
    assert out[0][0]["text"].startswith("Orders 90d: 7")
    assert [r["feature"] for r in out[1]] == ["days_since_last", "gap_mean"]


GROUPED = ["days_since_last", "recency_over_gap", "purchase_days_90d", "country", "gap_mean"]


def grouped_writer(**kwargs):
    groups = {"recency": ("days_since_last", "recency_over_gap", "purchase_days_90d", "not_a_feature")}
    return ReasonWriter(
        GROUPED, TEMPLATES_90, "raises churn risk", {"country": ["France", "UK"]}, groups=groups, **kwargs
    )


def test_a_group_of_features_stating_one_fact_is_one_reason_with_their_summed_impact():
    X = np.array([[2.0, 0.1, 2.0, 1.0, 20.0], [150.0, 7.5, 0.0, 0.0, 20.0]])
    contrib = np.array(
        [
            # Two days since the last purchase lowers the risk, only 2 purchase days in 90 raises it more.
            [-0.3, -0.1, 0.7, 0.2, 0.25],
            # Long silent: every member raises the risk; the group outranks a larger single feature.
            [0.3, 0.2, 0.1, 0.0, 0.5],
        ]
    )
    first, second = grouped_writer().explain(contrib, X, k=3)
    assert first[0] == {
        "text": "Bought on 2 days in the last 90 days (raises churn risk)",  # the member pushing hardest
        "feature": "purchase_days_90d",
        "value": 2.0,
        "impact": 0.3,  # 0.7 - 0.3 - 0.1: the group's net pull
        "group": "recency",
    }
    assert [r["feature"] for r in first[1:]] == ["gap_mean", "country"]  # ungrouped features keep no "group"
    assert "group" not in first[1] and "group" not in first[2]
    assert [(r["feature"], r["impact"]) for r in second[:2]] == [("days_since_last", 0.6), ("gap_mean", 0.5)]
    assert second[0]["text"] == "No purchase for 150 days; usually buys every 20 days (raises churn risk)"
    # The recency group nets out as a reason, so it is no counter-reason either: one fact, one side.
    (counter, _) = grouped_writer().explain(contrib, X, k=3, counter=True)
    assert counter == []
    pulled_down = grouped_writer().explain(-contrib, X, k=3, counter=True)[0]
    assert pulled_down[0]["group"] == "recency" and pulled_down[0]["impact"] == -0.3
    assert contrib[0, 0] == -0.3  # the caller's SHAP values are left as they were
    # Without groups the same row read as two halves of one fact pulling against each other.
    plain = ReasonWriter(GROUPED, TEMPLATES_90, "raises churn risk", {"country": ["France", "UK"]})
    assert plain.explain(contrib[:1], X[:1], k=1)[0][0]["feature"] == "purchase_days_90d"
    assert plain.explain(contrib[:1], X[:1], k=1, counter=True)[0][0]["feature"] == "days_since_last"


def test_a_writers_units_are_worked_out_once_and_not_pickled_with_it():
    import pickle

    writer = grouped_writer()
    units = writer.units()
    assert units == [("recency", [0, 1, 2]), (None, [3]), (None, [4])]
    assert writer.units() is units  # kept: the API explains every request with them
    # A pickle (a registered model's scorer) carries the features and groups, not the worked-out units.
    copy = pickle.loads(pickle.dumps(writer))
    assert "_units" not in copy.__dict__ and copy.units() == units
    contrib = np.array([[-0.3, -0.1, 0.7, 0.2, 0.25]])
    summed = writer.unit_sums(contrib)
    assert summed.tolist() == [[contrib[0, :3].sum(), 0.2, 0.25]] and contrib[0, 0] == -0.3


def test_reason_groups_keep_the_models_features_and_leave_out_context_ones():
    assert grouped_writer().groups == {"recency": ["days_since_last", "recency_over_gap", "purchase_days_90d"]}
    # A context feature is never a reason, so it never joins a group; a group of one is that feature alone.
    context = grouped_writer(context=["recency_over_gap", "purchase_days_90d"])
    assert context.groups == {}
    X = np.array([[2.0, 0.1, 2.0, 1.0, 20.0]])
    (reasons,) = context.explain(np.array([[0.4, 0.9, 0.9, 0.0, 0.0]]), X, k=3)
    assert reasons == [
        {
            "text": "No purchase for 2 days; usually buys every 20 days (raises churn risk)",
            "feature": "days_since_last",
            "value": 2.0,
            "impact": 0.4,
        }
    ]
    with pytest.raises(ValueError, match="feature 'gap_mean' is in both 'rhythm' and 'cycle'"):
        ReasonWriter(GROUPED, TEMPLATES_90, "raises", groups={"rhythm": ("gap_mean",), "cycle": ("gap_mean", "x")})


def test_every_reason_group_member_is_a_feature_with_a_sentence():
    # A misspelt member would silently stay out of its group: each must be a feature the templates know.
    for groups, templates in (
        (CUSTOMER_REASON_GROUPS, customer_templates(90)),
        (lead_spec(ModelConfig()).reason_groups, LEAD_TEMPLATES),
    ):
        members = [f for features in groups.values() for f in features]
        assert len(members) == len(set(members))
        assert set(members) <= set(templates)


def test_humanize():
    assert humanize("monetary_365d") == "Monetary 365d"


def test_context_features_count_in_the_score_but_are_never_reasons():
    context = ReasonWriter(FEATURES, TEMPLATES, "raises churn risk", {"country": ["France", "UK"]}, context=["country"])
    X = np.array([[143.0, 21.0, 1.0, 2.0]])
    contrib = np.array([[0.1, -0.5, 0.9, 0.05]])
    (plain,) = writer().explain(contrib, X, k=2)
    (reasons,) = context.explain(contrib, X, k=2)
    assert [r["feature"] for r in plain] == ["country", "days_since_last"]
    assert [r["feature"] for r in reasons] == ["days_since_last", "orders_90d"]  # the next one moves up
    assert contrib[0, 2] == 0.9  # the caller's SHAP values are left as they were
    (only_context,) = context.explain(np.array([[0.0, 0.0, 0.9, 0.0]]), X, k=3)
    assert only_context == []
    with pytest.raises(ValueError, match="context feature 'month' is not a model feature"):
        ReasonWriter(FEATURES, TEMPLATES, "raises churn risk", context=["month"])


def test_a_count_of_one_reads_in_the_singular():
    assert singularize("Bought on 1 days in the last 90 days") == "Bought on 1 day in the last 90 days"
    assert singularize("Bought 1 different products") == "Bought 1 product"
    assert singularize("100% of the 1 purchase days so far") == "100% of the 1 purchase day so far"
    assert singularize("1 categories, 11 days, 0.1 days, 1.5 days, 21 orders") == (
        "1 category, 11 days, 0.1 days, 1.5 days, 21 orders"
    )
    # An average of exactly one read "1.0 different items per order on average" (a marketer's list).
    assert singularize("1.0 different items per order on average, 1.0x the usual gap, 1.05 items") == (
        "1 item per order on average, 1.0x the usual gap, 1.05 items"
    )
    writer = ReasonWriter(["purchase_days_90d"], TEMPLATES_90, "raises churn risk")
    (reasons,) = writer.explain(np.array([[0.4]]), np.array([[1.0]]), k=1)
    assert reasons[0]["text"] == "Bought on 1 day in the last 90 days (raises churn risk)"


def test_rates_per_month_read_as_the_counts_they_divide():
    features = ["purchase_rate_30d", "spend_per_30d", "purchase_days", "monetary_all", "tenure_days"]
    writer = ReasonWriter(features, TEMPLATES_90, "raises churn risk")
    contrib = np.array([[0.4, 0.3, 0.0, 0.0, 0.0]] * 2)
    # One purchase day two days ago: 10 "per month" by the feature, not a habit.
    X = np.array([[10.0, 123937.0, 1.0, 12393.7, 2.0], [1.25, 50.0, 30.0, 1200.0, 719.0]])
    new, old = ([r["text"] for r in row] for row in writer.explain(contrib, X, k=2))
    assert new == [
        "Bought on 1 day since the first purchase 2 days ago (raises churn risk)",
        "Net spend of 12,394 since the first purchase 2 days ago (raises churn risk)",
    ]
    assert old[0] == "Bought on 30 days since the first purchase 719 days ago (raises churn risk)"
    # Without the counts among the model's features, the rate itself.
    alone = ReasonWriter(["purchase_rate_30d"], TEMPLATES_90, "raises churn risk")
    (reasons,) = alone.explain(np.array([[0.4]]), np.array([[1.25]]), k=1)
    assert reasons[0]["text"] == "Buys on 1.2 days per month on average (raises churn risk)"


def test_shares_of_purchase_days_name_how_many_days():
    writer = ReasonWriter(["q4_share", "purchase_days"], TEMPLATES_90, "raises churn risk")
    one, eight = writer.explain(np.array([[0.3, 0.0]] * 2), np.array([[1.0, 1.0], [0.25, 8.0]]), k=1)
    assert one[0]["text"] == "October-December held 100% of the 1 purchase day so far (raises churn risk)"
    assert eight[0]["text"] == "October-December held 25% of the 8 purchase days so far (raises churn risk)"


def test_year_ago_sentences_name_the_window_with_the_models_horizon():
    from models.churn import spec as churn_spec
    from models.next_purchase import spec as next_purchase_spec

    features = ["ly_spend", "ly_orders", "ly_orders_before"]
    X, contrib = np.array([[2500.0, 3.0, 0.0]]), np.array([[0.5, 0.3, 0.1]])
    for spec, h in ((churn_spec(ModelConfig(horizon_days=30)), 30), (next_purchase_spec(ModelConfig()), 90)):
        writer = ReasonWriter(features, spec.reason_templates, spec.reason_direction)
        (reasons,) = writer.explain(contrib, X, k=3)
        assert [r["text"].split(" (")[0] for r in reasons] == [
            f"Net spend of 2,500 in the {h} days after this date last year",
            f"3 orders in the {h} days after this date last year",
            f"No orders in the {h} days before this date last year",
        ]


def test_the_coming_months_are_named_from_the_scoring_date():
    writer = ReasonWriter(["horizon_month_share", "purchase_days"], TEMPLATES_90, "raises churn risk")
    contrib, X = np.array([[0.3, 0.0]]), np.array([[0.4, 10.0]])
    (dated,) = writer.explain(contrib, X, k=1, dated=dated_values("2011-12-09 12:50:00", 90))
    assert dated[0]["text"] == "December-March held 40% of the 10 purchase days so far (raises churn risk)"
    assert dated[0]["value"] == 0.4
    (undated,) = writer.explain(contrib, X, k=1)
    assert undated[0]["text"] == "The coming months held 40% of the 10 purchase days so far (raises churn risk)"
    # The months the feature counts (features.seasonality.horizon_months): the H days after the date.
    assert dated_values("2011-09-10", 90) == {"coming_months": "September-December"}
    assert dated_values("2011-01-31", 1) == {"coming_months": "February"}
    assert dated_values("2011-01-01", 334) == {}  # every month: nothing to name
    names = [dt.date(2011, m, 1).strftime("%B") for m in range(1, 13)]
    for as_of in pd.date_range("2010-12-01 12:50", periods=25, freq="17D"):
        for h in (1, 30, 90, 180):
            first, _, last = dated_values(as_of, h)["coming_months"].partition("-")
            a, b = names.index(first), names.index(last or first)
            assert {m % 12 + 1 for m in range(a, a + (b - a) % 12 + 1)} == set(horizon_months(as_of, h)), (as_of, h)


def test_a_coded_value_gets_its_own_sentence_not_a_number():
    spec = lead_spec(ModelConfig())
    writer = ReasonWriter(["pdays", "age"], spec.reason_templates, spec.reason_direction, codes=spec.reason_codes)
    X = np.array([[999.0, 40.0], [6.0, 40.0]])
    never, recent = ([r["text"] for r in row] for row in writer.explain(np.array([[0.5, 0.1]] * 2), X, k=1))
    assert never == ["Not contacted in a previous campaign (raises conversion odds)"]
    assert recent == ["Last contacted in a previous campaign 6 days ago (raises conversion odds)"]


def test_the_bank_leads_category_codes_read_as_what_they_mean():
    spec = lead_spec(ModelConfig())
    features = ["job", "day_of_week", "poutcome", "housing"]
    categories = {
        "job": ["admin.", "blue-collar"],
        "day_of_week": ["mon", "tue"],
        "poutcome": ["nonexistent", "success"],
        "housing": ["no", "unknown", "yes"],
    }
    writer = ReasonWriter(features, spec.reason_templates, spec.reason_direction, categories, codes=spec.reason_codes)
    (reasons,) = writer.explain(np.array([[0.4, 0.3, 0.2, 0.1]]), np.array([[0.0, 1.0, 1.0, 2.0]]), k=4)
    assert [r["text"].removesuffix(" (raises conversion odds)") for r in reasons] == [
        "Works in administration",
        "Contacted on a Tuesday",
        "Converted in the previous campaign",
        "Has a housing loan",
    ]
    # Posted records carry the labels themselves; a label the codes do not list keeps the template.
    rows = [{"job": "blue-collar", "day_of_week": "sat", "poutcome": "nonexistent", "housing": "maybe"}]
    (posted,) = writer.explain(np.array([[0.4, 0.3, 0.2, 0.1]]), np.zeros((1, 4)), k=4, rows=rows)
    assert [r["text"].removesuffix(" (raises conversion odds)") for r in posted] == [
        "Blue-collar job",
        "Contacted on a Saturday",
        "First campaign for this contact",
        "Housing loan: maybe",
    ]
    # Every code of the yes/no loan columns is a sentence ("No a housing loan" until 2026-12-06).
    loans = ReasonWriter(["housing", "loan"], spec.reason_templates, spec.reason_direction, codes=spec.reason_codes)
    said_loans = [
        [r["text"].split(" (")[0] for r in reasons]
        for value in ("yes", "no", "unknown")
        for reasons in loans.explain(
            np.array([[0.2, 0.1]]), np.zeros((1, 2)), k=2, rows=[{"housing": value, "loan": value}]
        )
    ]
    assert said_loans == [
        ["Has a housing loan", "Has a personal loan"],
        ["No housing loan", "No personal loan"],
        ["Not known whether there is a housing loan", "Not known whether there is a personal loan"],
    ]
    counts = ReasonWriter(["campaign", "previous"], spec.reason_templates, spec.reason_direction)
    (said,) = counts.explain(np.array([[0.2, 0.1]]), np.array([[1.0, 3.0]]), k=2)
    assert [r["text"] for r in said] == [
        "Contacted 1 time in this campaign so far (raises conversion odds)",
        "Contacted 3 times before this campaign (raises conversion odds)",
    ]


def test_a_writer_pickled_before_codes_context_counter_direction_and_groups_still_writes():
    writer = ReasonWriter(["recency_days", "purchase_days"], TEMPLATES_90, "raises churn risk")
    state = {k: v for k, v in writer.__dict__.items() if k not in ("codes", "context", "counter_direction", "groups")}
    old = ReasonWriter.__new__(ReasonWriter)
    old.__setstate__(state)  # what unpickling a writer of an older registered model does
    contrib, X = np.array([[0.5, -0.2]]), np.array([[40.0, 3.0]])
    assert old.explain(contrib, X, k=1) == writer.explain(contrib, X, k=1)
    assert old.explain(contrib, X, k=1, counter=True) == writer.explain(contrib, X, k=1, counter=True)
    assert old.explain(contrib, X, k=1, counter=True)[0][0]["text"].endswith("(lowers churn risk)")


def test_zero_days_ago_reads_today():
    assert tidy("Bought on 10 days in the last 90 days, the latest 0 days ago") == (
        "Bought on 10 days in the last 90 days, the latest today"
    )
    assert tidy("No purchase for 0 days; usually buys every 6 days") == "Last purchase today; usually buys every 6 days"
    assert tidy("No purchase for 10 days, the latest 10 days ago") == "No purchase for 10 days, the latest 10 days ago"
    assert tidy("Last purchase 1 days ago") == "Last purchase 1 day ago"


def test_a_count_of_zero_reads_as_none():
    assert tidy("Bought on 0 days in the last 90 days, the latest 235 days ago") == (
        "No purchase in the last 90 days, the latest 235 days ago"
    )
    assert tidy("Bought in 0 of the last 13 weeks") == "No purchase in the last 13 weeks"
    assert tidy("Bought 0 different products in the last 365 days") == "No purchase in the last 365 days"
    assert tidy("0 orders in the last 30 days, the latest 33 days ago") == (
        "No orders in the last 30 days, the latest 33 days ago"
    )
    assert tidy("0 orders with a refund or return") == "No orders with a refund or return"
    # Only a count of exactly zero, and only where the sentence opens on it.
    assert tidy("Bought on 10 days in the last 90 days") == "Bought on 10 days in the last 90 days"
    assert tidy("10 orders in the last 30 days") == "10 orders in the last 30 days"
    assert tidy("0.5 orders per month") == "0.5 orders per month"


def test_a_negative_net_spend_and_a_ratio_that_rounds_to_zero_read_as_what_they_are():
    """ "Net spend of -13" and "0.0x the usual gap" were the numbers, not what they mean to a reader."""
    assert (
        tidy("Net spend of -1,313 in the last 180 days") == "Refunds outweighed purchases by 1,313 in the last 180 days"
    )
    assert tidy("No purchase for 1 days, 0.0x the usual gap of 81 days") == (
        "No purchase for 1 day, well within the usual gap of 81 days"
    )
    assert tidy("No purchase for 90 days, 10.0x the usual gap of 9 days") == (
        "No purchase for 90 days, 10.0x the usual gap of 9 days"
    )
    assert tidy("Net spend of 0 in the last 90 days") == "Net spend of 0 in the last 90 days"


def test_a_rows_reasons_date_the_last_purchase_once():
    """Recency and frequency are separate reasons, but both may end on the latest purchase; the
    second one drops the clause the first one states (not a count that merely contains its digits)."""
    features = ["days_since_last", "decayed_purchase_days_365d", "purchase_days_365d", "days_since_last_copy"]
    templates = {
        **{f: TEMPLATES_90[f] for f in ("days_since_last", "decayed_purchase_days_365d")},
        "days_since_last_copy": ("{days_since_last_copy:.0f} orders in the last 30 days, the latest 11 days ago",),
    }
    writer = ReasonWriter(features, templates, "raises churn risk")
    X = np.array([[235.0, 0.4, 2.0, 0.0], [211.0, 0.4, 1.0, 0.0], [11.0, 0.4, 3.0, 0.0]])
    contrib = np.array([[0.5, 0.4, 0.0, 0.0], [0.0, 0.4, 0.0, 0.3], [0.0, 0.4, 0.0, 0.3]])
    first, second, third = (
        [r["text"].removesuffix(" (raises churn risk)") for r in row] for row in writer.explain(contrib, X, k=3)
    )
    assert first == ["No purchase for 235 days", "Bought on 2 days in the last 365 days"]
    # 211 days ago does not state 11 days ago.
    assert second == [
        "Bought on 1 day in the last 365 days, the latest 211 days ago",
        "No orders in the last 30 days, the latest 11 days ago",
    ]
    assert third == ["Bought on 3 days in the last 365 days, the latest 11 days ago", "No orders in the last 30 days"]
    # The other order: the count's clause came first and the recency sentence repeated its date (392 of
    # the demo's 4,269 churn rows): the recency sentence dates it, the clause goes.
    X = np.array([[15.0, 0.4, 6.0, 0.0]])
    (fourth,) = ([r["text"] for r in row] for row in writer.explain(np.array([[0.3, 0.5, 0.0, 0.0]]), X, k=3))
    assert fourth == [
        "Bought on 6 days in the last 365 days (raises churn risk)",
        "No purchase for 15 days (raises churn risk)",
    ]


def _writer(features, shown, **kwargs):
    """A writer of the customer templates whose model has ``features``; ``shown`` are the features
    given contributions, the rest (what the templates read) none."""
    return ReasonWriter([*shown, *features], TEMPLATES_90, "raises churn risk", **kwargs)


def test_a_fact_the_row_has_given_is_not_given_again():
    """Groups keep the features of one fact together, but across groups a new customer's one purchase
    day is "in the last 365 days" and "since the first purchase" at once: the second sentence (a
    reason or a counter-reason) is left out and the next takes its place."""
    shown = ["purchase_days_365d", "purchase_rate_30d", "monetary_180d", "monetary_all", "country"]
    writer = _writer(["purchase_days", "tenure_days"], shown, categories={"country": ["UK"]})
    X = np.array([[1.0, 7.5, 169.0, 169.0, 0.0, 1.0, 4.0]])
    contrib = np.array([[0.5, -0.4, 0.3, -0.2, 0.1, 0.0, 0.0]])
    (reasons,) = writer.explain(contrib, X, k=3)
    (counter,) = writer.explain(contrib, X, k=3, counter=True, said=[reasons])
    texts = [r["text"] for r in (*reasons, *counter)]
    # "Bought on 1 day since the first purchase 4 days ago (lowers ...)" and "Net spend of 169 since ..." left out.
    assert texts == [
        "Bought on 1 day in the last 365 days (raises churn risk)",
        "Net spend of 169 in the last 180 days (raises churn risk)",
        "Based in UK (raises churn risk)",
    ], texts
    # Without the reasons beside them, the counter-reasons are given.
    (alone,) = writer.explain(contrib, X, k=3, counter=True)
    assert [r["feature"] for r in alone] == ["purchase_rate_30d", "monetary_all"]


def test_a_decayed_count_never_reads_as_no_purchase_in_its_window():
    """The decayed 90-day count of a customer whose latest purchase is 120 days old is above 0 (older
    purchases still weigh); "No purchase in the last 90 days (lowers churn risk)" read as good news
    for lapsing. The sentence takes the next window that holds the purchases it weighs."""
    shown = ["decayed_purchase_days_90d", "decayed_purchase_days_30d"]
    counts = [
        "purchase_days_90d",
        "purchase_days_365d",
        "purchase_days",
        "tenure_days",
        "frequency_30d",
        "days_since_last",
    ]
    writer = _writer(counts, shown, activity=-1)  # churn's: lowering the risk is the active way
    X = np.array([[1.76, 0.2, 0.0, 3.0, 5.0, 700.0, 0.0, 120.0]])
    (counter,) = writer.explain(np.array([[-0.3, -0.1, *[0.0] * 6]]), X, k=2, counter=True)
    # The 30-day count reaches the same window: the same fact, given once.
    assert [r["text"] for r in counter] == [
        "Bought on 3 days in the last 365 days, the latest 120 days ago (lowers churn risk)"
    ]
    X[0, 3] = 0.0  # nothing in the last 365 days either
    (older,) = writer.explain(np.array([[-0.3, *[0.0] * 7]]), X, k=1, counter=True)
    assert older[0]["text"] == (
        "Bought on 5 days since the first purchase 700 days ago, the latest 120 days ago (lowers churn risk)"
    )
    # Raising the risk, the empty window is the point; and a writer pickled before `activity` keeps its sentences.
    (raised,) = writer.explain(np.array([[0.3, *[0.0] * 7]]), X, k=1)
    assert raised[0]["text"] == "No purchase in the last 90 days, the latest 120 days ago (raises churn risk)"
    old = ReasonWriter.__new__(ReasonWriter)
    old.__setstate__({k: v for k, v in writer.__getstate__().items() if k != "activity"})
    (kept,) = old.explain(np.array([[-0.3, *[0.0] * 7]]), X, k=1, counter=True)
    assert kept[0]["text"] == "No purchase in the last 90 days, the latest 120 days ago (lowers churn risk)"


def test_counter_reasons_do_not_date_the_last_purchase_the_reasons_dated():
    """The at-risk list and explain show both sides of a row: the counter-reasons are written after
    the reasons and take them as said."""
    writer = ReasonWriter(
        ["days_since_last", "decayed_purchase_days_365d", "purchase_days_365d"],
        {f: TEMPLATES_90[f] for f in ("days_since_last", "decayed_purchase_days_365d")},
        "raises churn risk",
    )
    X = np.array([[275.0, 0.4, 6.0]])
    contrib = np.array([[0.9, -0.4, 0.0]])
    (reasons,) = writer.explain(contrib, X, k=1)
    assert reasons[0]["text"] == "No purchase for 275 days (raises churn risk)"
    (alone,) = writer.explain(contrib, X, k=1, counter=True)
    (after,) = writer.explain(contrib, X, k=1, counter=True, said=[reasons])
    assert alone[0]["text"] == "Bought on 6 days in the last 365 days, the latest 275 days ago (lowers churn risk)"
    assert after[0]["text"] == "Bought on 6 days in the last 365 days (lowers churn risk)"
    assert after[0]["impact"] == alone[0]["impact"] == -0.4
    # The other order (73 churn and 71 next-purchase rows of the demo): the reason's clause dated the
    # last purchase and the counter-reason "No purchase for 18 days" dated it again; the clause goes.
    contrib = np.array([[-0.9, 0.4, 0.0]])
    X = np.array([[18.0, 0.4, 2.0]])
    (reasons,) = writer.explain(contrib, X, k=1)
    assert reasons[0]["text"] == "Bought on 2 days in the last 365 days, the latest 18 days ago (raises churn risk)"
    (counter,) = writer.explain(contrib, X, k=1, counter=True, said=[reasons])
    assert counter[0]["text"] == "No purchase for 18 days (lowers churn risk)"
    assert reasons[0]["text"] == "Bought on 2 days in the last 365 days (raises churn risk)"


def test_a_pull_that_rounds_to_zero_is_no_reason():
    """Impacts are given to 6 decimals: a spare reason taken in place of a repeated fact must still pull
    (a counter-reason of impact -0.0 broke the batch file's promise that counter impacts are negative)."""
    writer = ReasonWriter(["a", "b"], {}, "raises churn risk")
    (reasons,) = writer.explain(np.array([[0.2, 4e-7]]), np.zeros((1, 2)), k=2)
    (counter,) = writer.explain(np.array([[-0.2, -4e-7]]), np.zeros((1, 2)), k=2, counter=True)
    assert [r["feature"] for r in reasons] == [r["feature"] for r in counter] == ["a"]


def test_a_share_under_half_a_percent_is_not_read_as_none():
    """ "Refunds and returns worth 0% of the value bought" was said of a 0.3% share: whole percents
    round a small part to nothing (and 99.7% to everything)."""
    templates = customer_templates(90)
    writer = ReasonWriter(["refund_share", "weekend_share"], templates, "raises churn risk")
    said = {v: writer.sentence("refund_share", {"refund_share": v}) for v in (0.003, 0.0, 0.42, 0.997, 1.0)}
    assert said == {
        0.003: "Refunds and returns worth under 1% of the value bought",
        0.0: "Refunds and returns worth 0% of the value bought",
        0.42: "Refunds and returns worth 42% of the value bought",
        0.997: "Refunds and returns worth over 99% of the value bought",
        1.0: "Refunds and returns worth 100% of the value bought",
    }
    assert writer.sentence("weekend_share", {"weekend_share": 0.004}) == "Under 1% of purchase days at weekends"


def test_a_signed_zero_reads_as_zero_and_values_hide_the_engines_last_digits():
    """An ops engineer's Spark batch: "Spend in the last 90 days changed by -0 against the 90 days before" (for
    -0.31), and a reason's value -0.310000000001 on DuckDB where Spark had -0.31."""
    from models.reasons import _stable, tidy

    assert tidy("Spend in the last 90 days changed by -0 against the 90 days before") == (
        "Spend in the last 90 days changed by 0 against the 90 days before"
    )
    assert tidy("Orders in the last 90 days changed by +0 against the 90 days before").endswith(
        "by 0 against the 90 days before"
    )
    assert tidy("changed by -12 against") == "changed by -12 against" and tidy("by +0.5x") == "by +0.5x"
    assert _stable(-0.310000000001) == _stable(-0.31) == -0.31 and _stable("UK") == "UK"


# Touchpoint features as features.touchpoints names them, after the data's event types and channels.
TOUCHPOINTS = [
    "events_total",
    "events_days_since_last",
    "events_login_30d",
    "events_login_all",
    "events_login_days_since_last",
    "events_support_ticket_365d",
    "events_support_ticket_days_since_last",
    "events_ch_phone_90d",
    "events_ch_phone_all",
]


def _sentences(writer, values):
    """Each feature's reason alone, as it reads raising the score."""
    X = np.array([values], dtype=float)
    out = []
    for j in range(len(values)):
        contrib = np.zeros((1, len(values)))
        contrib[0, j] = 0.3
        out.append(writer.explain(contrib, X, k=1)[0][0]["text"].removesuffix(" (raises churn risk)"))
    return out


def test_touchpoint_features_read_as_sentences_of_their_event_type_or_channel():
    """A SaaS export's most frequent churn reasons read "Events login 30d: 2" and "Events support ticket
    days since last: missing": the columns are named after the data's event types, so no fixed
    template held them."""
    writer = ReasonWriter(TOUCHPOINTS, TEMPLATES_90, "raises churn risk")
    assert _sentences(writer, [14, 19.99, 2, 9, 19.99, 1, 0.2, 1, 3]) == [
        "14 interactions so far",
        "Last interaction 20 days ago",
        "2 login events in the last 30 days",
        "9 login events so far",
        "Last login 20 days ago",
        "1 support ticket event in the last 365 days",
        "Last support ticket today",
        "1 event on the phone channel in the last 90 days",
        "3 events on the phone channel so far",
    ]
    # None of a type (missing days since), and a customer without a single event (every value missing).
    assert _sentences(writer, [5, 3.0, 0, 0, np.nan, 0, np.nan, 0, 0])[2:] == [
        "No login events in the last 30 days",
        "No login events so far",
        "No login events so far",
        "No support ticket events in the last 365 days",
        "No support ticket events so far",
        "No events on the phone channel in the last 90 days",
        "No events on the phone channel so far",
    ]
    assert _sentences(writer, [np.nan] * len(TOUCHPOINTS)) == [
        "No interactions so far",
        "No interactions so far",
        "No login events in the last 30 days",
        "No login events so far",
        "No login events so far",
        "No support ticket events in the last 365 days",
        "No support ticket events so far",
        "No events on the phone channel in the last 90 days",
        "No events on the phone channel so far",
    ]
    # Not "No purchase on record, only returns or refunds", the customer templates' last word.
    assert all(t not in TEMPLATES_90 for t in TOUCHPOINTS)


def test_a_leads_touchpoints_read_as_the_customers_do():
    features = ["lead_events_total", "lead_events_demo_request_days_since_last", "lead_events_demo_request_30d"]
    writer = ReasonWriter(features, lead_spec(ModelConfig()).reason_templates, "raises conversion odds")
    X = np.array([[1.0, 15.35, 1.0], [0.0, np.nan, 0.0]])
    contrib = np.array([[0.1, 0.3, 0.2], [0.1, 0.3, 0.2]])
    first, second = ([r["text"] for r in row] for row in writer.explain(contrib, X, k=3))
    # A type's days since the last and its count are one reason (models.texts.touchpoint_groups), said by
    # the member that moves the odds most.
    assert first == [
        "Last demo request 15 days ago (raises conversion odds)",
        "1 interaction so far (raises conversion odds)",
    ]
    assert second == [
        "No demo request events so far (raises conversion odds)",
        "No interactions so far (raises conversion odds)",
    ]
    # The lead model's own template comes first; the touchpoint one is not added twice.
    assert [t for t, _ in writer.templates["lead_events_total"]] == [
        "{lead_events_total:.0f} interactions so far",
        "No interactions so far",
    ]


def test_every_touchpoint_column_has_a_sentence():
    """The templates read the type back from the column name features.touchpoints writes: every column
    it makes (odd type names included) gets one, none the humanized name."""
    from features.touchpoints import touchpoint_features

    events = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b"],
            "timestamp": pd.to_datetime(
                ["2024-03-30 00:00", "2024-01-15 00:00", "2024-03-31 14:00", "2023-01-01 00:00"]
            ),
            "event_type": ["Support-Ticket", "days_since", "total", "open {0}"],
            "channel": ["e-mail", "phone", "phone", "web"],
        }
    )
    table = touchpoint_features(ibis.memtable(events), as_of="2024-04-01").to_pandas()
    features = [c for c in table.columns if c != "customer_id"]
    writer = ReasonWriter(features, {}, "raises churn risk")
    assert set(writer.templates) == set(features)
    row = table.set_index("customer_id").loc["a", features].astype(float).tolist()
    texts = _sentences(writer, row)
    assert not [t for t in texts if ":" in t or "Events" in t]
    assert "Last interaction today" in texts  # 10 hours before the cut-off, rounded as the purchases' days
    assert "Last total today" in texts
    assert "1 days since event in the last 90 days" in texts  # a type "days since", not 1 day
    assert "No open 0 events so far" in texts  # the braces of the data never reach a template
    assert "1 event on the e mail channel so far" in texts
    assert "2 events on the phone channel so far" in texts


def test_touchpoint_facts_are_their_own_beside_the_purchases():
    """The de-duplication of a row's facts compares facts of one subject: a login 20 days ago neither
    states "No purchase for 20 days" nor dates the last purchase of a count's closing clause; an
    event type "purchase" neither. One type's count of two windows is one fact, as the purchase days'."""
    features = [
        "decayed_purchase_days_365d",
        "events_login_days_since_last",
        "events_purchase_days_since_last",
        "days_since_last",
        "events_login_30d",
        "events_support_ticket_90d",
        "events_login_90d",
        "purchase_days_365d",
    ]
    writer = ReasonWriter(features, TEMPLATES_90, "raises churn risk")
    X = np.array([[0.4, 20.2, 20.0, 20.0, 12.0, 12.0, 12.0, 3.0]])
    contrib = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.0]])
    (reasons,) = writer.explain(contrib, X, k=7)
    assert [r["text"].removesuffix(" (raises churn risk)") for r in reasons] == [
        "Last login 20 days ago",  # the login's three columns: one reason, their summed contribution
        "Bought on 3 days in the last 365 days",  # its ", the latest 20 days ago" is the recency sentence's
        "Last purchase 20 days ago",
        "No purchase for 20 days",
        "12 support ticket events in the last 90 days",
    ]
    # As counter-reasons beside a reason "Last login 20 days ago": the count dates the last purchase
    # still, and the login is not said twice.
    (counter,) = writer.explain(-contrib, X, k=2, counter=True, said=[reasons[0:1]])
    assert [r["text"] for r in counter] == [
        "Bought on 3 days in the last 365 days, the latest 20 days ago (lowers churn risk)",
        "Last purchase 20 days ago (lowers churn risk)",
    ]
    # Every event and one type of them: the last interaction 2 days ago is the last webinar view, and
    # none of any event so far is none of a type. A type's none beside the none of its whole history,
    # either first, is one fact (a lead's "No webinar view events in the last 30 days" raised the odds
    # and "No webinar view events so far" lowered them).
    features = [
        "events_days_since_last",
        "events_webinar_view_days_since_last",
        "events_total",
        "events_login_30d",
        "events_login_all",
    ]
    writer = ReasonWriter(features, {}, "raises conversion odds")
    X = np.array([[2.0, 2.2, 1.0, 0.0, 0.0], [np.nan] * 5])
    contrib = np.tile([0.5, 0.4, 0.3, 0.2, -0.1], (2, 1))
    reasons = writer.explain(contrib, X, k=4)
    assert [[r["text"].removesuffix(" (raises conversion odds)") for r in row] for row in reasons] == [
        ["Last interaction 2 days ago", "No login events in the last 30 days"],  # every event's two: one reason
        ["No interactions so far"],  # no webinar view, no login: said by none at all
    ]
    # "No login events so far" lowering the odds beside "No login events in the last 30 days" raising them.
    assert writer.explain(contrib, X, k=1, counter=True, said=reasons) == [[], []]
    # The same sentence of two subjects is still said once: an event type "purchase" beside the purchases'.
    writer = ReasonWriter(["events_purchase_days_since_last", "recency_days"], TEMPLATES_90, "raises churn risk")
    (reasons,) = writer.explain(np.array([[0.5, 0.4]]), np.array([[20.0, 20.0]]), k=2)
    assert [r["text"] for r in reasons] == ["Last purchase 20 days ago (raises churn risk)"]


def test_one_event_types_columns_are_one_reason():
    """A SaaS churn model set "4 login events in the last 30 days (raises churn risk)" against "65 login
    events in the last 365 days (lowers churn risk)" for 606 of 1,700 rows: one type's windows and days
    since the last are one fact, a group as the purchases' are, so the row gets one login reason, the
    sum of their contributions, in the words of the member that moves it most."""
    features = ["events_login_30d", "events_login_365d", "events_login_days_since_last", "recency_days"]
    writer = ReasonWriter(features, TEMPLATES_90, "raises churn risk")
    assert writer.groups == {"events type login": features[:3]}
    (reasons,) = writer.explain(np.array([[0.5, -0.3, 0.1, 0.05]]), np.array([[4.0, 65.0, 3.0, 3.0]]), k=3)
    (counter,) = writer.explain(
        np.array([[0.5, -0.3, 0.1, 0.05]]), np.array([[4.0, 65.0, 3.0, 3.0]]), k=3, counter=True
    )
    assert [r["text"] for r in reasons][0] == "4 login events in the last 30 days (raises churn risk)"
    assert reasons[0]["impact"] == pytest.approx(0.3) and not any("login" in r["text"] for r in counter)


def test_a_writer_pickled_before_the_touchpoint_templates_writes_them():
    writer = ReasonWriter(["events_login_30d", "recency_days"], TEMPLATES_90, "raises churn risk")
    state = writer.__getstate__()
    state["templates"] = {f: t for f, t in state["templates"].items() if f != "events_login_30d"}
    old = ReasonWriter.__new__(ReasonWriter)
    old.__setstate__(state)
    assert old.templates == writer.templates
    (reasons,) = old.explain(np.array([[0.5, 0.0]]), np.array([[2.0, 3.0]]), k=1)
    assert reasons[0]["text"] == "2 login events in the last 30 days (raises churn risk)"


def test_a_count_of_an_event_type_reads_in_the_singular_and_as_none():
    assert tidy("1 support ticket events in the last 30 days") == "1 support ticket event in the last 30 days"
    assert tidy("0 support ticket events in the last 30 days") == "No support ticket events in the last 30 days"
    assert tidy("1 events on the phone channel so far") == "1 event on the phone channel so far"
    # Only the words before "events": not a count of one of something else.
    assert tidy("Bought in 1 of the last 12 months") == "Bought in 1 of the last 12 months"
    assert tidy("11 login events, 1 day") == "11 login events, 1 day"
