"""The trained model as serving sees it: column order, encodings, booster(s), calibrator, tiers and reasons.

A :class:`Scorer` is plain picklable data (LightGBM boosters pickle as their model text) and
never imports MLflow: the pyfunc, batch scoring and the HTTP service all call the same
:meth:`Scorer.prepare` and :meth:`Scorer.score_matrix`, so no caller can build inputs
differently from training. The hot path is numpy only: ``booster.predict`` with
``pred_contrib=True`` returns the SHAP values, whose row sum is the raw score (a model with a
linear or hazard head adds that head's exact parts, see :meth:`Scorer.contributions`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.drift import FeatureDrift, FeatureProfile, listed, with_unseen
from models.hazard import HazardHead
from models.linear import LinearHead
from models.reasons import ReasonWriter, dated_values

__all__ = [
    "Calibrator",
    "Scorer",
    "count_unseen",
    "encode_frame",
    "rate_shift",
    "rows_at",
    "shift_log_odds",
    "unseen_values",
]


def encode_frame(
    features: pd.DataFrame, feature_names: Sequence[str], categories: Mapping[str, Sequence[Any]]
) -> np.ndarray:
    """Feature columns in model order as a float64 matrix; categories become their training codes.

    A category not seen in training, and any missing value, becomes NaN (LightGBM's missing).

    Raises
    ------
    ValueError
        A feature column is missing, or a numeric column holds values that are not numbers.
    """
    missing = [c for c in feature_names if c not in features.columns]
    if missing:
        raise ValueError(
            f"feature column '{missing[0]}' is missing from the input"
            + (f" (and {len(missing) - 1} more: {missing[1:6]})" if len(missing) > 1 else "")
        )
    X = np.empty((len(features), len(feature_names)), dtype=np.float64)
    for j, name in enumerate(feature_names):
        column = features[name]
        cats = categories.get(name)
        if cats is not None:
            values = column.astype(object).where(column.notna(), None)
            codes = pd.Categorical(values, categories=list(cats)).codes.astype(np.float64)
            codes[codes < 0] = np.nan
            X[:, j] = codes
        else:
            try:
                X[:, j] = pd.to_numeric(column, errors="raise").astype(np.float64).to_numpy(na_value=np.nan)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"feature column '{name}' must be numeric: {exc}") from exc
    return X


def unseen_values(
    features: pd.DataFrame,
    X: np.ndarray,
    feature_names: Sequence[str],
    categories: Mapping[str, Sequence[Any]],
    profile: FeatureProfile | None = None,
) -> dict[str, pd.Series]:
    """The category values of ``features`` no training row had, by categorical feature.

    ``X`` is ``encode_frame(features, feature_names, categories)``. A value is unseen when it is
    present in ``features`` but its code is missing (a category the encoder does not know) or, with
    the training ``profile``, not among the codes the training rows held. The booster reads both as
    missing. Each Series holds the values as text, indexed by row position; features without any
    are left out.
    """
    out = {}
    for name in categories:
        if name not in features.columns:
            continue
        codes = X[:, list(feature_names).index(name)]
        unseen = np.isnan(codes)
        known = profile.known_codes(name) if profile is not None else None
        if known is not None:
            unseen |= ~np.isin(codes, known)
        unseen &= features[name].notna().to_numpy()
        if unseen.any():
            rows = np.flatnonzero(unseen)
            out[name] = pd.Series(features[name].astype(object).to_numpy()[rows].astype(str), index=rows)
    return out


def count_unseen(unseen: Mapping[str, pd.Series]) -> dict[str, dict[str, int]]:
    """``{feature: {value: rows}}`` of :func:`unseen_values`' result (what drift reports, and what
    the partitions of a distributed job sum)."""
    return {name: values.value_counts().to_dict() for name, values in unseen.items()}


def rows_at(by_row: Mapping[int, Any], rows: Sequence[int]) -> dict[int, Any]:
    """``by_row`` (keyed by row position) for the matrix ``X[rows]``: keyed by position in ``rows``."""
    return {n: by_row[row] for n, row in enumerate(rows) if row in by_row}


def shift_log_odds(p: np.ndarray, shift: float, scale: float = 1.0) -> np.ndarray:
    """``sigmoid(scale * logit(p) + shift)``, with ``p`` clipped to ``[1e-6, 1 - 1e-6]`` first."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return 1.0 / (1.0 + np.exp(-(scale * np.log(p / (1 - p)) + shift)))


def rate_shift(p: np.ndarray, target: float) -> float:
    """The log-odds shift ``s`` with ``mean(sigmoid(logit(p) + s)) == target`` (to 1e-12 in ``s``).

    The mean is increasing in ``s``, so bisection on ``[-10, 10]`` finds it (a target outside the
    reach of that range gets the end of it). Used for calibration in the large (``target`` the
    observed rate) and for the population anchor (``target`` the latest known rate, see
    :meth:`Scorer.population_shift`).
    """
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    logit = np.log(p / (1 - p))
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if np.mean(1.0 / (1.0 + np.exp(-(logit + mid)))) < target:
            lo = mid
        else:
            hi = mid
    return float((lo + hi) / 2)


@functools.lru_cache(maxsize=256)
def season_weights(
    cutoffs: tuple[str, ...], as_of: Any, period_days: int, tolerance_days: int, taper: bool = True
) -> tuple[tuple[str, float], ...]:
    """How much each training cut-off's season counts for scores as of ``as_of``.

    The season of ``as_of`` was last seen at ``target = as_of - period_days`` (day precision, UTC).
    Between two neighbouring cut-offs at most ``2 * tolerance_days`` apart, the weights interpolate
    linearly (``((c1, 1 - w), (c2, w))``, ``w`` the fraction of the way from ``c1`` to ``c2``); on a
    cut-off it is ``((c, 1.0),)``. Elsewhere the nearest cut-off within ``tolerance_days`` counts,
    with a weight falling linearly from 1 on it to 0 at ``tolerance_days`` away (``taper=False``:
    1 within the tolerance); beyond it none does. The weight short of 1 goes to the calibration
    season (no correction), so a correction built on these weights moves continuously with the
    scoring date instead of stepping where the nearest cut-off changes. Cached: the API asks for
    the same scoring date on every call.
    """
    when = pd.Timestamp(as_of)
    if when.tzinfo is not None:
        when = when.tz_convert("UTC").tz_localize(None)
    target = when.normalize() - pd.Timedelta(days=period_days)
    dates = sorted((pd.Timestamp(c), c) for c in cutoffs)
    if not dates:
        return ()
    below = [d for d in dates if d[0] <= target]
    above = [d for d in dates if d[0] >= target]
    if below and above:
        (lo, lo_key), (hi, hi_key) = below[-1], above[0]
        if lo == hi:
            return ((lo_key, 1.0),)
        if (hi - lo).days <= 2 * tolerance_days:
            w = (target - lo).days / (hi - lo).days
            return ((lo_key, 1.0 - w), (hi_key, w))
    nearest, key = min(below[-1:] + above[:1], key=lambda d: abs((d[0] - target).days))
    distance = abs((nearest - target).days)
    if distance > tolerance_days:
        return ()
    return ((key, 1.0 - distance / tolerance_days if taper else 1.0),)


def seasonal_correction(
    weights: Sequence[tuple[str, float]],
    intercepts: Mapping[str, float],
    reference: float,
    slopes: Mapping[str, float] | None = None,
    reference_slope: float | None = None,
) -> tuple[float, float]:
    """The correction ``(scale, shift)`` (``logit(p') = scale * logit(p) + shift``) of a season given
    as ``weights`` over training cut-offs (:func:`season_weights`).

    The season's recalibration intercept is the weighted mean of the cut-offs' ``intercepts``, the
    weight short of 1 going to ``reference`` (the calibration season's); likewise its slope with
    ``slopes`` and ``reference_slope``. Undoing the reference's recalibration and applying the
    season's gives ``scale = slope / reference_slope`` (1 without slopes) and
    ``shift = intercept - scale * reference``: ``(1, 0)`` for the calibration season itself.
    """
    intercept = _blend(weights, intercepts, reference)
    scale = 1.0
    if slopes is not None and reference_slope is not None:
        scale = _blend(weights, slopes, reference_slope) / reference_slope
    return float(scale), float(intercept - scale * reference)


def _blend(weights: Sequence[tuple[str, float]], table: Mapping[str, float], rest: float) -> float:
    """``table``'s values weighted by ``weights``, the weight short of 1 given to ``rest``."""
    return sum(w * table[c] for c, w in weights) + (1.0 - sum(w for _, w in weights)) * rest


def seasonal_value(weights: Sequence[tuple[str, float]], table: Mapping[str, float]) -> float:
    """``table`` interpolated by ``weights`` that sum to 1 (``season_weights(..., taper=False)``)."""
    total = sum(w for _, w in weights)
    if not total > 0:
        raise ValueError("no training cut-off lies near that season")
    return float(_blend(weights, table, 0.0) / total)


@dataclass
class Calibrator:
    """Maps a raw (log-odds) score to a calibrated probability.

    ``kind`` is ``sigmoid`` (Platt: ``1 / (1 + exp(-(a * raw + b)))``), ``isotonic`` (a
    piecewise-linear interpolation of the fitted step function through ``x``/``y``) or
    ``identity`` (the booster's own sigmoid).

    ``shift`` is a prior-shift correction added on the log-odds scale after calibration
    (Saerens, Latinne & Decaestecker 2002): ``logit(p') = logit(p) + shift``, where ``shift`` is
    the expected change of the base rate's log-odds between the calibration fold and the window
    scored (estimated from past cut-offs only, see ``training.calibration.seasonal_prior_shift``).
    It lives in the calibrator so training, batch scoring and serving apply the same correction.

    ``shift`` is the shift for the training run's test cut-off T. The season of the window scored
    depends on the scoring date, so when the model-adjusted prior was estimated the calibrator also
    keeps ``seasonal_intercepts`` (training cut-off ISO date -> calibration-in-the-large intercept
    of the unshifted probabilities there; only cut-offs whose label window ends before T and with
    enough history) and ``seasonal_reference`` (that intercept interpolated at the calibration
    cut-off minus ``period_days``, :func:`season_weights` with ``taper=False``). :meth:`correction_at`
    interpolates the correction for a scoring date; see there; ``shift`` and ``scale`` are its value at T. Without the table (older scorers, or no prior estimated) every date gets ``shift``.

    ``scale`` multiplies the log-odds before the shift: ``logit(p') = scale * logit(p) + shift``.
    It is 1 unless the seasonal correction also carries a slope (some seasons are harder to rank,
    and a model calibrated in an easy one is over-confident in a hard one). Then
    ``seasonal_intercepts`` hold the intercepts of a logistic recalibration (slope free) at each
    cut-off, ``seasonal_slopes`` its slopes, ``seasonal_reference_slope`` the reference's slope.
    """

    kind: str = "identity"
    a: float = 1.0
    b: float = 0.0
    x: np.ndarray = field(default_factory=lambda: np.empty(0))
    y: np.ndarray = field(default_factory=lambda: np.empty(0))
    shift: float = 0.0
    seasonal_intercepts: dict[str, float] = field(default_factory=dict)
    seasonal_reference: float | None = None
    period_days: int = 365
    tolerance_days: int = 45
    scale: float = 1.0
    seasonal_slopes: dict[str, float] = field(default_factory=dict)
    seasonal_reference_slope: float | None = None
    anchor_rate: float | None = None

    def season_weights(self, as_of: Any, *, taper: bool = True) -> tuple[tuple[str, float], ...]:
        """The training cut-offs whose season ``as_of`` falls in, weighted (:func:`season_weights`)."""
        return season_weights(
            tuple(getattr(self, "seasonal_intercepts", None) or ()),
            as_of,
            getattr(self, "period_days", 365),
            getattr(self, "tolerance_days", 45),
            taper,
        )

    def _has_slopes(self) -> bool:
        # Scorers pickled before the slope fields existed have none of them.
        return (
            bool(getattr(self, "seasonal_slopes", None)) and getattr(self, "seasonal_reference_slope", None) is not None
        )

    def correction_at(self, as_of: Any = None) -> tuple[float, float]:
        """The seasonal correction ``(scale, shift)`` for scores as of ``as_of``:
        ``logit(p') = scale * logit(p) + shift``.

        ``as_of=None`` (or no intercept table) gives the training-time ``scale`` and ``shift``, the
        correction at the test cut-off T. Otherwise the training cut-offs around
        ``as_of - period_days`` are interpolated (:func:`season_weights`) and
        :func:`seasonal_correction` undoes the calibration season's recalibration and applies that
        season's, as at T. Far (beyond ``tolerance_days``) from every cut-off it is ``(1, 0)``: the
        scores keep the calibration fold's base rate, since no past season says how it moves; near
        the ends of the table the correction fades towards that, so it never steps from one day
        to the next.
        """
        # Scorers pickled before these fields existed have none of them.
        table = getattr(self, "seasonal_intercepts", None)
        reference = getattr(self, "seasonal_reference", None)
        trained = (float(getattr(self, "scale", 1.0)), float(getattr(self, "shift", 0.0)))
        if as_of is None or not table or reference is None:
            return trained
        slopes = (self.seasonal_slopes, self.seasonal_reference_slope) if self._has_slopes() else (None, None)
        return seasonal_correction(self.season_weights(as_of), table, reference, *slopes)

    def scale_at(self, as_of: Any = None) -> float:
        """The log-odds scale of :meth:`correction_at`."""
        return self.correction_at(as_of)[0]

    def shift_at(self, as_of: Any = None) -> float:
        """The log-odds shift of :meth:`correction_at`."""
        return self.correction_at(as_of)[1]

    def on_linear(self, a: float, b: float) -> Calibrator:
        """This calibrator applied to ``a * raw + b``, as a calibrator of ``raw`` (``a > 0``).

        Sigmoid and identity fold the map into their slope and intercept; isotonic moves its knots.
        """
        if not a > 0:
            raise ValueError(f"the linear map must be increasing (a = {a})")
        if self.kind == "isotonic":
            return dataclasses.replace(self, x=(np.asarray(self.x) - b) / a)
        return dataclasses.replace(self, kind="sigmoid", a=self.a * a, b=self.a * b + self.b)

    def __call__(self, raw: np.ndarray, as_of: Any = None, population_shift: float = 0.0) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.kind == "isotonic":
            p = np.clip(np.interp(raw, self.x, self.y), 0.0, 1.0)
        elif self.kind in ("sigmoid", "identity"):
            p = 1.0 / (1.0 + np.exp(-(self.a * raw + self.b)))
        else:
            raise ValueError(f"unknown calibrator kind {self.kind!r}")
        scale, shift = self.correction_at(as_of)
        shift += population_shift
        if shift or scale != 1.0:
            p = shift_log_odds(p, shift, scale)
        return p


class Scorer:
    """Scores and explains one model's population.

    Attributes
    ----------
    task, entity, model_name, version
        What is scored; ``version`` is the registry version once registered.
    feature_names
        Column order of the model matrix.
    categories
        Category list per categorical feature (its code is the position in the list).
    booster, num_iteration
        The LightGBM classifier and the number of trees used.
    calibrator
        Raw score -> probability.
    tiers, tier_key
        ``(name, lower threshold)`` pairs, highest first; results name the field ``tier_key``.
    reasons
        The :class:`ReasonWriter` with the model's templates.
    spend_booster, spend_num_iteration, spend_unconditional
        Next purchase: expected spend given a purchase in H (LightGBM, log link), or, when
        ``spend_unconditional``, the unconditional expected spend over H (zeros included).
    spend_blend
        Next purchase: ``(w_model, w_naive, column)``; expected value over H becomes
        ``w_model x P(buy) x spend head + w_naive x max(0, column) x H / 365``.
    spend_feature, horizon_days, spend_window_days
        Churn: expected spend over H = max(0, spend_feature) * H / spend_window_days.
    profile
        The training distribution of the features (:class:`models.drift.FeatureProfile`), for
        :meth:`drift`; None for scorers trained before it existed.
    linear, booster_weight
        Optional :class:`models.linear.LinearHead` (its weight folded into its coefficients) and
        the booster's weight: the raw score is ``booster_weight x booster + linear``, and
        :meth:`contributions` sums both parts' SHAP values the same way, so scores and reasons
        stay one decomposition. Without a linear head the weight is 1.
    hazard, hazard_weight
        Optional :class:`models.hazard.HazardHead` (churn: the weekly purchase hazard chained over
        H) and its weight: its ``logit(P(no purchase in H))`` times ``hazard_weight`` is added to
        the raw score, and its exact per-feature parts to :meth:`contributions`. Its calendar is
        that of the scoring date, so :meth:`raw_score` and :meth:`contributions` take ``as_of``.
    default_population_shift
        For an :attr:`anchored` model, the anchor of the latest population training saw (the test
        cut-off's, :meth:`population_shift`): the shift for callers that score rows without their
        population (the pyfunc's default, ``anchor="model"``). 0 otherwise.
    """

    def __init__(
        self,
        *,
        task: str,
        entity: str,
        feature_names: Sequence[str],
        categories: Mapping[str, Sequence[Any]],
        booster: Any,
        calibrator: Calibrator,
        tiers: Sequence[tuple[str, float]],
        tier_key: str,
        reasons: ReasonWriter,
        model_name: str,
        num_iteration: int | None = None,
        horizon_days: int | None = None,
        spend_booster: Any = None,
        spend_num_iteration: int | None = None,
        spend_feature: str | None = None,
        spend_window_days: int | None = None,
        spend_unconditional: bool = False,
        spend_blend: tuple[float, float, str] | None = None,
        version: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        profile: FeatureProfile | None = None,
        linear: LinearHead | None = None,
        booster_weight: float = 1.0,
        default_population_shift: float = 0.0,
        hazard: HazardHead | None = None,
        hazard_weight: float = 0.0,
    ) -> None:
        self.task = task
        self.entity = entity
        self.feature_names = list(feature_names)
        self.categories = {k: list(v) for k, v in categories.items()}
        self.booster = booster
        self.num_iteration = num_iteration
        self.calibrator = calibrator
        self.tiers = [(str(n), float(t)) for n, t in tiers]
        self.tier_key = tier_key
        self.reasons = reasons
        self.model_name = model_name
        self.horizon_days = horizon_days
        self.spend_booster = spend_booster
        self.spend_num_iteration = spend_num_iteration
        self.spend_feature = spend_feature
        self.spend_window_days = spend_window_days
        self.spend_unconditional = spend_unconditional
        self.spend_blend = spend_blend
        self.version = version
        self.metadata = dict(metadata or {})
        self.profile = profile
        if not booster_weight >= 0.0:
            raise ValueError(f"booster_weight must be >= 0, got {booster_weight}")
        if linear is None and hazard is None and booster_weight != 1.0:
            raise ValueError("booster_weight other than 1 needs a linear or hazard head")
        if linear is not None and list(linear.feature_names) != self.feature_names:
            raise ValueError("the linear head's columns differ from the model's feature columns")
        if hazard is not None and list(hazard.feature_names) != self.feature_names:
            raise ValueError("the hazard head's columns differ from the model's feature columns")
        if not hazard_weight >= 0.0 or (hazard is None and hazard_weight):
            raise ValueError(f"hazard_weight must be >= 0 and needs a hazard head, got {hazard_weight}")
        self.linear = linear
        self.booster_weight = float(booster_weight)
        self.hazard = hazard
        self.hazard_weight = float(hazard_weight)
        self.default_population_shift = float(default_population_shift)
        if profile is not None and profile.feature_names != self.feature_names:
            raise ValueError("the feature profile's columns differ from the model's feature columns")
        if spend_feature is not None and spend_feature not in self.feature_names:
            raise ValueError(f"spend feature '{spend_feature}' is not a model feature")

    # -- inputs -----------------------------------------------------------------------------
    def prepare(self, features: pd.DataFrame) -> np.ndarray:
        """Feature columns in model order with category codes, as a float64 matrix.

        Raises
        ------
        ValueError
            Naming the first missing or non-numeric feature column.
        """
        return encode_frame(features, self.feature_names, self.categories)

    def drift(self, X: np.ndarray, features: pd.DataFrame | None = None) -> list[FeatureDrift]:
        """Drift of a prepared matrix against the training rows, largest PSI first (see
        :mod:`models.drift`); empty for a matrix without rows or a scorer without a training profile.

        With the ``features`` ``X`` was prepared from, each categorical feature's drift also names
        its category values no training row had (:meth:`unseen_counts`).
        """
        profile = getattr(self, "profile", None)  # scorers pickled before profiles existed have none
        if profile is None or len(X) == 0:
            return []
        drift = profile.compare(X)
        return drift if features is None else with_unseen(drift, self.unseen_counts(features, X), len(X))

    @property
    def vocabulary(self) -> dict[str, tuple[str, ...]]:
        """The touchpoint event types and channels the model's features were built with
        (``features.touchpoints.vocabularies``); empty for a model trained without events, or
        before the vocabulary was kept. Scoring computes features with it
        (``CanonicalTables.with_vocabulary``)."""
        return {k: tuple(v) for k, v in (getattr(self, "metadata", {}).get("vocabulary") or {}).items()}

    def unseen(self, features: pd.DataFrame, X: np.ndarray) -> dict[str, pd.Series]:
        """The category values no training row had, per categorical feature, by row position
        (:func:`unseen_values`; ``X`` is :meth:`prepare` of ``features``)."""
        return unseen_values(features, X, self.feature_names, self.categories, getattr(self, "profile", None))

    def unseen_rows(self, features: pd.DataFrame, X: np.ndarray) -> dict[int, dict[str, str]]:
        """Row position -> ``{feature: value}`` of :meth:`unseen`: what :meth:`score_matrix` takes
        as ``unseen`` to name such a value in a reason (see :func:`rows_at` for a subset of rows)."""
        out: dict[int, dict[str, str]] = {}
        for name, values in self.unseen(features, X).items():
            for row, value in values.items():
                out.setdefault(int(row), {})[name] = value
        return out

    def unseen_counts(self, features: pd.DataFrame, X: np.ndarray) -> dict[str, dict[str, int]]:
        """``{feature: {value: rows}}`` of :meth:`unseen`."""
        return count_unseen(self.unseen(features, X))

    def unseen_warnings(
        self, features: pd.DataFrame, X: np.ndarray, attributes: frozenset[str] = frozenset()
    ) -> dict[int, list[str]]:
        """Per row position, one sentence per category value no training row had (:meth:`unseen`).

        The booster reads such a value as missing, so the score stands, but a typo (``"admin"``
        for ``"admin."``) or a new segment would otherwise pass without a word. ``attributes`` are
        the features a caller posted as attributes, named ``attributes.<name>`` in the sentence.
        """
        out: dict[int, list[str]] = {}
        for name, values in self.unseen(features, X).items():
            values_known = [str(v) for v in self.known_values(name)]
            known = listed(values_known, 8)
            # "united kingdom" for "United Kingdom": values are matched as written, so name the spelling.
            folded = {v.strip().casefold(): v for v in values_known}
            where = f"attributes.{name}" if name in attributes else name
            for row, value in values.items():
                close = folded.get(str(value).strip().casefold())
                hint = f"did you mean {close!r}? values are matched as written; " if close else ""
                out.setdefault(int(row), []).append(
                    f"{where} {value!r} is a value no training row of the {self.task} model had, "
                    f"so it was scored as missing ({hint}known: {known})"
                )
        return out

    def known_values(self, name: str) -> list[Any]:
        """The values of categorical feature ``name`` that training rows held, in code order."""
        profile = getattr(self, "profile", None)
        codes = profile.known_codes(name) if profile is not None else None
        values = self.categories[name]
        return list(values) if codes is None else [values[int(c)] for c in codes]

    # -- scores -----------------------------------------------------------------------------
    def raw_score(self, X: np.ndarray, as_of: Any = None) -> np.ndarray:
        """The classifier's raw (log-odds) score: the booster, blended with the linear and hazard heads
        if any (the hazard head's calendar is that of ``as_of``; None: the training test cut-off's)."""
        return self._blend(
            self.booster.predict(X, raw_score=True, num_iteration=self.num_iteration),
            lambda linear: linear.decision(X),
            lambda hazard: hazard.raw(X, as_of),
        )

    def contributions(self, X: np.ndarray, as_of: Any = None) -> np.ndarray:
        """SHAP values on the log-odds scale (LightGBM's ``pred_contrib``, plus the linear head's exact
        ones and the hazard head's parts when there are such heads): one column per feature, then
        the expected value; each row sums to :meth:`raw_score` at the same ``as_of``."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        return self._blend(
            self.booster.predict(X, pred_contrib=True, num_iteration=self.num_iteration),
            lambda linear: linear.contributions(X),
            lambda hazard: hazard.contributions(X, as_of),
        )

    def _blend(self, booster_part: np.ndarray, linear_part: Any, hazard_part: Any) -> np.ndarray:
        """``booster_weight x booster_part + linear_part(linear) + hazard_weight x hazard_part(hazard)``
        over the heads this scorer has: one rule for the scores and for their SHAP values."""
        # Scorers pickled before the linear or hazard heads existed have neither.
        linear, hazard = getattr(self, "linear", None), getattr(self, "hazard", None)
        if linear is None and hazard is None:
            return booster_part
        out = self.booster_weight * booster_part
        if linear is not None:
            out = out + linear_part(linear)
        if hazard is not None:
            out = out + self.hazard_weight * hazard_part(hazard)
        return out

    def probability(self, X: np.ndarray, as_of: Any = None, population_shift: float = 0.0) -> np.ndarray:
        """Calibrated probabilities, without reasons (prior shift for ``as_of``, see :meth:`Calibrator.shift_at`;
        ``population_shift`` from :meth:`population_shift`)."""
        return self.calibrator(self.raw_score(X, as_of), as_of=as_of, population_shift=population_shift)

    def population_shift(self, X: np.ndarray, as_of: Any = None, *, raw: np.ndarray | None = None) -> float:
        """The log-odds shift that anchors a whole population's mean probability to the latest known rate.

        For a model whose calibrator has an ``anchor_rate`` (the base rate of the latest labelled
        fold), ``X`` is the population scored at ``as_of`` (every open lead of the date): the shift
        ``s`` makes the mean of its probabilities equal that rate. This assumes the rate persists
        from the latest fold to the window scored, a better forecast than the model's own level
        when the features have left the training range (see the README). 0 for other models and
        an empty ``X``. ``raw`` is :meth:`raw_score` of ``X`` when the caller has it.

        Pass the result as ``population_shift`` to :meth:`probability` or :meth:`score_matrix`
        for any row of that population, so a single row gets the same score as in the batch.
        """
        if not self.anchored or len(X) == 0:
            return 0.0
        return self.anchor_shift(self.calibrator(self.raw_score(X, as_of) if raw is None else raw, as_of=as_of))

    @property
    def dated(self) -> bool:
        """Whether the scores depend on the scoring date: a seasonal correction (a table of past
        seasons' intercepts) or a hazard head's calendar. Such a model scored without ``as_of`` uses
        its test cut-off's season, whatever the rows' date."""
        seasonal = bool(getattr(self.calibrator, "seasonal_intercepts", None))
        return seasonal or getattr(self, "hazard", None) is not None

    @property
    def anchored(self) -> bool:
        """Whether scored populations are anchored to a known rate (see :meth:`population_shift`)."""
        return getattr(self.calibrator, "anchor_rate", None) is not None  # older scorers have no anchor

    def anchor_shift(self, probability: np.ndarray) -> float:
        """:meth:`population_shift` from the population's unanchored probabilities (0 when not
        :attr:`anchored` or empty): for callers that scored it elsewhere, e.g. on Spark executors."""
        if not self.anchored or len(probability) == 0:
            return 0.0
        return rate_shift(probability, self.calibrator.anchor_rate)

    @property
    def tier_names(self) -> list[str]:
        """The tier (or grade) names, highest first."""
        return [name for name, _ in self.tiers]

    def tier_of(self, probability: np.ndarray) -> np.ndarray:
        """Tier (or grade) names for an array of probabilities."""
        names = np.array([*self.tier_names, self.tier_names[-1]], dtype=object)
        thresholds = np.array([t for _, t in self.tiers])
        # Index of the first threshold reached; the lowest tier when none is (e.g. NaN).
        reached = probability[:, None] >= thresholds[None, :]
        first = np.where(reached.any(axis=1), reached.argmax(axis=1), len(self.tiers))
        return names[first]

    def values(self, X: np.ndarray, probability: np.ndarray) -> dict[str, np.ndarray]:
        """Money figures that apply to this task, per row.

        churn: ``expected_spend`` (the customer's recent net spend scaled to H) and
        ``value_at_risk`` = P(churn) x expected spend. next purchase: ``expected_spend`` (spend
        head: expected net spend *given* a purchase in H) and ``expected_value`` = P(buy) x
        expected spend, the unconditional expected spend over H. lead: none.
        """
        if self.task == "churn" and self.spend_feature is not None:
            spend = X[:, self.feature_names.index(self.spend_feature)]
            expected = np.clip(np.nan_to_num(spend, nan=0.0), 0.0, None) * (self.horizon_days / self.spend_window_days)
            return {"expected_spend": expected, "value_at_risk": probability * expected}
        if self.task == "next_purchase" and self.spend_booster is not None:
            predicted = np.clip(self.spend_booster.predict(X, num_iteration=self.spend_num_iteration), 0.0, None)
            if getattr(self, "spend_unconditional", False):
                # The head predicts the unconditional expected spend; given a purchase, divide by P(buy).
                return {"expected_spend": predicted / np.clip(probability, 1e-3, None), "expected_value": predicted}
            expected_value = probability * predicted
            blend = getattr(self, "spend_blend", None)
            if blend is not None:
                # w_model x (P(buy) x spend head) + w_naive x (last 365 days' net spend x H / 365).
                w_model, w_naive, column = blend
                naive = np.clip(np.nan_to_num(X[:, self.feature_names.index(column)]), 0.0, None) * (
                    self.horizon_days / 365
                )
                expected_value = w_model * expected_value + w_naive * naive
                predicted = expected_value / np.clip(probability, 1e-3, None)
            return {"expected_spend": predicted, "expected_value": expected_value}
        return {}

    def score_matrix(
        self,
        X: np.ndarray,
        *,
        k: int = 3,
        explain: bool = True,
        rows: list[dict] | None = None,
        as_of: Any = None,
        contrib: np.ndarray | None = None,
        population_shift: float = 0.0,
        counter_k: int = 0,
        unseen: Mapping[int, Mapping[str, str]] | None = None,
        raw: np.ndarray | None = None,
    ) -> list[dict]:
        """Score a prepared matrix (see :meth:`prepare`).

        Parameters
        ----------
        X
            Float64 matrix in ``feature_names`` order.
        k
            Reasons per row (features that raise the score, largest SHAP impact first).
        explain
            Compute reasons (one extra tree pass for the SHAP values).
        rows
            Optional original feature values per row, used in the reason sentences.
        as_of
            The scoring date (cut-off of the features): picks the seasonal prior shift (see
            :meth:`Calibrator.shift_at`); ``None`` keeps the shift of the training run's test cut-off.
        contrib
            :meth:`contributions` of ``X`` computed before (the API computes them once per
            snapshot); then no tree is evaluated here.
        population_shift
            :meth:`population_shift` of the population these rows belong to (0: none).
        counter_k
            Counter-reasons per row, with ``explain``: the features that lower the score most.
        unseen
            :meth:`unseen_rows` of the rows of ``X``: a reason on such a feature names the value
            posted, which ``X`` holds as missing.
        raw
            :meth:`raw_score` of ``X`` computed before (the API keeps a snapshot's): the score, in place
            of the sum of ``contrib`` (equal to ~1e-14), so a row scores the same with and without reasons.

        Returns
        -------
        One dict per row: ``probability``, the tier or grade, the money values of the task and,
        when ``explain``, ``reasons``: ``[{"text", "feature", "value", "impact",
        "probability_change"}]`` with ``impact`` the SHAP value on the log-odds scale and
        ``probability_change`` the probability less the probability of the raw score without that
        impact, calibrated as the score is (what the reason adds, in probability) (and with
        ``counter_k > 0``, ``counter_reasons`` alike, their impacts and changes negative).
        """
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"X must have shape (n, {len(self.feature_names)}), got {X.shape}")
        if len(X) == 0:
            return []
        if contrib is not None and contrib.shape != (len(X), len(self.feature_names) + 1):
            raise ValueError(f"contrib must have shape ({len(X)}, {len(self.feature_names) + 1}), got {contrib.shape}")
        if raw is not None and np.shape(raw) != (len(X),):
            raise ValueError(f"raw must have shape ({len(X)},), got {np.shape(raw)}")
        if explain and contrib is None:
            contrib = self.contributions(X, as_of)
        if raw is None:
            raw = contrib.sum(axis=1) if contrib is not None else self.raw_score(X, as_of)
        dated = dated_values(as_of, self.horizon_days)
        reasons = (
            self.reasons.explain(contrib[:, :-1], X, k=k, rows=rows, unseen=unseen, dated=dated) if explain else None
        )
        counter = (
            self.reasons.explain(
                contrib[:, :-1], X, k=counter_k, rows=rows, counter=True, unseen=unseen, dated=dated, said=reasons
            )
            if explain and counter_k > 0
            else None
        )
        # The scores and, for each reason, the score without its impact: one calibrator call for all
        # (each call costs ~20 us whatever its size; the API scores one row at a time).
        given = [r for row_reasons in (*(reasons or ()), *(counter or ())) for r in row_reasons]
        if given:
            rows = [i for part in (reasons, counter) for i, row_reasons in enumerate(part or ()) for _ in row_reasons]
            impacts = np.fromiter((r["impact"] for r in given), dtype=np.float64, count=len(given))
            both = self.calibrator(
                np.concatenate([raw, raw[rows] - impacts]), as_of=as_of, population_shift=population_shift
            )
            probability, without = both[: len(raw)], both[len(raw) :]
            for reason, change in zip(given, (probability[rows] - without).tolist(), strict=True):
                reason["probability_change"] = round(change, 6)
        else:
            probability = self.calibrator(raw, as_of=as_of, population_shift=population_shift)
        tiers = self.tier_of(probability)
        values = self.values(X, probability)
        out = []
        for i in range(len(X)):
            item: dict[str, Any] = {"probability": float(probability[i]), self.tier_key: str(tiers[i])}
            for name, column in values.items():
                item[name] = float(column[i])
            if reasons is not None:
                item["reasons"] = reasons[i]
            if counter is not None:
                item["counter_reasons"] = counter[i]
            out.append(item)
        return out

    def score_frame(
        self,
        features: pd.DataFrame,
        *,
        k: int = 3,
        explain: bool = True,
        as_of: Any = None,
        prepared: np.ndarray | None = None,
        population_shift: float = 0.0,
        counter_k: int = 0,
    ) -> pd.DataFrame:
        """Score a feature table; returns the entity id, probability, tier/grade, values and reasons.

        ``as_of`` is the scoring date for the seasonal prior shift, ``population_shift`` the
        population's anchor and ``counter_k`` the counter-reasons per row (see :meth:`score_matrix`);
        ``prepared`` is ``prepare(features)`` when the caller already built it.

        Raises
        ------
        ValueError
            The entity id column or a feature column is missing.
        """
        if self.entity not in features.columns:
            raise ValueError(f"id column '{self.entity}' is missing from the input")
        X = self.prepare(features) if prepared is None else prepared
        scores = self.score_matrix(
            X,
            k=k,
            explain=explain,
            as_of=as_of,
            population_shift=population_shift,
            counter_k=counter_k,
            unseen=self.unseen_rows(features, X) if explain else None,
        )
        out = pd.DataFrame(scores, index=features.index)
        if out.empty:
            out = pd.DataFrame(columns=["probability", self.tier_key, *self.value_names])
        out.insert(0, self.entity, features[self.entity].to_numpy())
        return out.reset_index(drop=True)

    @property
    def value_names(self) -> list[str]:
        """Names of the money fields this task returns."""
        if self.task == "churn" and self.spend_feature is not None:
            return ["expected_spend", "value_at_risk"]
        if self.task == "next_purchase" and self.spend_booster is not None:
            return ["expected_spend", "expected_value"]
        return []

    def __repr__(self) -> str:
        return (
            f"Scorer(task={self.task!r}, model_name={self.model_name!r}, version={self.version!r}, "
            f"features={len(self.feature_names)})"
        )
