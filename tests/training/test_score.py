"""Batch output is written atomically: a failure leaves no partial file; where the scoring date sits
in the data (after its end, or within a year of its start) is said."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.features.conftest import ROWS, make_tables, tx
from training.score import date_warnings, write_atomic


def test_write_atomic_parquet_and_csv(tmp_path):
    frame = pd.DataFrame({"customer_id": ["a", "b"], "probability": [0.1, 0.9]})
    for name in ("s.parquet", "s.csv"):
        write_atomic(frame, tmp_path / name)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "s.parquet"), frame)
    assert pd.read_csv(tmp_path / "s.csv").shape == (2, 2)


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    out = tmp_path / "scores.parquet"
    bad = pd.DataFrame({"x": [object(), object()]})  # pyarrow cannot write plain objects
    with pytest.raises(Exception):  # noqa: B017 - whatever pyarrow raises, nothing may be left behind
        write_atomic(bad, out)
    assert list(tmp_path.iterdir()) == []
    out.write_text("previous")
    with pytest.raises(Exception):  # noqa: B017
        write_atomic(bad, out)
    assert out.read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(ValueError, match=".json"):
        write_atomic(pd.DataFrame({"a": [1]}), tmp_path / "s.json")


def test_a_date_within_a_year_of_the_first_row_or_after_the_last_is_said():
    tables = make_tables(tx(ROWS))  # hand-made: 2023-04-15 12:00 to 2024-04-10 00:00
    inside = date_warnings(tables, "churn", "2024-04-10")
    assert inside["stale_warning"] is None  # the last row's day
    assert inside["history_warning"] == (
        "the scoring date 2024-04-10 00:00 is 360 days after the first row of table 'transactions' "
        "(2023-04-15 12:00), less than the 365 days the churn features look back: histories are cut short "
        "where the data starts, so customers look newer and less active than they are"
    )
    later = date_warnings(tables, "churn", "2024-04-14")
    assert later["stale_warning"] == (
        "the scoring date 2024-04-14 00:00 is 4 days after the last row of table 'transactions' (2024-04-10 00:00): "
        "those days count as days without a purchase or a new lead (a stale export?)"
    )
    assert later["history_warning"] is not None  # both apply: 364 days of history
    assert (
        date_warnings(tables, "next_purchase", "2024-04-14 12:00")["history_warning"] is None
    )  # 365 days (2024 is a leap year)
    assert date_warnings(tables, "next_purchase", "2024-04-14 11:59")["history_warning"] is not None
    assert date_warnings(tables, "churn", "2023-04-01")["history_warning"] is None  # before the data: no population
