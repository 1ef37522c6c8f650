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


# `make test` runs two pytest-xdist workers. A worker gets a whole group of tests at a time: the API
# and serving tests share the demo's trained registry and a server (tests/serving), the Spark tests a
# JVM with the bundled tables (tests/spark), so each of those folders is one group and its session
# fixtures are built once; every other module is a group of its own (its module fixtures are built
# once too). The two folders, the longest groups (about 5 minutes each), are handed out first.
# (xdist's loadgroup marks do not reach its scheduler under pytest 9, which derives node ids anew.)
SHARED_FOLDERS = ("tests/serving/", "tests/spark/")


def xdist_group_of(nodeid: str) -> str:
    """The group a test runs in under pytest-xdist: its shared folder, else its module."""
    return next((folder for folder in SHARED_FOLDERS if nodeid.startswith(folder)), nodeid.split("::")[0])


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load":  # the default of -n; another --dist asked for is xdist's
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group_of(nodeid)

        def _assign_work_unit(self, node) -> None:
            for folder in reversed(SHARED_FOLDERS):
                if folder in self.workqueue:
                    self.workqueue.move_to_end(folder, last=False)
            super()._assign_work_unit(node)

    return SharedFixtureScheduling(config, log)


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
