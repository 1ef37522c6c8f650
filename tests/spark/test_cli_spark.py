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
