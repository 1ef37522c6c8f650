"""API keys and roles, without a server."""

from __future__ import annotations

import asyncio

import pytest

from serving.auth import ApiKeyMiddleware, AuthConfigError, BodyLimit, KeyStore, entitled, load_keys


def test_parse_commas_and_lines():
    keys = KeyStore.parse("k1:scorer, k2:marketer\n# a comment\nk3:admin\n", source="test")
    assert [keys.role(k) for k in ("k1", "k2", "k3", "k4", "", None)] == [
        "scorer",
        "marketer",
        "admin",
        None,
        None,
        None,
    ]
    assert len(keys) == 3


def test_key_may_contain_colons():
    assert KeyStore.parse("a:b:c:admin", source="test").role("a:b:c") == "admin"


@pytest.mark.parametrize("text", ["nocolon", ":scorer", "k1:owner"])
def test_malformed_entry_names_source_and_position_not_key(text):
    with pytest.raises(AuthConfigError) as err:
        KeyStore.parse(f"ok:scorer,{text}", source="environment variable X")
    assert "environment variable X: entry 2" in str(err.value)
    assert "nocolon" not in str(err.value)


def test_repr_hides_keys():
    assert "secret" not in repr(KeyStore({"secret": "admin"}))


@pytest.mark.parametrize(
    ("role", "needed", "ok"),
    [
        ("scorer", "scorer", True),
        ("scorer", "marketer", False),
        ("marketer", "scorer", True),
        ("marketer", "admin", False),
        ("admin", "marketer", True),
        (None, "scorer", False),
        ("owner", "scorer", False),
    ],
)
def test_roles_are_ordered(role, needed, ok):
    assert entitled(role, needed) is ok


def test_load_keys_env_and_file(minimal_config, tmp_path):
    (tmp_path / "keys.txt").write_text("f1:admin\nshared:marketer\n")
    config = minimal_config(serving=dict(api_keys_env="MY_KEYS", api_keys_file="keys.txt"))
    keys = load_keys(config, environ={"MY_KEYS": "e1:scorer,shared:scorer"})
    assert (keys.role("e1"), keys.role("f1"), keys.role("shared")) == ("scorer", "admin", "marketer")


def test_missing_key_file_is_an_error(minimal_config):
    config = minimal_config(serving=dict(api_keys_file="nope.txt"))
    with pytest.raises(AuthConfigError, match="api_keys_file"):
        load_keys(config, environ={})


def _call(middleware, path, headers):
    """The middleware's status and the role it passed on, for ``headers`` (a dict, or a list of pairs
    to send one header twice)."""
    sent, seen = [], {}

    async def app(scope, receive, send):
        seen["role"] = scope.get("crmscore.role")
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(message):
        sent.append(message)

    mw = ApiKeyMiddleware(app, keys=lambda: middleware, route_roles={"/score": "scorer", "/reload": "admin"})
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
    method = dict(pairs).get("method", "POST")
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.encode(), v.encode()) for k, v in pairs if k != "method"],
    }
    asyncio.run(mw(scope, None, send))
    return sent[0]["status"], seen.get("role")


@pytest.mark.parametrize(
    ("path", "headers", "status", "role"),
    [
        ("/score", {}, 401, None),
        ("/score", {"x-api-key": "wrong"}, 401, None),
        ("/score", {"x-api-key": "s"}, 200, "scorer"),
        ("/score", {"authorization": "Bearer a"}, 200, "admin"),
        ("/score", {"authorization": "Basic a"}, 401, None),
        ("/reload", {"x-api-key": "s"}, 403, None),
        ("/reload", {"x-api-key": "a"}, 200, "admin"),
        ("/readyz", {}, 200, None),
        # A body that is not JSON (curl -d sends a form's type): 415 saying so, after the key is checked.
        (
            "/score",
            {"x-api-key": "s", "content-type": "application/x-www-form-urlencoded", "content-length": "9"},
            415,
            None,
        ),
        ("/score", {"x-api-key": "s", "content-length": "9"}, 415, None),
        (
            "/score",
            {"x-api-key": "s", "content-type": "application/json; charset=utf-8", "content-length": "9"},
            200,
            "scorer",
        ),
        ("/score", {"x-api-key": "s", "content-type": "text/plain", "method": "GET"}, 200, "scorer"),
        ("/score", {"content-type": "text/plain"}, 401, None),
        # Two types: this middleware read the last, BentoML the first, and a form body was scored as JSON.
        (
            "/score",
            [
                ("x-api-key", "s"),
                ("content-type", "application/x-www-form-urlencoded"),
                ("content-type", "application/json"),
                ("content-length", "9"),
            ],
            415,
            None,
        ),
    ],
)
def test_middleware_statuses(path, headers, status, role):
    assert _call(KeyStore({"s": "scorer", "a": "admin"}), path, headers) == (status, role)


def test_identify_gives_the_role_and_the_key_id_the_audit_names():
    from serving.auth import key_id

    keys = KeyStore.parse("k1:scorer, k2:admin", source="test")
    assert keys.identify("k2") == ("admin", key_id("k2")) and keys.identify("k3") is None
    assert len(key_id("k2")) == 12 and "k2" not in repr(keys)


def test_one_key_with_two_roles_is_an_error_and_a_keyless_server_says_so():
    """``k1:scorer,k1:admin`` made k1 an admin without a word (the last entry won)."""
    with pytest.raises(AuthConfigError) as err:
        KeyStore.parse("k1:scorer, k2:marketer, k1:admin", source="environment variable X")
    assert str(err.value) == (
        "environment variable X: entry 3 gives the key of entry 1 another role ('admin', not 'scorer'); "
        "a key has one role"
    )
    assert KeyStore.parse("k1:scorer,k1:scorer", source="x").role("k1") == "scorer"  # a repeat is harmless
    sent = []

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):  # never reached
        raise AssertionError

    scope = {"type": "http", "method": "GET", "path": "/score", "headers": [(b"x-api-key", b"k1")]}
    asyncio.run(ApiKeyMiddleware(app, keys=lambda: KeyStore({}), route_roles={"/score": "scorer"})(scope, None, send))
    assert sent[0]["status"] == 401 and b"this server has no API keys configured" in sent[1]["body"]


def test_serve_refuses_a_malformed_key_source_before_starting_the_server(tmp_path, write_config, monkeypatch):
    """BentoML starts a worker that fails at start again and again: the server neither answered nor exited."""
    from typer.testing import CliRunner

    from serving.cli import app
    from tests.conftest import minimal_config_dict

    path = write_config(minimal_config_dict())
    monkeypatch.setenv("CRMSCORE_API_KEYS", "k1:Admin, k2 : marketer")
    result = CliRunner().invoke(app, ["serve", "--config", str(path), "--port", "1"])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: environment variable CRMSCORE_API_KEYS: entry 1 has unknown role 'Admin'; roles are scorer, marketer, admin"
    )


def test_a_body_over_max_body_mb_is_413_before_it_is_read():
    """One posted call of 110 MB took a worker from 0.6 to 3.4 GB; the limit is read from the
    Content-Length, after the key (an unknown caller learns nothing of the limits)."""
    sent = []

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})

    def call(length, key=b"s"):
        sent.clear()
        headers = [(b"x-api-key", key), (b"content-type", b"application/json"), (b"content-length", length)]
        scope = {"type": "http", "method": "POST", "path": "/score", "headers": headers}
        middleware = ApiKeyMiddleware(
            app,
            keys=lambda: KeyStore({"s": "scorer"}),
            route_roles={"/score": "scorer"},
            max_body_mb=lambda path: BodyLimit(50.0),
        )
        asyncio.run(middleware(scope, None, send))
        return sent[0]["status"], sent[1]["body"] if len(sent) > 1 else b""

    status, body = call(b"110000000")
    assert status == 413 and b"the request body is 110.0 MB, over serving.max_body_mb (50 MB)" in body
    assert call(b"50000000")[0] == 200 and call(b"110000000", key=b"x")[0] == 401


def test_a_chunked_body_is_counted_as_it_arrives_and_413_past_max_body_mb():
    """Without a Content-Length (chunked) the size was not checked: a 300 MB upload took a worker from
    0.6 to 1.2 GB. Now it is counted as it arrives; one within the limit reaches the app whole."""
    sent, seen = [], []

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        message = await receive()
        seen.append((message["body"], message["more_body"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})

    def call(chunks):
        sent.clear()
        seen.clear()
        messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
        read = []

        async def receive():
            read.append(1)
            return messages[len(read) - 1]

        headers = [(b"x-api-key", b"s"), (b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
        scope = {"type": "http", "method": "POST", "path": "/score", "headers": headers}
        middleware = ApiKeyMiddleware(
            app,
            keys=lambda: KeyStore({"s": "scorer"}),
            route_roles={"/score": "scorer"},
            max_body_mb=lambda path: BodyLimit(1.0),
        )
        asyncio.run(middleware(scope, receive, send))
        return sent[0]["status"], sent[1]["body"] if len(sent) > 1 else b"", len(read)

    status, body, read = call([b"x" * 400_000] * 5)
    assert status == 413 and read == 3  # refused at the third chunk (1.2 MB), the rest never read
    assert b"over serving.max_body_mb (1 MB) (sent without a Content-Length" in body
    status, _, _ = call([b'{"ids": ', b'["1"]}'])
    assert status == 200 and seen == [(b'{"ids": ["1"]}', False)]


def test_posted_purchases_over_max_posted_rows_are_refused_naming_the_setting():
    from serving.runtime import RequestError, score_posted

    customers = [{"customer_id": c, "purchases": [{}] * 60, "events": [{}] * 2} for c in ("a", "b")]
    with pytest.raises(RequestError) as err:
        score_posted(None, "churn", ["a", "b"], as_of=None, k=0, max_batch=10, customers=customers, max_rows=100)
    assert str(err.value).startswith(
        "124 purchases and events in one call is over the maximum of 100 (serving.max_posted_rows)"
    )
