"""``crmscore validate`` on the bundled configs and on a copy of the data that breaks the contract."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

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


def test_validate_fails_naming_the_removed_customer_id_column(tmp_path):
    frame = pd.read_parquet(DATA / "online_retail_ii.parquet").head(5_000).drop(columns="CustomerID")
    frame.to_parquet(tmp_path / "retail.parquet")
    config = yaml.safe_load((CONFIGS / "online_retail.yaml").read_text())
    config["tables"]["transactions"]["source"]["path"] = str(tmp_path / "retail.parquet")
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["validate", "--config", str(path)])
    assert result.exit_code == 2
    assert "table 'transactions', column 'CustomerID': required column is missing" in result.output


def test_validate_rejects_unknown_config_key(tmp_path):
    config = yaml.safe_load((CONFIGS / "bank_leads.yaml").read_text())
    config["tables"]["leads"]["exculde"] = ["duration"]
    config["tables"]["leads"]["source"]["path"] = str(DATA / "bank_marketing_leads.parquet")
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["validate", "--config", str(path)])
    assert result.exit_code == 2
    assert "tables.leads.exculde: unknown key" in result.output
