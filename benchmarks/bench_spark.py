"""Customer features at 10 million synthetic transactions: Spark local[2] against DuckDB (the baseline).

The data is SYNTHETIC: the bundled Online Retail II invoices replicated until there are ``n_rows``
lines; copy ``i`` shifts every customer id by ``i * 1,000,000`` (so each copy is a new set of
customers), prefixes invoice numbers with the copy number, and moves each customer's whole history
by a fixed random number of days in [-30, 30] (so the copies do not buy on the same days).

Each engine runs in its own process (read, map and check the canonical tables, then every customer
feature at one cut-off, materialised as Arrow). Wall time is measured around the process, so it
includes starting Python (and, for Spark, the JVM); peak memory is the largest summed RSS of the
process and all its children (the Spark JVM is a child of the Python driver), sampled every 0.1 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "data" / "online_retail_ii.parquet"
CONFIG = ROOT / "configs" / "online_retail.yaml"
AS_OF = "2011-09-10"
ID_SHIFT = 1_000_000
# Spark settings of the run, stated in the result: a laptop-sized local session.
SPARK = {"master": "local[2]", "conf": {"spark.driver.memory": "4g", "spark.sql.shuffle.partitions": "8"}}


def synthetic_transactions(n_rows: int, out: Path, *, seed: int = 42) -> Path:
    """Write ``n_rows`` SYNTHETIC invoice lines in the Online Retail II layout to ``out`` (Parquet).

    Copies of the bundled data with shifted customer ids, prefixed invoices and per-customer date
    jitter (see the module docstring); deterministic for a given ``seed``.
    """
    import duckdb

    con = duckdb.connect()
    n_source = con.execute(f"SELECT count(*) FROM read_parquet('{SOURCE}')").fetchone()[0]
    copies = -(-n_rows // n_source)
    con.execute(
        f"""
        COPY (
            SELECT
                CASE WHEN r.i = 0 THEN Invoice ELSE r.i::VARCHAR || '-' || Invoice END AS Invoice,
                StockCode, Description, Quantity,
                InvoiceDate + to_days(CAST(hash(CustomerID, r.i, {seed}) % 61 AS INTEGER) - 30) AS InvoiceDate,
                Price,
                CustomerID + r.i * {ID_SHIFT} AS CustomerID,
                Country
            FROM read_parquet('{SOURCE}') CROSS JOIN range({copies}) AS r(i)
            LIMIT {n_rows}
        ) TO '{out}' (FORMAT parquet, ROW_GROUP_SIZE 500000)
        """
    )
    con.close()
    return out


def _config(folder: Path, data: Path, engine: str) -> Path:
    raw = yaml.safe_load(CONFIG.read_text())
    raw["tables"]["transactions"]["source"]["path"] = str(data)
    raw.update(engine=engine, spark=SPARK, tracking_uri=f"sqlite:///{folder}/mlflow.db")
    path = folder / f"bench_{engine}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _work(config_path: str) -> None:
    """In the child process: canonical tables and customer features, timings printed as JSON."""
    from features.config import load_config
    from features.engine import connect
    from features.pipeline import customer_features
    from features.sources import load_tables

    config = load_config(config_path)
    started = time.perf_counter()
    con = connect(config)
    connected = time.perf_counter()
    tables = load_tables(config, con=con)
    loaded = time.perf_counter()
    mc = config.models.churn
    features = customer_features(tables, as_of=AS_OF, lookback_days=mc.lookback_days).to_pyarrow()
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "rows_read": tables.reports["transactions"].rows_read,
                "customers": features.num_rows,
                "feature_columns": features.num_columns - 1,
                "connect_s": round(connected - started, 2),
                "canonical_tables_s": round(loaded - connected, 2),
                "features_s": round(done - loaded, 2),
            }
        )
    )


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def _measure(config_path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", f"from benchmarks.bench_spark import _work; _work({str(config_path)!r})"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
    )
    watched = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, _tree_rss(watched))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    wall = time.perf_counter() - started
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{config_path.name}: the benchmark process failed (exit {proc.returncode})")
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(peak / 2**20, 1),
        **json.loads(out.strip().splitlines()[-1]),
    }


def _meaning(duck: dict[str, Any], spark: dict[str, Any]) -> str:
    wall = spark["wall_s"] / duck["wall_s"]
    memory = f"peak memory {spark['peak_rss_mib'] / 1024:.1f} GiB vs {duck['peak_rss_mib'] / 1024:.1f} GiB"
    if wall >= 1:
        return (
            f"On one machine DuckDB computes the same features {wall:.1f}x faster than Spark local[2] "
            f"({duck['wall_s']:.0f} s vs {spark['wall_s']:.0f} s, {memory}): Spark is for data that no longer "
            "fits one machine, not for speeding up a run that does."
        )
    return (
        f"Spark local[2] was {1 / wall:.1f}x faster than DuckDB here ({memory}), which is unexpected on one "
        "machine: check the machine's load before drawing conclusions."
    )


def run(quick: bool = False) -> dict[str, Any]:
    """Customer features on SYNTHETIC data, Spark local[2] vs DuckDB, each in its own process.

    ``quick`` uses 1 million rows instead of 10 million.
    """
    n_rows = 1_000_000 if quick else 10_000_000
    with tempfile.TemporaryDirectory(prefix="bench_spark_") as tmp:
        folder = Path(tmp)
        data = synthetic_transactions(n_rows, folder / "synthetic_transactions.parquet")
        results = {engine: _measure(_config(folder, data, engine)) for engine in ("duckdb", "spark")}
    duck, spark = results["duckdb"], results["spark"]
    assert duck["customers"] == spark["customers"], "the engines disagree on the number of customers"
    wall_ratio = spark["wall_s"] / duck["wall_s"]
    memory_ratio = spark["peak_rss_mib"] / duck["peak_rss_mib"]
    return {
        "data": f"SYNTHETIC: {n_rows:,} invoice lines, the bundled Online Retail II replicated with shifted "
        "customer ids and per-customer date jitter of up to 30 days",
        "task": f"canonical tables + all customer features at {AS_OF} (churn population), materialised",
        "spark_settings": SPARK,
        "duckdb": duck,
        "spark": spark,
        "spark_over_duckdb": {"wall": round(wall_ratio, 2), "peak_memory": round(memory_ratio, 2)},
        "meaning": _meaning(duck, spark),
    }
