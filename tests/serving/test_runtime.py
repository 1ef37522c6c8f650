"""The served state: champions, snapshot indexing, missing pieces and the atomic reload."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.config import load_config
from serving.runtime import ModelUnavailable, Runtime, build_state
from tests.serving.fakes import FakeScorer


@pytest.fixture
def config(write_config, tmp_path):
    snapshots = tmp_path / "snaps"
    snapshots.mkdir()
    pd.DataFrame(
        {
            "customer_id": ["1", "2", "3", "2"],
            "as_of": pd.to_datetime(["2011-01-01", "2011-01-01", "2011-01-01", "2010-12-01"]),
            "recency": [0.1, 0.9, 0.5, 5.0],
            "frequency": [0.2, 0.8, 0.4, 5.0],
            "country": ["UK", "France", "UK", "UK"],
        }
    ).to_parquet(snapshots / "churn.parquet")
    return load_config(
        write_config(
            {
                "name": "t",
                "tables": {
                    "transactions": {
                        "source": {"path": "t.parquet"},
                        "columns": {"customer_id": "c", "timestamp": "t", "amount": "a"},
                    }
                },
                "serving": {"snapshot_path": str(snapshots)},
            }
        )
    )


def loader(tasks):
    def load(config, task):
        if task not in tasks:
            raise ModelUnavailable(f"no champion for {task}: run `crmscore train {task}`")
        return FakeScorer(task), {"model_name": f"crmscore-{task}", "version": tasks[task]}

    return load


def test_snapshot_is_indexed_at_its_latest_cutoff(config):
    state = build_state(config, loader=loader({"churn": "1"}))
    model, snapshot = state.snapshot("churn")
    assert snapshot.as_of == "2011-01-01"
    assert dict(snapshot.index) == {"1": 0, "2": 1, "3": 2}
    np.testing.assert_array_equal(snapshot.matrix[snapshot.index["2"]], [0.9, 0.8])
    assert model.scored.customer_id.tolist() == ["1", "2", "3"]
    assert model.scored.country.tolist() == ["UK", "France", "UK"]
    assert model.scored.value_at_risk.notna().all()


def test_missing_champion_and_snapshot_say_what_to_run(config):
    state = build_state(config, loader=loader({"churn": "1", "lead": "2"}))
    with pytest.raises(ModelUnavailable, match="crmscore train next_purchase"):
        state.model("next_purchase")
    with pytest.raises(ModelUnavailable, match="crmscore features"):
        state.snapshot("lead")


def test_reload_swaps_the_whole_state(config):
    versions = {"churn": "1"}
    runtime = Runtime(config, loader=loader(versions))
    old = runtime.state
    versions["churn"] = "2"
    versions["lead"] = "1"
    new = runtime.reload()
    assert runtime.state is new and new is not old
    assert old.models["churn"].info["version"] == "1" and "lead" not in old.models
    assert new.models["churn"].info["version"] == "2" and "lead" in new.models
