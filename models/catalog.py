"""The three models by task name, and the config section each reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from features.config import Config, ModelConfig
from models import churn, lead_qualification, next_purchase
from models.spec import ModelSpec, override_params

__all__ = ["TASKS", "check_model_sections", "model_config_for", "spec_for"]

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
