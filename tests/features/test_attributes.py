import pandas as pd
import pytest

from features.attributes import attribute_features, transaction_attribute_columns
from tests.features.conftest import AS_OF_FORMS, ROWS, make_tables, sorted_frame, tx


def _with_attributes() -> pd.DataFrame:
    frame = tx(ROWS)
    # a: UK twice, FR once before as_of, then FR after it; b: DE. description is free text.
    frame["country"] = ["UK", "UK", "FR", "FR", "FR", "FR", "DE", "DE"]
    frame["description"] = [f"item {i}" for i in range(len(frame))]
    return frame


@pytest.mark.parametrize("as_of", AS_OF_FORMS)
def test_most_frequent_value_before_as_of(as_of):
    tables = make_tables(_with_attributes())
    got = sorted_frame(attribute_features(tables, as_of=as_of, columns=("country",)))
    # a: UK 2 lines, FR 3 lines (incl. the refund and the order at as_of); the one after as_of is not counted
    pd.testing.assert_frame_equal(got, pd.DataFrame({"customer_id": ["a", "b"], "country": ["FR", "DE"]}))


def test_ties_go_to_the_most_recent_value():
    frame = _with_attributes()
    frame.loc[4, "country"] = "UK"  # a: UK 3 (last 2024-03-31), FR 2
    frame.loc[3, "country"] = "FR"
    frame.loc[0, "country"] = "FR"  # a: UK 2 (last 2024-03-31), FR 3 -> FR
    got = sorted_frame(attribute_features(make_tables(frame), as_of="2024-03-31", columns=("country",)))
    assert got.country.tolist() == ["FR", "DE"]


def test_free_text_is_not_an_attribute():
    frame = _with_attributes()
    import ibis

    assert transaction_attribute_columns(ibis.memtable(frame), max_cardinality=5) == ("country",)


def test_customers_table_attributes_and_signup():
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "segment": ["gold", "silver"],
            "signup_at": pd.to_datetime(["2024-03-01", "2024-05-01"]),
        }
    )
    tables = make_tables(tx(ROWS), customers=customers)
    got = sorted_frame(attribute_features(tables, as_of="2024-03-31"))
    expected = pd.DataFrame(
        {"customer_id": ["a", "b"], "segment": ["gold", "silver"], "days_since_signup": [30.0, float("nan")]}
    )
    pd.testing.assert_frame_equal(got, expected)


def test_a_customers_table_keeps_the_transaction_attributes_beside_its_own():
    """Until 2026-12-07 a customers table took the place of the transactions' attributes, which were
    dropped without a word (a `country` mapped on the orders vanished once a customers table was
    mapped). Now both; a name in both is the customers table's."""
    customers = pd.DataFrame({"customer_id": ["a", "b", "c"], "segment": ["gold", "silver", "new"]})
    tables = make_tables(_with_attributes(), customers=customers)
    got = sorted_frame(attribute_features(tables, as_of="2024-03-31", columns=("country",)))
    expected = pd.DataFrame(
        {"customer_id": ["a", "b", "c"], "segment": ["gold", "silver", "new"], "country": ["FR", "DE", None]}
    )
    pd.testing.assert_frame_equal(got, expected)
    clash = make_tables(_with_attributes(), customers=customers.assign(country=["SE", "SE", "SE"]))
    assert (
        sorted_frame(attribute_features(clash, as_of="2024-03-31", columns=("country",))).country.tolist() == ["SE"] * 3
    )
    # Where the customers table has no value (b's null; a missing from it), the orders' country fills it,
    # and a customer of the customers table alone (c) keeps its own.
    partial = make_tables(_with_attributes(), customers=customers.iloc[1:].assign(country=[None, "SE"]))
    got = sorted_frame(attribute_features(partial, as_of="2024-03-31", columns=("country",)))
    assert got.set_index("customer_id").country.to_dict() == {"a": "FR", "b": "DE", "c": "SE"}
