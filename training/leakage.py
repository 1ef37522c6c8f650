"""A guard against post-outcome columns: a feature that alone all but separates the labels.

A column recorded after the outcome (a lead's status, a call's duration, a "closed" flag) makes
a model that scores its own history almost perfectly and anyone new badly, because the column is
not yet filled when it matters. The point-in-time feature code cannot catch it: the column is
an attribute the data hands over as it is. So every training run checks each feature alone on
the calibration fold (the latest training cut-off; the test fold stays untouched): a numeric
feature by its values or its quantile bins' positive rate, a category by its categories' positive
rate on the fitting rows. One that reaches :data:`LEAKAGE_AUC` is named in the run's warnings, as is
one with a value that all but always comes with the rarer outcome (:func:`telling_value`: a column
filled for some outcomes only). On the bundled data the best single feature reaches 0.79 (churn),
0.82 (next purchase) and 0.62 (leads without ``duration``), and the purest value 95% (churn, next
purchase) and 58% (leads); the promotion gate holds a run with such a warning for review.

Only the columns a task takes as they are can be recorded after the outcome (the customers table's,
the leads table's: ``as_is``). A feature computed from rows dated at or before the cut-off cannot;
one that alone separates the labels says the outcome is all but decided at the cut-off, which is one
note (:func:`decided_note`), not a leak: a SaaS export's churn run got 25 "possible leakage" warnings
on ``recency_days`` and the like (its population held accounts that had stopped paying months
before), was held for review, and was told to exclude columns no table has.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

__all__ = [
    "LEAK",
    "LEAKAGE_AUC",
    "decided_note",
    "leakage_warnings",
    "leaky_features",
    "telling_value",
    "univariate_auc",
]

LEAKAGE_AUC = 0.95
# A calibration fold smaller than this, or with fewer rows of either label, is too thin to judge a feature by.
LEAKAGE_MIN_ROWS = 100
LEAKAGE_MIN_CLASS = 10
# A value that tells the outcome (:func:`telling_value`): this share of its rows with the rarer outcome, and
# at least these many rows and this share of the fold.
TELLING_PURITY = 0.99
# How each warning of a possible leak begins, before the feature's quoted name (:func:`leaky_features`).
LEAK = "possible leakage: "
TELLING_ROWS = 20
TELLING_SHARE = 0.01


# Quantile bins of a numeric feature for :func:`univariate_auc`'s second reading (a range in the middle
# that marks the outcome ranks nowhere by the value itself).
BINS = 20


def _bins(x_fit: np.ndarray, x_check: np.ndarray, *, categorical: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Codes of both sides' values, by the fitting rows: a category's own code, or a numeric value's
    quantile bin of ``x_fit`` (at most :data:`BINS`); missing is -1. Returns the codes and how many."""
    if categorical:
        fit = np.where(np.isnan(x_fit), -1, x_fit).astype(np.int64)
        check = np.where(np.isnan(x_check), -1, x_check).astype(np.int64)
        return fit, check, int(max(fit.max(initial=-1), check.max(initial=-1)) + 1)
    finite = x_fit[~np.isnan(x_fit)]
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, BINS + 1)[1:-1])) if len(finite) else np.array([])

    def code(x: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(x), -1, np.searchsorted(edges, np.nan_to_num(x), side="right"))

    return code(x_fit), code(x_check), len(edges) + 1


def univariate_auc(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_check: np.ndarray,
    y_check: np.ndarray,
    *,
    categorical: bool,
    coded: tuple[np.ndarray, np.ndarray, int] | None = None,
) -> float:
    """How well one feature alone ranks ``y_check``: ROC AUC, either direction (0.5 to 1).

    A category ranks by its positive rate among the fitting rows (``x_fit``, ``y_fit``: codes, NaN for
    missing, which is a category of its own; a code they lack takes their overall rate). A numeric
    feature ranks by its value (a missing value below every other), or by the positive rate of its
    quantile bin among the fitting rows (missing a bin of its own), whichever ranks better: a range in
    the middle that marks the outcome (a planted one reached 0.83 with the model and 0.6 by value) is
    seen by the second. ``coded``: :func:`_bins` of the two sides, when the caller has it.
    """
    if len(np.unique(y_check)) < 2:
        return 0.5
    fit_codes, check_codes, n = coded or _bins(x_fit, x_check, categorical=categorical)
    counts = np.bincount(fit_codes + 1, minlength=n + 1)
    positives = np.bincount(fit_codes + 1, weights=y_fit, minlength=n + 1)
    rates = np.where(counts > 0, positives / np.maximum(counts, 1), y_fit.mean())
    by_rate = _either_way(y_check, rates[np.clip(check_codes + 1, 0, n)])
    if categorical:
        return by_rate
    finite = x_check[~np.isnan(x_check)]
    floor = finite.min() - 1.0 if len(finite) else 0.0
    return max(by_rate, _either_way(y_check, np.where(np.isnan(x_check), floor, x_check)))


def _either_way(y: np.ndarray, values: np.ndarray) -> float:
    auc = float(roc_auc_score(y, values))
    return max(auc, 1.0 - auc)


def telling_value(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_check: np.ndarray,
    y_check: np.ndarray,
    *,
    categorical: bool,
    coded: tuple[np.ndarray, np.ndarray, int] | None = None,
) -> tuple[float, float] | None:
    """The largest share of rows that one value (a category, or a numeric bin as :func:`univariate_auc`
    makes them; missing excepted) holds while it all but always comes with the rarer outcome: at least
    :data:`TELLING_PURITY` of its rows on both folds, :data:`TELLING_ROWS` of them and
    :data:`TELLING_SHARE` of each fold. Returns (share of the check rows, purity there), or None.

    A column filled only for some outcomes (a CRM status set to 'closed-won' on half the won leads,
    null elsewhere) ranks the rest no better than chance, so its AUC stays low (0.75), yet the value it
    holds tells the label: no honest feature of the bundled data has such a value (the best reaches 0.95).
    """
    rare = 1.0 if y_fit.mean() < 0.5 else 0.0
    fit_codes, check_codes, n = coded or _bins(x_fit, x_check, categorical=categorical)
    held = np.ones(n, dtype=bool)
    purity = np.ones(n)
    for codes, y in ((fit_codes, y_fit), (check_codes, y_check)):
        present = codes >= 0
        rows = np.bincount(codes[present], minlength=n)
        rare_rows = np.bincount(codes[present], weights=(y[present] == rare).astype(np.float64), minlength=n)
        held &= (rows >= TELLING_ROWS) & (rows >= TELLING_SHARE * len(codes))
        purity = np.minimum(purity, rare_rows / np.maximum(rows, 1))
        share, check_purity = rows / len(codes), rare_rows / np.maximum(rows, 1)  # the check fold's, last
    held &= purity >= TELLING_PURITY
    if not held.any():
        return None
    best = int(np.argmax(np.where(held, share, -1.0)))
    return float(share[best]), float(check_purity[best])


def leakage_warnings(
    X: np.ndarray,
    y: np.ndarray,
    features: Sequence[str],
    categorical: Sequence[int],
    *,
    fit_mask: np.ndarray,
    check_mask: np.ndarray,
    task: str,
    as_is: Collection[str] | None = None,
    threshold: float = LEAKAGE_AUC,
) -> list[str]:
    """A sentence for each feature of ``as_is`` (default: every feature) whose :func:`univariate_auc` on the
    ``check_mask`` rows reaches ``threshold``, highest first, then for each other one with a
    :func:`telling_value`, saying what to do about it. Each begins ``possible leakage: 'NAME'`` (the
    promotion gate holds such a run). The features not in ``as_is`` that reach ``threshold`` get one
    :func:`decided_note` at the end."""
    y_check = y[check_mask]
    if len(y_check) < LEAKAGE_MIN_ROWS or min(y_check.sum(), len(y_check) - y_check.sum()) < LEAKAGE_MIN_CLASS:
        # 10 rows, 1 positive (an early backtest origin of the bundled leads): any feature "separates" them
        # (euribor3m read 1.000), and the run's "few rows" warning already says the fold is too thin to judge.
        return []
    found, telling, decided = [], [], []
    for j, name in enumerate(features):
        args = (X[fit_mask, j], y[fit_mask], X[check_mask, j], y[check_mask])
        kind = {"categorical": j in categorical}
        coded = _bins(args[0], args[2], **kind)  # once, for both readings
        auc = univariate_auc(*args, **kind, coded=coded)
        if as_is is not None and name not in as_is:
            value = None if auc >= threshold else telling_value(*args, **kind, coded=coded)
            if auc >= threshold or value is not None:
                decided.append((auc, name, value))
        elif auc >= threshold:
            found.append((auc, name))
        elif (value := telling_value(*args, **kind, coded=coded)) is not None:
            telling.append((value, name))
    table = "tables.leads" if task == "lead" else "tables.customers"
    who = "leads" if task == "lead" else "customers"
    rare = "conversion" if task == "lead" else "outcome"
    advice = (
        f"A value recorded after the outcome (a lead's status, a call's duration) gives a model that scores its "
        f"history well and new {who} badly: if '{{name}}' is known only afterwards, list it under exclude of {table} "
        "and retrain"
    )
    return (
        [
            f"{LEAK}'{name}' alone separates the labels of the calibration fold (ROC AUC {auc:.3f}; for comparison, "
            f"no single feature of crmscore's bundled example data passes 0.82). " + advice.format(name=name)
            for auc, name in sorted(found, reverse=True)
        ]
        + [
            f"{LEAK}'{name}' has a value (or range) held by {share:.1%} of the calibration fold that comes "
            f"with the rarer {rare} in {purity:.1%} of its rows, on the fitting rows too (no feature of crmscore's "
            f"bundled example data has one past 95%). " + advice.format(name=name)
            for (share, purity), name in sorted(telling, reverse=True)
        ]
        + ([decided_note(decided, task)] if decided else [])
    )


def decided_note(decided: Sequence[tuple[float, str, tuple[float, float] | None]], task: str) -> str:
    """One sentence on the computed features that alone separate the labels or hold a value that tells
    them (``(auc, name, telling_value or None)``): the outcome is all but decided at the cut-off, and
    what a user may change, per task. The feature with the highest ROC AUC is named."""
    auc, name, _ = max(decided, key=lambda found: (found[0], found[1]))
    n_more = len(decided) - 1
    more = f" (and {n_more} more computed feature{'s' if n_more > 1 else ''})" if n_more else ""
    telling = [(value, other) for _, other, value in decided if value is not None]
    if telling:
        (share, purity), other = max(telling)
        rare = "conversion" if task == "lead" else "the rarer outcome"
        how = (
            f"ROC AUC {auc:.3f} for '{name}'; a value or range of '{other}' held by {share:.0%} of the fold "
            f"comes with {rare} in {purity:.1%} of its rows"
        )
    else:
        how = f"ROC AUC {auc:.3f}"
    why = {
        "churn": (
            "for churn that is mostly customers who stopped buying well before the cut-off and are still in "
            "the population (models.churn.lookback_days): if your customers buy on a cycle (a subscription "
            "billed monthly), a lookback_days a little past it (45 for monthly) keeps those still buying, and "
            "the model learns who is about to stop, not who has stopped"
        ),
        "next_purchase": (
            "customers who buy on a fixed cycle (a subscription) all but certainly buy again: the model adds "
            "little to this feature alone for them, and its expected spend is where it helps"
        ),
        "lead": (
            "check that the lead events' times are when they happened, not when they were logged (an event "
            "logged at the conversion would tell the outcome)"
        ),
    }[task]
    return (
        f"'{name}'{more}: each alone all but decides the labels of the calibration fold ({how}). Computed from "
        "rows dated at or before each cut-off, no such feature is a column filled in after the outcome; the "
        f"outcome is all but decided at the cut-off: {why}"
    )


def leaky_features(warnings: Sequence[str]) -> list[str]:
    """The features a run's warnings name as possible leakage (:func:`leakage_warnings`' sentences)."""
    return [w[len(LEAK) :].split("'")[1] for w in warnings if w.startswith(LEAK + "'")]
