"""The frozen description of one model: who is scored, what is predicted, with which estimator and words.

A :class:`ModelSpec` is built from the run's :class:`features.config.ModelConfig` by each model
module (``models.churn``, ``models.next_purchase``, ``models.lead_qualification``). It holds no
learned state: training reads it to fit, the :class:`models.scorer.Scorer` copies the parts it
needs (tiers, reason texts) so that a pickled scorer never depends on this module's code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from features.config import ModelConfig

__all__ = [
    "RESERVED_LGBM_PARAMS",
    "ModelSpec",
    "base_lgbm_params",
    "override_params",
    "tiers_from_config",
    "weekly_hazard",
]

# LightGBM parameters a config may not override, and why: each is part of the model's definition
# or set by the training code from other fields.
RESERVED_LGBM_PARAMS = {
    "objective": "the objective is part of the model's definition",
    "seed": "set models.<task>.seed instead",
    "monotone_constraints": "the model's monotone constraints keep its answers sensible",
    "categorical_feature": "categorical columns come from the feature table",
    "num_iterations": "the number of trees is found by early stopping",
    "early_stopping_round": "early stopping is part of the backtest",
    "metric": "early stopping reads the objective's own loss",
}
LGBM_DOCS = "https://lightgbm.readthedocs.io/en/stable/Parameters.html"


@lru_cache(maxsize=1)
def _lgbm_canonical() -> dict[str, str]:
    """Every LightGBM parameter name and alias -> its canonical name (from the library itself)."""
    try:
        from lightgbm.basic import _ConfigAliases

        groups = _ConfigAliases._get_all_param_aliases()
    except (ImportError, AttributeError):  # a LightGBM without the table: reserved names only
        return {}
    return {alias: name for name, aliases in groups.items() for alias in (name, *aliases)}


def leaf_size_for(params: Mapping[str, Any], n_rows: int) -> tuple[dict[str, Any], str | None]:
    """``params`` with a leaf size that lets the trees split ``n_rows`` rows, and a note when it changed.

    The shipped leaf sizes (200 rows for churn) are for thousands of customers per cut-off; on a
    few hundred rows no split has that many on both sides, and LightGBM returns a constant model.
    When ``2 x min_data_in_leaf > n_rows`` the leaf size becomes a tenth of the rows (at least 5).
    """
    canonical = _lgbm_canonical()
    key = next((k for k in params if canonical.get(k, k) == "min_data_in_leaf"), "min_child_samples")
    size = int(params.get(key, 20))  # LightGBM's default
    if 2 * size <= n_rows:
        return dict(params), None
    smaller = max(n_rows // 10, 5)
    note = f"{key} {size} -> {smaller}: {n_rows:,} training rows cannot fill two leaves of {size}"
    return {**params, key: smaller}, note


def override_params(params: Mapping[str, Any], overrides: Mapping[str, Any], *, field_name: str) -> dict[str, Any]:
    """``params`` with ``overrides`` applied, an override replacing any alias of the same parameter.

    ``field_name`` (``models.churn.lgbm_params``) names the config field in errors.

    Raises
    ------
    ValueError
        An override is not a LightGBM parameter, or is one crmscore sets itself
        (:data:`RESERVED_LGBM_PARAMS`).
    """
    canonical = _lgbm_canonical()
    out = dict(params)
    for key, value in overrides.items():
        name = canonical.get(key, key)
        if canonical and key not in canonical:
            raise ValueError(f"{field_name}.{key}: not a LightGBM parameter (see {LGBM_DOCS})")
        if name in RESERVED_LGBM_PARAMS:
            raise ValueError(f"{field_name}.{key}: set by crmscore ({RESERVED_LGBM_PARAMS[name]})")
        for existing in [k for k in out if canonical.get(k, k) == name]:
            del out[existing]
        out[key] = value
    if overrides:
        _check_values(out, overrides, field_name)
    return out


def _check_values(params: Mapping[str, Any], overrides: Mapping[str, Any], field_name: str) -> None:
    """Refuse values LightGBM refuses (``learning_rate: -1``), found by one boosting round on four
    rows, so that ``validate`` says so rather than ``train`` failing with LightGBM's traceback."""
    import lightgbm as lgb
    import numpy as np

    X, y = np.arange(4.0).reshape(-1, 1), np.array([0.0, 1.0, 0.0, 1.0])
    try:
        lgb.train({**params, "verbose": -1}, lgb.Dataset(X, y, params={"verbose": -1}), num_boost_round=1)
    except lgb.basic.LightGBMError as exc:
        given = ", ".join(f"{k}: {v!r}" for k, v in overrides.items())
        check = str(exc).split(" at ")[0].strip()  # without the C++ source file and line
        raise ValueError(f"{field_name} ({given}): LightGBM refuses the values: {check}") from None


def base_lgbm_params(seed: int) -> dict[str, Any]:
    """LightGBM parameters shared by the three models: small trees, slow learning, row and column sampling.

    ``min_child_samples`` is high because a customer appears once per training cut-off:
    leaves of a few rows would memorise individual customers across stacked cut-offs.
    """
    return {
        "objective": "binary",
        "learning_rate": 0.03,
        "num_leaves": 15,
        "max_depth": -1,
        "min_child_samples": 50,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "cat_smooth": 10.0,
        "min_data_per_group": 50,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        # One thread: on a shared 2-core box OpenMP spin-waiting makes 2 threads several times slower.
        # (A machine with cores to spare sets models.<task>.lgbm_params.num_threads in the config.)
        "num_threads": 1,
        "verbosity": -1,
    }


# The segments the customer models' test metrics are also given for: purchase days (where most of
# the ranking error sits), tenure under or over a year, and country.
CUSTOMER_SEGMENTS = {"purchase_days": (1, 2, 4, 11), "tenure_days": (0, 365), "country": "category"}


# The weekly hazard head's cut-off step and rounds (see weekly_hazard): ModelSpec's defaults too.
HAZARD_STEP_DAYS = 56
HAZARD_ROUNDS = 150


def weekly_hazard(seed: int) -> dict[str, Any]:
    """The weekly purchase hazard head (:mod:`models.hazard`) of the customer models, as
    :class:`ModelSpec` fields: half the score, cut-offs 56 days apart, 150 rounds.

    Chosen on seven test cut-offs 30 days apart of the bundled retail data, for churn (see the
    README): cut-offs 56 days apart did as well as 28 or 14 at half the rows or less; 7 leaves
    ranked as well as 15 at a third of the SHAP cost; the fixed 150 rounds at rate 0.05 held up
    better than early stopping on the latest weeks (it stopped at 20-60 rounds at the early
    cut-offs); blend weights 0.3 to 0.8 were within 0.0007 of each other.
    """
    return {
        "hazard_blend": 0.5,
        "hazard_step_days": HAZARD_STEP_DAYS,
        "hazard_rounds": HAZARD_ROUNDS,
        "hazard_params": {
            **base_lgbm_params(seed),
            "learning_rate": 0.05,
            "num_leaves": 7,
            "min_child_samples": 200,
            "feature_fraction": 0.7,
        },
    }


def tiers_from_config(model_config: ModelConfig) -> tuple[tuple[str, float], ...]:
    """Tier names and lower thresholds, highest first, as configured."""
    return tuple((name, float(threshold)) for name, threshold in model_config.tiers.items())


@dataclass(frozen=True)
class ModelSpec:
    """Everything that defines one model except its learned parameters.

    Attributes
    ----------
    task
        ``churn``, ``next_purchase`` or ``lead``.
    entity
        The id column of the scored population.
    population, label
        Plain-language definitions, logged with each run.
    horizon_days
        H: the label window is ``(as_of, as_of + H]``.
    score_label
        What the probability means, for reports (``"P(churn in 90 days)"``).
    tier_key
        Name of the tier field in results: ``tier`` or ``grade``.
    tiers
        ``(name, lower threshold)`` pairs, highest first.
    reason_templates
        Per feature, ``str.format`` templates tried in order; fields name feature columns.
        The first template whose fields are all present and not missing is used.
    reason_direction
        What a positive SHAP contribution means, appended to each reason.
    reason_codes
        Per feature, sentences for coded values (``models.reasons.ReasonWriter``'s ``codes``).
    reason_groups
        Group name -> features that state one fact, each group one reason with the members'
        summed SHAP values (``models.reasons.ReasonWriter``'s ``groups``).
    reason_activity
        The sign of a SHAP value that means a more active customer (``ReasonWriter``'s ``activity``).
    excluded_features
        Feature columns that this model never uses (e.g. identifiers or label proxies).
    lgbm_params, num_boost_round, early_stopping_rounds
        The LightGBM classifier.
    spend_params
        LightGBM parameters of the spend head (next purchase only).
    rfm_columns
        Recency, frequency and monetary feature columns for the RFM rule baseline, if any.
    spend_feature, spend_window_days
        For churn's value at risk: the feature holding the customer's net spend over
        ``spend_window_days`` before ``as_of``; expected spend over H is that spend scaled to H.
    monotone
        Per feature, +1 or -1: the score may only rise (fall) with it, all else equal. Keeps
        the model's answers sensible where the direction is known (a more recent purchase never
        raises churn risk) and makes the behaviour tests hold by construction.
    seasonal_prior_shift
        Correct the calibrated probability for the base rate's seasonal shift between the
        calibration fold and the test window, estimated from the cut-offs one year earlier
        (see ``training.calibration.seasonal_prior_shift``). Needs training cut-offs reaching
        about a year before the calibration cut-off; without them no shift is applied.
    refit_all
        Refit the classifier on all training cut-offs (calibration fold included) with the
        early-stopped number of trees. When False the early-stopped booster is kept, so the
        calibrator sees exactly the scores it was fitted on (better when the base rate moves and
        the refit would shift the score scale).
    align_refit
        With ``refit_all``: map the refit booster's raw scores onto the early-stopped booster's
        (a least-squares line on the calibration fold) before the calibrator, which was fitted on
        the latter. Without it a calibration fold whose base rate differs from the fit folds'
        is counted twice: once by the refit, once by the calibrator.
    spend_unconditional
        Next purchase: fit the spend head on every customer (zeros included), so it predicts
        the expected value over H directly; otherwise it is fitted on the buyers and multiplied
        by P(buy) (a hurdle model).
    fit_cutoffs
        When set, only the most recent ``fit_cutoffs`` training cut-offs fit the model and the
        baselines; older ones (e.g. a year back, for the seasonal prior shift) only inform the prior.
    model_adjusted_prior
        Estimate the seasonal shift from the model's calibration-in-the-large on the two
        reference cut-offs rather than from their raw base rates (see
        ``training.calibration.model_adjusted``).
    seasonal_slope
        With the model-adjusted prior: transfer the calibration slope between the two reference
        seasons as well as the intercept (``scale`` on the log-odds, see
        ``training.calibration.model_adjusted``), for a test season that is harder to rank than
        the calibration fold's.
    spend_blend
        Next purchase: blend the expected value with the naive projection of the monetary RFM
        column, weights fitted on the calibration fold.
    anchor_rate
        Anchor each scored population's mean probability to the base rate of the latest labelled
        fold (``Calibrator.anchor_rate``, applied by ``Scorer.population_shift``), for a base
        rate that drifts with no season to predict it.
    linear_blend
        Weight ``w`` of a logistic regression on the same features in the score: the scorer's log-odds
        are ``(1 - w) x booster + w x linear head`` (:class:`models.linear.LinearHead`, fitted on the
        early-stopping rows), each part first multiplied by its Platt slope on the calibration fold,
        then calibrated together; the reasons sum both parts' exact SHAP values. None: the booster alone.
    hazard_blend
        Weight ``w`` of the weekly hazard head (:mod:`models.hazard`) in the score, customer models
        only: the scorer's log-odds are ``(1 - w) x booster + w x`` the head's (for churn
        ``logit(P(no purchase in H))``, for next purchase ``logit(P(purchase in H))``), each part first
        multiplied by its Platt slope on the calibration fold, then calibrated together. None: the
        booster alone.
    hazard_step_days
        Days between the hazard head's training cut-offs (``features.pipeline.hazard_cutoffs``).
    hazard_rounds
        Boosting rounds of the hazard head (no early stopping; see ``training.hazard.fit_hazard``).
    hazard_params
        LightGBM parameters of the hazard head; its monotone constraints are those of ``monotone``,
        with the sign flipped for churn (the head predicts a purchase in a week, churn its absence).
    top_k
        Default number of reasons per score.
    seed
        Seed of every random choice in training.
    segments
        The test fold's metrics are also given per segment (:mod:`training.segments`): per feature,
        the lower bounds of numeric bins or ``"category"``.
    """

    task: str
    entity: str
    population: str
    label: str
    horizon_days: int
    score_label: str
    tier_key: str
    tiers: tuple[tuple[str, float], ...]
    reason_templates: Mapping[str, tuple[str, ...]]
    reason_direction: str
    lgbm_params: Mapping[str, Any]
    num_boost_round: int = 2000
    early_stopping_rounds: int = 100
    excluded_features: frozenset[str] = frozenset()
    reason_codes: Mapping[str, Mapping[Any, str]] = field(default_factory=dict)
    reason_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    reason_activity: int = 0
    spend_params: Mapping[str, Any] | None = None
    rfm_columns: tuple[str, str, str] | None = None
    spend_feature: str | None = None
    spend_window_days: int | None = None
    monotone: Mapping[str, int] = field(default_factory=dict)
    primary_metric: str = "roc_auc"
    seasonal_prior_shift: bool = False
    refit_all: bool = True
    align_refit: bool = False
    spend_unconditional: bool = False
    fit_cutoffs: int | None = None
    model_adjusted_prior: bool = True
    seasonal_slope: bool = False
    spend_blend: bool = False
    anchor_rate: bool = False
    linear_blend: float | None = None
    hazard_blend: float | None = None
    hazard_step_days: int = HAZARD_STEP_DAYS
    hazard_rounds: int = HAZARD_ROUNDS
    hazard_params: Mapping[str, Any] | None = None
    top_k: int = 3
    seed: int = 42
    metrics: tuple[str, ...] = ("roc_auc", "pr_auc", "brier", "ece", "lift_at_10", "capture_at_10")
    segments: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Frozen mappings: a spec is shared by every run in a process and must not drift.
        object.__setattr__(self, "reason_templates", MappingProxyType(dict(self.reason_templates)))
        object.__setattr__(
            self, "reason_codes", MappingProxyType({k: MappingProxyType(dict(v)) for k, v in self.reason_codes.items()})
        )
        object.__setattr__(
            self, "reason_groups", MappingProxyType({k: tuple(v) for k, v in self.reason_groups.items()})
        )
        object.__setattr__(self, "lgbm_params", MappingProxyType(dict(self.lgbm_params)))
        object.__setattr__(self, "segments", MappingProxyType(dict(self.segments)))
        if self.spend_params is not None:
            object.__setattr__(self, "spend_params", MappingProxyType(dict(self.spend_params)))
        if self.hazard_params is not None:
            object.__setattr__(self, "hazard_params", MappingProxyType(dict(self.hazard_params)))
        if self.hazard_blend is not None:
            if self.linear_blend:
                raise ValueError(f"task '{self.task}': hazard_blend and linear_blend cannot both be set")
            if not 0.0 < self.hazard_blend < 1.0:
                raise ValueError(f"task '{self.task}': hazard_blend must be in (0, 1), got {self.hazard_blend}")
            if self.entity != "customer_id":
                raise ValueError(f"task '{self.task}': the hazard head needs customer histories")

    def select_features(self, columns: Iterable[str]) -> list[str]:
        """The feature columns this model uses, in the given order."""
        return [c for c in columns if c not in self.excluded_features and c != self.entity]

    def monotone_constraints(self, features: list[str]) -> list[int]:
        """LightGBM ``monotone_constraints`` for a feature order."""
        return [int(self.monotone.get(f, 0)) for f in features]

    def tier_of(self, probability: float) -> str:
        """The tier (or grade) of one probability: the first tier whose threshold it reaches."""
        for name, threshold in self.tiers:
            if probability >= threshold and not math.isnan(probability):
                return name
        return self.tiers[-1][0]

    def describe(self) -> dict[str, Any]:
        """Plain data for logging: definitions, horizon, estimator parameters."""
        return {
            "task": self.task,
            "entity": self.entity,
            "population": self.population,
            "label": self.label,
            "horizon_days": self.horizon_days,
            "score": self.score_label,
            "tiers": dict(self.tiers),
            "lgbm_params": dict(self.lgbm_params),
            "spend_params": None if self.spend_params is None else dict(self.spend_params),
            "monotone": dict(self.monotone),
            "num_boost_round": self.num_boost_round,
            "early_stopping_rounds": self.early_stopping_rounds,
            "seasonal_prior_shift": self.seasonal_prior_shift,
            "refit_all": self.refit_all,
            "align_refit": self.align_refit,
            "fit_cutoffs": self.fit_cutoffs,
            "model_adjusted_prior": self.model_adjusted_prior,
            "seasonal_slope": self.seasonal_slope,
            "spend_unconditional": self.spend_unconditional,
            "anchor_rate": self.anchor_rate,
            "linear_blend": self.linear_blend,
            "hazard_blend": self.hazard_blend,
            "hazard_step_days": self.hazard_step_days if self.hazard_blend else None,
            "hazard_rounds": self.hazard_rounds if self.hazard_blend else None,
            "hazard_params": dict(self.hazard_params) if self.hazard_blend and self.hazard_params else None,
            "segments": dict(self.segments),
        }
