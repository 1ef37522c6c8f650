"""The fixes of BentoML in serving.bentoml_fixes: its request timeout (same answers, no timer left per request) and its log of refused requests."""

from __future__ import annotations

import asyncio
import json

import pytest
from bentoml._internal.server.http import traffic

from serving import bentoml_fixes

ORIGINAL = traffic.TimeoutMiddleware


def _app(delay: float = 0.0, fail: bool = False):
    async def app(scope, receive, send):
        await asyncio.sleep(delay)
        if fail:
            raise RuntimeError("handler failed")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def _call(middleware) -> tuple[list[dict], int]:
    """Run one HTTP request through ``middleware`` on a fresh loop; the sent messages and the
    number of timers still scheduled (not cancelled) once it has finished."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    async def run() -> int:
        await middleware({"type": "http", "method": "POST", "path": "/"}, receive, send)
        await asyncio.sleep(0)  # one loop turn: a cancelled handler drops its own sleep
        loop = asyncio.get_running_loop()
        return sum(not handle.cancelled() for handle in loop._scheduled)

    return sent, asyncio.run(run())


def test_no_timer_outlives_the_request():
    sent, live = _call(bentoml_fixes.TimeoutMiddleware(_app(), timeout=120))
    assert [m.get("status") for m in sent][:1] == [200] and sent[-1]["body"] == b"ok"
    assert live == 0
    # BentoML 1.4.39's own middleware leaves its 120 s timer behind: the reason for the fix.
    # If this starts failing, BentoML has fixed it and serving.bentoml_fixes can go.
    _, live_original = _call(ORIGINAL(_app(), timeout=120))
    assert live_original == 1


def test_a_slow_request_gets_504():
    sent, live = _call(bentoml_fixes.TimeoutMiddleware(_app(delay=0.5), timeout=0.05))
    assert sent[0]["status"] == 504
    assert "0.05 seconds" in json.loads(sent[1]["body"])["error"]
    assert live == 0


def test_a_failing_handler_raises_at_once_instead_of_waiting_for_the_timeout():
    with pytest.raises(RuntimeError, match="handler failed"):
        _call(bentoml_fixes.TimeoutMiddleware(_app(fail=True), timeout=120))


def test_apply_installs_it_where_bentoml_looks_it_up():
    import serving.service  # noqa: F401 - importing the service applies the fix

    assert traffic.TimeoutMiddleware is bentoml_fixes.TimeoutMiddleware


def test_a_refused_request_is_one_info_line_without_the_posted_values(caplog):
    """BentoML logged a body the schema refused at ERROR with the traceback, whose last line held
    the posted values (customer ids, purchase histories): now one line naming the fields and rules."""
    import logging

    from bentoml._internal.server.http_app import log_exception
    from pydantic import BaseModel, ValidationError

    from serving.schemas import Id

    class Body(BaseModel):
        ids: list[Id]

    bentoml_fixes.apply()
    request = type("Request", (), {"url": type("Url", (), {"path": "/score/churn"})(), "method": "POST"})()
    with caplog.at_level(logging.INFO, logger="bentoml._internal.server.http_app"):
        try:
            Body.model_validate({"ids": ["customer-4711", 3.5]})
        except ValidationError:
            log_exception(request)
        try:
            raise RuntimeError("a fault of ours")
        except RuntimeError:
            log_exception(request)
    refused, fault = caplog.records
    assert (refused.levelname, refused.exc_info) == ("INFO", None)
    assert refused.getMessage() == "400 on /score/churn [POST]: ids.1: Input should be a valid string"
    assert "4711" not in caplog.text and "3.5" not in caplog.text.split("RuntimeError")[0]
    assert fault.levelname == "ERROR" and fault.exc_info is not None  # a 5xx keeps its traceback


def test_a_400_says_its_fields_and_rules_in_its_error_not_pydantics_count():
    """An integrator read `"error": "1 validation error for Input"` and had to dig the field out of `detail`."""
    import json

    from serving.openapi import validation_summary

    detail = [
        {"loc": ["customers", 0, "purchases", i, "amount"], "msg": "Input should be a valid number"} for i in range(5)
    ]
    body = json.dumps({"error": "5 validation errors for Input", "detail": detail}).encode()
    answer = json.loads(validation_summary(body))
    assert answer["error"] == (
        "customers.0.purchases.0.amount: Input should be a valid number; customers.0.purchases.1.amount: Input should "
        "be a valid number; customers.0.purchases.2.amount: Input should be a valid number (and 2 more)"
    )
    assert answer["detail"] == detail
    ours = json.dumps({"error": "customers[0].purchases[3] has no product_id", "detail": detail[:1]}).encode()
    assert validation_summary(ours) == ours and validation_summary(b"not json") == b"not json"


def test_a_logged_message_is_one_line_of_bounded_length_whatever_a_request_put_in_it(caplog):
    """A security review's findings (2026-12-07): a field name holding a line break and a made-up
    "audit: /reload by key ... (admin)" wrote a second log line that read as a genuine audit record, and a
    5,000,000-character `where` value wrote a line that long."""
    import logging

    bentoml_fixes.apply()
    forged = "a\n2026-12-07T18:06:00+0000 [INFO] [entry_service:crmscore:1] audit: /reload by key 0badc0ffee00 (admin)"
    with caplog.at_level(logging.INFO, logger="bentoml.crmscore"):
        logging.getLogger("bentoml.crmscore").info("400 on %s: %s: bad", "/at_risk", f"where.{forged}")
        logging.getLogger("bentoml.crmscore").info("value %s", "x" * 5_000)
    first, second = (r.getMessage() for r in caplog.records)
    assert "\n" not in first and first.startswith("400 on /at_risk: where.a\\n2026-12-07T18:06:00")
    assert len(second) < bentoml_fixes.LOG_MESSAGE_CHARS + 40 and second.endswith("... (3,006 more characters)")
    assert bentoml_fixes.one_line("tab\there\x1b[31m é 中") == "tab\\there\\x1b[31m é 中"  # text stays text


def test_the_csv_lists_warnings_header_is_bounded_and_says_what_it_left_out():
    from serving.service import _header_list

    assert json.loads(_header_list(["a", "b"])) == ["a", "b"]
    said = json.loads(_header_list([f"{i} " + "x" * 1_000 for i in range(40)]))
    assert len(json.dumps(said)) <= 4_000 and said[0] == "0 " + "x" * 798 + "..."
    assert said[-1] == f"and {40 - len(said) + 1} more warnings: ask for format json to read them all"


def test_a_client_gone_mid_body_is_one_info_line_not_an_error_with_a_traceback(caplog):
    import logging

    from bentoml._internal.server.http_app import log_exception
    from starlette.requests import ClientDisconnect

    bentoml_fixes.apply()
    request = type("Request", (), {"url": type("Url", (), {"path": "/score/churn"})(), "method": "POST"})()
    with caplog.at_level(logging.INFO, logger="bentoml._internal.server.http_app"):
        try:
            raise ClientDisconnect()
        except ClientDisconnect:
            log_exception(request)
    (gone,) = caplog.records
    assert (gone.levelname, gone.exc_info) == ("INFO", None)
    assert gone.getMessage() == "/score/churn [POST]: the client went away before its whole body arrived"
