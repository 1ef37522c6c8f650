"""Ibis connections for the configured engine: DuckDB in-process by default, PySpark to scale out.

The feature logic is written once as Ibis expressions; this module only decides which
backend executes them, and makes the PySpark backend compute what DuckDB computes:

- Spark SQL reads an unsuffixed number such as ``30.0`` as a DECIMAL, and Ibis 12 writes
  float64 literals that way, so ``(1315612800.0 - unix_timestamp(ts)) / 86400`` is rounded to a
  few decimal places on Spark but not on DuckDB. The connection returned here renders float64
  literals as ``CAST(30.0 AS DOUBLE)`` (the decimal text is the shortest repr, so the cast gives
  back the same double).
- Naive timestamps are wall-clock times in the data contract: both engines run in UTC.
"""

from __future__ import annotations

import math
import os
import sys

import ibis
from ibis.backends import BaseBackend

from features.config import Config, ConfigError

__all__ = ["INSTALL_HINT", "EngineError", "connect", "spark_session"]

INSTALL_HINT = "pip install 'crmscore[spark]'"

# Local defaults that keep a laptop-sized run quiet and fast; settings in the config win.
_SPARK_DEFAULTS = {
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}


class EngineError(RuntimeError):
    """The configured engine cannot be started (e.g. PySpark not installed)."""


def _missing(what: str, exc: BaseException) -> EngineError:
    return EngineError(f"engine: spark needs {what}, which is not installed. Install the extra: {INSTALL_HINT}")


def spark_session(config: Config):
    """The SparkSession for ``config.spark`` (created, or the active one reused).

    Run directly (``crmscore ...``), the session is built from ``config.spark.master``, a few local
    defaults and ``config.spark.conf``. Under ``spark-submit`` the submitted ``--master`` and
    ``--conf`` settings stand; only ``config.spark.conf`` is applied on top of them.

    Raises
    ------
    EngineError
        PySpark is not installed.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # the extra is optional by design
        raise _missing("PySpark", exc) from exc
    # spark-submit (and the pyspark shell) start the JVM first and hand its port to Python.
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    builder = SparkSession.builder.appName(config.spark.app_name)
    settings = dict(config.spark.conf)
    if not submitted:
        builder = builder.master(config.spark.master)
        settings = {**_SPARK_DEFAULTS, **settings}
        if config.spark.master.startswith("local"):
            # Local Python workers (the MLflow scoring UDF) must run this interpreter, not whatever "python3" is.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # Py4J's and PySpark's errors, e.g. "Could not parse Master URL: 'local[2'"
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        said = next((line for line in lines if "Exception:" in line or "[" in line[:40]), lines[0] if lines else "")
        raise ConfigError(
            f"spark: the Spark session did not start with spark.master {config.spark.master!r} and spark.conf "
            f"{dict(config.spark.conf)}: {type(exc).__name__}: {said[:500]} (check those settings; the JVM's own "
            "message, if any, is above)"
        ) from None
    _warn_misspelt(session, config.spark.conf)
    return session


def _warn_misspelt(session, conf: dict[str, str]) -> None:
    """Warn of a ``spark.sql.*`` key in ``spark.conf`` that Spark does not define but that is close to
    one it does (``spark.sql.shuffle.partiton``): Spark takes any key without a word, so a typo left
    the setting at its default. Keys with no close match (a catalog's own, ``spark.sql.catalog.x``) pass."""
    wanted = [key for key in conf if key.startswith("spark.sql.")]
    if not wanted:
        return
    import difflib
    import logging

    known = {row[0] for row in session.sql("SET -v").select("key").collect()}
    for key in wanted:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.9) if key not in known else []
        if close:
            # A log record: on stderr as the sentence alone when nothing configured logging (the commands).
            logging.getLogger("crmscore").warning(
                "warning: spark.conf: %r is not a Spark SQL setting; did you mean %r? (Spark accepts any key, so "
                "this one changes nothing)",
                key,
                close[0],
            )


def _spark_compiler():
    import sqlglot.expressions as sge
    from ibis.backends.sql.compilers.pyspark import PySparkCompiler

    class _DoubleLiteralCompiler(PySparkCompiler):
        """Float64 literals as DOUBLE, not as Spark's default DECIMAL (see the module docstring)."""

        def visit_NonNullLiteral(self, op, *, value, dtype):
            result = super().visit_NonNullLiteral(op, value=value, dtype=dtype)
            if dtype.is_floating() and math.isfinite(value) and isinstance(result, sge.Literal):
                return self.cast(result, dtype)
            return result

    return _DoubleLiteralCompiler()


def connect(config: Config, *, session=None) -> BaseBackend:
    """Return an Ibis backend for ``config.engine``.

    Parameters
    ----------
    config
        The run configuration; ``engine`` is ``duckdb`` or ``spark``.
    session
        An existing SparkSession to run on (``engine: spark`` only); by default
        :func:`spark_session` builds one from ``config.spark``.

    Raises
    ------
    EngineError
        ``engine: spark`` without PySpark (or Ibis' PySpark backend) installed.
    """
    if config.engine == "duckdb":
        con = ibis.duckdb.connect()
        # Timestamps are naive wall-clock times in the data contract; keep DuckDB from shifting them.
        con.raw_sql("SET TimeZone = 'UTC'")
        if config.duckdb.threads is not None:  # one by default: the same values to the last bit every run
            con.raw_sql(f"SET threads = {int(config.duckdb.threads)}")
        return con
    if session is None:
        session = spark_session(config)
    try:
        con = ibis.pyspark.connect(session)
        compiler = _spark_compiler()
    except (ImportError, AttributeError) as exc:
        raise _missing("Ibis' PySpark backend", exc) from exc
    # An instance attribute: only this connection compiles differently, Ibis itself is untouched.
    con.compiler = compiler
    return con
