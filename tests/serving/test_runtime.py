"""The served state: champions, snapshot indexing, missing pieces and the atomic reload.

The scorer is a real one: a small LightGBM booster trained here on a hand-made table and wrapped
by the models package's own constructors (``Scorer``, ``Calibrator``, ``ReasonWriter`` and the
churn spec's tiers and reason templates), so the runtime runs the same code as in serving.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from features.config import ModelConfig, load_config
from features.pipeline import population_features, write_snapshots
from models.catalog import spec_for
from models.drift import FeatureProfile
from models.reasons import ReasonWriter
from models.scorer import Calibrator, Scorer
from serving.runtime import (
    ModelUnavailable,
    RequestError,
    Runtime,
    at_risk,
    build_state,
    changed_tasks,
    ids_explained,
    models_info,
    score_ids,
    score_posted,
)
from tests.conftest import minimal_config_dict

FEATURES = ("recency_days", "monetary_90d")


def small_scorer(task: str = "churn", version: str = "1", *, country: bool = False) -> Scorer:
    """A churn-like LightGBM scorer on 400 synthetic customers (risk rises with recency); with
    ``country``, also a categorical ``country`` of France or UK that raises the risk of UK
    customers, and the training profile."""
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(0, 365, 400), rng.gamma(2.0, 100.0, 400)])
    y = (X[:, 0] / 365 + rng.normal(0, 0.2, 400) > 0.5).astype(float)
    names, categories = list(FEATURES), {}
    if country:  # planted: UK customers churn more, so country moves the score
        X = np.column_stack([X, rng.integers(0, 2, 400).astype(float)])
        y = (X[:, 0] / 365 + 0.4 * X[:, 2] + rng.normal(0, 0.2, 400) > 0.7).astype(float)
        names, categories = [*names, "country"], {"country": ["France", "UK"]}
    params = {"objective": "binary", "num_leaves": 4, "min_data_in_leaf": 10, "verbose": -1, "seed": 0}
    dataset = lgb.Dataset(X, y, feature_name=names, categorical_feature=[2] if country else "auto")
    booster = lgb.train(params, dataset, num_boost_round=10)
    spec = spec_for("churn", ModelConfig())
    return Scorer(
        task=task,
        entity="lead_id" if task == "lead" else "customer_id",
        feature_names=names,
        categories=categories,
        profile=FeatureProfile.from_matrix(X, names, categorical=[2] if country else ()),
        booster=booster,
        calibrator=Calibrator(),
        tiers=spec.tiers,
        tier_key=spec.tier_key,
        reasons=ReasonWriter(names, spec.reason_templates, spec.reason_direction),
        model_name=f"crmscore-{task}",
        horizon_days=90,
        spend_feature="monetary_90d" if task == "churn" else None,
        spend_window_days=90,
        version=version,
    )


@pytest.fixture
def config(minimal_config, tmp_path):
    snapshots = tmp_path / "snaps"
    snapshots.mkdir()
    pd.DataFrame(
        {
            "customer_id": ["1", "2", "3", "2"],
            "as_of": pd.to_datetime(["2011-01-01", "2011-01-01", "2011-01-01", "2010-12-01"]),
            "recency_days": [10.0, 300.0, 150.0, 5.0],
            "monetary_90d": [200.0, 800.0, 400.0, 5.0],
            "country": ["UK", "France", "UK", "UK"],
        }
    ).to_parquet(snapshots / "churn.parquet")
    return minimal_config(serving={"snapshot_path": str(snapshots)})


def loader(tasks):
    """Champions by task -> version; other tasks have none."""

    def load(config, task):
        if task not in tasks:
            raise ModelUnavailable(f"no champion for {task}: run `crmscore train {task}`")
        return small_scorer(task, tasks[task]), {"model_name": f"crmscore-{task}", "version": tasks[task]}

    return load


def test_snapshot_is_indexed_at_its_latest_cutoff(config):
    state = build_state(config, loader=loader({"churn": "1"}))
    model, snapshot = state.snapshot("churn")
    assert snapshot.as_of == "2011-01-01"
    assert dict(snapshot.index) == {"1": 0, "2": 1, "3": 2}
    np.testing.assert_array_equal(snapshot.matrix[snapshot.index["2"]], [300.0, 800.0])
    assert model.scored.customer_id.tolist() == ["1", "2", "3"]
    assert model.scored.country.tolist() == ["UK", "France", "UK"]
    assert model.scored.value_at_risk.notna().all()
    # Without registry facts the model computes posted features with the serving config.
    assert model.config is config


def test_score_ids_matches_the_scorer_and_flags_unknown_ids(config):
    state = build_state(config, loader=loader({"churn": "1"}))
    body = score_ids(state, "churn", ["2", "nope", "1"], k=2, max_batch=10)
    scorer = state.models["churn"].scorer
    expected = scorer.score_frame(
        pd.DataFrame({"customer_id": ["2"], "recency_days": [300.0], "monetary_90d": [800.0]})
    )
    assert body["items"][0]["probability"] == pytest.approx(expected.probability[0])
    assert 0 < len(body["items"][0]["reasons"]) <= 2 and body["items"][0]["model_version"] == "1"
    assert body["items"][1] == {
        "id": "nope",
        "error": "unknown customer_id 'nope': not in the churn snapshot as of 2011-01-01 (customers with a purchase in the 365 days up to the cut-off)",
    }
    hinted = score_ids(state, "churn", ["2.0", " 3 ", "3.5", "002"], k=0, max_batch=10)["items"]
    assert [i["error"].removeprefix("unknown customer_id ") for i in hinted] == [
        "'2.0': not in the churn snapshot as of 2011-01-01 (customers with a purchase in the 365 days up to the cut-off) (did you mean '2'?)",
        "' 3 ': not in the churn snapshot as of 2011-01-01 (customers with a purchase in the 365 days up to the cut-off) (did you mean '3'?)",
        "'3.5': not in the churn snapshot as of 2011-01-01 (customers with a purchase in the 365 days up to the cut-off)",
        "'002': not in the churn snapshot as of 2011-01-01 (customers with a purchase in the 365 days up to the cut-off) (did you mean '2'?)",
    ]
    # Another system's spelling: the leading zeros one writes and the other drops, another case.
    from training.explain import id_hint

    known = {"0012346": 0, "L41175": 1}
    assert [id_hint(known, key) for key in ("12346", "l41175", "12347", "012346.0")] == [
        " (did you mean '0012346'?)",
        " (did you mean 'L41175'?)",
        "",
        " (did you mean '0012346'?)",
    ]
    with pytest.raises(RequestError) as excinfo:
        score_ids(state, "churn", ["1"] * 11, k=0, max_batch=10)
    assert excinfo.value.field == "ids" and excinfo.value.status == 400


def test_a_snapshot_row_with_an_unseen_category_carries_a_warning(config, tmp_path):
    """The booster scores ``country 'Atlantis'`` as missing; the row's score says so, by id, and
    ``/models`` counts it in the snapshot's drift."""
    frame = pd.read_parquet(tmp_path / "snaps" / "churn.parquet")
    frame.loc[2, "country"] = "Atlantis"
    frame.to_parquet(tmp_path / "snaps" / "churn.parquet")

    def load(config, task):
        if task != "churn":
            raise ModelUnavailable(f"no champion for {task}")
        return small_scorer(country=True), {"model_name": "crmscore-churn", "version": "1"}

    state = build_state(config, loader=load)
    items = score_ids(state, "churn", ["1", "3"], k=0, max_batch=10)["items"]
    assert "warnings" not in items[0]
    assert items[1]["warnings"] == [
        "country 'Atlantis' is a value no training row of the churn model had, so it was scored as missing "
        "(known: France, UK)"
    ]
    scorer = state.models["churn"].scorer
    # A value that differs from a known one only in case names the known spelling (an integrator's "united kingdom").
    cased = pd.DataFrame({"recency_days": [1.0], "monetary_90d": [1.0], "country": [" france"]})
    assert scorer.unseen_warnings(cased, scorer.prepare(cased), frozenset({"country"})) == {
        0: [
            "attributes.country ' france' is a value no training row of the churn model had, so it was scored as "
            "missing (did you mean 'France'? values are matched as written; known: France, UK)"
        ]
    }
    blank = pd.DataFrame({"recency_days": [150.0], "monetary_90d": [400.0], "country": [None]})
    assert items[1]["probability"] == pytest.approx(scorer.score_frame(blank.assign(customer_id="3")).probability[0])
    # Its reasons name the value scored as missing, from the snapshot and in the at-risk list.
    assert state.models["churn"].snapshot.unseen == {2: {"country": "Atlantis"}}
    (explained,) = score_ids(state, "churn", ["3"], k=3, counter_k=3, max_batch=10)["items"]
    (country,) = [r for r in (*explained["reasons"], *explained["counter_reasons"]) if r["feature"] == "country"]
    assert country["text"].startswith("Country 'Atlantis': new to the model, scored as missing")
    assert country["value"] == "Atlantis"
    listed = {row["customer_id"]: row for row in at_risk(state, top=3, k=3, counter_k=3)["items"]}
    texts = [r["text"] for r in (*listed["3"]["reasons"], *listed["3"]["counter_reasons"])]
    assert any(t.startswith("Country 'Atlantis'") for t in texts) and not any("Country: missing" in t for t in texts)
    drift = models_info(state)["models"][0]["snapshot_drift"]
    assert drift["unseen"] == {"country": {"Atlantis": 1}}
    assert "scored as missing: country 'Atlantis' (1 row)" in drift["warning"]


def test_counter_reasons_are_the_negative_shap_values_reasons_leave_out(config):
    state = build_state(config, loader=loader({"churn": "1"}))
    scorer = state.models["churn"].scorer
    snapshot = state.models["churn"].snapshot
    body = score_ids(state, "churn", ["1", "2", "3"], k=5, counter_k=5, max_batch=10)
    for item in body["items"]:
        row = snapshot.contrib[snapshot.index[item["id"]]]
        pushes = {f: c for f, c in zip(scorer.feature_names, row[:-1], strict=True)}
        assert {r["feature"] for r in item["reasons"]} == {f for f, c in pushes.items() if c > 0}
        assert {r["feature"] for r in item["counter_reasons"]} == {f for f, c in pushes.items() if c < 0}
        assert all(r["impact"] == pytest.approx(pushes[r["feature"]], abs=1e-6) for r in item["counter_reasons"])
        assert all(r["text"].endswith("(lowers churn risk)") for r in item["counter_reasons"])
    plain = score_ids(state, "churn", ["1"], k=2, max_batch=10)["items"][0]
    assert "counter_reasons" not in plain  # opt-in
    only = score_ids(state, "churn", ["1"], k=0, counter_k=1, max_batch=10)["items"][0]
    assert len(only["counter_reasons"]) <= 1 and only["reasons"] == []


def test_a_snapshot_rows_shap_values_are_computed_once_when_first_needed(config, monkeypatch):
    import serving.runtime

    monkeypatch.setattr(serving.runtime, "EAGER_ROWS", 1)  # the load computes the first row only
    state = build_state(config, loader=loader({"churn": "1"}))
    model, snapshot = state.snapshot("churn")
    everyone = model.scorer.contributions(snapshot.matrix, snapshot.as_of)
    assert snapshot.contrib.computed == 1
    # What the API's event loop asks before it scores by id (else it scores in a worker thread).
    assert ids_explained(state, "churn", ["1", "nope"], k=2) and ids_explained(state, "churn", ["3"], k=0)
    assert not ids_explained(state, "churn", ["1", "3"], k=2) and not ids_explained(
        state, "churn", ["3"], k=0, counter_k=1
    )
    plain = score_ids(state, "churn", ["3"], k=0, max_batch=10)["items"][0]
    assert snapshot.contrib.computed == 1  # a score without reasons reads the raw scores of the load
    explained = score_ids(state, "churn", ["3"], k=2, counter_k=1, max_batch=10)["items"][0]
    assert snapshot.contrib.computed == 2 and explained["probability"] == plain["probability"]
    assert ids_explained(state, "churn", ["1", "3"], k=2)
    np.testing.assert_array_equal(snapshot.contrib[snapshot.index["3"]], everyone[2])
    assert snapshot.contrib.fill(keep_going=lambda: False) is False and snapshot.contrib.computed == 2
    assert snapshot.contrib.fill(rows=1) is True and snapshot.contrib.computed == 3
    np.testing.assert_array_equal(snapshot.contrib[np.arange(3)], everyone)  # whoever computed each row
    # The list's probability is the one /score gives, to the last bit (until 2026-12-06 one of them
    # summed the SHAP values, the other read the trees: equal to ~1e-14).
    listed = {i["customer_id"]: i["probability"] for i in at_risk(state, top=3, k=1)["items"]}
    assert listed["3"] == plain["probability"]
    assert models_info(state)["models"][0]["snapshot_rows_explained"] == 3


def test_the_runtime_computes_the_served_snapshots_shap_values_in_the_background(config, monkeypatch):
    import serving.runtime

    monkeypatch.setattr(serving.runtime, "EAGER_ROWS", 1)
    runtime = Runtime(config, loader=loader({"churn": "1"}))
    runtime.explaining.join(timeout=60)
    assert not runtime.explaining.is_alive()
    snapshot = runtime.state.models["churn"].snapshot
    assert snapshot.contrib.computed == len(snapshot.ids) == 3
    runtime.reload()  # the new snapshot gets its own pass
    assert runtime.state.models["churn"].snapshot is not snapshot
    runtime.explaining.join(timeout=60)
    assert runtime.state.models["churn"].snapshot.contrib.computed == 3
    lazy = Runtime(config, loader=loader({"churn": "1"}), background=False)
    assert lazy.explaining is None and lazy.state.models["churn"].snapshot.contrib.computed == 1


def test_with_explain_snapshots_on_request_rows_are_explained_when_asked_for(minimal_config, config, monkeypatch):
    import serving.runtime

    monkeypatch.setattr(serving.runtime, "EAGER_ROWS", 1)
    on_request = minimal_config(serving={**config.serving.model_dump(), "explain_snapshots": "on_request"})
    runtime = Runtime(on_request, loader=loader({"churn": "1"}))
    snapshot = runtime.state.models["churn"].snapshot
    assert runtime.explaining is None and snapshot.contrib.computed == 1
    body = score_ids(runtime.state, "churn", ["3"], k=1, max_batch=10)
    assert body["items"][0]["reasons"] and snapshot.contrib.computed == 2  # the row asked for, and kept
    runtime.reload()
    assert runtime.explaining is None  # nor after a reload


def test_a_reload_that_keeps_a_snapshot_leaves_its_background_pass_running(config, monkeypatch):
    import threading

    import serving.runtime

    monkeypatch.setattr(serving.runtime, "EAGER_ROWS", 1)
    release, compute = threading.Event(), serving.runtime.SnapshotContributions._compute

    def held(self, rows):  # the background pass waits for the test; a request computes at once
        if threading.current_thread().name == "crmscore-snapshot-shap":
            release.wait(30)
        compute(self, rows)

    monkeypatch.setattr(serving.runtime.SnapshotContributions, "_compute", held)
    runtime = Runtime(
        config, loader=loader({"churn": "1"}), peek=lambda cfg, task: {"model_name": "crmscore-churn", "version": "1"}
    )
    first = runtime.explaining
    kept = runtime.reload()  # same champion, same file: the task and its snapshot are kept
    assert kept.models["churn"].snapshot is not None and runtime.explaining is first and first.is_alive()
    assert score_ids(kept, "churn", ["3"], k=1, max_batch=10)["items"][0]["reasons"] is not None
    release.set()
    first.join(30)
    assert kept.models["churn"].snapshot.contrib.computed == 3


def test_at_risk_ranks_and_filters(config):
    state = build_state(config, loader=loader({"churn": "1"}))
    body = at_risk(state, top=2, k=1)
    assert all(len(item["counter_reasons"]) <= 1 for item in body["items"])  # one by default
    assert all(r["impact"] < 0 for item in body["items"] for r in item["counter_reasons"])
    values = [item["value_at_risk"] for item in body["items"]]
    assert body["n_matched"] == 3 and len(values) == 2 and values == sorted(values, reverse=True)
    # The drift of the snapshot the list ranks, as /models reports it.
    churn = next(m for m in models_info(state)["models"] if m["task"] == "churn")
    assert body["drift"] == churn["snapshot_drift"] and set(body["drift"]) == {"max_psi", "alert", "unseen", "warning"}
    assert body["warnings"] == []
    typo = at_risk(state, top=5, where={"country": "Ukk"}, k=0)
    assert typo["n_matched"] == 0 and typo["items"] == []
    assert typo["warnings"] == ["where.country: no customer in the population has country 'Ukk' (closest: 'UK')"]
    assert at_risk(state, top=5, where={"country": "uk"}, k=0)["n_matched"] == 2  # any case, as tiers
    uk = at_risk(state, top=5, where={"country": "UK"}, k=0, format="csv")
    assert uk["csv"].splitlines()[0].startswith("customer_id,") and len(uk["csv"].splitlines()) == 3
    assert "items" not in uk and (uk["n_matched"], uk["as_of"], uk["warnings"]) == (2, "2011-01-01", [])
    with pytest.raises(RequestError) as excinfo:
        at_risk(state, top=5, where={"planet": "Mars"})
    assert excinfo.value.field == "where.planet"


def test_a_list_since_a_date_the_server_cannot_compute_says_why(config):
    """``since`` needs the population at that date from the config's sources: a server without
    them (this config's tx.parquet does not exist) answers 503 saying so; a bad date is a 400 first."""
    state = build_state(config, loader=loader({"churn": "1"}))
    with pytest.raises(ModelUnavailable, match="since needs the population at 2010-12-01 00:00:00, .* cannot read"):
        at_risk(state, top=2, since="2010-12-01", config=config)
    with pytest.raises(RequestError, match="must be before the snapshot's date") as excinfo:
        at_risk(state, top=2, since="2011-01-01", config=config)
    assert excinfo.value.field == "since"
    assert at_risk(state, top=2)["since_note"] == ""
    # A server whose config maps leads only but serves a churn champion of a shared registry: 503, not 500.
    leads_only = config.model_copy(update={"tables": config.tables.model_copy(update={"transactions": None})})
    with pytest.raises(ModelUnavailable, match="from table 'transactions' of config .*, which maps none"):
        at_risk(state, top=2, since="2010-12-01", config=leads_only)


def test_missing_champion_and_snapshot_say_what_to_run(config):
    state = build_state(config, loader=loader({"churn": "1", "lead": "2"}))
    with pytest.raises(ModelUnavailable, match="crmscore train next_purchase"):
        state.model("next_purchase")
    with pytest.raises(ModelUnavailable, match="crmscore features .*--snapshots.*; or `--task lead --out "):
        state.snapshot("lead")


def test_a_snapshot_built_with_other_settings_than_its_model_is_refused(minimal_config, tmp_path):
    """A snapshot written after the config's horizon was edited, ahead of a retrain: its features were
    built for 30 days, the champion reads 90-day ones; loading it says so instead of serving wrong scores."""
    pd.DataFrame(
        {
            "cid": ["1", "2", "3"],
            "ts": pd.to_datetime(["2010-12-01", "2011-02-01", "2011-03-01"]),
            "qty": [1.0, 2.0, 3.0],
            "price": [10.0, 10.0, 10.0],
        }
    ).to_parquet(tmp_path / "tx.parquet")
    snapshots = tmp_path / "snaps"
    edited = minimal_config(serving={"snapshot_path": str(snapshots)}, models={"churn": {"horizon_days": 30}})
    write_snapshots(edited, as_of="2011-03-31", tasks=["churn"])
    trained = {"horizon_days": 90, "lookback_days": 365}

    def load(config, task):
        return small_scorer(task, "4"), {"model_name": "crmscore-churn", "version": "4", "settings": trained}

    with pytest.raises(ValueError) as refused:
        build_state(edited, loader=load, tasks=["churn"])
    assert str(refused.value) == (
        f"snapshot {snapshots / 'churn.parquet'}: built with models.churn.horizon_days 30, but crmscore-churn v4 "
        "was trained with horizon_days 90: its rows are not the population or features the model reads; write the "
        "snapshot again with the model's settings (`crmscore features --snapshots` from the config it was trained "
        "with), or retrain"
    )
    trained["horizon_days"] = 30  # the model it was built for; and one registered before the tag: nothing to compare
    assert build_state(edited, loader=load, tasks=["churn"]).snapshot("churn")[1].as_of == "2011-03-31"
    trained.clear()
    assert len(build_state(edited, loader=load, tasks=["churn"]).snapshot("churn")[1].ids) == 3


def test_a_snapshot_that_is_not_parquet_is_named_with_its_task_and_path(config):
    """A reload failed with "Could not open Parquet input source '<Buffer>'": no task, no path."""
    path = Path(config.serving.snapshot_path) / "churn.parquet"
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError) as failed:
        build_state(config, loader=loader({"churn": "1"}))
    assert str(failed.value).startswith(f"snapshot {path} (churn) cannot be read as Parquet (")
    assert str(failed.value).endswith("--snapshots`")


def test_reload_swaps_the_whole_state(config):
    versions = {"churn": "1"}
    runtime = Runtime(config, loader=loader(versions))
    old = runtime.state
    versions["churn"] = "2"
    versions["lead"] = "1"
    new = runtime.reload()
    assert runtime.state is new and new is not old
    assert old.models["churn"].info["version"] == "1" and "lead" not in old.models
    assert new.models["churn"].info["version"] == "2" and "lead" in new.models


def test_reload_keeps_a_task_whose_champion_and_snapshot_file_are_unchanged(config):
    """With a peek at the registry, a reload loads again only what changed: a new champion version,
    or a snapshot file replaced (same rows, another file); the kept task's registry facts are read again."""
    versions, notes, loads = {"churn": "1", "next_purchase": "1"}, {"churn": None}, []

    def load(cfg, task):  # lead has no champion: tried each time, as a missing task has nothing to keep
        loaded = loader(versions)(cfg, task)
        loads.append(task)
        return loaded

    def peek(cfg, task):
        if task not in versions:
            raise ModelUnavailable(f"no champion for {task}: run `crmscore train {task}`")
        return {"model_name": f"crmscore-{task}", "version": versions[task], "manual_promotion": notes.get(task)}

    snapshots = Path(config.serving.snapshot_path)
    shutil.copy(snapshots / "churn.parquet", snapshots / "next_purchase.parquet")
    runtime = Runtime(config, loader=load, peek=peek)
    first = runtime.state
    assert sorted(loads) == ["churn", "next_purchase"] and first.models["churn"].loaded_at == first.loaded_at

    loads.clear()
    notes["churn"] = "made champion by hand"
    second = runtime.reload()
    assert loads == [] and second is not first
    for task in ("churn", "next_purchase"):  # the same objects, loaded when they were
        assert second.models[task].snapshot is first.models[task].snapshot
        assert second.models[task].loaded_at == first.loaded_at
    assert second.models["churn"].info["manual_promotion"] == "made champion by hand"
    assert {m["task"]: m["loaded_at"] for m in models_info(second)["models"]} == dict.fromkeys(
        ("churn", "next_purchase"), first.loaded_at
    )

    versions["churn"] = "2"
    copy = snapshots / "copy.parquet"
    shutil.copy(snapshots / "next_purchase.parquet", copy)
    copy.replace(snapshots / "next_purchase.parquet")
    third = runtime.reload()
    assert sorted(loads) == ["churn", "next_purchase"]
    assert third.models["churn"].info["version"] == "2" and third.models["churn"].scorer.version == "2"
    assert all(third.models[t].loaded_at == third.loaded_at != first.loaded_at for t in ("churn", "next_purchase"))
    assert third.models["next_purchase"].snapshot is not first.models["next_purchase"].snapshot

    del versions["churn"]  # the champion alias removed: the task is missing, as on a first load
    fourth = runtime.reload()
    assert "churn" not in fourth.models and "crmscore train churn" in fourth.missing["churn"]


def test_the_watch_reloads_on_its_own_and_reports_only_what_changed(config):
    """serving.reload_every_s: the server's own reloads. One that keeps everything reports nothing; a
    new champion version and a replaced snapshot file are reported with the tasks they touch; a
    failing reload is reported once, keeps the loaded models, and the watch goes on."""
    import queue
    import threading

    versions, broken = {"churn": "1", "next_purchase": "1"}, {"now": False}

    def load(cfg, task):
        if broken["now"]:
            raise OSError(f"model files of {task} cannot be read")
        return loader(versions)(cfg, task)

    def peek(cfg, task):
        if task not in versions:
            raise ModelUnavailable(f"no champion for {task}")
        return {"model_name": f"crmscore-{task}", "version": versions[task]}

    snapshots = Path(config.serving.snapshot_path)
    shutil.copy(snapshots / "churn.parquet", snapshots / "next_purchase.parquet")
    runtime = Runtime(config, loader=load, peek=peek)
    changes, errors, stop = queue.Queue(), queue.Queue(), threading.Event()
    thread = runtime.watch(0.02, on_change=lambda t, s: changes.put((t, s)), on_error=errors.put, stop=stop)
    try:
        first = runtime.state
        for _ in range(100):  # rounds that keep everything report nothing
            if runtime.state is not first:
                break
            threading.Event().wait(0.01)
        assert runtime.state is not first and changes.empty()

        versions["churn"] = "2"
        tasks, state = changes.get(timeout=10)
        assert tasks == ["churn"] and state.models["churn"].info["version"] == "2"

        copy = snapshots / "copy.parquet"
        shutil.copy(snapshots / "next_purchase.parquet", copy)
        copy.replace(snapshots / "next_purchase.parquet")
        assert changes.get(timeout=10)[0] == ["next_purchase"]

        broken["now"] = True
        versions["churn"] = "3"  # a reload to do, which fails
        assert "reload failed, still serving" in errors.get(timeout=10)
        threading.Event().wait(0.2)  # more failing rounds, the same message: not reported again
        assert errors.empty() and runtime.state.models["churn"].info["version"] == "2"
        broken["now"] = False
        tasks, state = changes.get(timeout=10)
        assert tasks == ["churn"] and state.models["churn"].info["version"] == "3"
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_changed_tasks_are_those_loaded_again_new_or_gone(config):
    versions = {"churn": "1"}
    runtime = Runtime(config, loader=loader(versions))  # no peek: every reload loads every task again
    first = runtime.state
    assert changed_tasks(first, first) == []
    versions["lead"] = "1"
    second = runtime.reload()
    assert changed_tasks(first, second) == ["churn", "lead"]
    del versions["churn"]
    assert changed_tasks(second, runtime.reload()) == ["churn", "lead"]  # churn gone, lead loaded again


def test_a_failed_reload_keeps_serving_the_loaded_models(config):
    versions = {"churn": "1"}
    base = loader(versions)
    broken = {"now": False}

    def load(cfg, task):
        if broken["now"] and task == "churn":
            raise OSError("model files cannot be read from /models/churn")
        return base(cfg, task)

    runtime = Runtime(config, loader=load)
    before = runtime.state
    broken["now"] = True
    with pytest.raises(ModelUnavailable, match="reload failed, still serving .*cannot be read from /models/churn"):
        runtime.reload()
    assert runtime.state is before and runtime.state.model("churn").info["version"] == "1"


def test_posted_events_get_the_touchpoint_columns_of_training(write_config, tmp_path):
    """Hand-made: the model's events hold emails and visits; a customer posting emails only still
    gets its visit columns (0 visits, as in training) and the batch's score, not a 400 asking for
    ``events_visit_30d`` as a missing attribute."""
    from features.pipeline import vocabularies
    from features.sources import load_tables
    from models.catalog import model_config_for

    pd.DataFrame(
        {
            "cid": ["a", "a", "b", "b"],
            "ts": pd.to_datetime(["2024-01-05", "2024-02-05", "2024-01-10", "2024-03-01"]),
            "qty": [1.0, 2.0, 3.0, 4.0],
            "price": 10.0,
        }
    ).to_parquet(tmp_path / "tx.parquet")
    pd.DataFrame(
        {
            "cid": ["a", "a", "b"],
            "at": pd.to_datetime(["2024-02-01", "2024-02-10", "2024-02-20"]),
            "kind": ["email", "visit", "email"],
            "via": ["web", "web", "mail"],
        }
    ).to_parquet(tmp_path / "ev.parquet")
    data = minimal_config_dict()
    data["tracking_uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Not the working directory's outputs/: after `make demo` it holds the retail snapshot.
    data["output_dir"] = str(tmp_path / "outputs")
    data["tables"]["events"] = {
        "source": {"path": "ev.parquet"},
        "columns": {"customer_id": "cid", "timestamp": "at", "event_type": "kind", "channel": "via"},
    }
    config = load_config(write_config(data))
    tables = load_tables(config)
    as_of = dt.datetime(2024, 3, 31)
    batch = population_features(tables, "churn", as_of=as_of, model_config=model_config_for(config, "churn"))
    vocabulary = vocabularies(tables)
    assert vocabulary == {
        "transactions.attributes": (),
        "events.event_type": ("email", "visit"),
        "events.channel": ("mail", "web"),
    }
    names = [c for c in batch.columns if c.startswith("events_")]
    assert "events_visit_30d" in names and "events_ch_web_all" in names

    # Synthetic: a booster over those columns, only so that there is a model to post to.
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 5, (300, len(names)))
    y = (X[:, names.index("events_total")] + rng.normal(0, 1, 300) > 2.5).astype(float)
    params = {"objective": "binary", "num_leaves": 4, "min_data_in_leaf": 10, "verbose": -1, "seed": 0}
    spec = spec_for("churn", ModelConfig())

    def scorer(metadata):
        return Scorer(
            task="churn",
            entity="customer_id",
            feature_names=names,
            categories={},
            booster=lgb.train(params, lgb.Dataset(X, y, feature_name=names), num_boost_round=10),
            calibrator=Calibrator(),
            tiers=spec.tiers,
            tier_key=spec.tier_key,
            reasons=ReasonWriter(names, spec.reason_templates, spec.reason_direction),
            model_name="crmscore-churn",
            horizon_days=90,
            metadata=metadata,
        )

    record = {
        "customer_id": "b",
        "purchases": [{"timestamp": "2024-01-10", "amount": 30.0}, {"timestamp": "2024-03-01", "amount": 40.0}],
        "events": [{"timestamp": "2024-02-20", "event_type": "email", "channel": "mail"}],
    }
    kept = scorer({"vocabulary": vocabulary})
    state = build_state(config, loader=lambda c, t: (kept, {"version": "1"}), tasks=("churn",))
    (item,) = score_posted(state, "churn", ["b"], as_of=as_of, k=0, max_batch=10, customers=[record])["items"]
    expected = kept.score_frame(batch[batch.customer_id == "b"], explain=False)
    assert item["probability"] == pytest.approx(expected.probability.iloc[0], abs=1e-12)
    # A model without its vocabulary (trained before it was kept) reads the posted types only.
    old = scorer({})
    state = build_state(config, loader=lambda c, t: (old, {"version": "1"}), tasks=("churn",))
    with pytest.raises(RequestError, match="events_ch_web_90d"):
        score_posted(state, "churn", ["b"], as_of=as_of, k=0, max_batch=10, customers=[record])


def test_posted_features_from_threads_at_once_equal_one_by_one():
    """Each thread keeps its own DuckDB connection for posted records and replaces its tables per
    call: calls from four threads at once (other customers, other cut-offs) get what each call
    gets alone on a fresh build."""
    from concurrent.futures import ThreadPoolExecutor

    from features.pipeline import CompiledQueries, vocabularies
    from features.sources import load_tables
    from serving import runtime
    from tests.conftest import CONFIGS
    from tests.serving.conftest import posted_history

    config = load_config(CONFIGS / "online_retail.yaml")
    vocabulary = vocabularies(load_tables(config))
    keys = ["12347", "12348", "12352", "12356", "12362", "12370", "12371", "12372"]
    calls = [(dt.datetime(2011, 9, 10, 9 + i), [posted_history(key)]) for i, key in enumerate(keys)]
    cache = CompiledQueries()

    def features(call, compiled):
        as_of, customers = call
        return runtime.history_features(
            config, "churn", as_of=as_of, customers=customers, vocabulary=vocabulary, compiled=compiled
        )

    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda call: features(call, cache), calls * 2))
    assert cache.misses <= 4 and cache.hits >= 12  # one query per thread at most, before the others saw it
    alone = [features(call, None) for call in calls]
    for call, expected, frame in zip(calls * 2, alone * 2, together, strict=True):
        assert frame["customer_id"].tolist() == [call[1][0]["customer_id"]]
        pd.testing.assert_frame_equal(frame, expected)


@pytest.mark.parametrize("task", ["churn", "next_purchase", "lead"])
def test_posted_features_from_the_cached_sql_equal_a_fresh_build(task):
    """Bundled data: a second call with the same columns, at another cut-off (a time of day, as a
    client posting "now" sends), runs the stored SQL on its own records and gets exactly what
    building and compiling the features afresh gives."""
    from features.pipeline import CompiledQueries, vocabularies
    from features.sources import load_tables
    from serving import runtime
    from tests.conftest import CONFIGS, DATA
    from tests.serving.conftest import posted_history, posted_lead

    config = load_config(CONFIGS / ("bank_leads.yaml" if task == "lead" else "online_retail.yaml"))
    vocabulary = vocabularies(load_tables(config))
    if task == "lead":
        dates = [dt.datetime(2010, 6, 1), dt.datetime(2010, 6, 1, 13, 5, 42, 250000)]
        leads = pd.read_parquet(DATA / "bank_marketing_leads.parquet")
        month = leads[(leads.created_at > "2010-05-03") & (leads.created_at <= "2010-06-01")]
        records = [posted_lead(row) for _, row in month.head(6).iterrows()]
        calls = [{"leads": records[:3]}, {"leads": records[3:]}]
    else:
        dates = [dt.datetime(2011, 9, 10), dt.datetime(2011, 9, 10, 13, 5, 42, 250000)]
        calls = [
            {"customers": [posted_history("12347"), posted_history("12348")]},
            {"customers": [posted_history("12352")]},
        ]
    cache = CompiledQueries()
    cached = [
        runtime.history_features(config, task, as_of=as_of, vocabulary=vocabulary, compiled=cache, **call)
        for as_of, call in zip(dates, calls, strict=True)
    ]
    assert (cache.hits, cache.misses) == (1, 1)
    for as_of, call, frame in zip(dates, calls, cached, strict=True):
        assert len(frame) == len(next(iter(call.values())))
        fresh = runtime.history_features(config, task, as_of=as_of, vocabulary=vocabulary, compiled=None, **call)
        pd.testing.assert_frame_equal(frame, fresh)
