import datetime as dt

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.config import ModelConfig, load_config
from features.pipeline import (
    ENTITY,
    TASKS,
    build_training_set,
    customer_features,
    hazard_cutoffs,
    lead_features,
    population_features,
    training_cutoffs,
    write_snapshot,
)
from features.sources import load_tables
from tests.conftest import CONFIGS, DATA
from tests.features.conftest import AS_OF_FORMS, FUTURE_ROWS, ROWS, make_tables, sorted_frame, tx


def test_public_names():
    assert TASKS == ("churn", "next_purchase", "lead")
    assert ENTITY == {"churn": "customer_id", "next_purchase": "customer_id", "lead": "lead_id"}


@pytest.mark.parametrize("as_of", AS_OF_FORMS)
def test_appending_later_transactions_changes_no_feature(as_of):
    before = sorted_frame(customer_features(make_tables(tx(ROWS)), as_of=as_of))
    after = sorted_frame(customer_features(make_tables(tx(ROWS + FUTURE_ROWS)), as_of=as_of))
    assert before.customer_id.tolist() == ["a", "b"]
    pd.testing.assert_frame_equal(before, after)


def test_lookback_sets_the_population_not_the_features():
    tables = make_tables(tx(ROWS))
    everyone = sorted_frame(customer_features(tables, as_of="2024-03-31"))
    recent = sorted_frame(customer_features(tables, as_of="2024-03-31", lookback_days=300))
    assert recent.customer_id.tolist() == ["a"]  # b last bought 350.5 days before
    pd.testing.assert_frame_equal(recent, everyone.iloc[[0]])


def test_population_features_hand_off():
    frame = tx(ROWS)
    frame["country"] = ["UK"] * 6 + ["DE"] * 2
    mc = ModelConfig(horizon_days=10, lookback_days=300)
    churn = population_features(make_tables(frame), "churn", as_of="2024-03-31", model_config=mc)
    assert list(churn.columns[:2]) == ["customer_id", "as_of"]
    assert churn.customer_id.tolist() == ["a"]
    assert (churn.as_of == pd.Timestamp("2024-03-31")).all()
    assert isinstance(churn.country.dtype, pd.CategoricalDtype)
    np_ = population_features(make_tables(frame), "next_purchase", as_of="2024-03-31", model_config=mc)
    assert np_.customer_id.tolist() == ["a", "b"]


def _weekly_history() -> pd.DataFrame:
    # Customer "w" buys every week of 2023-2024; "m" monthly until mid-2023.
    rows = [
        ("w", d, 10, f"w{i}", "p", 1, "x") for i, d in enumerate(pd.date_range("2023-01-02", "2024-12-30", freq="7D"))
    ]
    rows += [
        ("m", d, 50, f"m{i}", "p", 1, "x") for i, d in enumerate(pd.date_range("2023-01-01", "2023-07-01", freq="MS"))
    ]
    return tx([(c, str(d), a, o, p, q, k) for c, d, a, o, p, q, k in rows])


@pytest.mark.parametrize("test_cutoff", [dt.date(2024, 6, 1), "2024-06-01", dt.datetime(2024, 6, 1)])
def test_training_set_cutoffs_and_columns(test_cutoff):
    mc = ModelConfig(horizon_days=30, lookback_days=365, step_days=14, n_train_cutoffs=3)
    ts = build_training_set(make_tables(_weekly_history()), "churn", model_config=mc, test_cutoff=test_cutoff)
    assert ts.cutoffs == (dt.date(2024, 5, 2), dt.date(2024, 4, 18), dt.date(2024, 4, 4))
    assert ts.test_cutoff == dt.date(2024, 6, 1)
    assert sorted(ts.train.as_of.unique()) == [pd.Timestamp(c) for c in sorted(ts.cutoffs)]
    assert (ts.test.as_of == pd.Timestamp("2024-06-01")).all()
    assert list(ts.train.columns) == list(ts.test.columns)
    assert ts.train.columns[:2].tolist() == ["customer_id", "as_of"] and ts.train.columns[-1] == "label"
    assert ts.feature_columns == tuple(ts.train.columns[2:-1])
    assert ts.entity == "customer_id" and ts.task == "churn"
    assert ts.vocabulary == {"transactions.attributes": ()}  # no attribute column, no events table
    # m's last purchase is 2023-07-01: outside the 365-day lookback of every cut-off from 2024-07 on
    assert set(ts.train.customer_id) == {"w", "m"} and set(ts.test.customer_id) == {"w", "m"}
    assert ts.test.set_index("customer_id").label.to_dict() == {"w": 0, "m": 1}


def test_next_purchase_training_set_has_spend():
    mc = ModelConfig(horizon_days=30, step_days=30, n_train_cutoffs=2, test_cutoff=dt.date(2024, 6, 1))
    ts = build_training_set(make_tables(_weekly_history()), "next_purchase", model_config=mc)
    assert list(ts.test.columns[-2:]) == ["label", "spend"]
    assert "spend" not in ts.feature_columns
    # w buys on Mondays: 2024-06-03 ... 2024-07-01, five orders of 10 in (2024-06-01, 2024-07-01]
    assert ts.test.set_index("customer_id").spend.to_dict() == {"m": 0.0, "w": 50.0}


def test_training_label_window_past_t_is_an_error():
    mc = ModelConfig(horizon_days=30, test_cutoff=dt.date(2024, 6, 1))
    tables = make_tables(_weekly_history())
    # 2024-05-02 + 30 days is exactly T: allowed; one second later is not.
    build_training_set(tables, "churn", model_config=mc, cutoffs=["2024-05-02"])
    with pytest.raises(ValueError, match="past the test cut-off"):
        build_training_set(tables, "churn", model_config=mc, cutoffs=["2024-05-02T00:00:01"])
    with pytest.raises(ValueError, match="no test cut-off"):
        build_training_set(tables, "churn", model_config=ModelConfig())


def test_hazard_cutoffs_step_back_from_a_week_before_the_end_to_the_warm_up():
    got = hazard_cutoffs("2024-06-01", step_days=28, first="2023-01-01 08:30")
    assert got[:2] == (dt.datetime(2024, 5, 25), dt.datetime(2024, 4, 27))
    # The last one is the first at least 90 days after the data's first row (2023-04-01 08:30).
    assert got[-1] == dt.datetime(2023, 4, 29) and len(got) == 15
    assert all(a - b == dt.timedelta(days=28) for a, b in zip(got, got[1:], strict=False))
    assert hazard_cutoffs("2023-04-01", step_days=28, first="2023-01-01") == ()
    with pytest.raises(ValueError, match="step_days must be positive"):
        hazard_cutoffs("2024-06-01", step_days=0, first="2023-01-01")


def test_training_set_hazard_rows():
    mc = ModelConfig(horizon_days=30, lookback_days=365, step_days=14, n_train_cutoffs=3)
    tables = make_tables(_weekly_history())
    ts = build_training_set(tables, "churn", model_config=mc, test_cutoff="2024-06-01", hazard_step_days=28)
    plain = build_training_set(tables, "churn", model_config=mc, test_cutoff="2024-06-01")
    assert plain.hazard is None
    pd.testing.assert_frame_equal(ts.train, plain.train)
    cutoffs = hazard_cutoffs("2024-06-01", step_days=28, first="2023-01-01")
    assert sorted(ts.hazard.as_of.unique()) == sorted(pd.Timestamp(c) for c in cutoffs)
    assert list(ts.hazard.columns) == ["customer_id", "as_of", *ts.feature_columns, "days_to_next"]
    by = ts.hazard.set_index(["customer_id", "as_of"]).days_to_next
    # w buys every Monday: from Saturday 2024-05-25 the next is two days on.
    assert by[("w", pd.Timestamp("2024-05-25"))] == 2.0
    # m's last purchase (2023-07-01) is 7 days after the 2023-06-24 cut-off; none after the next one.
    assert by[("m", pd.Timestamp("2023-06-24"))] == 7.0
    assert np.isnan(by[("m", pd.Timestamp("2023-07-22"))])
    # The features at a hazard cut-off are those of the pipeline at that date.
    at = population_features(tables, "churn", as_of="2024-05-25", model_config=mc)
    got = ts.hazard[ts.hazard.as_of == pd.Timestamp("2024-05-25")].drop(columns="days_to_next").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, at, check_dtype=False)
    leads = pd.DataFrame(
        {"lead_id": ["l1", "l2"], "created_at": pd.to_datetime(["2024-01-01", "2024-04-01"]), "converted": [1, 0]}
    )
    with pytest.raises(ValueError, match="customer tasks"):
        build_training_set(
            make_tables(leads=leads), "lead", model_config=mc, test_cutoff="2024-03-01", hazard_step_days=28
        )


def test_a_training_set_is_one_compiled_query_run_at_every_cutoff(monkeypatch):
    """On DuckDB the rows at every cut-off come from one query compiled with the cut-off in
    variables; they equal rows built with each cut-off as literals, labels, spend, days to the next
    purchase and the event columns (whose vocabulary comes from the rows) included."""
    from features.pipeline import _hazard_rows, _labelled, _to_pandas
    from features.timebase import Cutoff

    events = pd.DataFrame(
        {
            "customer_id": ["w", "w", "m"],
            "timestamp": pd.to_datetime(["2024-03-30 10:00", "2023-05-01 00:00", "2023-06-15 00:00"]),
            "event_type": ["email", "visit", "email"],
            "channel": ["web", "web", "phone"],
        }
    )
    tables = make_tables(_weekly_history(), events=events)
    compiled = []  # the real compile, counted
    compile_sql = type(tables.con).compile
    monkeypatch.setattr(
        type(tables.con), "compile", lambda con, *a, **k: compiled.append(1) or compile_sql(con, *a, **k)
    )
    mc = ModelConfig(horizon_days=30, lookback_days=365, step_days=14, n_train_cutoffs=3)
    for task in ("churn", "next_purchase"):
        sizes = []
        for n, hazard_step in ((1, 112), (3, 56)):  # 1 + 1 and 3 + 1 labelled cut-offs; 4 and 8 hazard ones
            compiled.clear()
            ts = build_training_set(
                tables,
                task,
                model_config=mc.model_copy(update={"n_train_cutoffs": n}),
                test_cutoff="2024-06-01 12:30",
                hazard_step_days=hazard_step,
            )
            sizes.append((ts.train.as_of.nunique(), ts.hazard.as_of.nunique(), len(compiled)))
        # More cut-offs, no more SQL compiled.
        assert sizes[0][:2] == (1, 4) and sizes[1][:2] == (3, 8) and sizes[0][2] == sizes[1][2], sizes
        assert any(c.startswith("events_") for c in ts.feature_columns)
        # The latest training cut-off, the test cut-off, and the hazard's latest and earliest (before any event).
        assert ts.hazard[ts.hazard.as_of == ts.hazard.as_of.min()]["events_total"].isna().all()
        assert ts.hazard["events_total"].dtype == "float64"  # numeric, as before the concat's upcast
        for frame, rows in ((ts.train, _labelled), (ts.test, _labelled), (ts.hazard, _hazard_rows)):
            for as_of in {frame.as_of.max(), frame.as_of.min()} if frame is ts.hazard else {frame.as_of.max()}:
                got = frame[frame.as_of == as_of]
                literal = _to_pandas(rows(tables, task, Cutoff(as_of.to_pydatetime()), mc), ENTITY[task], as_of)
                assert len(literal) > 0, (task, as_of)
                # Stacked, an integer column is float where an early cut-off (before the first event) is all null.
                pd.testing.assert_frame_equal(got.reset_index(drop=True), literal, check_dtype=False)
    # Before the first event every touchpoint count is null: still a number, not an empty category.
    early = population_features(tables, "churn", as_of="2023-04-15", model_config=mc)
    assert early["events_total"].isna().all() and early["events_total"].dtype == "float64"


def test_a_test_cutoff_too_early_for_the_hazard_head_names_the_first_row():
    mc = ModelConfig(horizon_days=30, step_days=14, n_train_cutoffs=1)
    with pytest.raises(ValueError) as info:
        build_training_set(
            make_tables(_weekly_history()), "churn", model_config=mc, test_cutoff="2023-04-01", hazard_step_days=28
        )
    # Was "(2023-01-01 if first else 'none')": an f-string inside the message's text.
    assert "must lie 90 days after the first row of table 'transactions' (2023-01-01). Use a later" in str(info.value)


def test_training_cutoffs():
    assert training_cutoffs("2011-09-10", horizon_days=90, step_days=30, n=3) == (
        dt.datetime(2011, 6, 12),
        dt.datetime(2011, 5, 13),
        dt.datetime(2011, 4, 13),
    )


def test_lead_training_set_categoricals_aligned():
    leads = pd.DataFrame(
        {
            "lead_id": [f"l{i}" for i in range(6)],
            "created_at": pd.to_datetime(
                ["2024-01-01", "2024-01-01", "2024-02-01", "2024-02-01", "2024-03-01", "2024-03-01"]
            ),
            "converted": [0.0, 1.0, 0.0, 1.0, 1.0, 0.0],
            "job": ["a", "b", "c", "a", "d", "b"],
        }
    )
    mc = ModelConfig(horizon_days=30, step_days=30, n_train_cutoffs=2, test_cutoff=dt.date(2024, 3, 1))
    ts = build_training_set(make_tables(leads=leads), "lead", model_config=mc)
    assert ts.entity == "lead_id" and ts.categorical_columns == ("job",)
    assert list(ts.train.job.cat.categories) == list(ts.test.job.cat.categories) == ["a", "b", "c", "d"]
    # test: open leads created in (2024-01-31, 2024-03-01]; the first training cut-off 2024-01-31 has none
    assert ts.test.lead_id.tolist() == ["l2", "l3", "l4", "l5"]
    assert ts.train.lead_id.tolist() == ["l0", "l1"]


def test_write_snapshot(tmp_path, write_config):
    frame = tx(ROWS)
    frame.to_parquet(tmp_path / "tx.parquet")
    path = write_config(
        {
            "name": "tiny",
            "tables": {
                "transactions": {
                    "source": {"path": "tx.parquet"},
                    "columns": {c: c for c in ["customer_id", "timestamp", "amount", "order_id", "product_id"]},
                }
            },
            "models": {"churn": {"lookback_days": 365}},
        }
    )
    out = tmp_path / "snap" / "features.parquet"
    n = write_snapshot(load_config(path), as_of="2024-03-31", out=out)
    assert n == 2
    snap = pq.read_table(out).to_pandas()
    assert snap.customer_id.tolist() == ["a", "b"]
    assert [p.name for p in out.parent.iterdir()] == ["features.parquet"]  # no temporary file left


@pytest.mark.slow
def test_bundled_online_retail_leakage_and_snapshot(tmp_path):
    config = load_config(CONFIGS / "online_retail.yaml")
    tables = load_tables(config)
    as_of = dt.datetime(2011, 6, 1)
    full = sorted_frame(customer_features(tables, as_of=as_of))
    t = tables.transactions
    tables.transactions = t.filter(t.timestamp <= as_of)
    cut = sorted_frame(customer_features(tables, as_of=as_of))
    pd.testing.assert_frame_equal(full, cut)
    assert len(full) > 3000


@pytest.mark.slow
def test_bundled_bank_leads_leakage():
    config = load_config(CONFIGS / "bank_leads.yaml")
    tables = load_tables(config)
    as_of = dt.datetime(2009, 6, 1)
    full = sorted_frame(lead_features(tables, as_of=as_of, horizon_days=30, step_days=30), key="lead_id")
    tables.leads = tables.leads.filter(tables.leads.created_at <= as_of)
    cut = sorted_frame(lead_features(tables, as_of=as_of, horizon_days=30, step_days=30), key="lead_id")
    pd.testing.assert_frame_equal(full, cut)
    assert len(full) > 0 and "duration" not in full.columns and "converted" not in full.columns


@pytest.mark.slow
def test_bundled_snapshot_one_row_per_active_customer(tmp_path):
    config = load_config(CONFIGS / "online_retail.yaml")
    out = tmp_path / "f.parquet"
    n = write_snapshot(config, as_of="2011-09-10", out=out)
    snap = pq.read_table(out).to_pandas()
    assert n == len(snap) == snap.customer_id.nunique()
    assert snap.recency_days.max() < 365 and n > 4000
    assert DATA.exists()


def test_stable_floats_removes_summation_noise():
    from features.pipeline import stable_floats

    noisy = np.array([0.0, 5.7e-14, -3e-10, 1234.5678901234567, 1234.5678901234569, np.nan, 1 / 3, 123456789.123456789])
    got = stable_floats(noisy)
    assert got[0] == got[1] == got[2] == 0.0
    assert got[3] == got[4] == 1234.56789012
    assert np.isnan(got[5])
    assert got[6] == 0.333333333333
    assert got[7] == 123456789.123


@pytest.mark.slow
def test_bundled_features_are_stable_run_to_run():
    """DuckDB sums in parallel in no fixed order; after rounding, all but a handful of values (sums that
    land exactly on a rounding half) are bit-identical between two runs, and none differs by more
    than 1e-6 relative. (Without the rounding about 11% of money values differed in their last bits.)"""
    config = load_config(CONFIGS / "online_retail.yaml")
    mc = config.models.churn
    retail_tables = load_tables(config)
    first = population_features(retail_tables, "churn", as_of="2011-09-10", model_config=mc)
    second = population_features(retail_tables, "churn", as_of="2011-09-10", model_config=mc)
    pd.testing.assert_frame_equal(first, second, check_exact=False, rtol=1e-6)
    numeric = first.select_dtypes("number").columns
    a, b = first[numeric].to_numpy(), second[numeric].to_numpy()
    differ = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    assert differ.sum() <= a.size * 1e-4


def test_a_model_keeps_its_category_attributes_when_an_export_has_more_values():
    """Trained when ``segment`` had 3 values, it is a category feature; a later export where it
    has 101 (over MAX_CARDINALITY, so read from the rows it would be dropped as free text) still
    gives the model its column."""
    from features.pipeline import vocabularies

    mc = ModelConfig(horizon_days=30)
    base = _weekly_history()
    trained = make_tables(base.assign(segment=np.where(base.customer_id == "w", "gold", "silver")))
    vocabulary = vocabularies(trained)
    assert vocabulary == {"transactions.attributes": ("segment",)}
    later = base.assign(segment=[f"s{i % 101}" for i in range(len(base))])
    export = make_tables(later)
    own = population_features(export, "churn", as_of="2024-06-01", model_config=mc)
    fixed = population_features(export.with_vocabulary(vocabulary), "churn", as_of="2024-06-01", model_config=mc)
    assert "segment" not in own.columns and "segment" in fixed.columns
    assert fixed.segment.notna().all()


def test_compiled_feature_sql_is_reused_only_when_nothing_in_it_came_from_the_rows():
    """Hand-made: the cache keys on the columns and the model's vocabulary, not the cut-off; a hit
    runs the stored SQL on the new rows of the same-named tables, at its own cut-off, and gives what
    building afresh gives."""
    import ibis

    from features.pipeline import CompiledQueries
    from features.sources import CanonicalTables

    con = ibis.duckdb.connect()
    mc = ModelConfig(horizon_days=30)

    def tables(frame: pd.DataFrame, vocabulary=None) -> CanonicalTables:
        t = con.create_table("transactions", frame, temp=True, overwrite=True)
        return CanonicalTables(con=con, transactions=t).with_vocabulary(vocabulary)

    def features(t: CanonicalTables, as_of: str, cache: CompiledQueries | None) -> pd.DataFrame:
        return population_features(t, "next_purchase", as_of=as_of, model_config=mc, compiled=cache)

    heard: list[tuple[str, str]] = []
    cache = CompiledQueries(maxsize=2, on_lookup=lambda task, result: heard.append((task, result)))
    base = _weekly_history()
    # No vocabulary: the category attributes come from the rows, so there is no key and nothing is kept.
    assert CompiledQueries.key(tables(base), "next_purchase", mc) is None
    features(tables(base), "2024-06-01", cache)
    assert (cache.hits, cache.misses, cache.uncacheable, len(cache)) == (0, 0, 1, 0)

    vocabulary = {"transactions.attributes": ("category",)}
    first = features(tables(base, vocabulary), "2024-06-01", cache)
    assert (cache.hits, cache.misses) == (0, 1)
    later = base.assign(amount=base.amount * 3, category="z")  # new rows, same columns
    again = features(tables(later, vocabulary), "2024-06-01", cache)
    assert (cache.hits, cache.misses) == (1, 1)
    pd.testing.assert_frame_equal(again, features(tables(later, vocabulary), "2024-06-01", None))
    assert not again.equals(first) and set(again.category) == {"z"}

    # Another cut-off, a time of day: the same query (the SQL reads the cut-off from variables).
    other = features(tables(later, vocabulary), "2024-07-01 13:45:10.5", cache)
    assert (cache.hits, cache.misses) == (2, 1)
    pd.testing.assert_frame_equal(other, features(tables(later, vocabulary), "2024-07-01 13:45:10.5", None))
    assert not other.equals(again)
    features(tables(later.assign(segment="s"), vocabulary), "2024-07-01", cache)  # another column
    features(tables(later.assign(channel="c"), vocabulary), "2024-07-01", cache)  # and another
    assert (cache.hits, cache.misses, len(cache)) == (2, 3, 2)  # the oldest was dropped
    assert [result for _, result in heard] == ["uncacheable", "miss", "hit", "hit", "miss", "miss"]
    assert {task for task, _ in heard} == {"next_purchase"}


def _cached_and_literal(tables, task: str, as_of: str, mc: ModelConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The features of the compiled-SQL cache (the cut-off in variables, the query compiled by the
    first call and run by the second) and of an expression built with the cut-off as literals."""
    from features.pipeline import CompiledQueries

    cache = CompiledQueries()
    population_features(tables, task, as_of="2000-01-01", model_config=mc, compiled=cache)  # compiles the query
    cached = population_features(tables, task, as_of=as_of, model_config=mc, compiled=cache)
    assert (cache.misses, cache.hits) == (1, 1)
    ((sql, _),) = cache._queries.values()
    assert "GETVARIABLE('crmscore_as_of_at')" in sql and "2000-01-01" not in sql and as_of[:10] not in sql
    return cached, population_features(tables, task, as_of=as_of, model_config=mc)


@pytest.mark.parametrize("as_of", ["2024-03-31", "2024-03-31 00:00:00.000001", "2023-12-31 18:30:15.25"])
def test_cached_sql_with_the_cutoff_in_variables_gives_the_literal_features_hand_made(as_of):
    """Every family that reads the cut-off (history windows, calendar days, horizon months, signup
    age, touchpoint recency) on hand-made tables with a customers table and events."""
    from features.pipeline import vocabularies

    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "signup_at": pd.to_datetime(["2023-01-05 08:00", "2024-01-01 00:00"]),
            "segment": ["x", None],
        }
    )
    events = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "timestamp": pd.to_datetime(["2024-03-30 10:00", "2023-12-31 18:30:15.25", "2024-02-01"], format="ISO8601"),
            "event_type": ["email", "visit", "email"],
            "channel": ["web", "web", "phone"],
        }
    )
    import ibis

    from features.sources import CanonicalTables

    con = ibis.duckdb.connect()  # named tables: compiled SQL names them (memtables are registered on execution)
    frames = {"transactions": tx(ROWS + FUTURE_ROWS), "customers": customers, "events": events}
    tables = CanonicalTables(con=con, **{name: con.create_table(name, f, temp=True) for name, f in frames.items()})
    tables = tables.with_vocabulary(vocabularies(tables))
    for task, horizon in (("churn", 90), ("next_purchase", 45), ("next_purchase", 400)):
        cached, literal = _cached_and_literal(tables, task, as_of, ModelConfig(horizon_days=horizon))
        assert len(literal) > 0 and {"days_since_signup", "horizon_month_share"} <= set(literal.columns)
        pd.testing.assert_frame_equal(cached, literal)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config_name", "tasks", "dates"),
    [
        (
            "online_retail.yaml",
            ("churn", "next_purchase"),
            ("2011-09-10", "2011-11-30 17:45:12.5", "2010-12-31 23:59:59"),
        ),
        ("bank_leads.yaml", ("lead",), ("2009-06-01", "2010-03-01 09:15:00")),
    ],
)
def test_cached_sql_with_the_cutoff_in_variables_gives_the_literal_features_bundled(config_name, tasks, dates):
    """On the bundled data, at dates with a time of day and a horizon across the new year: the API's
    posted histories get, from one compiled query, the features the snapshot and training compute."""
    from features.pipeline import vocabularies

    config = load_config(CONFIGS / config_name)
    tables = load_tables(config)
    tables = tables.with_vocabulary(vocabularies(tables))
    for task in tasks:
        for as_of in dates:
            cached, literal = _cached_and_literal(tables, task, as_of, getattr(config.models, task))
            assert len(literal) > 100, (task, as_of)
            pd.testing.assert_frame_equal(cached, literal)


@pytest.mark.slow
def test_the_bundled_churn_features_are_the_same_to_the_last_bit_on_every_run():
    """DuckDB's parallel sums add up in no fixed order: with two threads one churn feature differed in
    its 13th digit in one run of two, and with it the training data digest and a batch file's bytes.
    One thread (``duckdb.threads``, the default) computes them the same every time."""
    from training.tracking import frame_digest

    config = load_config(CONFIGS / "online_retail.yaml")
    assert config.duckdb.threads == 1
    digests = {
        frame_digest(
            population_features(load_tables(config), "churn", as_of="2011-09-10", model_config=config.models.churn)
        )
        for _ in range(4)
    }
    assert len(digests) == 1
