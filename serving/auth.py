"""API keys with roles, and the ASGI middleware that checks them before any scoring route runs.

Roles are ordered: ``scorer`` < ``marketer`` < ``admin``; a role may do all that the roles
below it may.

========  =============================================================
role      entitled to
========  =============================================================
scorer    scores by id or posted history (probability, tier/grade, values),
          model info; no reasons (they expose the customer's feature values)
marketer  the above with reasons, and the lists (at-risk, campaign, call; with reasons)
admin     all of the above, and reloading the champions
========  =============================================================

Keys come from an environment variable (``serving.api_keys_env``, default ``CRMSCORE_API_KEYS``)
and/or a file (``serving.api_keys_file``), both in the form ``key:role`` separated by commas or
new lines (``#`` starts a comment line in the file). Keys are compared with
:func:`hmac.compare_digest` against every known key, and never logged or echoed in errors: the
audit log names a key by :func:`key_id`, a prefix of its SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, NamedTuple

from features.config import Config

__all__ = [
    "ROLES",
    "ROUTE_ROLES",
    "ApiKeyMiddleware",
    "AuthConfigError",
    "KeyStore",
    "KEY_ID_SCOPE_KEY",
    "ROLE_SCOPE_KEY",
    "entitled",
    "key_id",
    "load_keys",
]

ROLES: tuple[str, ...] = ("scorer", "marketer", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}

# The least role each protected route needs. Health, metrics and the OpenAPI docs stay open.
ROUTE_ROLES: dict[str, str] = {
    "/score/churn": "scorer",
    "/score/next_purchase": "scorer",
    "/score/lead": "scorer",
    "/score/churn/history": "scorer",
    "/score/next_purchase/history": "scorer",
    "/score/lead/record": "scorer",
    "/models": "scorer",
    "/at_risk": "marketer",
    "/top/next_purchase": "marketer",
    "/top/lead": "marketer",
    "/reload": "admin",
}
# Reasons expose feature values of one customer: only these roles may read them.
REASONS_ROLE = "marketer"
# Where the middleware leaves the caller's role, and its key's id (key_id), for the endpoint (ASGI scope keys).
ROLE_SCOPE_KEY = "crmscore.role"
KEY_ID_SCOPE_KEY = "crmscore.key_id"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class AuthConfigError(ValueError):
    """An API key source that cannot be used; the message names the source and entry, never a key."""


def key_id(key: str) -> str:
    """How a key is named in the log: the first 12 hex digits of its SHA-256, never the key itself.
    ``printf %s "$KEY" | sha256sum | cut -c1-12`` gives a key's id to match the log against."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def entitled(role: str | None, needed: str) -> bool:
    """Return whether ``role`` may do what ``needed`` may (roles are ordered scorer < marketer < admin)."""
    return role is not None and _RANK.get(role, -1) >= _RANK[needed]


class KeyStore:
    """A set of API keys with their roles; lookups take the same time whichever key matches."""

    def __init__(self, keys: dict[str, str]) -> None:
        for role in keys.values():
            if role not in _RANK:
                raise AuthConfigError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        # Each key's id (key_id) is worked out here, once, not on every request that names the key.
        self._keys = [(key.encode(), role, key_id(key)) for key, role in keys.items()]

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:  # keys must never reach a log line
        return f"KeyStore({len(self._keys)} keys)"

    @classmethod
    def parse(cls, text: str, *, source: str) -> KeyStore:
        """Read ``key:role`` entries separated by commas or new lines.

        Raises
        ------
        AuthConfigError
            An entry without ``:``, with an empty key or with an unknown role; the message names
            ``source`` and the entry's position, not the key.
        """
        keys: dict[str, str] = {}
        where: dict[str, int] = {}
        entries = [e.strip() for line in text.splitlines() if not line.strip().startswith("#") for e in line.split(",")]
        for position, entry in enumerate((e for e in entries if e), start=1):
            key, sep, role = entry.rpartition(":")
            key, role = key.strip(), role.strip()
            if not sep or not key:
                raise AuthConfigError(f"{source}: entry {position} is not of the form key:role")
            if role not in _RANK:
                raise AuthConfigError(
                    f"{source}: entry {position} has unknown role {role!r}; roles are {', '.join(ROLES)}"
                )
            if key in keys and keys[key] != role:  # the last one silently won: a scorer's key became admin
                raise AuthConfigError(
                    f"{source}: entry {position} gives the key of entry {where[key]} another role ({role!r}, "
                    f"not {keys[key]!r}); a key has one role"
                )
            keys[key], where[key] = role, position
        return cls(keys)

    def _as_dict(self) -> dict[str, str]:
        return {key.decode(): role for key, role, _ in self._keys}

    def role(self, key: str | None) -> str | None:
        """Return the role of ``key``, or None when it is unknown; every known key is compared."""
        found = self.identify(key)
        return found[0] if found is not None else None

    def identify(self, key: str | None) -> tuple[str, str] | None:
        """Return ``(role, key_id(key))`` of ``key``, or None when it is unknown; every known key is compared."""
        if not key:
            return None
        given = key.encode()
        found = None
        for known, role, known_id in self._keys:
            if hmac.compare_digest(given, known):
                found = role, known_id
        return found


def load_keys(config: Config, *, environ: MutableMapping[str, str] | None = None) -> KeyStore:
    """Read the API keys named by ``config.serving``: the environment variable, then the file.

    A key in both takes the file's role. The file path is resolved against the config's folder.

    Raises
    ------
    AuthConfigError
        The file is missing, or an entry is malformed.
    """
    environ = os.environ if environ is None else environ
    serving = config.serving
    keys: dict[str, str] = {}
    text = environ.get(serving.api_keys_env, "")
    if text.strip():
        keys.update(KeyStore.parse(text, source=f"environment variable {serving.api_keys_env}")._as_dict())
    if serving.api_keys_file:
        path = Path(config.resolve(serving.api_keys_file))
        if not path.is_file():
            raise AuthConfigError(f"serving.api_keys_file: {path} does not exist")
        keys.update(KeyStore.parse(path.read_text(), source=f"serving.api_keys_file {path}")._as_dict())
    return KeyStore(keys)


def _key_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"x-api-key":
            return value.decode("latin-1").strip()
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def _not_json(scope: Scope) -> str | None:
    """Why a POST body is not JSON, or None. ``curl -d`` sends a form's content type; the body then
    failed the schema as one odd field ("Field required: ids", "Extra inputs are not permitted" for
    the whole body as a name), which did not say what was wrong."""
    if scope.get("method") != "POST":
        return None
    headers = dict(scope.get("headers", []))
    kinds = [v for k, v in scope.get("headers", []) if k == b"content-type"]
    if len(kinds) > 1:  # this reads the last, BentoML the first: a form body passed as JSON
        return f"send one Content-Type header, application/json (got {len(kinds)})"
    kind = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
    if kind == "application/json" or (not kind and headers.get(b"content-length", b"0") == b"0"):
        return None
    got = f"got {kind!r}" if kind else "got none"
    return f"send the request body as JSON with the header 'Content-Type: application/json' ({got})"


class BodyLimit(NamedTuple):
    """The largest request body a route takes, in MB, and the setting it comes from, as a 413 names it."""

    mb: float
    rule: str = "serving.max_body_mb"


def _too_large(scope: Scope, limit: BodyLimit | None) -> str | None:
    """Why a request body is refused unread for its size, or None."""
    length = dict(scope.get("headers", [])).get(b"content-length", b"")
    if limit is None or not length.isdigit() or int(length) <= limit.mb * 1e6:
        return None
    return (
        f"the request body is {int(length) / 1e6:,.1f} MB, over {limit.rule} ({limit.mb:g} MB); "
        "send fewer records per call"
    )


async def _counted_body(receive: Receive, send: Send, limit: BodyLimit) -> Receive | None:
    """Read a body sent without a ``Content-Length`` (chunked) as it arrives, and hand it on whole;
    413 (and None) as soon as it passes ``limit``. Only the length of such a body was unchecked: a
    300 MB chunked upload took a worker from 0.6 to 1.2 GB before any check ran."""
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: nothing to answer
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit.mb * 1e6:
            await _deny(
                send,
                413,
                f"the request body is over {limit.rule} ({limit.mb:g} MB) (sent without a Content-Length, "
                "counted as it arrived); send fewer records per call",
            )
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

    async def again() -> MutableMapping[str, Any]:
        return replay.pop() if replay else await receive()

    return again


async def _deny(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="crmscore", X-API-Key'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ApiKeyMiddleware:
    """Pure ASGI middleware: 401 without a known key, 403 when the key's role is below the route's.

    Parameters
    ----------
    app
        The wrapped ASGI app.
    keys
        A callable returning the :class:`KeyStore` in force, called on every request (cheaply: the
        service keeps the store, and replaces it when ``/reload`` reads the keys again), so that
        nothing is read when the service module is imported and a revoked key stops working.
    route_roles
        Route path (without the service's path prefix) -> the least role it needs.
    max_body_mb
        A callable of the route's path returning the largest request body it takes (:class:`BodyLimit`:
        ``serving.max_body_mb``, or less for a route whose body is small by rule; None: any), checked
        on its ``Content-Length`` before it is read, or counted as it arrives when it has none (chunked):
        413 above it.
    """

    def __init__(
        self,
        app: Any,
        *,
        keys: Callable[[], KeyStore],
        route_roles: dict[str, str] | None = None,
        max_body_mb: Callable[[str], BodyLimit | None] | None = None,
    ) -> None:
        self.app = app
        self._keys = keys
        self._route_roles = ROUTE_ROLES if route_roles is None else route_roles
        self._max_body_mb = max_body_mb

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        needed = self._route_roles.get(scope.get("path", "")) if scope["type"] == "http" else None
        if needed is None:
            await self.app(scope, receive, send)
            return
        key = _key_from_headers(scope.get("headers", []))
        if key is None:
            await _deny(
                send, 401, "missing API key: send it in the X-API-Key header or as 'Authorization: Bearer <key>'"
            )
            return
        store = self._keys()
        found = store.identify(key)
        if found is None:
            # A server started without keys refuses every key: say it is the server's, not the caller's.
            none = "; this server has no API keys configured (serving.api_keys_env, serving.api_keys_file)"
            await _deny(send, 401, "unknown API key" + ("" if len(store) else none))
            return
        role, known_id = found
        if not entitled(role, needed):
            await _deny(send, 403, f"role {role!r} may not call {scope['path']}: it needs role {needed!r} or above")
            return
        not_json = _not_json(scope)
        if not_json is not None:
            await _deny(send, 415, not_json)
            return
        limit = self._max_body_mb(scope.get("path", "")) if self._max_body_mb is not None else None
        too_large = _too_large(scope, limit)
        if too_large is not None:
            await _deny(send, 413, too_large)
            return
        if limit is not None and scope.get("method") == "POST" and b"content-length" not in dict(scope["headers"]):
            receive = await _counted_body(receive, send, limit)
            if receive is None:
                return
        scope[ROLE_SCOPE_KEY] = role
        scope[KEY_ID_SCOPE_KEY] = known_id
        await self.app(scope, receive, send)
