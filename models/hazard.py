"""A weekly purchase hazard, chained over the horizon into P(no purchase in H days), with exact reasons.

The churn booster learns from 90-day label windows that close before the test cut-off, one a
month: it never sees the most recent weeks, and sees the calendar only through the handful of
windows it was fitted on. The hazard head is a second LightGBM classifier over person-weeks
(a discrete-time survival model): a row is a customer's features at a cut-off ``c``, the week
``k`` after it (0, 1, ...) and the day of the year that week starts on, and its label says
whether the customer's first purchase after ``c`` fell in that week (rows exist only for the
weeks before that purchase). Any week that has ended by the test cut-off labels a row, so the
head learns from the last weeks before T and from every week of the year before, the Christmas
peak included.

For a customer scored as of ``as_of`` the head predicts the hazard ``h_k`` of each week
``k = 0 .. ceil(H / 7) - 1`` from the same feature row and the calendar of week ``k``, and

    log S = sum_k w_k log(1 - h_k)        (w_k = 1, the last week its share of the horizon)

is the log-probability of no purchase in ``(as_of, as_of + H]``. :meth:`HazardHead.raw` is
``logit(S)`` for a model of churn (``outcome="no_purchase"``) and ``logit(1 - S) = -logit(S)`` for
one of the next purchase (``outcome="purchase"``): the scale the scorer blends it on.

Reasons. LightGBM gives each week's raw score ``r_k`` split into per-feature SHAP values
``phi_k``. ``logit(S)`` is a non-linear function of the ``r_k``, so the feature parts are its
integrated gradients along the path that scales every ``phi_k`` from 0 to its value:
``sum_k (d logit S / d r_k)(t) * phi_kj`` integrated over ``t`` in [0, 1] (Gauss-Legendre). The
path starts at the week's expected value plus the parts of the week and day-of-year columns
(the season's hazard for this row), which go, with the quadrature's remainder, to the
expected-value column, so every row sums exactly to :meth:`HazardHead.raw`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.timebase import normalize_as_of

__all__ = [
    "DAY_OF_YEAR",
    "OUTCOMES",
    "WEEK",
    "HazardHead",
    "design_matrix",
    "week_calendar",
    "week_start_day_of_year",
    "week_weights",
]

# What the head's score is the log-odds of, and its sign on logit(S).
OUTCOMES = {"no_purchase": 1.0, "purchase": -1.0}

# The two columns the head adds to the model matrix: the week after the cut-off and its calendar.
WEEK = "hazard_week"
DAY_OF_YEAR = "hazard_day_of_year"

# Rows per block of :meth:`HazardHead.contributions`: 13 weeks of SHAP values of 50,000 rows and
# 60 columns hold about 300 MB; a million customers scored at once would otherwise need 13 GB.
CHUNK_ROWS = 50_000

# Gauss-Legendre nodes on [0, 1] for the integrated gradients: 8 points integrate the path of a
# smooth function of 13 weekly scores to ~1e-9 of the score; the remainder is kept in the bias.
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(8)
_NODES, _WEIGHTS = (_NODES + 1.0) / 2.0, _WEIGHTS / 2.0


def week_weights(horizon_days: int) -> np.ndarray:
    """Each week's share of the horizon: 1 for the full weeks, the rest for the last (6/7 for 90 days)."""
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    weeks = math.ceil(horizon_days / 7)
    weights = np.ones(weeks)
    weights[-1] = (horizon_days - 7 * (weeks - 1)) / 7
    return weights


def week_calendar(as_of: Any, weeks: int | Sequence[int]) -> np.ndarray:
    """The day of the year (1-366) on which week ``k`` after ``as_of`` starts, for each ``k``."""
    ks = np.arange(weeks) if isinstance(weeks, int) else np.asarray(weeks, dtype=np.int64)
    start = pd.Timestamp(normalize_as_of(as_of)).normalize().to_datetime64()
    return week_start_day_of_year(np.full(len(ks), start), ks)


def week_start_day_of_year(cutoff: np.ndarray, week: np.ndarray) -> np.ndarray:
    """The day of the year (1-366) of ``cutoff + 7 x week``, element by element (``cutoff``: days,
    as ``datetime64``): the calendar the head reads for week ``week`` after a cut-off, in scoring
    (:func:`week_calendar`) and in training (``training.hazard.person_weeks``) alike."""
    start = np.asarray(cutoff, dtype="datetime64[ns]") + np.asarray(week, dtype=np.int64) * np.timedelta64(7, "D")
    return pd.DatetimeIndex(start).dayofyear.to_numpy(np.float64)


def design_matrix(X: np.ndarray, week: Any, day_of_year: Any) -> np.ndarray:
    """What the hazard booster reads: ``X`` with :data:`WEEK` and :data:`DAY_OF_YEAR` appended
    (one value for every row, or one per row)."""
    design = np.empty((X.shape[0], X.shape[1] + 2), dtype=np.float64)
    design[:, :-2] = X
    design[:, -2] = week
    design[:, -1] = day_of_year
    return design


def _logit_survival(log_s: np.ndarray) -> np.ndarray:
    """``logit(S) = log S - log(1 - S)`` from ``log S < 0``, stable at both ends."""
    x = np.minimum(log_s, -1e-12)
    return log_s - np.where(x > -0.693, np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


@dataclass
class HazardHead:
    """The fitted weekly hazard and how to chain it (see the module docstring).

    Attributes
    ----------
    booster
        LightGBM binary classifier of a purchase in the week; its columns are ``feature_names``
        followed by :data:`WEEK` and :data:`DAY_OF_YEAR`.
    feature_names
        The scorer's matrix columns, in order (the head reads the same matrix as the booster).
    horizon_days
        H: the head gives P(no purchase in ``(as_of, as_of + H]``).
    default_as_of
        ISO date whose calendar is used when a caller gives no scoring date: the training run's
        test cut-off, as the calibrator's seasonal correction does.
    num_iteration
        Trees used (None: all).
    outcome
        ``"no_purchase"`` (churn: the score is ``logit(S)``) or ``"purchase"`` (next purchase:
        ``-logit(S)``).
    """

    booster: Any
    feature_names: tuple[str, ...]
    horizon_days: int
    default_as_of: str
    num_iteration: int | None = None
    outcome: str = "no_purchase"

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, got {self.outcome!r}")

    @property
    def sign(self) -> float:
        return OUTCOMES[self.outcome]

    @property
    def weights(self) -> np.ndarray:
        return week_weights(self.horizon_days)

    def week_matrices(self, X: np.ndarray, as_of: Any = None) -> Iterator[np.ndarray]:
        """What the booster reads for each week, one week at a time: ``X`` with the week and its day
        of the year appended."""
        X = self._check(X)
        calendar = week_calendar(self.default_as_of if as_of is None else as_of, len(self.weights))
        for k, day_of_year in enumerate(calendar):
            yield design_matrix(X, k, day_of_year)

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"X must have shape (n, {len(self.feature_names)}), got {X.shape}")
        return X

    def weekly_raw(self, X: np.ndarray, as_of: Any = None) -> np.ndarray:
        """The raw (log-odds) hazard of each week, shape ``(n, weeks)``."""
        return np.column_stack(
            [
                self.booster.predict(design, raw_score=True, num_iteration=self.num_iteration)
                for design in self.week_matrices(X, as_of)
            ]
        )

    def log_survival(self, weekly_raw: np.ndarray) -> np.ndarray:
        """``log S`` from the weekly raw scores: ``sum_k w_k log(1 - sigmoid(r_k))``."""
        # log(1 - sigmoid(r)) = -softplus(r), computed without overflow.
        return -(np.logaddexp(0.0, weekly_raw) * self.weights).sum(axis=1)

    def survival(self, X: np.ndarray, as_of: Any = None) -> np.ndarray:
        """P(no purchase in ``(as_of, as_of + H]``) per row."""
        return np.exp(self.log_survival(self.weekly_raw(X, as_of)))

    def raw(self, X: np.ndarray, as_of: Any = None) -> np.ndarray:
        """The head's score on the log-odds scale: ``logit(S)``, or ``-logit(S)`` for ``outcome="purchase"``."""
        return self.sign * _logit_survival(self.log_survival(self.weekly_raw(X, as_of)))

    def contributions(self, X: np.ndarray, as_of: Any = None) -> np.ndarray:
        """Per-feature parts of :meth:`raw` and the expected-value column; each row sums to :meth:`raw`.

        Integrated gradients along the SHAP path of each week (module docstring); the week and
        day-of-year parts, like the bias, belong to the season and go to the last column. Rows are
        taken :data:`CHUNK_ROWS` at a time: the weeks' SHAP values of a block are 13 times its matrix.
        """
        X = self._check(X)
        if len(X) <= CHUNK_ROWS:
            return self._contributions(X, as_of)
        return np.vstack([self._contributions(X[i : i + CHUNK_ROWS], as_of) for i in range(0, len(X), CHUNK_ROWS)])

    def _contributions(self, X: np.ndarray, as_of: Any) -> np.ndarray:
        n, f = X.shape
        phis, starts = [], []
        for design in self.week_matrices(X, as_of):
            contrib = self.booster.predict(design, pred_contrib=True, num_iteration=self.num_iteration)
            phis.append(contrib[:, :f])
            starts.append(contrib[:, f:].sum(axis=1))  # week, day of year and the expected value
        phi = np.stack(phis, axis=1)  # (n, weeks, f)
        start = np.column_stack(starts)  # (n, weeks)
        total = phi.sum(axis=2)
        parts = np.zeros((n, f))
        for t, weight in zip(_NODES, _WEIGHTS, strict=True):
            r = start + t * total
            log_s = self.log_survival(r)
            # d logit(S) / d r_k = -w_k sigmoid(r_k) / (1 - S)
            hazard = 0.5 * (1.0 + np.tanh(r / 2.0))  # sigmoid(r) without overflow
            grad = -self.weights * hazard / np.clip(-np.expm1(log_s), 1e-300, None)[:, None]
            parts += weight * np.einsum("nk,nkf->nf", grad, phi)
        raw_end = _logit_survival(self.log_survival(start + total))
        out = np.empty((n, f + 1))
        out[:, :f] = parts
        out[:, f] = raw_end - parts.sum(axis=1)
        return self.sign * out
