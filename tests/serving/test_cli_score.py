"""``crmscore score`` with the champions of the API fixtures: the file, and the drift of the batch."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.cli import app


@pytest.mark.slow
def test_score_lead_warns_about_the_features_that_left_the_training_range(trained, tmp_path):
    _, leads_config, _ = trained
    out = tmp_path / "lead.csv"
    result = CliRunner().invoke(
        app, ["score", "lead", "--config", str(leads_config), "--as-of", "2010-11-01", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out)
    assert f"scored {len(scores):,} lead rows as of 2010-11-01" in result.stdout
    # Trained on 2009 leads; the November 2010 ones come with economic indicators never seen.
    assert "warning: " in result.stderr and "features have shifted from the training rows" in result.stderr
    assert "outside the training range" in result.stderr
    assert "probabilities anchored to the latest known base rate (log-odds shift" in result.stdout


@pytest.mark.slow
def test_a_training_cutoff_has_nothing_outside_the_training_range(trained, tmp_path):
    from features.config import load_config
    from training.score import score_batch

    _, leads_config, _ = trained
    batch = score_batch(load_config(leads_config), "lead", as_of="2009-05-05", out=tmp_path / "lead.parquet")
    assert batch.rows == len(pd.read_parquet(batch.out)) > 1000
    assert all(d.out_of_range == 0.0 for d in batch.drift)
    # The economic indicators hold one value per month, so one month's leads differ from the
    # twelve-month training mix (a high PSI) without leaving the values the trees saw.
    by_feature = {d.feature: d for d in batch.drift}
    assert by_feature["euribor3m"].psi > 0.25 and by_feature["age"].level == "stable"


@pytest.mark.slow
def test_lead_batch_is_anchored_to_the_latest_known_rate(trained, tmp_path):
    from features.config import load_config
    from training.pyfunc import load_champion
    from training.score import score_batch

    _, leads_config, _ = trained
    config = load_config(leads_config)
    scorer, info = load_champion(config, "lead")
    metrics = info["metrics"]
    assert scorer.calibrator.anchor_rate == pytest.approx(metrics["calibration_base_rate"])
    # On the bundled leads the anchor beats the model's own level at the test cut-off.
    assert metrics["ece"] < metrics["ece_without_anchor"]
    batch = score_batch(config, "lead", as_of="2010-11-01", out=tmp_path / "lead.parquet")
    scores = pd.read_parquet(batch.out)
    assert batch.population_shift != 0.0
    assert scores["probability"].mean() == pytest.approx(scorer.calibrator.anchor_rate, abs=1e-9)
