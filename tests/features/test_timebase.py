import datetime as dt

import pandas as pd
import pytest

from features.timebase import normalize_as_of


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (dt.date(2011, 9, 10), dt.datetime(2011, 9, 10)),
        ("2011-09-10", dt.datetime(2011, 9, 10)),
        (dt.datetime(2011, 9, 10, 12, 30), dt.datetime(2011, 9, 10, 12, 30)),
        ("2011-09-10T12:30:00", dt.datetime(2011, 9, 10, 12, 30)),
        (pd.Timestamp("2011-09-10 01:00"), dt.datetime(2011, 9, 10, 1)),
        (dt.datetime(2011, 9, 10, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))), dt.datetime(2011, 9, 10)),
    ],
)
def test_one_meaning_of_as_of(given, expected):
    assert normalize_as_of(given) == expected


def test_bad_as_of_is_an_error():
    with pytest.raises(ValueError, match="as_of"):
        normalize_as_of("10/09/2011")
    with pytest.raises(TypeError, match="as_of"):
        normalize_as_of(None)
