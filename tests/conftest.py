"""Shared fixtures: paths to the bundled data and configs, and a per-test config writer."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
DATA = ROOT / "data"


def minimal_config_dict() -> dict:
    """The smallest valid config: one transactions table with the three required columns."""
    return {
        "name": "t",
        "tables": {
            "transactions": {
                "source": {"path": "tx.parquet"},
                "columns": {"customer_id": "cid", "timestamp": "ts", "amount": "qty * price"},
            }
        },
    }


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch):
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "true")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture
def write_config(tmp_path):
    """Write a config dict as YAML into tmp_path and return its path."""

    def write(data: dict, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


@pytest.fixture
def minimal_config(write_config, tmp_path):
    """Load :func:`minimal_config_dict` with top-level keys added or replaced (e.g. ``serving={...}``).

    Its MLflow store is in ``tmp_path``: the default ``sqlite:///mlflow.db`` is relative to the
    working directory, where ``make demo`` leaves a registry whose champions a test must not see.
    """
    from features.config import load_config

    def load(**top_level):
        isolated = {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
        return load_config(write_config({**minimal_config_dict(), **isolated, **top_level}))

    return load
