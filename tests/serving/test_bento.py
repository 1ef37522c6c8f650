"""The Bento: ``bentoml build`` packs the service's code and configs, and the built Bento serves the champions.

The Bento is built into a fresh BentoML home from ``bentofile.yaml`` at the repository root and served
from that Bento store (``bentoml serve crmscore:<version>``). The test environment has crmscore installed
(editable), which would hide a module left out of ``include`` when serving, so the Bento's file list is
checked against the tracked modules. The served Bento also meets the deployment mistake of a registry without
its model files: a reload answers 503 naming the path and the loaded models keep serving. Containerizing needs a Docker engine, which CI has not; the image
installs exactly the Bento's ``requirements.txt``, checked below.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest
import yaml

from serving.launch import start_process, stop_process
from tests.serving.conftest import KEYS, ROOT, free_port

pytestmark = pytest.mark.api

PACKAGES = ("features", "models", "training", "serving")


def _tracked_modules() -> set[str]:
    out = subprocess.run(
        ["git", "ls-files", "--", *(f"{p}/*.py" for p in PACKAGES)], cwd=ROOT, capture_output=True, text=True
    )
    if out.returncode != 0:  # not a git checkout (an unpacked sdist): every module on disk
        return {str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return set(out.stdout.split())


@pytest.fixture(scope="module")
def bento(tmp_path_factory) -> tuple[Path, str, dict[str, str]]:
    """(the built Bento's folder, its tag, the environment naming its BentoML home)."""
    home = tmp_path_factory.mktemp("bentoml_home")
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    bentoml = Path(sys.executable).with_name("bentoml")
    built = subprocess.run(
        [str(bentoml), "build", str(ROOT), "--output", "tag"], env=env, capture_output=True, text=True, timeout=300
    )
    assert built.returncode == 0, built.stderr[-3000:]
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    return home / "bentos" / name / version, tag, env


def test_the_bento_holds_the_service_code_and_configs_and_nothing_else(bento):
    folder, tag, _ = bento
    assert tag.startswith("crmscore:")
    src = folder / "src"
    packed = {str(p.relative_to(src)) for p in src.rglob("*.py")}
    assert packed == _tracked_modules()
    assert {p.name for p in (src / "configs").glob("*.yaml")} == {p.name for p in (ROOT / "configs").glob("*.yaml")}
    for left_out in ("tests", "data", "benchmarks", "outputs", "mlflow.db", ".venv"):
        assert not (src / left_out).exists(), left_out
    info = yaml.safe_load((folder / "bento.yaml").read_text())
    assert info["service"] == "serving.service:CrmScore"
    assert {e["name"]: e["value"] for e in info["envs"]} == {"BENTOML_DO_NOT_TRACK": "true", "OMP_NUM_THREADS": "1"}


def test_the_bento_installs_exactly_the_pinned_versions(bento):
    folder, _, _ = bento

    def pins(path: Path) -> set[str]:
        return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}

    assert pins(folder / "env" / "python" / "requirements.txt") == pins(ROOT / "constraints.txt")
    dockerfile = (folder / "env" / "docker" / "Dockerfile").read_text()
    assert "python:3.11" in dockerfile
    assert "pip install -r $BENTO_PATH/env/python/requirements.txt" in dockerfile


def test_the_built_bento_serves_the_champions(bento, trained, tmp_path):
    _, tag, env = bento
    retail, _, snapshots = trained
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **env,
        "CRMSCORE_CONFIG": str(retail),
        "CRMSCORE_API_KEYS": ",".join(f"{key}:{role}" for role, key in KEYS.items()),
    }
    bentoml = Path(sys.executable).with_name("bentoml")
    log = tmp_path / "bento.log"
    proc = start_process(
        [str(bentoml), "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        ready_url=f"{url}/readyz",
        log=log,
        timeout_s=120,
    )
    artifacts = retail.parent / "mlruns"  # beside the registry's SQLite file
    try:
        with httpx.Client(base_url=url, headers={"x-api-key": KEYS["admin"]}, timeout=60) as client:
            models = client.post("/models", json={})
            some_id = str(pd.read_parquet(snapshots / "churn.parquet", columns=["customer_id"]).customer_id.iloc[0])
            scored = client.post("/score/churn", json={"ids": [some_id], "k": 2})
            # The deployment mistake the README warns of: the registry without its model files, found
            # at a reload that loads the churn model again (a new snapshot file: nothing to keep).
            artifacts.rename(tmp_path / "mlruns-away")
            churn = snapshots / "churn.parquet"
            shutil.copy(churn, tmp_path / "churn.parquet")
            (tmp_path / "churn.parquet").replace(churn)
            try:
                failed_reload = client.post("/reload", json={})
                after = client.post("/score/churn", json={"ids": [some_id], "k": 2})
            finally:
                (tmp_path / "mlruns-away").rename(artifacts)
    finally:
        workers = psutil.Process(proc.pid).children(recursive=True)
        stop_process(proc)
    # BentoML's workers start sessions of their own: stopping the server stops them too.
    assert workers and not [w.pid for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    assert f'BentoServer from "{tag}"' in log.read_text()  # the Bento from the store
    assert models.status_code == 200, models.text
    assert {m["task"]: m["alias"] for m in models.json()["models"]} == dict.fromkeys(
        ("churn", "next_purchase", "lead"), "champion"
    )
    assert scored.status_code == 200, scored.text
    item = scored.json()["items"][0]
    assert item["id"] == some_id and 0 < item["probability"] < 1
    assert item["model_name"] == "crmscore-churn" and len(item["reasons"]) == 2
    assert failed_reload.status_code == 503, failed_reload.text
    error = failed_reload.json()["error"]
    assert error.startswith("reload failed, still serving the models loaded before")
    assert str(artifacts) in error and "mount the artifacts at the same path" in error
    assert after.status_code == 200 and after.json()["items"][0] == item  # the loaded models kept serving
