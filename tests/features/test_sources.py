"""Mapping user tables onto canonical tables, and each rule of the data contract."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pandas.testing as pdt
import pytest

from features.config import load_config
from features.sources import ContractError, load_tables
from tests.conftest import CONFIGS, DATA, minimal_config_dict

RAW = pd.DataFrame(
    {
        "cid": [1.0, 1.0, 2.0, None, 3.0, 3.0],
        "ts": [
            "2024-01-01 10:00",
            "2024-01-05 12:30",
            "2024-02-01 09:00",
            "2024-02-02 09:00",
            "2024-03-01 00:00",
            "2024-03-01 00:00",
        ],
        "qty": [2, -1, 5, 1, 1, 1],
        "price": [10.0, 10.0, 2.5, 3.0, 0.0, 0.0],
        "inv": ["A1", "C2", "A3", "A4", "A5", "A5"],
        "ctry": ["UK", "UK", "FR", "UK", "DE", "DE"],
    }
)


def _config(write_config, path, fmt=None, source=None, **table_extra):
    """RAW's mapping, read from the file ``path`` (as ``fmt``) or from ``source`` as given."""
    if source is None:
        source = {"path": str(path)}
        if fmt:
            source["format"] = fmt
    return load_config(
        write_config(
            {
                "name": "t",
                "tables": {
                    "transactions": {
                        "source": source,
                        "columns": {
                            "customer_id": "cid",
                            "timestamp": "ts",
                            "amount": "qty * price",
                            "order_id": "inv",
                            "quantity": "qty",
                        },
                        "attributes": {"country": "ctry"},
                        **table_extra,
                    }
                },
            }
        )
    )


def _canonical(config):
    tables = load_tables(config)
    frame = tables.transactions.to_pandas().sort_values(["customer_id", "timestamp", "amount"]).reset_index(drop=True)
    return frame, tables.reports["transactions"]


def test_mapping_gives_canonical_names_types_and_expressions(tmp_path, write_config):
    RAW.to_csv(tmp_path / "tx.csv", index=False)
    frame, report = _canonical(_config(write_config, tmp_path / "tx.csv"))
    expected = pd.DataFrame(
        {
            "customer_id": ["1", "1", "2", "3", "3"],
            "timestamp": pd.to_datetime(
                ["2024-01-01 10:00", "2024-01-05 12:30", "2024-02-01 09:00", "2024-03-01 00:00", "2024-03-01 00:00"]
            ),
            "amount": [20.0, -10.0, 12.5, 0.0, 0.0],
            "order_id": ["A1", "C2", "A3", "A5", "A5"],
            "quantity": [2.0, -1.0, 5.0, 1.0, 1.0],
            "country": ["UK", "UK", "FR", "DE", "DE"],
        }
    )
    pdt.assert_frame_equal(frame, expected, check_dtype=False)
    assert frame["timestamp"].dtype.kind == "M"
    assert report.rows_read == 6
    assert report.rows_kept == 5
    assert report.dropped == {"no customer_id": 1}
    assert report.duplicates == 1
    assert report.refunds == 1
    assert report.cancelled_orders == 1
    assert report.entities == 3
    assert report.date_min == dt.datetime(2024, 1, 1, 10) and report.date_max == dt.datetime(2024, 3, 1)
    assert report.null_rates["customer_id"] == pytest.approx(1 / 6)


def test_filters_and_duplicates_are_counted_once_each(tmp_path, write_config):
    RAW.to_parquet(tmp_path / "tx.parquet")
    config = _config(
        write_config,
        tmp_path / "tx.parquet",
        filters=[{"name": "free line", "keep": "price > 0"}],
        drop_duplicates=True,
    )
    frame, report = _canonical(config)
    # Row 4 has no id (first rule), rows 5-6 are free lines; the duplicate rule then finds nothing left to drop.
    assert report.dropped == {"no customer_id": 1, "free line": 2, "exact duplicate row": 0}
    assert report.rows_kept == 3 == len(frame)
    assert report.rows_read == report.rows_kept + sum(report.dropped.values())


# Two lines of one order that differ only in a column the mapping does not carry (the product), and one
# line exported twice; the columns are named as real exports name them: a space, SQL keywords.
EXPORT = pd.DataFrame(
    {
        "Customer ID": ["7", "7", "7", "8"],
        "when": ["2024-01-01 10:00"] * 3 + ["2024-01-02 11:00"],
        "order": ["A1", "A1", "A1", "B1"],
        "product": ["mug", "cup", "cup", "mug"],
        "Quantity": [1, 1, 1, 2],
        "Price": [5.0, 5.0, 5.0, 5.0],
    }
)


def _export_config(write_config, path, **table_extra):
    columns = {"customer_id": "Customer ID", "timestamp": "when", "amount": "Quantity * Price", "order_id": "order"}
    table = {"source": {"path": str(path)}, "columns": columns, **table_extra}
    return load_config(write_config({"name": "t", "tables": {"transactions": table}}))


def test_a_column_named_like_sql_is_mapped_as_it_is(tmp_path, write_config):
    """``Customer ID`` would read as a column with an alias, ``when`` and ``order`` as keywords."""
    EXPORT.to_csv(tmp_path / "tx.csv", index=False)
    frame, report = _canonical(_export_config(write_config, tmp_path / "tx.csv"))
    assert frame.customer_id.tolist() == ["7", "7", "7", "8"]
    assert frame.order_id.tolist() == ["A1", "A1", "A1", "B1"]
    assert frame.timestamp.max() == pd.Timestamp("2024-01-02 11:00") and report.rows_kept == 4


def test_duplicates_are_source_rows_not_equal_mapped_values(tmp_path, write_config):
    """The mug and the cup map to the same four canonical values; only the cup exported twice is a duplicate."""
    EXPORT.to_csv(tmp_path / "tx.csv", index=False)
    frame, report = _canonical(_export_config(write_config, tmp_path / "tx.csv", drop_duplicates=True))
    assert report.duplicates == 1 and report.dropped == {"exact duplicate row": 1}
    assert report.rows_kept == 3 == len(frame)
    assert frame.groupby("customer_id").amount.sum().to_dict() == {"7": 10.0, "8": 10.0}
    assert list(frame.columns) == ["customer_id", "timestamp", "amount", "order_id"]


def test_orders_with_a_refund_are_not_counted_without_order_ids(tmp_path, write_config):
    RAW.to_parquet(tmp_path / "tx.parquet")
    config = load_config(write_config(minimal_config_dict()))  # source tx.parquet beside the config
    report = load_tables(config).reports["transactions"]
    assert report.refunds == 1 and report.cancelled_orders is None
    assert "orders with a refund no order_id mapped" in "\n".join(report.lines())


def test_csv_and_parquet_sources_give_the_same_canonical_table(tmp_path, write_config):
    RAW.to_csv(tmp_path / "tx.csv", index=False)
    raw = RAW.assign(ts=pd.to_datetime(RAW.ts))
    raw.to_parquet(tmp_path / "tx.parquet")
    from_csv, _ = _canonical(_config(write_config, tmp_path / "tx.csv"))
    from_parquet, _ = _canonical(_config(write_config, tmp_path / "tx.parquet"))
    pdt.assert_frame_equal(from_csv, from_parquet, check_dtype=False)


def test_a_folder_of_csv_files_whose_columns_changed_is_read_by_name(tmp_path, write_config):
    """An export that gained a column (a ``Discount`` from one year on) and wrote its columns in another
    order: DuckDB refused the folder by position, in a 40-line traceback at validate."""
    RAW.to_csv(tmp_path / "tx.csv", index=False)
    expected, _ = _canonical(_config(write_config, tmp_path / "tx.csv"))
    (tmp_path / "export").mkdir()
    RAW.iloc[:3].assign(discount=0.0).to_csv(tmp_path / "export" / "2023.csv", index=False)
    RAW.iloc[3:][list(reversed(RAW.columns))].to_csv(tmp_path / "export" / "2024.csv", index=False)
    folder, report = _canonical(_config(write_config, tmp_path / "export" / "*.csv", fmt="csv"))
    assert report.rows_read == len(RAW)
    pdt.assert_frame_equal(folder, expected, check_dtype=False)


def test_duckdb_file_source(tmp_path, write_config):
    import duckdb

    db = tmp_path / "crm.duckdb"
    with duckdb.connect(str(db)) as con:
        con.register("raw", RAW.assign(ts=pd.to_datetime(RAW.ts)))
        con.execute("CREATE TABLE sales AS SELECT * FROM raw")
    config = load_config(
        write_config(
            {
                "name": "t",
                "tables": {
                    "transactions": {
                        "source": {"path": str(db), "table": "sales"},
                        "columns": {"customer_id": "cid", "timestamp": "ts", "amount": "qty * price"},
                    }
                },
            }
        )
    )
    tables = load_tables(config)
    assert tables.reports["transactions"].rows_kept == 5


def test_missing_column_is_named(tmp_path, write_config):
    RAW.drop(columns="cid").to_parquet(tmp_path / "tx.parquet")
    with pytest.raises(ContractError) as info:
        load_tables(_config(write_config, tmp_path / "tx.parquet"))
    assert info.value.table == "transactions" and info.value.column == "cid"
    assert "required column is missing" in str(info.value) and "'customer_id'" in str(info.value)


def test_missing_column_inside_an_expression_is_named(tmp_path, write_config):
    RAW.drop(columns="price").to_parquet(tmp_path / "tx.parquet")
    with pytest.raises(ContractError, match="column 'price'.*'amount' is mapped to 'qty \\* price'"):
        load_tables(_config(write_config, tmp_path / "tx.parquet"))


def test_unparseable_timestamp_shows_offending_values(tmp_path, write_config):
    RAW.assign(ts=["2024-01-01", "yesterday", "2024-02-01", "2024-02-02", "soon", "2024-03-01"]).to_csv(
        tmp_path / "tx.csv", index=False
    )
    with pytest.raises(ContractError) as info:
        load_tables(_config(write_config, tmp_path / "tx.csv"))
    message = str(info.value)
    assert "column 'timestamp'" in message and "must parse as a timestamp" in message
    assert "2 row(s)" in message and "yesterday" in message and "soon" in message


def test_iso_text_with_offsets_reads_as_utc_from_parquet_as_from_csv(tmp_path, write_config):
    """A SaaS export's ISO text times with offsets (``Z``, ``-05:00``, ``+01:00``): from Parquet, where the
    column is text, DuckDB's cast dropped the offset (01:00+01:00 read 01:00, 41,254 of 583,388 events on
    another day); from CSV the reader typed them zoned and read 00:00 UTC. The same export now gives the
    same UTC times from both, and text without an offset stays as written."""
    times = [
        "2024-01-01T10:00:00Z",
        "2024-01-05T12:30:00-05:00",
        "2024-02-01T01:00:00+01:00",
        "2024-02-02 09:00",
        "2024-03-01T23:30:00-01:00",
        "2024-03-01T00:00:00.250+05:30",
    ]
    RAW.assign(ts=times).to_parquet(tmp_path / "tx.parquet")
    RAW.assign(ts=times).to_csv(tmp_path / "tx.csv", index=False)
    from_parquet, _ = _canonical(_config(write_config, tmp_path / "tx.parquet"))
    from_csv, _ = _canonical(_config(write_config, tmp_path / "tx.csv"))
    expected = [
        "2024-01-01 10:00",
        "2024-01-05 17:30",
        "2024-02-01 00:00",
        "2024-03-02 00:30",
        "2024-02-29 18:30:00.250",
    ]
    assert sorted(from_parquet.timestamp) == sorted(pd.Timestamp(t) for t in expected)  # the null id's row dropped
    pd.testing.assert_series_equal(from_parquet.timestamp, from_csv.timestamp)


def test_timestamp_format_parses_day_first_dates(tmp_path, write_config):
    RAW.assign(ts=["01/01/2024", "05/01/2024", "01/02/2024", "02/02/2024", "01/03/2024", "01/03/2024"]).to_csv(
        tmp_path / "tx.csv", index=False
    )
    frame, _ = _canonical(_config(write_config, tmp_path / "tx.csv", timestamp_format="%d/%m/%Y"))
    assert frame.timestamp.min() == pd.Timestamp("2024-01-01") and frame.timestamp.max() == pd.Timestamp("2024-03-01")


def test_timestamp_format_gives_wall_clock_times(tmp_path, write_config):
    """Ibis labels a strptime with a time of day UTC; the canonical column is naive, as from every other source."""
    times = ["01/01/2024 10:00", "05/01/2024 12:30", "01/02/2024 09:00", "02/02/2024 09:00"] + ["01/03/2024 00:00"] * 2
    RAW.assign(ts=times).to_csv(tmp_path / "tx.csv", index=False)
    frame, report = _canonical(_config(write_config, tmp_path / "tx.csv", timestamp_format="%d/%m/%Y %H:%M"))
    assert frame.timestamp.dt.tz is None and report.date_min.tzinfo is None
    assert frame.timestamp.min() == pd.Timestamp("2024-01-01 10:00")


def test_timestamp_format_wins_over_the_csv_readers_own_guess(tmp_path, write_config):
    """Month-first dates whose days are all 12 or less look day-first to DuckDB's CSV sniffer, which
    typed the column as dates before the format was read: 05/01/2024 became 5 January, not 1 May."""
    dates = ["05/01/2024", "06/01/2024", "07/01/2024", "08/01/2024", "09/01/2024", "10/01/2024"]
    RAW.assign(ts=dates).to_csv(tmp_path / "tx.csv", index=False)
    frame, _ = _canonical(_config(write_config, tmp_path / "tx.csv", timestamp_format="%m/%d/%Y"))
    assert frame.timestamp.min() == pd.Timestamp("2024-05-01") and frame.timestamp.max() == pd.Timestamp("2024-10-01")


def test_a_value_the_timestamp_format_does_not_parse_is_a_contract_error(tmp_path, write_config):
    """Was DuckDB's own exception, naming no table or column; now the contract error with a count and
    examples, and how to drop such rows by rule instead."""
    times = [
        "01/01/2024 10:00",
        "12/31/2024 10:00",
        "01/02/2024 09:00",
        "02/02/2024 09:00",
        "yesterday",
        "01/03/2024 00:00",
    ]
    RAW.assign(ts=times).to_csv(tmp_path / "tx.csv", index=False)
    with pytest.raises(ContractError) as excinfo:
        load_tables(_config(write_config, tmp_path / "tx.csv", timestamp_format="%d/%m/%Y %H:%M"))
    message = str(excinfo.value)
    assert "table 'transactions', column 'timestamp': values must parse as a timestamp. 2 row(s) do not" in message
    assert "'12/31/2024 10:00'" in message and "'yesterday'" in message
    assert (
        "do not match timestamp_format '%d/%m/%Y %H:%M'; to drop such rows instead, map timestamp: try_strptime("
        in message
    )


def test_java_patterns_of_timestamp_formats():
    """Spark's to_timestamp reads Java patterns: each directive mapped, literal letters quoted."""
    from features.sources import java_pattern

    assert java_pattern("%d/%m/%Y %H:%M:%S.%f") == "dd/MM/yyyy HH:mm:ss.SSSSSS"
    assert java_pattern("%Y-%m-%dT%H:%M") == "yyyy-MM-dd'T'HH:mm"
    assert java_pattern("%-d %b %Y, %I %p") == "d MMM yyyy, hh a"
    with pytest.raises(ValueError, match="'%Q' has no Spark pattern"):
        java_pattern("%Y %Q")


def test_required_column_entirely_null(tmp_path, write_config):
    RAW.assign(cid=[None] * 6).astype({"cid": "float64"}).to_parquet(tmp_path / "tx.parquet")
    with pytest.raises(ContractError, match="column 'customer_id': required column is entirely null"):
        load_tables(_config(write_config, tmp_path / "tx.parquet"))


def test_excluded_column_never_appears(write_config):
    config = load_config(CONFIGS / "bank_leads.yaml")
    tables = load_tables(config)
    assert "duration" not in tables.leads.columns
    assert "age" in tables.leads.columns and "converted" in tables.leads.columns
    assert tables.reports["leads"].excluded == ("duration",)


@pytest.mark.slow
def test_bundled_online_retail_validates_with_counted_drops():
    tables = load_tables(load_config(CONFIGS / "online_retail.yaml"))
    report = tables.reports["transactions"]
    assert report.rows_read == 1_044_847
    no_id = report.dropped["no customer_id"]
    assert no_id / report.rows_read == pytest.approx(0.225, abs=0.001)
    assert report.refunds > 10_000 and report.cancelled_orders > 5_000
    assert report.rows_read == report.rows_kept + sum(report.dropped.values())
    assert report.entities == tables.transactions.customer_id.nunique().to_pyarrow().as_py()


def test_bundled_bank_leads_validate():
    report = load_tables(load_config(CONFIGS / "bank_leads.yaml")).reports["leads"]
    assert report.rows_read == report.rows_kept == 41_188
    assert str(report.date_min).startswith("2008-05-01") and str(report.date_max).startswith("2010-11-01")


def test_data_files_are_bundled():
    assert (DATA / "online_retail_ii.parquet").is_file() and (DATA / "bank_marketing_leads.parquet").is_file()
    assert "CC BY 4.0" in (DATA / "README.md").read_text()


def test_missing_source_file_is_named(tmp_path, write_config):
    with pytest.raises(ContractError, match="table 'transactions', its source: source file not found"):
        load_tables(_config(write_config, tmp_path / "absent.parquet"))


def test_last_timestamp_names_the_table(tmp_path, write_config):
    RAW.to_parquet(tmp_path / "tx.parquet")
    tables = load_tables(_config(write_config, tmp_path / "tx.parquet"))
    assert tables.last_timestamp("transactions") == "2024-03-01 00:00:00"
    with pytest.raises(ValueError, match="table 'leads' is not configured"):
        tables.last_timestamp("leads")


def test_a_text_outcome_is_refused_with_the_condition_to_map(tmp_path, write_config):
    leads = pd.DataFrame(
        {"id": ["a", "b", "c"], "at": ["2024-01-01", "2024-01-02", "2024-01-03"], "y": ["won", "lost", "won"]}
    )
    leads.to_csv(tmp_path / "leads.csv", index=False)

    def config(converted):
        columns = {"lead_id": "id", "created_at": "at", "converted": converted}
        table = {"source": {"path": str(tmp_path / "leads.csv")}, "columns": columns}
        return load_config(write_config({"name": "t", "tables": {"leads": table}}))

    with pytest.raises(ContractError, match=r"column 'converted'.*must parse as a number.*converted: y = 'yes'"):
        load_tables(config("y"))
    mapped = load_tables(config("y = 'won'")).leads.to_pandas().sort_values("lead_id")
    assert mapped.converted.tolist() == [1.0, 0.0, 1.0]


def write_ids_with_leading_zeros(write_config, folder, n_plain=0):
    """Plain integer ids first (past a CSV reader's type sample), then "007" beside a different "7".

    Returns the config mapping that CSV (the smallest one) and the ids written.
    """
    ids = [*(str(100 + i) for i in range(n_plain)), "7", "007", "012"]
    pd.DataFrame({"cid": ids, "ts": "2024-01-01", "qty": 1, "price": 2.0}).to_csv(folder / "tx.csv", index=False)
    data = minimal_config_dict()
    data["tables"]["transactions"]["source"] = {"path": str(folder / "tx.csv")}
    return load_config(write_config(data)), ids


def test_an_integer_looking_id_keeps_its_leading_zeros(tmp_path, write_config):
    """DuckDB types a CSV column from a sample of rows, where these ids all look like integers."""
    config, ids = write_ids_with_leading_zeros(write_config, tmp_path, n_plain=30_000)
    got = load_tables(config).transactions.to_pandas().customer_id
    assert sorted(got) == sorted(ids) and got.nunique() == len(ids)


def test_the_events_report_counts_event_types_and_says_whether_cancellations_label_churn(tmp_path, write_config):
    RAW.to_parquet(tmp_path / "tx.parquet")
    events = pd.DataFrame(
        {"cust": ["1", "1", "2", "3"], "at": ["2024-01-02"] * 4, "kind": ["email", "email", "visit", "cancellation"]}
    )

    def report(kinds):
        events.assign(kind=kinds).to_csv(tmp_path / "ev.csv", index=False)
        data = minimal_config_dict()
        data["tables"]["events"] = {
            "source": {"path": "ev.csv"},
            "columns": {"customer_id": "cust", "timestamp": "at", "event_type": "kind"},
        }
        return load_tables(load_config(write_config(data))).reports["events"]

    with_cancel = report(events.kind)
    assert with_cancel.event_types == {"email": 2, "cancellation": 1, "visit": 1}
    text = "\n".join(with_cancel.lines())
    assert "event types   email 2, cancellation 1, visit 1" in text
    assert "cancellations 1 (event_type 'cancellation': churn within the window)" in text
    without = "\n".join(report(["email", "email", "visit", "Cancelled"]).lines())
    assert "cancellations none: no event_type 'cancellation'" in without


def test_the_leads_report_warns_of_repeated_ids_and_conversions_before_creation(tmp_path, write_config):
    leads = pd.DataFrame(
        {
            "id": ["a", "a", "b", "c"],
            "created": ["2024-01-05", "2024-01-06", "2024-01-05", "2024-01-05"],
            "won_at": ["2024-01-10", None, "2024-01-01", None],  # b converted four days before it was created
        }
    )
    leads.to_csv(tmp_path / "leads.csv", index=False)
    columns = {"lead_id": "id", "created_at": "created", "converted_at": "won_at"}
    table = {"source": {"path": str(tmp_path / "leads.csv")}, "columns": columns}
    report = load_tables(load_config(write_config({"name": "t", "tables": {"leads": table}}))).reports["leads"]
    assert report.rows_kept == 4  # warned of, not dropped
    assert report.warnings == [
        "1 lead_id(s) appear on more than one row (2 rows): each row is trained on as a lead of its own, "
        "and scoring by id picks one",
        "1 lead(s) have converted_at before created_at: they count as not converted within the horizon "
        "(check the two columns' time zones or the export)",
    ]
    assert "  warning: 1 lead_id(s) appear on more than one row" in "\n".join(report.lines())


def test_the_customers_report_warns_of_a_customer_on_several_rows(tmp_path, write_config):
    """The features take one row of each customer: conflicting attributes of a repeated id went unseen."""
    RAW.to_csv(tmp_path / "tx.csv", index=False)
    pd.DataFrame({"cid": ["1", "1", "2"], "segment": ["gold", "silver", "gold"]}).to_csv(
        tmp_path / "c.csv", index=False
    )
    config = _config(write_config, tmp_path / "tx.csv").model_dump(mode="json")
    config["tables"]["customers"] = {
        "source": {"path": str(tmp_path / "c.csv")},
        "columns": {"customer_id": "cid"},
        "attributes": {"segment": "segment"},
    }
    report = load_tables(load_config(write_config(config))).reports["customers"]
    assert report.rows_kept == 3 and report.warnings == [
        "1 customer_id(s) appear on more than one row (2 rows): the features take one row of each, so their "
        "attributes should agree (deduplicate the export)"
    ]


def test_a_row_dated_after_the_run_and_an_id_of_blanks_are_dropped_and_counted(tmp_path, write_config):
    """A year typed wrong (2027 for 2011) would be the data's end, and every label window before it
    would count as observed; an id of blanks (a guest checkout) would be one customer. Both rows are
    dropped, each under its rule, and validate's report says so."""
    raw = RAW.assign(cid=RAW["cid"].map(lambda c: None if pd.isna(c) else str(int(c))))
    raw.loc[len(raw)] = ["  ", "2024-02-03 09:00", 1, 4.0, "A6", "UK"]
    tomorrow_and_more = dt.datetime.now() + dt.timedelta(days=3)
    raw.loc[len(raw)] = ["2", f"{tomorrow_and_more:%Y-%m-%d %H:%M}", 1, 4.0, "A7", "UK"]
    # A null an export wrote as text was one customer, "NULL", with every such row (a user's export).
    for marker in ("NULL", "n/a", " #N/A "):
        raw.loc[len(raw)] = [marker, "2024-02-03 09:00", 1, 4.0, "A8", "UK"]
    raw.to_csv(tmp_path / "tx.csv", index=False)
    frame, report = _canonical(_config(write_config, tmp_path / "tx.csv"))
    assert report.rows_read == 11 and report.rows_kept == 5
    assert report.dropped == {"no customer_id": 5, "timestamp in the future": 1}
    assert report.date_max == dt.datetime(2024, 3, 1)
    assert "  dropped: timestamp in the future      1 (9.1%)" in report.lines()
    assert sorted(frame["customer_id"].unique()) == ["1", "2", "3"]


def test_many_rows_without_a_time_are_a_warning(tmp_path, write_config):
    """try_strptime with day and month swapped read 46% of an export's dates as null: validate
    counted them under 'no timestamp' and said "contract: OK" with no word about the share."""
    raw = RAW.assign(
        ts=["01/13/2024 10:00", "02/01/2024 12:30", "13/02/2024 09:00", "02/02/2024 09:00", "01/03/2024", "x"]
    )
    raw.to_csv(tmp_path / "tx.csv", index=False)
    config = _config(write_config, tmp_path / "tx.csv")
    config.tables.transactions.columns["timestamp"] = "try_strptime(ts, '%d/%m/%Y %H:%M')"
    _, report = _canonical(config)
    assert report.dropped == {"no customer_id": 1, "no timestamp": 3}
    assert report.warnings == [
        "50.0% of the rows have no timestamp: if the mapping parses text dates (try_strptime, timestamp_format), "
        "check that its format is the export's"
    ]


def test_csv_options_the_reader_refuses_and_a_filter_that_does_not_run_are_contract_errors(tmp_path, write_config):
    """pandas' `decimal` in csv_options, and a filter comparing a column left as text ("1,5") with a
    number, ended in DuckDB's Binder tracebacks (exit 1) that named neither the table nor the filter."""
    frame = pd.DataFrame({"cid": ["a", "b"], "ts": ["2024-01-01 10:00", "2024-01-02 10:00"], "price": ["1,5", "2,0"]})
    frame.assign(qty=[1, 2], inv=["o1", "o2"], ctry="UK").to_csv(tmp_path / "tx.csv", sep=";", index=False)
    source = {"path": str(tmp_path / "tx.csv"), "csv_options": {"sep": ";", "decimal": ","}}
    with pytest.raises(ContractError) as refused:
        load_tables(_config(write_config, None, source=source))
    assert (refused.value.table, refused.value.column) == ("transactions", "<source>")
    assert refused.value.rule == "the CSV reader refused the file or source.csv_options"
    assert 'Invalid named parameter "decimal"' in str(refused.value)

    # The amount's expression (qty * price, price text) is the first to fail; then a filter alone.
    source["csv_options"] = {"delim": ";"}
    with pytest.raises(ContractError, match="column 'amount': the column expression does not run on the source"):
        load_tables(_config(write_config, None, source=source))
    frame.assign(price=[1.5, 2.0], qty=[1, 2], inv=["o1", "o2"], ctry="UK").to_csv(
        tmp_path / "tx.csv", sep=";", index=False
    )
    config = _config(write_config, None, source=source, filters=[{"name": "price positive", "keep": "ctry > 0"}])
    with pytest.raises(ContractError) as filtered:
        load_tables(config)
    assert (filtered.value.column, filtered.value.rule) == (
        "filter 'price positive'",
        "the filter expression does not run on the source",
    )
    assert "Cannot compare values of type VARCHAR" in str(filtered.value) and "ctry (string)" in str(filtered.value)


def test_a_number_column_mapped_as_the_timestamp_says_so(tmp_path, write_config):
    """`timestamp: qty` was told to try try_strptime on a column of numbers."""
    RAW.to_csv(tmp_path / "tx.csv", index=False)
    config = _config(write_config, tmp_path / "tx.csv")
    config.tables.transactions.columns["timestamp"] = "qty"
    with pytest.raises(ContractError, match="column 'timestamp': values must parse as a timestamp") as info:
        load_tables(config)
    assert (
        "(the mapped values are numbers (int64), not times: map timestamp to the source column that holds the dates)"
        in str(info.value)
    )
    assert "try_strptime" not in str(info.value)


def test_the_fingerprint_digests_the_rows_content_in_any_order(tmp_path, write_config):
    """Counts and dates stay the same when one quantity changes (an auditor's changed row went
    unseen); the content digest does not, and a reordered export of the same rows keeps it."""
    config = _config(write_config, tmp_path / "tx.parquet")

    def fingerprint(raw):
        raw.to_parquet(tmp_path / "tx.parquet")
        return load_tables(config).fingerprint()["transactions"]

    first = fingerprint(RAW.copy())
    assert len(first["content_digest"]) == 16 and first == fingerprint(RAW.copy())
    assert fingerprint(RAW.iloc[::-1].copy()) == first
    changed = RAW.copy()
    changed.loc[2, "qty"] = 50
    other = fingerprint(changed)
    assert {k: v for k, v in other.items() if k != "content_digest"} == {
        k: v for k, v in first.items() if k != "content_digest"
    }
    assert other["content_digest"] != first["content_digest"]


def test_a_parquet_source_cut_short_is_a_contract_error_naming_it(tmp_path, write_config):
    """An export copied while still being written: the engine's traceback and exit 1, where a missing
    file is a contract error and exit 2, so a scheduler could not tell a bad export from a crash."""
    RAW.to_parquet(tmp_path / "whole.parquet")
    (tmp_path / "tx.parquet").write_bytes((tmp_path / "whole.parquet").read_bytes()[:300])
    with pytest.raises(ContractError) as refused:
        load_tables(_config(write_config, tmp_path / "tx.parquet"))
    message = str(refused.value)
    assert "table 'transactions'" in message and "the Parquet reader refused the file" in message
    assert f"source {tmp_path / 'tx.parquet'}: " in message


def test_ids_that_mostly_miss_the_table_they_belong_to_are_said():
    """Two systems' exports spell ids apart (``12346`` and ``0012346``): every table passed validate, and
    the customers' attributes and the events joined no one (a data engineer's own export)."""
    import ibis

    from features.sources import CanonicalTables

    con = ibis.duckdb.connect()
    stamp = pd.to_datetime(["2024-01-01"] * 3)
    frames = {
        "transactions": pd.DataFrame({"customer_id": ["0012346", "0012347", "0012348"], "timestamp": stamp}),
        "customers": pd.DataFrame({"customer_id": ["12346", "12347", "12349"]}),
        "events": pd.DataFrame({"customer_id": ["x1", "x2", "0012346"], "timestamp": stamp}),
    }
    tables = CanonicalTables(con=con, **{name: con.create_table(name, f, temp=True) for name, f in frames.items()})
    customers, events = tables.id_match_warnings()
    assert customers.startswith(
        "table 'customers': 0 of its 3 customer_id values are in table 'transactions', and most are once leading "
        "zeros are stripped: the tables spell ids apart (table 'transactions' writes e.g. '00123"
    )
    assert events == (
        "table 'events': 1 of its 3 customer_id values are in table 'transactions': most of its rows join no one there "
        "(ids of another system, or another column?)"
    )
    assert tables.id_match_warnings(below=0.3) == [customers]  # a third of the events' ids is enough there
    assert CanonicalTables(con=con, transactions=tables.transactions).id_match_warnings() == []


def test_a_few_rows_far_from_all_the_others_are_said():
    """A year typed wrong (2021 for 2011) passes every rule and becomes the data's end: 20 such rows of
    805,000 made at-risk list 13 customers "as of 2021-12-05" (a data engineer's export)."""
    import ibis

    from features.sources import CanonicalTables

    con = ibis.duckdb.connect()
    bulk = list(pd.date_range("2010-01-01", periods=2_000, freq="6h"))
    typo, early = [pd.Timestamp("2021-05-03 12:03")] * 20, [pd.Timestamp("1911-03-01")] * 3
    frame = pd.DataFrame({"customer_id": "1", "timestamp": early + bulk + typo})
    tables = CanonicalTables(con=con, transactions=con.create_table("tx", frame, temp=True))
    assert tables.date_tail_warnings() == [
        "table 'transactions': its last 20 rows (2021-05-03 .. 2021-05-03) lie 3,641 days from the other 2,003, "
        "which end 2011-05-15: a year typed wrong? They are the data's end, the date the commands score at by default.",
        "table 'transactions': its first 3 rows (1911-03-01 .. 1911-03-01) lie 36,101 days from the other 2,020, "
        "which start 2010-01-01: a year typed wrong?",
    ]
    # Without them, or when they are many (a second system's years), nothing is said.
    clean = CanonicalTables(con=con, transactions=con.create_table("clean", frame.iloc[3:2003], temp=True))
    assert clean.date_tail_warnings() == [] and tables.date_tail_warnings(share=0.001) == []


def test_category_values_that_differ_only_in_case_are_said():
    """``UNITED KINGDOM`` and ``United Kingdom`` from two systems were two categories to the model and two
    groups of ``--per country``, and validate said nothing (a data engineer's export); an id or free text
    (many values) is not a category."""
    import ibis

    from features.sources import CanonicalTables

    con = ibis.duckdb.connect()
    countries = ["United Kingdom"] * 5 + ["UNITED KINGDOM"] * 3 + ["France", "France "] + [None]
    frame = pd.DataFrame(
        {
            "customer_id": ["c1", "C1"] + ["x"] * 9,  # an id: not compared
            "timestamp": pd.Timestamp("2024-01-01"),
            "country": countries,
            "note": [f"free text {i}" for i in range(11)],
        }
    )
    tables = CanonicalTables(con=con, transactions=con.create_table("tx", frame, temp=True))
    assert tables.case_variant_warnings() == [
        "table 'transactions', column 'country': values that differ only in case or blanks, which the model takes for "
        "different categories: 'France' (1) and 'France ' (1); 'United Kingdom' (5) and 'UNITED KINGDOM' (3) (map one "
        "spelling: an expression in tables.transactions, e.g. upper(trim(...)))"
    ]
    assert tables.case_variant_warnings(max_values=3) == []  # four values: free text at that bound


def test_an_empty_export_is_warned_of(tmp_path, write_config):
    """An ops engineer's nightly job gated on validate: an export with its columns and no rows passed, exit 0,
    without a word (score then refused the empty population)."""
    empty = pd.DataFrame({"cid": pd.Series([], dtype=str), "at": pd.Series([], dtype="datetime64[us]"), "amt": []})
    empty.to_parquet(tmp_path / "orders.parquet")
    columns = {"customer_id": "cid", "timestamp": "at", "amount": "amt"}
    table = {"source": {"path": str(tmp_path / "orders.parquet")}, "columns": columns}
    report = load_tables(load_config(write_config({"name": "t", "tables": {"transactions": table}}))).reports[
        "transactions"
    ]
    assert report.rows_read == 0
    assert any(w.endswith("has no rows: an export that failed or has not arrived yet?") for w in report.warnings)
