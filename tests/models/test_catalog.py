"""Scoring a registered model with the settings it was trained with, whatever the config says now."""

from __future__ import annotations

from features.config import feature_settings
from models.catalog import scoring_config


def test_a_model_is_scored_with_its_own_settings_and_the_change_is_named(minimal_config):
    config = minimal_config(models={"churn": {"horizon_days": 30, "lookback_days": 200, "step_days": 7}})
    info = {"model_name": "crmscore-churn", "version": "3", "settings": {"horizon_days": 90, "lookback_days": 365}}
    mc, warning = scoring_config(config, "churn", info)
    assert (mc.horizon_days, mc.lookback_days) == (90, 365)
    assert mc.step_days == 7  # a training setting: the config's
    assert warning == (
        f"config {config.name!r} sets models.churn.horizon_days 30, models.churn.lookback_days 200, but "
        "crmscore-churn v3 was trained with horizon_days 90, lookback_days 365: scored with the model's settings "
        "(its population, features and horizon); retrain to use the config's"
    )
    # The same settings, or a version registered before they were tagged: the config's section, no warning.
    assert scoring_config(config, "churn", {"settings": feature_settings(config.models.churn, "churn")}) == (
        config.models.churn,
        None,
    )
    assert scoring_config(config, "churn", {}) == (config.models.churn, None)
    # Per task: step_days decides the lead population (leads of the last step_days), not the churn one.
    leads = minimal_config(models={"lead": {"step_days": 14}})
    mc, warning = scoring_config(leads, "lead", {"settings": {"horizon_days": 30, "step_days": 30}})
    assert mc.step_days == 30 and "models.lead.step_days 14" in warning
    assert feature_settings(leads.models.next_purchase, "next_purchase") == {"horizon_days": 90}


def test_tiers_edited_in_the_config_are_named_not_silently_ignored(minimal_config):
    """The tiers are the model's (its lists and answers name them); a config edited to other thresholds
    scored with the model's without a word (a user's 0.9/0.5 gave the same tier counts as 0.7/0.4)."""
    config = minimal_config(models={"churn": {"tiers": {"high": 0.9, "medium": 0.5, "low": 0.0}}})
    info = {"model_name": "crmscore-churn", "version": "2", "tiers": {"high": 0.7, "medium": 0.4, "low": 0.0}}
    mc, warning = scoring_config(config, "churn", info)
    assert mc.tiers == info["tiers"]
    assert warning == (
        f"config {config.name!r} sets models.churn.tiers {{high: 0.9, medium: 0.5, low: 0}}, but crmscore-churn v2 "
        "was trained with tiers {high: 0.7, medium: 0.4, low: 0}: scored with the model's settings (its tiers); "
        "retrain to use the config's"
    )
    assert scoring_config(minimal_config(), "churn", info) == (minimal_config().models.churn, None)
