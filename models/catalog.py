"""The three models by task name, and the config section each reads."""

from __future__ import annotations

from collections.abc import Callable

from features.config import Config, ModelConfig
from models import churn, lead_qualification, next_purchase
from models.spec import ModelSpec

__all__ = ["TASKS", "model_config_for", "spec_for"]

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
    """The :class:`ModelSpec` of ``task`` built from its configuration section."""
    _check(task)
    return _SPECS[task](model_config)
