"""Benchmark: one cut-off's customer features, Ibis on DuckDB against a straightforward pandas baseline.

Two inputs: the bundled Online Retail II transactions (mapped onto the canonical table), and a
**synthetic** scale-up of them to 10 million rows (customers replicated under shifted ids, every
row's timestamp jittered by -3..+3 days, generated with DuckDB SQL into a temporary Parquet file).
Both engines read the same canonical Parquet file and build the same feature table at
``as_of = 2011-09-10`` (churn population: a purchase in the last 365 days) as a pandas frame.
Each run is a separate subprocess that reports its wall time (read + features + hand-off to pandas)
and its own peak RSS. DuckDB runs twice: with one thread, crmscore's default (``duckdb.threads``: the
same values to the last bit on every run), and with one per core, DuckDB's own default.

Run: ``python -m benchmarks.bench_features [--quick]``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "online_retail.yaml"
AS_OF = dt.datetime(2011, 9, 10)
LOOKBACK_DAYS = 365
HORIZON_DAYS = 90
SYNTHETIC_ROWS = 10_000_000
QUICK_ROWS = 2_000_000
WINDOWS = (30, 90, 180, 365)
DECAY_DAYS = (30, 90, 365)


# ---------------------------------------------------------------- data


def write_bundled(path: Path) -> int:
    """The bundled transactions, mapped onto the canonical columns, as Parquet."""
    from features.config import load_config
    from features.sources import load_tables

    tables = load_tables(load_config(CONFIG))
    tables.con.raw_sql("SET enable_progress_bar = false")
    tables.transactions.to_parquet(path)
    return tables.transactions.count().to_pyarrow().as_py()


def write_synthetic(source: Path, path: Path, rows: int) -> int:
    """SYNTHETIC: ``source`` replicated with shifted customer/order ids and jittered dates, ``rows`` rows."""
    import duckdb

    con = duckdb.connect()
    n = con.execute(f"SELECT count(*) FROM read_parquet('{source}')").fetchone()[0]
    copies = -(-rows // n)
    con.execute(
        f"""
        COPY (
            SELECT customer_id || '-' || k AS customer_id,
                   timestamp + to_days(CAST(hash(customer_id, order_id, k) % 7 AS INTEGER) - 3) AS timestamp,
                   amount, order_id || '-' || k AS order_id, product_id, quantity, country, description
            FROM read_parquet('{source}'), range({copies}) AS r(k)
            LIMIT {rows}
        ) TO '{path}' (FORMAT parquet)
        """
    )
    return rows


# ---------------------------------------------------------------- the two engines


def ibis_features(path: str, *, threads: int | None = None) -> pd.DataFrame:
    """crmscore's features on DuckDB with ``threads`` worker threads (None: DuckDB's default, one per core).
    The shipped default is ``duckdb.threads: 1``, the same values to the last bit on every run."""
    import ibis

    from features.pipeline import customer_features
    from features.sources import CanonicalTables

    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    con.raw_sql("SET enable_progress_bar = false")
    if threads is not None:
        con.raw_sql(f"SET threads = {int(threads)}")
    tables = CanonicalTables(con=con, transactions=con.read_parquet(path))
    frame = customer_features(tables, as_of=AS_OF, lookback_days=LOOKBACK_DAYS, horizon_days=HORIZON_DAYS)
    return frame.to_pandas()


def _months(as_of: dt.datetime, horizon: int) -> list[int]:
    return sorted({(as_of + dt.timedelta(days=d)).month for d in range(1, horizon + 1)})


def pandas_features(path: str) -> pd.DataFrame:
    """The baseline: the same features with pandas groupby, written plainly (no tricks, no deliberate slowness)."""
    t = pd.read_parquet(path)
    t = t[t["timestamp"] <= AS_OF]
    t = t.assign(
        age=(AS_OF - t["timestamp"]).dt.total_seconds() / 86400,
        day=(t["timestamp"].values.astype("datetime64[s]").astype("int64") // 86400),
    )
    today = (AS_OF - dt.datetime(1970, 1, 1)).days
    buy = t["amount"] > 0
    p = t[buy]
    population = p.loc[p["age"] < LOOKBACK_DAYS, "customer_id"].unique()
    out = pd.DataFrame(index=pd.Index(np.sort(population), name="customer_id"))
    g, gp = t.groupby("customer_id"), p.groupby("customer_id")

    # RFM
    out["recency_days"] = gp["age"].min()
    for w in WINDOWS:
        out[f"frequency_{w}d"] = p[p["age"] < w].groupby("customer_id")["order_id"].nunique()
    out["frequency_all"] = gp["order_id"].nunique()
    for w in WINDOWS:
        out[f"monetary_{w}d"] = t[t["age"] < w].groupby("customer_id")["amount"].sum()
    out["monetary_all"] = g["amount"].sum()
    gross = gp["amount"].sum()
    out["avg_order_value"] = out["monetary_all"].clip(lower=0) / out["frequency_all"]
    r = t[t["amount"] < 0].groupby("customer_id")
    out["refund_count"] = r["order_id"].nunique()
    out["refund_share"] = -r["amount"].sum().reindex(out.index).fillna(0) / gross

    # purchase cycle
    days = p[["customer_id", "day"]].drop_duplicates().sort_values(["customer_id", "day"])
    days["gap"] = days.groupby("customer_id")["day"].diff()
    days["nth"] = days.groupby("customer_id").cumcount()
    days["nth_last"] = days.groupby("customer_id").cumcount(ascending=False)
    gd = days.groupby("customer_id")
    out["purchase_days"] = gd["day"].count()
    out["gap_mean"] = gd["gap"].mean()
    out["gap_median"] = gd["gap"].median()
    out["gap_std"] = gd["gap"].std()
    out["gap_max"] = gd["gap"].max()
    out["gap_last"] = days[days["nth_last"] == 0].set_index("customer_id")["gap"]
    out["gap_first"] = days[days["nth"] == 1].set_index("customer_id")["gap"]
    first, last = gd["day"].min(), gd["day"].max()
    for k, name in ((1, "2nd"), (2, "3rd")):
        out[f"days_since_{name}_last"] = today - days[days["nth_last"] == k].set_index("customer_id")["day"]
    out["purchase_days_90d"] = days[days["day"] > today - 90].groupby("customer_id")["day"].count()
    out["purchase_days_365d"] = days[days["day"] > today - 365].groupby("customer_id")["day"].count()
    days["week"] = days["day"] // 7
    out["active_weeks_90d"] = days[days["day"] > today - 91].groupby("customer_id")["week"].nunique()
    out["active_weeks_365d"] = days[days["day"] > today - 364].groupby("customer_id")["week"].nunique()
    for tau in DECAY_DAYS:
        days["w"] = np.exp(-(today - days["day"]) / tau)
        out[f"decayed_purchase_days_{tau}d"] = days.groupby("customer_id")["w"].sum()
    out["gap_last_over_mean"] = out["gap_last"] / out["gap_mean"].replace(0, np.nan)
    out["days_since_last"] = today - last
    out["tenure_days"] = today - first
    out["recency_over_gap"] = out["days_since_last"] / out["gap_mean"].replace(0, np.nan)
    out["recency_over_max_gap"] = out["days_since_last"] / out["gap_max"].replace(0, np.nan)
    out["purchase_rate_30d"] = out["purchase_days"] * 30.0 / (out["tenure_days"] + 1)
    month = p["timestamp"].dt.year * 12 + p["timestamp"].dt.month
    pm = p.assign(month=month)
    out["active_months_365d"] = pm[pm["age"] < 365].groupby("customer_id")["month"].nunique()
    out["active_months_all"] = pm.groupby("customer_id")["month"].nunique()
    out["active_months_180d"] = pm[pm["age"] < 180].groupby("customer_id")["month"].nunique()
    out["spend_per_30d"] = out["monetary_all"] * 30.0 / (today - first + 1)
    last90 = p[p["age"] < 90].groupby("customer_id")["order_id"].nunique()
    prev90 = p[(p["age"] >= 90) & (p["age"] < 180)].groupby("customer_id")["order_id"].nunique()
    s90 = t[t["age"] < 90].groupby("customer_id")["amount"].sum()
    sprev = t[(t["age"] >= 90) & (t["age"] < 180)].groupby("customer_id")["amount"].sum()
    o90, oprev = last90.reindex(out.index).fillna(0), prev90.reindex(out.index).fillna(0)
    out["order_trend"] = o90 - oprev
    out["spend_trend"] = s90.reindex(out.index).fillna(0) - sprev.reindex(out.index).fillna(0)
    out["order_trend_ratio"] = (o90 + 1) / (oprev + 1)

    # seasonality
    lo = max(365 - HORIZON_DAYS, 0)
    in_ly = (t["age"] >= lo) & (t["age"] < 365)
    before_ly = (t["age"] >= 365) & (t["age"] < 365 + HORIZON_DAYS)
    out["ly_orders"] = p[in_ly[buy]].groupby("customer_id")["order_id"].nunique()
    out["ly_spend"] = t[in_ly].groupby("customer_id")["amount"].sum()
    out["ly_orders_before"] = p[before_ly[buy]].groupby("customer_id")["order_id"].nunique()
    stamp = pd.to_datetime(days["day"], unit="D")
    n = out["purchase_days"]
    for name, flag in (
        ("horizon_month_share", stamp.dt.month.isin(_months(AS_OF, HORIZON_DAYS))),
        ("weekend_share", stamp.dt.dayofweek >= 5),
        ("q4_share", stamp.dt.month >= 10),
    ):
        out[name] = flag.astype("int64").groupby(days["customer_id"]).sum() / n

    # breadth
    out["lines_per_order"] = gp.size() / out["frequency_all"]
    out["distinct_products"] = gp["product_id"].nunique()
    out["distinct_products_365d"] = p[p["age"] < 365].groupby("customer_id")["product_id"].nunique()
    out["lines_per_product"] = gp.size() / out["distinct_products"]
    quantity = gp["quantity"].sum()
    returned = t[t["amount"] < 0].groupby("customer_id")["quantity"].apply(lambda q: q.abs().sum())
    kept = (quantity - returned.reindex(quantity.index).fillna(0)).clip(lower=0)
    out["quantity_per_order"] = kept / out["frequency_all"]
    out["avg_unit_price"] = gross / quantity.replace(0, np.nan)

    # attributes: most frequent country (ties: most recent, then smallest)
    c = t[t["country"].notna()].groupby(["customer_id", "country"]).agg(n=("amount", "size"), last=("timestamp", "max"))
    c = c.reset_index().sort_values(["customer_id", "n", "last", "country"], ascending=[True, False, False, True])
    out["country"] = c.drop_duplicates("customer_id").set_index("customer_id")["country"]

    counts = [
        col for col in out.columns if col.startswith(("frequency_", "monetary_", "refund_", "ly_", "purchase_days_"))
    ]
    counts += ["active_weeks_90d", "active_weeks_365d", "active_months_180d", "active_months_365d"]
    out[counts] = out[counts].fillna(0)
    return out.reset_index()


# ---------------------------------------------------------------- measurement


def _child(engine: str, path: str) -> None:
    start = time.perf_counter()
    if engine == "pandas":
        frame = pandas_features(path)
    else:  # "ibis": the shipped default, one thread; "ibis-all-cores": DuckDB's own default
        from features.config import DuckDBConfig

        frame = ibis_features(path, threads=None if engine == "ibis-all-cores" else DuckDBConfig().threads)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_bytes": _peak_rss(), "customers": len(frame)}))


def _peak_rss() -> int:
    """This process's peak resident set size in bytes.

    ``VmHWM`` (Linux) is reset by ``exec``; ``ru_maxrss`` is not (it keeps the forking parent's peak),
    so it is only the fallback.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def measure(engine: str, path: Path, rows: int) -> dict:
    """Run one engine on one file in a fresh subprocess; its own wall time and peak RSS."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_features", "--child", engine, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["rows"] = rows
    result["rows_per_s"] = rows / result["seconds"]
    result["peak_gib"] = result.pop("peak_bytes") / 2**30
    return result


def run(quick: bool = False) -> dict:
    """Time both engines on the bundled data and on the synthetic scale-up; return the figures and ratios.

    ``quick`` scales up to 2 million rows instead of 10 million.
    """
    results: dict = {"as_of": AS_OF.date().isoformat(), "baseline": "pandas groupby", "datasets": {}}
    with tempfile.TemporaryDirectory(prefix="crmscore-bench-") as tmp:
        bundled = Path(tmp) / "bundled.parquet"
        n_bundled = write_bundled(bundled)
        synthetic = Path(tmp) / "synthetic.parquet"
        n_synthetic = write_synthetic(bundled, synthetic, QUICK_ROWS if quick else SYNTHETIC_ROWS)
        for name, path, rows in (
            ("bundled online_retail_ii", bundled, n_bundled),
            (f"SYNTHETIC scale-up ({rows_label(n_synthetic)} rows)", synthetic, n_synthetic),
        ):
            ibis_r = measure("ibis", path, rows)
            all_cores = measure("ibis-all-cores", path, rows)
            pandas_r = measure("pandas", path, rows)
            results["datasets"][name] = {
                "ibis_duckdb": ibis_r,
                "ibis_duckdb_all_cores": all_cores,
                "pandas": pandas_r,
                "speedup": pandas_r["seconds"] / ibis_r["seconds"],
                "speedup_all_cores": pandas_r["seconds"] / all_cores["seconds"],
                "memory_ratio": pandas_r["peak_gib"] / ibis_r["peak_gib"],
            }
    return results


def rows_label(n: int) -> str:
    return f"{n / 1e6:g}M"


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        _child(argv[1], argv[2])
        return
    print(json.dumps(run(quick="--quick" in argv), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
