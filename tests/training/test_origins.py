"""Rolling-origin evaluation (``crmscore backtest``) on the bundled bank leads."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.config import load_config
from serving.cli import app
from tests.conftest import CONFIGS
from training.origins import evaluate_origins, origin_dates


def test_origin_dates_grid_and_errors():
    assert origin_dates("2010-01-01", "2010-03-15") == [dt.date(2010, 1, 1), dt.date(2010, 2, 1), dt.date(2010, 3, 1)]
    assert origin_dates("2010-01-01", "2010-01-31", "10D")[-1] == dt.date(2010, 1, 31)
    with pytest.raises(ValueError, match="--every 'monthly' is not a pandas frequency"):
        origin_dates("2010-01-01", "2010-03-01", "monthly")
    with pytest.raises(ValueError, match="before --from"):
        origin_dates("2010-03-01", "2010-01-01")


@pytest.mark.slow
def test_every_origin_gets_a_row_and_the_anchor_holds_at_each(tmp_path):
    config = load_config(CONFIGS / "bank_leads.yaml")
    # 2008-06-01: the data starts in May 2008, so no training cut-off lies before it.
    table = evaluate_origins(config, "lead", ["2008-06-01", "2010-03-01", "2010-10-01"])
    assert table["test_cutoff"].tolist() == ["2008-06-01", "2010-03-01", "2010-10-01"]
    failed, done = table.iloc[0], table.iloc[1:]
    assert failed["error"] and pd.isna(failed["roc_auc"])
    assert done["error"].isna().all() and (done["n_test"] > 100).all()
    # The anchor sets each origin's mean probability to its latest fold's rate.
    for _, row in done.iterrows():
        assert row["mean_probability"] == pytest.approx(row["calibration_base_rate"], abs=1e-9)
        assert row["best_baseline"] == "logistic" and 0.5 < row["baseline_roc_auc"] < 1
        gain = row["roc_auc"] - row["baseline_roc_auc"]
        assert row["roc_auc_gain_low"] < gain < row["roc_auc_gain_high"] and 0 <= row["roc_auc_gain_p_value"] <= 1
    at_t = done.iloc[0]
    assert at_t["ece"] < at_t["ece_without_anchor"] and at_t["roc_auc"] > at_t["baseline_roc_auc"]


def _backtest(*extra: str):
    lead = ["backtest", "lead", "--config", str(CONFIGS / "bank_leads.yaml"), "--from", "2010-03-01", "--to"]
    return CliRunner().invoke(app, [*lead, "2010-04-01", *extra])


@pytest.mark.slow
def test_backtest_command_prints_the_table_and_writes_it(tmp_path):
    out = tmp_path / "origins.csv"
    result = _backtest("--out", str(out))
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert table["test_cutoff"].tolist() == ["2010-03-01", "2010-04-01"]
    assert "2 of 2 origins evaluated; means: roc_auc" in result.stdout and "ece_without_anchor" in result.stdout
    assert "[2/2] test cut-off 2010-04-01" in result.stderr
    bad = _backtest("--every", "sometimes")
    assert bad.exit_code == 2 and "--every 'sometimes' is not a pandas frequency" in bad.stderr


@pytest.mark.slow
def test_churn_refit_is_aligned_to_the_calibrator_where_the_base_rate_jumps():
    # At 2011-03-14 the calibration fold (Dec 2010, churn 0.69) sits far above the fit folds
    # (0.43-0.51): the refit learns it and, unaligned, the calibrator counted it again (ECE 0.21).
    table = evaluate_origins(load_config(CONFIGS / "online_retail.yaml"), "churn", ["2011-03-14"])
    row = table.iloc[0]
    assert row["error"] is None or pd.isna(row["error"])
    assert row["ece"] < 0.15 and abs(row["mean_probability"] - row["base_rate"]) < 0.12
    assert row["roc_auc"] > 0.75
    # A year before its calibration cut-off (2010-12-14) the data has only just started: no seasonal
    # shift, and the row says so (13 cut-offs are there; the history behind them is not).
    assert row["warning"].startswith("no seasonal prior shift: no training cut-off within 20 days of 2009-12-14")
    assert "the earliest with 180 days of history behind it is 2010-06-17" in row["warning"]
    assert "the data does not reach far enough" in row["warning"]
