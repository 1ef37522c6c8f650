"""End to end on the bundled data: train churn with MLflow, score everyone with the champion."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from features.config import load_config
from features.sources import load_tables
from training.score import score_batch
from training.train import train_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_train_churn_and_score_batch(tmp_path):
    config = load_config(
        ROOT / "configs" / "online_retail.yaml",
        overrides={"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "output_dir": str(tmp_path / "outputs")},
    )
    tables = load_tables(config)
    metrics_out = tmp_path / "churn.json"
    lines: list[str] = []
    out = train_model(config, "churn", tables=tables, metrics_out=metrics_out, progress=lines.append)
    assert json.loads(metrics_out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON")) == out
    # A new registry (this test's own) is said first; then the four steps after the tables, numbered, and the total.
    assert lines[0] == (
        f"note: no registry at {tmp_path / 'mlflow.db'}: a new one is created there (a relative sqlite path in "
        f"tracking_uri resolves against the working directory, {Path.cwd()}); if the champions live in another "
        "registry, run from its folder or give tracking_uri an absolute path"
    )
    lines = lines[1:]
    assert [line.split("]")[0].split()[0] for line in lines[:-1]] == ["[1/4", "[2/4", "[3/4", "[4/4"]
    # The rows that fit the model (n_train), and the older labelled cut-offs that only set the seasonal shift.
    assert (
        f"{out['n_train']:,} training rows at 6 cut-offs (50,370 at all 13 set the seasonal shift), 4,316 test rows"
        in lines[1]
    )
    assert lines[-1].startswith("trained in ")
    for key in (
        "model",
        "version",
        "test_cutoff",
        "horizon_days",
        "n_train",
        "n_test",
        "metrics",
        "baselines",
        "grade",
    ):
        assert key in out
    assert out["test_cutoff"] == "2011-09-10" and out["horizon_days"] == 90 and out["alias"] == "champion"
    assert set(out["baselines"]) == {"rfm", "logistic", "bgnbd"}
    assert out["warnings"] == []  # 13 cut-offs: the seasonal prior shift has its year-old references
    for name, baseline in out["baselines"].items():
        assert out["metrics"]["roc_auc"] > baseline["roc_auc"], name
        # Each baseline's own seasonal correction: the model's, which its hazard head's calendar
        # makes smaller, left them at ECE 0.05-0.08 in the Christmas window.
        assert baseline["ece"] < 0.04, name
    assert out["metrics"]["roc_auc"] > 0.77 and out["metrics"]["ece"] < 0.03
    # The lead over the best baseline is outside one test fold's noise (DeLong's paired test).
    assert out["metrics"]["roc_auc_gain_low"] > 0
    report = Path(out["report"]).read_text()
    assert report.count("data:image/png;base64,") == 5 and "<figcaption>shap_by_reason_group</figcaption>" in report
    # The backtest table scores each training fold as of its own cut-off, with that season's
    # correction (the test cut-off's put every Jan-Jun fold 0.07-0.08 below its base rate).
    path = MlflowClient(tracking_uri=config.tracking_uri).download_artifacts(out["run_id"], "backtest.json", tmp_path)
    logged = json.loads(Path(path).read_text())
    table = pd.DataFrame(logged["data"], columns=logged["columns"])
    folds = table[table["role"] != "test"]
    assert len(folds) == 6 and (folds["mean_probability"] - folds["base_rate"]).abs().max() < 0.03

    # Test metrics by segment, in the JSON, MLflow and the report: each feature's segments
    # partition the test rows, and their rows add up to the fold's base rate.
    segments = pd.DataFrame(out["segments"])
    assert set(segments["feature"]) == {"purchase_days", "tenure_days", "country"}
    for feature, part in segments.groupby("feature"):
        assert part["rows"].sum() == out["n_test"], feature
        rate = (part["rows"] * part["base_rate"]).sum() / out["n_test"]
        assert rate == pytest.approx(out["metrics"]["base_rate"]), feature
    assert segments[segments["feature"] == "purchase_days"]["segment"].tolist() == ["1", "2-3", "4-10", "11+"]
    assert segments["roc_auc"].between(0.5, 1).all() and (segments["roc_auc_se"] > 0).all()
    path = MlflowClient(tracking_uri=config.tracking_uri).download_artifacts(out["run_id"], "segments.json", tmp_path)
    assert len(json.loads(Path(path).read_text())["data"]) == len(segments)
    assert "Test metrics by segment" in Path(out["report"]).read_text()

    # Drift of the test fold, in the JSON and the report: tenure keeps growing past what the
    # trees saw (the data starts in Dec 2009), so it leaves the training range at later cut-offs.
    drift = out["drift"]
    assert drift["max_psi"] >= 0 and isinstance(drift["alert"], list)
    assert "Feature drift: test fold against the training rows" in Path(out["report"]).read_text()

    batch = score_batch(config, "churn", as_of="2011-12-09", out=tmp_path / "scores.csv", explain=True, tables=tables)
    scores = pd.read_csv(tmp_path / "scores.csv", dtype={"customer_id": str})
    assert len(scores) == batch.rows > 4000 and batch.out == tmp_path / "scores.csv"
    by_feature = {d.feature: d for d in batch.drift}
    assert len(by_feature) == len(batch.drift) > 40
    assert by_feature["tenure_days"].out_of_range > 0
    assert {"probability", "tier", "value_at_risk", "reasons", "model_version"} <= set(scores.columns)
    assert (scores["model_version"].astype(str) == out["version"]).all()
    first = json.loads(scores["reasons"].iloc[0])
    keys = {"text", "feature", "value", "impact", "probability_change"}
    assert first and keys <= set(first[0]) <= keys | {"group"}
    counter = [json.loads(r) for r in scores["counter_reasons"]]
    assert all(len(c) <= 3 and all(r["impact"] < 0 for r in c) for c in counter) and sum(map(len, counter)) > 0
    # One fact, one reason: a group's features (recency, spend, ...) speak once, on one side of the score.
    reasons = [json.loads(r) for r in scores["reasons"]]
    grouped = [
        [r.get("group") for r in (*up, *down) if r.get("group")] for up, down in zip(reasons, counter, strict=True)
    ]
    assert all(len(g) == len(set(g)) for g in grouped) and sum(map(len, grouped)) > len(scores)


@pytest.mark.slow
def test_a_few_dozen_customers_still_train_a_model_that_ranks(tmp_path):
    """60 customers of the bundled data: the shipped leaf size (200 rows) would leave LightGBM no split."""
    raw = pd.read_parquet(ROOT / "data" / "online_retail_ii.parquet")
    some = raw.CustomerID.dropna().drop_duplicates().sample(60, random_state=1)
    raw[raw.CustomerID.isin(some)].to_parquet(tmp_path / "tx.parquet")
    config = load_config(
        ROOT / "configs" / "online_retail.yaml",
        overrides={"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "output_dir": str(tmp_path / "outputs")},
    )
    source = config.tables.transactions.source.model_copy(update={"path": str(tmp_path / "tx.parquet")})
    tables = config.tables.model_copy(
        update={"transactions": config.tables.transactions.model_copy(update={"source": source})}
    )
    config = config.model_copy(update={"tables": tables})
    out = train_model(config, "churn", test_cutoff="2011-09-01")
    assert out["n_test"] < 60
    assert any(w.startswith("few rows: the classifier's min_child_samples 200 -> ") for w in out["warnings"])
    assert out["metrics"]["roc_auc_se"] > 0 and out["metrics"]["roc_auc"] > 0.6  # not a constant model
    assert out["metrics"]["prior_scale"] > 0  # the seasonal correction never inverts the scores
