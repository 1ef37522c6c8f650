"""Start a server process, wait until it answers, and stop it with its children.

Used wherever a real server is started for a caller that must wait for it: the API tests and the
load benchmark (ours and the MLflow baseline).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

__all__ = ["start_process", "stop_process"]


def stop_process(proc: subprocess.Popen, *, group: bool = True, timeout_s: float = 30.0) -> None:
    """Stop ``proc``, every process of its session (``group``: ``proc`` leads one) and every process
    it started (BentoML and MLflow fork workers; BentoML's start sessions of their own, which the
    session's signal missed: they outlived the server and kept a core busy). ``proc`` is asked first
    (SIGTERM: BentoML's server stops its workers, requests in flight finish) and given ``timeout_s``;
    then what is left is killed. ``crmscore serve`` stops its BentoML server so, without ``group``:
    the group is its own."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    try:
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
        proc.wait(timeout=timeout_s)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait(timeout=10)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=10)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def start_process(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    ready_url: str,
    log: Path,
    timeout_s: float = 180.0,
) -> subprocess.Popen:
    """Run ``command`` in its own session, output to ``log``; return once ``ready_url`` answers 200.

    Raises
    ------
    RuntimeError
        The process exited, or was not ready within ``timeout_s``; the message ends with its log.
    """
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(command), env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{command[0]} exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_process(proc)
    raise RuntimeError(f"{command[0]} not ready after {timeout_s:.0f} s: {log.read_text()[-3000:]}")
