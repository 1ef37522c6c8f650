"""A logistic regression on the model matrix whose log-odds split exactly into per-feature parts.

The same :class:`LinearHead` is the logistic-regression baseline of every backtest and, for a
model whose spec sets ``linear_blend``, the linear half of the scorer's score (see
:class:`models.scorer.Scorer`). It reads the matrix the booster reads (``encode_frame``: numbers
and category codes, NaN for missing), so scoring needs numpy only.

Design, per feature, fitted on the training rows:

- numeric: missing values imputed with the median, a missing indicator when the training rows
  had any, then ``sign(x) log(1 + |x|)`` and standard scaling (both the value and the indicator);
- categorical: one-hot of each category seen at least ``min_frequency`` times, one column for
  the rarer ones together (missing counts as a category); a category never seen scores 0.

A linear model's SHAP value of a feature, with the training rows as background, is exact:
``beta * (z - mean z)`` summed over the feature's design columns. :meth:`LinearHead.contributions`
returns those plus the expected value, so each row sums to :meth:`LinearHead.decision`, the
same contract as LightGBM's ``pred_contrib``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from sklearn.linear_model import LogisticRegression

__all__ = ["LinearHead"]


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def _standardise(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = z.mean(axis=0)
    scale = z.std(axis=0)
    return mean, np.where(scale > 0, scale, 1.0)


@dataclass(frozen=True)
class LinearHead:
    """A fitted logistic regression over a model matrix (see the module docstring).

    Attributes
    ----------
    feature_names
        Column order of the matrix.
    numeric, categorical
        Column positions of the numeric and categorical features.
    median, mean, scale, coef
        Numeric features: imputation value, standardisation of the signed log, coefficient.
    indicator, ind_mean, ind_scale, ind_coef
        Numeric features: whether a missing indicator exists, its standardisation and coefficient
        (0 where none).
    category_effect
        Categorical features: the log-odds term of each category code, centred on the training
        rows; the last entry is for a missing value. Codes beyond the table score ``unseen_effect``.
    unseen_effect
        Categorical features: the centred term of a category the training rows never had.
    expected
        The expected value: log-odds of the average training row (the intercept plus the centring).
    """

    feature_names: tuple[str, ...]
    numeric: np.ndarray
    categorical: np.ndarray
    median: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    indicator: np.ndarray
    ind_mean: np.ndarray
    ind_scale: np.ndarray
    ind_coef: np.ndarray
    category_effect: tuple[np.ndarray, ...]
    unseen_effect: np.ndarray
    expected: float

    @classmethod
    def fit(
        cls,
        X: np.ndarray,
        y: np.ndarray,
        feature_names: Sequence[str],
        categorical: Sequence[int],
        *,
        n_categories: Sequence[int],
        seed: int,
        C: float = 1.0,
        min_frequency: int = 20,
    ) -> LinearHead:
        """Fit on a model matrix ``X`` (rows x ``feature_names``) and binary labels ``y``.

        ``categorical`` are the positions of the category-code columns and ``n_categories``
        the number of categories of each (the length of the scorer's category list).

        Raises
        ------
        ValueError
            ``X`` and ``y`` disagree in length, or ``y`` has a single class.
        """
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if len(X) != len(y):
            raise ValueError(f"linear head: X has {len(X)} rows but y has {len(y)}")
        if len(np.unique(y)) < 2:
            raise ValueError("linear head: the labels have a single class; cannot fit a logistic regression")
        cat = np.asarray(list(categorical), dtype=np.int64)
        num = np.asarray([j for j in range(X.shape[1]) if j not in set(cat.tolist())], dtype=np.int64)

        values = X[:, num]
        missing = np.isnan(values)
        # A column missing in every row imputes 0 (its indicator then carries nothing either).
        median = np.nanmedian(np.where(missing.all(axis=0), 0.0, values), axis=0)
        z = _signed_log(np.where(missing, median, values))
        mean, scale = _standardise(z)
        indicator = missing.any(axis=0)
        ind = missing[:, indicator].astype(np.float64)
        ind_mean_used, ind_scale_used = _standardise(ind)
        design = [(z - mean) / scale, (ind - ind_mean_used) / ind_scale_used]

        # One-hot blocks: per categorical feature, the design column of each code (-1 = none).
        blocks: list[np.ndarray] = []
        columns_of: list[np.ndarray] = []
        for j, n in zip(cat, n_categories, strict=True):
            codes = np.where(np.isnan(X[:, j]), n, X[:, j]).astype(np.int64)  # n = missing
            counts = np.bincount(codes, minlength=n + 1)[: n + 1]
            frequent = np.flatnonzero(counts >= min_frequency)
            rare = np.flatnonzero((counts > 0) & (counts < min_frequency))
            column = np.full(n + 1, -1, dtype=np.int64)
            column[frequent] = np.arange(len(frequent))
            if len(rare):
                column[rare] = len(frequent)
            width = len(frequent) + (1 if len(rare) else 0)
            onehot = np.zeros((len(X), width))
            hit = column[codes]
            onehot[np.flatnonzero(hit >= 0), hit[hit >= 0]] = 1.0
            blocks.append(onehot)
            columns_of.append(column)
        matrix = np.hstack(design + blocks)

        # Newton's method with a Cholesky solve reaches the optimum (gradient below 1e-8) in a few
        # steps on a matrix this narrow. L-BFGS stopped at its default tolerance, where a 1e-9 change
        # in a few input rows (the noise of DuckDB's parallel sums) moved test log-odds by up to 0.16
        # on the churn training set, and it took 15 times longer.
        model = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-8, max_iter=100, random_state=seed)
        model.fit(matrix, y)
        beta = model.coef_[0]
        k = len(num)
        coef, beta = beta[:k], beta[k:]
        ind_coef = np.zeros(k)
        ind_mean = np.zeros(k)
        ind_scale = np.ones(k)
        n_ind = int(indicator.sum())
        ind_coef[indicator], beta = beta[:n_ind], beta[n_ind:]
        ind_mean[indicator], ind_scale[indicator] = ind_mean_used, ind_scale_used
        expected = float(model.intercept_[0])
        effects: list[np.ndarray] = []
        unseen: list[float] = []
        for onehot, column in zip(blocks, columns_of, strict=True):
            width = onehot.shape[1]
            b, beta = beta[:width], beta[width:]
            # Every row has a code, so each block has at least one column.
            centre = float(onehot.mean(axis=0) @ b)
            expected += centre
            effects.append(np.where(column >= 0, b[np.clip(column, 0, None)], 0.0) - centre)
            unseen.append(-centre)
        return cls(
            feature_names=tuple(feature_names),
            numeric=num,
            categorical=cat,
            median=median,
            mean=mean,
            scale=scale,
            coef=coef,
            indicator=indicator,
            ind_mean=ind_mean,
            ind_scale=ind_scale,
            ind_coef=ind_coef,
            category_effect=tuple(effects),
            unseen_effect=np.asarray(unseen, dtype=np.float64),
            expected=expected,
        )

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Exact SHAP values on the log-odds scale: one column per feature, then the expected value."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"X must have shape (n, {len(self.feature_names)}), got {X.shape}")
        out = np.zeros((len(X), len(self.feature_names) + 1))
        values = X[:, self.numeric]
        missing = np.isnan(values)
        z = (_signed_log(np.where(missing, self.median, values)) - self.mean) / self.scale
        ind = (missing - self.ind_mean) / self.ind_scale
        out[:, self.numeric] = z * self.coef + ind * self.ind_coef
        for i, j in enumerate(self.categorical):
            table = self.category_effect[i]
            n = len(table) - 1
            x = X[:, j]
            codes = np.where(np.isnan(x), n, np.nan_to_num(x, nan=-1.0)).astype(np.int64)
            known = (codes >= 0) & (codes <= n)
            out[:, j] = np.where(known, table[np.clip(codes, 0, n)], self.unseen_effect[i])
        out[:, -1] = self.expected
        return out

    def decision(self, X: np.ndarray) -> np.ndarray:
        """The log-odds of each row (the sum of :meth:`contributions`)."""
        return self.contributions(X).sum(axis=1)

    def scaled(self, a: float, b: float) -> LinearHead:
        """The head whose log-odds are ``a x`` these ``+ b`` (contributions scale by ``a``)."""
        return replace(
            self,
            coef=self.coef * a,
            ind_coef=self.ind_coef * a,
            category_effect=tuple(t * a for t in self.category_effect),
            unseen_effect=self.unseen_effect * a,
            expected=self.expected * a + b,
        )
