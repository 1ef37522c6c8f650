"""The BentoML scoring API: wiring of schemas, API keys, the champion models and the at-risk lists.

Start it from the repository root with the config in ``CRMSCORE_CONFIG``::

    CRMSCORE_CONFIG=configs/online_retail.yaml BENTOML_DO_NOT_TRACK=true \\
        bentoml serve serving.service:CrmScore --host 127.0.0.1 --port 3000

(``crmscore serve --config C [--port P]`` does exactly this.) Every route but the health checks
(``/livez``, ``/readyz``), ``/metrics`` and the OpenAPI docs needs an API key; see
:mod:`serving.auth` for the roles. Errors are JSON ``{"error": ..., "detail": [...]}`` with a 4xx
status naming the field, or 503 when a model or snapshot is missing.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import os
from collections.abc import Callable
from typing import Annotated, Any, Literal

import bentoml
import numpy as np
from pydantic import Field
from starlette.responses import JSONResponse, Response

from features.config import Config, load_config
from serving import lists
from serving.auth import REASONS_ROLE, ROLE_SCOPE_KEY, ApiKeyMiddleware, KeyStore, entitled, load_keys
from serving.runtime import ModelUnavailable, Runtime, State, TaskModel, history_features
from serving.schemas import (
    MAX_K,
    AtRiskResponse,
    CustomerHistory,
    Id,
    LeadRecord,
    ModelsResponse,
    ScoreResponse,
    TopK,
)

__all__ = ["CONFIG_ENV", "CrmScore"]

CONFIG_ENV = "CRMSCORE_CONFIG"


class ApiError(Exception):
    """A request the API refuses; becomes a JSON response with ``status``."""

    def __init__(self, status: int, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            body["detail"] = [{"loc": self.field.split("."), "msg": self.message, "type": "value_error"}]
        return JSONResponse(body, status_code=self.status)


def _answers(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn :class:`ApiError` and :class:`ModelUnavailable` into JSON responses with their status."""

    def respond(exc: Exception, ctx: bentoml.Context) -> JSONResponse:
        error = exc if isinstance(exc, ApiError) else ApiError(503, str(exc))
        ctx.response.status_code = error.status  # BentoML copies this onto the response
        return error.response()

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def run_async(self: CrmScore, *args: Any, ctx: bentoml.Context, **kwargs: Any) -> Any:
            try:
                return await func(self, *args, ctx=ctx, **kwargs)
            except (ApiError, ModelUnavailable) as exc:
                return respond(exc, ctx)

        return run_async

    @functools.wraps(func)
    def run(self: CrmScore, *args: Any, ctx: bentoml.Context, **kwargs: Any) -> Any:
        try:
            return func(self, *args, ctx=ctx, **kwargs)
        except (ApiError, ModelUnavailable) as exc:
            return respond(exc, ctx)

    return run


def _config() -> Config:
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"set {CONFIG_ENV} to the config file, e.g. {CONFIG_ENV}=configs/online_retail.yaml")
    return load_config(path)


def _keys() -> KeyStore:
    return load_keys(_config())


def _k(ctx: bentoml.Context, k: int | None, default: int) -> int:
    """Reasons per item: the request's k, else the model's default for roles entitled to reasons, else 0."""
    may = entitled(ctx.request.scope.get(ROLE_SCOPE_KEY), REASONS_ROLE)
    if k is None:
        return min(default, MAX_K) if may else 0
    if k > 0 and not may:
        raise ApiError(403, f"reasons need role {REASONS_ROLE!r} or above: ask with k=0", field="k")
    return k


def _item(model: TaskModel, key: str, result: dict[str, Any]) -> dict[str, Any]:
    return {"id": key, **result, "model_name": model.scorer.model_name, "model_version": model.scorer.version}


def _models(state: State) -> ModelsResponse:
    infos = []
    for task, model in state.models.items():
        info = model.info
        infos.append(
            {
                "task": task,
                "model_name": info.get("model_name") or model.scorer.model_name,
                "version": None if info.get("version") is None else str(info["version"]),
                "alias": info.get("alias"),
                "run_id": info.get("run_id"),
                "trained_at": None if info.get("trained_at") is None else str(info["trained_at"]),
                "test_cutoff": None if info.get("test_cutoff") is None else str(info["test_cutoff"]),
                "metrics": {k: _finite(v) for k, v in (info.get("metrics") or {}).items()},
                "snapshot_as_of": model.snapshot.as_of if model.snapshot else None,
                "snapshot_rows": len(model.snapshot.ids) if model.snapshot else 0,
            }
        )
    missing = [{"task": task, "error": error} for task, error in state.missing.items()]
    return ModelsResponse.model_validate({"loaded_at": state.loaded_at, "models": infos, "missing": missing})


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


Ids = Annotated[list[Id], Field(min_length=1, description="ids to score; at most serving.max_batch per call")]
AsOf = Annotated[dt.datetime, Field(description="cut-off: features use events at or before it")]


@bentoml.service(name="crmscore", workers=1, traffic={"timeout": 120}, metrics={"enabled": True})
class CrmScore:
    """Churn, next-purchase and lead scores with reasons, and at-risk lists, from the champion models."""

    def __init__(self) -> None:
        self.config = _config()
        load_keys(self.config)  # a malformed key source stops the server at start, not at the first call
        self.runtime = Runtime(self.config)

    # -- scoring by id ---------------------------------------------------------------------

    def _score_ids(self, task: str, ids: list[str], k: int | None, ctx: bentoml.Context) -> ScoreResponse:
        if len(ids) > self.config.serving.max_batch:
            raise ApiError(
                400, f"{len(ids)} ids is over the maximum of {self.config.serving.max_batch} per call", field="ids"
            )
        k = _k(ctx, k, getattr(self.config.models, task).top_k_reasons)
        model, snapshot = self.runtime.state.snapshot(task)
        rows = [snapshot.index.get(key) for key in ids]
        known = [row for row in rows if row is not None]
        results = iter(model.scorer.score_matrix(snapshot.matrix[known], k=k, explain=k > 0) if known else ())
        entity = model.scorer.entity
        items = [
            _item(model, key, next(results))
            if row is not None
            else {"id": key, "error": f"unknown {entity} {key!r}: not in the {task} snapshot as of {snapshot.as_of}"}
            for key, row in zip(ids, rows, strict=True)
        ]
        return ScoreResponse.model_validate({"task": task, "as_of": snapshot.as_of, "items": items})

    @bentoml.api(route="/score/churn")
    @_answers
    async def score_churn(self, ids: Ids, k: TopK = None, *, ctx: bentoml.Context) -> ScoreResponse:
        """Churn propensity of customers by id, from the latest snapshot: probability, tier, value at risk, reasons."""
        return self._score_ids("churn", ids, k, ctx)

    @bentoml.api(route="/score/next_purchase")
    @_answers
    async def score_next_purchase(self, ids: Ids, k: TopK = None, *, ctx: bentoml.Context) -> ScoreResponse:
        """Next-purchase probability and expected spend of customers by id, from the latest snapshot."""
        return self._score_ids("next_purchase", ids, k, ctx)

    @bentoml.api(route="/score/lead")
    @_answers
    async def score_lead(self, ids: Ids, k: TopK = None, *, ctx: bentoml.Context) -> ScoreResponse:
        """Conversion probability and grade A-D of leads by id, from the latest snapshot."""
        return self._score_ids("lead", ids, k, ctx)

    # -- scoring posted records ------------------------------------------------------------

    def _score_frame(
        self, task: str, keys: list[str], as_of: dt.datetime, k: int | None, ctx: bentoml.Context, **records: Any
    ) -> ScoreResponse:
        if len(keys) > self.config.serving.max_batch:
            field = "leads" if task == "lead" else "customers"
            raise ApiError(
                400, f"{len(keys)} records is over the maximum of {self.config.serving.max_batch}", field=field
            )
        k = _k(ctx, k, getattr(self.config.models, task).top_k_reasons)
        model = self.runtime.state.model(task)
        as_of = as_of.replace(tzinfo=None) if as_of.tzinfo is None else as_of.astimezone(dt.UTC).replace(tzinfo=None)
        try:
            frame = history_features(self.config, task, as_of=as_of, **records)
            matrix = model.scorer.prepare(frame)
        except ValueError as exc:
            field = "leads.attributes" if task == "lead" else "customers.attributes"
            raise ApiError(400, f"cannot compute the {task} features: {exc}", field=field) from exc
        found = frame[model.scorer.entity].astype(str).tolist()
        results = dict(zip(found, model.scorer.score_matrix(matrix, k=k, explain=k > 0) if found else (), strict=True))
        outside = (
            f"not in the {task} population at {as_of.date()}"
            + (" (no purchase in the lookback window)" if task == "churn" else "")
            + (" (not an open lead created in the step before as_of)" if task == "lead" else "")
        )
        items = [_item(model, key, results[key]) if key in results else {"id": key, "error": outside} for key in keys]
        return ScoreResponse.model_validate({"task": task, "as_of": str(as_of.date()), "items": items})

    @bentoml.api(route="/score/churn/history")
    @_answers
    def score_churn_history(
        self,
        customers: Annotated[list[CustomerHistory], Field(min_length=1)],
        as_of: AsOf,
        k: TopK = None,
        *,
        ctx: bentoml.Context,
    ) -> ScoreResponse:
        """Churn propensity from posted purchase histories, computed by the training feature code."""
        keys = [c.customer_id for c in customers]
        return self._score_frame("churn", keys, as_of, k, ctx, customers=[c.model_dump() for c in customers])

    @bentoml.api(route="/score/next_purchase/history")
    @_answers
    def score_next_purchase_history(
        self,
        customers: Annotated[list[CustomerHistory], Field(min_length=1)],
        as_of: AsOf,
        k: TopK = None,
        *,
        ctx: bentoml.Context,
    ) -> ScoreResponse:
        """Next-purchase probability and expected spend from posted purchase histories."""
        keys = [c.customer_id for c in customers]
        return self._score_frame("next_purchase", keys, as_of, k, ctx, customers=[c.model_dump() for c in customers])

    @bentoml.api(route="/score/lead/record")
    @_answers
    def score_lead_record(
        self,
        leads: Annotated[list[LeadRecord], Field(min_length=1)],
        as_of: AsOf,
        k: TopK = None,
        *,
        ctx: bentoml.Context,
    ) -> ScoreResponse:
        """Conversion probability and grade of posted leads (attributes and engagement events)."""
        keys = [lead.lead_id for lead in leads]
        return self._score_frame("lead", keys, as_of, k, ctx, leads=[lead.model_dump() for lead in leads])

    # -- lists and administration ----------------------------------------------------------

    @bentoml.api(route="/at_risk")
    @_answers
    def at_risk(
        self,
        top: Annotated[int, Field(ge=1, le=100_000)] = 100,
        min_value: Annotated[float | None, Field(allow_inf_nan=False)] = None,
        tiers: Annotated[list[str] | None, Field(max_length=20)] = None,
        where: Annotated[dict[str, str | float | None] | None, Field(max_length=20)] = None,
        k: Annotated[int, Field(ge=0, le=MAX_K)] = 3,
        format: Literal["json", "csv"] = "json",
        *,
        ctx: bentoml.Context,
    ) -> AtRiskResponse:
        """Top customers by value at risk (P(churn) x expected spend) with reasons; filters on tier,
        minimum value and any customer attribute (e.g. ``where: {"country": "France"}``); JSON or CSV."""
        model, snapshot = self.runtime.state.snapshot("churn")
        scored = model.scored
        try:
            positions, matched = lists.select_at_risk(scored, top=top, min_value=min_value, tiers=tiers, where=where)
        except lists.FilterError as exc:
            raise ApiError(400, str(exc), field=exc.field) from exc
        reasons = None
        if k > 0 and len(positions):
            reasons = [
                r.get("reasons") for r in model.scorer.score_matrix(snapshot.matrix[positions], k=k, explain=True)
            ]
        attributes = [c for c in scored.columns if c not in lists.SCORE_COLUMNS and not _numeric(scored[c])]
        rows = lists.at_risk_rows(scored, positions, reasons=reasons, attributes=attributes)
        if format == "csv":
            return Response(lists.to_csv(rows, k=k), media_type="text/csv")
        return AtRiskResponse(
            as_of=snapshot.as_of,
            model_name=model.scorer.model_name,
            model_version=str(model.scorer.version),
            n_matched=matched,
            items=rows,
        )

    @bentoml.api(route="/models")
    async def models(self) -> ModelsResponse:
        """The champion serving each task (registry name, version, alias, training date, test metrics)
        and its snapshot date; tasks without a champion are listed with the command that trains one."""
        return _models(self.runtime.state)

    @bentoml.api(route="/reload")
    def reload(self) -> ModelsResponse:
        """Load the current champions and snapshots and swap them in at once (admin).
        Requests already running finish on the models they started with."""
        return _models(self.runtime.reload())


def _numeric(column: Any) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


CrmScore.add_asgi_middleware(ApiKeyMiddleware, keys=_keys)
