"""Baselines reported beside every model, fitted in the same run on the same folds.

- ``rfm``: the classic RFM rule. Recency, frequency and monetary quintiles (1-5, 5 = best)
  summed; churn scores ``15 - RFM``, next purchase scores ``RFM``.
- ``logistic``: logistic regression on the model's own features (median imputation with
  missing indicators, signed log, standard scaling, one-hot categories):
  :class:`models.linear.LinearHead`, fitted in :func:`training.backtest.run_backtest`.
- ``bgnbd``: BG/NBD fitted on the purchase history at each cut-off; churn scores
  P(no purchase in H), next purchase scores 1 - that, and its spend is expected purchases x
  the customer's average purchase-day spend.

Each baseline score is turned into a probability on the calibration fold with the same
calibrator choice as the model, so Brier and ECE compare like with like.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

from training.bgnbd import BGNBD, rfm_summary

__all__ = ["bgnbd_scores", "rfm_score"]


def _quintile(values: pd.Series, *, higher_is_better: bool) -> np.ndarray:
    """Quintile 1-5 of each value (5 = best); missing values get 1."""
    ranks = values.rank(method="average", pct=True, ascending=higher_is_better)
    return np.where(ranks.isna(), 1, np.ceil(ranks.fillna(0) * 5).clip(1, 5)).astype(np.float64)


def rfm_score(frame: pd.DataFrame, columns: tuple[str, str, str], *, task: str) -> np.ndarray:
    """The RFM rule score of each row (higher = more likely positive for ``task``).

    Raises
    ------
    ValueError
        A recency, frequency or monetary column is missing.
    """
    for column in columns:
        if column not in frame.columns:
            raise ValueError(f"RFM baseline: column '{column}' is missing from the feature table")
    recency, frequency, monetary = (frame[c].astype(np.float64) for c in columns)
    total = (
        _quintile(recency, higher_is_better=False)
        + _quintile(frequency, higher_is_better=True)
        + _quintile(monetary, higher_is_better=True)
    )
    return 15.0 - total if task == "churn" else total


def bgnbd_scores(
    transactions: pd.DataFrame, ids: Sequence[str], *, as_of: dt.datetime, horizon_days: int
) -> pd.DataFrame:
    """BG/NBD fitted on the purchase history at ``as_of``, scored for ``ids``.

    Returns
    -------
    Indexed like ``ids``: ``p_no_purchase`` (over H), ``p_alive``, ``expected_purchases`` (over H)
    and ``expected_spend`` (expected purchases x average spend per purchase day). Customers
    without a purchase get ``p_no_purchase = 1`` and zeros.
    """
    summary = rfm_summary(transactions, as_of=as_of)
    model = BGNBD.fit(summary["x"].to_numpy(), summary["t_x"].to_numpy(), summary["T"].to_numpy())
    x, t_x, T = (summary[c].to_numpy() for c in ("x", "t_x", "T"))
    cutoff = pd.Timestamp(as_of)
    history = transactions[(transactions["timestamp"] <= cutoff) & (transactions["amount"] > 0)]
    day_spend = history.groupby([history["customer_id"], history["timestamp"].dt.floor("D")])["amount"].sum()
    avg_spend = day_spend.groupby(level=0).mean()
    out = pd.DataFrame(
        {
            "p_no_purchase": model.p_no_purchase(horizon_days, x, t_x, T),
            "p_alive": model.p_alive(x, t_x, T),
            "expected_purchases": model.expected_purchases(horizon_days, x, t_x, T),
        },
        index=summary["customer_id"].to_numpy(),
    )
    out["expected_spend"] = out["expected_purchases"] * avg_spend.reindex(out.index).fillna(0.0).to_numpy()
    out = out.reindex([str(i) for i in ids])
    return out.fillna({"p_no_purchase": 1.0, "p_alive": 0.0, "expected_purchases": 0.0, "expected_spend": 0.0})
