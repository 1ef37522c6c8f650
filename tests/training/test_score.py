"""Batch output is written atomically: a failure leaves no partial file."""

from __future__ import annotations

import pandas as pd
import pytest

from training.score import write_atomic


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
