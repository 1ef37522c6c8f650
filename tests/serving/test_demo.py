"""``crmscore demo`` end to end on the bundled data, with the smallest backtest layout.

``make demo`` runs the same command on the full configs; here the retail models train on two
cut-offs (tests/serving/conftest.py) so the whole chain of steps runs in CI in well under a
minute and a step that stops fitting the next one fails a test, not the README's first command.
The run is the session's ``demo_run`` fixture: its registry and snapshots are the API tests' champions.
"""

from __future__ import annotations

import html
import json

import pandas as pd
import pytest

from training.report import METRIC_MEANINGS

TASKS = ("churn", "next_purchase", "lead")


@pytest.mark.slow
def test_demo_writes_every_output_the_readme_promises(demo_run):
    assert demo_run.exit_code == 0, demo_run.output
    # The summary names the paths it wrote; the files are read from the copy taken when it finished.
    out_dir, written, stdout = demo_run.out_dir, demo_run.written, demo_run.stdout

    summary = json.loads((written / "demo_summary.json").read_text())
    assert stdout.rstrip().endswith(summary[-1])  # the closing summary is the one written
    assert len(summary) == 11 and summary[-1] == f"at-risk list: 100 customers -> {out_dir / 'at_risk.csv'}"
    for task in TASKS:
        snapshot = pd.read_parquet(written / "snapshots" / f"{task}.parquet")
        scores = pd.read_parquet(written / "scores" / f"{task}.parquet")
        # Everyone in the snapshot is scored once, with a probability and reasons each way. Summed by
        # group, every fact of a very low score may lower it: such a row has counter-reasons only.
        assert len(scores) == len(snapshot) > 100 and scores["probability"].between(0, 1).all()
        reasons, counter = (scores[key] != "[]" for key in ("reasons", "counter_reasons"))
        assert (reasons | counter).all() and reasons.mean() > 0.95
        assert (scores["probability"][~reasons] < scores["probability"].mean()).all()
        metrics = json.loads((written / "metrics" / f"{task}.json").read_text())
        assert metrics["model"] == task and metrics["grade"] in {"A", "B", "C"} and metrics["baselines"]
        assert f"{task}: ROC AUC {metrics['metrics']['roc_auc']:.3f}" in "\n".join(summary)
        report = (written / "reports" / f"{task}.html").read_text()
        assert "<img" in report and "logistic" in report  # the plots and the baselines, self-contained
        # Every metric of the table says in words what it measures (a marketer reads it too).
        shown = [k for k in metrics["metrics"] if k != "base_rate" and not k.startswith("drift_")]
        for key in shown:
            meaning = html.escape(METRIC_MEANINGS[key])
            row = report.split(f"<tr><th>{key}</th>", 1)[1].split("</tr>", 1)[0]
            assert meaning and f'<td class="meaning">{meaning}</td>' in row, key
    assert len(scores) == 128  # the leads still open on the data's last day (2010-11-01)

    listed = pd.read_csv(written / "at_risk.csv")
    assert len(listed) == 100 and listed["value_at_risk"].is_monotonic_decreasing
    assert listed["reason_1"].notna().all() and listed["counter_reason_1"].notna().all()
    churn = pd.read_parquet(written / "scores" / "churn.parquet").set_index("customer_id")
    assert set(listed["customer_id"].astype(str)) <= set(churn.index.astype(str))
    # The list ranks the same scores the batch wrote for the same date.
    top = churn.sort_values("value_at_risk", ascending=False).head(100)
    assert listed["value_at_risk"].to_numpy() == pytest.approx(top["value_at_risk"].to_numpy(), rel=1e-3, abs=0.01)

    monitor = pd.read_csv(written / "monitor" / "lead.csv")
    assert monitor["error"].isna().sum() >= 6 and monitor["roc_auc"].dropna().between(0.5, 1).all()
    # The at-risk step says what score says at that date: the features drifted since training.
    at_risk_step = stdout.split("== at-risk list")[1]
    assert "warning: " in at_risk_step and "features have shifted from the training rows" in at_risk_step
