import ibis
import pandas as pd
import pytest

from features.breadth import breadth_features
from tests.features.conftest import AS_OF_FORMS, FUTURE_ROWS, ROWS, sorted_frame, tx

EXPECTED = pd.DataFrame(
    {
        "customer_id": ["a", "b"],
        "lines_per_order": [4 / 3, 1.0],
        "distinct_products": [2, 1],
        "distinct_products_365d": [2, 1],
        "lines_per_product": [2.0, 1.0],
        "quantity_per_order": [9 / 3, 5.0],  # a: 10 units bought, 1 returned
        "avg_unit_price": [10.0, 10.0],  # a: 100 for 10 units
        "distinct_categories": [2, 1],
        "top_category_share": [0.6, 1.0],  # a: y has 20 + 40 of 100 purchased
    }
)


@pytest.mark.parametrize("as_of", AS_OF_FORMS)
def test_breadth_by_hand(as_of):
    got = sorted_frame(breadth_features(ibis.memtable(tx(ROWS)), as_of=as_of))
    pd.testing.assert_frame_equal(got, EXPECTED, check_dtype=False, rtol=1e-12)


def test_optional_columns_are_optional():
    frame = tx(ROWS).drop(columns=["product_id", "category", "quantity"])
    got = sorted_frame(breadth_features(ibis.memtable(frame), as_of="2024-03-31"))
    assert list(got.columns) == ["customer_id", "lines_per_order"]
    assert got.lines_per_order.tolist() == [4 / 3, 1.0]


def test_breadth_ignores_rows_after_as_of():
    before = sorted_frame(breadth_features(ibis.memtable(tx(ROWS)), as_of="2024-03-31"))
    after = sorted_frame(breadth_features(ibis.memtable(tx(ROWS + FUTURE_ROWS)), as_of="2024-03-31"))
    pd.testing.assert_frame_equal(before, after)


def test_unknown_products_are_null_not_zero():
    """Lines without a product id say nothing about breadth: "bought 0 products" would be false."""
    rows = [
        ("d", "2024-03-01 00:00", 10, "o7", None, 1, "x"),
        ("d", "2024-03-02 00:00", 20, "o8", None, 2, "x"),
        ("e", "2022-01-01 00:00", 30, "o9", "p1", 3, "x"),  # known product, over 365 days before
        ("e", "2024-03-03 00:00", 40, "o10", None, 4, "x"),
    ]
    got = sorted_frame(breadth_features(ibis.memtable(tx(rows)), as_of="2024-03-31")).set_index("customer_id")
    assert got.loc["d", ["distinct_products", "distinct_products_365d", "lines_per_product"]].isna().all()
    assert got.loc["e", "distinct_products"] == 1 and got.loc["e", "distinct_products_365d"] == 0
    assert got.loc["e", "lines_per_product"] == 2.0  # both purchase lines over the one known product
