"""A source table in a database (``source: {url, table}``), read through the database's Ibis backend.

SQLite (a file, no server) runs everywhere; PostgreSQL runs against a real server this module starts on
loopback with the machine's ``initdb`` and ``pg_ctl``, with password authentication, and is skipped
only where those are not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pandas.testing as pdt
import pytest
import yaml

from features.config import ConfigError, load_config, masked_url
from features.sources import ContractError, load_tables
from tests.conftest import CONFIGS, DATA
from tests.features.test_sources import RAW, _canonical, _config

PASSWORD = "s3cret-pw"  # the test server's; a real one comes from the environment (${NAME} in the URL)


def _raw_typed() -> pd.DataFrame:
    return RAW.assign(ts=pd.to_datetime(RAW.ts))  # a database column is typed; the CSV's text is not


def _sqlite(tmp_path: Path, frame: pd.DataFrame, table: str) -> Path:
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as con:
        frame.to_sql(table, con, index=False)
    return path


def _without_source(report) -> dict:
    return {k: v for k, v in report.to_dict().items() if k != "source"}


def test_a_database_table_maps_as_the_same_rows_in_a_file_do(tmp_path, write_config):
    _raw_typed().to_parquet(tmp_path / "tx.parquet")
    db = _sqlite(tmp_path, _raw_typed(), "sales")
    from_file, file_report = _canonical(_config(write_config, tmp_path / "tx.parquet"))
    config = _config(write_config, None, source={"url": f"sqlite:///{db}", "table": "sales"})
    from_db, db_report = _canonical(config)
    pdt.assert_frame_equal(from_db, from_file, check_dtype=False)
    assert _without_source(db_report) == _without_source(file_report)
    assert db_report.dropped == {"no customer_id": 1}
    assert db_report.source == f"sqlite:///{db} table sales"


def test_the_url_reads_environment_variables_and_names_the_one_missing(tmp_path, write_config, monkeypatch):
    db = _sqlite(tmp_path, _raw_typed(), "sales")
    config = _config(write_config, None, source={"url": "sqlite:///${CRM_DB_DIR}/crm.db", "table": "sales"})
    monkeypatch.delenv("CRM_DB_DIR", raising=False)
    with pytest.raises(ContractError) as info:
        load_tables(config)
    assert str(info.value) == (
        "table 'transactions', its source: environment variable not set. "
        "CRM_DB_DIR, used in url sqlite:///${CRM_DB_DIR}/crm.db table sales"
    )
    monkeypatch.setenv("CRM_DB_DIR", str(db.parent))
    assert load_tables(config).reports["transactions"].rows_kept == 5
    # The config keeps the placeholder, not its value: that is what is logged with a model.
    assert config.to_dict()["tables"]["transactions"]["source"]["url"] == "sqlite:///${CRM_DB_DIR}/crm.db"


def test_a_table_the_database_does_not_have_is_named(tmp_path, write_config):
    db = _sqlite(tmp_path, _raw_typed(), "sales")
    config = _config(write_config, None, source={"url": f"sqlite:///{db}", "table": "orders"})
    with pytest.raises(ContractError, match=r"table 'transactions', its source: cannot read the table") as info:
        load_tables(config)
    assert f"sqlite:///{db} table orders: " in str(info.value) and "orders" in str(info.value).rsplit(":", 1)[1]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"path": "tx.parquet", "url": "sqlite:///crm.db", "table": "t"}, "give 'path' (a file) or 'url'"),
        ({"url": "sqlite:///crm.db"}, "a database source needs 'table'"),
        ({"url": "crm.db", "table": "t"}, "'url' must be a connection URL"),
        ({"url": "sqlite:///crm.db", "table": "t", "format": "csv"}, "format must be database or unset"),
        ({"path": "tx.parquet", "database": "crm"}, "'database' is for a 'url' source"),
    ],
)
def test_a_source_is_a_file_or_a_database_table(write_config, source, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _config(write_config, None, source=source)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://crm:s3cret@db:5432/crm", "postgresql://crm:***@db:5432/crm"),
        ("postgresql://crm:${CRM_DB_PASSWORD}@db/crm", "postgresql://crm:${CRM_DB_PASSWORD}@db/crm"),
        ("postgresql://crm@db/crm", "postgresql://crm@db/crm"),
        ("sqlite:///data/crm.db", "sqlite:///data/crm.db"),
        # In the query string (an auditor found it in clear in a run's config.json): a secret's name masks it.
        (
            "postgresql://db:5432/crm?user=scorer&password=Hunter2&sslmode=require",
            "postgresql://db:5432/crm?user=scorer&password=***&sslmode=require",
        ),
        ("mysql://db/crm?api_key=abc&token=${TOKEN}", "mysql://db/crm?api_key=***&token=${TOKEN}"),
    ],
)
def test_a_password_written_in_the_url_is_masked(url, shown):
    assert masked_url(url) == shown


def test_the_logged_config_masks_spark_secrets_and_a_tracking_uris_password(write_config, tmp_path):
    """A run's config.json and its version's config tag held spark.hadoop.fs.s3a.secret.key in clear."""
    config = _config(write_config, tmp_path / "x.csv")
    config = config.model_copy(
        update={
            "tracking_uri": "https://ml:pw@mlflow.internal",
            "spark": config.spark.model_copy(
                update={"conf": {"spark.hadoop.fs.s3a.secret.key": "AKIA123", "spark.sql.shuffle.partitions": "8"}}
            ),
        }
    )
    logged = config.to_dict()
    assert logged["spark"]["conf"] == {"spark.hadoop.fs.s3a.secret.key": "***", "spark.sql.shuffle.partitions": "8"}
    assert logged["tracking_uri"] == "https://ml:***@mlflow.internal" and "AKIA123" not in str(logged)
    assert config.spark.conf["spark.hadoop.fs.s3a.secret.key"] == "AKIA123"  # the run itself still uses it


# --- PostgreSQL: a real server on loopback -------------------------------------------------------


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(versions[-1]) if versions else None


def _has_account(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL server on a free loopback port, user ``crm`` with :data:`PASSWORD` (scram), and its
    base URL without the password. As root it runs as the ``postgres`` account (it refuses root)."""
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed")
    if os.geteuid() == 0 and (shutil.which("runuser") is None or not _has_account("postgres")):
        pytest.skip("running as root, and no 'postgres' account (or runuser) to run PostgreSQL as")
    # Not under pytest's temporary root: that is private to the user running the tests.
    folder = Path(tempfile.mkdtemp(prefix="crmscore-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    (folder / "pw").write_text(PASSWORD)
    if run_as:
        shutil.chown(folder / "pw", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    subprocess.run(
        [*run_as, initdb, "-D", str(data), "-U", "crm", f"--pwfile={folder / 'pw'}", "-A", "scram-sha-256"]
        + ["-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -h 127.0.0.1 -k {folder} -F"
    subprocess.run(
        [*run_as, pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _leads_config(tmp_path: Path, source: dict):
    """The bundled leads config reading from ``source``, with its registry and outputs in ``tmp_path``."""
    data = yaml.safe_load((CONFIGS / "bank_leads.yaml").read_text())
    data["tables"]["leads"]["source"] = source
    data.update(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", output_dir=str(tmp_path / "outputs"))
    path = tmp_path / "leads.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_bank_leads_from_postgresql_equal_the_bundled_file_and_train(postgres, tmp_path, monkeypatch):
    """The bundled leads in a PostgreSQL schema: the canonical table and report equal the Parquet file's,
    the lead model trains from it, and the password is in no logged config or message."""
    import ibis
    from mlflow.tracking import MlflowClient

    from training.train import train_model

    frame = pd.read_parquet(DATA / "bank_marketing_leads.parquet")
    con = ibis.connect(f"postgresql://crm:{PASSWORD}@{postgres}")
    con.raw_sql("CREATE SCHEMA IF NOT EXISTS crm")
    con.create_table("leads", frame, database="crm", overwrite=True)
    con.disconnect()

    monkeypatch.setenv("CRM_DB_PASSWORD", PASSWORD)
    by_env = _leads_config(
        tmp_path, {"url": f"postgresql://crm:${{CRM_DB_PASSWORD}}@{postgres}", "table": "leads", "database": "crm"}
    )
    from_pg = load_tables(by_env)
    from_file = load_tables(load_config(CONFIGS / "bank_leads.yaml"))
    key = ["lead_id"]
    pdt.assert_frame_equal(
        from_pg.leads.to_pandas().sort_values(key).reset_index(drop=True),
        from_file.leads.to_pandas().sort_values(key).reset_index(drop=True),
        check_dtype=False,
        check_like=True,
    )
    assert _without_source(from_pg.reports["leads"]) == _without_source(from_file.reports["leads"])
    assert from_pg.reports["leads"].source == f"postgresql://crm:${{CRM_DB_PASSWORD}}@{postgres} table crm.leads"

    # A password written in the URL works, and is masked in the report, the run's config and the registry.
    inline = _leads_config(
        tmp_path, {"url": f"postgresql://crm:{PASSWORD}@{postgres}", "table": "leads", "database": "crm"}
    )
    out = train_model(inline, "lead", tables=load_tables(inline))
    assert out["metrics"]["roc_auc"] > 0.6 and out["n_test"] == 264
    client = MlflowClient(tracking_uri=inline.tracking_uri)
    logged = json.loads(client.get_model_version("crmscore-lead", out["version"]).tags["config"])
    assert logged["tables"]["leads"]["source"]["url"] == f"postgresql://crm:***@{postgres}"
    artifact = Path(client.download_artifacts(out["run_id"], "config.json"))
    fingerprint = Path(client.download_artifacts(out["run_id"], "data_fingerprint.json"))
    assert PASSWORD not in artifact.read_text() and PASSWORD not in fingerprint.read_text()

    wrong = _leads_config(tmp_path, {"url": f"postgresql://crm:wrong-pw@{postgres}", "table": "leads"})
    with pytest.raises(ContractError) as info:
        load_tables(wrong)
    message = str(info.value)
    assert message.startswith(
        f"table 'leads', its source: cannot connect to the database. postgresql://crm:***@{postgres} table leads: "
    )
    assert "password authentication failed" in message and "wrong-pw" not in message
