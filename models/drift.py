"""Feature drift: how far the rows being scored have moved from the rows the model was trained on.

A :class:`FeatureProfile` is the training distribution of every model feature, kept with the
:class:`models.scorer.Scorer`: decile bins for a numeric feature (plus its range), one bin per
category for a categorical one, and a bin for missing values in both. :meth:`FeatureProfile.compare`
measures a new matrix against it with the population stability index (PSI) and the share of
values outside the training range.

PSI = sum over bins of ``(a - e) * ln(a / e)``, with ``e`` the training share and ``a`` the new
share of a bin (both floored at ``1e-4`` so an empty bin stays finite). The usual reading in
credit scoring (Siddiqi 2006, *Credit Risk Scorecards*): below 0.1 stable, 0.1-0.25 worth a look,
above 0.25 a shift that makes the model's calibration unreliable. Trees do not extrapolate: a value
beyond the training range is scored like the nearest value seen, which PSI can miss when the
training feature held a single value, so the out-of-range share is reported beside it.

Both work on the encoded model matrix (:meth:`models.scorer.Scorer.prepare`): categories are
their training codes, and an unseen category is missing (NaN), as the booster sees it. Which
category values no training row had is read from the features themselves
(:func:`models.scorer.unseen_values`) and attached with :func:`with_unseen`, so a report can say
that ``country 'Atlantis'`` was scored as missing rather than only that ``country`` went missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

__all__ = [
    "PSI_ALERT",
    "PSI_WATCH",
    "FeatureDrift",
    "FeatureProfile",
    "drift_overview",
    "drift_summary",
    "listed",
    "with_unseen",
]

PSI_WATCH = 0.1
PSI_ALERT = 0.25
# Floor of a bin's share in the PSI sum: an empty bin on one side must not make it infinite.
_FLOOR = 1e-4
_QUANTILES = np.linspace(0.1, 0.9, 9)
# How many of a feature's unseen category values a FeatureDrift keeps (the commonest).
_UNSEEN_KEPT = 10


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift between the training rows and a new matrix."""

    feature: str
    psi: float
    out_of_range: float  # share of non-missing new values outside [training min, training max]
    missing: float  # share of missing new values
    training_missing: float
    level: str  # "stable", "watch" (PSI >= 0.1) or "alert" (PSI >= 0.25)
    # Share of new rows missing a numeric feature no training row had missing, which the booster
    # reads as 0 (FeatureProfile.never_missing); 0 for categorical features and the others.
    read_as_zero: float = 0.0
    # Share of new rows holding a category value no training row had (the booster reads it as
    # missing), how many distinct such values there were, and the commonest with their row
    # counts (at most 10); 0, 0 and () for numeric features and for drift measured on a matrix alone.
    unseen: float = 0.0
    unseen_distinct: int = 0
    unseen_values: tuple[tuple[str, int], ...] = ()

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["unseen_values"] = dict(self.unseen_values)
        return out


def _level(psi: float) -> str:
    return "alert" if psi >= PSI_ALERT else "watch" if psi >= PSI_WATCH else "stable"


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(expected, _FLOOR)
    a = np.maximum(actual, _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def _bin_counts(categorical: bool, edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Counts of ``values`` per bin: numeric, the bins between and beyond ``edges``; categorical,
    one bin per training code in ``edges``. The missing bin is last."""
    missing = np.isnan(values)
    present = values[~missing]
    counts = np.zeros(len(edges) + (1 if categorical else 2))
    if categorical:
        # A code not among the training codes cannot come out of the encoder (unseen -> NaN),
        # but a hand-built matrix could hold one; it counts as missing.
        position = np.searchsorted(edges, present)
        known = position < len(edges)
        known[known] = edges[position[known]] == present[known]
        np.add.at(counts, position[known], 1)
        counts[-1] += (~known).sum()
    else:
        np.add.at(counts, np.searchsorted(edges, present, side="left"), 1)
    counts[-1] += missing.sum()
    return counts


@dataclass(frozen=True)
class _Reference:
    categorical: bool
    edges: np.ndarray  # numeric: inner bin edges (training deciles); categorical: the training codes
    shares: np.ndarray  # training share per bin, the missing bin last
    lo: float  # training range of a numeric feature
    hi: float

    @property
    def read_as_zero(self) -> bool:
        """Numeric and never missing in training: LightGBM learned no missing direction for it."""
        return not self.categorical and self.shares[-1] == 0


class FeatureProfile:
    """The training distribution of each model feature (see the module docstring).

    Build it with :meth:`from_matrix` on the training matrix; ``compare`` a new matrix with the
    same columns.
    """

    def __init__(self, feature_names: Sequence[str], references: Sequence[_Reference], n_rows: int) -> None:
        if len(feature_names) != len(references):
            raise ValueError(f"{len(feature_names)} feature names for {len(references)} references")
        self.feature_names = list(feature_names)
        self._references = list(references)
        self.n_rows = int(n_rows)

    @classmethod
    def from_matrix(
        cls, X: np.ndarray, feature_names: Sequence[str], categorical: Sequence[int] = ()
    ) -> FeatureProfile:
        """Profile the columns of the training matrix ``X`` (``categorical``: indices of category-code columns)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(feature_names):
            raise ValueError(f"X must have shape (n, {len(feature_names)}), got {X.shape}")
        if len(X) == 0:
            raise ValueError("cannot profile an empty training matrix")
        cats = set(categorical)
        references = []
        for j in range(X.shape[1]):
            column = X[:, j]
            present = column[~np.isnan(column)]
            if j in cats:
                edges = np.unique(present)
            else:
                edges = np.unique(np.quantile(present, _QUANTILES)) if len(present) else np.empty(0)
            lo = float(present.min()) if len(present) else float("nan")
            hi = float(present.max()) if len(present) else float("nan")
            shares = _bin_counts(j in cats, edges, column) / len(column)
            references.append(_Reference(j in cats, edges, shares, lo, hi))
        return cls(feature_names, references, len(X))

    def known_codes(self, name: str) -> np.ndarray | None:
        """The category codes the training rows held for categorical feature ``name`` (sorted);
        None for a numeric feature.

        The encoder knows every category of the training *and* test frames, so a value only the
        test fold had gets a code no training row had; the booster reads it as missing too.
        """
        ref = self._references[self.feature_names.index(name)]
        return ref.edges if ref.categorical else None

    def never_missing(self) -> list[str]:
        """The numeric features no training row had missing.

        LightGBM learns no missing-value direction for such a feature and reads a missing value
        at prediction as 0 (its missing type "None"), so a row missing one is scored on a value
        it does not have.
        """
        return [name for name, ref in zip(self.feature_names, self._references, strict=True) if ref.read_as_zero]

    def counts(self, X: np.ndarray) -> np.ndarray:
        """The sufficient statistics of :meth:`compare` for ``X``, as one vector that adds up.

        The counts of two parts of a matrix sum to the counts of the whole, so a distributed job
        (Spark scoring) counts each partition and :meth:`compare_counts` the sum. Layout: the row
        count, then per feature its bin counts (missing bin last), its out-of-range count and its
        count of present values.

        Raises
        ------
        ValueError
            ``X`` does not have one column per profiled feature.
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"X must have shape (n, {len(self.feature_names)}), got {X.shape}")
        parts = [np.array([len(X)], dtype=np.float64)]
        for ref, column in zip(self._references, X.T, strict=True):
            present = column[~np.isnan(column)]
            outside = 0
            if not ref.categorical and len(present) and np.isfinite(ref.lo):
                outside = int(((present < ref.lo) | (present > ref.hi)).sum())
            parts += [_bin_counts(ref.categorical, ref.edges, column), np.array([outside, len(present)], np.float64)]
        return np.concatenate(parts)

    def compare_counts(self, counts: np.ndarray) -> list[FeatureDrift]:
        """Drift from :meth:`counts` (or a sum of them), largest PSI first.

        Raises
        ------
        ValueError
            ``counts`` does not have this profile's layout, or counts no rows.
        """
        counts = np.asarray(counts, dtype=np.float64)
        size = 1 + sum(len(ref.shares) + 2 for ref in self._references)
        if counts.shape != (size,):
            raise ValueError(f"counts must be a vector of {size} values for this profile, got shape {counts.shape}")
        n = counts[0]
        if n <= 0:
            raise ValueError("cannot measure drift on an empty matrix")
        out, at = [], 1
        for name, ref in zip(self.feature_names, self._references, strict=True):
            bins = counts[at : at + len(ref.shares)]
            outside, present = counts[at + len(ref.shares) : at + len(ref.shares) + 2]
            at += len(ref.shares) + 2
            psi = _psi(ref.shares, bins / n)
            out.append(
                FeatureDrift(
                    feature=name,
                    psi=psi,
                    out_of_range=float(outside / present) if present else 0.0,
                    missing=float(bins[-1] / n),
                    training_missing=float(ref.shares[-1]),
                    level=_level(psi),
                    read_as_zero=float(bins[-1] / n) if ref.read_as_zero else 0.0,
                )
            )
        return sorted(out, key=lambda d: (-d.psi, d.feature))

    def compare(self, X: np.ndarray) -> list[FeatureDrift]:
        """Drift of every feature of ``X`` against the training rows, largest PSI first.

        Raises
        ------
        ValueError
            ``X`` does not have one column per profiled feature, or has no rows.
        """
        return self.compare_counts(self.counts(X))


def with_unseen(
    drift: Sequence[FeatureDrift], unseen: Mapping[str, Mapping[str, int]], n_rows: int
) -> list[FeatureDrift]:
    """``drift`` with each feature's unseen category values attached (same order).

    ``unseen`` maps a feature to ``{value: rows}`` (:meth:`models.scorer.Scorer.unseen_counts`, or
    their sum over the partitions of a distributed job) for the ``n_rows`` rows ``drift`` measured.
    """
    out = []
    for d in drift:
        counts = unseen.get(d.feature)
        if counts and n_rows > 0:
            commonest = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            d = replace(
                d,
                unseen=float(sum(counts.values()) / n_rows),
                unseen_distinct=len(counts),
                unseen_values=tuple((str(v), int(n)) for v, n in commonest[:_UNSEEN_KEPT]),
            )
        out.append(d)
    return out


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")


def _share(x: float) -> str:
    return f"{x:.0%}" if x >= 0.01 else "under 1%"


def listed(named: Sequence[str], limit: int) -> str:
    """The first ``limit`` names, comma-separated, then how many more (``"a, b and 3 more"``)."""
    return ", ".join(named[:limit]) + (f" and {len(named) - limit} more" if len(named) > limit else "")


def drift_summary(drift: Sequence[FeatureDrift], *, limit: int = 3) -> str | None:
    """A sentence naming the features in ``alert``, worst first, one naming the features the
    booster reads as 0 where they are missing (:attr:`FeatureDrift.read_as_zero`), and one naming
    the category values no training row had (:attr:`FeatureDrift.unseen`); None when none applies."""
    sentences = []
    alerts = [d for d in drift if d.level == "alert"]
    if alerts:
        named = [
            f"{d.feature} (PSI {d.psi:.2f}"
            + (f", {d.out_of_range:.0%} outside the training range)" if d.out_of_range else ")")
            for d in alerts
        ]
        sentences.append(
            f"{len(alerts)} of {len(drift)} features have shifted from the training rows (PSI >= {PSI_ALERT}): "
            f"{listed(named, limit)}; probabilities may be miscalibrated for these rows"
        )
    gaps = sorted((d for d in drift if d.read_as_zero > 0), key=lambda d: (-d.read_as_zero, d.feature))
    if gaps:
        named = [f"{d.feature} ({_share(d.read_as_zero)} of rows)" for d in gaps]
        sentences.append(
            f"missing where no training row was: {listed(named, limit)}; the model reads those values as 0, "
            "so fill them at the source or retrain on data that has the gaps"
        )
    unseen = sorted((d for d in drift if d.unseen_values), key=lambda d: (-d.unseen, d.feature))
    if unseen:
        named = []
        for d in unseen:
            values = [f"{v!r} ({_rows(n)})" for v, n in d.unseen_values[:limit]]
            more = d.unseen_distinct - len(values)
            named.append(f"{d.feature} " + ", ".join(values) + (f" and {more} more" if more > 0 else ""))
        sentences.append(
            f"category values no training row had, scored as missing: {listed(named, limit)}; "
            "check their spelling at the source, or retrain on data that has them"
        )
    return ". ".join(sentences) or None


def drift_overview(drift: Sequence[FeatureDrift]) -> dict[str, object]:
    """``{"max_psi", "alert", "unseen", "warning"}``: the largest PSI, the features in alert (worst
    first), the unseen category values by feature (``{value: rows}``, the commonest kept) and
    :func:`drift_summary`'s sentences, for JSON outputs (the training metrics, ``/models``)."""
    return {
        "max_psi": max((d.psi for d in drift), default=0.0),
        "alert": [d.feature for d in drift if d.level == "alert"],
        "unseen": {d.feature: dict(d.unseen_values) for d in drift if d.unseen_values},
        "warning": drift_summary(drift),
    }
