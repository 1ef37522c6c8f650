"""The BentoML scoring API: wiring of schemas, API keys, the champion models and the at-risk lists.

Start it from the repository root with the config in ``CRMSCORE_CONFIG``::

    CRMSCORE_CONFIG=configs/online_retail.yaml BENTOML_DO_NOT_TRACK=true \\
        bentoml serve serving.service:CrmScore --host 127.0.0.1 --port 3000

(``crmscore serve --config C [--port P]`` does this from crmscore's own folder, so that packages of
the caller's folder named like ours, ``serving``, ``models``, ``features``, ``training``, are not
imported in their place, and sets ``CRMSCORE_WORKDIR`` to the caller's folder, which the service
then works in: relative paths of the config resolve there.) Every route but the health checks
(``/livez``, ``/readyz``), ``/metrics`` and the OpenAPI docs needs an API key; see
:mod:`serving.auth` for the roles. Errors are JSON ``{"error": ..., "detail": [...]}`` with a 4xx
status naming the field, or 503 when a model or snapshot is missing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import gc
import inspect
import json
import math
import os
import re
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import bentoml
import pandas as pd
from pydantic import BaseModel, BeforeValidator, Field
from starlette.responses import JSONResponse, Response

from features.config import Config, load_config
from models.drift import drift_overview
from serving import audit, bentoml_fixes, runtime, workers
from serving.auth import ROLE_SCOPE_KEY, ApiKeyMiddleware, AuthConfigError, BodyLimit, KeyStore, load_keys
from serving.openapi import OpenApiMiddleware
from serving.runtime import ModelUnavailable, RequestError, Runtime
from serving.schemas import (
    MAX_K,
    AtRiskResponse,
    CounterK,
    CustomerHistory,
    Id,
    LeadRecord,
    ModelsResponse,
    Moment,
    ScoreResponse,
    TopK,
    TopResponse,
    not_bool,
)

__all__ = ["CONFIG_ENV", "WORKDIR_ENV", "CrmScore"]

CONFIG_ENV = "CRMSCORE_CONFIG"
# How long /reload waits for every worker to have reloaded (within BentoML's request timeout, 120 s).
RELOAD_TIMEOUT_S = 100.0
LOG = runtime.LOG
WORKDIR_ENV = "CRMSCORE_WORKDIR"

bentoml_fixes.apply()  # before BentoML builds the app: a request timeout that does not pile up timers


def _error(exc: RequestError | ModelUnavailable) -> tuple[int, dict[str, Any]]:
    if isinstance(exc, ModelUnavailable):
        return 503, {"error": str(exc)}
    body: dict[str, Any] = {"error": exc.message}
    if exc.field is not None:
        loc = [int(p) if p.isdigit() else p for p in exc.field.split(".")]
        body["detail"] = [{"loc": loc, "msg": exc.message, "type": "value_error"}]
    return exc.status, body


def _answers(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn :class:`RequestError` (4xx) and :class:`ModelUnavailable` (503) into JSON responses."""

    def respond(exc: RequestError | ModelUnavailable, ctx: bentoml.Context) -> JSONResponse:
        status, body = _error(exc)
        # One INFO line, as a request the schema refuses gets (serving.bentoml_fixes): these were not logged.
        field = getattr(exc, "field", None)
        LOG.info(
            "%d on %s [%s]: %s%s",
            status,
            ctx.request.url.path,
            ctx.request.method,
            f"{field}: " if field else "",
            body["error"],
        )
        ctx.response.status_code = status  # BentoML copies this onto the response
        return JSONResponse(body, status_code=status)

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def run_async(self: CrmScore, *args: Any, ctx: bentoml.Context, **kwargs: Any) -> Any:
            try:
                return await func(self, *args, ctx=ctx, **kwargs)
            except (RequestError, ModelUnavailable) as exc:
                return respond(exc, ctx)

        return run_async

    @functools.wraps(func)
    def run(self: CrmScore, *args: Any, ctx: bentoml.Context, **kwargs: Any) -> Any:
        try:
            return func(self, *args, ctx=ctx, **kwargs)
        except (RequestError, ModelUnavailable) as exc:
            return respond(exc, ctx)

    return run


# The most of a response header the warnings take: proxies refuse larger headers (nginx: 4-8 KB per line by
# default, then a 502), and a `where` value that no customer has is echoed in its warning.
HEADER_CHARS = 4_000
# The most of one warning there: a drift warning (about 450 characters) whole, a 1,000-character value cut.
HEADER_TEXT_CHARS = 800


def _header_list(texts: list[str], limit: int = HEADER_CHARS) -> str:
    """``texts`` as a JSON list (ASCII) of at most ``limit`` characters: each text cut to
    :data:`HEADER_TEXT_CHARS`, and the texts that do not fit counted in a last one (the JSON body of the
    same list has them all)."""
    texts = [t if len(t) <= HEADER_TEXT_CHARS else t[:HEADER_TEXT_CHARS] + "..." for t in texts]
    for n in range(len(texts), -1, -1):
        rest = len(texts) - n
        shown = texts[:n] + ([f"and {rest} more warnings: ask for format json to read them all"] if rest else [])
        text = json.dumps(shown)
        if len(text) <= limit:
            return text
    return "[]"  # not reached: the count alone fits


def _csv_headers(body: dict[str, Any]) -> dict[str, str]:
    """What the JSON at-risk list says beside its rows, as headers of the CSV one: the snapshot date,
    the model, the matching count and ``X-Crmscore-Warnings``, a JSON list (ASCII) of the filter
    warnings and the snapshot's drift warning, so a spreadsheet export is not the only thing told."""
    warnings = [*body["warnings"], *([body["drift"]["warning"]] if body["drift"]["warning"] else [])]
    # A browser or a download tool saves it under a name that says what and when, not "at_risk".
    name = f"{'at-risk' if body['task'] == 'churn' else 'top-' + body['task'].replace('_', '-')}-{body['as_of']}"
    return {
        "Content-Disposition": f'attachment; filename="{re.sub(r"[^A-Za-z0-9._-]", "-", name)}.csv"',
        "X-Crmscore-As-Of": body["as_of"],
        "X-Crmscore-Model": f"{body['model_name']} v{body['model_version']}",
        "X-Crmscore-N-Matched": str(body["n_matched"]),
        "X-Crmscore-Warnings": _header_list(warnings),
        "X-Crmscore-N-Excluded": str(body["n_excluded"]),
        **({"X-Crmscore-Since": body["since_note"]} if body["since_note"] else {}),
    }


def _settle_heap() -> None:
    """Collect once, then freeze what is alive: the models, snapshots and libraries loaded at start.

    A full collection walks every tracked object, and the loaded process holds about 380,000:
    measured in the server, each full collection took 250-310 ms, stalling every request in
    flight. Frozen objects are skipped by later collections. After a reload the old champions are unfrozen and collected in
    this one call (a single pause of that size), and the new ones frozen.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _serving(state: runtime.State) -> None:
    """After a start or a reload: the gauges of what is served (:func:`_export_served`), then the heap settles."""
    _export_served(state)
    _settle_heap()


def _reloaded(tasks: list[str], state: runtime.State) -> None:
    """What a worker's reload (``/reload``, or the server's own every ``serving.reload_every_s``)
    loaded, in its log, and in its gauges; then the heap settles (a pause of a full collection, so
    only when something changed)."""
    _serving(state)
    for task in tasks:
        model = state.models.get(task)
        if model is None:
            LOG.warning("reload: no %s model served any more: %s", task, state.missing.get(task, ""))
        else:
            as_of = model.snapshot.as_of if model.snapshot is not None else "none"
            LOG.info("reload: %s v%s, snapshot as of %s", task, model.scorer.version, as_of)


def _export_feature_sql_lookups() -> None:
    """Count the posted records' feature-SQL cache lookups (``runtime.COMPILED``) in ``/metrics`` as
    ``crmscore_feature_sql_lookups_total{model, result}``, result ``hit``, ``miss`` or
    ``uncacheable`` (a model trained before its vocabulary was kept builds the SQL every call).

    prometheus_client is imported here, in the worker, once BentoML has set its multiprocess
    directory: imported earlier it would count in this process only, unseen by ``/metrics``."""
    if runtime.COMPILED.on_lookup is not None:
        return
    from prometheus_client import Counter

    lookups = Counter(
        "crmscore_feature_sql_lookups",
        "Feature SQL cache lookups of posted histories and lead records, by model and result",
        ["model", "result"],
    )
    runtime.COMPILED.on_lookup = lambda task, result: lookups.labels(model=task, result=result).inc()


# Gauges of what the server serves (_export_served), made in the worker once BentoML has set its
# multiprocess directory, as the feature-SQL counter is.
_SERVED: dict[str, Any] = {}


def _export_served(state: runtime.State) -> None:
    """What is served, per model, as ``/metrics`` gauges, set at start and after each reload, for an
    alert on the serving itself: ``crmscore_model_served`` (1, or 0 for a model with no champion),
    ``crmscore_model_version``, ``crmscore_model_loaded_timestamp_seconds``,
    ``crmscore_snapshot_as_of_timestamp_seconds`` (``time() - it`` is the snapshot's age: a nightly
    ``crmscore features --snapshots`` that stopped shows as a growing age, where the service answers
    with yesterday's features without a word), ``crmscore_snapshot_data_until_timestamp_seconds`` (the
    data's last row: an export that stopped, under a job that still passes today's date),
    ``crmscore_snapshot_rows`` and the snapshot's feature
    drift, ``crmscore_snapshot_drift_max_psi`` and ``crmscore_snapshot_drift_features_alert``.
    A value the state lacks (no snapshot, a version that is not a number) is NaN."""
    if not _SERVED:
        from prometheus_client import Gauge

        about = {
            "model_served": "1 when the model has a champion loaded, else 0",
            "model_version": "registered version of the champion served",
            "model_loaded_timestamp_seconds": "when the champion and its snapshot were loaded (Unix time)",
            "snapshot_as_of_timestamp_seconds": "the snapshot's cut-off (Unix time): time() minus it is its age",
            "snapshot_data_until_timestamp_seconds": "the last row of the data the snapshot was built from (Unix "
            "time): time() minus it is the export's age, which a cut-off passed as today's date hides",
            "snapshot_rows": "rows (customers or leads) of the snapshot served",
            "snapshot_drift_max_psi": "largest population stability index of a snapshot feature against training",
            "snapshot_drift_features_alert": "snapshot features with PSI >= 0.25 against training",
        }
        for name, text in about.items():
            _SERVED[name] = Gauge(f"crmscore_{name}", text, ["model"], multiprocess_mode="mostrecent")

    def seconds(value: Any) -> float:
        try:
            return pd.Timestamp(value).tz_localize(None).timestamp() if value else math.nan
        except (TypeError, ValueError):
            return math.nan

    def number(value: Any) -> float:
        try:
            return float(value)
        except (TypeError, ValueError):
            return math.nan

    for task in runtime.TASKS:
        model = state.models.get(task)
        snapshot = model.snapshot if model is not None else None
        drift = drift_overview(snapshot.drift) if snapshot is not None else None
        values = {
            "model_served": 1.0 if model is not None else 0.0,
            "model_version": number(model.info.get("version")) if model is not None else math.nan,
            "model_loaded_timestamp_seconds": seconds(model.loaded_at) if model is not None else math.nan,
            "snapshot_as_of_timestamp_seconds": seconds(snapshot.as_of) if snapshot is not None else math.nan,
            "snapshot_data_until_timestamp_seconds": seconds(snapshot.data_until) if snapshot is not None else math.nan,
            "snapshot_rows": float(len(snapshot.ids)) if snapshot is not None else math.nan,
            "snapshot_drift_max_psi": float(drift["max_psi"]) if drift is not None else math.nan,
            "snapshot_drift_features_alert": float(len(drift["alert"])) if drift is not None else math.nan,
        }
        for name, value in values.items():
            _SERVED[name].labels(model=task).set(value)


def _config() -> Config:
    """The config ``CRMSCORE_CONFIG`` names, a relative path read from ``CRMSCORE_WORKDIR`` when set."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"set {CONFIG_ENV} to the config file, e.g. {CONFIG_ENV}=configs/online_retail.yaml")
    return load_config(Path(os.environ.get(WORKDIR_ENV, ""), path))


# The API keys in force in this worker (key "current"): read at start and again at each /reload, so that a
# key taken out of serving.api_keys_file stops working without a restart. The middleware asks on every request.
_KEYS: dict[str, KeyStore] = {}


# This worker's serving.max_body_mb and max_batch, for the middleware and the schema (set at start; none before).
_LIMITS: dict[str, float] = {}
# The routes whose body is ids and two numbers, and the bytes an id may take there: 128 characters, each
# up to 6 when escaped (\u00e9), with quotes and a comma.
ID_ROUTES = frozenset({"/score/churn", "/score/next_purchase", "/score/lead"})
ID_BYTES = 800


def _body_limit(path: str) -> BodyLimit | None:
    """The largest body ``path`` takes: ``serving.max_body_mb``, and for a route of ids what
    ``serving.max_batch`` ids can take (1,000: 0.8 MB; a 39 MB body of 9,800,000 ids held the worker's
    event loop 35 s while pydantic read every one, before the batch check refused it)."""
    limit = _LIMITS.get("max_body_mb")
    if limit is None or path not in ID_ROUTES or "max_batch" not in _LIMITS:
        return None if limit is None else BodyLimit(limit)
    by_batch = round(_LIMITS["max_batch"] * ID_BYTES / 1e6 + 0.01, 2)
    if by_batch >= limit:
        return BodyLimit(limit)
    return BodyLimit(by_batch, f"what serving.max_batch ({int(_LIMITS['max_batch']):,}) ids can take")


def _keys() -> KeyStore:
    if "current" not in _KEYS:  # a worker's service reads them at start; this is for an app without one
        _KEYS["current"] = load_keys(_config())
    return _KEYS["current"]


def _read_keys(config: Config) -> None:
    """Read the API keys again (at each /reload). A malformed source keeps the keys in force.

    Raises
    ------
    ModelUnavailable
        The keys could not be read; the message names the source and says the old keys still apply.
    """
    try:
        _KEYS["current"] = load_keys(config)
    except (AuthConfigError, OSError) as exc:  # a file gone or unreadable as well as a malformed one
        raise ModelUnavailable(f"API keys not read again, the ones read before still apply: {exc}") from exc


def _within_limits(what: str) -> Callable[[Any], Any]:
    """A check of a posted list against this worker's ``serving.max_batch`` (and, for records,
    ``serving.max_posted_rows`` of their purchases and events together) before pydantic reads its
    items: one id or line at a time, that read was the whole cost of an oversized call, on the event
    loop (:mod:`serving.runtime` checked only after it)."""

    def check(value: Any) -> Any:
        if isinstance(value, list) and "max_batch" in _LIMITS:
            runtime.check_batch(len(value), int(_LIMITS["max_batch"]), what, what)
            if what != "ids":
                runtime.check_posted_rows(value, int(_LIMITS["max_posted_rows"]), what)
        return value

    return check


Ids = Annotated[
    list[Id],
    BeforeValidator(_within_limits("ids")),
    Field(min_length=1, description="ids to score; at most serving.max_batch per call"),
]
AsOf = Annotated[
    Moment, Field(description="cut-off: features use events at or before it (ISO 8601; without a UTC offset, UTC)")
]
Customers = Annotated[list[CustomerHistory], BeforeValidator(_within_limits("customers")), Field(min_length=1)]
# The filters and options of the lists (/at_risk, /top/...).
ListTop = Annotated[int, BeforeValidator(not_bool), Field(ge=1, le=100_000)]
ListTiers = Annotated[list[str] | None, Field(max_length=20)]
# An attribute's condition (serving.lists.conditions): a value, any of a list of values, or
# operators to operands ({">=": 40, "<": 60}, {"!=": ["UK"]}).
# int first: 15749 matches "15749"; text as long as an attribute value plausibly is (a 5,000,000-character
# value was written whole into the log, the audit file and a response header).
WhereValue = Annotated[Annotated[str, Field(max_length=1_000)] | int | float | None, BeforeValidator(not_bool)]
WhereValues = Annotated[list[WhereValue], Field(max_length=1_000)]
WhereName = Annotated[str, Field(max_length=200)]
WhereOperator = Literal["=", "!=", ">", ">=", "<", "<="]


def _known_operators(where: object) -> object:
    """Name an unknown operator and the ones there are (pydantic listed five union errors for ``=>``)."""
    for name, condition in (where or {}).items() if isinstance(where, dict) else ():
        unknown = [op for op in condition if op not in get_args(WhereOperator)] if isinstance(condition, dict) else []
        if unknown:
            raise ValueError(
                f"where.{name}: {unknown[0]!r} is not an operator; use one of {', '.join(get_args(WhereOperator))}"
            )
    return where


ListWhere = Annotated[
    dict[WhereName, WhereValue | WhereValues | dict[WhereOperator, WhereValue | WhereValues]] | None,
    BeforeValidator(_known_operators),
    Field(max_length=20),
]
ListK = Annotated[int, BeforeValidator(not_bool), Field(ge=0, le=MAX_K)]
ListCounterK = Annotated[int, BeforeValidator(not_bool), Field(ge=0, le=MAX_K)]
ListFormat = Annotated[
    Literal["json", "csv"] | None,
    Field(
        description="json or csv; when not given, CSV for a request whose Accept header asks for text/csv only, else JSON"
    ),
]


def wanted_format(given: str | None, accept: str) -> str:
    """The list's format: ``given``, else CSV when the ``Accept`` header names text/csv and not JSON
    (a spreadsheet's or curl's ``-H 'Accept: text/csv'``; it was ignored, and JSON came back), else JSON."""
    if given is not None:
        return given
    kinds = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return "csv" if "text/csv" in kinds and not kinds & {"application/json", "application/*"} else "json"


ListPer = Annotated[
    str | None,
    Field(max_length=200, description="an attribute (or tier): the `top` rows of each of its values"),
]
ListExclude = Annotated[
    list[Id] | None,
    Field(max_length=100_000, description="ids never to list (a suppression list: opted out, already contacted)"),
]
ListSince = Annotated[
    Moment | None,
    Field(
        description="an earlier date (last week's), or date-time (ISO 8601; a UTC offset is converted to UTC, as "
        "`as_of`'s): each row also gets the same champion's probability_then and tier_then there, computed from "
        "the config's sources (not for leads)"
    ),
]
LeadSince = Annotated[
    Moment | None,
    Field(
        description="refused for leads (400): the open leads of two dates are different leads, so a lead list "
        "has no earlier scores to compare with"
    ),
]
LeadMovedUp = Annotated[bool, Field(description="refused for leads (400), as `since` is")]
ListMovedUp = Annotated[
    bool, Field(description="with `since`: list only those in a higher tier than then (the newly at risk)")
]


def _workers() -> int | str:
    """``serving.workers`` of the config ``CRMSCORE_CONFIG`` names; 1 without one (``bentoml build``).

    Read when the module is imported, which is the one thing done then: BentoML takes the worker
    count from the service's decorator, in every way the service is started (``crmscore serve``,
    ``bentoml serve``, the Bento's image). ``BENTOML_CONFIG_OVERRIDES`` still overrides it."""
    return _config().serving.workers if os.environ.get(CONFIG_ENV) else 1


@bentoml.service(
    name="crmscore",
    workers=_workers(),
    traffic={"timeout": 120},
    metrics={"enabled": True},
    # One log line per request costs more than a score; errors and startup are still logged.
    logging={"access": {"enabled": False}},
    # No span exporter is configured, and the spans took nearly half of the time of a single
    # score by id (measured with wrk). Set a tracing exporter and narrow this to turn them back on.
    tracing={"excluded_urls": [".*"]},
)
class CrmScore:
    """Churn, next-purchase and lead scores with reasons, and at-risk lists, from the champion models."""

    def __init__(self) -> None:
        if os.environ.get(WORKDIR_ENV):  # crmscore serve's caller's folder; see the module docstring
            os.chdir(os.environ[WORKDIR_ENV])
        self.config = _config()
        _KEYS["current"] = load_keys(self.config)  # a malformed key source stops the server at start
        _LIMITS["max_body_mb"] = self.config.serving.max_body_mb
        _LIMITS["max_batch"] = self.config.serving.max_batch
        _LIMITS["max_posted_rows"] = self.config.serving.max_posted_rows
        audit_log = self.config.serving.audit_log
        self._audit_file = self.config.resolve(audit_log) if audit_log else None
        # Read before the load: a /reload asked for while this worker loads is then seen and done.
        self.reloads = workers.ReloadChannel.of_server()
        loaded = self.reloads.generation()
        self.runtime = Runtime(self.config)
        _export_feature_sql_lookups()
        _serving(self.runtime.state)
        read_keys = functools.partial(_read_keys, self.config)
        workers.follow(self.runtime, self.reloads, loaded, on_change=_reloaded, stop=threading.Event(), first=read_keys)
        if self.config.serving.reload_every_s:
            every = self.config.serving.reload_every_s
            self.runtime.watch(
                every, on_change=_reloaded, on_error=LOG.warning, stop=threading.Event(), first=read_keys
            )

    def __is_ready__(self) -> bool:
        """``/readyz``: 503 until this worker serves a model (BentoML's hook). A server whose registry holds
        no champion, or cannot be read, answered 200 while every score was a 503, so a load balancer
        routed to it; one without a champion for some task (the lead model of a retail-only
        deployment) is ready for the others."""
        return bool(self.runtime.state.models)

    def _k(self, task: str, k: int | None, counter_k: int, ctx: bentoml.Context) -> dict[str, int]:
        """The reasons and counter-reasons per item this caller gets (403 for a role not entitled)."""
        role = ctx.request.scope.get(ROLE_SCOPE_KEY)
        default = getattr(self.config.models, task).top_k_reasons
        return {
            "k": runtime.reasons_k(role, k, default, max_k=MAX_K),
            "counter_k": runtime.reasons_k(role, counter_k, 0, max_k=MAX_K, field="counter_k"),
        }

    async def _ids(
        self, task: str, ids: list[str], k: int | None, counter_k: int, ctx: bentoml.Context
    ) -> ScoreResponse:
        """Scores by id, on the event loop: microseconds a row once the snapshot's SHAP values are there.
        Rows the background pass has not reached yet (after a start or a reload) cost tree passes, ~1 ms
        a row: such a request runs in a worker thread, so the loop keeps answering the others."""
        state, reasons = self.runtime.state, self._k(task, k, counter_k, ctx)
        call = functools.partial(
            runtime.score_ids, state, task, ids, max_batch=self.config.serving.max_batch, **reasons
        )
        ready = len(ids) > self.config.serving.max_batch or runtime.ids_explained(state, task, ids, **reasons)
        body = call() if ready else await asyncio.to_thread(call)
        return ScoreResponse.model_validate(body)

    def _posted(
        self,
        task: str,
        keys: list[str],
        as_of: dt.datetime,
        k: int | None,
        counter_k: int,
        ctx: bentoml.Context,
        **records: Any,
    ) -> ScoreResponse:
        body = runtime.score_posted(
            self.runtime.state,
            task,
            keys,
            as_of=as_of,
            max_batch=self.config.serving.max_batch,
            max_rows=self.config.serving.max_posted_rows,
            **self._k(task, k, counter_k, ctx),
            **records,
        )
        return ScoreResponse.model_validate(body)

    # -- scoring by id ---------------------------------------------------------------------

    @bentoml.api(route="/score/churn")
    @_answers
    async def score_churn(
        self, ids: Ids, k: TopK = None, counter_k: CounterK = 0, *, ctx: bentoml.Context
    ) -> ScoreResponse:
        """Churn propensity of customers by id, from the latest snapshot: probability, tier, value at risk, reasons."""
        return await self._ids("churn", ids, k, counter_k, ctx)

    @bentoml.api(route="/score/next_purchase")
    @_answers
    async def score_next_purchase(
        self, ids: Ids, k: TopK = None, counter_k: CounterK = 0, *, ctx: bentoml.Context
    ) -> ScoreResponse:
        """Next-purchase probability and expected spend of customers by id, from the latest snapshot."""
        return await self._ids("next_purchase", ids, k, counter_k, ctx)

    @bentoml.api(route="/score/lead")
    @_answers
    async def score_lead(
        self, ids: Ids, k: TopK = None, counter_k: CounterK = 0, *, ctx: bentoml.Context
    ) -> ScoreResponse:
        """Conversion probability and grade A-D of leads by id, from the latest snapshot."""
        return await self._ids("lead", ids, k, counter_k, ctx)

    # -- scoring posted records ------------------------------------------------------------

    @bentoml.api(route="/score/churn/history")
    @_answers
    def score_churn_history(
        self, customers: Customers, as_of: AsOf, k: TopK = None, counter_k: CounterK = 0, *, ctx: bentoml.Context
    ) -> ScoreResponse:
        """Churn propensity from posted purchase histories, computed by the training feature code."""
        keys = [c.customer_id for c in customers]
        return self._posted("churn", keys, as_of, k, counter_k, ctx, customers=[c.model_dump() for c in customers])

    @bentoml.api(route="/score/next_purchase/history")
    @_answers
    def score_next_purchase_history(
        self, customers: Customers, as_of: AsOf, k: TopK = None, counter_k: CounterK = 0, *, ctx: bentoml.Context
    ) -> ScoreResponse:
        """Next-purchase probability and expected spend from posted purchase histories."""
        keys = [c.customer_id for c in customers]
        return self._posted(
            "next_purchase", keys, as_of, k, counter_k, ctx, customers=[c.model_dump() for c in customers]
        )

    @bentoml.api(route="/score/lead/record")
    @_answers
    def score_lead_record(
        self,
        leads: Annotated[list[LeadRecord], BeforeValidator(_within_limits("leads")), Field(min_length=1)],
        as_of: AsOf,
        k: TopK = None,
        counter_k: CounterK = 0,
        *,
        ctx: bentoml.Context,
    ) -> ScoreResponse:
        """Conversion probability and grade of posted leads (attributes and engagement events),
        with the features of the lead model's own training configuration."""
        keys = [lead.lead_id for lead in leads]
        return self._posted("lead", keys, as_of, k, counter_k, ctx, leads=[lead.model_dump() for lead in leads])

    # -- lists and administration ----------------------------------------------------------

    @bentoml.api(route="/at_risk")
    @_answers
    def at_risk(
        self,
        top: ListTop = 100,
        min_value: Annotated[float | None, Field(allow_inf_nan=False)] = None,
        tiers: ListTiers = None,
        where: ListWhere = None,
        k: ListK = 3,
        format: ListFormat = None,
        counter_k: ListCounterK = 1,
        exclude_ids: ListExclude = None,
        per: ListPer = None,
        since: ListSince = None,
        moved_up: ListMovedUp = False,
        *,
        ctx: bentoml.Context,
    ) -> AtRiskResponse:
        """Top customers by value at risk (P(churn) x expected spend) with reasons (what raises the risk)
        and counter-reasons (what lowers it); filters on tier, minimum value and any customer attribute
        (``where: {"country": ["France", "Germany"], "frequency_365d": {">=": 3}}``); with ``since``, each
        row's scores at that date too, and with ``moved_up`` only the newly at risk; JSON or CSV."""
        options = {"top": top, "min_value": min_value, "tiers": tiers, "where": where, "k": k, "format": format}
        options.update(exclude=exclude_ids, per=per, since=since, moved_up=moved_up)
        return self._list("churn", AtRiskResponse, ctx, counter_k=counter_k, **options)

    @bentoml.api(route="/top/next_purchase")
    @_answers
    def top_next_purchase(
        self,
        top: ListTop = 100,
        min_value: Annotated[float | None, Field(allow_inf_nan=False)] = None,
        tiers: ListTiers = None,
        where: ListWhere = None,
        k: ListK = 3,
        format: ListFormat = None,
        counter_k: ListCounterK = 1,
        exclude_ids: ListExclude = None,
        per: ListPer = None,
        since: ListSince = None,
        moved_up: ListMovedUp = False,
        *,
        ctx: bentoml.Context,
    ) -> TopResponse:
        """The campaign list: top customers by expected value over the horizon (P(buy) x expected spend),
        with reasons and counter-reasons; filters on tier, minimum expected value and any customer
        attribute; JSON or CSV (the columns of ``crmscore top next-purchase``)."""
        options = {"top": top, "min_value": min_value, "tiers": tiers, "where": where, "k": k, "format": format}
        options.update(exclude=exclude_ids, per=per, since=since, moved_up=moved_up)
        return self._list("next_purchase", TopResponse, ctx, counter_k=counter_k, id_key="id", **options)

    @bentoml.api(route="/top/lead")
    @_answers
    def top_lead(
        self,
        top: ListTop = 100,
        min_value: Annotated[float | None, Field(allow_inf_nan=False, ge=0, le=1)] = None,
        tiers: ListTiers = None,
        where: ListWhere = None,
        k: ListK = 3,
        format: ListFormat = None,
        counter_k: ListCounterK = 1,
        exclude_ids: ListExclude = None,
        per: ListPer = None,
        since: LeadSince = None,
        moved_up: LeadMovedUp = False,
        *,
        ctx: bentoml.Context,
    ) -> TopResponse:
        """The call list: the open leads by P(convert), with reasons and counter-reasons; filters on
        grade (``tiers``), minimum probability (``min_value``) and any lead attribute; JSON or CSV (the
        columns of ``crmscore top lead``)."""
        options = {"top": top, "min_value": min_value, "tiers": tiers, "where": where, "k": k, "format": format}
        options.update(exclude=exclude_ids, per=per, since=since, moved_up=moved_up)
        return self._list("lead", TopResponse, ctx, counter_k=counter_k, id_key="id", **options)

    def _list(self, task: str, response: type[BaseModel], ctx: bentoml.Context, **options: Any) -> Any:
        """A ranked list (:func:`serving.runtime.ranked_list`) as JSON, or as CSV with what the JSON
        says beside its rows in headers; who took it, and what, in the audit log."""
        since = options.pop("since")
        options.update(since=None if since is None else since.isoformat(), config=self.config)
        options["format"] = wanted_format(options["format"], ctx.request.headers.get("accept", ""))
        body = runtime.ranked_list(self.runtime.state, task, **options)
        audit.record(ctx.request.scope, *audit.of_list(task, body, options), self._audit_file)
        del body["listed_ids"]  # the record's, not the answer's
        if options["format"] == "csv":
            return Response(body["csv"], media_type="text/csv", headers=_csv_headers(body))
        return response.model_validate(body)

    @bentoml.api(route="/models")
    async def models(self) -> ModelsResponse:
        """The champion serving each task (registry name, version, alias, training date, test metrics)
        and its snapshot date; tasks without a champion are listed with the command that trains one."""
        body = runtime.models_info(self.runtime.state)
        return ModelsResponse.model_validate({**body, "workers": len(self.reloads.acks())})

    @bentoml.api(route="/reload")
    @_answers
    def reload(self, *, ctx: bentoml.Context) -> ModelsResponse:
        """Load the current champions and snapshots and swap them in at once (admin).
        A model whose champion version and snapshot file are unchanged is kept as loaded (its
        ``loaded_at`` stays), so a reload after nothing changed takes a registry call per model.
        Requests already running finish on the models they started with; if loading fails, the
        previous models keep serving and the answer is 503 with the reason. With several workers
        (``serving.workers``) every one reloads, and the answer comes once each has."""
        try:
            reloaded = workers.reload_all(self.reloads, timeout_s=RELOAD_TIMEOUT_S)
        except ModelUnavailable as exc:
            self._audit_reload(ctx, f"failed: {exc}", {"error": str(exc)})
            raise
        body = runtime.models_info(self.runtime.state)
        served = {m["task"]: m["version"] for m in body["models"]}
        text = ", ".join(f"{task} v{version}" for task, version in served.items()) or "no model"
        self._audit_reload(ctx, f"now serving {text} ({reloaded} worker{'s' * (reloaded != 1)})", {"served": served})
        return ModelsResponse.model_validate({**body, "workers": reloaded})

    def _audit_reload(self, ctx: bentoml.Context, what: str, record: dict[str, Any]) -> None:
        """A reload's audit: done whatever the audit file says (a reload cannot be undone), so an
        audit file that cannot be written is an error in the log rather than the answer."""
        try:
            audit.record(ctx.request.scope, what, {**record, "workers": len(self.reloads.acks())}, self._audit_file)
        except audit.AuditUnwritable as exc:
            LOG.error("%s", exc)


CrmScore.add_asgi_middleware(ApiKeyMiddleware, keys=_keys, max_body_mb=_body_limit)
CrmScore.add_asgi_middleware(OpenApiMiddleware)


def _forbid_unknown_fields(method: Any) -> None:
    """Make an endpoint refuse a body field it does not take, as the nested bodies do.

    BentoML builds each endpoint's input model from its signature and ignores unknown fields, so a
    misspelt ``counter-k`` or ``top`` for ``ids`` would silently fall back to the defaults; with
    this it is a 400 naming the field (``loc ["counter-k"]``, "Extra inputs are not permitted").
    """
    spec = method.input_spec
    body = {"model_config": {**spec.model_config, "extra": "forbid"}, "__module__": spec.__module__}
    method.input_spec = types.new_class(spec.__name__, (spec,), exec_body=lambda ns: ns.update(body))


for _method in CrmScore.apis.values():
    _forbid_unknown_fields(_method)
