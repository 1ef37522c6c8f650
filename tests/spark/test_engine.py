"""Engine choice: a clear install hint without PySpark, and a Spark connection that computes like DuckDB."""

from __future__ import annotations

import builtins
import sys

import pytest

from features.config import load_config
from features.engine import EngineError, connect
from tests.conftest import CONFIGS


def _spark_config():
    return load_config(CONFIGS / "online_retail.yaml", overrides={"engine": "spark"})


def test_missing_pyspark_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with pytest.raises(EngineError, match=r"pip install 'crmscore\[spark\]'"):
        connect(_spark_config())


def test_missing_ibis_pyspark_backend_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("ibis.backends.pyspark") or name.startswith("ibis.backends.sql.compilers.pyspark"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    for name in [m for m in sys.modules if m.startswith("ibis.backends.pyspark")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(EngineError, match=r"Ibis' PySpark backend.*pip install 'crmscore\[spark\]'"):
        connect(_spark_config(), session=object())  # the backend import fails before the session is used


def test_duckdb_is_the_default_engine():
    con = connect(load_config(CONFIGS / "online_retail.yaml"))
    assert con.name == "duckdb"


@pytest.mark.spark
def test_float_literals_are_doubles_on_spark(spark):
    """Spark reads 30.0 as DECIMAL; without the fix, (x / 86400.0) is rounded to 6 decimals."""
    import ibis

    from features.sources import memtable_source

    con = connect(_spark_config(), session=spark)
    t = memtable_source(con, {"x": [1]}, "float_literals")
    value = (ibis.literal(1.0) / ibis.literal(3.0) + t.x * 0.1).name("v")
    got = con.to_pyarrow(t.select(value))["v"][0].as_py()
    assert got == 1.0 / 3.0 + 1 * 0.1


def test_cluster_example_config_loads():
    config = load_config(CONFIGS / "spark_cluster.example.yaml")
    assert config.engine == "spark" and config.spark.master.startswith("spark://")
    source = config.tables.transactions.source
    assert source.format == "parquet" and config.resolve(source.path) == source.path
    assert source.path.startswith("s3a://") and "spark.jars.packages" in config.spark.conf


@pytest.mark.spark
def test_a_misspelt_spark_sql_setting_is_named_with_the_one_meant(spark, caplog):
    """Spark takes any key without a word: a typo left the shuffle at 200 partitions. A key close to a
    Spark SQL setting is named with it; a real one, or one unlike any (a catalog's own), says nothing."""
    import logging

    from features.engine import spark_session

    conf = {
        "spark.sql.shuffle.partiton": "4",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.catalog.mycat": "org.example.Catalog",
    }
    config = load_config(CONFIGS / "online_retail.yaml", overrides={"engine": "spark", "spark": {"conf": conf}})
    with caplog.at_level(logging.WARNING, logger="crmscore"):
        assert spark_session(config) is spark  # the active session, with the settings applied
    assert [r.getMessage() for r in caplog.records] == [
        "warning: spark.conf: 'spark.sql.shuffle.partiton' is not a Spark SQL setting; did you mean "
        "'spark.sql.shuffle.partitions'? (Spark accepts any key, so this one changes nothing)"
    ]
