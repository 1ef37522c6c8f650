"""The config's row filters on posted lines: rewritten from source columns onto posted fields, and applied."""

from __future__ import annotations

import datetime as dt

import pytest

from serving.posted_rules import describe, posted_rules
from serving.runtime import RequestError, _drop_filtered_lines
from tests.conftest import minimal_config_dict


@pytest.fixture
def config(minimal_config):
    def make(filters, *, attributes=None, columns=None, engine="duckdb"):
        tx = minimal_config_dict()["tables"]["transactions"]
        tx["columns"] = {**tx["columns"], "quantity": "qty", "product_id": "Stock Code", **(columns or {})}
        tx["attributes"] = {"country": "Country"} if attributes is None else attributes
        tx["filters"] = [{"name": name, "keep": keep} for name, keep in filters.items()]
        return minimal_config(tables={"transactions": tx}, engine=engine)

    return make


def test_filters_read_posted_fields_for_the_source_columns_mapped_onto_them(config):
    rules = posted_rules(
        config(
            {
                "price": "price > 0",  # amount: qty * price, quantity: qty -> amount / quantity
                "fee": "\"Stock Code\" NOT IN ('POST', 'M')",  # a column mapped as it is, named with a space
                "country": "Country <> 'Unspecified'",  # an attribute
                "since": "ts >= '2010-01-01'",
                "unmapped": "discount < 0.5",
            }
        ),
        "churn",
    )
    assert [(r.name, r.sql, r.fields) for r in rules] == [
        ("price", '("amount" / NULLIF("quantity", 0)) > 0', ("amount", "quantity")),
        ("fee", "NOT \"product_id\" IN ('POST', 'M')", ("product_id",)),
        ("country", "\"country\" <> 'Unspecified'", ("country",)),
        ("since", "\"timestamp\" >= '2010-01-01'", ("timestamp",)),
        ("unmapped", None, ()),
    ]
    assert rules[-1].why_not == "it reads discount, which no posted field stands for"
    assert describe(rules)["not_applied"] == {"tables.transactions: unmapped": rules[-1].why_not}
    assert set(describe(rules)["applied"]) == {
        f"tables.transactions: {n}" for n in ("price", "fee", "country", "since")
    }


def test_a_spark_config_filter_is_read_as_spark_sql_and_every_column_is_an_attribute_with_a_star(config):
    (rule,) = posted_rules(config({"region": "`Region` = 'EU'"}, attributes="*", engine="spark"), "next_purchase")
    assert rule.sql == "\"Region\" = 'EU'" and rule.fields == ("Region",)
    # A price with no quantity mapped has no stand-in.
    (rule,) = posted_rules(config({"price": "price > 0"}, columns={"quantity": "units"}), "churn")
    assert rule.sql is None and "price" in rule.why_not


def _line(amount, quantity, product="85123A", day=1):
    return {"timestamp": f"2011-10-{day:02d}T10:00:00", "amount": amount, "quantity": quantity, "product_id": product}


def test_posted_lines_a_filter_drops_are_dropped_and_counted_under_the_first_filter_they_fail(config):
    cfg = config({"price": "price > 0", "fee": "\"Stock Code\" NOT IN ('POST')", "country": "Country <> 'Unspecified'"})
    rules = posted_rules(cfg, "churn")
    records = [
        {
            "customer_id": "a",
            "attributes": {"country": "France"},
            "purchases": [
                _line(10.0, 2),
                _line(0.0, 3),  # price 0
                _line(-4.0, -2),  # a refund: price 2
                _line(5.0, 1, "POST"),
                _line(0.0, 1, "POST"),  # fails both: counted under the first
                _line(7.0, None),  # no quantity: the price filter cannot judge it
                _line(7.0, 0),  # nor with none
                {"timestamp": "2011-10-02T10:00:00", "amount": 3.0, "quantity": 1},  # no product_id: kept
            ],
        },
        {"customer_id": "b", "attributes": {"country": "Unspecified"}, "purchases": [_line(1.0, 1)]},
        {"customer_id": "c", "attributes": {}, "purchases": [_line(1.0, 1)]},
    ]
    kept, said = _drop_filtered_lines(cfg, rules, "customers", "customer_id", records)
    assert [len(r["purchases"]) for r in kept] == [5, 0, 1]
    assert [p["amount"] for p in kept[0]["purchases"]] == [10.0, -4.0, 7.0, 7.0, 3.0]
    assert said == {
        "a": "customers[0].purchases: 3 of the 8 lines were dropped by the config's row filters (2 by 'price', 1 by "
        "'fee'; tables.transactions.filters), as in the stored data",
        "b": "customers[1].purchases: 1 of the 1 lines was dropped by the config's row filters (1 by 'country'; "
        "tables.transactions.filters), as in the stored data",
    }
    assert records[0]["purchases"][1]["amount"] == 0.0 and len(records[0]["purchases"]) == 8  # the request untouched


def test_a_filter_duckdb_cannot_evaluate_on_the_posted_values_is_a_400_naming_it(config):
    cfg = config({"big": "Country > 3"})
    records = [{"customer_id": "a", "attributes": {"country": "France"}, "purchases": [_line(1.0, 1)]}]
    with pytest.raises(RequestError, match=r"customers\[\]\.purchases: the config's filter 'big'") as raised:
        _drop_filtered_lines(cfg, posted_rules(cfg, "churn"), "customers", "customer_id", records)
    assert raised.value.field == "customers[].purchases"


def test_a_filter_on_the_time_column_reads_posted_times_in_utc(config):
    """Times as the request schema hands them over: datetimes, with or without an offset."""
    cfg = config({"since": "ts >= '2011-10-02'"})
    paris = dt.timezone(dt.timedelta(hours=1))
    times = [dt.datetime(2011, 10, 1, 10), dt.datetime(2011, 10, 2, 10), dt.datetime(2011, 10, 2, 0, 30, tzinfo=paris)]
    records = [{"customer_id": "a", "purchases": [{**_line(1.0, 1), "timestamp": t} for t in times]}]
    kept, said = _drop_filtered_lines(cfg, posted_rules(cfg, "churn"), "customers", "customer_id", records)
    assert [p["timestamp"] for p in kept[0]["purchases"]] == [times[1]]  # the last is 23:30 UTC the day before
    assert "2 of the 3 lines were dropped" in said["a"]


def test_without_a_price_filter_a_line_of_opposite_signs_is_kept_and_named():
    """A config whose filters do not judge it (none here) keeps 10.0 for -5 units, taken by its amount's sign."""
    from types import SimpleNamespace

    from serving.runtime import _posted_but_unread

    scorer = SimpleNamespace(feature_names=["recency_days", "monetary_365d"])
    records = [{"customer_id": "a", "purchases": [_line(10.0, -5), _line(-3.0, -1), _line(4.0, 2)]}]
    said = _posted_but_unread(scorer, "churn", "customers", records, dt.datetime(2011, 12, 1))
    assert said["a"][-1:] == [
        "customers[0].purchases: 1 of the 3 lines have an amount and a quantity of opposite signs (a refund has both "
        "negative); each was taken by its amount's sign"
    ]
