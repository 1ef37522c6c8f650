"""Tiny hand-made canonical tables for the feature tests."""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd
import pytest

from features.sources import CanonicalTables

AS_OF = dt.datetime(2024, 3, 31)
# The same cut-off, given each way the API accepts it (a date is midnight at the start of the day).
AS_OF_FORMS = [dt.date(2024, 3, 31), dt.datetime(2024, 3, 31), "2024-03-31", "2024-03-31T00:00:00"]


def tx(rows: list[tuple]) -> pd.DataFrame:
    """Transactions from (customer_id, timestamp, amount, order_id, product_id, quantity, category) tuples."""
    frame = pd.DataFrame(
        rows, columns=["customer_id", "timestamp", "amount", "order_id", "product_id", "quantity", "category"]
    )
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], format="ISO8601")
    frame["amount"] = frame["amount"].astype("float64")
    frame["quantity"] = frame["quantity"].astype("float64")
    return frame


def make_tables(transactions: pd.DataFrame | None = None, **others: pd.DataFrame | None) -> CanonicalTables:
    con = ibis.duckdb.connect()
    mem = {k: (None if v is None else ibis.memtable(v)) for k, v in others.items()}
    return CanonicalTables(con=con, transactions=None if transactions is None else ibis.memtable(transactions), **mem)


# Customer a: orders o1 (two lines) on 2024-01-01 (exactly 90 days before AS_OF), o2 on 2024-03-01
# (exactly 30 days before), a refund on 2024-03-11, o3 exactly at AS_OF and o4 after it.
# Customer b: one order 350.5 days before AS_OF. Customer c: only after AS_OF.
ROWS = [
    ("a", "2024-01-01 00:00", 10, "o1", "p1", 1, "x"),
    ("a", "2024-01-01 00:00", 20, "o1", "p2", 2, "y"),
    ("a", "2024-03-01 00:00", 30, "o2", "p1", 3, "x"),
    ("a", "2024-03-11 00:00", -5, "r1", "p1", -1, "x"),
    ("a", "2024-03-31 00:00", 40, "o3", "p2", 4, "y"),
    ("a", "2024-04-01 00:00", 100, "o4", "p1", 1, "x"),
    ("b", "2023-04-15 12:00", 50, "o5", "p3", 5, "z"),
    ("c", "2024-04-10 00:00", 70, "o6", "p3", 1, "z"),
]

# Rows after AS_OF: for every customer, a new one, and a refund; they must change no feature.
FUTURE_ROWS = [
    ("a", "2024-03-31 00:00:01", 999, "f1", "p9", 9, "w"),
    ("b", "2024-05-01 00:00", -50, "f2", "p3", -5, "z"),
    ("new", "2024-04-02 00:00", 5, "f3", "p1", 1, "x"),
]


@pytest.fixture
def transactions() -> pd.DataFrame:
    return tx(ROWS)


@pytest.fixture
def tables(transactions) -> CanonicalTables:
    return make_tables(transactions)


def sorted_frame(table, key: str = "customer_id") -> pd.DataFrame:
    return table.to_pandas().sort_values(key).reset_index(drop=True)
