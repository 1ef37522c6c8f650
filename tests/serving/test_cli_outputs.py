"""An ``--out`` the command could not write is refused before any work, naming the path."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from serving.cli import app
from tests.conftest import minimal_config_dict


@pytest.fixture
def config_file(tmp_path):
    """A config whose source file does not exist and whose registry is empty: any work would fail."""
    data = {**minimal_config_dict(), "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["score", "churn", "--as-of", "2011-01-01", "--out", "{tmp}/a_file/s.csv"], "is a file, not a folder"),
        (["score", "churn", "--as-of", "2011-01-01", "--out", "{tmp}/s.json"], "unknown format '.json'"),
        (["at-risk", "--out", "{tmp}/a_file/list.csv"], "is a file, not a folder"),
        (["features", "--as-of", "2011-01-01", "--out", "{tmp}/a_file/f.parquet"], "is a file, not a folder"),
        (["train", "churn", "--metrics-out", "{tmp}/a_file/m.json"], "is a file, not a folder"),
        (["backtest", "churn", "--from", "2011-01-01", "--to", "2011-02-01", "--out", "{tmp}/b.txt"], "unknown format"),
        (["monitor", "churn", "--out", "{tmp}/a_file"], "is a folder"),
        # Each writer's one format: CSV for the list, Parquet for a snapshot, JSON for the metrics.
        (["at-risk", "--out", "{tmp}/list.xlsx"], "unknown format '.xlsx'; use .csv"),
        (["features", "--as-of", "2011-01-01", "--out", "{tmp}/f.csv"], "use .parquet or .pq"),
        (["train", "churn", "--metrics-out", "{tmp}/m.yaml"], "unknown format '.yaml'; use .json"),
    ],
)
def test_unwritable_out_fails_first(config_file, tmp_path, args, message):
    (tmp_path / "a_file").write_text("not a folder")
    if "is a folder" in message:
        (tmp_path / "a_file").unlink()
        (tmp_path / "a_file").mkdir()
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(app, [*args, "--config", str(config_file)])
    assert result.exit_code == 2, result.output
    option = "--metrics-out" if "--metrics-out" in args else "--out"
    assert f"error: {option} {tmp_path}" in result.stderr and message in result.stderr
    # Refused before reading the tables or the registry, which would have failed differently.
    assert "tx.parquet" not in result.stderr and "champion" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["score", "churn", "--as-of", "2011-01-01", "--out", "{tmp}/new/deeper/s.parquet"],
        ["features", "--as-of", "2011-01-01", "--out", "{tmp}/new/deeper/f.parquet"],
        ["at-risk", "--out", "{tmp}/new/deeper/list.csv"],
    ],
)
def test_a_run_that_fails_after_the_check_leaves_no_folder(config_file, tmp_path, args):
    """The path passes the check; the run then fails (no source file, no model) and leaves nothing."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(app, [*args, "--config", str(config_file)])
    assert result.exit_code != 0, result.output
    assert "error: --out" not in result.stderr
    assert not (tmp_path / "new").exists()


def test_a_failed_score_says_so_in_its_summary(config_file, tmp_path, capsys):
    """``--summary`` of a failed run holds the failure, not an earlier run's findings: the registry has no
    champion here, an exit 2; a signal's exit (SIGTERM is ``sys.exit(143)``) is recorded as one."""
    from serving.cli import _write_failure_summary

    summary = tmp_path / "run.json"
    summary.write_text('{"status": "ok", "rows": 4000}')  # last night's
    args = ["score", "churn", "--as-of", "2011-01-01", "--out", str(tmp_path / "s.csv"), "--summary", str(summary)]
    result = CliRunner().invoke(app, [*args, "--config", str(config_file)])
    assert result.exit_code == 2
    found = json.loads(summary.read_text())
    assert found == {**found, "status": "failed", "exit_code": 2, "task": "churn", "as_of": "2011-01-01"}
    assert f"error: {found['error']}" in result.stderr and "rows" not in found
    _write_failure_summary(summary, SystemExit(143), task="churn", as_of="2011-01-01", code=143)
    assert json.loads(summary.read_text())["error"] == "stopped by a signal"
    # A summary that cannot be written either is a warning, not an error over the run's own.
    (tmp_path / "a_file").write_text("not a folder")
    _write_failure_summary(
        tmp_path / "a_file" / "x.json", KeyboardInterrupt(), task="churn", as_of="2011-01-01", code=130
    )
    assert f"warning: --summary {tmp_path / 'a_file' / 'x.json'} could not be written" in capsys.readouterr().err


def test_a_signal_that_py4j_turned_into_another_error_keeps_its_exit_code(tmp_path, monkeypatch):
    """An ops engineer's SIGTERM during a Spark write: the exit raised inside py4j's socket read came back as
    ``KeyError: 'p'``, and the run exited 1 with three tracebacks; the signal received decides now."""
    import signal

    from serving import cli

    monkeypatch.setattr(cli, "_SIGNALLED", {})
    assert cli._exit_code(KeyError("p")) == 1
    with pytest.raises(SystemExit) as stopped:
        cli._on_signal(signal.SIGTERM, None)
    assert stopped.value.code == 143 and cli._exit_code(KeyError("p")) == 143
    summary = tmp_path / "run.json"
    cli._write_failure_summary(summary, KeyError("p"), task="churn", as_of="2011-01-01", code=143)
    assert json.loads(summary.read_text())["error"] == "stopped by a signal"
    monkeypatch.setattr(cli, "_SIGNALLED", {})
    with pytest.raises(KeyboardInterrupt):
        cli._on_signal(signal.SIGINT, None)
    assert cli._exit_code(RuntimeError("Py4JError")) == 130
    cli._write_failure_summary(summary, RuntimeError("Py4JError"), task="churn", as_of="2011-01-01", code=130)
    assert json.loads(summary.read_text())["error"] == "interrupted"


@pytest.mark.parametrize(
    "args",
    [["top", "Lead", "--out", "{tmp}/l.csv"], ["score", "lead", "--as-of", "2010-11-01", "--out", "{tmp}/s.csv"]],
)
def test_a_config_without_the_models_table_is_refused_naming_it(config_file, tmp_path, args):
    """The retail config for the lead list said "table 'leads' is not configured: no data to take a date
    from", after loading the champion; now, before any work, which table the model needs and the config
    lacks. (MODEL is taken in any case: ``Lead``.)"""
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(app, [*args, "--config", str(config_file)])
    assert result.exit_code == 2, result.output
    assert (
        f"error: the lead model scores the rows of table 'leads', which config 't' ({config_file}) does not map "
        "(tables.leads; it maps transactions)"
    ) in " ".join(result.stderr.split())


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on once the socket closes
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "command",
    [
        ["train", "churn", "--metrics-out", "{tmp}/m.json"],
        ["score", "churn", "--as-of", "2011-12-01", "--out", "{tmp}/s.csv"],
        ["at-risk", "--out", "{tmp}/l.csv"],
        ["models"],
        ["promote", "churn", "--version", "1"],
    ],
)
def test_a_tracking_server_that_does_not_answer_fails_in_seconds_before_any_work(tmp_path, command):
    """MLflow's own retries take about four minutes to give up on a closed port (measured); the
    reachability check of ``set_uris`` says so at once, with MLflow's retry settings left as they are,
    and minutes of backtest never start."""
    port = _closed_port()
    data = {**minimal_config_dict(), "tracking_uri": f"http://127.0.0.1:{port}"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    result = CliRunner().invoke(app, [*args, "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(
        f"error: the MLflow tracking server at http://127.0.0.1:{port} does not answer ([Errno 111] Connection "
        "refused); start it, or fix tracking_uri in the config"
    )
    assert "reading and validating" not in result.stderr  # no step began (the source file does not even exist)
    assert not list(tmp_path.glob("*.json")) and not list(tmp_path.glob("*.csv"))


def test_the_reachability_check_passes_any_http_answer_and_skips_other_stores():
    """A real HTTP server on loopback that answers 404 to /health (a proxy, an old server) is
    reachable: what it says to MLflow's requests is MLflow's to report."""
    import http.server
    import threading

    from training.pyfunc import RegistryUnavailable, _check_reachable

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _check_reachable(f"http://127.0.0.1:{server.server_address[1]}/", "tracking")
    finally:
        server.shutdown()
        server.server_close()
    _check_reachable("sqlite:///nowhere/mlflow.db", "tracking")  # not a server: nothing to probe
    with pytest.raises(RegistryUnavailable, match=r"registry server at http://127\.0\.0\.1:\d+ does not answer"):
        _check_reachable(f"http://127.0.0.1:{_closed_port()}", "registry")
