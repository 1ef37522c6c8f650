"""Batch scoring as a Spark job: ``mlflow.pyfunc.spark_udf`` on the champion gives the in-process scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.config import load_config
from models.catalog import model_config_for
from models.drift import drift_summary
from serving.spark_batch import score_spark, score_spark_frame, spark_drift, spark_features
from tests.spark.conftest import spark_config_file
from training.pyfunc import load_champion, predict_frame
from training.score import score_batch
from training.train import train_model

pytestmark = [pytest.mark.spark, pytest.mark.slow]

AS_OF = "2011-09-10"
CHURN = {"horizon_days": 90, "lookback_days": 365, "test_cutoff": AS_OF, "step_days": 90, "n_train_cutoffs": 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, retail_tables):
    """A small churn champion in a temporary SQLite MLflow store; returns the DuckDB and Spark configs, the
    tmp dir and the Spark config's file."""
    tmp = tmp_path_factory.mktemp("spark_scoring")
    path = spark_config_file(
        tmp, tracking_uri=f"sqlite:///{tmp}/mlflow.db", output_dir=str(tmp / "outputs"), models={"churn": CHURN}
    )
    duck = load_config(path, overrides={"engine": "duckdb"})
    spark = load_config(path)
    result = train_model(duck, "churn", tables=retail_tables["duckdb"], force_promote=True)
    assert result["alias"] == "champion"
    return duck, spark, tmp, path


@pytest.fixture(scope="module")
def snapshot(trained, retail_tables, spark):
    """The churn features at AS_OF computed on Spark once and materialised, so every test reads the same bits."""
    _, config, tmp, _ = trained
    folder = tmp / "features_snapshot"
    spark_features(config, "churn", as_of=AS_OF, tables=retail_tables["spark"]).write.parquet(str(folder))
    return spark.read.parquet(str(folder))


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("customer_id").reset_index(drop=True)


def test_udf_scores_equal_in_process_scores_on_the_same_snapshot(trained, snapshot):
    """One feature snapshot, scored both ways."""
    duck, config, _, _ = trained
    features = snapshot

    remote = _sorted(score_spark_frame(config, "churn", features, as_of=AS_OF, explain=True).toPandas())
    scorer, info = load_champion(duck, "churn")
    k = model_config_for(duck, "churn").top_k_reasons
    local = _sorted(predict_frame(scorer, features.toPandas(), k=k, explain=True, counter_k=k, as_of=AS_OF))

    assert len(remote) == len(local) > 3_000
    assert remote["customer_id"].tolist() == local["customer_id"].tolist()
    for column in local.columns:
        if pd.api.types.is_float_dtype(local[column]):
            np.testing.assert_allclose(remote[column], local[column], rtol=1e-9, atol=1e-12, err_msg=column)
        else:
            assert remote[column].tolist() == local[column].tolist(), column
    assert json.loads(remote["reasons"][0])[0]["text"]
    assert "counter_reasons" in local.columns and json.loads(remote["counter_reasons"][0])[0]["impact"] < 0
    assert (remote["as_of"] == pd.Timestamp(AS_OF)).all()
    assert set(remote["model_version"]) == {info["version"]} and set(remote["model_name"]) == {"crmscore-churn"}


def test_score_spark_writes_the_score_batch_table(trained, retail_tables):
    """End to end against ``score_batch`` on DuckDB: same rows, columns, scores and drift.

    Each engine sums money in its own order, so a net spend can differ in the last bit (0.0 on one
    engine, 5.7e-14 on the other); where such a value sits on a tree split (LightGBM splits at 0) or
    a drift bin edge, the result would differ. Both paths round that noise away
    (``features.pipeline.stable_floats``), so every probability agrees to 1e-9.
    """
    duck, config, tmp, _ = trained
    local_out, spark_out = tmp / "local.parquet", tmp / "spark_scores"
    spark_out.mkdir()
    (spark_out / "stale.parquet").write_bytes(b"an earlier run")
    # What killed runs left: their temporary folders, half written, and one moved aside.
    for leftover in (".spark_scores.tmp-0d5937b78075/_temporary", ".spark_scores.tmp-4d2b1aa36f99.old"):
        (tmp / leftover).mkdir(parents=True)
        (tmp / leftover / "part-0.parquet").write_bytes(b"half")
    local_batch = score_batch(duck, "churn", as_of=AS_OF, out=local_out, tables=retail_tables["duckdb"])
    spark_batch = score_spark(config, "churn", as_of=AS_OF, out_dir=str(spark_out), tables=retail_tables["spark"])

    assert spark_batch.rows == local_batch.rows > 3_000
    assert spark_batch.out == str(spark_out)
    # Drift counted partition by partition on Spark equals the drift of the whole DuckDB table.
    local_drift = {d.feature: d for d in local_batch.drift}
    assert len(spark_batch.drift) == len(local_drift) > 40
    for d in spark_batch.drift:
        assert d.psi == pytest.approx(local_drift[d.feature].psi, rel=1e-6, abs=1e-9), d.feature
        assert d.out_of_range == pytest.approx(local_drift[d.feature].out_of_range, abs=1e-3), d.feature
    assert spark_batch.drift_warning == local_batch.drift_warning
    assert not (spark_out / "stale.parquet").exists() and not list(tmp.glob(".spark_scores*"))
    local, remote = _sorted(pd.read_parquet(local_out)), _sorted(pd.read_parquet(spark_out))
    assert list(remote.columns) == list(local.columns)
    assert remote["customer_id"].tolist() == local["customer_id"].tolist()
    assert remote["as_of"].tolist() == local["as_of"].tolist()
    same = np.isclose(remote["probability"], local["probability"], rtol=1e-9, atol=1e-12)
    assert same.all(), f"{(~same).sum()} of {len(same)} probabilities differ"
    for column in ("tier", "model_name", "model_version"):
        assert (remote[column].astype(str) == local[column].astype(str)).all(), column


def test_spark_drift_names_unseen_categories_as_the_local_drift_does(trained, snapshot, spark):
    """Each partition counts its category values no training row had; the driver's sum names the
    same values, with the same row counts, as the drift of the whole table in one process."""
    duck, _, _, _ = trained
    scorer, _ = load_champion(duck, "churn")
    features = snapshot.toPandas()
    # Planted on the real rows: countries the data does not have, so that there is something to count.
    features["country"] = features["country"].astype(object)
    features.loc[features.index[::40], "country"] = "Atlantis"
    features.loc[features.index[1::97], "country"] = "Narnia"
    remote = {d.feature: d for d in spark_drift(scorer, spark.createDataFrame(features).repartition(3))}
    local = {d.feature: d for d in scorer.drift(scorer.prepare(features), features)}
    assert remote["country"].unseen_values == local["country"].unseen_values
    planted = features["country"].value_counts()
    assert dict(remote["country"].unseen_values) == {"Atlantis": planted["Atlantis"], "Narnia": planted["Narnia"]}
    assert remote["country"].unseen == pytest.approx(local["country"].unseen, abs=0)
    assert drift_summary(list(remote.values())) == drift_summary(list(local.values()))


def test_score_command_on_spark_writes_the_folder_and_warns_about_drift(trained):
    from typer.testing import CliRunner

    from serving.cli import app

    _, _, tmp, path = trained
    out, summary = tmp / "cli_scores", tmp / "cli_scores.json"
    args = ["score", "churn", "--config", str(path), "--as-of", AS_OF, "--out", str(out), "--summary", str(summary)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = len(pd.read_parquet(out))
    assert f"scored {rows:,} churn rows as of {AS_OF} -> {out}" in result.stdout
    # Trained on two cut-offs a quarter apart: at T the customers' tenure runs past any training row.
    assert "warning: " in result.stderr and "features have shifted from the training rows" in result.stderr
    assert "tenure_days" in result.stderr
    steps = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert [line.split("]")[0].split()[0] for line in steps] == ["[1/4", "[2/4", "[3/4", "[4/4"]
    assert steps[0].endswith("the Spark session") and steps[2].endswith(f"scoring and writing {out}")
    # The nightly job's JSON says the same (the folder, its rows, the drift).
    found = json.loads(summary.read_text())
    assert found["out"] == str(out) and found["rows"] == rows and "tenure_days" in found["drift"]["alert"]
    assert found["model_name"] == "crmscore-churn" and found["model_version"] and found["data_until"]


def test_an_output_spark_could_not_write_is_refused_before_any_work(trained, spark):
    """A file at --out or in its path: refused with the reason before the features run, nothing touched."""
    from typer.testing import CliRunner

    from features.files import OutputError
    from serving.cli import app
    from serving.spark_batch import check_out_dir

    _, config, tmp, path = trained
    a_file = tmp / "not_a_folder.parquet"
    a_file.write_text("someone's file")
    with pytest.raises(OutputError, match="is a file; with engine: spark the output is a folder of Parquet files"):
        score_spark(config, "churn", as_of=AS_OF, out_dir=str(a_file))
    result = CliRunner().invoke(
        app, ["score", "churn", "--config", str(path), "--as-of", AS_OF, "--out", f"{a_file}/deeper/scores"]
    )
    assert result.exit_code == 2, result.output
    assert f"error: --out {a_file}/deeper/scores: " in result.stderr and "is a file, not a folder" in result.stderr
    assert a_file.read_text() == "someone's file"
    # A writable path passes and leaves nothing behind (the write creates the folders).
    before = sorted(p.name for p in tmp.iterdir())
    check_out_dir(spark, str(tmp / "new" / "deeper" / "scores"))
    assert sorted(p.name for p in tmp.iterdir()) == before


def test_an_empty_population_on_spark_is_refused_and_writes_no_folder(trained, retail_tables):
    from features.pipeline import EmptyPopulationError

    _, config, tmp, _ = trained
    out = tmp / "empty_scores"
    tables = retail_tables["spark"]
    with pytest.raises(EmptyPopulationError, match="the churn population as of 2013-01-01 00:00 is empty"):
        score_spark(config, "churn", as_of="2013-01-01", out_dir=str(out), tables=tables)
    assert not out.exists() and not [p for p in tmp.iterdir() if p.name.startswith(".empty_scores")]
    batch = score_spark(config, "churn", as_of="2013-01-01", out_dir=str(out), allow_empty=True, tables=tables)
    assert batch.rows == 0 and len(pd.read_parquet(out)) == 0


def test_spark_lead_scores_carry_the_population_anchor(tmp_path, spark):
    """The lead model anchors each population's mean: Spark's two passes give score_batch's shift and scores."""
    path = spark_config_file(
        tmp_path, "bank_leads.yaml", tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", output_dir=str(tmp_path / "out")
    )
    duck, config = load_config(path, overrides={"engine": "duckdb"}), load_config(path)
    assert train_model(duck, "lead", force_promote=True)["alias"] == "champion"
    as_of = "2010-11-01"
    local = score_batch(duck, "lead", as_of=as_of, out=tmp_path / "local.parquet")
    remote = score_spark(config, "lead", as_of=as_of, out_dir=str(tmp_path / "spark_scores"))
    assert remote.rows == local.rows > 50
    assert local.population_shift != 0.0
    assert remote.population_shift == pytest.approx(local.population_shift, abs=1e-9)
    a = pd.read_parquet(local.out).sort_values("lead_id").reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "spark_scores").sort_values("lead_id").reset_index(drop=True)
    assert a["lead_id"].astype(str).tolist() == b["lead_id"].astype(str).tolist()
    np.testing.assert_allclose(b["probability"], a["probability"], rtol=1e-9, atol=1e-12)
    assert (b["grade"].astype(str) == a["grade"].astype(str)).all()


def test_monitor_on_spark_equals_duckdb(trained, retail_tables):
    from training.monitor import latest_closed_cutoff, monitor_champion

    duck, spark, _, _ = trained
    # The label window's bound comes from Spark too: the last invoice, 2011-12-09 12:50.
    assert latest_closed_cutoff(spark, "churn", tables=retail_tables["spark"]) == pd.Timestamp(AS_OF).date()
    local, _ = monitor_champion(duck, "churn", [AS_OF], tables=retail_tables["duckdb"])
    remote, info = monitor_champion(spark, "churn", [AS_OF], tables=retail_tables["spark"])
    assert remote["error"].isna().all() and bool(remote["out_of_sample"].iloc[0])
    pd.testing.assert_frame_equal(remote, local, check_exact=False, rtol=1e-9)
    assert remote["roc_auc"].iloc[0] == pytest.approx(info["metrics"]["roc_auc"], abs=1e-9)


def test_a_file_name_for_the_spark_output_folder_is_refused_at_once(trained):
    """A job moved from DuckDB to Spark kept --out scores.csv and got a folder of Parquet named so, exit 0."""
    from typer.testing import CliRunner

    from serving.cli import app

    _, _, tmp, path = trained
    out = tmp / "scores.csv"
    result = CliRunner().invoke(app, ["score", "churn", "--config", str(path), "--as-of", AS_OF, "--out", str(out)])
    assert result.exit_code == 2 and not out.exists(), result.output
    assert "with engine: spark the output is a folder of Parquet files, not a CSV file" in result.stderr
    bad_date = CliRunner().invoke(app, ["score", "churn", "--config", str(path), "--as-of", "2011-13-01", "--out", "x"])
    assert bad_date.exit_code == 2 and "as_of: '2011-13-01' is not an ISO date" in bad_date.stderr


def test_a_failed_spark_write_leaves_no_folder_it_made(spark, tmp_path):
    """An ops engineer's full disk: the run failed with 749 lines of Java and left the empty folder it had
    made for its output. The folders a write makes are known before it, and removed while empty."""
    from serving.spark_batch import _remove_empty, check_out_dir

    out = tmp_path / "nightly" / "new" / "churn"
    missing = check_out_dir(spark, str(out))
    assert [p.getName() for p in missing] == ["new", "nightly"]
    (out.parent).mkdir(parents=True)
    (tmp_path / "nightly" / "kept.txt").write_text("someone's file")
    _remove_empty(spark, missing)
    assert not (tmp_path / "nightly" / "new").exists() and (tmp_path / "nightly" / "kept.txt").exists()


def test_a_spark_score_stopped_by_sigterm_cancels_its_jobs_and_leaves_the_previous_output(trained):
    """An ops engineer's SIGTERM during the write: the run exited 143 only once the JVM had finished the
    write (42 s), left its half-written ``.NAME.tmp-*`` folder, and printed the cancelled tasks' Java
    stack traces. A call on the main thread's py4j connection waited for the interrupted write's answer;
    the jobs are now cancelled from a thread of its own and the run's temporary folder removed."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    _, _, tmp, path = trained
    out, summary = tmp / "stopped_scores", tmp / "stopped_scores.json"
    out.mkdir()
    previous = pd.DataFrame({"customer_id": ["12346"], "probability": [0.5]})
    previous.to_parquet(out / "part-00000.parquet")  # last night's scores
    crmscore = Path(sys.executable).with_name("crmscore")
    args = ["score", "churn", "--config", str(path), "--as-of", AS_OF, "--out", str(out), "--explain"]
    proc = subprocess.Popen([str(crmscore), *args, "--summary", str(summary)], stderr=subprocess.PIPE, text=True)
    before = ""
    for line in proc.stderr:  # the model's UDF scores with reasons as the folder is written: seconds
        before += line
        if "scoring with reasons and writing" in line:
            break
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    after = proc.stderr.read()
    proc.wait(timeout=300)
    print(f"exit {time.monotonic() - signalled:.1f} s after SIGTERM")  # 4.9 s measured; was 40.7 s
    assert proc.returncode == 128 + signal.SIGTERM, before + after
    assert json.loads(summary.read_text())["error"] == "stopped by a signal"
    assert sorted(p.name for p in out.iterdir()) == ["part-00000.parquet"]
    pd.testing.assert_frame_equal(pd.read_parquet(out), previous)
    assert not [p.name for p in tmp.iterdir() if p.name.startswith(".stopped_scores")]
    assert "Traceback" not in after and "at org.apache.spark" not in after, after[-3000:]


def test_a_run_stopped_between_the_two_renames_gets_its_previous_output_back(spark, tmp_path):
    """Stopped after moving the previous output aside (``.NAME.tmp-*.old``) and before moving its own in:
    the next run's clean-up deleted the aside folder with every temporary one, the only copy of last
    night's scores. It is moved back when the output is missing; the temporaries go."""
    from serving.spark_batch import _remove_temporaries

    out = tmp_path / "churn"
    aside, half = tmp_path / ".churn.tmp-0123456789ab.old", tmp_path / ".churn.tmp-0123456789ab"
    for folder in (aside, half):
        folder.mkdir()
        (folder / "part-00000.parquet").write_text(folder.name)
    assert _remove_temporaries(spark, str(out)) == 1
    assert (out / "part-00000.parquet").read_text() == aside.name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["churn"]
    # With the output in place, an aside folder is a leftover like the others.
    aside.mkdir()
    assert _remove_temporaries(spark, str(out)) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["churn"]
