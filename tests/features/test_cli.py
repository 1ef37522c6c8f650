"""``crmscore validate`` on the bundled configs and on a copy of the data that breaks the contract."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from features.config import load_config
from features.pipeline import EmptyPopulationError, population_features, write_snapshots
from features.sources import load_tables
from serving.cli import app
from tests.conftest import CONFIGS, DATA

runner = CliRunner()


@pytest.mark.slow
def test_validate_online_retail_reports_drops_and_exits_zero():
    result = runner.invoke(app, ["validate", "--config", str(CONFIGS / "online_retail.yaml")])
    assert result.exit_code == 0, result.output
    assert "rows read     1,044,847" in result.output
    assert "dropped: no customer_id               235,287 (22.5%)" in result.output
    assert "refund/return lines (amount < 0) 18,351" in result.output
    assert "contract: OK" in result.output


def _validate_first_rows(tmp_path, drop: tuple[str, ...] = (), test_cutoff: str | None = None):
    """validate on the bundled config over the first 5,000 transactions (December 2009), less ``drop``,
    the models' test cut-off ``test_cutoff`` when given."""
    frame = pd.read_parquet(DATA / "online_retail_ii.parquet").head(5_000).drop(columns=list(drop))
    frame.to_parquet(tmp_path / "retail.parquet")
    config = yaml.safe_load((CONFIGS / "online_retail.yaml").read_text())
    config["tables"]["transactions"]["source"]["path"] = str(tmp_path / "retail.parquet")
    for section in config.get("models", {}).values() if test_cutoff else ():
        section["test_cutoff"] = test_cutoff
    path = tmp_path / "retail.yaml"
    path.write_text(yaml.safe_dump(config))
    return runner.invoke(app, ["validate", "--config", str(path)])


def test_validate_fails_naming_the_removed_customer_id_column(tmp_path):
    result = _validate_first_rows(tmp_path, drop=("CustomerID",))
    assert result.exit_code == 2
    assert "table 'transactions', column 'CustomerID': required column is missing" in result.output


def test_validate_says_a_test_cutoff_train_would_refuse(tmp_path):
    """A test_cutoff whose label window the data does not cover passed validate, and train refused it."""
    result = _validate_first_rows(tmp_path)
    assert result.exit_code == 0 and "contract: OK" in result.stdout
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning: models.")]
    assert [w.split(":")[1] for w in warned] == [
        " models.churn.test_cutoff 2011-09-10",
        " models.next_purchase.test_cutoff 2011-09-10",
    ]
    assert "train would refuse it: task 'churn': the label window of cut-off 2011-09-10" in warned[0]
    # One before the data starts passed as OK (a user's 2009-06-01; the data starts in December 2009).
    early = _validate_first_rows(tmp_path, test_cutoff="2009-06-01")
    assert early.exit_code == 0
    assert (
        "warning: models.churn.test_cutoff 2009-06-01: train would refuse it: it is not after the first row of table "
        "'transactions' (2009-12-01 07:45), so there is no history to train on"
    ) in " ".join(early.stderr.split())


def test_validate_rejects_unknown_config_key(tmp_path):
    config = yaml.safe_load((CONFIGS / "bank_leads.yaml").read_text())
    config["tables"]["leads"]["exculde"] = ["duration"]
    config["tables"]["leads"]["source"]["path"] = str(DATA / "bank_marketing_leads.parquet")
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["validate", "--config", str(path)])
    assert result.exit_code == 2
    assert "tables.leads.exculde: unknown key" in result.output


def test_validate_refuses_a_model_override_training_would_refuse(tmp_path):
    """A typo in models.<task>.lgbm_params fails validate, before the tables are read, naming the field."""
    config = yaml.safe_load((CONFIGS / "bank_leads.yaml").read_text())
    config["tables"]["leads"]["source"]["path"] = str(tmp_path / "not_read.parquet")
    config.setdefault("models", {}).setdefault("lead", {})["lgbm_params"] = {"num_leafs": 31}
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = runner.invoke(app, ["validate", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert "models.lead.lgbm_params.num_leafs: not a LightGBM parameter" in result.stderr
    assert "not_read.parquet" not in result.stderr
    # A value LightGBM refuses: validate said nothing, and train ended in LightGBM's traceback.
    config["models"]["lead"]["lgbm_params"] = {"learning_rate": -1}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = runner.invoke(app, ["validate", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert (
        "models.lead.lgbm_params (learning_rate: -1): LightGBM refuses the values: Check failed: (learning_rate) > (0.0)"
    ) in " ".join(result.stderr.split())


def test_validate_json_is_checked_first_and_written_whole(tmp_path):
    config = yaml.safe_load((CONFIGS / "bank_leads.yaml").read_text())
    config["tables"]["leads"]["source"]["path"] = str(DATA / "bank_marketing_leads.parquet")
    path = tmp_path / "leads.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    refused = runner.invoke(app, ["validate", "--config", str(path), "--json", str(tmp_path / "summary.txt")])
    assert refused.exit_code == 2 and f"error: --json {tmp_path / 'summary.txt'}: unknown format" in refused.stderr
    out = tmp_path / "reports" / "summary.json"
    result = runner.invoke(app, ["validate", "--config", str(path), "--json", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["leads"]["rows_read"] == 41_188
    assert [p.name for p in out.parent.iterdir()] == ["summary.json"]


def test_features_of_an_empty_population_fail_unless_allowed(tmp_path):
    config = yaml.safe_load((CONFIGS / "bank_leads.yaml").read_text())
    config["tables"]["leads"]["source"]["path"] = str(DATA / "bank_marketing_leads.parquet")
    path = tmp_path / "leads.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    out = tmp_path / "snapshot.parquet"
    args = ["features", "--task", "lead", "--config", str(path), "--as-of", "2012-01-01", "--out", str(out)]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2, refused.output
    assert "error: the lead population as of 2012-01-01 00:00 is empty" in refused.stderr
    assert "its rows run from 2008-05-01 00:00 to 2010-11-01 00:00" in refused.stderr
    assert not out.exists()
    allowed = runner.invoke(app, [*args, "--allow-empty"])
    assert allowed.exit_code == 0, allowed.output
    assert "wrote 0 rows as of 2012-01-01" in allowed.stdout and len(pd.read_parquet(out)) == 0


def test_features_snapshots_writes_every_served_task_or_none(tmp_path):
    """``features --snapshots``: the nightly refresh of what the API serves, into its snapshot folder,
    each file as ``--out`` writes it; a date where one population is empty writes none of them."""
    config = yaml.safe_load((CONFIGS / "online_retail.yaml").read_text())
    config["tables"]["transactions"]["source"]["path"] = str(DATA / "online_retail_ii.parquet")
    config["serving"]["snapshot_path"] = str(tmp_path / "snaps")
    path = tmp_path / "retail.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    base = ["features", "--config", str(path)]

    written = runner.invoke(app, [*base, "--as-of", "2011-12-01", "--snapshots"])
    assert written.exit_code == 0, written.output
    snaps = tmp_path / "snaps"
    assert sorted(p.name for p in snaps.iterdir()) == ["churn.parquet", "next_purchase.parquet"]  # no leads table
    churn = pd.read_parquet(snaps / "churn.parquet")
    assert f"wrote {len(churn):,} rows as of 2011-12-01 to {snaps / 'churn.parquet'} (churn)" in written.stdout
    # The rows after the cut-off are said once (one table for both tasks): a date is midnight at its start, and
    # "--as-of" today left today's rows out without a word (a new customer of the day was unknown to the API).
    assert written.stdout.count("note: ") == 1 and (
        "rows of table 'transactions' are after 2011-12-01 00:00 and not in these features" in written.stdout
    )
    one = runner.invoke(app, [*base, "--as-of", "2011-12-01", "--task", "churn", "--out", str(tmp_path / "c.parquet")])
    assert one.exit_code == 0, one.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "c.parquet"), churn)
    assert written.stderr == ""  # within the data: nothing to say

    # An export that stopped arriving: written, and said once (it is the same table for both tasks), as score says it.
    stale = runner.invoke(app, [*base, "--as-of", "2012-03-01", "--snapshots"])
    assert stale.exit_code == 0, stale.output
    assert stale.stderr.count("warning: ") == 1 and (
        "the scoring date 2012-03-01 00:00 is 82 days after the last row of table 'transactions' (2011-12-09 12:50)"
        in stale.stderr
    )
    runner.invoke(app, [*base, "--as-of", "2011-12-01", "--snapshots"])  # back to the files below expect

    # 2012-12-20: no purchase in the churn lookback (365 days); next purchase (everyone who ever bought) still has customers.
    before = {p.name: p.read_bytes() for p in snaps.iterdir()}
    refused = runner.invoke(app, [*base, "--as-of", "2012-12-20", "--snapshots"])
    assert refused.exit_code == 2 and "the churn population as of 2012-12-20 00:00 is empty" in refused.stderr
    assert {p.name: p.read_bytes() for p in snaps.iterdir()} == before  # yesterday's files, none replaced
    # Built and checked before any is written: next purchase first, fine on its own, is not written either.
    with pytest.raises(EmptyPopulationError, match="churn population"):
        write_snapshots(load_config(path), as_of="2012-12-20", tasks=["next_purchase", "churn"])
    assert {p.name: p.read_bytes() for p in snaps.iterdir()} == before
    cfg = load_config(path)
    next_purchase = population_features(
        load_tables(cfg), "next_purchase", as_of="2012-12-20", model_config=cfg.models.next_purchase
    )
    assert len(next_purchase) > 0

    for args in (["--snapshots", "--out", str(tmp_path / "x.parquet")], []):
        wrong = runner.invoke(app, [*base, "--as-of", "2011-12-01", *args])
        assert wrong.exit_code == 2 and "give --out FILE or --snapshots (not both)" in wrong.stderr
