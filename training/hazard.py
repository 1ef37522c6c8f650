"""Fit the weekly hazard head (:mod:`models.hazard`) on person-weeks censored at a cut-off.

The hazard rows of a training set (``TrainingSet.hazard``: features at cut-offs ``c`` and the
days to each customer's next purchase) become one row per customer and week ``k`` after ``c``
for which the customer had not bought yet and the week had ended by ``end``; the label is 1 when
the first purchase after ``c`` fell in week ``k``, ``(c + 7k, c + 7k + 7]``. Censoring at ``end``
is what keeps a fold honest: the head that calibrates on the calibration cut-off is fitted with
``end`` = that cut-off, the final one with ``end`` = T.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.hazard import DAY_OF_YEAR, WEEK, HazardHead, design_matrix, week_start_day_of_year, week_weights

__all__ = ["fit_hazard", "person_weeks"]


def person_weeks(
    as_of: Sequence[Any], days_to_next: np.ndarray, *, end: Any, weeks: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The person-weeks of hazard rows, censored at ``end``.

    Parameters
    ----------
    as_of
        Each row's cut-off ``c``.
    days_to_next
        Days from ``c`` to the row's next purchase (NaN: none in the data).
    end
        The latest time whose outcomes may be read: week ``k`` of a row counts only when
        ``c + 7(k + 1) <= end``.
    weeks
        Weeks per row at most (``ceil(H / 7)``).

    Returns
    -------
    ``(row, week, day_of_year, label)``: the row index of each person-week, its week ``k``, the
    day of the year week ``k`` starts on, and 1 when the next purchase fell in it.
    """
    when = pd.to_datetime(pd.Series(as_of)).dt.normalize().to_numpy()
    wait = np.asarray(days_to_next, dtype=np.float64)
    end_day = pd.Timestamp(end).normalize().to_datetime64()
    observed = np.clip((end_day - when) / np.timedelta64(7, "D"), 0, weeks).astype(np.int64)
    # Weeks survived before the purchase: a purchase at 7k < d <= 7k + 7 is in week k.
    buy_week = np.where(np.isnan(wait), weeks, np.ceil(wait / 7.0) - 1).astype(np.int64)
    last = np.minimum(observed, buy_week + 1)  # weeks with a row: 0 .. last - 1
    row = np.repeat(np.arange(len(wait)), last)
    offset = np.arange(len(row)) - np.repeat(np.cumsum(last) - last, last)
    label = (offset == buy_week[row]).astype(np.float64)
    day_of_year = week_start_day_of_year(when[row], offset)
    return row, offset, day_of_year, label


def fit_hazard(
    X: np.ndarray,
    as_of: Sequence[Any],
    days_to_next: np.ndarray,
    *,
    end: Any,
    horizon_days: int,
    feature_names: Sequence[str],
    categorical: Sequence[int],
    params: Mapping[str, Any],
    rounds: int,
    default_as_of: Any,
    outcome: str = "no_purchase",
) -> HazardHead:
    """Fit the hazard booster on the person-weeks of the rows of ``X`` censored at ``end``.

    ``params`` are LightGBM parameters (monotone constraints over ``feature_names`` only; the week
    and calendar columns get none). ``rounds`` boosting rounds, no early stopping: the weeks
    closest to ``end`` are the ones the head exists to learn from. ``outcome`` says what the
    head's score is the log-odds of (:class:`models.hazard.HazardHead`).

    Raises
    ------
    ValueError
        No person-week is observed by ``end``, or none has a purchase.
    """
    weeks = len(week_weights(horizon_days))
    row, week, day_of_year, label = person_weeks(as_of, days_to_next, end=end, weeks=weeks)
    if len(row) == 0 or label.min() == label.max():
        raise ValueError(
            f"the weekly hazard head has {len(row):,} person-weeks observed by {pd.Timestamp(end).date()} "
            f"with {int(label.sum()):,} purchases: it needs both weeks with and without one"
        )
    design = design_matrix(X[row], week, day_of_year)
    params = dict(params)
    if "monotone_constraints" in params:
        params["monotone_constraints"] = [*params["monotone_constraints"], 0, 0]
    data = lgb.Dataset(
        design, label, feature_name=[*feature_names, WEEK, DAY_OF_YEAR], categorical_feature=list(categorical)
    )
    booster = lgb.train(params, data, num_boost_round=rounds)
    return HazardHead(
        booster=booster,
        feature_names=tuple(feature_names),
        horizon_days=horizon_days,
        default_as_of=str(pd.Timestamp(default_as_of).date()),
        outcome=outcome,
    )
