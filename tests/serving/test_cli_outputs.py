"""An ``--out`` the command could not write is refused before any work, naming the path."""

from __future__ import annotations

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


def test_train_with_a_tracking_server_that_does_not_answer_fails_before_the_backtest(tmp_path, monkeypatch):
    """Minutes of backtest would otherwise end in MLflow's traceback when the run is logged."""
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    data = {**minimal_config_dict(), "tracking_uri": f"http://127.0.0.1:{port}"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(
        app, ["train", "churn", "--config", str(path), "--metrics-out", str(tmp_path / "m.json")]
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: cannot reach the MLflow tracking store at http://127.0.0.1:{port}: ")
    assert "reading and validating" not in result.stderr  # no step began (the source file does not even exist)
    assert not (tmp_path / "m.json").exists()
