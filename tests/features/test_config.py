"""The config schema: unknown keys and wrong types name the key; defaults live in one place."""

from __future__ import annotations

import pytest
import yaml

from features.config import Config, ConfigError, load_config
from tests.conftest import CONFIGS, minimal_config_dict


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config = load_config(path)
    assert isinstance(config, Config)
    assert config.tracking_uri.startswith("sqlite:///")


def test_minimal_config_takes_documented_defaults(write_config):
    config = load_config(write_config(minimal_config_dict()))
    assert config.engine == "duckdb"
    assert config.tracking_uri == "sqlite:///mlflow.db"
    assert config.models.churn.horizon_days == 90
    assert config.tables.transactions.source.format == "parquet"
    # Relative paths resolve against the config file's folder, not the working directory.
    assert config.resolve("tx.parquet") == str((config.base_dir / "tx.parquet").resolve())


def test_a_model_section_that_sets_some_fields_keeps_the_models_other_defaults(write_config):
    data = minimal_config_dict()
    data["models"] = {"churn": {"test_cutoff": "2011-09-10"}, "lead": {"test_cutoff": "2010-03-01", "step_days": 15}}
    models = load_config(write_config(data)).models
    # Churn and next purchase: a year of monthly cut-offs (for the seasonal prior shift).
    assert models.churn.n_train_cutoffs == 13 and models.churn.horizon_days == 90
    assert models.next_purchase.n_train_cutoffs == 13
    # Leads keep their 30-day horizon and grades A-D; what the section sets wins.
    assert models.lead.horizon_days == 30 and list(models.lead.tiers) == ["A", "B", "C", "D"]
    assert models.lead.step_days == 15 and models.lead.n_train_cutoffs == 6
    data["models"] = {"churn": {"n_train_cutoffs": 5}}
    assert load_config(write_config(data)).models.churn.n_train_cutoffs == 5


@pytest.mark.parametrize("workers", [1, 4, "cpu_count"])
def test_serving_workers_is_a_count_or_one_per_core(write_config, workers):
    assert load_config(write_config(minimal_config_dict())).serving.workers == 1
    assert (
        load_config(write_config({**minimal_config_dict(), "serving": {"workers": workers}})).serving.workers == workers
    )


def test_config_is_frozen(write_config):
    config = load_config(write_config(minimal_config_dict()))
    with pytest.raises(Exception, match="frozen"):
        config.engine = "spark"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(enigne="spark"), "enigne: unknown key"),
        (lambda d: d["tables"]["transactions"].update(colums={}), "tables.transactions.colums: unknown key"),
        (lambda d: d.update(engine="postgres"), "engine"),
        (lambda d: d.update(models={"churn": {"horizon_days": "ninety"}}), "models.churn.horizon_days"),
        (lambda d: d.update(models={"churn": {"horizon_days": 0}}), "models.churn.horizon_days"),
        (lambda d: d["tables"]["transactions"]["columns"].pop("amount"), "required canonical column(s) ['amount']"),
        (lambda d: d["tables"]["transactions"]["columns"].update(colour="c"), "unknown canonical column(s) ['colour']"),
        (lambda d: d["tables"]["transactions"]["source"].update(path="tx.xlsx"), "cannot infer the format"),
        (lambda d: d.update(models={"churn": {"tiers": {"low": 0.1, "high": 0.9}}}), "highest tier down"),
        # p = 0.01 was called "medium": the lowest tier must take every probability below the others.
        (
            lambda d: d.update(models={"churn": {"tiers": {"high": 0.7, "medium": 0.4}}}),
            "the lowest tier must start at 0",
        ),
        # The lists show probabilities truncated to 4 decimals: 0.70005 would show as 0.7000 in either tier.
        (
            lambda d: d.update(models={"churn": {"tiers": {"high": 0.70005, "low": 0}}}),
            "tiers: 'high' starts at 0.70005, finer than the 4 decimals",
        ),
        (lambda d: d.update(serving={"workers": 0}), "serving.workers: Value error, a whole number of processes"),
        (lambda d: d.update(serving={"workers": "all"}), "\"cpu_count\" (one per core) (got 'all')"),
        (lambda d: d.update(serving={"workers": True}), "serving.workers"),
    ],
)
def test_bad_config_names_the_key(write_config, mutate, expected):
    data = minimal_config_dict()
    mutate(data)
    with pytest.raises(ConfigError) as info:
        load_config(write_config(data))
    assert expected in str(info.value)


def test_missing_file_and_non_mapping(tmp_path, write_config):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_overrides_replace_top_level_keys(write_config):
    config = load_config(write_config(minimal_config_dict()), overrides={"engine": "spark"})
    assert config.engine == "spark"


@pytest.mark.parametrize("task", ["next_purchase", "lead"])
def test_a_lookback_outside_churn_is_refused_not_ignored(task, write_config):
    """next_purchase.lookback_days: 730 in the bundled config changed nothing: only churn's population has a lookback."""
    base = yaml.safe_load((CONFIGS / "online_retail.yaml").read_text())
    with pytest.raises(
        ConfigError, match=f"models.{task}.lookback_days: only churn has a lookback window; the {task} "
    ):
        load_config(write_config({**base, "models": {task: {"lookback_days": 730}}}))
    assert (
        load_config(write_config({**base, "models": {"churn": {"lookback_days": 730}}})).models.churn.lookback_days
        == 730
    )
    # A config written out whole (Config.to_dict) holds every model's default lookback: read back as it is.
    whole = load_config(CONFIGS / "online_retail.yaml").to_dict()
    assert load_config(write_config({**whole, "name": "copy"})).models.next_purchase.lookback_days == 365


def test_a_yaml_error_names_the_file(tmp_path):
    """PyYAML named "<unicode string>" when it was given the file's text."""
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ntables:\n  transactions: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f'in "{path}", line' in str(info.value) and "<unicode string>" not in str(info.value)


def test_a_key_given_twice_is_an_error_not_the_last_one_silently(tmp_path):
    """PyYAML keeps the last of two equal keys: a second ``models:`` block appended to a file dropped the
    first one's test cut-off while validate said OK. An anchor merged and overridden is not a duplicate."""
    path = tmp_path / "twice.yaml"
    path.write_text(
        "name: x\nmodels:\n  lead:\n    test_cutoff: 2010-03-01\n"
        "tables:\n  transactions:\n    source: {path: tx.parquet}\n"
        "    columns: {customer_id: cid, timestamp: ts, amount: qty}\n"
        "models:\n  lead:\n    horizon_days: 7\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "key 'models' is given twice in one mapping (first on line 2)" in str(info.value)
    assert f'in "{path}", line 9' in str(info.value)
    merged = tmp_path / "merged.yaml"
    merged.write_text(
        "name: x\nbase: &base {horizon_days: 30, step_days: 30}\n"
        "tables:\n  transactions:\n    source: {path: tx.parquet}\n"
        "    columns: {customer_id: cid, timestamp: ts, amount: qty}\n"
        "models:\n  lead:\n    <<: *base\n    horizon_days: 14\n"
    )
    with pytest.raises(ConfigError, match="base: unknown key"):  # past the YAML: the merge itself was read
        load_config(merged)
