"""Every endpoint, role and error of the scoring API, over HTTP against a real server."""

from __future__ import annotations

import concurrent.futures
import csv
import io
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

from serving.workers import ReloadChannel
from tests.serving.conftest import (
    DECOYS,
    MAX_BATCH,
    ROOT,
    Server,
    posted_history,
    posted_lead,
    start_server,
    stop_server,
    write_configs,
)

pytestmark = pytest.mark.api

SCORE_ROUTES = ("/score/churn", "/score/next_purchase", "/score/lead")
DROP = object()  # a parametrize value: leave the attribute out rather than post it


def snapshot_ids(server, task, n=3):
    frame = pd.read_parquet(server.snapshots / f"{task}.parquet")
    return frame["lead_id" if task == "lead" else "customer_id"].astype(str).tolist()[:n]


def test_health_and_metrics_need_no_key(server):
    with server.client() as c:
        for path in ("/livez", "/readyz", "/metrics", "/docs.json"):
            assert c.get(path).status_code == 200, path
        # The Swagger page, without the Google Tag Manager BentoML's page loads in the reader's browser.
        page = c.get("/")
    assert page.status_code == 200 and "swagger-ui" in page.text and "googletagmanager" not in page.text.lower()
    assert int(page.headers["content-length"]) == len(page.content)


def test_an_unknown_route_or_method_is_a_json_error_as_every_refusal(server):
    """A 404 and a 405 were BentoML's text/plain "Not Found", where every other refusal is JSON
    ``{"error": ...}`` (a client parsing the error body failed on them)."""
    with server.client("scorer") as c:
        nowhere = c.post("/score/churns", json={"ids": ["12347"]})
        wrong_method = c.get("/score/churn")
        public_wrong_method = c.post("/livez")
    assert nowhere.status_code == 404 and nowhere.headers["content-type"] == "application/json"
    assert "no route POST /score/churns" in nowhere.json()["error"] and "POST /score/churn," in nowhere.json()["error"]
    assert int(nowhere.headers["content-length"]) == len(nowhere.content)
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["allow"]
    assert wrong_method.json() == {"error": "/score/churn takes POST with a JSON body, not GET"}
    # It said "/livez takes POST with a JSON body, not POST" (a security review, 2026-12-07).
    assert public_wrong_method.status_code == 405 and public_wrong_method.json() == {
        "error": "/livez takes GET, not POST"
    }


def test_metrics_label_paths_that_are_no_route_as_unknown(server):
    """BentoML's request metrics kept a series per path ever requested: a scanner's paths grew every
    worker's memory and every scrape for good. They are counted under ``endpoint="unknown"``."""
    probes = [f"/probe-{i}.php" for i in range(3)]
    with server.client("scorer") as c:
        assert [c.get(path).status_code for path in probes] == [404] * 3  # still their own 404s
        assert c.post("/score/churn", json={"ids": snapshot_ids(server, "churn", 1)}).status_code == 200
        text = c.get("/metrics").text
    assert not any(path in text for path in probes)
    assert 'endpoint="unknown"' in text and 'endpoint="/score/churn"' in text


def test_the_openapi_document_says_how_to_authenticate_and_what_errors_look_like(server):
    """A client generated from /docs.json sent no key: BentoML's document had no security scheme, no
    401/403, a 400 ``detail`` typed as a string (it is a list) and version "None"."""
    from serving.auth import ROUTE_ROLES

    with server.client() as c:
        spec = c.get("/docs.json").json()
        refused = c.post("/score/churn", json={"ids": []}, headers={"x-api-key": server.keys["scorer"]})
    assert spec["info"]["title"] == "crmscore" and spec["info"]["version"] not in ("None", "")
    assert spec["components"]["securitySchemes"]["ApiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    for path, role in ROUTE_ROLES.items():
        (operation,) = spec["paths"][path].values()
        assert operation["security"] == [{"ApiKey": []}, {"Bearer": []}], path
        assert {"401", "403", "413", "503", "504"} <= set(
            operation["responses"]
        ) and f"Least role: {role}." in operation["description"]
    assert "503" in spec["paths"]["/readyz"]["get"]["responses"]
    # Ids and codes take whole numbers, dates a day alone, as the server does (the document said text, date-time).
    document = json.dumps(spec)
    assert '{"type": "integer"}' in document and '"format": "date-time"' not in document
    assert "security" not in spec["paths"]["/livez"]["get"]
    assert spec["components"]["schemas"]["InvalidArgument"]["properties"]["detail"]["type"] == "array"
    assert isinstance(refused.json()["detail"], list)  # as documented
    assert "text/csv" in spec["paths"]["/at_risk"]["post"]["responses"]["200"]["content"]
    # /top/lead takes since and moved_up only to refuse them, and says so (it advertised /at_risk's text).
    lead_body = json.dumps(spec["paths"]["/top/lead"]["post"]["requestBody"]) + json.dumps(spec["components"])
    assert "refused for leads (400)" in lead_body


def test_the_server_runs_its_own_code_from_a_users_folder_and_reads_its_relative_paths_there(server):
    # The session's server was started from a folder holding packages named serving, models, features
    # and training whose import fails; BentoML imports from its working directory first, so until
    # 2026-12-06 such a folder's code (an older checkout's: the benchmarks measured it) replaced crmscore's.
    project = server.retail_config.parent / "project"
    assert all((project / name / "__init__.py").exists() for name in DECOYS)
    with server.client("scorer") as c:
        info = c.post("/models", json={}).json()
    # The champions and snapshots came through the relative tracking_uri and output_dir of its config.
    assert info["missing"] == []
    assert {m["task"] for m in info["models"] if m["snapshot_rows"] > 0} == {"churn", "next_purchase", "lead"}


@pytest.mark.parametrize("route", [*SCORE_ROUTES, "/models", "/at_risk", "/top/next_purchase", "/top/lead", "/reload"])
def test_no_key_or_unknown_key_is_401(server, route):
    with server.client() as c:
        assert c.post(route, json={}).status_code == 401
        assert c.post(route, json={}, headers={"x-api-key": "nope"}).status_code == 401


@pytest.mark.parametrize(("role", "route"), [("scorer", "/at_risk"), ("scorer", "/reload"), ("marketer", "/reload")])
def test_role_below_the_route_is_403(server, role, route):
    with server.client(role) as c:
        response = c.post(route, json={})
    assert response.status_code == 403
    assert "needs role" in response.json()["error"]


def test_bearer_header_works(server):
    with server.client() as c:
        response = c.post("/models", json={}, headers={"authorization": f"Bearer {server.keys['scorer']}"})
    assert response.status_code == 200


@pytest.mark.parametrize("task", ["churn", "next_purchase", "lead"])
def test_score_ids_with_an_unknown_id(server, task):
    ids = snapshot_ids(server, task)
    with server.client("marketer") as c:
        body = c.post(f"/score/{task}", json={"ids": [*ids, "no-such-id"], "k": 2}).json()
        models = {m["task"]: m for m in c.post("/models", json={}).json()["models"]}
    assert body["task"] == task and len(body["items"]) == 4
    for item, key in zip(body["items"], ids, strict=False):
        assert item["id"] == key and 0.0 <= item["probability"] <= 1.0
        assert item["model_name"] == f"crmscore-{task}" and item["model_version"] == models[task]["version"]
        assert 0 < len(item["reasons"]) <= 2
        assert all(r["text"] and r["feature"] and isinstance(r["impact"], float) for r in item["reasons"])
        if task == "lead":
            assert item["grade"] in ("A", "B", "C", "D") and item["tier"] is None
        else:
            assert item["tier"] in ("high", "medium", "low")
        if task == "churn":
            assert item["value_at_risk"] == pytest.approx(item["probability"] * item["expected_spend"])
        if task == "next_purchase":
            assert item["expected_value"] == pytest.approx(item["probability"] * item["expected_spend"])
    assert body["items"][3]["id"] == "no-such-id"
    assert body["items"][3]["error"].startswith(
        f"unknown {'lead_id' if task == 'lead' else 'customer_id'} 'no-such-id': "
        f"not in the {task} snapshot as of {body['as_of']} ({'leads created' if task == 'lead' else 'customers with'}"
    )


def test_scorer_gets_scores_without_reasons_and_403_when_asking(server):
    ids = snapshot_ids(server, "churn", 1)
    with server.client("scorer") as c:
        item = c.post("/score/churn", json={"ids": ids}).json()["items"][0]
        denied = c.post("/score/churn", json={"ids": ids, "k": 3})
        counter = c.post("/score/churn", json={"ids": ids, "k": 0, "counter_k": 1})
    assert item["reasons"] is None and item["counter_reasons"] is None and item["probability"] >= 0
    assert denied.status_code == 403 and denied.json()["detail"][0]["loc"] == ["k"]
    assert counter.status_code == 403 and counter.json()["detail"][0]["loc"] == ["counter_k"]


def test_marketer_default_k_is_three_and_k0_has_no_reasons(server):
    ids = snapshot_ids(server, "churn", 1)
    with server.client("marketer") as c:
        default = c.post("/score/churn", json={"ids": ids}).json()["items"][0]
        none = c.post("/score/churn", json={"ids": ids, "k": 0}).json()["items"][0]
        both = c.post("/score/churn", json={"ids": ids, "counter_k": 2}).json()["items"][0]
    assert len(default["reasons"]) <= 3 and default["reasons"] and default["counter_reasons"] is None
    assert both["reasons"] == default["reasons"] and 0 < len(both["counter_reasons"]) <= 2
    assert all(r["impact"] < 0 and r["text"].endswith("(lowers churn risk)") for r in both["counter_reasons"])
    # Reasons come from the SHAP pass, whose row sum equals the raw score up to rounding.
    assert none["reasons"] is None and none["probability"] == pytest.approx(default["probability"], abs=1e-12)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "ids"),
        ({"ids": []}, "ids"),
        ({"ids": "12346"}, "ids"),
        ({"ids": ["1"], "k": -1}, "k"),
        ({"ids": ["1"], "k": 99}, "k"),
        ({"ids": ["1"], "counter_k": 11}, "counter_k"),
        ({"ids": ["1"], "counter_k": "two"}, "counter_k"),
        ({"ids": ["1"] * (MAX_BATCH + 1)}, "ids"),
        ({"ids": [12346.5]}, "ids"),  # not a whole number: no id (12346.0, a spreadsheet's, is 12346)
        ({"ids": [True]}, "ids"),
        ({"ids": ["1"], "counter-k": 1}, "counter-k"),  # misspelt: refused, not ignored for the default
        ({"ids": ["1"], "top": 5}, "top"),
    ],
)
def test_bad_input_is_400_naming_the_field(server, body, field):
    with server.client("admin") as c:
        response = c.post("/score/churn", json=body)
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"][0] == field


def test_every_endpoint_refuses_a_field_it_does_not_take(server):
    with server.client("admin") as c:
        listed = c.post("/at_risk", json={"top": 5, "tier": ["high"]})  # the field is "tiers"
        models = c.post("/models", json={"verbose": True})
    for response, field in ((listed, "tier"), (models, "verbose")):
        assert response.status_code == 400, response.text
        (detail,) = response.json()["detail"]
        assert (detail["loc"], detail["type"]) == ([field], "extra_forbidden")


def test_whole_number_ids_are_taken_as_their_digits(server):
    """Other systems often hold customer ids as integers: 12346 is the customer "12346"."""
    with server.client("admin") as c:
        text = c.post("/score/churn", json={"ids": ["12346", "12347"], "k": 0}).json()["items"]
        number = c.post("/score/churn", json={"ids": [12346, 12347], "k": 0}).json()["items"]
        record = posted_history("12347")
        posted = c.post(
            "/score/churn/history",
            json={"customers": [{**record, "customer_id": 12347}], "as_of": "2011-12-09T12:50:00", "k": 0},
        )
    assert number == text and [i["id"] for i in number] == ["12346", "12347"]
    assert posted.status_code == 200, posted.text
    assert posted.json()["items"][0]["id"] == "12347"


def test_malformed_json_is_400(server):
    with server.client("admin") as c:
        response = c.post("/score/churn", content=b"{not json", headers={"content-type": "application/json"})
        form = c.post(
            "/score/churn", content=b'{"ids": ["12346"]}', headers={"content-type": "application/x-www-form-urlencoded"}
        )
    assert response.status_code == 400
    # What curl -d sends: was a 400 on a field named after the whole body; now says what to send.
    assert form.status_code == 415 and "'Content-Type: application/json'" in form.json()["error"]


# The bundled customer models read the country: every posted customer carries it.
UK = {"country": "United Kingdom"}


def _lead_record(server) -> dict:
    """The first snapshot lead's record, as a client would post it (without ``duration``)."""
    snapshot = pd.read_parquet(server.snapshots / "lead.parquet")
    leads = pd.read_parquet(ROOT / "data" / "bank_marketing_leads.parquet")
    key = str(snapshot.lead_id.iloc[0])
    return {**posted_lead(leads[leads.lead_id.astype(str) == key].iloc[0]), "lead_id": key, "events": []}


def _filtered_customer(server, task) -> str:
    """A snapshot customer whose raw lines include some the bundled config's filters drop (a price of 0,
    a fee or test line), other than the snapshot's first (12346, who has some too)."""
    data = pd.read_parquet(ROOT / "data" / "online_retail_ii.parquet")
    fee = ("BANK CHARGES", "AMAZONFEE", "TEST001", "TEST002", "ADJUST", "ADJUST2", "B")
    dropped = data[(data.Price <= 0) | data.StockCode.isin(fee)].CustomerID.dropna().astype("Int64").astype(str)
    return [key for key in snapshot_ids(server, task, 10_000) if key in set(dropped)][1]


@pytest.mark.parametrize("task", ["churn", "next_purchase"])
def test_posted_history_scores_like_the_snapshot_by_id(server, task):
    """Same feature code as training: a customer's whole raw history posted as of the snapshot date
    scores as the snapshot row does, since the config's row filters and duplicate rule hold the posted
    lines as they hold the stored ones (until 2026-12-07 the filters did not: 12346 scored 0.945 posted
    against 0.937 by id)."""
    key, raw = snapshot_ids(server, task, 1)[0], _filtered_customer(server, task)
    with server.client("marketer") as c:
        by_id = c.post(f"/score/{task}", json={"ids": [key, raw], "k": 0}).json()
        histories = [posted_history(key), posted_history(raw)]
        posted = c.post(
            f"/score/{task}/history",
            json={"customers": [*histories, {"customer_id": "new", "purchases": []}], "as_of": by_id["as_of"], "k": 2},
        )
        models = {m["task"]: m for m in c.post("/models", json={}).json()["models"]}
    assert posted.status_code == 200, posted.text
    items = posted.json()["items"]
    assert [i["id"] for i in items[:2]] == [key, raw] and len(items[0]["reasons"]) <= 2
    for item, stored in zip(items, by_id["items"], strict=False):
        assert item["probability"] == pytest.approx(stored["probability"], abs=1e-9), item["id"]
    assert any("by the config's row filters" in w for w in items[1]["warnings"]), items[1]["warnings"]
    assert items[2]["id"] == "new" and items[2]["error"].endswith("; it posts no purchases")
    assert models[task]["posted_filters"] == {
        "applied": {
            "tables.transactions: price not positive": '("amount" / NULLIF("quantity", 0)) > 0',
            "tables.transactions: fee or test line": "NOT \"product_id\" IN ('BANK CHARGES', 'AMAZONFEE', 'TEST001', "
            "'TEST002', 'ADJUST', 'ADJUST2', 'B')",
        },
        "not_applied": {},
    }


def _feature_sql_lookups(c) -> dict[tuple[str, str], float]:
    """``crmscore_feature_sql_lookups_total`` from ``/metrics``, by (model, result)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = c.get("/metrics").text
    family = next((f for f in text_string_to_metric_families(text) if f.name == "crmscore_feature_sql_lookups"), None)
    samples = family.samples if family is not None else []
    return {(s.labels["model"], s.labels["result"]): s.value for s in samples if s.name.endswith("_total")}


def test_posted_histories_reuse_the_feature_sql_and_metrics_count_it(server):
    """The second posted history runs the SQL compiled for the first (another customer, another
    cut-off, "now" with its time of day: nothing in the SQL came from the rows or the date), and
    ``/metrics`` counts the hit."""
    first, second = snapshot_ids(server, "churn", 2)
    responses, gained = [], {}
    with server.client("admin") as c:
        for key, as_of in ((first, "2011-12-01T00:00:00"), (second, "2011-12-01T14:22:05.5")):
            before = _feature_sql_lookups(c)
            body = {"as_of": as_of, "k": 1, "customers": [posted_history(key)]}
            responses.append(c.post("/score/churn/history", json=body))
            after = _feature_sql_lookups(c)
            gained = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    assert [r.status_code for r in responses] == [200, 200], responses[0].text
    assert [r.json()["items"][0]["id"] for r in responses] == [first, second]
    # The cut-off as used, with its time of day (was the date alone, though the time decides what counts).
    # Written as scores by id write theirs (a space, not a "T").
    assert [r.json()["as_of"] for r in responses] == ["2011-12-01", "2011-12-01 14:22:05.500000"]
    assert gained == {**dict.fromkeys(gained, 0.0), ("churn", "hit"): 1.0}, gained  # the second call


def test_a_lead_posted_with_numbers_as_text_scores_alike_and_reuses_the_feature_sql(server):
    """A client that posts ``"age": "41"`` where another posts ``41`` gets the same score: posted
    attributes take the model's column types, so the second call also runs the SQL compiled for
    the first (before, each spelling compiled its own)."""
    record = _lead_record(server)
    as_text = {**record, "attributes": {k: str(v) for k, v in record["attributes"].items()}}
    assert as_text["attributes"] != record["attributes"]  # some attribute is a number
    body = {"as_of": "2010-11-01T00:00:00", "k": 2}
    with server.client("admin") as c:
        before = _feature_sql_lookups(c)
        responses = [c.post("/score/lead/record", json={**body, "leads": [r]}) for r in (record, as_text)]
        after = _feature_sql_lookups(c)
    assert [r.status_code for r in responses] == [200, 200], responses[1].text
    numbers, text = (r.json()["items"][0] for r in responses)
    assert text["probability"] == numbers["probability"] and text["reasons"] == numbers["reasons"]
    gained = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    assert gained.get(("lead", "hit"), 0.0) >= 1, gained


def test_a_second_server_on_the_host_leaves_the_first_ones_metrics(server, tmp_path):
    """BentoML empties its Prometheus folder at every start: ``crmscore serve`` gives each server a
    BentoML home of its own, so a second one (another config, a blue-green switch) keeps the first's
    counters, and the home is removed when the server stops."""
    first = snapshot_ids(server, "churn", 1)[0]
    with server.client("admin") as c:
        c.post("/score/churn/history", json={"as_of": "2011-12-01", "customers": [posted_history(first)], "k": 0})
        before = _feature_sql_lookups(c)
    assert sum(before.values()) >= 1
    homes = set(Path(tempfile.gettempdir()).glob("crmscore-serve-*"))
    retail, _ = write_configs(tmp_path / "second")
    proc, url = start_server(retail, retail.parent, ready="/livez")
    try:
        assert set(Path(tempfile.gettempdir()).glob("crmscore-serve-*")) - homes  # its own home, while it runs
        with server.client("admin") as c:
            after = _feature_sql_lookups(c)
    finally:
        stop_server(proc)
    assert after == before
    assert set(Path(tempfile.gettempdir()).glob("crmscore-serve-*")) <= homes  # removed on stop


def test_posted_purchase_without_a_column_the_features_need_is_400_naming_it(server):
    """The churn model's breadth features come from product_id and quantity: a purchase without
    one would score an unknown breadth as if it were known, so it is refused, by its place."""
    key = snapshot_ids(server, "churn", 1)[0]
    history = posted_history(key)
    j = next(j for j, p in enumerate(history["purchases"]) if p["amount"] > 0)
    del history["purchases"][j]["product_id"]
    with server.client("admin") as c:
        response = c.post("/score/churn/history", json={"customers": [history], "as_of": "2011-12-01"})
    assert response.status_code == 400, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["customers", 0, "purchases", j, "product_id"]
    assert "distinct_products" in detail["msg"] and "every purchase (amount > 0)" in detail["msg"]


def test_posted_events_a_model_cannot_read_are_named_in_a_warning(server):
    """The bundled churn model was trained without an events table: posted touchpoints change no
    feature, so the score is the same, and the item says they were not used."""
    purchase = {"timestamp": "2011-10-01T10:00:00", "amount": 50.0, "product_id": "85123A", "quantity": 1}
    events = [
        {"timestamp": "2011-10-02T10:00:00", "event_type": "complaint"},
        {"timestamp": "2011-11-02T10:00:00", "event_type": "email_open", "channel": "email"},
    ]
    customers = [
        {"customer_id": "quiet", "attributes": UK, "purchases": [purchase]},
        {"customer_id": "talkative", "attributes": UK, "purchases": [purchase], "events": events},
    ]
    with server.client("admin") as c:
        response = c.post("/score/churn/history", json={"customers": customers, "as_of": "2011-12-01", "k": 0})
    assert response.status_code == 200, response.text
    quiet, talkative = response.json()["items"]
    assert talkative["probability"] == pytest.approx(quiet["probability"], abs=0) and quiet["warnings"] is None
    assert talkative["warnings"] == [
        "customers[1].events: the churn model's training config maps no events table, so no feature reads events; "
        "the 2 posted events were not used"
    ]


def test_what_a_posted_history_carries_beyond_its_score_is_dropped_or_named(server):
    """An integrator's findings (2026-12-07): a line sent twice counted twice (the stored data drops exact
    copies), and an attribute named like a computed feature, a purchase field no feature reads and lines
    after as_of were ignored without a word. A date in ISO 8601's basic form ("20111001") was read as Unix
    seconds (1970), and numeric order and product codes were refused."""
    base = {"timestamp": "2011-10-01T10:00:00", "amount": 50.0, "product_id": "85123A", "quantity": 2}
    other = {**base, "timestamp": "2011-06-01T10:00:00", "amount": 120.0, "order_id": "1"}
    plain = {"customer_id": "plain", "attributes": UK, "purchases": [base, other]}
    repeated = {
        "customer_id": "repeated",
        "attributes": {**UK, "recency_days": 10000},
        "purchases": [
            {**base, "category": "mugs"},
            {**other, "timestamp": "20110601T100000"},  # the same instant, basic form
            {**other, "timestamp": "2011-06-01T11:00:00+01:00"},  # and again, with an offset
            {**base, "timestamp": "2011-12-05T10:00:00", "amount": 1e6},  # after as_of
        ],
    }
    numeric = {
        "customer_id": "numeric",
        "attributes": UK,
        "purchases": [{**base, "product_id": 85123, "order_id": 7}, {**other, "quantity": -1}],
    }
    with server.client("admin") as c:
        response = c.post(
            "/score/churn/history", json={"customers": [plain, repeated, numeric], "as_of": "2011-12-01", "k": 0}
        )
    assert response.status_code == 200, response.text
    plain_item, repeated_item, numeric_item = response.json()["items"]
    assert repeated_item["probability"] == pytest.approx(plain_item["probability"], abs=1e-12)
    assert repeated_item["value_at_risk"] == pytest.approx(plain_item["value_at_risk"], abs=1e-9)
    assert plain_item["warnings"] is None
    said = repeated_item["warnings"]
    assert (
        "customers[1].purchases: category (1 of 3 lines) is not read by the churn model (none of its features is "
        "computed from it), so it was not used" in said
    )
    assert (
        "customers[1].purchases: 1 of the 3 lines fall after as_of (2011-12-01 00:00) and are not history, so they "
        "were not used" in said
    )
    assert (
        "customers[1].purchases: 1 line was an exact copy of another and was dropped, as in the stored data "
        "(tables.transactions.drop_duplicates)" in said
    )
    assert (
        "attributes.recency_days is a feature the churn model computes from the history, so the posted value was not "
        "used" in said
    )
    # 120.0 for -1 unit: a price of -120, which the bundled config's 'price not positive' drops, as stored rows
    # (a config without such a filter takes the line by its amount's sign and says so: test_posted_rules).
    assert "error" not in numeric_item and numeric_item["warnings"] == [
        "customers[2].purchases: 1 of the 2 lines was dropped by the config's row filters (1 by 'price not "
        "positive'; tables.transactions.filters), as in the stored data"
    ]


def test_posted_bool_numbers_and_unknown_list_operators_are_400_naming_them(server):
    with server.client("admin") as c:
        k_true = c.post("/score/churn", json={"ids": ["12346"], "k": True})
        top_false = c.post("/at_risk", json={"top": False})
        where_bool = c.post("/at_risk", json={"where": {"frequency_365d": True}})
        operator = c.post("/at_risk", json={"where": {"frequency_365d": {"=>": 3}}})
    for response in (k_true, top_false, where_bool, operator):
        assert response.status_code == 400, response.text
    assert "true is not a number" in k_true.text and "false is not a number" in top_false.text
    assert "true is not a number" in where_bool.text
    assert "where.frequency_365d: '=>' is not an operator; use one of =, !=, >, >=, <, <=" in operator.text
    # The error names the field and the rule, as every other refusal's does (it said "1 validation error for Input").
    assert k_true.json()["error"] == "k: Value error, true is not a number"
    assert k_true.json()["detail"][0]["loc"] == ["k"]


def test_one_id_posted_twice_is_400_naming_the_second(server):
    """Two records of one id would be merged into one history and both scored on the union."""
    purchase = {"timestamp": "2011-10-01T10:00:00", "amount": 50.0, "product_id": "85123A", "quantity": 1}
    customers = [
        {"customer_id": "c1", "attributes": UK, "purchases": [purchase]},
        {"customer_id": "c2", "attributes": UK, "purchases": [purchase]},
        {
            "customer_id": "c1",
            "attributes": UK,
            "purchases": [{**purchase, "timestamp": "2011-11-20T10:00:00", "amount": 500.0}],
        },
    ]
    record = _lead_record(server)
    with server.client("admin") as c:
        churn = c.post("/score/churn/history", json={"customers": customers, "as_of": "2011-12-01"})
        lead = c.post("/score/lead/record", json={"leads": [record, record], "as_of": "2010-11-01"})
        apart = c.post("/score/churn/history", json={"customers": customers[:2], "as_of": "2011-12-01"})
    assert churn.status_code == 400, churn.text
    assert churn.json()["detail"][0]["loc"] == ["customers", 2, "customer_id"]
    assert churn.json()["error"] == (
        "customers[2].customer_id 'c1' is also customers[0].customer_id: post each customer once, with its whole history"
    )
    assert lead.status_code == 400 and lead.json()["detail"][0]["loc"] == ["leads", 1, "lead_id"], lead.text
    assert apart.status_code == 200 and [i["id"] for i in apart.json()["items"]] == ["c1", "c2"]


def test_a_posted_record_outside_the_population_is_told_why(server):
    """A history posted with an as_of before its purchases, a lapsed one, refunds only, a lead
    created after as_of or before its window: each is outside the population, and the error says
    where the record stands against the rule, not only which rule."""
    late = {
        "customer_id": "late",
        "attributes": UK,
        "purchases": [
            {"timestamp": "2011-11-02T10:00:00", "amount": 12.5, "product_id": "85123A", "quantity": 5},
            {"timestamp": "2011-11-03T10:00:00+01:00", "amount": 7.0, "product_id": "22423", "quantity": 1},
        ],
    }
    with server.client("admin") as c:
        response = c.post("/score/churn/history", json={"customers": [late], "as_of": "2011-11-01"})
    assert response.status_code == 200, response.text
    error = response.json()["items"][0]["error"]
    assert error.startswith("not in the churn population at 2011-11-01 00:00 (rule: customers with a purchase in the")
    assert error.endswith("; 2 of its 2 posted purchases fall after as_of and are not history")
    record = {**_lead_record(server), "lead_id": "early", "created_at": "2010-06-01T00:00:00"}
    with server.client("admin") as c:
        response = c.post("/score/lead/record", json={"leads": [record], "as_of": "2010-05-01"})
    assert response.status_code == 200, response.text
    assert response.json()["items"][0]["error"].endswith("; created_at 2010-06-01 00:00 is after as_of")
    old_lead = {**record, "lead_id": "old", "created_at": "2010-03-01T12:00:00"}
    line = {"timestamp": "2010-03-02T10:00:00", "amount": 12.5, "product_id": "85123A", "quantity": 5}
    lapsed = {
        "customer_id": "lapsed",
        "attributes": UK,
        "purchases": [line, {**line, "timestamp": "2011-10-05T10:00:00", "amount": -3.0, "quantity": -5}],
    }
    refunds = {
        "customer_id": "refunds",
        "attributes": UK,
        "purchases": [{**line, "timestamp": "2011-10-05T10:00:00", "amount": -3.0, "quantity": -5}],
    }
    free = {"customer_id": "free", "attributes": UK, "purchases": [{**line, "timestamp": "2011-10-05", "amount": 0.0}]}
    with server.client("admin") as c:
        lead = c.post("/score/lead/record", json={"leads": [old_lead], "as_of": "2010-05-01"}).json()
        churn = c.post(
            "/score/churn/history", json={"customers": [lapsed, refunds, free], "as_of": "2011-11-01"}
        ).json()
    assert lead["items"][0]["error"].endswith("; created_at 2010-03-01 12:00 is 60 days before as_of")
    assert churn["items"][0]["error"].endswith(
        "; its latest purchase up to as_of, 2010-03-02 10:00, is 608 days before it"
    )
    assert churn["items"][1]["error"].endswith("; its 1 posted line(s) up to as_of are refunds only (amount <= 0)")
    # A line of price 0, which the bundled config's filter drops: the error says why no purchase is left.
    assert churn["items"][2]["error"].endswith(
        "; it posts no purchases (after the stored data's rules: customers[2].purchases: 1 of the 1 lines was "
        "dropped by the config's row filters (1 by 'price not positive'; tables.transactions.filters), as in the "
        "stored data)"
    )


def test_posted_lead_record_scores_like_the_snapshot(server):
    record = _lead_record(server)
    key = record["lead_id"]
    with server.client("admin") as c:
        by_id = c.post("/score/lead", json={"ids": [key], "k": 0}).json()
        posted = c.post("/score/lead/record", json={"leads": [record], "as_of": by_id["as_of"], "k": 0})
    assert posted.status_code == 200, posted.text
    assert posted.json()["items"][0]["probability"] == pytest.approx(by_id["items"][0]["probability"], abs=1e-9)


def test_posted_lead_with_a_null_the_model_never_saw_is_an_item_error(server):
    """LightGBM reads a missing value of a feature never missing in training as 0 (an age of 0);
    that record gets an error naming the attribute, and the rest of the batch is scored."""
    record = _lead_record(server)
    blank = {**record, "lead_id": "blank", "attributes": {**record["attributes"], "age": None}}
    without = {
        **record,
        "lead_id": "without",
        "attributes": {k: v for k, v in record["attributes"].items() if k != "age"},
    }
    with server.client("admin") as c:
        as_of = c.post("/score/lead", json={"ids": [record["lead_id"]], "k": 0}).json()["as_of"]
        posted = c.post("/score/lead/record", json={"leads": [record, blank, without], "as_of": as_of, "k": 0})
    assert posted.status_code == 200, posted.text
    scored, refused, refused_too = posted.json()["items"]
    assert refused_too["error"] == refused["error"]
    assert scored["id"] == record["lead_id"] and 0 < scored["probability"] < 1
    assert refused == {
        "id": "blank",
        "error": "cannot score: age is missing, and no training row of the lead model had it missing "
        "(the model would read 0); post a value for attributes.age",
    }


def test_posted_lead_with_a_category_the_model_never_saw_is_scored_with_a_warning(server):
    """``job: "admin"`` (for ``"admin."``) is a value no training row had: LightGBM scores it as a
    missing job, which the item says, naming the attribute and the values the model knows."""
    record = _lead_record(server)
    typo = {**record, "lead_id": "typo", "attributes": {**record["attributes"], "job": "admin"}}
    blank = {**record, "lead_id": "blank", "attributes": {**record["attributes"], "job": None}}
    with server.client("admin") as c:
        as_of = c.post("/score/lead", json={"ids": [record["lead_id"]], "k": 0}).json()["as_of"]
        posted = c.post("/score/lead/record", json={"leads": [record, typo, blank], "as_of": as_of, "k": 0})
    assert posted.status_code == 200, posted.text
    scored, warned, missing = posted.json()["items"]
    assert scored.get("warnings") is None
    assert missing["warnings"] == ["attributes.job is null or not posted for this record, so it was scored as missing"]
    assert warned["probability"] == pytest.approx(missing["probability"], abs=1e-12)
    (warning,) = warned["warnings"]
    assert warning.startswith(
        "attributes.job 'admin' is a value no training row of the lead model had, so it was scored as missing "
        "(known: admin., blue-collar, "
    )
    # Explained, the same features move both scores; the typo's job reason names what was posted.
    with server.client("admin") as c:
        both = c.post("/score/lead/record", json={"leads": [typo, blank], "as_of": as_of, "k": 10, "counter_k": 10})
    assert both.status_code == 200, both.text
    warned, missing = both.json()["items"]
    jobs = [
        [r for r in (*item["reasons"], *item["counter_reasons"]) if r["feature"] == "job"] for item in (warned, missing)
    ]
    assert [len(j) for j in jobs] == [1, 1], jobs
    assert jobs[0][0]["text"].startswith("Job 'admin': new to the model, scored as missing (")
    assert jobs[1][0]["text"].startswith("Job: missing (") and jobs[0][0]["impact"] == jobs[1][0]["impact"]


@pytest.mark.parametrize(
    ("change", "loc", "message"),
    [
        (
            {"age": "forty"},
            ["leads", 1, "attributes", "age"],
            "leads[1].attributes.age is 'forty': the lead model's feature age is a number",
        ),
        (
            {"age": DROP},
            ["leads", 0, "attributes", "age"],
            "leads[0].attributes has no age: the lead model's features include it; "
            "post it in the attributes of every record",
        ),
    ],
)
def test_a_posted_attribute_the_model_cannot_read_is_400_naming_it(server, change, loc, message):
    record = _lead_record(server)
    if change["age"] is DROP:  # the attribute left out of every record
        del record["attributes"]["age"]
        leads = [record]
    else:
        leads = [record, {**record, "lead_id": "x", "attributes": {**record["attributes"], **change}}]
    with server.client("admin") as c:
        response = c.post("/score/lead/record", json={"leads": leads, "as_of": "2010-11-01"})
    assert response.status_code == 400, response.text
    assert response.json()["detail"][0]["loc"] == loc
    assert response.json()["error"] == message


def test_posted_attribute_names_are_checked_against_the_models(server):
    """Names are not case-sensitive in the feature tables: ``Country`` beside the model's ``country``
    is a 400 naming it (was a 500); a model attribute no record posts is a 400 (a close posted name
    is named); a name the model does not read, or a record without the model's attribute, is scored
    with a warning saying so."""
    history = posted_history(snapshot_ids(server, "churn", 1)[0])

    def post(*records):
        with server.client("admin") as c:
            return c.post("/score/churn/history", json={"customers": list(records), "as_of": "2011-12-09", "k": 0})

    for attributes in ({**UK, "Country": "France"}, {"COUNTRY": "France"}):
        response = post({**history, "attributes": attributes})
        assert response.status_code == 400, response.text
        name = next(n for n in attributes if n != "country")
        assert response.json()["detail"][0]["loc"] == ["customers", 0, "attributes", name]
        assert f"names are not case-sensitive, and '{name}' is the column 'country'" in response.json()["error"]
    amount = post({**history, "attributes": {**UK, "Amount": 3}})
    assert amount.status_code == 400 and "'amount' is a column the feature code fills itself" in amount.text
    typo = post({**history, "attributes": {"contry": "France"}})
    assert typo.status_code == 400, typo.text
    assert typo.json()["error"] == (
        "customers[0].attributes has no country: the churn model's features include it; "
        "post it in the attributes of every record ('contry' was posted)"
    )
    extra = {**history, "customer_id": "other", "attributes": {**UK, "segment": "vip"}}
    bare = {**history, "customer_id": "bare", "attributes": {}}
    response = post({**history, "attributes": UK}, extra, bare)
    assert response.status_code == 200, response.text
    plain, with_extra, without = response.json()["items"]
    assert with_extra["probability"] == plain["probability"]
    # The customer's raw lines hold fee lines and repeat some exactly: dropped, as the stored data's are, and
    # said after the names.
    assert with_extra["warnings"][0] == (
        "attributes.segment is not a feature of the churn model, so it was not used (its attributes: country)"
    )
    assert len(with_extra["warnings"]) == 3 and "dropped by the config's row filters" in with_extra["warnings"][1]
    assert with_extra["warnings"][2].endswith("(tables.transactions.drop_duplicates)")
    assert all(w.startswith("customers[1].purchases: ") for w in with_extra["warnings"][1:])
    assert (
        without["warnings"][0]
        == "attributes.country is null or not posted for this record, so it was scored as missing"
    )


@pytest.mark.parametrize(
    ("route", "body", "loc", "message"),
    [
        ("/score/churn/history", {"as_of": "2300-01-01"}, ["as_of"], "outside the dates scores are computed for"),
        ("/score/churn/history", {"as_of": 20111209}, ["as_of"], "is a number: post the date as ISO 8601 text"),
        (
            "/score/churn/history",
            {"timestamp": "0001-01-01T00:00:00"},
            ["customers", 0, "purchases", 0, "timestamp"],
            "outside",
        ),
        ("/at_risk", {"since": "9999-12-31"}, ["since"], "outside the dates scores are computed for"),
    ],
)
def test_dates_a_score_cannot_be_computed_for_are_400_naming_the_field(server, route, body, loc, message):
    """Pandas' timestamps end in 2262 and numbers would be read as Unix seconds: until 2026-12-07 a
    posted as_of in 2300 was a 500 (an overflow in the feature code)."""
    if route == "/at_risk":
        request = {"top": 2, **body}
    else:
        purchase = {
            "timestamp": body.get("timestamp", "2011-10-01T10:00:00"),
            "amount": 5.0,
            "product_id": "p",
            "quantity": 1,
        }
        customer = {"customer_id": "c", "attributes": UK, "purchases": [purchase]}
        request = {"customers": [customer], "as_of": body.get("as_of", "2011-12-09")}
    with server.client("admin") as c:
        response = c.post(route, json=request)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == loc and message in detail["msg"]


def test_a_whole_number_in_where_matches_the_text_of_its_digits(server):
    """``where: {"customer_id": 15749}`` is the customer "15749", as ``ids`` takes it (was "15749.0"); and
    the id attribute matches ids as ``exclude_ids`` does (until 2026-12-07 ``12346.0`` was "not in the
    population"): a spreadsheet's float is its digits, leading zeros match, said in a warning."""
    key, other = snapshot_ids(server, "churn", 2)
    with server.client("marketer") as c:
        as_text = c.post("/at_risk", json={"top": 5, "where": {"customer_id": key}}).json()
        as_number = c.post("/at_risk", json={"top": 5, "where": {"customer_id": int(key)}}).json()
        respelt = c.post("/at_risk", json={"top": 5, "where": {"customer_id": [float(key), f"0{other}"]}}).json()
        none_held = c.post("/at_risk", json={"top": 1, "k": 0, "exclude_ids": ["nobody"]}).json()
    assert as_text["n_matched"] == as_number["n_matched"] == 1 and as_number["warnings"] == []
    assert respelt["n_matched"] == 2 and respelt["warnings"] == [
        "where.customer_id: 1 of its ids matched only as spelt otherwise, and were taken as the data spells "
        f"them: '0{other}' as '{other}'"
    ]
    # No file was sent: the note of exclude_ids names the ids sent.
    assert none_held["warnings"][0].endswith("check that the ids sent are customer_id values of this data ('nobody')")


def test_posted_history_with_a_bad_field_is_400(server):
    with server.client("admin") as c:
        response = c.post(
            "/score/churn/history",
            json={
                "customers": [{"customer_id": "x", "purchases": [{"timestamp": "soon", "amount": 1}]}],
                "as_of": "2011-01-01",
            },
        )
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"][:4] == ["customers", 0, "purchases", 0]


def test_at_risk_json_sorted_and_filtered(server):
    with server.client("marketer") as c:
        top = c.post("/at_risk", json={"top": 20}).json()
        france = c.post("/at_risk", json={"top": 5, "where": {"country": "France"}, "tiers": ["high"], "k": 1}).json()
        unknown = c.post("/at_risk", json={"where": {"planet": "Mars"}})
        bad_tier = c.post("/at_risk", json={"tiers": ["urgent"]})
        typo = c.post("/at_risk", json={"where": {"country": "Frnce"}}).json()
        cased = c.post("/at_risk", json={"top": 5, "where": {"country": "france"}, "tiers": ["high"], "k": 1}).json()
    assert top["warnings"] == [] and france["warnings"] == [] and cased == france  # any case, as tiers
    assert typo["items"] == [] and typo["warnings"] == [
        "where.country: no customer in the population has country 'Frnce' (closest: 'France')"
    ]
    values = [item["value_at_risk"] for item in top["items"]]
    assert len(values) == 20 and values == sorted(values, reverse=True)
    # A list gives the reasons that move a probability by a point or more (half the bundled list's did not):
    # every row has one either way, and none below it.
    assert all(item["reasons"] or item["counter_reasons"] for item in top["items"])
    given = [r for item in top["items"] for r in (*item["reasons"], *item["counter_reasons"])]
    assert given and all(abs(r["probability_change"]) >= 0.01 for r in given)
    assert top["n_matched"] >= 20 and top["model_name"] == "crmscore-churn"
    assert (top["task"], top["ranked_by"]) == ("churn", "value_at_risk")  # as /top/... say theirs
    # The snapshot drift comes with the list, so a marketer's tool can warn as `crmscore at-risk` does.
    assert top["drift"]["max_psi"] >= 0 and (top["drift"]["warning"] is None) == (top["drift"]["alert"] == [])
    assert france["drift"] == top["drift"]
    assert all(i["attributes"]["country"] == "France" and i["tier"] == "high" for i in france["items"])
    assert all(len(i["reasons"]) <= 1 for i in france["items"])
    # One counter-reason by default: what keeps a large customer's low churn risk low.
    assert all(len(i["counter_reasons"]) == 1 and i["counter_reasons"][0]["impact"] < 0 for i in top["items"])
    assert unknown.status_code == 400 and unknown.json()["detail"][0]["loc"] == ["where", "planet"]
    assert bad_tier.status_code == 400 and bad_tier.json()["detail"][0]["loc"] == ["tiers"]
    assert "'urgent'" in bad_tier.json()["detail"][0]["msg"] and "high" in bad_tier.json()["detail"][0]["msg"]


def test_at_risk_where_takes_alternatives_and_ranges(server):
    """``where``: a list is any of its values, operators bound a number; the rows carry the numeric
    attribute filtered on. A comparison of text is refused naming the field, an unknown operator
    by the schema."""
    where = {"country": ["France", "Germany"], "frequency_365d": {">=": 3, "<": 10}}
    with server.client("marketer") as c:
        listed = c.post("/at_risk", json={"top": 50, "where": where, "k": 0}).json()
        text = c.post("/at_risk", json={"where": {"country": {">": "France"}}})
        operator = c.post("/at_risk", json={"where": {"frequency_365d": {"~": 3}}})
        nobody = c.post("/at_risk", json={"where": {"frequency_365d": {">": 1e9}}}).json()
        above = c.post("/at_risk", json={"min_value": 1e9}).json()
    items = listed["items"]
    assert 0 < len(items) == min(50, listed["n_matched"]) and listed["warnings"] == []
    assert {i["attributes"]["country"] for i in items} <= {"France", "Germany"}
    assert all(3 <= i["attributes"]["frequency_365d"] < 10 for i in items)
    assert text.status_code == 400 and text.json()["detail"][0]["loc"] == ["where", "country"]
    assert "'>' compares numbers and country is text" in text.json()["detail"][0]["msg"]
    assert operator.status_code == 400 and "where" in operator.json()["detail"][0]["loc"]
    assert listed["n_excluded"] == 0
    assert nobody["items"] == [] and nobody["warnings"][0].startswith(
        "where.frequency_365d: no customer in the population has frequency_365d > 1e+09 (frequency_365d runs from"
    )
    # min_value above everyone said `warnings: []` (until 2026-12-07): said as the where filter is
    assert above["items"] == [] and above["warnings"][0].startswith(
        "min_value: no customer in the population has value_at_risk >= 1e+09 (value_at_risk runs from"
    )


def test_at_risk_exclude_ids_is_a_suppression_list(server):
    """``exclude_ids``: never listed nor counted; ``n_excluded`` (and the CSV's header) says how many
    of them the snapshot held. Ids are read as the suppression file's are (a spreadsheet's
    ``15749.0``, blanks around), and ids the population does not hold are a warning."""
    with server.client("marketer") as c:
        top = c.post("/at_risk", json={"top": 10, "k": 0}).json()
        ids = [item["customer_id"] for item in top["items"][:2]]
        posted = [f"{ids[0]}.0", f" {ids[1]} ", float(ids[1]), "nobody"]  # a number from a spreadsheet's JSON too
        rest = c.post("/at_risk", json={"top": 8, "k": 0, "exclude_ids": posted}).json()
        csv_rest = c.post("/at_risk", json={"top": 8, "k": 0, "exclude_ids": ids, "format": "csv"})
    assert [item["customer_id"] for item in rest["items"]] == [item["customer_id"] for item in top["items"][2:]]
    assert rest["n_excluded"] == 2 and rest["n_matched"] == top["n_matched"] - 2
    assert rest["warnings"] == [
        "excluded 2 customers of the population; 1 of the 3 ids to exclude is not in it: 'nobody'"
    ]
    assert csv_rest.headers["x-crmscore-n-excluded"] == "2"
    # Saved under a name that says what and when (a browser saved it as "at_risk").
    day = rest["as_of"].replace(" ", "-").replace(":", "-")
    assert csv_rest.headers["content-disposition"] == f'attachment; filename="at-risk-{day}.csv"'
    assert not [w for w in json.loads(csv_rest.headers["x-crmscore-warnings"]) if "to exclude" in w]
    assert [r["customer_id"] for r in csv.DictReader(io.StringIO(csv_rest.text))] == [
        item["customer_id"] for item in rest["items"]
    ]


def test_top_lead_per_gives_the_best_of_each_value(server):
    with server.client("marketer") as c:
        everyone = c.post("/top/lead", json={"top": 1000, "k": 0}).json()
        per = c.post("/top/lead", json={"top": 1, "k": 0, "per": "job"}).json()
        unknown = c.post("/top/lead", json={"per": "planet"})
    best: dict[str, str] = {}
    for item in everyone["items"]:
        best.setdefault(item["attributes"]["job"], item["id"])
    assert [item["id"] for item in per["items"]] == list(best.values()) and len(best) > 3
    assert per["n_matched"] == everyone["n_matched"]
    assert unknown.status_code == 400 and unknown.json()["detail"][0]["loc"] == ["per"]


def test_at_risk_csv(server):
    with server.client("admin") as c:
        response = c.post("/at_risk", json={"top": 10, "format": "csv", "min_value": 1.0})
        # An Accept header that asks for CSV alone gets it without "format" (it got JSON); "format" wins.
        accepted = c.post("/at_risk", json={"top": 10, "min_value": 1.0}, headers={"accept": "text/csv"})
        forced = c.post("/at_risk", json={"top": 2, "format": "json"}, headers={"accept": "text/csv"})
        plain = c.post("/at_risk", json={"top": 2}, headers={"accept": "*/*"})
    assert accepted.headers["content-type"].startswith("text/csv") and accepted.text == response.text
    assert forced.headers["content-type"].startswith("application/json")
    assert plain.headers["content-type"].startswith("application/json")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 10 and {"customer_id", "value_at_risk", "reason_1", "reason_3", "counter_reason_1"} <= set(
        rows[0]
    )
    assert all(
        r["counter_reason_1"].endswith("(lowers churn risk)")
        or r["counter_reason_1"] == "No reason lowers churn risk by 1 point or more"
        for r in rows
    )
    assert all(float(r["value_at_risk"]) >= 1.0 for r in rows)
    # The headers say what the JSON list says beside its rows.
    with server.client("admin") as c:
        listed = c.post("/at_risk", json={"top": 10, "min_value": 1.0}).json()
        typo = c.post("/at_risk", json={"top": 10, "format": "csv", "where": {"country": "Frnce"}})
    assert response.headers["x-crmscore-as-of"] == listed["as_of"]
    assert response.headers["x-crmscore-model"] == f"{listed['model_name']} v{listed['model_version']}"
    # ... and so does every row, as in the commands' lists: a saved file keeps its date and model.
    assert {(r["as_of"], r["model"]) for r in rows} == {(listed["as_of"], response.headers["x-crmscore-model"])}
    assert int(response.headers["x-crmscore-n-matched"]) == listed["n_matched"] >= 10
    drift = [listed["drift"]["warning"]] if listed["drift"]["warning"] else []
    assert json.loads(response.headers["x-crmscore-warnings"]) == drift
    assert typo.status_code == 200 and typo.text.count("\n") == 1  # the header row alone: the same columns
    assert typo.text.splitlines()[0].split(",") == list(rows[0])
    assert json.loads(typo.headers["x-crmscore-warnings"]) == [
        "where.country: no customer in the population has country 'Frnce' (closest: 'France')",
        *drift,
    ]


@pytest.mark.parametrize(
    ("task", "model", "config_index", "rank", "tier", "tiers", "min_value"),
    [
        ("next_purchase", "next-purchase", 0, "expected_value", "tier", ["high", "medium"], 500.0),
        ("lead", "lead", 1, "probability", "grade", ["A", "B"], 0.5),
    ],
)
def test_top_lists_are_the_top_commands_lists(
    server, tmp_path, task, model, config_index, rank, tier, tiers, min_value
):
    """The campaign and call lists from the snapshot: the same rows, probabilities and sentences as
    ``crmscore top`` on the same date (the data's last row, the snapshot's cut-off), filtered like
    the at-risk list, and for marketers only."""
    from typer.testing import CliRunner

    from serving.cli import app

    with server.client("marketer") as c:
        listed = c.post(f"/top/{task}", json={"top": 20}).json()
        csv_text = c.post(f"/top/{task}", json={"top": 20, "format": "csv"}).text
        filtered = c.post(f"/top/{task}", json={"top": 5000, "tiers": tiers, "min_value": min_value, "k": 1}).json()
        unknown = c.post(f"/top/{task}", json={"tiers": ["urgent"]})
    with server.client("scorer") as c:
        refused = c.post(f"/top/{task}", json={})
    out = tmp_path / "top.csv"
    config = [server.retail_config, server.leads_config][config_index]
    result = CliRunner().invoke(app, ["top", model, "--config", str(config), "--top", "20", "--out", str(out)])
    assert result.exit_code == 0, result.output

    assert listed["task"] == task and listed["ranked_by"] == rank and len(listed["items"]) == 20
    values = [item[rank] for item in listed["items"]]
    assert values == sorted(values, reverse=True) and listed["n_matched"] > 20
    # Up to 3 reasons and 1 counter-reason by default (a row may have fewer facts pushing its way).
    assert all(1 <= len(i["reasons"]) <= 3 and len(i["counter_reasons"]) <= 1 for i in listed["items"])
    # Those that move the probability by a point or more (lists leave out the rest).
    given = [r for i in listed["items"] for r in (*i["reasons"], *i["counter_reasons"])]
    assert all(abs(r["probability_change"]) >= 0.01 for r in given) and len(given) > 40
    command = pd.read_csv(out, dtype=str, keep_default_na=False)
    served = pd.read_csv(io.StringIO(csv_text), dtype=str, keep_default_na=False)
    # The same file, column for column (the attributes too), the date included: the command stamps
    # the data's last row, the API its snapshot's cut-off, the same moment written the same way (until
    # 2026-12-07 the API wrote the day alone, 2011-12-09, and the command 2011-12-09 12:50:00).
    assert set(served["as_of"]) == set(command["as_of"]) == {listed["as_of"]}
    entity = command.columns[0]
    assert served.columns[0] == entity and served[entity].tolist() == [item["id"] for item in listed["items"]]
    assert {tier, "reason_3", "counter_reason_1", "model"} <= set(command.columns)
    pd.testing.assert_frame_equal(served, command)

    items = filtered["items"]
    assert items and all(item[tier] in tiers and item[rank] >= min_value for item in items)
    assert (
        all(len(item["reasons"]) <= 1 for item in items) and filtered["n_matched"] == len(items) < listed["n_matched"]
    )
    assert unknown.status_code == 400 and f"unknown {tier} 'urgent'" in unknown.json()["error"]
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("route", "command", "moved_up"),
    [
        ("/at_risk", ["at-risk"], False),
        ("/at_risk", ["at-risk"], True),
        ("/top/next_purchase", ["top", "next-purchase"], False),
    ],
)
def test_lists_since_an_earlier_date_are_the_commands_since_lists(server, tmp_path, route, command, moved_up):
    """``since`` (and ``moved_up``): the same champion's scores at an earlier date, computed from the
    config's sources, beside each row; the file the command writes with --since (--moved-up), column
    for column, and the same sentence of who moved."""
    from typer.testing import CliRunner

    from serving.cli import app

    body = {"top": 20, "since": "2011-11-09", "moved_up": moved_up}
    with server.client("marketer") as c:
        listed = c.post(route, json=body).json()
        csv_response = c.post(route, json={**body, "format": "csv"})
    out = tmp_path / "list.csv"
    args = [*command, "--config", str(server.retail_config), "--top", "20", "--since", "2011-11-09", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, *(["--moved-up"] if moved_up else [])])
    assert result.exit_code == 0, result.output

    assert listed["since_note"].startswith("since 2011-11-09: ")
    assert listed["since_note"] in result.stdout + result.stderr
    assert csv_response.headers["x-crmscore-since"] == listed["since_note"]
    assert all("probability_then" in item and "tier_then" in item for item in listed["items"])
    assert any(i["probability_then"] is not None for i in listed["items"])  # most were in the population then
    if moved_up:
        assert all(i["tier_then"] not in (None, i["tier"]) for i in listed["items"])
    served = pd.read_csv(io.StringIO(csv_response.text), dtype=str, keep_default_na=False)
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert {"probability_then", "tier_then"} <= set(written.columns)
    pd.testing.assert_frame_equal(served.drop(columns="as_of"), written.drop(columns="as_of"))


def test_lists_since_with_a_utc_offset_is_that_moment_in_utc(server):
    """A ``since`` with an offset is converted to UTC, as ``as_of`` is (it was read as the day it
    was written on, the offset dropped): 05:00 at +05:00 is midnight UTC, the same list as the date;
    a time of day is kept, and the sentence says it."""
    with server.client("marketer") as c:
        dated = c.post("/at_risk", json={"top": 5, "since": "2011-11-09"}).json()
        offset = c.post("/at_risk", json={"top": 5, "since": "2011-11-09T05:00:00+05:00"}).json()
        later = c.post("/at_risk", json={"top": 5, "since": "2011-11-09T12:00:00+05:00"}).json()
    assert offset["since_note"] == dated["since_note"] and offset["items"] == dated["items"]
    assert later["since_note"].startswith("since 2011-11-09 07:00:00: ")


@pytest.mark.parametrize(
    ("route", "body", "field", "message"),
    [
        ("/at_risk", {"moved_up": True}, "moved_up", "give it with since"),
        ("/at_risk", {"since": "2012-01-01"}, "since", "must be before the snapshot's date"),
        ("/at_risk", {"since": "last week"}, "since", ""),
        ("/at_risk", {"since": "07/12/2011"}, "since", "is not an ISO 8601 date: post '2011-12-09'"),
        ("/top/lead", {"since": "2010-06-01"}, "since", "open leads of two dates are mostly different leads"),
    ],
)
def test_lists_since_is_refused_naming_the_field(server, route, body, field, message):
    with server.client("marketer") as c:
        response = c.post(route, json=body)
    assert response.status_code == 400, response.text
    assert [d["loc"][-1] for d in response.json()["detail"]] == [field] and message in response.text


def test_models_lists_the_three_champions(server):
    from training.tracking import code_version

    with server.client("scorer") as c:
        body = c.post("/models", json={}).json()
    assert body["missing"] == []
    models = {m["task"]: m for m in body["models"]}
    assert set(models) == {"churn", "next_purchase", "lead"}
    for task, m in models.items():
        assert m["model_name"] == f"crmscore-{task}" and m["alias"] == "champion" and m["version"]
        # Why it is champion: the gate's decision on its training run (the first version of a fresh registry).
        assert m["promotion"] == "no champion yet" and m["manual_promotion"] is None
        assert m["snapshot_as_of"] and m["snapshot_rows"] > 0 and "roc_auc" in m["metrics"]
        assert m["code"] == code_version()["text"]  # the code that trained it: this checkout's
        drift = m["snapshot_drift"]
        assert drift["max_psi"] >= 0 and (drift["warning"] is None) == (drift["alert"] == [])
    # The test layout has two training cut-offs: churn and next purchase say they have no seasonal
    # prior shift (leads use none).
    for task in ("churn", "next_purchase"):
        (warning,) = models[task]["warnings"]
        assert warning.startswith("no seasonal prior shift") and f"models.{task}.n_train_cutoffs >= " in warning
    # The bundled leads hold a final 0/1 outcome, no conversion date: the horizon cannot apply, and it says so.
    (flags,) = models["lead"]["warnings"]
    assert flags.startswith("lead labels: table 'leads' maps no converted_at, so a lead's label is its converted flag")
    # The lead snapshot (Nov 2010) holds economic indicators the 2009 training rows never saw.
    lead_drift = models["lead"]["snapshot_drift"]
    assert {"euribor3m", "nr_employed"} <= set(lead_drift["alert"])
    assert (
        lead_drift["warning"].startswith(f"{len(lead_drift['alert'])} of ")
        and lead_drift["alert"][0] in lead_drift["warning"]
    )
    # The lead snapshot is a population: its mean is anchored to the latest known conversion rate.
    assert models["lead"]["snapshot_anchor"] != 0.0
    assert models["churn"]["snapshot_anchor"] == models["next_purchase"]["snapshot_anchor"] == 0.0
    # Each model computes posted features with the config it was trained with (from the registry),
    # not the serving config: the lead model's is the bank leads config.
    assert models["lead"]["config_name"] == "bank_leads"
    assert models["churn"]["config_name"] == models["next_purchase"]["config_name"] == "online_retail"


def test_the_server_computes_every_snapshot_rows_shap_values_after_it_is_ready(server):
    """The load computes the first rows' SHAP values, a background pass the rest (``snapshot_rows_explained``)."""
    import time

    deadline = time.monotonic() + 180
    with server.client("scorer") as c:
        while True:
            models = c.post("/models", json={}).json()["models"]
            assert all(0 < m["snapshot_rows_explained"] <= m["snapshot_rows"] for m in models)
            if all(m["snapshot_rows_explained"] == m["snapshot_rows"] for m in models) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert [m["snapshot_rows_explained"] for m in models] == [m["snapshot_rows"] for m in models]


def test_models_say_what_each_list_filters_on_and_the_values_work(server):
    """``list_filters``: the tiers, the text attributes with their values (commonest first) and the
    numeric columns, for a tool building the filters; each value offered filters the list to it."""
    with server.client("marketer") as c:
        models = {m["task"]: m for m in c.post("/models", json={}).json()["models"]}
        churn, lead = models["churn"]["list_filters"], models["lead"]["list_filters"]
        uk = c.post("/at_risk", json={"top": 5, "k": 0, "where": {"country": churn["attributes"]["country"][0]}})
        job = c.post("/top/lead", json={"top": 5, "k": 0, "where": {"job": lead["attributes"]["job"][-1]}})
    assert churn["tiers"] == ["high", "medium", "low"] and lead["tiers"] == ["A", "B", "C", "D"]
    assert churn["attributes"]["country"][0] == "United Kingdom" and "frequency_365d" in churn["numbers"]
    assert {"job", "contact"} <= set(lead["attributes"]) and "age" in lead["numbers"]
    assert "customer_id" not in churn["attributes"] and churn["numbers"][:3] == [
        "probability",
        "expected_spend",
        "value_at_risk",
    ]
    assert uk.status_code == job.status_code == 200
    assert uk.json()["items"] and {i["attributes"]["country"] for i in uk.json()["items"]} == {"United Kingdom"}
    assert job.json()["items"] and uk.json()["warnings"] == job.json()["warnings"] == []


def test_reload_is_admin_only_and_requests_in_flight_succeed(server):
    ids = snapshot_ids(server, "churn", 50)

    def score(_):
        with server.client("scorer") as c:
            return c.post("/score/churn", json={"ids": ids}).status_code

    churn = server.snapshots / "churn.parquet"  # a new file: the reload loads the churn model and snapshot again
    shutil.copy(churn, churn.with_suffix(".copy"))
    churn.with_suffix(".copy").replace(churn)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        during = pool.map(score, range(40))
        with server.client("admin") as c:
            reloaded = c.post("/reload", json={})
        statuses = list(during)
    assert reloaded.status_code == 200 and len(reloaded.json()["models"]) == 3
    churn_model = next(m for m in reloaded.json()["models"] if m["task"] == "churn")
    assert churn_model["loaded_at"] == reloaded.json()["loaded_at"]
    assert statuses == [200] * 40


def test_a_reload_loads_again_only_the_snapshot_that_was_replaced(server):
    """The real registry and files: after nothing changed a reload keeps every model as loaded; a
    snapshot written again (same rows, a new file) is loaded again, alone."""
    with server.client("admin") as c:
        before = {m["task"]: m for m in c.post("/reload", json={}).json()["models"]}
        again = c.post("/reload", json={}).json()
        assert {m["task"]: m["loaded_at"] for m in again["models"]} == {t: m["loaded_at"] for t, m in before.items()}
        lead = server.snapshots / "lead.parquet"
        shutil.copy(lead, lead.with_suffix(".copy"))
        lead.with_suffix(".copy").replace(lead)
        after = c.post("/reload", json={}).json()
    loaded = {m["task"]: m["loaded_at"] for m in after["models"]}
    assert loaded["lead"] == after["loaded_at"] > before["lead"]["loaded_at"]
    assert (
        loaded["churn"] == before["churn"]["loaded_at"]
        and loaded["next_purchase"] == before["next_purchase"]["loaded_at"]
    )
    assert {m["task"]: m["version"] for m in after["models"]} == {t: m["version"] for t, m in before.items()}


def test_lists_and_reloads_are_in_the_audit_log_by_key_id_never_the_key(server):
    """Who took which list (a marketer's bulk export of customers with reasons), and who reloaded: one
    log line each, naming the key by its id (the first 12 hex digits of its SHA-256), not the key."""
    import hashlib
    import time

    ids = snapshot_ids(server, "churn", 2)
    with server.client("marketer") as c:
        listed = c.post("/at_risk", json={"top": 3, "tiers": ["high"], "exclude_ids": ids, "format": "csv"})
        # A request the service refuses (not the schema) is logged as one line too; it was not at all.
        refused = c.post("/at_risk", json={"top": 3, "tiers": ["urgent"]})
    with server.client("admin") as c:
        reloaded = c.post("/reload", json={})
    assert listed.status_code == 200 and reloaded.status_code == 200 and refused.status_code == 400
    port = server.url.rsplit(":", 1)[1]
    log_file = next(server.retail_config.parent.rglob(f"server-{port}.log"))
    marketer = hashlib.sha256(server.keys["marketer"].encode()).hexdigest()[:12]
    admin = hashlib.sha256(server.keys["admin"].encode()).hexdigest()[:12]
    n_listed = len(listed.text.splitlines()) - 1
    for _ in range(40):  # the server's output reaches its file on its own clock
        log = log_file.read_text()
        if f"audit: /reload by key {admin}" in log:
            break
        time.sleep(0.25)
    assert any("400 on /at_risk [POST]: " in line and "unknown tier 'urgent'" in line for line in log.splitlines())
    lines = [line for line in log.splitlines() if "audit: /at_risk" in line]
    expected = (
        f"audit: /at_risk by key {marketer} (marketer) from 127.0.0.1: {n_listed} of "
        f"{listed.headers['x-crmscore-n-matched']} "
        f"matching rows of the churn snapshot as of {listed.headers['x-crmscore-as-of']}"
    )
    assert any(
        expected in line and "2 rows excluded by 2 ids sent" in line and '"tiers": ["high"]' in line for line in lines
    ), lines
    assert any(
        f"audit: /reload by key {admin} (admin) from 127.0.0.1: now serving churn v" in line
        for line in log.splitlines()
    )
    assert not any(key in log for key in server.keys.values())


def _served_gauges(c) -> dict[str, dict[str, float]]:
    """The ``crmscore_model_*`` and ``crmscore_snapshot_*`` gauges of ``/metrics``, by name and model."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(c.get("/metrics").text):
        if family.name.startswith(("crmscore_model_", "crmscore_snapshot_")):
            out[family.name.removeprefix("crmscore_")] = {s.labels["model"]: s.value for s in family.samples}
    return out


def test_metrics_gauge_what_is_served_and_a_reload_moves_them(server):
    """Ops alert on the serving itself: the snapshot's age (its cut-off as a timestamp), the version, when
    it was loaded, rows and drift, per model, equal to ``/models``; a reload that loads a task again moves its gauges."""
    import math

    with server.client("admin") as c:
        models = {m["task"]: m for m in c.post("/reload", json={}).json()["models"]}
        gauges = _served_gauges(c)
        for task, m in models.items():
            assert gauges["model_served"][task] == 1 and gauges["model_version"][task] == int(m["version"])
            assert gauges["snapshot_as_of_timestamp_seconds"][task] == pd.Timestamp(m["snapshot_as_of"]).timestamp()
            # The data's last row (the demo's snapshots are of it): the export's age, whatever date the job passed.
            until = "2010-11-01" if task == "lead" else "2011-12-09 12:50:00"
            assert gauges["snapshot_data_until_timestamp_seconds"][task] == pd.Timestamp(until).timestamp()
            assert gauges["snapshot_rows"][task] == m["snapshot_rows"]
            assert gauges["snapshot_drift_max_psi"][task] == pytest.approx(m["snapshot_drift"]["max_psi"])
            assert gauges["snapshot_drift_features_alert"][task] == len(m["snapshot_drift"]["alert"])
            loaded = pd.Timestamp(m["loaded_at"]).timestamp()
            assert math.isclose(gauges["model_loaded_timestamp_seconds"][task], loaded, abs_tol=1e-3)
        lead = server.snapshots / "lead.parquet"
        shutil.copy(lead, lead.with_suffix(".copy"))
        lead.with_suffix(".copy").replace(lead)
        c.post("/reload", json={})
        after = _served_gauges(c)["model_loaded_timestamp_seconds"]
    assert after["lead"] > gauges["model_loaded_timestamp_seconds"]["lead"]
    assert after["churn"] == gauges["model_loaded_timestamp_seconds"]["churn"]


def test_the_shipped_alert_rules_name_only_metrics_and_labels_the_server_exports(server):
    """docs/prometheus-alerts.yml: each rule well formed, every metric it reads exported by the server
    (BentoML's request metrics once a request was answered) and every label matcher matching some sample,
    so a renamed gauge or label cannot leave an alert silent."""
    import re
    from pathlib import Path

    import yaml
    from prometheus_client.parser import text_string_to_metric_families

    path = Path(__file__).resolve().parents[2] / "docs" / "prometheus-alerts.yml"
    rules = yaml.safe_load(path.read_text())["groups"][0]["rules"]
    with server.client("scorer") as c:
        assert c.post("/score/churn", json={"ids": snapshot_ids(server, "churn", 1)}).status_code == 200
        samples = [s for f in text_string_to_metric_families(c.get("/metrics").text) for s in f.samples]
    exported = {s.name for s in samples}
    assert len(rules) >= 5 and len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"} and rule["annotations"]["summary"]
        names = set(re.findall(r"\b(?:crmscore|bentoml)_[a-z_]+", rule["expr"]))
        assert names and names <= exported, (rule["alert"], names - exported)
        read = [s for s in samples if s.name in names]
        for label, op, value in re.findall(r'(\w+)\s*(=~|=)\s*"([^"]+)"', rule["expr"]):
            if label == "http_response_code":  # its values are whatever the traffic was: the label is enough
                assert any(label in s.labels for s in read), rule["alert"]
                continue
            match = (
                (lambda v, value=value: v == value) if op == "=" else (lambda v, value=value: re.fullmatch(value, v))
            )
            assert any(match(s.labels.get(label, "")) for s in read), (rule["alert"], label, value)


def test_with_reload_every_s_the_server_serves_a_new_snapshot_without_a_reload_call(server, tmp_path):
    """The nightly job writes snapshots; a server with serving.reload_every_s loads a replaced one on
    its own, that task alone, and says so in its log."""
    import time

    import yaml

    snapshots = tmp_path / "snapshots"
    shutil.copytree(server.snapshots, snapshots)
    data = yaml.safe_load(server.retail_config.read_text())
    data["serving"].update(snapshot_path=str(snapshots), reload_every_s=0.5)
    config = tmp_path / "watching.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    proc, url = start_server(config, tmp_path)
    try:
        watching = Server(url=url, keys=server.keys, retail_config=config, leads_config=config, snapshots=snapshots)
        with watching.client("scorer") as c:
            before = {m["task"]: m["loaded_at"] for m in c.post("/models", json={}).json()["models"]}
            lead = snapshots / "lead.parquet"
            shutil.copy(lead, tmp_path / "lead.parquet")
            (tmp_path / "lead.parquet").replace(lead)  # a new file, as crmscore features writes it
            for _ in range(120):
                after = {m["task"]: m["loaded_at"] for m in c.post("/models", json={}).json()["models"]}
                if after["lead"] != before["lead"]:
                    break
                time.sleep(0.25)
    finally:
        stop_server(proc)
    assert after["lead"] > before["lead"]
    assert after["churn"] == before["churn"] and after["next_purchase"] == before["next_purchase"]
    log = "".join(path.read_text() for path in tmp_path.glob("server-*.log"))
    assert "reload: lead v" in log and "snapshot as of" in log, log[-2000:]


@dataclass(frozen=True)
class TwoWorkers:
    server: Server
    pids: list[int]  # the worker processes
    folder: Path  # where its config, snapshots and key file are
    first_models: dict  # /models once both workers had loaded


@pytest.fixture(scope="module")
def two_workers(server, tmp_path_factory) -> Iterator[TwoWorkers]:
    """A server with ``serving.workers: 2`` on copies of the snapshots, with keys from the environment
    (admin among them) and from a file, ``keys.txt``, which the tests rewrite, and an audit file."""
    import time

    import psutil
    import yaml

    folder = tmp_path_factory.mktemp("two_workers")
    snapshots = folder / "snapshots"
    shutil.copytree(server.snapshots, snapshots)
    (folder / "keys.txt").write_text("rotate-me:scorer\n")
    data = yaml.safe_load(server.retail_config.read_text())
    data["serving"].update(snapshot_path=str(snapshots), workers=2, api_keys_file="keys.txt", audit_log="audit.jsonl")
    config = folder / "two_workers.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    proc, url = start_server(config, folder)
    try:
        two = Server(url=url, keys=server.keys, retail_config=config, leads_config=config, snapshots=snapshots)
        pids = [
            p.pid
            for p in psutil.Process(proc.pid).children(recursive=True)
            if "_bentoml_impl.worker" in " ".join(p.cmdline())
        ]
        with two.client("admin") as c:
            for _ in range(240):  # /readyz answers once one worker is ready; the other may still be loading
                first = c.post("/models", json={}).json()
                if first["workers"] == 2:
                    break
                time.sleep(0.25)
        yield TwoWorkers(two, pids, folder, first)
    finally:
        (bentoml,) = psutil.Process(proc.pid).children()  # the workers' parent, which names their channel
        # As a process manager stops it: SIGTERM to the whole process group. The workers run in sessions
        # of their own, so the group's signal does not reach them: crmscore serve must stop them (until
        # 2026-12-07 they outlived it, still answering on the port).
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=90)
        left = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        stop_server(proc)
    assert not left, f"workers {left} outlived crmscore serve"
    assert not ReloadChannel.folder_of(bentoml.pid).exists()  # crmscore serve removed it on the way out


def each_worker(two: TwoWorkers, call) -> list:
    """``call(client)`` 40 times, each on a new connection, which the kernel hands to either worker."""
    out = []
    for _ in range(40):
        with httpx.Client(base_url=two.server.url, timeout=120) as c:
            out.append(call(c))
    return out


def test_with_two_workers_a_reload_reaches_both(two_workers):
    """serving.workers: 2 starts two worker processes behind the port, each with its own models;
    /reload answers once both have reloaded, so that every call after it, whichever worker takes
    it, is served from the new snapshot."""
    two = two_workers
    snapshots = two.server.snapshots
    churn = pd.read_parquet(snapshots / "churn.parquet")
    ids = churn.customer_id.astype(str).unique().tolist()
    # The nightly job writes a snapshot without the first customer (a new file, written whole).
    churn[churn.customer_id.astype(str) != ids[0]].to_parquet(two.folder / "churn.parquet")
    (two.folder / "churn.parquet").replace(snapshots / "churn.parquet")
    with two.server.client("admin") as c:
        reloaded = c.post("/reload", json={})
    scorer = {"x-api-key": two.server.keys["scorer"]}

    def served(c):
        models = {m["task"]: m for m in c.post("/models", json={}, headers=scorer).json()["models"]}
        scored = c.post("/score/churn", json={"ids": [ids[0], ids[1]]}, headers=scorer).json()
        return models["churn"]["snapshot_rows"], tuple(item.get("error") is None for item in scored["items"])

    after = each_worker(two, served)
    assert len(two.pids) == 2 and two.first_models["workers"] == 2
    before_rows = next(m["snapshot_rows"] for m in two.first_models["models"] if m["task"] == "churn")
    assert reloaded.status_code == 200 and reloaded.json()["workers"] == 2
    assert set(after) == {(before_rows - 1, (False, True))}


def test_a_reload_reads_the_api_keys_again_in_every_worker(two_workers):
    """A key taken out of serving.api_keys_file stops working at the next /reload, without a restart,
    whichever worker a call reaches; a malformed file is a 503 naming it, and the keys in force stay."""
    two = two_workers
    keys_file = two.folder / "keys.txt"

    def status(key):
        return lambda c: c.post("/models", json={}, headers={"x-api-key": key}).status_code

    def reload():
        with two.server.client("admin") as c:
            return c.post("/reload", json={})

    assert set(each_worker(two, status("rotate-me"))) == {200}
    keys_file.write_text("rotated:scorer\n")
    assert reload().status_code == 200
    assert set(each_worker(two, status("rotate-me"))) == {401}
    assert set(each_worker(two, status("rotated"))) == {200}
    keys_file.write_text("rotated\n")  # no role: malformed
    refused = reload()
    assert refused.status_code == 503
    assert "API keys not read again, the ones read before still apply" in refused.json()["error"]
    assert "serving.api_keys_file" in refused.json()["error"] and "entry 1" in refused.json()["error"]
    assert set(each_worker(two, status("rotated"))) == {200}
    keys_file.write_text("rotated:scorer\n")  # fixed: the next reload reads it
    assert reload().status_code == 200


def test_the_audit_file_gets_every_list_call_of_both_workers_or_the_list_is_refused(two_workers):
    """serving.audit_log: one JSON record per list call and /reload, from whichever worker took it, in
    one file; a list whose record cannot be written is refused (503 naming the file), not handed out."""
    import hashlib

    two = two_workers
    audit = two.folder / "audit.jsonl"
    marketer = {"x-api-key": two.server.keys["marketer"]}
    statuses = each_worker(two, lambda c: c.post("/top/lead", json={"top": 2}, headers=marketer).status_code)
    with two.server.client("admin") as c:
        reloaded = c.post("/reload", json={})
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    lists = [r for r in records if r["route"] == "/top/lead"]
    assert set(statuses) == {200} and reloaded.status_code == 200 and len(lists) == 40
    key_id = hashlib.sha256(two.server.keys["marketer"].encode()).hexdigest()[:12]
    assert {(r["key_id"], r["role"], r["client"], r["task"], r["rows_listed"]) for r in lists} == {
        (key_id, "marketer", "127.0.0.1", "lead", 2)
    }
    assert lists[0]["options"] == {"top": 2, "k": 3, "counter_k": 1, "format": "json"}
    assert lists[0]["rows_matched"] >= 2 and lists[0]["ids_excluded"] == 0 and lists[0]["model_version"]
    assert lists[0]["ids_sent"] == 0 and lists[0]["exclude_digest"] is None and len(lists[0]["ids_listed"]) == 2
    last = records[-1]
    assert (
        last["route"] == "/reload"
        and last["role"] == "admin"
        and set(last["served"]) == {"churn", "next_purchase", "lead"}
    )
    audit.rename(two.folder / "audit.kept")
    audit.mkdir()  # the audit file cannot be written now
    try:
        with two.server.client("marketer") as c:
            refused = c.post("/top/lead", json={"top": 2})
    finally:
        audit.rmdir()
    assert refused.status_code == 503
    assert f"serving.audit_log {audit} cannot be written" in refused.json()["error"]


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory):
    """A server on a registry without champions."""
    retail, _ = write_configs(tmp_path_factory.mktemp("empty"))
    proc, url = start_server(retail, retail.parent, ready="/livez")  # /readyz is 503: no model to serve
    yield url
    stop_server(proc)


@pytest.mark.parametrize(
    ("route", "body", "command"),
    [
        ("/score/churn", {"ids": ["1"]}, "crmscore train churn"),
        ("/score/next_purchase", {"ids": ["1"]}, "crmscore train next-purchase"),
        ("/score/lead", {"ids": ["1"]}, "crmscore train lead"),
        ("/at_risk", {}, "crmscore train churn"),
        (
            "/score/lead/record",
            {"leads": [{"lead_id": "1", "created_at": "2010-01-01"}], "as_of": "2010-01-02"},
            "lead",
        ),
    ],
)
def test_no_champion_is_503_naming_the_command(empty_server, route, body, command):
    response = httpx.post(f"{empty_server}{route}", json=body, headers={"x-api-key": "test-admin-key"}, timeout=60)
    assert response.status_code == 503
    assert command in response.json()["error"]
    models = httpx.post(f"{empty_server}/models", json={}, headers={"x-api-key": "test-admin-key"}, timeout=60).json()
    assert models["models"] == [] and {m["task"] for m in models["missing"]} == {"churn", "next_purchase", "lead"}
    # Alive, not ready: a load balancer keyed on /readyz sends it nothing (it answered 200).
    unready = httpx.get(f"{empty_server}/readyz", timeout=10)
    assert unready.status_code == 503 and "not ready" in unready.text
    assert httpx.get(f"{empty_server}/livez", timeout=10).status_code == 200


def test_lead_scores_by_id_equal_the_batch_of_the_snapshot_date(server, tmp_path):
    """The API anchors the snapshot as ``crmscore score`` anchors the population of the same date."""
    from features.config import load_config
    from training.score import score_batch

    ids = snapshot_ids(server, "lead", 5)
    with server.client("admin") as c:
        body = c.post("/score/lead", json={"ids": ids, "k": 0}).json()
    batch = score_batch(load_config(server.leads_config), "lead", as_of=body["as_of"], out=tmp_path / "lead.parquet")
    scores = pd.read_parquet(batch.out)
    scores.index = scores["lead_id"].astype(str)
    assert batch.population_shift != 0.0
    for item in body["items"]:
        assert item["probability"] == pytest.approx(scores.loc[item["id"], "probability"], abs=1e-9), item["id"]


def test_lead_reasons_never_name_what_every_lead_of_the_month_shares(server):
    """The month's economic indicators and the lead's age (``created_at`` has month precision) are
    the same for every lead of a cut-off, and the daily 3-month Euribor nearly so: they count in the
    score but explain no lead's rank, either way."""
    ids = snapshot_ids(server, "lead", 10_000)
    shared = {"days_since_created", "emp_var_rate", "cons_price_idx", "cons_conf_idx", "nr_employed", "euribor3m"}
    with server.client("marketer") as c:
        items = c.post("/score/lead", json={"ids": ids[:MAX_BATCH], "k": 3, "counter_k": 3}).json()["items"]
    assert len(items) == min(len(ids), MAX_BATCH) and all(item["reasons"] for item in items)
    named = {r["feature"] for item in items for r in item["reasons"]}
    assert not named & shared
    assert not {r["feature"] for item in items for r in item["counter_reasons"]} & shared
    assert len(named) >= 3  # the reasons differ between leads


def test_a_server_whose_crmscore_serve_is_killed_stops_with_it(server, tmp_path):
    """kill -9 of crmscore serve (an OOM kill, a supervisor's last resort): BentoML's server and its
    workers ran on, still answering on the port, and a restart failed with "Address already in use"."""
    import psutil

    homes = set(Path(tempfile.gettempdir()).glob("crmscore-serve-*"))
    retail, _ = write_configs(tmp_path / "killed")
    proc, url = start_server(retail, retail.parent, ready="/livez")
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children and httpx.get(f"{url}/livez", timeout=10).status_code == 200
    proc.kill()  # SIGKILL: no handler of crmscore serve runs
    proc.wait(timeout=30)
    _, alive = psutil.wait_procs(children, timeout=60)
    try:
        assert not [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE], "BentoML outlived crmscore serve"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/livez", timeout=5)
    finally:
        for p in alive:
            p.kill()
        # A killed crmscore serve cannot remove its BentoML home (README): this test's own, removed here.
        for home in set(Path(tempfile.gettempdir()).glob("crmscore-serve-*")) - homes:
            shutil.rmtree(home, ignore_errors=True)


def test_what_a_hostile_body_can_make_the_server_do_is_bounded(server):
    """A security review's findings (2026-12-07): 9,800,000 ids in a 39 MB body (under max_body_mb) held the
    worker's event loop 35 s before the batch check; a 5,000,000-character `where` value was echoed whole
    into the log, the audit file and a response header (60 KB there broke proxies)."""
    ids = json.dumps({"ids": ["10"] * 400_000}).encode()  # 2.4 MB
    with server.client("admin") as c:
        big = c.post("/score/churn", content=ids, headers={"content-type": "application/json"})
        over = c.post(
            "/score/churn/history",
            json={
                "customers": [{"customer_id": str(i), "purchases": []} for i in range(MAX_BATCH + 1)],
                "as_of": "2011-12-01",
            },
        )
        long_value = c.post("/at_risk", json={"where": {"country": "F" + "r" * 1_000}, "top": 1})
        absent = c.post(
            "/at_risk",
            json={
                "where": {"country": [f"Nowhere {i:03d} " + "x" * 980 for i in range(100)]},
                "top": 1,
                "format": "csv",
            },
        )
    assert big.status_code == 413 and big.json()["error"] == (
        f"the request body is 2.4 MB, over what serving.max_batch ({MAX_BATCH}) ids can take "
        f"({round(MAX_BATCH * 800 / 1e6 + 0.01, 2):g} MB); send fewer records per call"
    )
    assert (
        over.status_code == 400
        and f"{MAX_BATCH + 1} customers is over the maximum of {MAX_BATCH} per call" in over.json()["error"]
    )
    assert long_value.status_code == 400 and "where.country" in long_value.json()["error"]
    assert absent.status_code == 200, absent.text
    header = absent.headers["x-crmscore-warnings"]
    said = json.loads(header)  # each warning cut to 800 characters (5 named values of ~1,000 took 5 KB)
    assert len(header) <= 4_000 and said[0].endswith("...") and all(len(w) <= 803 for w in said)
    assert absent.text.splitlines()[0].startswith("customer_id,")  # the list itself: no one has those countries
