"""`mlflow run . -e train` parses: the MLproject entry points and the commands they render."""

from __future__ import annotations

from pathlib import Path

from mlflow.projects._project_spec import load_project

ROOT = Path(__file__).resolve().parents[2]


def test_entry_points_render_crmscore_commands(tmp_path):
    project = load_project(str(ROOT))
    assert {n: project.get_entry_point(n).name for n in ("train", "score", "demo")} == {
        "train": "train",
        "score": "score",
        "demo": "demo",
    }
    train = project.get_entry_point("train")
    assert set(train.parameters) == {"model", "config", "as_of", "metrics_out", "promotion", "reason"}
    command = train.compute_command({"model": "next-purchase", "as_of": "2011-09-10"}, str(tmp_path))
    assert command.startswith("crmscore train next-purchase --config configs/online_retail.yaml")
    assert "--as-of 2011-09-10" in command and "--metrics-out outputs/metrics.json" in command
    assert command.endswith(" --no-force-promote --reason ''")  # empty: none (the CLI reads '' as not given)
    forced = train.compute_command({"promotion": "force-promote", "reason": "new season"}, str(tmp_path))
    assert forced.endswith("--metrics-out outputs/metrics.json --force-promote --reason 'new season'")
    score = project.get_entry_point("score").compute_command({"model": "churn", "out": "s.csv"}, str(tmp_path))
    assert score == (
        "crmscore score churn --config configs/online_retail.yaml --as-of 2011-12-09 --out s.csv --no-explain "
        "--version ''"
    )
    explained = project.get_entry_point("score").compute_command({"explain": "explain", "version": "3"}, str(tmp_path))
    assert explained.endswith("--out outputs/scores.parquet --explain --version 3")
    assert project.get_entry_point("demo").compute_command({}, str(tmp_path)) == "crmscore demo"
    backtest = project.get_entry_point("backtest").compute_command({"model": "churn", "every": "30D"}, str(tmp_path))
    assert backtest == (
        "crmscore backtest churn --config configs/bank_leads.yaml --from 2009-03-01 --to 2010-11-01 "
        "--every 30D --out outputs/origins.csv"
    )
    monitor = project.get_entry_point("monitor").compute_command({}, str(tmp_path))
    assert monitor == (
        "crmscore monitor lead --config configs/bank_leads.yaml --from '' --to '' --every MS --out outputs/monitor.csv"
    )
