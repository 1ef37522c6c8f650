"""Load test of the scoring API against ``mlflow models serve`` on the same registered churn model.

Loopback only and bounded in time: for 1, 8 and 32 concurrent clients, each scenario runs for a
fixed duration; latency percentiles (p50/p95/p99, ms) and throughput (requests/s) are measured
by the same client for both servers: ``wrk`` (C, one thread, from Debian's package; ``make bench``
installs it when it can) so the load generator takes little of the two cores, else an
asyncio/httpx client in this process (slower: it competes with the server for CPU). The results
name the client used.

Scenarios: one customer by id without reasons, one customer with 3 reasons, 100 ids with 3
reasons, one posted history with 3 reasons (ours); one feature row and 100 feature rows (MLflow's
scoring server, pandas + pyfunc). For posted histories, whose features are computed per call, the
features of one history are also timed in process with the compiled-SQL cache against building
and compiling them afresh (``posted_features``).
The single-id scenarios run again on a server with two workers (``serving.workers: 2``), for
the ratio of two workers to one on the same machine in the same run (``crmscore_2_workers``).
Also reported: resident memory of the API's processes with all champions and snapshots loaded,
and each server's start (``startup``: seconds until ``/readyz`` or MLflow's ``/ping`` answers; for
ours also until every snapshot's SHAP values are computed, which the service does in the
background after it is ready; the load points start after that, the steady state).

The champions come from ``CRMSCORE_BENCH_CONFIG`` (a config whose registry already holds them and
whose snapshots exist, e.g. after ``crmscore demo``), or are trained into a temporary folder
(small backtest) first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import yaml

from serving.launch import start_process, stop_process

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
KEYS = {"scorer": "bench-scorer", "marketer": "bench-marketer"}
CONCURRENCY = (1, 8, 32)
WRK = shutil.which("wrk")

# wrk script: POST the bodies of a file (one JSON per line) round-robin; print one JSON summary line.
WRK_SCRIPT = """
local bodies, headers, i = {}, {["Content-Type"] = "application/json"}, 0
init = function(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  if args[2] ~= nil and args[2] ~= "" then headers["x-api-key"] = args[2] end
end
request = function()
  i = i + 1
  return wrk.format("POST", nil, headers, bodies[(i % #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n{"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tracking_uri: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_TRACKING_URI": tracking_uri,
        "CRMSCORE_API_KEYS": ",".join(f"{k}:{r}" for r, k in KEYS.items()),
    }


def _train(folder: Path) -> Path:
    """Small champions of the three tasks and their snapshots in ``folder``; returns the retail config."""
    from features.config import load_config
    from features.pipeline import write_snapshot
    from training.train import train_model

    configs = {}
    for name in ("online_retail", "bank_leads"):
        data = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
        data.update(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", output_dir=str(folder / "outputs"))
        for table in data["tables"].values():
            table["source"]["path"] = str((ROOT / "configs" / table["source"]["path"]).resolve())
        for model in data.get("models", {}).values() if name == "online_retail" else ():
            # Smallest backtest: two cut-offs one horizon apart (the lead data keeps its own layout).
            model["n_train_cutoffs"] = 2
            model["step_days"] = model["horizon_days"]
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        configs[name] = load_config(folder / f"{name}.yaml")
    jobs = (("online_retail", "churn", "InvoiceDate"), ("online_retail", "next_purchase", "InvoiceDate"))
    jobs += (("bank_leads", "lead", "created_at"),)
    for name, task, column in jobs:
        config = configs[name]
        train_model(config, task)
        source = config.resolve(
            config.tables.leads.source.path if task == "lead" else config.tables.transactions.source.path
        )
        day = str(pd.read_parquet(source, columns=[column])[column].max().date())
        write_snapshot(config, as_of=day, out=Path(config.output_dir) / "snapshots" / f"{task}.parquet", task=task)
    return folder / "online_retail.yaml"


async def _load(url: str, bodies: list[Any], headers: dict[str, str], clients: int, seconds: float) -> dict[str, float]:
    """``clients`` loops posting ``bodies`` round-robin for ``seconds``; latency percentiles and throughput."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
        stop = time.perf_counter() + seconds

        async def worker(offset: int) -> None:
            nonlocal errors
            i = offset
            while time.perf_counter() < stop:
                body = bodies[i % len(bodies)]
                i += clients
                t0 = time.perf_counter()
                response = await client.post(url, json=body)
                latencies.append(time.perf_counter() - t0)
                errors += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(ms),
        "errors": errors,
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "rps": round(len(ms) / elapsed, 1),
    }


def _wrk(url: str, bodies: list[Any], headers: dict[str, str], clients: int, seconds: float) -> dict[str, float]:
    """The same measurement as :func:`_load`, by ``wrk`` (one thread, ``clients`` connections)."""
    with tempfile.TemporaryDirectory(prefix="bench_wrk_") as tmp:
        script, lines = Path(tmp) / "post.lua", Path(tmp) / "bodies.jsonl"
        script.write_text(WRK_SCRIPT)
        lines.write_text("".join(json.dumps(body) + "\n" for body in bodies))
        command = [WRK, "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "30s", "-s", str(script)]
        command += [url, "--", str(lines), headers.get("x-api-key", "")]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    summary = json.loads(next(line for line in reversed(out.splitlines()) if line.startswith("{")))
    return {
        "clients": clients,
        "requests": summary["requests"],
        "errors": summary["non_2xx"] + summary["socket_errors"],
        "p50_ms": round(summary["p50_us"] / 1000, 2),
        "p95_ms": round(summary["p95_us"] / 1000, 2),
        "p99_ms": round(summary["p99_us"] / 1000, 2),
        "rps": round(summary["requests"] / (summary["duration_us"] / 1e6), 1),
    }


def _scenario(url: str, bodies: list[Any], headers: dict[str, str], seconds: float) -> list[dict[str, float]]:
    if WRK:
        _wrk(url, bodies[:5], headers, 1, 1)  # warm-up
        return [_wrk(url, bodies, headers, n, seconds) for n in CONCURRENCY]
    asyncio.run(_load(url, bodies[:5], headers, 1, 0.5))  # warm-up
    return [asyncio.run(_load(url, bodies, headers, n, seconds)) for n in CONCURRENCY]


def _rss_mib(pid: int) -> dict[str, float]:
    import psutil

    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    rss = {p.pid: p.memory_info().rss / 2**20 for p in processes if p.is_running()}
    return {"largest_process_mib": round(max(rss.values()), 1), "all_processes_mib": round(sum(rss.values()), 1)}


def _mlflow_rows(frame: pd.DataFrame, columns: list[str]) -> list[list[Any]]:
    rows = frame[columns].astype(object).where(frame[columns].notna(), None)
    return [[v.item() if hasattr(v, "item") else v for v in row] for row in rows.itertuples(index=False)]


def _histories(config: Any, ids: list[str], as_of: str) -> list[dict[str, Any]]:
    """The whole histories before ``as_of`` of ``ids``, from the canonical transactions, as a client posts them."""
    from features.sources import load_tables
    from serving.runtime import as_posted_histories

    t = load_tables(config).transactions
    lines = t.filter(t.customer_id.isin(ids) & (t.timestamp < pd.Timestamp(as_of))).to_pandas()
    return as_posted_histories(lines, attributes=["country"])


def _posted_features(config: Any, histories: list[dict[str, Any]], as_of: str) -> dict[str, Any]:
    """In-process: the features of one posted history from the SQL cache, against building and
    compiling them afresh (what every posted call did before the cache; the baseline). The cached
    calls each post their own cut-off, the date plus a time of day (a client posting "now"): one
    query serves them all, as the SQL reads the cut-off from variables."""
    from features.pipeline import CompiledQueries, vocabularies
    from features.sources import load_tables
    from serving.runtime import history_features

    vocabulary = vocabularies(load_tables(config))
    day = pd.Timestamp(as_of).to_pydatetime()

    def seconds(compiled: CompiledQueries | None) -> list[float]:
        out = []
        for i, history in enumerate(histories):
            now = day + dt.timedelta(seconds=37 * i + 0.25)  # another cut-off each call
            t0 = time.perf_counter()
            history_features(config, "churn", as_of=now, customers=[history], vocabulary=vocabulary, compiled=compiled)
            out.append(time.perf_counter() - t0)
        return out

    cache = CompiledQueries()
    history_features(config, "churn", as_of=day, customers=histories[:1], vocabulary=vocabulary, compiled=cache)
    fresh, cached = np.median(seconds(None)), np.median(seconds(cache))
    lines = [len(h["purchases"]) for h in histories]
    return {
        "histories": len(histories),
        "median_lines": int(np.median(lines)),
        "fresh_build_ms": round(1000 * float(fresh), 1),
        "cached_sql_ms": round(1000 * float(cached), 1),
        "speedup": round(float(fresh / cached), 2),
        "queries_compiled": cache.misses,  # 1: every cut-off shared the first call's query
    }


def _explained(models_url: str, key: str, timeout_s: float = 600.0) -> float:
    """When (``time.perf_counter()``) ``/models`` first shows every snapshot row's SHAP values computed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = httpx.post(models_url, json={}, headers={"x-api-key": key}, timeout=10)
        response.raise_for_status()
        models = response.json()["models"]
        if all(m["snapshot_rows_explained"] == m["snapshot_rows"] for m in models):
            return time.perf_counter()
        time.sleep(0.05)
    raise RuntimeError(f"the snapshots' SHAP values were not all computed after {timeout_s:.0f} s: {models}")


def _two_workers(
    config_path: Path,
    env: dict[str, str],
    cwd: Path,
    folder: Path,
    single: list[Any],
    single_k3: list[Any],
    seconds: float,
) -> dict[str, Any]:
    """The single-id scenarios again on a server with two workers (``crmscore serve --workers 2``, as
    ``serving.workers: 2`` would), and its memory."""
    port = _free_port()
    server = start_process(
        [str(BIN / "crmscore"), "serve", "--config", str(config_path), "--port", str(port), "--workers", "2"],
        env=env,
        cwd=cwd,
        ready_url=f"http://127.0.0.1:{port}/readyz",
        log=folder / "ours_2_workers.log",
    )
    try:
        models = f"http://127.0.0.1:{port}/models"
        deadline = time.perf_counter() + 120
        while httpx.post(models, json={}, headers={"x-api-key": KEYS["scorer"]}).json()["workers"] < 2:
            if time.perf_counter() > deadline:
                raise RuntimeError("the second worker did not load within 120 s")
            time.sleep(0.5)
        # Each call a new connection, taken by either worker: 20 in a row answered "all explained"
        # means both workers' background SHAP passes are done (a miss would be 1 in 2**20).
        in_a_row = 0
        while in_a_row < 20:
            answer = httpx.post(models, json={}, headers={"x-api-key": KEYS["scorer"]}, timeout=10).json()["models"]
            in_a_row = in_a_row + 1 if all(m["snapshot_rows_explained"] == m["snapshot_rows"] for m in answer) else 0
            if time.perf_counter() > deadline + 600:
                raise RuntimeError(f"the workers' SHAP values were not all computed after 10 min: {answer}")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/score/churn"
        return {
            "single_no_reasons": _scenario(url, single, {"x-api-key": KEYS["scorer"]}, seconds),
            "single_3_reasons": _scenario(url, single_k3, {"x-api-key": KEYS["marketer"]}, seconds),
            "rss": _rss_mib(server.pid),
        }
    finally:
        stop_process(server)


def run(quick: bool = False) -> dict:
    """Run the load test; see the module docstring."""
    seconds = 1.0 if quick else 5.0
    with tempfile.TemporaryDirectory(prefix="bench_api_") as tmp:
        folder = Path(tmp)
        config_path = Path(os.environ["CRMSCORE_BENCH_CONFIG"]) if "CRMSCORE_BENCH_CONFIG" in os.environ else None
        if config_path is None:
            config_path = _train(folder)
        from features.config import load_config
        from serving.runtime import snapshot_dir

        config = load_config(config_path)
        cwd = Path.cwd() if "CRMSCORE_BENCH_CONFIG" in os.environ else folder
        tracking_uri = config.tracking_uri
        snapshot = pd.read_parquet((cwd / snapshot_dir(config)) / "churn.parquet")
        ids = snapshot.customer_id.astype(str).tolist()
        rng = np.random.default_rng(0)

        ours_port, mlflow_port = _free_port(), _free_port()
        env = _env(tracking_uri)
        started = time.perf_counter()
        ours = start_process(
            [str(BIN / "crmscore"), "serve", "--config", str(config_path), "--port", str(ours_port)],
            env=env,
            cwd=cwd,
            ready_url=f"http://127.0.0.1:{ours_port}/readyz",
            log=folder / "ours.log",
        )
        results: dict[str, Any] = {
            "duration_s_per_point": seconds,
            "concurrency": list(CONCURRENCY),
            "client": "wrk -t1" if WRK else "asyncio/httpx (wrk not found)",
            "startup": {"crmscore_ready_s": round(time.perf_counter() - started, 2)},
        }
        try:
            results["startup"]["crmscore_explained_s"] = round(
                _explained(f"http://127.0.0.1:{ours_port}/models", KEYS["scorer"]) - started, 2
            )
            url = f"http://127.0.0.1:{ours_port}/score/churn"
            single = [{"ids": [ids[i]], "k": 0} for i in rng.integers(0, len(ids), 500)]
            single_k3 = [{"ids": [ids[i]], "k": 3} for i in rng.integers(0, len(ids), 500)]
            batch = [{"ids": [ids[i] for i in rng.integers(0, len(ids), 100)], "k": 3} for _ in range(50)]
            scorer, marketer = {"x-api-key": KEYS["scorer"]}, {"x-api-key": KEYS["marketer"]}
            as_of = str(pd.Timestamp(snapshot.as_of.iloc[0]).date())
            histories = _histories(config, [ids[i] for i in rng.integers(0, len(ids), 20)], as_of)
            posted = [{"customers": [h], "as_of": as_of, "k": 3} for h in histories]
            results["crmscore"] = {
                "single_no_reasons": _scenario(url, single, scorer, seconds),
                "single_3_reasons": _scenario(url, single_k3, marketer, seconds),
                "batch_100_3_reasons": _scenario(url, batch, marketer, seconds),
                "posted_history_3_reasons": _scenario(f"{url}/history", posted, marketer, seconds),
            }
            results["posted_features"] = _posted_features(config, histories, as_of)
            results["crmscore_rss"] = _rss_mib(ours.pid)
        finally:
            stop_process(ours)
        results["crmscore_2_workers"] = _two_workers(config_path, env, cwd, folder, single, single_k3, seconds)

        started = time.perf_counter()
        mlflow = start_process(
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                "models:/crmscore-churn@champion",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(mlflow_port),
            ],
            env=env,
            cwd=cwd,
            ready_url=f"http://127.0.0.1:{mlflow_port}/ping",
            log=folder / "mlflow.log",
        )
        results["startup"]["mlflow_ready_s"] = round(time.perf_counter() - started, 2)
        try:
            url = f"http://127.0.0.1:{mlflow_port}/invocations"
            columns = [c for c in snapshot.columns if c != "as_of"]
            rows = _mlflow_rows(snapshot, columns)
            one = [
                {"dataframe_split": {"columns": columns, "data": [rows[i]]}} for i in rng.integers(0, len(rows), 500)
            ]
            hundred = [
                {"dataframe_split": {"columns": columns, "data": [rows[i] for i in rng.integers(0, len(rows), 100)]}}
                for _ in range(50)
            ]
            probe = httpx.post(url, json=one[0], timeout=60)
            results["mlflow_probe"] = {"status": probe.status_code, "body": probe.text[:300]}
            results["mlflow"] = {
                "single": _scenario(url, one, {}, seconds),
                "batch_100": _scenario(url, hundred, {}, seconds),
            }
            results["mlflow_rss"] = _rss_mib(mlflow.pid)
        finally:
            stop_process(mlflow)

    at8 = {name: points[1] for name, points in results["crmscore"].items()}
    ml8 = {name: points[1] for name, points in results["mlflow"].items()}
    results["summary"] = {
        "p99_ms_single_3_reasons_at_8_clients": at8["single_3_reasons"]["p99_ms"],
        "throughput_ratio_single_vs_mlflow_at_8": round(at8["single_3_reasons"]["rps"] / ml8["single"]["rps"], 2),
        "throughput_ratio_single_no_reasons_vs_mlflow_at_8": round(
            at8["single_no_reasons"]["rps"] / ml8["single"]["rps"], 2
        ),
        "throughput_ratio_batch_vs_mlflow_at_8": round(at8["batch_100_3_reasons"]["rps"] / ml8["batch_100"]["rps"], 2),
        "throughput_ratio_2_workers_vs_1_at_8": {
            name: round(results["crmscore_2_workers"][name][1]["rps"] / at8[name]["rps"], 2)
            for name in ("single_no_reasons", "single_3_reasons")
        },
        "goals": {
            "p99_le_10ms": at8["single_3_reasons"]["p99_ms"] <= 10,
            "throughput_ge_3x": at8["single_3_reasons"]["rps"] >= 3 * ml8["single"]["rps"],
            "rss_lt_1GiB": results["crmscore_rss"]["largest_process_mib"] < 1024,
        },
    }
    return results
