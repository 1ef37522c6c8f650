"""One local SparkSession for the whole Spark test session (the JVM starts once), and Spark configs.

Every test here is marked ``spark``. Without PySpark or Java they are skipped with the reason, unless
``CRMSCORE_REQUIRE_SPARK=1`` (set in CI), where a missing PySpark or Java is a failure.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import CONFIGS

SPARK_CONF = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.driver.memory": "2g",
}


@pytest.fixture(scope="session")
def spark():
    """A local[2] SparkSession shared by every Spark test; stopped at the end of the session."""
    missing = None
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        missing = "the Spark tests need the extra: pip install 'crmscore[spark]'"
    if missing is None and shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        missing = "the Spark tests need Java 17 (java on PATH, or JAVA_HOME)"
    if missing:
        if os.environ.get("CRMSCORE_REQUIRE_SPARK") == "1":
            pytest.fail(missing + " (CRMSCORE_REQUIRE_SPARK=1)")
        pytest.skip(missing)

    # Python workers (the MLflow UDF) must run this interpreter, with this environment's packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master("local[2]").appName("crmscore-tests")
    for key, value in SPARK_CONF.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def spark_config_file(tmp_dir: Path, base: str = "online_retail.yaml", **overrides) -> Path:
    """A copy of a bundled config with ``engine: spark`` (and ``overrides``), its source paths made absolute."""
    raw = yaml.safe_load((CONFIGS / base).read_text())
    for table in raw["tables"].values():
        path = Path(table["source"]["path"])
        if not path.is_absolute():
            table["source"]["path"] = str((CONFIGS / path).resolve())
    raw.update({"engine": "spark", "spark": {"master": "local[2]", "conf": SPARK_CONF}}, **overrides)
    out = Path(tmp_dir) / f"spark_{base}"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


@pytest.fixture(scope="session")
def retail_tables(spark):
    """The bundled Online Retail II canonical tables on both engines, loaded once: ``{"duckdb": ..., "spark": ...}``."""
    from features.config import load_config
    from features.engine import connect
    from features.sources import load_tables

    out = {}
    for engine in ("duckdb", "spark"):
        config = load_config(CONFIGS / "online_retail.yaml", overrides={"engine": engine})
        out[engine] = load_tables(config, con=connect(config, session=spark) if engine == "spark" else None)
    return out
