"""Batch scoring as a Spark job: ``mlflow.pyfunc.spark_udf`` on the champion gives the in-process scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.config import load_config
from models.catalog import model_config_for
from serving.spark_batch import score_spark, score_spark_frame, spark_features
from tests.spark.conftest import spark_config_file
from training.pyfunc import load_champion, predict_frame
from training.score import score_batch
from training.train import train_model

pytestmark = [pytest.mark.spark, pytest.mark.slow]

AS_OF = "2011-09-10"
CHURN = {"horizon_days": 90, "lookback_days": 365, "test_cutoff": AS_OF, "step_days": 90, "n_train_cutoffs": 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, retail_tables):
    """A small churn champion in a temporary SQLite MLflow store; returns the DuckDB and Spark configs and tmp dir."""
    tmp = tmp_path_factory.mktemp("spark_scoring")
    path = spark_config_file(
        tmp, tracking_uri=f"sqlite:///{tmp}/mlflow.db", output_dir=str(tmp / "outputs"), models={"churn": CHURN}
    )
    duck = load_config(path, overrides={"engine": "duckdb"})
    spark = load_config(path)
    result = train_model(duck, "churn", tables=retail_tables["duckdb"], force_promote=True)
    assert result["alias"] == "champion"
    return duck, spark, tmp


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("customer_id").reset_index(drop=True)


def test_udf_scores_equal_in_process_scores_on_the_same_snapshot(trained, retail_tables, spark):
    """One feature snapshot (materialised, so both sides read the same bits), scored both ways."""
    duck, config, tmp = trained
    snapshot = tmp / "features_snapshot"
    spark_features(config, "churn", as_of=AS_OF, tables=retail_tables["spark"]).write.parquet(str(snapshot))
    features = spark.read.parquet(str(snapshot))

    remote = _sorted(score_spark_frame(config, "churn", features, as_of=AS_OF, explain=True).toPandas())
    scorer, info = load_champion(duck, "churn")
    k = model_config_for(duck, "churn").top_k_reasons
    local = _sorted(predict_frame(scorer, features.toPandas(), k=k, explain=True))

    assert len(remote) == len(local) > 3_000
    assert remote["customer_id"].tolist() == local["customer_id"].tolist()
    for column in local.columns:
        if pd.api.types.is_float_dtype(local[column]):
            np.testing.assert_allclose(remote[column], local[column], rtol=1e-9, atol=1e-12, err_msg=column)
        else:
            assert remote[column].tolist() == local[column].tolist(), column
    assert json.loads(remote["reasons"][0])[0]["text"]
    assert (remote["as_of"] == pd.Timestamp(AS_OF)).all()
    assert set(remote["model_version"]) == {info["version"]} and set(remote["model_name"]) == {"crmscore-churn"}


def test_score_spark_writes_the_score_batch_table(trained, retail_tables):
    """End to end against ``score_batch`` on DuckDB: same rows, columns and scores.

    Each engine sums money in its own order, so a net spend can differ in the last bit (0.0 on one
    engine, 5.7e-14 on the other); where such a value sits on a tree split (LightGBM splits at 0) the
    probability differs. Scores are therefore compared row by row, with at most 0.5% of rows allowed to
    differ; on the same snapshot they are equal to 1e-9 (the test above).
    """
    duck, config, tmp = trained
    local_out, spark_out = tmp / "local.parquet", tmp / "spark_scores"
    spark_out.mkdir()
    (spark_out / "stale.parquet").write_bytes(b"an earlier run")
    n_local = score_batch(duck, "churn", as_of=AS_OF, out=local_out, tables=retail_tables["duckdb"]).rows
    n_spark = score_spark(config, "churn", as_of=AS_OF, out_dir=str(spark_out), tables=retail_tables["spark"])

    assert n_spark == n_local > 3_000
    assert not (spark_out / "stale.parquet").exists() and not list(tmp.glob(".spark_scores*"))
    local, remote = _sorted(pd.read_parquet(local_out)), _sorted(pd.read_parquet(spark_out))
    assert list(remote.columns) == list(local.columns)
    assert remote["customer_id"].tolist() == local["customer_id"].tolist()
    assert remote["as_of"].tolist() == local["as_of"].tolist()
    same = np.isclose(remote["probability"], local["probability"], rtol=1e-9, atol=1e-12)
    assert same.mean() >= 0.995, f"{(~same).sum()} of {len(same)} probabilities differ"
    for column in ("tier", "model_name", "model_version"):
        assert (remote[column].astype(str) == local[column].astype(str))[same].all(), column
