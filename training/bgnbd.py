"""A compact BG/NBD model (Fader, Hardie & Lee 2005, "Counting your customers the easy way").

While alive, a customer buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)``;
after each repeat purchase they drop out with probability ``p ~ Beta(a, b)``. Per customer the
sufficient statistics are ``x`` (repeat purchases), ``t_x`` (time of the last purchase, from the
first) and ``T`` (time from the first purchase to the cut-off). Parameters are fitted by
maximum likelihood with scipy on log-parameters. Time is in whatever unit the caller uses
(days here; the paper uses weeks: only ``alpha`` changes with the unit).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

__all__ = ["BGNBD", "rfm_summary", "simulate"]


def _log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    r, alpha, a, b = params
    # FHL 2005, eq. 6, in logs: A1 + A2 + log(exp(A3) + delta(x>0) exp(A4)).
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + t_x), -np.inf)
    return a1 + a2 + np.logaddexp(a3, a4)


@dataclass
class BGNBD:
    """BG/NBD parameters; build with :meth:`fit` or directly from published values."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood_: float | None = None

    @property
    def params(self) -> np.ndarray:
        return np.array([self.r, self.alpha, self.a, self.b])

    @classmethod
    def fit(
        cls, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, *, init: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    ) -> BGNBD:
        """Maximum-likelihood fit on per-customer ``x``, ``t_x``, ``T``.

        Raises
        ------
        ValueError
            Inputs of different lengths, negative values or ``t_x > T``.
        RuntimeError
            The optimiser did not converge.
        """
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        if not (x.shape == t_x.shape == T.shape) or x.ndim != 1 or len(x) == 0:
            raise ValueError("x, t_x and T must be non-empty 1-d arrays of the same length")
        if (x < 0).any() or (t_x < 0).any() or (t_x > T + 1e-9).any():
            raise ValueError("need x >= 0 and 0 <= t_x <= T for every customer")

        def objective(log_params: np.ndarray) -> float:
            return -float(_log_likelihood(np.exp(log_params), x, t_x, T).sum())

        result = minimize(
            objective,
            np.log(np.asarray(init)),
            method="Nelder-Mead",
            options={"maxiter": 10_000, "xatol": 1e-6, "fatol": 1e-6},
        )
        result = minimize(objective, result.x, method="L-BFGS-B")
        if not np.isfinite(result.fun):
            raise RuntimeError(f"BG/NBD fit failed: {result.message}")
        r, alpha, a, b = np.exp(result.x)
        return cls(float(r), float(alpha), float(a), float(b), -float(result.fun))

    def log_likelihood(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> float:
        """Total log-likelihood of the data at these parameters."""
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        return float(_log_likelihood(self.params, x, t_x, T).sum())

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(still alive at T | x, t_x, T) (FHL 2005, eq. 11)."""
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        r, alpha, a, b = self.params
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            odds = a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x)
        return np.where(x > 0, 1.0 / (1.0 + odds), 1.0)

    def expected_purchases(self, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """E[purchases in (T, T + t] | x, t_x, T] (FHL 2005, eq. 10).

        The closed form divides by ``a - 1``: it holds for any ``a != 1`` (CDNOW has ``a = 0.793``).
        """
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        r, alpha, a, b = self.params
        z = t / (alpha + T + t)
        head = (a + b + x - 1) / (a - 1)
        body = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            odds = np.where(x > 0, a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
        return head * body / (1 + odds)

    def expected_purchases_new(self, t: float | np.ndarray) -> np.ndarray:
        """E[X(t)]: expected repeat purchases in (0, t] of a customer just acquired (FHL 2005, eq. 9)."""
        r, alpha, a, b = self.params
        t = np.asarray(t, dtype=np.float64)
        z = t / (alpha + t)
        return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, z))

    def p_no_purchase(self, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(no purchase in (T, T + t] | x, t_x, T): dead, or alive and silent for t.

        Alive at T, a customer can only drop out after a purchase, so "silent for t" has
        probability E[exp(-lambda t)] under the posterior ``lambda | alive ~ Gamma(r + x, alpha + T)``.
        """
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        alive = self.p_alive(x, t_x, T)
        silent = ((self.alpha + T) / (self.alpha + T + t)) ** (self.r + x)
        return (1 - alive) + alive * silent


def rfm_summary(transactions: pd.DataFrame, *, as_of: dt.datetime, unit_days: float = 1.0) -> pd.DataFrame:
    """BG/NBD statistics per customer from purchases at or before ``as_of``.

    Parameters
    ----------
    transactions
        Columns ``customer_id``, ``timestamp``, ``amount``; a purchase is ``amount > 0``.
    as_of
        The cut-off; one purchase per calendar day counts (the BTYD convention).
    unit_days
        Length of one time unit in days.

    Returns
    -------
    ``customer_id``, ``x`` (repeat purchase days), ``t_x`` and ``T`` in units.
    """
    missing = [c for c in ("customer_id", "timestamp", "amount") if c not in transactions.columns]
    if missing:
        raise ValueError(f"transactions: column '{missing[0]}' is missing")
    t = transactions[(transactions["amount"] > 0) & (transactions["timestamp"] <= pd.Timestamp(as_of))]
    days = t.assign(day=t["timestamp"].dt.floor("D")).groupby("customer_id")["day"].agg(["min", "max", "nunique"])
    cutoff = pd.Timestamp(as_of).floor("D")
    return pd.DataFrame(
        {
            "customer_id": days.index.astype(str),
            "x": (days["nunique"] - 1).to_numpy(dtype=np.float64),
            "t_x": ((days["max"] - days["min"]).dt.days / unit_days).to_numpy(dtype=np.float64),
            "T": ((cutoff - days["min"]).dt.days / unit_days).to_numpy(dtype=np.float64),
        }
    ).reset_index(drop=True)


def simulate(model: BGNBD, T: np.ndarray, *, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``x``, ``t_x`` for customers observed for ``T`` under the BG/NBD process."""
    T = np.asarray(T, dtype=np.float64)
    lam = rng.gamma(model.r, 1.0 / model.alpha, size=len(T))
    p = rng.beta(model.a, model.b, size=len(T))
    x = np.zeros(len(T))
    t_x = np.zeros(len(T))
    for i in range(len(T)):
        t = 0.0
        while True:
            t += rng.exponential(1.0 / lam[i])
            if t > T[i]:
                break
            x[i] += 1
            t_x[i] = t
            if rng.random() < p[i]:
                break
    return x, t_x, T
