"""The served OpenAPI document (``/docs.json``), completed with what BentoML leaves out.

BentoML generates the paths and bodies from the endpoints' signatures, but says nothing of the API
keys (a client generated from it sent none), lists no 401/403/415/503 answers, describes a 400's
``detail`` as a string where it is pydantic's list of errors, gives no CSV for the lists, and its
``info`` is its own boilerplate with version "None". :func:`complete_spec` adds those;
:class:`OpenApiMiddleware` applies it to the document as it is served.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Mapping
from typing import Any

from serving.auth import ROUTE_ROLES, Receive, Scope, Send

__all__ = ["DOCS_PATH", "OpenApiMiddleware", "complete_spec", "route_error", "without_tracker"]

DOCS_PATH = "/docs.json"
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "what was wrong, naming the field or the rule"}},
}
_ANSWERS = {
    "401": "no API key, or an unknown one",
    "403": "the key's role is below the route's (or a scorer asked for reasons)",
    "413": "the body is over serving.max_body_mb (by its Content-Length, or counted as it arrives when chunked)",
    "415": "the body was not sent as JSON (Content-Type: application/json)",
    "503": "no champion model or snapshot yet (the answer names the command to run), or a reload failed",
    "504": "the call was still running after the server's timeout (120 s); send fewer records per call",
}
_LISTS = ("/at_risk", "/top/next_purchase", "/top/lead")


def _version() -> str:
    try:
        return importlib.metadata.version("crmscore")
    except importlib.metadata.PackageNotFoundError:
        return "0.1.0"


def complete_spec(spec: Mapping[str, Any], route_roles: Mapping[str, str] = ROUTE_ROLES) -> dict[str, Any]:
    """``spec`` with crmscore's info, the API-key security schemes on every keyed route (with the
    least role it needs), its error answers, a 400 whose ``detail`` is a list, and the lists' CSV."""
    out = json.loads(json.dumps(spec))  # a copy to change
    out["info"] = {
        "title": "crmscore",
        "version": _version(),
        "description": "Churn, next-purchase and lead scores with their reasons, and the lists built on them. "
        "Every route but the health checks and /metrics needs an API key, sent as `X-API-Key: <key>` or "
        "`Authorization: Bearer <key>`; roles scorer < marketer < admin (reasons need marketer).",
    }
    components = out.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(
        {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "Bearer": {"type": "http", "scheme": "bearer"},
        }
    )
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = _ERROR
    if "InvalidArgument" in schemas:
        schemas["InvalidArgument"]["properties"]["detail"] = {
            "type": "array",
            "description": "pydantic's errors: each names the field (loc), the rule (msg) and its type",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        }
    for path, role in route_roles.items():
        for operation in out.get("paths", {}).get(path, {}).values():
            operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
            operation["description"] = f"{operation.get('description') or ''}\n\nLeast role: {role}.".strip()
            responses = operation.setdefault("responses", {})
            for status, why in _ANSWERS.items():
                responses.setdefault(
                    status,
                    {
                        "description": why,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    },
                )
            if path in _LISTS and "200" in responses:
                responses["200"].setdefault("content", {})["text/csv"] = {
                    "schema": {"type": "string", "description": "with format 'csv': the list as CSV, one row per item"}
                }
    ready = out.get("paths", {}).get("/readyz", {}).get("get")
    if ready is not None:
        ready.setdefault("responses", {}).setdefault(
            "503", {"description": "not ready: no model loaded yet, or a reload in progress"}
        )
    return out


# BentoML's Swagger page loads Google Tag Manager (GTM-WNPGWRM) in the browser of whoever opens it, whatever
# BENTOML_DO_NOT_TRACK says: the page is served without those blocks.
_TRACKER = re.compile(
    rb"<!-- Google Tag Manager( \(noscript\))? -->.*?<!-- End Google Tag Manager( \(noscript\))? -->", re.S
)


def without_tracker(page: bytes) -> bytes:
    """BentoML's docs page without its Google Tag Manager script and iframe."""
    return _TRACKER.sub(b"", page)


_PUBLIC = ("GET /livez", "GET /readyz", "GET /healthz", "GET /metrics", "GET /docs.json", "GET / (the API's docs page)")


def route_error(status: int, method: str, path: str, route_roles: Mapping[str, str] = ROUTE_ROLES) -> bytes:
    """The JSON body (``{"error": ...}``, as every other refusal's) of a 404 (no such route: the routes
    there are) or a 405 (a route called with another method than POST)."""
    public = [entry.split(" ")[0] for entry in _PUBLIC if entry.split(" ")[1] == path]
    if status == 405 and public:  # POST /metrics: the public routes take GET
        text = f"{path} takes {public[0]}, not {method}"
    elif status == 405:
        text = f"{path} takes POST with a JSON body, not {method}"
    else:
        routes = ", ".join([*(f"POST {route}" for route in route_roles), *_PUBLIC])
        text = f"no route {method} {path}; the API's routes: {routes}"
    return json.dumps({"error": text}).encode()


class OpenApiMiddleware:
    """Pure ASGI middleware: serves :data:`DOCS_PATH` through :func:`complete_spec`, the docs page at
    ``/`` :func:`without_tracker`, and BentoML's plain-text 404 and 405 as the JSON error every other
    refusal is (:func:`route_error`), as the document says errors are."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if path not in (DOCS_PATH, "/") or scope.get("method") != "GET":
            await self.app(scope, receive, _json_route_errors(scope, send))
            return
        started: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def keep(message: Any) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, keep)
        body = b"".join(chunks)
        if started.get("status") == 200:
            body = json.dumps(complete_spec(json.loads(body))).encode() if path == DOCS_PATH else without_tracker(body)
        headers = [(k, v) for k, v in started.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": started.get("status", 500), "headers": headers})
        await send({"type": "http.response.body", "body": body})


_PYDANTIC_SUMMARY = re.compile(r"^\d+ validation errors? for ")


def validation_summary(body: bytes, shown: int = 3) -> bytes:
    """A 400's JSON body whose ``error`` is pydantic's count ("1 validation error for Input") with the
    fields and rules of ``detail`` written into it (``customers.0.purchases.3.amount: Input should be a
    valid number``, the first ``shown``, then how many more), as every other refusal's ``error`` names
    its field; ``detail`` stays as it is. Any other body is returned unchanged."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body
    detail = answer.get("detail") if isinstance(answer, dict) else None
    if not isinstance(detail, list) or not detail or not _PYDANTIC_SUMMARY.match(str(answer.get("error", ""))):
        return body
    said = [
        f"{'.'.join(str(part) for part in item.get('loc', ())) or 'body'}: {item.get('msg', '')}"
        for item in detail[:shown]
        if isinstance(item, dict)
    ]
    more = f" (and {len(detail) - shown} more)" if len(detail) > shown else ""
    return json.dumps({**answer, "error": "; ".join(said) + more}).encode()


def _json_route_errors(scope: Scope, send: Send) -> Send:
    """``send`` with a plain-text 404 or 405 (Starlette's routing answers) replaced by :func:`route_error`,
    and a 400's pydantic summary by :func:`validation_summary` (a 400 is held until its body is whole);
    any other answer passes as it is, a message at a time."""
    replaced = False
    held: list[Any] = []

    async def forward(message: Any) -> None:
        nonlocal replaced
        if held or (message["type"] == "http.response.start" and message["status"] == 400):
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                start, body = held[0], validation_summary(b"".join(m.get("body", b"") for m in held[1:]))
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                held.clear()
            return
        if message["type"] == "http.response.start" and message["status"] in (404, 405):
            headers = dict(message.get("headers", []))
            if headers.get(b"content-type", b"").startswith(b"text/plain"):
                body = route_error(message["status"], scope.get("method", ""), scope.get("path", ""))
                kept = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"content-type", b"content-length")
                ]
                kept += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({**message, "headers": kept})
                await send({"type": "http.response.body", "body": body})
                replaced = True
                return
        if replaced:  # the plain-text body of the answer already replaced
            return
        await send(message)

    return forward
