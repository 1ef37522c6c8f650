"""Ibis connections for the configured engine: DuckDB in-process by default, PySpark to scale out.

The feature logic is written once as Ibis expressions; this module only decides which
backend executes them.
"""

from __future__ import annotations

import ibis
from ibis.backends import BaseBackend

from features.config import Config

__all__ = ["EngineError", "connect"]


class EngineError(RuntimeError):
    """The configured engine cannot be started (e.g. PySpark not installed)."""


def _spark_session(config: Config):
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # the extra is optional by design
        raise EngineError(
            "engine: spark needs PySpark, which is not installed. Install the extra: pip install 'crmscore[spark]'"
        ) from exc
    builder = SparkSession.builder.master(config.spark.master).appName(config.spark.app_name)
    # Local defaults that keep a laptop-sized run fast; cluster settings in config win.
    defaults = {
        "spark.sql.shuffle.partitions": "8",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }
    for key, value in {**defaults, **config.spark.conf}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def connect(config: Config) -> BaseBackend:
    """Return an Ibis backend for ``config.engine``.

    Parameters
    ----------
    config
        The run configuration; ``engine`` is ``duckdb`` or ``spark``.

    Raises
    ------
    EngineError
        ``engine: spark`` without PySpark installed.
    """
    if config.engine == "duckdb":
        con = ibis.duckdb.connect()
        # Timestamps are naive wall-clock times in the data contract; keep DuckDB from shifting them.
        con.raw_sql("SET TimeZone = 'UTC'")
        return con
    session = _spark_session(config)
    try:
        return ibis.pyspark.connect(session)
    except (ImportError, AttributeError) as exc:
        raise EngineError(
            "engine: spark needs Ibis' PySpark backend. Install the extra: pip install 'crmscore[spark]'"
        ) from exc
