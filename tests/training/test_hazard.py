"""Person-weeks of the weekly hazard head: which weeks count, their labels and calendar, censoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.hazard import fit_hazard, person_weeks

AS_OF = pd.to_datetime(["2011-01-01"] * 4 + ["2011-01-15"])
# Days to the next purchase: in week 0; exactly 7 days (still week 0); 7.5 days (week 1);
# none in the data; 20 days, in week 2, which the end below has not reached for that cut-off.
WAIT = np.array([3.5, 7.0, 7.5, np.nan, 20.0])


def test_person_weeks_stop_at_the_purchase_and_at_the_end():
    row, week, day_of_year, label = person_weeks(AS_OF, WAIT, end="2011-02-01", weeks=13)
    # 2011-01-01 has 4 whole weeks before 2011-02-01, 2011-01-15 two.
    assert row.tolist() == [0, 1, 2, 2, 3, 3, 3, 3, 4, 4]
    assert week.tolist() == [0, 0, 0, 1, 0, 1, 2, 3, 0, 1]
    assert label.tolist() == [1, 1, 0, 1, 0, 0, 0, 0, 0, 0]
    assert day_of_year.tolist() == [1, 1, 1, 8, 1, 8, 15, 22, 15, 22]


def test_person_weeks_stop_at_the_horizon():
    row, week, _, label = person_weeks(AS_OF, WAIT, end="2012-01-01", weeks=2)
    assert row.tolist() == [0, 1, 2, 2, 3, 3, 4, 4]
    assert week.tolist() == [0, 0, 0, 1, 0, 1, 0, 1]
    assert label.tolist() == [1, 1, 0, 1, 0, 0, 0, 0]  # row 4 buys in week 2, past the horizon


def test_nothing_is_read_before_a_week_has_ended():
    row, *_ = person_weeks(AS_OF, WAIT, end="2011-01-07 23:00", weeks=13)
    assert len(row) == 0
    with pytest.raises(ValueError, match="0 person-weeks observed by 2011-01-07"):
        fit_hazard(
            np.zeros((5, 1)),
            AS_OF,
            WAIT,
            end="2011-01-07",
            horizon_days=90,
            feature_names=["x"],
            categorical=[],
            params={"objective": "binary", "verbosity": -1},
            rounds=5,
            default_as_of="2011-03-01",
        )
