"""The three models by task name, and the config section each reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from features.config import FEATURE_SETTINGS, Config, ModelConfig
from models import churn, lead_qualification, next_purchase
from models.spec import ModelSpec, override_params

__all__ = ["TASKS", "check_model_sections", "model_config_for", "scoring_config", "spec_for"]

_SPECS: dict[str, Callable[[ModelConfig], ModelSpec]] = {
    churn.TASK: churn.spec,
    next_purchase.TASK: next_purchase.spec,
    lead_qualification.TASK: lead_qualification.spec,
}
TASKS = tuple(_SPECS)


def _check(task: str) -> None:
    if task not in _SPECS:
        raise ValueError(f"unknown model {task!r}; choose one of {list(_SPECS)}")


def model_config_for(config: Config, task: str) -> ModelConfig:
    """The ``models.<task>`` section of the run configuration."""
    _check(task)
    return getattr(config.models, task)


def scoring_config(config: Config, task: str, info: Mapping[str, Any]) -> tuple[ModelConfig, str | None]:
    """The ``models.<task>`` section to score a registered model with: the config's, with the
    settings the model (:data:`features.config.FEATURE_SETTINGS`) was trained with (``info["settings"]``, from its registry tags
    by :func:`training.pyfunc.load_champion`; none for a model registered before they were tagged),
    and a warning naming each one the config has since changed (None when none has).

    A config edited ahead of a retrain (a 30-day horizon for a model trained on 90 days) would
    otherwise feed the model features built for another question, and call its 90-day
    probabilities 30-day ones.
    """
    mc = model_config_for(config, task)
    trained = info.get("settings") or {}
    changed: dict[str, Any] = {
        name: int(trained[name])
        for name in FEATURE_SETTINGS[task]
        if trained.get(name) is not None and int(trained[name]) != getattr(mc, name)
    }
    # The tiers (grades) are the model's too: its lists and answers name them. ``info["tiers"]`` is set
    # by training.pyfunc.load_champion from the scorer.
    tiers = info.get("tiers")
    if tiers is not None and dict(tiers) != dict(mc.tiers):
        changed["tiers"] = dict(tiers)
    if not changed:
        return mc, None
    fields = ", ".join(f"models.{task}.{name} {_setting(getattr(mc, name))}" for name in changed)
    used = ", ".join(f"{name} {_setting(value)}" for name, value in changed.items())
    model = f"{info.get('model_name', 'the model')} v{info.get('version')}"
    what = "its population, features and horizon" if set(changed) - {"tiers"} else "its tiers"
    warning = (
        f"config {config.name!r} sets {fields}, but {model} was trained with {used}: scored with the model's "
        f"settings ({what}); retrain to use the config's"
    )
    return mc.model_copy(update=changed), warning


def _setting(value: Any) -> str:
    """A setting as the warning writes it: a number, or tiers as ``{high: 0.7, medium: 0.4, low: 0}``."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{name}: {threshold:g}" for name, threshold in value.items()) + "}"
    return str(value)


def spec_for(task: str, model_config: ModelConfig) -> ModelSpec:
    """The :class:`ModelSpec` of ``task`` built from its configuration section, with the section's
    ``lgbm_params`` and ``spend_params`` applied (:func:`models.spec.override_params`).

    Raises
    ------
    ValueError
        An unknown task, an override that is not a LightGBM parameter or is one crmscore sets,
        or ``spend_params`` for a model without a spend head.
    """
    _check(task)
    spec = _SPECS[task](model_config)
    changes: dict[str, Any] = {}
    for name in ("lgbm_params", "spend_params"):  # the same field on the config section and the spec
        overrides, params, field_name = getattr(model_config, name), getattr(spec, name), f"models.{task}.{name}"
        if not overrides:
            continue
        if params is None:
            raise ValueError(f"{field_name}: only next_purchase has a spend head")
        changes[name] = override_params(params, overrides, field_name=field_name)
    return dataclasses.replace(spec, **changes) if changes else spec


def check_model_sections(config: Config) -> None:
    """Build every model's spec from ``config``, so that ``crmscore validate`` refuses what training would.

    Raises
    ------
    ValueError
        An override in ``models.<task>.lgbm_params`` or ``spend_params`` that
        :func:`spec_for` refuses, naming the field.
    """
    for task in TASKS:
        spec_for(task, model_config_for(config, task))
