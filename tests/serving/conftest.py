"""Session fixtures of the API tests: small champions trained on the bundled data, snapshots, a real server.

The server is started the way users start it, ``crmscore serve --config C --port P``, as a
subprocess on a free loopback port, and stopped with its whole process group.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from serving.launch import start_process, stop_process

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"scorer": "test-scorer-key", "marketer": "test-marketer-key", "admin": "test-admin-key"}
MAX_BATCH = 200


@dataclass(frozen=True)
class Server:
    url: str
    keys: dict[str, str]
    retail_config: Path
    leads_config: Path
    snapshots: Path

    def client(self, role: str | None = None) -> httpx.Client:
        headers = {"x-api-key": self.keys[role]} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)


def posted_history(customer_id: str) -> dict:
    """A bundled Online Retail II customer's whole history, as a client would post it (every raw
    line: the bundled data's filters are not applied)."""
    from serving.runtime import as_posted_histories

    data = pd.read_parquet(ROOT / "data" / "online_retail_ii.parquet")
    data = data[data.CustomerID.astype("Int64").astype(str) == customer_id]
    lines = pd.DataFrame(
        {
            "customer_id": customer_id,
            "timestamp": data.InvoiceDate,
            "amount": data.Quantity * data.Price,
            "order_id": data.Invoice,
            "product_id": data.StockCode,
            "quantity": data.Quantity,
            "country": data.Country,
        }
    )
    (history,) = as_posted_histories(lines, attributes=["country"])
    return history


def posted_lead(row: pd.Series) -> dict:
    """A bundled bank lead's row as a client would post it: its attributes without ``duration``
    (known only after the call) and the label."""
    attributes = {
        k: (v.item() if hasattr(v, "item") else v)
        for k, v in row.items()
        if k not in ("lead_id", "created_at", "converted", "duration")
    }
    return {"lead_id": str(row.lead_id), "created_at": row.created_at.isoformat(), "attributes": attributes}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_configs(folder: Path, *, n_train_cutoffs: int = 2) -> tuple[Path, Path]:
    """Copies of the bundled configs with the registry, outputs and data paths inside ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    common = {"tracking_uri": f"sqlite:///{folder / 'mlflow.db'}", "output_dir": str(folder / "outputs")}
    paths = []
    for name in ("online_retail", "bank_leads"):
        data = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
        data.update(common)
        for table in data["tables"].values():
            table["source"]["path"] = str((ROOT / "configs" / table["source"]["path"]).resolve())
        for model in data.get("models", {}).values() if name == "online_retail" else ():
            # Two cut-offs one horizon apart: the smallest backtest (fit on the first, calibrate on the second).
            # The lead data is small (its monthly leads are sparse early on): it keeps its own layout.
            model["n_train_cutoffs"] = n_train_cutoffs
            model["step_days"] = model["horizon_days"]
        data["serving"] = {"max_batch": MAX_BATCH}
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        paths.append(path)
    return paths[0], paths[1]


def start_server(config: Path, cwd: Path, *, ready: str = "/readyz") -> tuple[subprocess.Popen, str]:
    """``crmscore serve`` on a free port, once ``ready`` answers 200 (``/livez`` for a server that
    serves no model, whose ``/readyz`` is 503)."""
    port = free_port()
    env = {
        **os.environ,
        "CRMSCORE_API_KEYS": ",".join(f"{key}:{role}" for role, key in KEYS.items()),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    crmscore = Path(sys.executable).with_name("crmscore")
    url = f"http://127.0.0.1:{port}"
    proc = start_process(
        [str(crmscore), "serve", "--config", str(config), "--port", str(port), "--host", "127.0.0.1"],
        env=env,
        cwd=cwd,
        ready_url=f"{url}{ready}",
        log=cwd / f"server-{port}.log",
        timeout_s=120,
    )
    return proc, url


stop_server = stop_process


@dataclass(frozen=True)
class DemoRun:
    """One ``crmscore demo`` on the smallest backtest layout: its output, configs and folders."""

    exit_code: int
    output: str  # stdout and stderr, for a failure's message
    stdout: str
    retail_config: Path
    leads_config: Path
    out_dir: Path  # where the demo wrote: the configs' output_dir, which later tests write into too
    written: Path  # a copy of out_dir taken when the demo finished


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    """``crmscore demo`` run once per test session, the way users run it (through the CLI).

    It trains the three champions into the configs' fresh registry and writes their snapshots and
    reports where ``crmscore serve`` and the other commands look for them, which is what the API tests
    need (``trained``): one run serves both, and ``test_demo`` checks the copy of what it wrote.
    """
    from typer.testing import CliRunner

    from features.config import load_config
    from serving.cli import app

    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    folder = tmp_path_factory.mktemp("demo")
    retail, leads = write_configs(folder)
    out_dir = Path(load_config(retail).output_dir)
    args = ["demo", "--out-dir", str(out_dir), "--retail-config", str(retail), "--leads-config", str(leads)]
    result = CliRunner().invoke(app, args)
    written = folder / "demo_written"
    if out_dir.exists():
        shutil.copytree(out_dir, written)
    return DemoRun(result.exit_code, result.output, result.stdout, retail, leads, out_dir, written)


@pytest.fixture(scope="session")
def trained(demo_run) -> tuple[Path, Path, Path]:
    """Champions of the three tasks in a fresh registry (the demo's), and their snapshots of the data's
    last day in the configs' ``<output_dir>/snapshots``.

    Returns (retail config, leads config, snapshot folder).
    """
    assert demo_run.exit_code == 0, demo_run.output
    return demo_run.retail_config, demo_run.leads_config, demo_run.out_dir / "snapshots"


DECOYS = ("serving", "models", "features", "training")


def users_project(folder: Path, config: Path) -> Path:
    """A user's project folder to start ``crmscore serve`` from: the config's copy with a relative
    ``tracking_uri`` and ``output_dir`` (the registry and outputs linked into the folder), and packages
    named like crmscore's whose import fails, as a project's own ``models`` package or an older
    checkout of crmscore would be. Returns the copy's path."""
    folder.mkdir()
    data = yaml.safe_load(config.read_text())
    (folder / "mlflow.db").symlink_to(data["tracking_uri"].removeprefix("sqlite:///"))
    (folder / "outputs").symlink_to(data["output_dir"])
    data.update(tracking_uri="sqlite:///mlflow.db", output_dir="outputs")
    for name in DECOYS:
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(f"raise ImportError('{name} of the project folder imported')\n")
    copy = folder / config.name
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


@pytest.fixture(scope="session")
def server(trained) -> Iterator[Server]:
    retail, leads, snapshots = trained
    # Started from a user's folder (relative paths, look-alike packages), which every API test then uses.
    project = users_project(retail.parent / "project", retail)
    proc, url = start_server(project, project.parent)
    try:
        yield Server(url=url, keys=KEYS, retail_config=retail, leads_config=leads, snapshots=snapshots)
    finally:
        stop_server(proc)


def list_since(args: list[str], folder: Path, *, top: int, since: str):
    """Run a list command (``args``: command, model, --config) with ``--since``, and the same command
    at ``since`` for the whole population; check that each listed row's ``probability_then`` and
    ``tier_then`` are that list's. Returns the run's result, its rows and those with a score then."""
    from typer.testing import CliRunner

    from serving.cli import app

    now, then = folder / "now.csv", folder / "then.csv"
    result = CliRunner().invoke(app, [*args, "--out", str(now), "--top", str(top), "--since", since])
    assert result.exit_code == 0, result.output
    earlier = CliRunner().invoke(app, [*args, "--out", str(then), "--top", "100000", "--as-of", since])
    assert earlier.exit_code == 0, earlier.output
    listed = pd.read_csv(now, dtype={"customer_id": str})
    everyone_then = pd.read_csv(then, dtype={"customer_id": str}).set_index("customer_id")
    known = listed[listed["tier_then"].notna()]
    assert known["probability_then"].tolist() == everyone_then.loc[known.customer_id, "probability"].tolist()
    assert known["tier_then"].tolist() == everyone_then.loc[known.customer_id, "tier"].tolist()
    assert not listed.loc[listed["tier_then"].isna(), "customer_id"].isin(everyone_then.index).any()
    return result, listed, known
