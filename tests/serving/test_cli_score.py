"""``crmscore score`` with the champions of the API fixtures: the file, and the drift of the batch."""

from __future__ import annotations

import json
import stat

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.config import load_config
from features.files import new_file_mode
from serving.at_risk import at_risk_list
from serving.cli import app
from tests.serving.conftest import list_since
from training.score import score_batch


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
    assert stat.S_IMODE(out.stat().st_mode) == new_file_mode()
    # Trained on 2009 leads; the November 2010 ones come with economic indicators never seen.
    assert "warning: " in result.stderr and "features have shifted from the training rows" in result.stderr
    assert "outside the training range" in result.stderr
    # The anchor is the training run's latest fold's rate, which the sentence says (it said "the latest known").
    assert "probabilities anchored to the base rate of the model's latest training fold (log-odds shift" in (
        " ".join(result.stdout.split())
    )
    assert "after the last row" not in result.stderr  # the latest leads are of that day


@pytest.mark.slow
def test_scoring_after_the_data_ends_warns_of_a_stale_export(trained, tmp_path):
    retail_config, leads_config, _ = trained
    out = tmp_path / "l.csv"
    args = ["score", "lead", "--config", str(leads_config), "--as-of", "2011-01-01", "--out", str(out)]
    lead = CliRunner().invoke(app, [*args, "--allow-empty"])
    assert lead.exit_code == 0, lead.output
    assert "scored 0 lead rows" in lead.stdout  # no lead opened in December 2010: the export stops in November
    assert "the scoring date 2011-01-01 00:00 is 61 days after the last row of table 'leads' (2010-11-01 00:00)" in (
        lead.stderr
    )
    assert len(pd.read_csv(out)) == 0
    args = ["score", "churn", "--config", str(retail_config), "--as-of", "2012-03-01", "--out", str(tmp_path / "c.csv")]
    churn = CliRunner().invoke(app, [*args, "--summary", str(tmp_path / "c.json")])
    assert churn.exit_code == 0, churn.output
    assert "82 days after the last row of table 'transactions' (2011-12-09 12:50)" in churn.stderr
    # Numbered steps with the time since the start, as train prints them (stderr; stdout is the result),
    # the first once the champion has loaded.
    steps = [line for line in churn.stderr.splitlines() if line.startswith("[")]
    assert [line.split("]")[0].split()[0] for line in steps] == ["[1/3", "[2/3", "[3/3"]
    assert steps[0].endswith("reading the tables and the population's features")
    assert "scoring " in steps[1] and steps[2].endswith(f"writing {tmp_path / 'c.csv'}")
    scored = pd.read_csv(tmp_path / "c.csv")
    assert len(scored) > 1000  # still written: the warning says why it may be wrong
    # --summary: the same findings for the job that runs it, without parsing what it printed.
    found = json.loads((tmp_path / "c.json").read_text())
    assert found["rows"] == len(scored) and found["stale_warning"] in churn.stderr
    # What scored, and where the data ends: a job compares that with the night's date, whatever the wording.
    assert (found["model_name"], found["model_version"]) == ("crmscore-churn", str(scored["model_version"].iloc[0]))
    assert found["data_until"] == "2011-12-09 12:50:00"
    assert (
        found["drift"]["max_psi"] >= 0.25 and found["drift"]["alert"] and found["warnings"][0] == found["stale_warning"]
    )
    assert found["status"] == "ok"
    refused = CliRunner().invoke(app, [*args, "--summary", str(tmp_path / "c.txt")])
    assert refused.exit_code == 2 and "--summary" in refused.stderr
    # A run that fails replaces the summary with its failure, which a job would have read as this run's
    # findings (the scores file stays the earlier run's, untouched).
    before = (tmp_path / "c.csv").read_bytes()
    empty = [*args[:5], "2014-01-01", *args[6:]]
    failed = CliRunner().invoke(app, [*empty, "--summary", str(tmp_path / "c.json")])
    assert failed.exit_code == 2
    found = json.loads((tmp_path / "c.json").read_text())
    assert (found["status"], found["exit_code"], found["as_of"]) == ("failed", 2, "2014-01-01")
    assert found["error"] and found["error"] in failed.stderr and "rows" not in found
    assert (tmp_path / "c.csv").read_bytes() == before
    at_risk = CliRunner().invoke(
        app,
        ["at-risk", "--config", str(retail_config), "--as-of", "2012-03-01", "--out", str(tmp_path / "a.csv")],
    )
    assert at_risk.exit_code == 0, at_risk.output
    assert "warning: the scoring date 2012-03-01 00:00 is 82 days after the last row" in at_risk.stderr
    assert len(pd.read_csv(tmp_path / "a.csv")) == 100
    # Everyone's silence is 82 days longer than the data shows: the list warns of that drift as
    # the batch does, measured on the same population.
    batch = score_batch(load_config(retail_config), "churn", as_of="2012-03-01", out=tmp_path / "d.csv")
    listed = at_risk_list(load_config(retail_config), top=5, as_of="2012-03-01", out=tmp_path / "e.csv")
    assert listed.drift == batch.drift and len(listed.rows) == 5
    assert any(d.feature == "recency_days" and d.level == "alert" for d in listed.drift)
    assert f"warning: {listed.drift_warning}" in at_risk.stderr.replace("\n", " ")
    assert listed.warnings == batch.warnings
    today = CliRunner().invoke(app, ["at-risk", "--config", str(retail_config), "--out", str(tmp_path / "b.csv")])
    # By default the data's last day: not stale (the population's drift may still be reported).
    assert today.exit_code == 0 and "after the last row" not in today.stderr, today.output
    assert "after the first row" not in today.stderr  # two years of data behind it
    # Half a year into the data, every history is cut short: said, and the list still written.
    early = CliRunner().invoke(
        app,
        ["at-risk", "--config", str(retail_config), "--as-of", "2010-06-01", "--out", str(tmp_path / "f.csv")],
    )
    assert early.exit_code == 0, early.output
    assert (
        "warning: the scoring date 2010-06-01 00:00 is 181 days after the first row of table 'transactions' "
        "(2009-12-01 07:45), less than the 365 days the churn features look back"
    ) in early.stderr.replace("\n", " ")
    assert len(pd.read_csv(tmp_path / "f.csv")) == 100
    # explain says where its date sits in the data as score does, on stderr and in the JSON.
    customer = str(listed.rows[0]["customer_id"])
    for day, said in (("2010-06-01", "181 days after the first row"), ("2012-03-01", "82 days after the last row")):
        args = ["explain", "churn", "--config", str(retail_config), "--as-of", day, "--id", customer]
        text, body = CliRunner().invoke(app, args), CliRunner().invoke(app, [*args, "--json"])
        assert f"warning: the scoring date {day} 00:00 is {said}" in text.stderr
        assert [w for w in json.loads(body.stdout)["warnings"] if said in w]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "as_of", "rule", "span"),
    [
        (
            ["score", "lead"],
            "2011-01-01",
            "leads created in the 30 days up to the cut-off and not converted by it",
            "table 'leads': its rows run from 2008-05-01 00:00 to 2010-11-01 00:00",
        ),
        (
            ["score", "churn"],
            "2009-06-01",
            "customers with a purchase in the 365 days up to the cut-off",
            "table 'transactions': its rows run from 2009-12-01 07:45 to 2011-12-09 12:50",
        ),
        (
            ["at-risk"],
            "2013-01-01",
            "customers with a purchase in the 365 days up to the cut-off",
            "table 'transactions': its rows run from 2009-12-01 07:45 to 2011-12-09 12:50",
        ),
    ],
)
def test_an_empty_population_is_an_error_and_writes_nothing(trained, tmp_path, command, as_of, rule, span):
    """A nightly job given a date outside the data must fail loudly, not write an empty file over yesterday's."""
    retail_config, leads_config, _ = trained
    config = leads_config if command[-1] == "lead" else retail_config
    out = tmp_path / "scores.csv"
    out.write_text("yesterday's scores")
    result = CliRunner().invoke(app, [*command, "--config", str(config), "--as-of", as_of, "--out", str(out)])
    assert result.exit_code == 2, result.output
    task = "lead" if command[-1] == "lead" else "churn"
    assert f"error: the {task} population as of {as_of} 00:00 is empty (rule: {rule}); {span}." in result.stderr
    assert "Nothing was written; pass --allow-empty" in result.stderr
    assert out.read_text() == "yesterday's scores" and [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


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


@pytest.mark.slow
def test_the_lead_pyfunc_is_anchored_without_being_told(trained, tmp_path):
    """``mlflow.pyfunc`` callers get anchored lead probabilities by default (the test cut-off's anchor),
    the batch's own anchor with ``anchor="batch"``, and the model's level only with ``anchor="none"``."""
    import mlflow

    from features.config import load_config
    from features.pipeline import population_features
    from features.sources import load_tables
    from training.pyfunc import load_champion, model_input
    from training.score import score_batch
    from training.train import model_config_for

    _, leads_config, _ = trained
    config = load_config(leads_config)
    scorer, info = load_champion(config, "lead")
    mlflow.set_tracking_uri(config.tracking_uri)
    model = mlflow.pyfunc.load_model("models:/crmscore-lead@champion")
    as_of = "2010-11-01"
    features = population_features(
        load_tables(config), "lead", as_of=as_of, model_config=model_config_for(config, "lead")
    )
    X = scorer.prepare(features)
    # The feature table has category and int64 columns, which MLflow's schema check refuses as such.
    with pytest.raises(Exception, match="Incompatible input types"):
        model.predict(features)
    inputs = model_input(features, model)
    assert list(inputs.columns) == [i.name for i in model.metadata.get_input_schema().inputs]
    with pytest.raises(ValueError, match="model input column 'age' is missing from the feature table"):
        model_input(features.drop(columns="age"), model)

    def predict(**params):
        return model.predict(inputs, params={"as_of": as_of, "explain": False, **params})["probability"].to_numpy()

    default, batch, none = predict(), predict(anchor="batch"), predict(anchor="none")
    assert scorer.default_population_shift == pytest.approx(info["metrics"]["population_shift_logit"])
    assert scorer.default_population_shift != 0.0
    np.testing.assert_allclose(
        default, scorer.probability(X, as_of=as_of, population_shift=scorer.default_population_shift)
    )
    np.testing.assert_allclose(none, scorer.probability(X, as_of=as_of))
    # A single row gets the same default score as in the frame: the anchor does not come from the rows.
    assert predict_one(model, inputs.iloc[[7]], as_of) == pytest.approx(default[7], abs=1e-12)
    written = pd.read_parquet(score_batch(config, "lead", as_of=as_of, out=tmp_path / "lead.parquet").out)
    np.testing.assert_allclose(batch, written["probability"].to_numpy(), atol=1e-12)
    assert batch.mean() == pytest.approx(scorer.calibrator.anchor_rate, abs=1e-9)
    assert abs(default.mean() - none.mean()) > 0.1
    with pytest.raises(ValueError, match="param 'anchor' must be one of model, batch, none; got 'rows'"):
        predict(anchor="rows")
    # The report names the features that count in the score but are never a reason.
    from training.train import report_path

    report = report_path(config, "lead").read_text()
    assert "context features" in report and "days_since_created" in report.split("context features")[1][:400]
    # The latest run's report is also the registered version's own, which a later run does not overwrite.
    assert report in [p.read_text() for p in report_path(config, "lead").parent.glob("lead-v*.html")]


def predict_one(model, row, as_of):
    return float(model.predict(row, params={"as_of": as_of, "explain": False})["probability"].iloc[0])


@pytest.mark.slow
def test_at_risk_command_filters_like_the_api(trained, tmp_path):
    retail_config, _, _ = trained
    out = tmp_path / "at_risk.csv"
    args = ["at-risk", "--config", str(retail_config), "--out", str(out), "--top", "5"]
    result = CliRunner().invoke(app, [*args, "--tier", "high", "--where", "country=France", "--min-value", "1"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out)
    assert 0 < len(rows) <= 5 and (rows["tier"] == "high").all() and (rows["country"] == "France").all()
    assert (rows["value_at_risk"] >= 1).all() and rows["value_at_risk"].is_monotonic_decreasing
    assert f"wrote the top {len(rows):,} of " in result.stdout and "customers by value at risk" in result.stdout
    assert stat.S_IMODE(out.stat().st_mode) == new_file_mode()  # readable by the team it is for, not 0600
    # One by default; a row whose every counter-reason moves it by less than a point says so.
    fallback = rows["counter_reason_1"] == "No reason lowers churn risk by 1 point or more"
    assert (rows["counter_reason_1"].str.endswith("(lowers churn risk)") | fallback).all()
    # The file says when and by which model it was scored (the data's last row: the default date).
    assert list(rows.columns[-2:]) == ["as_of", "model"]
    assert set(rows["as_of"]) == {"2011-12-09 12:50:00"} and set(rows["model"]) == {"crmscore-churn v1"}
    two = CliRunner().invoke(app, [*args, "--counter-reasons", "2"])
    assert two.exit_code == 0, two.output
    assert {"reason_3", "counter_reason_2"} <= set(pd.read_csv(out).columns)
    none = CliRunner().invoke(app, [*args, "--counter-reasons", "0", "--tier", "high", "--where", "country=France"])
    assert none.exit_code == 0 and "counter_reason_1" not in pd.read_csv(out).columns
    assert "where.country" not in none.stderr
    typo = CliRunner().invoke(app, [*args, "--where", "country=Netherland", "--out", str(tmp_path / "typo.csv")])
    assert typo.exit_code == 0 and len(pd.read_csv(tmp_path / "typo.csv")) == 0  # still written, and said why
    assert (
        "warning: where.country: no customer in the population has country 'Netherland' (closest: 'Netherlands'"
        in typo.stderr
    )
    for extra, message in (
        (["--tier", "urgent"], "unknown tier 'urgent'"),
        # The attributes first, not buried among the 55 features.
        (
            ["--where", "planet=Mars"],
            "where.planet: unknown customer attribute; filterable: country, customer_id, tier;",
        ),
        (["--where", "France"], "expected ATTRIBUTE=VALUE"),
    ):
        failed = CliRunner().invoke(app, [*args, *extra])
        assert failed.exit_code == 2 and message in failed.stderr, failed.output
    assert len(pd.read_csv(out)) == len(rows)  # a failed run left the earlier file as it was


@pytest.mark.slow
def test_at_risk_since_gives_each_row_the_same_models_score_then(trained, tmp_path):
    """--since: each listed customer's probability and tier at the earlier date are those of the
    at-risk list made at that date (the same champion, the same population scoring); a customer
    outside that date's population has none, and the summary counts what the file shows."""
    args = ["at-risk", "--config", str(trained[0])]
    result, listed, known = list_since(args, tmp_path, top=300, since="2011-11-09")
    assert list(listed.columns[5:7]) == ["probability_then", "tier_then"]
    assert 0 < len(known) < len(listed)  # some customers were not in the population a month before
    rank = {"high": 0, "medium": 1, "low": 2}
    up = sum(rank[a] < rank[b] for a, b in zip(known["tier"], known["tier_then"], strict=True))
    down = sum(rank[a] > rank[b] for a, b in zip(known["tier"], known["tier_then"], strict=True))
    new = len(listed) - len(known)
    assert (
        f"since 2011-11-09: {up:,} of the 300 listed moved up a tier, {down:,} down, {new:,} were not in the "
        "population then" in result.stdout
    )
    later = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "x.csv"), "--since", "2011-12-10"])
    assert later.exit_code == 2 and "--since 2011-12-10 must be before the list's date" in later.stderr
    words = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "x.csv"), "--since", "last-week"])
    assert words.exit_code == 2 and "--since 'last-week' is not an ISO date" in words.stderr


@pytest.mark.slow
def test_explain_since_says_what_moved_a_customers_score(trained):
    """--since: the score then is explain's at that date; the changes of the reasons are signed and
    ordered, and with the date's base and the rest they account for the raw log-odds' change; a
    customer new since then says so, and leads refuse it."""
    retail_config, leads_config, _ = trained
    args = ["explain", "churn", "--config", str(retail_config), "--id", "12753", "--id", "16000"]
    result = CliRunner().invoke(app, [*args, "--since", "2011-11-09", "--json"])
    assert result.exit_code == 0, result.output
    then = CliRunner().invoke(app, [*args[:4], "--id", "12753", "--as-of", "2011-11-09", "--json"])
    assert then.exit_code == 0, then.output
    moved, new = json.loads(result.stdout)["items"]
    earlier = json.loads(then.stdout)["items"][0]
    since = moved["since"]
    assert since["probability"] == pytest.approx(earlier["probability"], abs=1e-12)
    assert since["tier"] == earlier["tier"] and since["raw_log_odds"] == pytest.approx(
        earlier["raw_log_odds"], abs=1e-9
    )
    account = since["base_change"] + since["shown_change"] + since["other_change"] + since["unchanged_change"]
    assert account == pytest.approx(moved["raw_log_odds"] - since["raw_log_odds"], abs=1e-9)
    # A feature whose value stayed (the country) moves its SHAP value only through the others: it
    # is accounted for, not told as what moved the score.
    told = {r["feature"] for r in (*since["raised"], *since["lowered"])}
    assert "country" not in told and since["unchanged_change"] != 0
    # Today's raw score through the calibration then splits the probability's change in two: one
    # calibration is monotone, so the first part has the sign of the raw log-odds' change.
    mixed = since["probability_at_then_calibration"]
    assert 0 < mixed < 1 and (mixed - since["probability"]) * account >= 0
    up, down = [r["impact"] for r in since["raised"]], [r["impact"] for r in since["lowered"]]
    assert up and down and all(i > 0 for i in up) and all(i < 0 for i in down)
    assert up == sorted(up, reverse=True) and down == sorted(down)
    assert new["since"]["error"] == "not in the churn population at 2011-11-09 00:00:00"
    text = CliRunner().invoke(app, [*args, "--since", "2011-11-09"])
    assert "  since 2011-11-09 00:00:00: " in text.stdout and "    raised it:" in text.stdout
    change = moved["probability"] - since["probability"]
    assert (
        f"    of the probability's {change:+.3f}: {mixed - since['probability']:+.3f} from the raw score" in text.stdout
    )
    lead = CliRunner().invoke(
        app, ["explain", "lead", "--config", str(leads_config), "--id", "1", "--since", "2010-10-01"]
    )
    assert lead.exit_code == 2 and "--since compares a customer over time" in lead.stderr


@pytest.mark.slow
@pytest.mark.parametrize("task", ["churn", "lead"])
def test_explain_takes_one_score_apart_as_the_batch_scores_it(trained, tmp_path, task):

    retail_config, leads_config, _ = trained
    config, as_of = (retail_config, "2011-12-09 12:50:00") if task == "churn" else (leads_config, "2010-11-01")
    out = tmp_path / "scores.parquet"
    scored = CliRunner().invoke(
        app, ["score", task, "--config", str(config), "--as-of", as_of, "--out", str(out), "--explain"]
    )
    assert scored.exit_code == 0, scored.output
    batch = pd.read_parquet(out)
    entity = batch.columns[0]
    picked = batch[entity].astype(str).iloc[[0, len(batch) // 2]].tolist()
    args = ["explain", task, "--config", str(config), "--as-of", as_of, *(f"--id={i}" for i in picked)]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["warnings"] == [] and "warning" not in result.stderr  # the data's last day, years into it
    # The reason groups the model carries: the features each group's reason sums.
    if task == "churn":
        assert {"days_since_last", "recency_over_gap", "decayed_purchase_days_90d"} <= set(body["groups"]["recency"])
    else:
        assert body["groups"] == {"previous_campaign": ["pdays", "previous", "poutcome"]}
    for item in body["items"]:
        row = batch[batch[entity].astype(str) == item["id"]].iloc[0]
        # The same score, reasons and counter-reasons as the batch (the lead anchor is the whole date's).
        assert item["probability"] == pytest.approx(row["probability"], abs=1e-12)
        # Two runs of the feature SQL agree to 1e-9, not to the last digit (DuckDB sums in parallel).
        for key in ("reasons", "counter_reasons"):
            ours, theirs = item[key], json.loads(row[key])
            assert [{**r, "value": None} for r in ours] == [{**r, "value": None} for r in theirs]
            for a, b in zip(ours, theirs, strict=True):
                numbers = all(isinstance(r["value"], float) for r in (a, b))
                assert a["value"] == (pytest.approx(b["value"], rel=1e-9) if numbers else b["value"])
        # The log-odds account adds up: base + shown + the other features = the raw score.
        total = item["base_log_odds"] + item["shown_impact"] + item["other_impact"]
        assert total == pytest.approx(item["raw_log_odds"], abs=1e-9)
        assert item["shown_impact"] == pytest.approx(
            sum(r["impact"] for r in (*item["reasons"], *item["counter_reasons"])), abs=1e-9
        )
    text = CliRunner().invoke(app, [*args, "--id", "nobody"])
    assert text.exit_code == 1  # one id outside the population; the others are still explained
    shown = [r for item in body["items"] for r in (*item["reasons"], *item["counter_reasons"]) if r.get("group")]
    for r in shown:  # a group's reason says which group it speaks for, and how many features that sums
        assert f"  [{r['group']}: {len(body['groups'][r['group']])} features]" in text.stdout
    assert f"{picked[0]}: P(" in text.stdout and "log-odds: base" in text.stdout
    assert f"nobody: not in the {task} population at" in text.stdout
    table, entity = ("transactions", "customer_id") if task == "churn" else ("leads", "lead_id")
    assert f"; no row of {entity} 'nobody' in table '{table}'" in text.stdout  # a mistyped id, not a lapsed one
    padded = CliRunner().invoke(app, [*args, "--id", f" {picked[0]} "])  # as pasted from a spreadsheet
    assert f" {picked[0]} : not in the {task} population at" in padded.stdout
    assert f"(did you mean '{picked[0]}'?)" in padded.stdout
    # One of each from the bundled data: a customer who bought once, on the data's first day; a 2008 lead.
    lapsed = "12636" if task == "churn" else "L00003"
    why = CliRunner().invoke(app, ["explain", task, "--config", str(config), "--as-of", as_of, "--id", lapsed])
    assert why.exit_code == 1
    assert (
        "; its latest purchase, 2009-12-01 09:55, is 738 days before as_of"
        if task == "churn"
        else "; its created_at, 2008-05-01 00:00, is 914 days before as_of"
    ) in why.stdout


@pytest.mark.slow
def test_a_category_value_no_training_row_had_is_named_by_score_and_explain(trained, tmp_path):
    """The bundled leads with one lead's job misspelt ("admin" for "admin.", planted): the batch
    warns with the value and its row count, and `explain` of that lead says it was scored as missing."""

    import yaml

    _, leads_config, _ = trained
    data = yaml.safe_load(leads_config.read_text())
    leads = pd.read_parquet(data["tables"]["leads"]["source"]["path"])
    day = leads.created_at.max()
    key = str(leads[leads.created_at == day].lead_id.iloc[0])
    leads.loc[leads.lead_id.astype(str) == key, "job"] = "admin"
    leads.to_parquet(tmp_path / "leads.parquet", index=False)
    data["tables"]["leads"]["source"]["path"] = str(tmp_path / "leads.parquet")
    config = tmp_path / "typo.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    as_of = str(day.date())

    scored = CliRunner().invoke(
        app, ["score", "lead", "--config", str(config), "--as-of", as_of, "--out", str(tmp_path / "s.csv")]
    )
    assert scored.exit_code == 0, scored.output
    assert "category values no training row had, scored as missing: job 'admin' (1 row); check their spelling" in (
        scored.stderr.replace("\n", " ")
    )
    explained = CliRunner().invoke(app, ["explain", "lead", "--config", str(config), "--as-of", as_of, "--id", key])
    assert explained.exit_code == 0, explained.output
    assert "  warning: job 'admin' is a value no training row of the lead model had, so it was scored as missing" in (
        explained.stdout
    )
    body = json.loads(
        CliRunner()
        .invoke(app, ["explain", "lead", "--config", str(config), "--as-of", as_of, f"--id={key}", "--json"])
        .stdout
    )
    assert body["items"][0]["warnings"][0].startswith("job 'admin' is a value no training row")
    # Unplanted: two of the three leads with default 'yes' in the bundled data were created on 2008-08-01,
    # long before the model's training cut-offs (2009-2010), whose rows only hold 'no' and 'unknown'.
    real = CliRunner().invoke(
        app, ["score", "lead", "--config", str(leads_config), "--as-of", "2008-08-01", "--out", str(tmp_path / "r.csv")]
    )
    assert real.exit_code == 0, real.output
    assert "scored as missing: default 'yes' (2 rows);" in real.stderr.replace("\n", " ")
    # Its reasons name the value too, where default moves the score (the largest pull down, here).
    body = json.loads(
        CliRunner()
        .invoke(
            app, ["explain", "lead", "--config", str(leads_config), "--as-of", "2008-08-02", "--id=L21581", "--json"]
        )
        .stdout
    )
    (item,) = body["items"]
    (default,) = [r for r in (*item["reasons"], *item["counter_reasons"]) if r["feature"] == "default"]
    assert default["value"] == "yes"
    assert default["text"].startswith("Default 'yes': new to the model, scored as missing (")


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [["score", "churn", "--as-of", "2011-12-01", "--out", "{tmp}/s.csv"], ["at-risk", "--out", "{tmp}/l.csv"]],
)
def test_a_registry_without_its_model_files_is_an_error_naming_the_path(trained, tmp_path, command):
    retail_config, _, _ = trained
    artifacts = retail_config.parent / "mlruns"  # beside the registry's SQLite file
    artifacts.rename(tmp_path / "away")
    try:
        args = [a.replace("{tmp}", str(tmp_path)) for a in command]
        result = CliRunner().invoke(app, [*args, "--config", str(retail_config)])
    finally:
        (tmp_path / "away").rename(artifacts)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: 'crmscore-churn' version ") and str(artifacts) in result.stderr
    assert "Traceback" not in result.output and not list(tmp_path.glob("*.csv"))


@pytest.mark.slow
def test_a_config_edited_since_training_scores_with_the_models_settings_and_says_so(trained, tmp_path):
    """A horizon and look-back edited ahead of a retrain: score, at-risk, explain and monitor keep the
    champion's own (its population, features and question) and warn; the scores are the config's
    original ones to the last digit."""
    import yaml

    retail_config, _, _ = trained
    data = yaml.safe_load(retail_config.read_text())
    data["models"]["churn"].update(horizon_days=30, lookback_days=200)
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(data, sort_keys=False))
    as_of = "2011-11-01"
    runs = {}
    for name, path in (("original", retail_config), ("edited", edited)):
        out = tmp_path / f"{name}.csv"
        args = ["score", "churn", "--config", str(path), "--as-of", as_of, "--out", str(out)]
        runs[name] = CliRunner().invoke(app, [*args, "--summary", str(tmp_path / f"{name}.json")])
        assert runs[name].exit_code == 0, runs[name].output
    warning = (
        "sets models.churn.horizon_days 30, models.churn.lookback_days 200, but crmscore-churn v1 was trained with "
        "horizon_days 90, lookback_days 365: scored with the model's settings"
    )
    assert warning in runs["edited"].stderr and "models.churn" not in runs["original"].stderr
    original, edited_scores = pd.read_csv(tmp_path / "original.csv"), pd.read_csv(tmp_path / "edited.csv")
    # The same population (a 200-day look-back would have dropped customers) and the same probabilities.
    assert list(edited_scores["customer_id"]) == list(original["customer_id"])
    assert np.array_equal(edited_scores["probability"], original["probability"])
    summary = json.loads((tmp_path / "edited.json").read_text())
    assert warning in summary["settings_warning"] and summary["warnings"][0] == summary["settings_warning"]
    assert json.loads((tmp_path / "original.json").read_text())["settings_warning"] is None
    listed = CliRunner().invoke(app, ["at-risk", "--config", str(edited), "--out", str(tmp_path / "a.csv")])
    assert listed.exit_code == 0 and warning in listed.stderr, listed.output
    customer = str(original["customer_id"].iloc[0])
    explained = CliRunner().invoke(app, ["explain", "churn", "--config", str(edited), "--id", customer])
    assert explained.exit_code == 0 and warning in explained.stderr, explained.output
    assert "P(churn in 90 days)" in explained.stdout  # the model's question, not the config's 30 days
    # monitor measures the model against the outcomes of its own horizon: the same figures as with the original.
    monitored = {}
    for name, path in (("original", retail_config), ("edited", edited)):
        result = CliRunner().invoke(
            app, ["monitor", "churn", "--config", str(path), "--from", "2011-06-01", "--to", "2011-06-01"]
        )
        assert result.exit_code == 0, result.output
        monitored[name] = result
    assert warning in monitored["edited"].stderr
    assert monitored["edited"].stdout == monitored["original"].stdout


@pytest.mark.slow
def test_score_and_explain_take_a_registered_version_instead_of_the_champion(trained, tmp_path):
    """An auditor scores a past version again without moving champion (which production reloads)."""
    retail_config, _, _ = trained
    args = ["score", "churn", "--config", str(retail_config), "--as-of", "2011-11-01"]
    champion = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "c.csv")])
    chosen = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "v.csv"), "--version", "1"])
    assert champion.exit_code == 0 and chosen.exit_code == 0, chosen.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "v.csv"), pd.read_csv(tmp_path / "c.csv"))
    unknown = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "u.csv"), "--version", "7"])
    assert unknown.exit_code == 2 and "--version: 'crmscore-churn' has no version '7' (registered: 1)" in unknown.stderr
    assert not (tmp_path / "u.csv").exists()
    customer = str(pd.read_csv(tmp_path / "c.csv")["customer_id"].iloc[0])
    explained = CliRunner().invoke(
        app, ["explain", "churn", "--config", str(retail_config), "--id", customer, "--version", "1", "--json"]
    )
    assert explained.exit_code == 0 and json.loads(explained.stdout)["model_version"] == "1", explained.output
