"""The source mapping and data-contract rules on Spark: the same canonical tables and reports as on DuckDB."""

from __future__ import annotations

import pandas as pd
import pandas.testing as pdt
import pytest
import yaml

from features.config import load_config
from features.engine import connect
from features.sources import ContractError, load_tables
from tests.conftest import CONFIGS, DATA
from tests.features.test_sources import EXPORT, RAW, _config, _export_config, write_ids_with_leading_zeros
from tests.spark.conftest import spark_config_file

pytestmark = pytest.mark.spark


def _both(config, spark):
    """Canonical transactions and report from DuckDB and from Spark for the same config."""
    out = {}
    for engine in ("duckdb", "spark"):
        cfg = config.model_copy(update={"engine": engine})
        con = connect(cfg, session=spark) if engine == "spark" else None
        tables = load_tables(cfg, con=con)
        frame = tables.transactions.to_pandas()
        frame = frame.sort_values(list(frame.columns)).reset_index(drop=True)
        out[engine] = frame, tables.reports["transactions"]
    return out


def test_csv_mapping_filters_and_report_match_duckdb(tmp_path, write_config, spark):
    RAW.to_csv(tmp_path / "tx.csv", index=False)
    config = _config(
        write_config, tmp_path / "tx.csv", filters=[{"name": "free line", "keep": "price > 0"}], drop_duplicates=True
    )
    got = _both(config, spark)
    pdt.assert_frame_equal(got["spark"][0], got["duckdb"][0], check_dtype=False)
    assert got["spark"][1].to_dict() == got["duckdb"][1].to_dict()
    assert got["spark"][1].dropped == {"no customer_id": 1, "free line": 2, "exact duplicate row": 0}


def test_parquet_source_with_timestamps(tmp_path, write_config, spark):
    RAW.assign(ts=pd.to_datetime(RAW.ts)).to_parquet(tmp_path / "tx.parquet", coerce_timestamps="us")
    got = _both(_config(write_config, tmp_path / "tx.parquet"), spark)
    pdt.assert_frame_equal(got["spark"][0], got["duckdb"][0], check_dtype=False)
    assert got["spark"][0]["timestamp"].dtype.kind == "M"
    assert got["spark"][1].to_dict() == got["duckdb"][1].to_dict()


def test_nanosecond_parquet_timestamps_say_how_to_rewrite(tmp_path, write_config, spark):
    RAW.assign(ts=pd.to_datetime(RAW.ts)).to_parquet(tmp_path / "tx.parquet")  # pandas writes nanoseconds
    config = _config(write_config, tmp_path / "tx.parquet").model_copy(update={"engine": "spark"})
    with pytest.raises(ContractError, match="coerce_timestamps='us'"):
        load_tables(config, con=connect(config, session=spark))


def test_timestamp_format_on_spark(tmp_path, write_config, spark):
    RAW.assign(ts=["01/01/2024", "05/01/2024", "01/02/2024", "02/02/2024", "01/03/2024", "01/03/2024"]).to_csv(
        tmp_path / "tx.csv", index=False
    )
    got = _both(_config(write_config, tmp_path / "tx.csv", timestamp_format="%d/%m/%Y"), spark)
    frame = got["spark"][0]
    assert frame.timestamp.min() == pd.Timestamp("2024-01-01") and frame.timestamp.max() == pd.Timestamp("2024-03-01")
    pdt.assert_frame_equal(frame, got["duckdb"][0], check_dtype=False)


def test_iso_timestamps_with_a_literal_t_parse_on_spark(tmp_path, write_config, spark):
    """A letter of the format that is not a directive is quoted in Spark's pattern (yyyy-MM-dd'T'HH:mm)."""
    times = ["2024-01-01T10:00", "2024-01-05T12:30", "2024-02-01T09:00", "2024-02-02T09:00"] + ["2024-03-01T00:00"] * 2
    RAW.assign(ts=times).to_csv(tmp_path / "tx.csv", index=False)
    got = _both(_config(write_config, tmp_path / "tx.csv", timestamp_format="%Y-%m-%dT%H:%M"), spark)
    assert got["spark"][0].timestamp.min() == pd.Timestamp("2024-01-01 10:00")
    pdt.assert_frame_equal(got["spark"][0], got["duckdb"][0], check_dtype=False)


def test_a_value_the_timestamp_format_does_not_parse_is_the_contract_error_on_spark(tmp_path, write_config, spark):
    """Was Spark's own CANNOT_PARSE_TIMESTAMP exception; now the contract error DuckDB gives, with a
    count, examples and Spark's way to drop such rows by rule."""
    times = ["01/01/2024 10:00", "12/31/2024 10:00", "01/02/2024 09:00", "02/02/2024 09:00", "yesterday"]
    RAW.assign(ts=[*times, "01/03/2024 00:00"]).to_csv(tmp_path / "tx.csv", index=False)
    config = _config(write_config, tmp_path / "tx.csv", timestamp_format="%d/%m/%Y %H:%M")
    config = config.model_copy(update={"engine": "spark"})
    with pytest.raises(ContractError) as excinfo:
        load_tables(config, con=connect(config, session=spark))
    message = str(excinfo.value)
    assert "table 'transactions', column 'timestamp': values must parse as a timestamp. 2 row(s) do not" in message
    assert "'12/31/2024 10:00'" in message and "'yesterday'" in message
    assert "map timestamp: try_to_timestamp(`ts`, 'dd/MM/yyyy HH:mm')" in message
    # The hint's mapping, as the message gives it, drops and counts the two rows.
    columns = {**config.tables.transactions.columns, "timestamp": "try_to_timestamp(`ts`, 'dd/MM/yyyy HH:mm')"}
    spec = config.tables.transactions.model_copy(update={"columns": columns, "timestamp_format": None})
    fixed = config.model_copy(update={"tables": config.tables.model_copy(update={"transactions": spec})})
    report = load_tables(fixed, con=connect(fixed, session=spark)).reports["transactions"]
    assert report.dropped["no timestamp"] == 2 and report.rows_kept == 3  # RAW also has a row without customer


def test_unparseable_timestamp_is_a_contract_error_on_spark(tmp_path, write_config, spark):
    RAW.assign(ts=["2024-01-01", "yesterday", "2024-02-01", "2024-02-02", "soon", "2024-03-01"]).to_csv(
        tmp_path / "tx.csv", index=False
    )
    config = _config(write_config, tmp_path / "tx.csv").model_copy(update={"engine": "spark"})
    with pytest.raises(ContractError, match=r"column 'timestamp'.*must parse as a timestamp.*2 row\(s\)"):
        load_tables(config, con=connect(config, session=spark))


def test_missing_column_is_named_on_spark(tmp_path, write_config, spark):
    RAW.drop(columns="price").to_parquet(tmp_path / "tx.parquet")
    config = _config(write_config, tmp_path / "tx.parquet").model_copy(update={"engine": "spark"})
    with pytest.raises(ContractError, match="column 'price'.*'amount' is mapped to 'qty \\* price'"):
        load_tables(config, con=connect(config, session=spark))


def test_star_attributes_and_exclude_on_spark(spark):
    """``attributes: "*"`` quotes source column names; Spark must read them as columns, not strings."""
    frames, reports = {}, {}
    for engine in ("duckdb", "spark"):
        config = load_config(CONFIGS / "bank_leads.yaml", overrides={"engine": engine})
        tables = load_tables(config, con=connect(config, session=spark) if engine == "spark" else None)
        frames[engine] = tables.leads.to_pandas().sort_values("lead_id").reset_index(drop=True)
        reports[engine] = tables.reports["leads"].to_dict()
    assert "duration" not in frames["spark"].columns and "age" in frames["spark"].columns
    assert frames["spark"]["job"].iloc[0] != "job"
    pdt.assert_frame_equal(frames["spark"], frames["duckdb"], check_dtype=False)
    assert reports["spark"] == reports["duckdb"]


def test_sql_like_column_names_and_source_row_duplicates_on_spark(tmp_path, write_config, spark):
    EXPORT.to_csv(tmp_path / "tx.csv", index=False)
    got = _both(_export_config(write_config, tmp_path / "tx.csv", drop_duplicates=True), spark)
    pdt.assert_frame_equal(got["spark"][0], got["duckdb"][0], check_dtype=False)
    assert got["spark"][1].to_dict() == got["duckdb"][1].to_dict()
    assert got["spark"][1].dropped == {"exact duplicate row": 1} and len(got["spark"][0]) == 3


def test_ids_keep_their_leading_zeros_on_spark(tmp_path, write_config, spark):
    """Spark infers the type of a CSV column from every row: "007" and "7" would both become customer 7."""
    config, ids = write_ids_with_leading_zeros(write_config, tmp_path)
    got = _both(config, spark)
    assert sorted(got["spark"][0].customer_id) == sorted(ids)
    pdt.assert_frame_equal(got["spark"][0], got["duckdb"][0], check_dtype=False)


def test_a_database_source_on_spark_matches_duckdb(tmp_path, write_config, spark):
    """A table read through the database's Ibis backend lands in Spark as it lands in DuckDB."""
    import sqlite3

    with sqlite3.connect(tmp_path / "crm.db") as con:
        RAW.assign(ts=pd.to_datetime(RAW.ts)).to_sql("sales", con, index=False)
    config = _config(write_config, None, source={"url": f"sqlite:///{tmp_path / 'crm.db'}", "table": "sales"})
    got = _both(config, spark)
    pdt.assert_frame_equal(got["spark"][0], got["duckdb"][0], check_dtype=False)
    assert got["spark"][1].to_dict() == got["duckdb"][1].to_dict()
    assert got["spark"][1].rows_kept == 5


def test_a_truncated_parquet_file_on_spark_is_named_with_its_cause(spark, tmp_path):
    """An ops engineer's cut export: Spark's contract error said "An error occurred while calling o49.parquet",
    py4j's text; it now gives the Java cause, as DuckDB gives its own ("No magic bytes ...")."""
    whole = (DATA / "online_retail_ii.parquet").read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(whole[: len(whole) // 2])
    path = spark_config_file(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["tables"]["transactions"]["source"]["path"] = str(cut)
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ContractError) as refused:
        load_tables(load_config(path))
    message = str(refused.value)
    assert "the Parquet reader refused the file" in message and "An error occurred while calling" not in message
