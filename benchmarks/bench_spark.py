"""Customer features at 10 million synthetic transactions: Spark local[2] against DuckDB (the baseline).

The data is SYNTHETIC: the bundled Online Retail II invoices replicated until there are ``n_rows``
lines; copy ``i`` shifts every customer id by ``i * 1,000,000`` (so each copy is a new set of
customers), prefixes invoice numbers with the copy number, and moves each customer's whole history
by a fixed random number of days in [-30, 30] (so the copies do not buy on the same days).

Two measurements, each engine in its own process:

- features: read, map and check the canonical tables, then every customer feature at one cut-off,
  materialised as Arrow;
- batch scoring with reasons: ``crmscore score churn --explain`` end to end (tables, features,
  champion scores and reasons, the atomic write, feature drift), ``training.score.score_batch`` on
  DuckDB against ``serving.spark_batch.score_spark`` (``mlflow.pyfunc.spark_udf``) on Spark. The
  champion is trained once, on the bundled data, into the run's temporary MLflow store; the Spark
  process also times the drift pass alone on its persisted features, the DuckDB one on its feature
  matrix (after the scoring call, so the comparison uses ``score_s``, the scoring call's own time,
  JVM start included).

Wall time is measured around the process, so it includes starting Python (and, for Spark, the
JVM); peak memory is the largest summed RSS of the process and all its children (the Spark JVM is a
child of the Python driver), sampled every 0.1 s.
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


def _config(folder: Path, data: Path, engine: str, name: str | None = None) -> Path:
    raw = yaml.safe_load(CONFIG.read_text())
    raw["tables"]["transactions"]["source"]["path"] = str(data)
    raw.update(
        engine=engine, spark=SPARK, tracking_uri=f"sqlite:///{folder}/mlflow.db", output_dir=str(folder / "outputs")
    )
    path = folder / f"bench_{name or engine}.yaml"
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


def _work_score(config_path: str) -> None:
    """In the child process: batch scoring with reasons on the config's engine, timings printed as JSON."""
    from features.config import load_config

    config = load_config(config_path)
    out = Path(config.output_dir) / f"scores_{config.engine}"
    started = time.perf_counter()
    drift_s = None
    if config.engine == "spark":
        from serving.spark_batch import score_spark, spark_drift, spark_features
        from training.pyfunc import load_champion

        batch = score_spark(config, "churn", as_of=AS_OF, out_dir=str(out), explain=True)
        scored = time.perf_counter()
        scorer, _ = load_champion(config, "churn")
        features = spark_features(config, "churn", as_of=AS_OF).persist()
        features.count()
        drift_started = time.perf_counter()
        spark_drift(scorer, features)
        drift_s = round(time.perf_counter() - drift_started, 2)
    else:
        from features.pipeline import population_features
        from features.sources import load_tables
        from training.pyfunc import load_champion
        from training.score import score_batch

        batch = score_batch(config, "churn", as_of=AS_OF, out=out.with_suffix(".parquet"), explain=True)
        scored = time.perf_counter()
        scorer, _ = load_champion(config, "churn")
        features = population_features(load_tables(config), "churn", as_of=AS_OF, model_config=config.models.churn)
        X = scorer.prepare(features)
        drift_started = time.perf_counter()
        scorer.drift(X)
        drift_s = round(time.perf_counter() - drift_started, 3)
    print(
        json.dumps(
            {
                "customers": batch.rows,
                "features_in_alert": sum(d.level == "alert" for d in batch.drift),
                "score_s": round(scored - started, 2),
                "drift_pass_s": drift_s,
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


def _measure(config_path: Path, work: str = "_work") -> dict[str, Any]:
    # The child's output goes to a file, not a pipe: a full pipe (64 KiB) would block the child while
    # this process only samples memory.
    with tempfile.TemporaryFile(mode="w+") as output:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", f"from benchmarks.bench_spark import {work}; {work}({str(config_path)!r})"],
            cwd=ROOT,
            stdout=output,
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
        output.seek(0)
        out = output.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{config_path.name}: the benchmark process failed (exit {proc.returncode})")
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(peak / 2**20, 1),
        **json.loads(out.strip().splitlines()[-1]),
    }


def _train_champion(folder: Path) -> None:
    """A churn champion trained on the bundled data into the run's MLflow store (not timed)."""
    from features.config import load_config
    from training.train import train_model

    train_model(load_config(_config(folder, SOURCE, "duckdb", name="train")), "churn", force_promote=True)


def _meaning(
    duck: dict[str, Any], spark: dict[str, Any], what: str = "computes the same features", key: str = "wall_s"
) -> str:
    wall = spark[key] / duck[key]
    memory = f"peak memory {duck['peak_rss_mib'] / 1024:.1f} GiB vs {spark['peak_rss_mib'] / 1024:.1f} GiB"
    if wall >= 1:
        return (
            f"On one machine DuckDB {what} {wall:.1f}x faster than Spark local[2] "
            f"({duck[key]:.0f} s vs {spark[key]:.0f} s, {memory}): Spark is for data that no longer "
            "fits one machine, not for speeding up a run that does."
        )
    return (
        f"Spark local[2] was {1 / wall:.1f}x faster than DuckDB here ({memory}), which is unexpected on one "
        "machine: check the machine's load before drawing conclusions."
    )


def run(quick: bool = False) -> dict[str, Any]:
    """Customer features and batch scoring on SYNTHETIC data, Spark local[2] vs DuckDB, each in its own process.

    ``quick`` uses 1 million rows instead of 10 million.
    """
    n_rows = 1_000_000 if quick else 10_000_000
    with tempfile.TemporaryDirectory(prefix="bench_spark_") as tmp:
        folder = Path(tmp)
        data = synthetic_transactions(n_rows, folder / "synthetic_transactions.parquet")
        configs = {engine: _config(folder, data, engine) for engine in ("duckdb", "spark")}
        results = {engine: _measure(path) for engine, path in configs.items()}
        _train_champion(folder)
        scoring = {engine: _measure(path, "_work_score") for engine, path in configs.items()}
    duck, spark = results["duckdb"], results["spark"]
    assert duck["customers"] == spark["customers"], "the engines disagree on the number of customers"
    sduck, sspark = scoring["duckdb"], scoring["spark"]
    assert sduck["customers"] == sspark["customers"], "the engines scored different numbers of customers"
    assert sduck["features_in_alert"] == sspark["features_in_alert"], "the engines disagree on the drift"
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
        "scoring": {
            "task": f"crmscore score churn --explain at {AS_OF}: tables, features, scores with 3 reasons, "
            "atomic write, feature drift; champion trained on the bundled data",
            "duckdb": sduck,
            "spark": sspark,
            # score_s: the scoring call alone; the Spark process's wall time also holds the drift timing.
            "spark_over_duckdb": {
                "score": round(sspark["score_s"] / sduck["score_s"], 2),
                "peak_memory": round(sspark["peak_rss_mib"] / sduck["peak_rss_mib"], 2),
            },
            "drift_pass_share_of_spark_scoring": round(sspark["drift_pass_s"] / sspark["score_s"], 3),
            "meaning": _meaning(sduck, sspark, "scores the same customers", key="score_s"),
        },
    }
