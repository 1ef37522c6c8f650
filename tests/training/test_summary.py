"""The lines ``crmscore train`` and ``crmscore demo`` print after a run, for a person at a terminal."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from serving.cli import app
from tests.serving.conftest import write_configs
from training.tracking import code_version
from training.train import summary_lines


def _result(**changes):
    result = {
        "registered_model": "crmscore-next_purchase",
        "version": "3",
        "alias": "challenger",
        "promotion": "roc_auc 0.8100 <= champion v2 0.8110 on the same test rows (DeLong p = 0.4)",
        "test_cutoff": "2011-09-10",
        "n_train": 28337,
        "n_test": 5326,
        "metrics": {"roc_auc": 0.8109, "ece": 0.0281, "rmse": 1775.4, "gini": 0.8331, "base_rate": 0.43},
        "baselines": {
            "rfm": {"roc_auc": 0.8, "ece": 0.0357, "rmse": 1965.8, "gini": 0.799},
            "logistic": {"roc_auc": 0.8062, "ece": 0.0189},
        },
        "grade": "B",
        "report": "outputs/reports/next_purchase.html",
        "drift": {"warning": None},
        "warnings": [],
    }
    return {**result, **changes}


def test_the_summary_sets_each_metric_beside_every_baselines_and_dashes_what_a_baseline_lacks():
    lines = summary_lines(_result())
    assert lines == [
        "crmscore-next_purchase version 3, challenger (roc_auc 0.8100 <= champion v2 0.8110 on the same test "
        "rows (DeLong p = 0.4)); test cut-off 2011-09-10, n_train 28,337, n_test 5,326",
        "metric   model    rfm  logistic",
        "roc_auc  0.811  0.800     0.806",
        "ece      0.028  0.036     0.019",
        "rmse     1,775  1,966         -",
        "gini     0.833  0.799         -",
        "grade B; report outputs/reports/next_purchase.html",
    ]


def test_the_summary_ends_with_the_gain_the_drift_and_the_warnings():
    metrics = {
        **_result()["metrics"],
        "roc_auc_se": 0.006,
        "roc_auc_gain": 0.0047,
        "roc_auc_gain_low": 0.0012,
        "roc_auc_gain_high": 0.0082,
        "roc_auc_gain_p_value": 0.0014,
    }
    lines = summary_lines(
        _result(metrics=metrics, drift={"warning": "tenure_days has shifted"}, warnings=["no seasonal shift"])
    )
    assert lines[-4:] == [
        "ROC AUC 0.811 (standard error 0.006); +0.005 over logistic (95% CI +0.001 to +0.008, DeLong p = 0.0014)",
        "grade B; report outputs/reports/next_purchase.html",
        "test fold drift: tenure_days has shifted",
        "warning: no seasonal shift",
    ]


@pytest.mark.slow
def test_train_prints_the_json_on_stdout_and_the_summary_on_stderr(tmp_path):
    """Bundled bank leads, a fresh registry: stdout is the metrics JSON alone (what --metrics-out
    writes), stderr the progress and then the summary of the same figures, which is also the version's
    description in the registry (MLflow's UI shows it)."""
    from mlflow.tracking import MlflowClient

    _, leads = write_configs(tmp_path)
    metrics_out = tmp_path / "lead.json"
    result = CliRunner().invoke(app, ["train", "lead", "--config", str(leads), "--metrics-out", str(metrics_out)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out == json.loads(metrics_out.read_text())
    summary = summary_lines(out)
    assert result.stderr.rstrip("\n").endswith("\n".join(summary))
    assert summary[0].startswith("crmscore-lead version 1, champion (no champion yet); test cut-off 2010-03-01")
    assert summary[1].split() == ["metric", "model", "logistic"]
    model, logistic = out["metrics"]["roc_auc"], out["baselines"]["logistic"]["roc_auc"]
    assert summary[2].split() == ["roc_auc", f"{model:.3f}", f"{logistic:.3f}"]
    client = MlflowClient(tracking_uri=yaml.safe_load(leads.read_text())["tracking_uri"])
    # Said to be as registered: the alias it names moves later, and "champion" read weeks on was wrong.
    note, fenced = client.get_model_version("crmscore-lead", "1").description.split("\n", 1)
    assert note.startswith("As registered on ") and note.endswith("shows its aliases now and the champion history.")
    assert fenced == "```\n" + "\n".join(summary) + "\n```"
    described = client.get_registered_model("crmscore-lead").description
    # The bundled leads map no converted_at: the label is the export's final flag, and the description says so
    # (it said "converted within 30 days of creation", the horizon the labels cannot honour).
    assert described.startswith("P(convert), by the export's final flag. Population: leads created in the 30 days up")
    assert "Label: 1 = converted, the export's final flag (no converted_at: the horizon does not apply)" in described
    # What an audit needs to redo the run: the code, and the digests of the rows it learnt and was tested on,
    # the same in the JSON, on the run's MLflow datasets and in the HTML report.
    assert out["code"] == code_version()["text"] and set(out["data_digests"]) == {"training", "test"}
    inputs = client.get_run(out["run_id"]).inputs.dataset_inputs
    assert {i.dataset.name: i.dataset.digest for i in inputs} == {
        f"lead-{context}": digest for context, digest in out["data_digests"].items()
    }
    report = Path(out["report"]).read_text()
    assert out["data_digests"]["training"] in report and html.escape(out["code"]) in report


@pytest.mark.slow
def test_a_train_stopped_by_sigterm_ends_its_run_and_exits_143(tmp_path):
    """A scheduler's timeout sends SIGTERM: Python's default died on the spot, leaving the MLflow run
    RUNNING forever (and an output's temporary file beside it); now the signal is an exit, which ends
    the run as FAILED on its way out."""
    import signal
    import subprocess
    import sys
    import time

    from mlflow.tracking import MlflowClient

    _, leads = write_configs(tmp_path)
    crmscore = Path(sys.executable).with_name("crmscore")
    proc = subprocess.Popen(
        [str(crmscore), "train", "lead", "--config", str(leads)], stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    seen = ""
    for line in proc.stderr:  # the step that logs the run: the MLflow run is open while it works
        seen += line
        if "MLflow: logging the run" in line:
            break
    # Into the run (the step takes ~1.2 s for the leads here): once the store holds it RUNNING. A fixed 0.4 s
    # signalled before the run existed on a loaded CI machine.
    client = MlflowClient(tracking_uri=yaml.safe_load(leads.read_text())["tracking_uri"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        experiments = [e.experiment_id for e in client.search_experiments()]
        if any(r.info.status == "RUNNING" for r in client.search_runs(experiments)):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, seen
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs and {r.info.status for r in runs} <= {"FAILED", "FINISHED"}  # none left RUNNING
