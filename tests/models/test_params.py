"""LightGBM parameters from the config: checked names, aliases replaced, reserved ones refused."""

from __future__ import annotations

import pytest

from features.config import ConfigError, ModelConfig
from models.catalog import spec_for
from models.spec import RESERVED_LGBM_PARAMS, leaf_size_for, override_params
from tests.training.synthetic import MODEL_CONFIG, training_set
from training.backtest import run_backtest


def test_an_override_replaces_the_specs_alias_of_the_same_parameter():
    base = spec_for("churn", ModelConfig()).lgbm_params
    assert base["min_child_samples"] == 200 and base["num_threads"] == 1
    spec = spec_for("churn", ModelConfig(lgbm_params={"min_data_in_leaf": 80, "n_jobs": 2, "max_bin": 63}))
    params = dict(spec.lgbm_params)
    assert "min_child_samples" not in params and params["min_data_in_leaf"] == 80
    assert "num_threads" not in params and params["n_jobs"] == 2 and params["max_bin"] == 63
    assert params["num_leaves"] == base["num_leaves"]  # the rest as the spec has it
    assert spec.describe()["lgbm_params"] == params  # what MLflow logs as model_spec.json


def test_unknown_and_reserved_names_are_errors_naming_the_field():
    with pytest.raises(ValueError, match=r"models\.churn\.lgbm_params\.num_leafs: not a LightGBM parameter"):
        spec_for("churn", ModelConfig(lgbm_params={"num_leafs": 31}))
    with pytest.raises(ValueError, match=r"models\.lead\.lgbm_params\.loss: set by crmscore \(the objective"):
        spec_for("lead", ModelConfig(lgbm_params={"loss": "cross_entropy"}))  # an alias of objective
    with pytest.raises(ValueError, match=r"random_state: set by crmscore \(set models.<task>.seed instead\)"):
        spec_for("churn", ModelConfig(lgbm_params={"random_state": 1}))
    with pytest.raises(ValueError, match=r"models\.churn\.spend_params: only next_purchase has a spend head"):
        spec_for("churn", ModelConfig(spend_params={"tweedie_variance_power": 1.2}))
    spend = spec_for("next_purchase", ModelConfig(spend_params={"tweedie_variance_power": 1.2})).spend_params
    assert spend["tweedie_variance_power"] == 1.2 and spend["objective"] == "tweedie"
    for name in RESERVED_LGBM_PARAMS:
        with pytest.raises(ValueError, match="set by crmscore"):
            override_params({}, {name: 1}, field_name="f")


def test_the_config_types_the_values(write_config):
    from features.config import load_config
    from tests.conftest import minimal_config_dict

    config = load_config(
        write_config({**minimal_config_dict(), "models": {"churn": {"lgbm_params": {"num_leaves": 31}}}})
    )
    assert config.models.churn.lgbm_params == {"num_leaves": 31} and config.models.churn.n_train_cutoffs == 13
    with pytest.raises(ConfigError, match="lgbm_params"):
        load_config(write_config({**minimal_config_dict(), "models": {"churn": {"lgbm_params": {"num_leaves": [1]}}}}))


def test_the_override_reaches_the_trained_booster():
    """On the SYNTHETIC training set: num_leaves 2 from the config gives trees of two leaves."""
    config = MODEL_CONFIG.model_copy(update={"lgbm_params": {"num_leaves": 2}})
    result = run_backtest(training_set(0, n=1500), spec_for("churn", config), num_boost_round=50)
    trees = result.scorer.booster.dump_model()["tree_info"]
    assert trees and all(tree["num_leaves"] <= 2 for tree in trees)
    default = run_backtest(training_set(0, n=1500), spec_for("churn", MODEL_CONFIG), num_boost_round=50)
    assert max(tree["num_leaves"] for tree in default.scorer.booster.dump_model()["tree_info"]) > 2


def test_the_leaf_size_shrinks_only_when_the_rows_cannot_fill_two_leaves():
    params = spec_for("churn", ModelConfig()).lgbm_params
    kept, note = leaf_size_for(params, 400)
    assert kept == params and note is None  # 2 x 200 rows fit
    small, note = leaf_size_for(params, 146)
    assert small["min_child_samples"] == 14 and small["num_leaves"] == params["num_leaves"]
    assert note == "min_child_samples 200 -> 14: 146 training rows cannot fill two leaves of 200"
    aliased, note = leaf_size_for({"min_data_in_leaf": 80}, 30)
    assert aliased == {"min_data_in_leaf": 5} and note.startswith("min_data_in_leaf 80 -> 5")
