"""``crmscore monitor``: the champions of the API fixtures scored at past dates against what happened next."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.config import load_config
from serving.cli import app
from tests.serving.conftest import write_configs
from training.monitor import latest_closed_cutoff, monitor_champion, monitor_dates
from training.pyfunc import NoChampionError


def test_monitor_dates_keep_both_ends_off_the_grid():
    assert monitor_dates("2011-09-10", "2011-11-15") == [
        dt.date(2011, 9, 10),
        dt.date(2011, 10, 1),
        dt.date(2011, 11, 1),
        dt.date(2011, 11, 15),
    ]
    assert monitor_dates("2011-09-10", "2011-09-10") == [dt.date(2011, 9, 10)]
    with pytest.raises(ValueError, match="--from 2011-09-10 is after --to 2011-09-01"):
        monitor_dates("2011-09-10", "2011-09-01")
    with pytest.raises(ValueError, match="not a pandas frequency"):
        monitor_dates("2011-01-01", "2011-09-01", "fortnightly")


@pytest.mark.slow
@pytest.mark.parametrize("task", ["churn", "next_purchase", "lead"])
def test_at_the_test_cutoff_the_batch_path_gives_the_registered_metrics(trained, task):
    retail_config, leads_config, _ = trained
    config = load_config(leads_config if task == "lead" else retail_config)
    cutoff = _test_cutoff(config, task)
    table, info = monitor_champion(config, task, [cutoff])
    row = table.iloc[0]
    assert row["error"] is None and bool(row["out_of_sample"])
    assert str(row["as_of"]) == cutoff == info["test_cutoff"]
    # Features as of T through the nightly path (population, seasonal correction, the lead anchor)
    # score the test fold exactly as the backtest did.
    for metric in ("roc_auc", "ece", "brier", "lift_at_10", "base_rate"):
        assert row[metric] == pytest.approx(info["metrics"][metric], abs=1e-9), metric
    assert row["roc_auc_change"] == pytest.approx(0.0, abs=1e-9)
    assert row["roc_auc_se"] == pytest.approx(info["metrics"]["roc_auc_se"], rel=1e-9)
    if task == "next_purchase":
        assert row["rmse"] == pytest.approx(info["metrics"]["rmse"], rel=1e-9)
        assert row["gini"] == pytest.approx(info["metrics"]["gini"], rel=1e-9)
    else:
        assert "rmse" not in table.columns
    assert (row["population_shift"] != 0) == (task == "lead")
    # The test fold's drift, as logged at training (the lead's test month holds unseen economic indicators).
    assert row["drift_alerts"] == info["metrics"]["drift_features_alert"]
    assert row["max_psi"] == pytest.approx(info["metrics"]["drift_max_psi"], rel=1e-6)


def _test_cutoff(config, task) -> str:
    from training.pyfunc import load_champion

    return load_champion(config, task)[1]["test_cutoff"]


@pytest.mark.slow
def test_a_window_that_has_not_closed_keeps_its_row_with_the_reason(trained):
    retail_config, _, _ = trained
    config = load_config(retail_config)
    assert latest_closed_cutoff(config, "churn") == dt.date(2011, 9, 10)  # last invoice 2011-12-09 12:50, H = 90
    table, _ = monitor_champion(config, "churn", ["2011-06-01", "2011-10-01"])
    early, late = table.iloc[0], table.iloc[1]
    assert early["error"] is None and not bool(early["out_of_sample"])  # before T: overlaps the fitted data
    assert 0.5 < early["roc_auc"] < 1 and early["n"] > 3000
    assert (
        pd.isna(late["roc_auc"]) and "ends at 2011-12-30" in late["error"] and "table 'transactions'" in late["error"]
    )


@pytest.mark.slow
def test_monitor_command_on_the_lead_champion(trained, tmp_path):
    _, leads_config, _ = trained
    out = tmp_path / "monitor.csv"
    result = CliRunner().invoke(app, ["monitor", "lead", "--config", str(leads_config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    # From the test cut-off to the latest lead (outcomes of the bank data are final as exported).
    assert table["as_of"].iloc[0] == _test_cutoff(load_config(leads_config), "lead")
    assert table["as_of"].iloc[-1] == "2010-11-01" and table["error"].isna().all()
    assert table["out_of_sample"].all() and (table["n"] > 50).all()
    assert f"{len(table)} out-of-sample dates; mean ROC AUC {table['roc_auc'].mean():.4f}" in result.stdout
    assert "(champion), test cut-off" in result.stdout and f"wrote {len(table)} rows to {out}" in result.stdout
    # An alert threshold for a scheduled job: exit 3 naming the dates that fell, after writing the table.
    drop = -float(table["roc_auc_change"].min())
    fell = table.loc[table["roc_auc_change"].idxmin(), "as_of"]
    out.unlink()
    alert = CliRunner().invoke(
        app, ["monitor", "lead", "--config", str(leads_config), "--out", str(out), "--max-auc-drop", f"{drop - 0.001}"]
    )
    assert alert.exit_code == 3 and f"at 1 of {len(table)} out-of-sample dates: {fell}" in alert.stderr, alert.output
    assert out.exists()
    calm = CliRunner().invoke(
        app, ["monitor", "lead", "--config", str(leads_config), "--max-auc-drop", f"{drop + 0.001}"]
    )
    assert calm.exit_code == 0, calm.output
    # Any registered version on the same dates: the champion's own number gives the champion's table.
    again = tmp_path / "again.csv"
    by_number = CliRunner().invoke(
        app, ["monitor", "lead", "--config", str(leads_config), "--version", "v1", "--out", str(again)]
    )
    assert by_number.exit_code == 0, by_number.output
    assert "crmscore-lead version 1 (champion), test cut-off" in by_number.stdout
    pd.testing.assert_frame_equal(pd.read_csv(again), table)
    unknown = CliRunner().invoke(app, ["monitor", "lead", "--config", str(leads_config), "--version", "7"])
    assert unknown.exit_code == 2
    assert unknown.stderr.startswith("error: --version: 'crmscore-lead' has no version '7' (registered: 1")


def test_monitor_without_a_champion_names_the_train_command(tmp_path):
    retail_config, _ = write_configs(tmp_path)
    with pytest.raises(NoChampionError, match="no 'champion' model for 'churn'"):
        monitor_champion(load_config(retail_config), "churn", ["2011-09-10"])
    result = CliRunner().invoke(app, ["monitor", "churn", "--config", str(retail_config)])
    assert result.exit_code == 2 and "crmscore train churn" in result.stderr


@pytest.mark.slow
def test_the_gate_scores_a_lead_champion_as_the_nightly_path_does(trained):
    """The promotion gate re-scores the champion on the challenger's test rows as batch scoring and the
    monitor would at that date, its anchor solved on those rows; it used the anchor of the champion's
    own test cut-off, which put the lead champion's Brier score far off (0.366 for 0.227)."""
    from features.pipeline import build_training_set
    from features.sources import load_tables
    from models.catalog import model_config_for
    from training import metrics as m
    from training.pyfunc import load_champion
    from training.tracking import batch_probability

    _, leads_config, _ = trained
    config = load_config(leads_config)
    as_of = "2010-06-01"
    table, _ = monitor_champion(config, "lead", [as_of])
    assert table["error"].iloc[0] is None
    scorer, _ = load_champion(config, "lead")
    test = build_training_set(
        load_tables(config), "lead", model_config=model_config_for(config, "lead"), test_cutoff=as_of
    ).test
    X, y = scorer.prepare(test), test["label"].to_numpy(dtype=float)
    p = batch_probability(scorer, X, pd.Timestamp(as_of))
    assert m.brier(y, p) == pytest.approx(table["brier"].iloc[0], abs=1e-9)
    stale = scorer.probability(X, as_of=pd.Timestamp(as_of), population_shift=scorer.default_population_shift)
    assert abs(m.brier(y, stale) - m.brier(y, p)) > 1e-3  # 0.0018 here; 0.14 for a champion of 2009-12-01 at 2010-03-01
