"""``crmscore features`` with ``engine: spark`` writes the same single Parquet snapshot as with DuckDB."""

from __future__ import annotations

import pandas as pd
import pandas.testing as pdt
import pytest
import yaml
from typer.testing import CliRunner

from serving.cli import app
from tests.conftest import CONFIGS, DATA

pytestmark = pytest.mark.spark


def test_features_command_on_spark_equals_duckdb(tmp_path, spark):
    # 60,000 invoice lines (a few hundred customers) keep the test quick; microsecond timestamps for Spark.
    frame = pd.read_parquet(DATA / "online_retail_ii.parquet").head(60_000)
    frame.to_parquet(tmp_path / "retail.parquet", coerce_timestamps="us", allow_truncated_timestamps=True)
    config = yaml.safe_load((CONFIGS / "online_retail.yaml").read_text())
    config["tables"]["transactions"]["source"]["path"] = str(tmp_path / "retail.parquet")
    snapshots = {}
    for engine in ("duckdb", "spark"):
        path = tmp_path / f"{engine}.yaml"
        path.write_text(yaml.safe_dump({**config, "engine": engine}))
        out = tmp_path / f"features_{engine}.parquet"
        result = CliRunner().invoke(
            app, ["features", "--config", str(path), "--as-of", "2010-03-01", "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        assert out.is_file()
        snapshots[engine] = pd.read_parquet(out)
    assert len(snapshots["duckdb"]) > 100
    pdt.assert_frame_equal(snapshots["spark"], snapshots["duckdb"], check_exact=False, rtol=1e-9, atol=1e-9)


def test_a_spark_setting_spark_cannot_start_with_is_a_config_error(tmp_path):
    """A typo in spark.master ended in a hundred lines of Py4J and Java traceback, exit 1. A fresh
    process: an active session would be reused whatever the settings say."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.spark.conftest import spark_config_file

    path = spark_config_file(tmp_path, spark={"master": "local[2"})
    crmscore = Path(sys.executable).with_name("crmscore")
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true"}
    args = [
        str(crmscore),
        "features",
        "--config",
        str(path),
        "--as-of",
        "2011-09-10",
        "--out",
        str(tmp_path / "f.parquet"),
    ]
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: spark: the Spark session did not start with spark.master 'local[2'" in result.stderr
    assert "Could not parse Master URL" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "f.parquet").exists()
