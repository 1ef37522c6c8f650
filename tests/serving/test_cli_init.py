"""``crmscore init``: a first config guessed from an export's column names and types, then validated."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from features.config import load_config
from features.draft import guess_mapping
from features.sources import load_tables
from serving.cli import app
from tests.conftest import CONFIGS, DATA


def test_the_mapping_is_guessed_from_names_and_types():
    schema = [
        ("Customer ID", "VARCHAR"),
        ("Created", "VARCHAR"),  # a name that could be a time, but the typed column wins
        ("Order Date", "TIMESTAMP"),
        ("Order No", "VARCHAR"),
        ("SKU", "VARCHAR"),
        ("Qty", "BIGINT"),
        ("Unit Price", "DOUBLE"),
        ("Region", "VARCHAR"),
        ("Notes", "VARCHAR"),
    ]
    draft = guess_mapping("transactions", schema, {"Region": 5, "Notes": 9_000, "Created": 300, "Customer ID": 4_000})
    assert draft.columns == {
        "customer_id": "Customer ID",
        "timestamp": "Order Date",
        "order_id": "Order No",
        "product_id": "SKU",
        "quantity": "Qty",
        "amount": 'Qty * "Unit Price"',
    }
    assert draft.attributes == {"region": "Region"}  # Notes has too many values to be an attribute
    assert "not mapped (add what you want as features): text (free text or ids) Created, Notes" in draft.notes


def test_numbers_left_unmapped_are_told_from_text():
    """A synthetic SaaS invoice export: `amount` in the local currency beside `amount_usd` (mapped) was
    listed as "free text, numbers or ids", where a user looks for a second money column."""
    schema = [
        ("Account ID", "VARCHAR"),
        ("invoice_date", "DATE"),
        ("amount", "DOUBLE"),
        ("amount_usd", "DOUBLE"),
        ("seats", "BIGINT"),
        ("memo", "VARCHAR"),
        ("paid_at", "TIMESTAMP"),
    ]
    draft = guess_mapping("transactions", schema, {"Account ID": 3_000, "memo": 9_000})
    assert draft.columns["amount"] == "amount_usd"
    assert draft.notes[-1] == (
        "not mapped (add what you want as features): numbers amount (named as amount is, beside the mapped "
        "'amount_usd': check which to score), seats; text (free text or ids) memo; times paid_at"
    )


def test_lead_columns_whose_names_say_post_outcome_are_drafted_under_exclude():
    schema = [
        ("Lead Id", "VARCHAR"),
        ("Created", "TIMESTAMP"),
        ("Won", "BOOLEAN"),  # the label: mapped, not excluded
        ("callDuration", "DOUBLE"),
        ("Lead Status", "VARCHAR"),
        ("closed_at", "TIMESTAMP"),  # mapped as converted_at
        ("Close Reason", "VARCHAR"),
        ("Expected Revenue", "DOUBLE"),
        ("poutcome", "VARCHAR"),  # the previous campaign's outcome: one word, known before
        ("Statistics Region", "VARCHAR"),  # "statistics" is not "status"
        ("job", "VARCHAR"),
    ]
    draft = guess_mapping("leads", schema, {})
    assert draft.columns["converted"] == "Won" and draft.columns["converted_at"] == "closed_at"
    assert [c for c, _ in draft.exclude] == ["callDuration", "Lead Status", "Close Reason", "Expected Revenue"]
    assert dict(draft.exclude)["Lead Status"] == "a lead's status moves with its outcome"
    assert any(n.startswith("exclude (the name says post-outcome") and "callDuration" in n for n in draft.notes)


def test_a_required_column_that_cannot_be_guessed_is_named_with_the_columns_there_are():
    with pytest.raises(ValueError) as info:
        guess_mapping("transactions", [("who", "VARCHAR"), ("when", "TIMESTAMP"), ("paid", "DOUBLE")], {"who": 10})
    assert str(info.value).startswith(
        "transactions: no column looks like customer_id, and none like amount, among who (varchar), when (timestamp), "
        "paid (double); map them in the config by hand"
    )


def test_init_reads_an_exports_text_dates_and_its_own_names(tmp_path):
    """A UK shop's CSV: `cust_no`, `order_ts` as "31/12/2010 14:05" text. init stopped at "no column looks
    like customer_id or timestamp" (both, it meant), then at every date failing to parse."""
    rows = pd.DataFrame(
        {
            "cust_no": ["0012", "0012", "0031", "0031", "0047"],
            "order_ts": [
                "01/12/2010 09:05",
                "13/01/2011 10:00",
                "02/02/2011 11:30",
                "28/02/2011 16:45",
                "05/03/2011 08:00",
            ],
            "net_value": [12.5, 3.0, 40.0, -5.0, 8.25],
            "account_manager": ["ann", "ann", "bob", "bob", "ann"],
        }
    )
    rows.to_csv(tmp_path / "x.csv", index=False)
    out = tmp_path / "shop.yaml"
    result = CliRunner().invoke(app, ["init", "--transactions", str(tmp_path / "x.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = yaml.safe_load(out.read_text())["tables"]["transactions"]
    assert table["columns"] == {"customer_id": "cust_no", "timestamp": "order_ts", "amount": "net_value"}
    assert table["timestamp_format"] == "%d/%m/%Y %H:%M" and table["attributes"] == {
        "account_manager": "account_manager"
    }
    assert "order_ts: text dates, read as timestamp_format '%d/%m/%Y %H:%M'" in out.read_text()
    frame = load_tables(load_config(out)).transactions.to_pandas()
    assert frame.timestamp.max() == pd.Timestamp("2011-03-05 08:00") and set(frame.customer_id) == {
        "0012",
        "0031",
        "0047",
    }
    # Days that are all 12 or less read both ways: the draft picks day-first and says so.
    rows.assign(order_ts=["01/02/2011 09:05"] * 5).to_csv(tmp_path / "x.csv", index=False)
    assert (
        CliRunner()
        .invoke(app, ["init", "--transactions", str(tmp_path / "x.csv"), "--out", str(out), "--force"])
        .exit_code
        == 0
    )
    assert "the values read as '%m/%d/%Y %H:%M' too: check which the export means" in out.read_text()


def test_init_reads_every_date_and_maps_a_few_bad_ones_through_try_strptime(tmp_path):
    """A month-first export sorted by date: its first 20,000 rows (all init read) had days of 12 or
    less, so init took it for day-first and validate refused 60% of it. And a handful of typos among
    the dates made init refuse the whole file, suggesting an edit to a config it had not written."""
    days = pd.date_range("2010-12-01", periods=60, freq="D").repeat(500)  # 30,000 rows, December first
    rows = pd.DataFrame({"cust_no": [f"c{i % 700}" for i in range(len(days))], "net_value": 10.0})
    rows["order_ts"] = days.strftime("%m/%d/%Y 09:30")
    rows.to_csv(tmp_path / "us.csv", index=False)
    out = tmp_path / "us.yaml"
    result = CliRunner().invoke(app, ["init", "--transactions", str(tmp_path / "us.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(out.read_text())["tables"]["transactions"]["timestamp_format"] == "%m/%d/%Y %H:%M"
    assert "too: check which" not in out.read_text()

    rows.loc[[5, 20_000], "order_ts"] = ["n/a", "02/30/2011 09:30"]
    rows.to_csv(tmp_path / "us.csv", index=False)
    result = CliRunner().invoke(app, ["init", "--transactions", str(tmp_path / "us.csv"), "--out", str(out), "--force"])
    assert result.exit_code == 0, result.output
    table = yaml.safe_load(out.read_text())["tables"]["transactions"]
    assert table["columns"]["timestamp"] == "try_strptime(order_ts, '%m/%d/%Y %H:%M')"
    assert "read as '%m/%d/%Y %H:%M' but for 2 of 30,000 values, whose rows try_strptime drops" in out.read_text()
    assert "  dropped: no timestamp                 2 (0.0%)" in result.stdout
    assert load_tables(load_config(out)).reports["transactions"].rows_kept == 29_998


@pytest.mark.parametrize(
    ("values", "read", "style"),
    [
        (["12,50", "1.234,00", "-3,10", "7"], [12.5, 1234.0, -3.1, 7.0], "a decimal comma"),
        (["$12.50", "$1,234.00", "-$3.10", "7"], [12.5, 1234.0, -3.1, 7.0], "a decimal point"),
        (["12,50 €", "1 234,00 €", "-3,10 €", "7 €"], [12.5, 1234.0, -3.1, 7.0], "a decimal comma"),
    ],
)
def test_init_reads_amounts_written_with_a_currency_or_a_decimal_comma(tmp_path, values, read, style):
    """A European export's `12,50` or a US one's `$1,234.00`: init stopped with "values must parse as a
    number" and wrote nothing. Now it maps the amount through an expression that reads them."""
    pd.DataFrame(
        {
            "customer": ["a", "b", "a", "c"],
            "day": ["2011-01-02", "2011-01-03", "2011-02-02", "2011-02-03"],
            "total": values,
        }
    ).to_csv(tmp_path / "orders.csv", index=False, sep=";")
    out = tmp_path / "orders.yaml"
    result = CliRunner().invoke(app, ["init", "--transactions", str(tmp_path / "orders.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"total: text numbers read with {style}" in out.read_text()
    tables = load_tables(load_config(out))
    amounts = tables.transactions.order_by("timestamp").amount.to_pyarrow().to_pylist()
    assert amounts == pytest.approx(read)


def test_init_drafts_the_bundled_mappings_and_validates_them(tmp_path):
    out = tmp_path / "mine.yaml"
    args = ["init", "--transactions", str(DATA / "online_retail_ii.parquet"), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--leads", str(DATA / "bank_marketing_leads.parquet")])
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith(f"wrote {out}; next: crmscore train churn --config {out}")
    drafted = yaml.safe_load(out.read_text())
    bundled = {name: yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()) for name in ("online_retail", "bank_leads")}
    # The guesses are the mappings written by hand for the bundled data (filters are for a person to add).
    assert drafted["tables"]["transactions"]["columns"] == bundled["online_retail"]["tables"]["transactions"]["columns"]
    assert drafted["tables"]["transactions"]["attributes"] == {"country": "Country"}
    assert drafted["tables"]["leads"]["columns"] == bundled["bank_leads"]["tables"]["leads"]["columns"]
    # ...and the post-outcome column the bundled config leaves out, from its name, with why (poutcome, the
    # previous campaign's outcome, is known before and stays a feature).
    assert drafted["tables"]["leads"]["exclude"] == bundled["bank_leads"]["tables"]["leads"]["exclude"] == ["duration"]
    assert "# duration: a call's or contact's length is known once it ended" in out.read_text()
    assert (
        drafted["models"]["churn"]["test_cutoff"]
        == bundled["online_retail"]["models"]["churn"]["test_cutoff"].isoformat()
    )
    assert drafted["models"]["lead"] == {"test_cutoff": "2010-11-01"}
    # Of the bundled filters, the one the rows suggest: lines priced at 0 or less, counted in a comment.
    transactions = bundled["online_retail"]["tables"]["transactions"]
    assert drafted["tables"]["transactions"]["filters"] == transactions["filters"][:1]
    assert "# 6,029 rows of the file have Price <= 0 (free lines" in out.read_text()
    assert "# 11,812 rows of the file are exact copies of another" in out.read_text()
    assert drafted["tables"]["transactions"]["drop_duplicates"] is False  # for a person to decide
    # Its own registered models, apart from the bundled demo's in the same ./mlflow.db (a new user's SaaS
    # champion had served the retail config from the shared crmscore-churn).
    assert drafted["registry_prefix"] == "crmscore-mine"
    config = load_config(out)
    report = load_tables(config).reports["transactions"]
    assert report.rows_kept == 809_490 and report.dropped["price not positive"] == 70
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "exists; pass --force to replace it" in again.stderr


def test_an_export_init_cannot_map_writes_nothing(tmp_path):
    pd.DataFrame({"who": ["a"], "when": pd.to_datetime(["2024-01-01"]), "paid": [1.0]}).to_csv(
        tmp_path / "x.csv", index=False
    )
    out = tmp_path / "x.yaml"
    result = CliRunner().invoke(app, ["init", "--transactions", str(tmp_path / "x.csv"), "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: transactions: no column looks like customer_id, and none like amount, among who"
    )
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "x.csv"]


@pytest.mark.parametrize("name", ["Customer ID", "No", "it's", 'Qty * "Unit Price"', "a:b", "null"])
def test_every_column_name_survives_the_yaml_it_is_written_to(name):
    from features.draft import _yaml_scalar

    assert yaml.safe_load(f"key: {_yaml_scalar(name)}") == {"key": name}


def test_customers_and_touchpoints_are_drafted_beside_the_transactions(tmp_path):
    """Hand-made exports of each table: the attributes of a customer include its numbers; a touchpoints
    file maps its event type and channel; each table without the one it goes with is refused."""
    days = pd.to_datetime(["2024-01-05", "2024-02-10", "2024-03-15", "2024-04-20"])
    pd.DataFrame(
        {
            "client_id": ["a", "a", "b", "c"],
            "order_date": days,
            "total": [10.0, 20.0, 5.0, 7.5],
            "order_id": list("wxyz"),
        }
    ).to_parquet(tmp_path / "orders.parquet")
    pd.DataFrame(
        {
            "Client ID": ["a", "b", "c"],
            "Signup Date": pd.to_datetime(["2023-12-01", "2024-01-20", "2024-02-01"]),
            "Segment": ["retail", "trade", "retail"],
            "Age": [34, 51, 28],
        }
    ).to_csv(tmp_path / "customers.csv", index=False)
    pd.DataFrame(
        {
            "client_id": ["a", "b"],
            "occurred_at": days[:2],
            "action": ["email_open", "visit"],
            "medium": ["email", "web"],
        }
    ).to_parquet(tmp_path / "touchpoints.parquet")
    out = tmp_path / "shop.yaml"
    args = ["init", "--transactions", str(tmp_path / "orders.parquet"), "--out", str(out)]
    extra = ["--customers", str(tmp_path / "customers.csv"), "--events", str(tmp_path / "touchpoints.parquet")]
    result = CliRunner().invoke(app, [*args, *extra])
    assert result.exit_code == 0, result.output
    tables = yaml.safe_load(out.read_text())["tables"]
    assert list(tables) == ["transactions", "customers", "events"]
    assert tables["customers"]["columns"] == {"customer_id": "Client ID", "signup_at": "Signup Date"}
    assert tables["customers"]["attributes"] == {"segment": "Segment", "age": "Age"}
    assert tables["events"]["columns"] == {
        "customer_id": "client_id",
        "timestamp": "occurred_at",
        "event_type": "action",
        "channel": "medium",
    }
    assert load_tables(load_config(out)).reports["events"].event_types == {"email_open": 1, "visit": 1}
    alone = CliRunner().invoke(
        app, ["init", "--leads", str(DATA / "bank_marketing_leads.parquet"), "--out", str(tmp_path / "l.yaml"), *extra]
    )
    assert alone.exit_code == 2 and "--customers goes with --transactions: give both" in alone.stderr


def test_a_failed_draft_leaves_no_folder_behind(tmp_path):
    """The draft is checked before anything is written: a new --out folder is made only for a good one."""
    pd.DataFrame({"customer_id": ["a"], "ts": ["not a time"], "amount": [1.0]}).to_csv(tmp_path / "x.csv", index=False)
    out = tmp_path / "new" / "x.yaml"
    result = CliRunner().invoke(app, ["init", "--transactions", str(tmp_path / "x.csv"), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "new").exists()
    good = CliRunner().invoke(
        app, ["init", "--transactions", str(DATA / "online_retail_ii.parquet"), "--out", str(out)]
    )
    assert good.exit_code == 0, good.output
    assert load_config(out).tables.transactions.source.path == str(DATA / "online_retail_ii.parquet")


def test_an_attributes_drafted_name_keeps_its_words():
    """`account_manager` was drafted as `accountmanager`: the name a user then posts and filters on."""
    from features.draft import _snake

    assert [_snake(c) for c in ("account_manager", "Customer Segment", "customerSegment", "Country", "2nd_phone")] == [
        "account_manager",
        "customer_segment",
        "customer_segment",
        "country",
        "a_2nd_phone",
    ]


def test_a_currency_closing_a_column_name_does_not_hide_what_it_is():
    """ "Amount EUR" and "Price (USD)" were no amount and no price to init; "Chauffeur" keeps its name."""
    schema = [("Customer ID", "VARCHAR"), ("Date", "TIMESTAMP"), ("Amount EUR", "DOUBLE"), ("Chauffeur", "VARCHAR")]
    draft = guess_mapping("transactions", schema, {"Customer ID": 4_000, "Chauffeur": 12})
    assert draft.columns["amount"] == "Amount EUR" and draft.attributes == {"chauffeur": "Chauffeur"}


def test_init_reads_monthly_files_by_a_glob(tmp_path):
    """A config's source path may be a glob; init said 'no such file' for one."""
    rows = pd.read_parquet(DATA / "online_retail_ii.parquet").head(3_000)
    (tmp_path / "monthly").mkdir()
    for i, part in enumerate((rows.iloc[:1_500], rows.iloc[1_500:])):
        part.to_parquet(tmp_path / "monthly" / f"2009-{i:02d}.parquet")
    out = tmp_path / "shop.yaml"
    pattern = str(tmp_path / "monthly" / "*.parquet")
    result = CliRunner().invoke(app, ["init", "--transactions", pattern, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(out.read_text())["tables"]["transactions"]["source"]["path"] == "monthly/*.parquet"
    assert "rows read     3,000" in result.stdout
    missing = CliRunner().invoke(
        app, ["init", "--transactions", str(tmp_path / "none-*.csv"), "--out", str(tmp_path / "x.yaml")]
    )
    assert missing.exit_code == 2 and "none-*.csv: no file matches" in missing.output


def _saas_orders(folder, customers=("a", "b", "c")):
    """A synthetic SaaS billing export (hand-made, not real data): one invoice a month per customer,
    2024, with typed dates, written as Parquet."""
    months = pd.date_range("2024-01-01", periods=12, freq="MS")
    pd.DataFrame(
        {
            "account_id": [c for _ in months for c in customers],
            "invoice_date": months.repeat(len(customers)),
            "amount": 10.0,
        }
    ).to_parquet(folder / "invoices.parquet")
    return folder / "invoices.parquet"


def test_iso_text_times_with_an_offset_need_no_timestamp_format(tmp_path):
    """Synthetic touchpoints whose `occurred_at` is ISO text with offsets, 'Z' and fractions of a second
    (a SaaS event export): the loader reads it as UTC, yet init noted "text in no format init knows;
    set timestamp_format by hand" (and a %z format would not read the 'Z')."""
    pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "a"],
            "event_type": ["login", "login", "page_view", "login"],
            "occurred_at": [
                "2024-07-06T01:00:00+01:00",
                "2024-06-14T03:53:58Z",
                "2024-05-31T06:41:59.250-05:00",
                "2024-03-01 10:00:00",
            ],
        }
    ).to_parquet(tmp_path / "events.parquet")
    out = tmp_path / "saas.yaml"
    args = ["init", "--transactions", str(_saas_orders(tmp_path)), "--events", str(tmp_path / "events.parquet")]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "timestamp_format" not in yaml.safe_load(text)["tables"]["events"]
    assert "occurred_at: ISO 8601 text, read as it is (an offset or Z converted to UTC)" in text
    assert "no format init knows" not in text + result.stdout and "%z" not in text + result.stdout
    events = load_tables(load_config(out)).events.order_by("timestamp").to_pandas()
    assert list(events.timestamp) == [
        pd.Timestamp("2024-03-01 10:00:00"),
        pd.Timestamp("2024-05-31 11:41:59.250"),
        pd.Timestamp("2024-06-14 03:53:58"),
        pd.Timestamp("2024-07-06 00:00:00"),
    ]


def _saas_leads(folder, created, converted):
    """Synthetic CRM leads (hand-made, not real data) with the given text times, as CSV, and their
    touchpoints with typed times."""
    pd.DataFrame(
        {
            "Lead ID": [f"L-{i}" for i in range(len(created))],
            "Created Date": created,
            "Converted": [c is not None for c in converted],
            "Converted Date": converted,
            "Lead Source": ["web", "ads"] * (len(created) // 2),
        }
    ).to_csv(folder / "leads.csv", index=False)
    pd.DataFrame(
        {"Lead ID": ["L-0", "L-1"], "activity": ["demo", "webinar"], "activity_ts": ["2024-01-02", "2024-01-03"]}
    ).to_csv(folder / "lead_activities.csv", index=False)
    return ["--leads", str(folder / "leads.csv"), "--lead-events", str(folder / "lead_activities.csv")]


def test_init_reads_a_12_hour_clock(tmp_path):
    """A US CRM's "05/20/2024 05:14 PM": init stopped with the loader's "values must parse as a
    timestamp ... (set timestamp_format in the config)" and wrote nothing."""
    created = ["01/05/2024 05:14 AM", "01/20/2024 07:49 PM", "02/13/2024 12:21 AM", "03/22/2024 12:52 PM"]
    converted = ["02/15/2024 04:46 PM", None, None, "04/01/2024 09:05 AM"]
    out = tmp_path / "leads.yaml"
    result = CliRunner().invoke(app, ["init", *_saas_leads(tmp_path, created, converted), "--out", str(out)])
    assert result.exit_code == 0, result.output
    leads = yaml.safe_load(out.read_text())["tables"]["leads"]
    assert leads["timestamp_format"] == "%m/%d/%Y %I:%M %p"
    frame = load_tables(load_config(out)).leads.order_by("created_at").to_pandas()
    assert list(frame.created_at) == [
        pd.Timestamp("2024-01-05 05:14"),
        pd.Timestamp("2024-01-20 19:49"),
        pd.Timestamp("2024-02-13 00:21"),
        pd.Timestamp("2024-03-22 12:52"),
    ]
    assert frame.converted_at.iloc[0] == pd.Timestamp("2024-02-15 16:46")


def test_text_dates_init_cannot_read_are_named_with_examples(tmp_path):
    """Synthetic leads whose converted date is in no format init knows: the draft is written without
    it (the outcome's time, so under exclude), the note naming it with examples. A required time no
    format reads stops init with the same, not with "set timestamp_format in the config" (unwritten)."""
    created = ["2024-01-05 05:14:00", "2024-01-20 19:49:00", "2024-02-13 00:21:00", "2024-03-22 12:52:00"]
    converted = ["Feb 15th 2024", None, None, "early April"]
    out = tmp_path / "leads.yaml"
    result = CliRunner().invoke(app, ["init", *_saas_leads(tmp_path, created, converted), "--out", str(out)])
    assert result.exit_code == 0, result.output
    leads = yaml.safe_load(out.read_text())["tables"]["leads"]
    assert "converted_at" not in leads["columns"] and leads["exclude"] == ["Converted Date"]
    assert (
        "Converted Date: not mapped as converted_at, text init cannot read as dates: 2 of its 2 values are in no "
        "date format init knows, e.g. 'Feb 15th 2024', 'early April'; map converted_at: Converted Date by hand "
        "with timestamp_format"
    ) in out.read_text()
    assert "%z" not in out.read_text()

    pd.DataFrame({"customer_id": ["a", "b"], "ts": ["Jan 5th", "Jan 6th"], "amount": [1.0, 2.0]}).to_csv(
        tmp_path / "orders.csv", index=False
    )
    result = CliRunner().invoke(
        app, ["init", "--transactions", str(tmp_path / "orders.csv"), "--out", str(tmp_path / "x.yaml")]
    )
    assert result.exit_code == 2 and not (tmp_path / "x.yaml").exists()
    assert result.stderr.startswith(
        "error: transactions: ts (taken for timestamp) is text init cannot read as dates: 2 of its 2 values are "
        "in no date format init knows, e.g. 'Jan 5th', 'Jan 6th'; map it in the config by hand with timestamp_format"
    )
    assert "set timestamp_format in the config" not in result.stderr


def test_a_format_for_one_text_time_leaves_an_iso_one_as_it_is(tmp_path):
    """Synthetic leads created at ISO text times with an offset, converted at day-first ones: a
    table's timestamp_format would apply to both (and not read the ISO one), so the day-first column
    is read by try_strptime in its format."""
    created = ["2024-01-05T05:14:00+01:00", "2024-01-20T19:49:00Z", "2024-02-13T00:21:00Z", "2024-03-22T12:52:00Z"]
    converted = ["15/02/2024 16:46", None, None, "01/04/2024 09:05"]
    out = tmp_path / "leads.yaml"
    result = CliRunner().invoke(
        app, ["init", *_saas_leads(tmp_path, created, converted), "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    leads = yaml.safe_load(out.read_text())["tables"]["leads"]
    assert "timestamp_format" not in leads
    assert leads["columns"]["converted_at"] == "try_strptime(\"Converted Date\", '%d/%m/%Y %H:%M')"
    frame = load_tables(load_config(out)).leads.order_by("created_at").to_pandas()
    assert frame.created_at.iloc[0] == pd.Timestamp("2024-01-05 04:14")
    assert frame.converted_at.iloc[0] == pd.Timestamp("2024-02-15 16:46")


def test_every_table_with_exact_copies_gets_drop_duplicates_with_their_count(tmp_path):
    """Synthetic touchpoints with rows sent twice (a retried webhook): init printed "exact duplicate
    rows" for them, but drafted drop_duplicates, with the count, for the transactions only."""
    events = pd.DataFrame(
        {
            "account_id": ["a", "b", "c"],
            "event_type": ["login", "login", "page_view"],
            "occurred_at": pd.to_datetime(["2024-03-01 10:00", "2024-03-02 11:00", "2024-03-03 12:00"]),
        }
    )
    pd.concat([events, events.iloc[:2]]).to_parquet(tmp_path / "events.parquet")
    pd.DataFrame({"account_id": ["a", "b", "c"], "plan": ["pro", "free", "pro"]}).to_csv(
        tmp_path / "accounts.csv", index=False
    )
    out = tmp_path / "saas.yaml"
    extra = ["--events", str(tmp_path / "events.parquet"), "--customers", str(tmp_path / "accounts.csv")]
    result = CliRunner().invoke(app, ["init", "--transactions", str(_saas_orders(tmp_path)), *extra, "--out", str(out)])
    assert result.exit_code == 0, result.output
    tables = yaml.safe_load(out.read_text())["tables"]
    assert tables["events"]["drop_duplicates"] is False and "drop_duplicates" not in tables["customers"]
    assert "    # 2 rows of the file are exact copies of another: true drops the copies" in out.read_text()
    assert tables["transactions"]["drop_duplicates"] is False  # always there, as before
