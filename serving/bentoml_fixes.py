"""Two fixes for BentoML 1.4: its request timeout, which keeps one live timer per request for the whole
timeout, and its log of a refused request, which wrote the request's own values into the server's log.

``bentoml._internal.server.http.traffic.TimeoutMiddleware`` schedules ``loop.call_later(timeout,
...)`` for every request and never cancels it. With the service's ``traffic.timeout`` of 120 s and
about 1,800 requests/s, some 200,000 timers (each with its future, bound method and context) stay
alive at once. They survive into the oldest garbage-collector generation, and each full
collection walked them all: 30 ms at first, over 100 ms within half a minute of load (measured with
a ``gc.callbacks`` log in the server), which set the p99 latency. The timeout itself cannot be
switched off (the config requires ``traffic.timeout > 0``).

:class:`TimeoutMiddleware` below behaves the same (a 504 JSON error when no response has started
within the timeout) but cancels its timer as soon as the response starts. :func:`apply` installs
it where BentoML looks the class up when it builds the app.

BentoML logs every request it refuses (a body that fails the schema: 400) at ERROR with the whole
traceback, whose last line is pydantic's error with ``input_value=...``: the ids or purchase
histories a client posted, customer data, 24 lines per refused call. :class:`RefusedRequestLog`
turns such a record into one INFO line with the fields and rules (``400 on /score/churn [POST]:
ids: List should have at least 1 item after validation, not 0``), without the values; a 5xx keeps
its traceback.

BentoML's request metrics (``/metrics``) label each request by its path, whatever it is: every path a
scanner tries (``/wp-login.php``, ``/.env``, ...) added series that stay for the life of the worker, in
its memory and in every scrape. :class:`BoundedMetricsMiddleware` labels a path that is none of the
service's routes, health checks or docs ``endpoint="unknown"``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bentoml._internal.context import server_context
from bentoml._internal.server.http import instruments, traffic
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

__all__ = ["UNKNOWN_PATH", "BoundedMetricsMiddleware", "RefusedRequestLog", "TimeoutMiddleware", "apply"]

Scope = dict[str, Any]


class TimeoutMiddleware:
    """504 when a request has not started its response within ``timeout`` seconds."""

    def __init__(self, app: Any, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started = loop.create_future()

        def mark() -> None:
            if not started.done():
                started.set_result(None)

        def expire() -> None:
            if not started.done():
                started.set_exception(TimeoutError())

        async def send_and_mark(message: Any) -> None:
            mark()
            await send(message)

        handler = asyncio.ensure_future(self.app(scope, receive, send_and_mark))
        handler.add_done_callback(lambda _: mark())  # ended without a response: nothing to time out
        timer = loop.call_later(self.timeout, expire)
        try:
            await started
        except TimeoutError:
            handler.cancel()
            body = {"error": f"Not able to process the request in {self.timeout} seconds"}
            await JSONResponse(body, status_code=504)(scope, receive, send)
            return
        finally:
            timer.cancel()  # the fix: BentoML's timer stays alive for the whole timeout
        await handler


UNKNOWN_PATH = "unknown"
_REAL_PATH = "crmscore.path"  # the scope key that carries the path past the metrics' label
_SERVED = ("/", "/docs.json", "/livez", "/readyz", "/healthz", "/metrics")


class BoundedMetricsMiddleware(instruments.RunnerTrafficMetricsMiddleware):
    """BentoML's request metrics, with any path other than the service's routes (and its health,
    metrics and docs pages, and the docs' static files) labelled :data:`UNKNOWN_PATH`; the request
    itself goes on with its own path (to its 404)."""

    def __init__(self, app: Any, **options: Any) -> None:
        super().__init__(app, **options)
        self._wrapped = app
        self.app = self._with_real_path  # what BentoML's middleware calls next

    async def _with_real_path(self, scope: Scope, receive: Any, send: Any) -> None:
        if _REAL_PATH in scope:
            scope = {key: value for key, value in scope.items() if key != _REAL_PATH} | {"path": scope[_REAL_PATH]}
        await self._wrapped(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        known = path in _SERVED or path in server_context.service_routes or path.startswith("/static_content/")
        if scope["type"] == "http" and not known:
            scope = {**scope, "path": UNKNOWN_PATH, _REAL_PATH: path}
        await super().__call__(scope, receive, send)


class RefusedRequestLog(logging.Filter):
    """Rewrites BentoML's log record of a request refused by the schema: one INFO line naming the
    fields and rules, without the posted values or the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            said = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                for e in error.errors(include_input=False, include_context=False, include_url=False)[:5]
            )
            record.msg, record.args = "400 on %s [%s]: %s", (*(record.args or ())[:2], said)
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = record.exc_text = None
        elif isinstance(error, ClientDisconnect):  # the client went away mid-body: nothing went wrong here
            record.msg, record.args = (
                "%s [%s]: the client went away before its whole body arrived",
                (record.args or ())[:2],
            )
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = record.exc_text = None
        return True


# The longest log message kept whole: a request's text reaches some (a `where` value, a field name).
LOG_MESSAGE_CHARS = 2_000


def one_line(text: str, limit: int = LOG_MESSAGE_CHARS) -> str:
    """``text`` as one log line: line breaks and other control characters escaped (a field name
    ``"a\\n2026-12-07T18:06:00+0000 [INFO] ... audit: /reload by key ..."`` wrote a second, forged
    line), and cut to ``limit`` characters saying how many more there were (a 5,000,000-character
    ``where`` value wrote a line that long)."""
    if text.isprintable() and len(text) <= limit:  # nearly every message: no pass over its characters
        return text
    safe = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return safe if len(safe) <= limit else f"{safe[:limit]}... ({len(safe) - limit:,} more characters)"


class OneLineLog(logging.Filter):
    """Every message of the logger as :func:`one_line` makes it (tracebacks are not the message: kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = one_line(message)
        if safe != message:
            record.msg, record.args = safe, None
        return True


def apply() -> None:
    """Make BentoML build its apps with :class:`TimeoutMiddleware` and :class:`BoundedMetricsMiddleware`
    (looked up by name at build time), log refused requests by :class:`RefusedRequestLog`, and every
    message of those and of crmscore's own log as one line of bounded length (:class:`OneLineLog`)."""
    traffic.TimeoutMiddleware = TimeoutMiddleware
    instruments.RunnerTrafficMetricsMiddleware = BoundedMetricsMiddleware
    # The request log rewrites refusals first, then every message is made one line (as crmscore's own log's).
    for name, kinds in (
        ("bentoml._internal.server.http_app", (RefusedRequestLog, OneLineLog)),
        ("bentoml.crmscore", (OneLineLog,)),  # serving.runtime.LOG
    ):
        log = logging.getLogger(name)
        for kind in kinds:
            if not any(isinstance(f, kind) for f in log.filters):
                log.addFilter(kind())
