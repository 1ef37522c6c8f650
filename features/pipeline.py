"""The point-in-time feature pipeline: canonical tables -> feature tables, labels and training sets.

The meaning of ``as_of`` (one meaning everywhere, see :mod:`features.timebase`): a point in
time; a date (or a date-only ISO string) is **midnight at the start of that day**. Features use
rows with ``timestamp <= as_of``; labels use ``(as_of, as_of + H]``. An order stamped exactly at
``as_of`` is a feature; one stamped exactly at ``as_of + H`` is in the label window.

Every feature family is an Ibis expression; the backend (DuckDB by default) runs the whole
joined expression once per cut-off, and pandas appears only at the hand-off
(:func:`population_features`, :func:`build_training_set`, :func:`write_snapshot`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.attributes import attribute_features, transaction_attribute_columns
from features.breadth import breadth_features
from features.config import Config, ModelConfig, feature_settings, population_rule
from features.cycle import cycle_features
from features.files import atomic_output, check_output
from features.labels import (
    check_window_observed,
    churn_labels,
    data_span,
    data_until,
    days_to_next_purchase,
    lead_labels,
    next_purchase_labels,
)
from features.leads import lead_attribute_columns, lead_features
from features.rfm import rfm_features
from features.seasonality import seasonality_features
from features.sources import CanonicalTables
from features.timebase import AsOf, Cutoff, history, join_on, normalize_as_of
from features.timebase import cutoff as as_cutoff
from features.touchpoints import EVENT_TABLES, event_vocabulary, touchpoint_features, vocabulary_of

__all__ = [
    "ATTRIBUTES_VOCABULARY",
    "ENTITY",
    "CompiledQueries",
    "TASKS",
    "EmptyPopulationError",
    "SNAPSHOT_DATA_UNTIL_KEY",
    "SNAPSHOT_SETTINGS_KEY",
    "TrainingSet",
    "build_training_set",
    "check_population",
    "customer_features",
    "hazard_cutoffs",
    "labels",
    "lead_features",
    "normalize_as_of",
    "population_features",
    "population_rule",
    "population_table",
    "stable_floats",
    "training_cutoffs",
    "snapshot_dir",
    "write_snapshot",
    "write_snapshots",
]

TASKS = ("churn", "next_purchase", "lead")
ENTITY = {"churn": "customer_id", "next_purchase": "customer_id", "lead": "lead_id"}
# Horizon used by the seasonality features when the caller does not name one (the models' default).
DEFAULT_HORIZON_DAYS = ModelConfig().horizon_days
_TARGETS = ("label", "spend")


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def _require(tables: CanonicalTables, name: str, task: str) -> None:
    if getattr(tables, name) is None:
        raise ValueError(f"task '{task}' needs table '{name}', which is not configured")


def customer_features(
    tables: CanonicalTables,
    *,
    as_of: AsOf | Cutoff,
    lookback_days: int | None = None,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
) -> ir.Table:
    """All customer feature families at ``as_of``, one row per customer, key ``customer_id``.

    Parameters
    ----------
    tables
        Canonical tables; ``transactions`` is required, ``customers`` and ``events`` are used when set.
    as_of
        The cut-off (date, datetime or ISO string; a date is midnight at the start of the day), or
        a :class:`features.timebase.Cutoff` (the SQL reads it from variables).
    lookback_days
        When given, only customers with a purchase in ``(as_of - lookback_days, as_of]``; otherwise
        every customer with a transaction at or before ``as_of``. Features always use the whole history.
    horizon_days
        The label horizon the features are built for; it sets the "same window a year earlier"
        of the seasonality family.
    """
    _require(tables, "transactions", "customer features")
    cut = as_cutoff(as_of)
    t = tables.transactions
    if lookback_days is None:
        base = t.filter(t.timestamp <= cut.at()).select("customer_id").distinct()
    else:
        if lookback_days <= 0:
            raise ValueError(f"lookback_days must be positive, got {lookback_days}")
        h = history(t, as_of=cut)
        base = h.filter((h.amount > 0) & (h.age_days < lookback_days)).select("customer_id").distinct()
    families = [
        rfm_features(t, as_of=cut),
        cycle_features(t, as_of=cut),
        seasonality_features(t, as_of=cut, horizon_days=horizon_days),
        breadth_features(t, as_of=cut),
        touchpoint_features(tables.events, as_of=cut, **vocabulary_of(tables, "events")),
        attribute_features(tables, as_of=cut, columns=_fixed_attributes(tables)),
    ]
    return join_on(base, families, "customer_id")


# The vocabulary key of the transaction attributes a model reads (its category columns).
ATTRIBUTES_VOCABULARY = "transactions.attributes"


def _vocabulary_keys(tables: CanonicalTables) -> list[str]:
    """The keys of :func:`vocabularies` for these tables: the choices the feature code makes from rows."""
    keys = []
    if tables.transactions is not None:
        keys.append(ATTRIBUTES_VOCABULARY)
    for table in EVENT_TABLES:
        events = getattr(tables, table)
        if events is not None:
            keys += [f"{table}.{column}" for column in ("event_type", "channel") if column in events.columns]
    return keys


def vocabularies(tables: CanonicalTables) -> dict[str, tuple[str, ...]]:
    """What the feature code reads from the data to choose its columns: what a trained model keeps.

    ``"transactions.attributes"``: the transaction attributes that are categories (at most
    ``features.attributes.MAX_CARDINALITY`` values); per events table,
    ``"events.event_type"``, ``"events.channel"`` (``"lead_events..."``): the types and channels
    that become touchpoint columns. ``tables.vocabulary`` where it is set, else read from the rows
    as the feature families do. Records posted to the API, and a later export, are then given the
    model's columns (``CanonicalTables.with_vocabulary``).
    """
    out = {}
    for key in _vocabulary_keys(tables):
        if key in tables.vocabulary:
            out[key] = tuple(tables.vocabulary[key])
        elif key == ATTRIBUTES_VOCABULARY:
            out[key] = transaction_attribute_columns(tables.transactions)
        else:
            table, column = key.split(".")
            out[key] = event_vocabulary(getattr(tables, table), column)
    return out


def _fixed_attributes(tables: CanonicalTables) -> tuple[str, ...] | None:
    """The model's category attributes among the transactions' columns (None: chosen from the rows).
    One a posted record lacks is left out, so that the caller can name it as missing."""
    fixed = tables.vocabulary.get(ATTRIBUTES_VOCABULARY)
    if fixed is None or tables.transactions is None:
        return None
    return tuple(c for c in fixed if c in tables.transactions.columns)


def labels(tables: CanonicalTables, task: str, *, as_of: AsOf | Cutoff, horizon_days: int) -> ir.Table:
    """Labels of ``task`` over ``(as_of, as_of + horizon_days]``; see :mod:`features.labels`.

    churn: ``customer_id``, ``label``; next_purchase: ``customer_id``, ``label``, ``spend``;
    lead: ``lead_id``, ``label``.
    """
    _check_task(task)
    if task == "lead":
        return lead_labels(tables, as_of=as_of, horizon_days=horizon_days)
    _require(tables, "transactions", task)
    if task == "churn":
        return churn_labels(tables, as_of=as_of, horizon_days=horizon_days)
    return next_purchase_labels(tables, as_of=as_of, horizon_days=horizon_days)


class EmptyPopulationError(ValueError):
    """A cut-off whose population has no rows, so a batch output would be empty."""


def check_population(rows: int, tables: CanonicalTables, task: str, *, as_of: AsOf, mc: ModelConfig) -> None:
    """Refuse an empty population: a nightly output of no rows is almost always a wrong date or export.

    The error names the rule and the span of the task's main table, so the date that fell outside
    it shows. Callers that want an empty output anyway (``--allow-empty``) skip this check.

    Raises
    ------
    EmptyPopulationError
        ``rows`` is 0.
    """
    if rows:
        return
    table, first, last = data_span(tables, task)
    span = f"its rows run from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}" if last else "it has no rows"
    raise EmptyPopulationError(
        f"the {task} population as of {normalize_as_of(as_of):%Y-%m-%d %H:%M} is empty "
        f"(rule: {population_rule(task, mc)}); table '{table}': {span}. "
        "Nothing was written; pass --allow-empty to write an empty output anyway"
    )


def population_table(tables: CanonicalTables, task: str, as_of: dt.datetime | Cutoff, mc: ModelConfig) -> ir.Table:
    """The features of ``task``'s population at ``as_of`` as an Ibis table, on the tables' engine
    (the populations of :func:`population_features`, before its hand-off to pandas)."""
    if task == "lead":
        return lead_features(tables, as_of=as_of, horizon_days=mc.horizon_days, step_days=mc.step_days)
    lookback = mc.lookback_days if task == "churn" else None
    return customer_features(tables, as_of=as_of, lookback_days=lookback, horizon_days=mc.horizon_days)


def stable_floats(values: np.ndarray, digits: int = 12) -> np.ndarray:
    """Round to ``digits`` significant digits, and |x| < 1e-9 to 0.

    Engines sum in parallel, in no fixed order, so a net spend can come out as 0.0 in one run and
    5.7e-14 in the next, or differ in its last bits. Such noise flips tree splits and makes two
    trainings on the same data differ; rounding far below any meaningful difference removes most
    of it. (A cap on decimals would remove more, but moves values that sit on a rounding half by
    a whole unit of the last decimal, beyond the 1e-9 agreement promised between engines.)
    """
    values = np.where(np.abs(values) < 1e-9, 0.0, values)
    with np.errstate(divide="ignore", invalid="ignore"):
        magnitude = np.floor(np.log10(np.abs(values)))
    finite = np.isfinite(magnitude)
    scale = 10.0 ** (digits - 1 - np.where(finite, magnitude, 0.0))
    return np.where(finite, np.round(values * scale) / scale, values)


def _to_pandas(table: ir.Table | pd.DataFrame, entity: str, as_of: dt.datetime, schema: Any = None) -> pd.DataFrame:
    """The hand-off to pandas: rounded floats, rows by entity, ``as_of``, strings as categories.

    ``schema`` (an Ibis schema; a table's own by default) keeps a numeric column numeric when every
    value is null, as at a cut-off before a table's first row: pandas gets it as objects, which
    would otherwise become an empty category.
    """
    frame = table if isinstance(table, pd.DataFrame) else table.to_pandas()
    schema = table.schema() if schema is None and not isinstance(table, pd.DataFrame) else schema
    for name, dtype in (schema or {}).items():
        if (dtype.is_numeric() or dtype.is_boolean()) and frame[name].dtype == object and frame[name].isna().all():
            frame[name] = frame[name].astype("float64")
    for column in frame.columns:
        if pd.api.types.is_float_dtype(frame[column]):
            frame[column] = stable_floats(frame[column].to_numpy(dtype=np.float64))
    frame = frame.sort_values(entity, kind="stable").reset_index(drop=True)
    frame.insert(1, "as_of", pd.Timestamp(as_of))
    for column in frame.columns:
        if column in (entity, "as_of"):
            continue
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].astype("category")
        elif pd.api.types.is_bool_dtype(frame[column]):
            frame[column] = frame[column].astype("int64")
    return frame


def population_features(
    tables: CanonicalTables,
    task: str,
    *,
    as_of: AsOf,
    model_config: ModelConfig,
    compiled: CompiledQueries | None = None,
) -> pd.DataFrame:
    """Features of ``task``'s population at ``as_of`` as pandas: entity id, ``as_of``, features.

    Populations: churn, customers with a purchase in the lookback window; next_purchase, customers
    with any transaction at or before ``as_of``; lead, open leads created in ``(as_of - step, as_of]``.
    String features are pandas ``category``; rows are sorted by the entity id.

    ``compiled``: a cache of the feature SQL, for callers that compute features again and again on
    tables of the same names and columns (the API's posted records). Building and compiling the
    expression takes about ten times as long as running it on a few customers; a query is reused
    only when nothing in it came from the rows (:meth:`CompiledQueries.key`), at any cut-off: its
    SQL reads the cut-off from variables of the connection (:class:`features.timebase.Cutoff`).
    """
    _check_task(task)
    ts = normalize_as_of(as_of)
    key, query = compiled.lookup(tables, task, model_config) if compiled is not None else (None, None)
    if key is None:
        return _to_pandas(population_table(tables, task, ts, model_config), ENTITY[task], ts)
    cut = Cutoff(ts, variables=True)
    if query is None:
        table = population_table(tables, task, cut, model_config)
        query = (tables.con.compile(table), table.schema())
        compiled.put(key, query)
    cut.bind(tables.con, horizon_days=(model_config.horizon_days,))
    return _to_pandas(_run_compiled(tables.con, *query), ENTITY[task], ts, query[1])


def _run_compiled(con: Any, sql: str, schema: Any) -> pd.DataFrame:
    """Run compiled feature SQL on DuckDB and convert the result as Ibis's ``to_pandas`` does
    (``con.sql`` would parse the 20,000-character SQL again, which costs as much as compiling it)."""
    from ibis.formats.pandas import PandasData

    result = con.raw_sql(sql).to_arrow_table()
    # Columns with nulls go through Python objects, so that the schema decides their dtype.
    frame = pd.DataFrame(
        {
            name: column.to_pylist() if column.null_count else column.to_pandas()
            for name, column in zip(result.column_names, result.columns, strict=True)
        }
    )
    return PandasData.convert_table(frame, schema)


class CompiledQueries:
    """A bounded, thread-safe cache of compiled feature SQL, keyed by everything the SQL depends on.

    The feature expression of a task depends on the model config, the names and columns of the
    canonical tables and, where the tables have no fixed vocabulary, on their rows (the category
    attributes and touchpoint types chosen from them): such tables get no key, and their features
    are built afresh each time. The cut-off is not in the SQL (it reads it from variables), so a
    query serves every ``as_of``.

    ``hits``, ``misses`` and ``uncacheable`` count the lookups; ``on_lookup(task, result)``, when
    set, hears each one (``result``: ``"hit"``, ``"miss"`` or ``"uncacheable"``), e.g. to export
    them as metrics.
    """

    def __init__(self, maxsize: int = 128, on_lookup: Callable[[str, str], None] | None = None) -> None:
        self.maxsize = maxsize
        self.on_lookup = on_lookup
        self._queries: OrderedDict[tuple[Any, ...], tuple[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.uncacheable = 0

    def __len__(self) -> int:
        return len(self._queries)

    @staticmethod
    def key(tables: CanonicalTables, task: str, mc: ModelConfig) -> tuple[Any, ...] | None:
        """The cache key, or None when building the features reads the tables' rows."""
        if tables.con.name != "duckdb" or any(k not in tables.vocabulary for k in _vocabulary_keys(tables)):
            return None
        shapes = tuple(
            (name, table.get_name(), tuple((c, str(t)) for c, t in table.schema().items()))
            for name in ("transactions", "customers", *EVENT_TABLES, "leads")
            if (table := getattr(tables, name)) is not None
        )
        vocabulary = tuple(sorted((k, tuple(v)) for k, v in tables.vocabulary.items()))
        return (tables.con.name, task, mc.model_dump_json(), shapes, vocabulary)

    def lookup(
        self, tables: CanonicalTables, task: str, mc: ModelConfig
    ) -> tuple[tuple[Any, ...] | None, tuple[str, Any] | None]:
        """The key (:meth:`key`) and the compiled query kept under it: ``(None, None)`` when the
        features cannot be cached, ``(key, None)`` when they are not cached yet."""
        key = self.key(tables, task, mc)
        with self._lock:
            query = self._queries.get(key) if key is not None else None
            if key is None:
                result, self.uncacheable = "uncacheable", self.uncacheable + 1
            elif query is None:
                result, self.misses = "miss", self.misses + 1
            else:
                result, self.hits = "hit", self.hits + 1
                self._queries.move_to_end(key)
        if self.on_lookup is not None:
            self.on_lookup(task, result)
        return key, query

    def put(self, key: tuple[Any, ...], query: tuple[str, Any]) -> None:
        with self._lock:
            self._queries[key] = query
            self._queries.move_to_end(key)
            while len(self._queries) > self.maxsize:
                self._queries.popitem(last=False)


@dataclass(frozen=True)
class TrainingSet:
    """Stacked training cut-offs and the test cut-off of one task, ready for an estimator."""

    train: pd.DataFrame
    test: pd.DataFrame
    cutoffs: tuple[dt.date, ...]
    test_cutoff: dt.date
    feature_columns: tuple[str, ...]
    categorical_columns: tuple[str, ...]
    entity: str
    task: str
    # The touchpoint columns' event types and channels (features.touchpoints.vocabularies): the
    # model keeps them so that posted records get its columns.
    vocabulary: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Customer tasks with ``hazard_step_days``: the population's features at the cut-offs of
    # :func:`hazard_cutoffs` (column ``as_of``) and ``days_to_next``, the days to each customer's
    # next purchase (null: none in the data), for the weekly hazard head (models.hazard).
    hazard: pd.DataFrame | None = None
    # The features taken from a table as they are, not computed from rows dated at or before a cut-off
    # (:func:`as_is_columns`): the only ones that can be recorded after the outcome (training.leakage).
    as_is: tuple[str, ...] = ()


def training_cutoffs(test_cutoff: AsOf, *, horizon_days: int, step_days: int, n: int) -> tuple[dt.datetime, ...]:
    """Training cut-offs ``T - H, T - H - step, ...`` (``n`` of them), latest first."""
    t = normalize_as_of(test_cutoff)
    return tuple(t - dt.timedelta(days=horizon_days + k * step_days) for k in range(n))


# The first hazard cut-off lies this many days after the data's first row: a cut-off needs some
# history behind it (the same span as a purchase-cycle window) before its features mean anything.
HAZARD_WARMUP_DAYS = 90


def hazard_cutoffs(end: AsOf, *, step_days: int, first: AsOf) -> tuple[dt.datetime, ...]:
    """Cut-offs of the weekly hazard's training rows: ``end - 7d, end - 7d - step, ...``, latest first.

    Each labels at least its first week by ``end``; they stop :data:`HAZARD_WARMUP_DAYS` after
    ``first`` (the data's first row).
    """
    if step_days <= 0:
        raise ValueError(f"hazard step_days must be positive, got {step_days}")
    e, start = normalize_as_of(end), normalize_as_of(first) + dt.timedelta(days=HAZARD_WARMUP_DAYS)
    out, c = [], e - dt.timedelta(days=7)
    while c >= start:
        out.append(c)
        c -= dt.timedelta(days=step_days)
    return tuple(out)


def _hazard_rows(tables: CanonicalTables, task: str, cut: Cutoff, mc: ModelConfig) -> ir.Table:
    feats = population_table(tables, task, cut, mc)
    return feats.inner_join(days_to_next_purchase(tables, as_of=cut), "customer_id")


def _hazard_set(tables: CanonicalTables, task: str, end: dt.datetime, step_days: int, mc: ModelConfig) -> pd.DataFrame:
    """The hazard rows of ``task`` at :func:`hazard_cutoffs` of ``end`` (see ``TrainingSet.hazard``)."""
    if task == "lead":
        raise ValueError("task 'lead': the weekly hazard head is for customer tasks (churn, next_purchase)")
    table, first, _ = data_span(tables, task)
    cutoffs = hazard_cutoffs(end, step_days=step_days, first=first) if first is not None else ()
    if not cutoffs:
        raise ValueError(
            f"task '{task}': the weekly hazard head has no training cut-off: the first one, a week before "
            f"{end:%Y-%m-%d}, must lie {HAZARD_WARMUP_DAYS} days after the first row of table '{table}' "
            f"({f'{first:%Y-%m-%d}' if first else 'none'}). Use a later test cut-off (--as-of)"
        )
    frames = _at_cutoffs(tables, task, cutoffs, _hazard_rows, mc)
    # An empty cut-off (no population yet) adds no rows; leaving it out keeps the dtypes of the others.
    return pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)


def _check_cutoffs(cutoffs: Sequence[dt.datetime], test_cutoff: dt.datetime, horizon_days: int) -> None:
    for cutoff in cutoffs:
        end = cutoff + dt.timedelta(days=horizon_days)
        if end > test_cutoff:
            raise ValueError(
                f"training cut-off {cutoff:%Y-%m-%d %H:%M:%S}: its label window ends at {end:%Y-%m-%d %H:%M:%S}, "
                f"past the test cut-off {test_cutoff:%Y-%m-%d %H:%M:%S} (label leakage into the test period)"
            )


def _labelled(tables: CanonicalTables, task: str, cut: Cutoff, mc: ModelConfig) -> ir.Table:
    feats = population_table(tables, task, cut, mc)
    return feats.inner_join(labels(tables, task, as_of=cut, horizon_days=mc.horizon_days), ENTITY[task])


def _at_cutoffs(
    tables: CanonicalTables,
    task: str,
    cutoffs: Sequence[dt.datetime],
    rows: Callable[[CanonicalTables, str, Cutoff, ModelConfig], ir.Table],
    mc: ModelConfig,
) -> list[pd.DataFrame]:
    """``rows(tables, task, cut, mc)`` at each of ``cutoffs``, as pandas.

    On DuckDB the expression is built and compiled once, reading the cut-off from the
    connection's variables (:class:`features.timebase.Cutoff`), and run at each cut-off: building
    and compiling cost about as much as running it on the whole data. The vocabulary is read from
    the rows first, so the one expression has every cut-off's columns.
    """
    entity = ENTITY[task]
    if tables.con.name != "duckdb" or len(cutoffs) < 2:
        return [_to_pandas(rows(tables, task, Cutoff(c), mc), entity, c) for c in cutoffs]
    fixed = tables.with_vocabulary(vocabularies(tables))
    table = rows(fixed, task, Cutoff(cutoffs[0], variables=True), mc)
    query = (fixed.con.compile(table), table.schema())
    # What Ibis's execute does first: register the in-memory tables (and UDFs) the SQL names.
    fixed.con._run_pre_execute_hooks(table)
    frames = []
    for c in cutoffs:
        Cutoff(c, variables=True).bind(fixed.con, horizon_days=(mc.horizon_days,))
        frames.append(_to_pandas(_run_compiled(fixed.con, *query), entity, c, query[1]))
    return frames


def _align_categories(frames: list[pd.DataFrame], columns: Sequence[str]) -> None:
    """Give each categorical column the same sorted categories in every frame (LightGBM maps by code)."""
    for column in columns:
        values: set = set()
        for frame in frames:
            if column in frame.columns:
                values.update(frame[column].dropna().unique().tolist())
        categories = sorted(values, key=str)
        for frame in frames:
            frame[column] = pd.Categorical(frame[column].astype(object), categories=categories)


def build_training_set(
    tables: CanonicalTables,
    task: str,
    *,
    model_config: ModelConfig,
    test_cutoff: AsOf | None = None,
    cutoffs: Sequence[AsOf] | None = None,
    hazard_step_days: int | None = None,
) -> TrainingSet:
    """Stack labelled training cut-offs and the labelled test cut-off of ``task``.

    Parameters
    ----------
    tables
        Canonical tables.
    task
        ``churn``, ``next_purchase`` or ``lead``.
    model_config
        Horizon, lookback, step, number of training cut-offs and the default test cut-off.
    test_cutoff
        The test cut-off T; defaults to ``model_config.test_cutoff``.
    cutoffs
        Explicit training cut-offs instead of ``T - H, T - H - step, ...``.
    hazard_step_days
        Customer tasks: also build ``hazard``, the rows of the weekly hazard head at
        :func:`hazard_cutoffs` of T, this many days apart. None: no hazard rows.

    Returns
    -------
    TrainingSet
        ``train`` and ``test`` with columns: entity id, ``as_of``, features, ``label``
        (and ``spend`` for next_purchase). ``cutoffs`` are the training cut-offs, latest first.

    Raises
    ------
    ValueError
        No test cut-off, an unknown task, a training label window ``(as_of, as_of + H]`` that
        reaches past T, or a test label window that ends after the data does.
    """
    _check_task(task)
    chosen = test_cutoff if test_cutoff is not None else model_config.test_cutoff
    if chosen is None:
        raise ValueError(
            f"task '{task}': no test cut-off; set models.{task}.test_cutoff in the config, or give one (--as-of)"
        )
    t = normalize_as_of(chosen)
    h = model_config.horizon_days
    if cutoffs is None:
        train_cutoffs = training_cutoffs(
            t, horizon_days=h, step_days=model_config.step_days, n=model_config.n_train_cutoffs
        )
    else:
        train_cutoffs = tuple(normalize_as_of(c) for c in cutoffs)
    _check_cutoffs(train_cutoffs, t, h)
    check_window_observed(tables, task, as_of=t, horizon_days=h)

    *frames, test = _at_cutoffs(tables, task, [*train_cutoffs, t], _labelled, model_config)
    # An empty cut-off (no population yet) adds no rows; leaving it out keeps the dtypes of the others.
    train = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
    entity = ENTITY[task]
    features = tuple(c for c in test.columns if c not in (entity, "as_of", *_TARGETS))
    categorical = tuple(
        c
        for c in features
        if isinstance(test[c].dtype, pd.CategoricalDtype) or isinstance(train[c].dtype, pd.CategoricalDtype)
    )
    hazard = None if hazard_step_days is None else _hazard_set(tables, task, t, hazard_step_days, model_config)
    _align_categories([f for f in (train, test, hazard) if f is not None], categorical)
    return TrainingSet(
        train=train,
        test=test,
        cutoffs=tuple(c.date() for c in train_cutoffs),
        test_cutoff=t.date(),
        feature_columns=features,
        categorical_columns=categorical,
        entity=entity,
        task=task,
        vocabulary=vocabularies(tables),
        hazard=hazard,
        as_is=tuple(c for c in as_is_columns(tables, task) if c in features),
    )


def as_is_columns(tables: CanonicalTables, task: str) -> tuple[str, ...]:
    """The columns ``task`` takes as features as the tables hold them: the leads table's attributes for
    leads, the customers table's columns (``signup_at`` aside, a date) for customer tasks. Every other
    feature is computed from rows dated at or before the cut-off."""
    if task == "lead":
        return lead_attribute_columns(tables.leads) if tables.leads is not None else ()
    if tables.customers is None:
        return ()
    return tuple(c for c in tables.customers.columns if c not in ("customer_id", "signup_at"))


def write_snapshot(
    config: Config,
    *,
    as_of: AsOf,
    out: str | Path,
    task: str | None = None,
    allow_empty: bool = False,
    tables: CanonicalTables | None = None,
) -> int:
    """Write the feature table of one cut-off to Parquet, atomically; return the number of rows.

    ``task`` picks the population and model settings; by default ``churn`` when transactions are
    configured (customers active in the churn lookback), else ``lead``. The file is written
    whole or not at all (:func:`features.files.atomic_output`); an ``out`` that cannot be written
    is refused before any work (:class:`features.files.OutputError`), and an empty population
    writes nothing (:class:`EmptyPopulationError`) unless ``allow_empty``.
    """
    from features.sources import load_tables

    check_output(out, suffixes=(".parquet", ".pq"))
    if tables is None:
        tables = load_tables(config)
    if task is None:
        task = "churn" if tables.transactions is not None else "lead"
    _check_task(task)
    table = _snapshot_table(config, tables, task, as_of=as_of, allow_empty=allow_empty)
    with atomic_output(out) as tmp:
        pq.write_table(table, tmp)
    return table.num_rows


# The Parquet metadata key of the settings a snapshot was built with (features.config.feature_settings):
# the API refuses a snapshot built for another horizon or population than its model's.
SNAPSHOT_SETTINGS_KEY = b"crmscore.settings"
# And of the data's last row the snapshot's table holds (ISO): the API's /metrics exports it, because the
# snapshot's own cut-off is the date the job passed, which moves on every night on an export that stopped.
SNAPSHOT_DATA_UNTIL_KEY = b"crmscore.data_until"


def _snapshot_table(config: Config, tables: CanonicalTables, task: str, *, as_of: AsOf, allow_empty: bool) -> pa.Table:
    """The population features of one snapshot with the settings they were built with, refused when
    empty unless ``allow_empty``."""
    mc = getattr(config.models, task)
    frame = population_features(tables, task, as_of=as_of, model_config=mc)
    if not allow_empty:
        check_population(len(frame), tables, task, as_of=as_of, mc=mc)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    _, until = data_until(tables, task)
    stamps = {
        SNAPSHOT_SETTINGS_KEY: json.dumps(feature_settings(mc, task)).encode(),
        **({SNAPSHOT_DATA_UNTIL_KEY: until.isoformat(sep=" ").encode()} if until is not None else {}),
    }
    return table.replace_schema_metadata({**(table.schema.metadata or {}), **stamps})


def snapshot_dir(config: Config) -> Path:
    """Folder of the ``<task>.parquet`` snapshots the API serves: ``serving.snapshot_path``, else
    ``<output_dir>/snapshots``.

    Relative paths are taken from the working directory, like ``output_dir`` and the tracking URI.
    """
    if config.serving.snapshot_path:
        return Path(config.serving.snapshot_path)
    return Path(config.output_dir) / "snapshots"


def write_snapshots(
    config: Config,
    *,
    as_of: AsOf,
    tasks: Sequence[str] | None = None,
    allow_empty: bool = False,
    tables: CanonicalTables | None = None,
) -> dict[str, tuple[Path, int]]:
    """Write the API's snapshots of one cut-off, ``<task>.parquet`` in :func:`snapshot_dir`, all or none.

    ``tasks`` default to every task the configured tables serve (churn and next purchase with
    transactions, lead with leads). Every population is built and checked before any file is
    written, and the files are moved into place together, so a failure (an empty population, a
    folder that cannot be written) leaves the snapshots the server has as they were: never some of
    today's beside some of yesterday's. Returns each task's path and row count.
    """
    from features.sources import load_tables

    if tables is None:
        tables = load_tables(config)
    if tasks is None:
        tasks = [t for t in TASKS if getattr(tables, "leads" if t == "lead" else "transactions") is not None]
    folder = snapshot_dir(config)
    paths = {task: folder / f"{task}.parquet" for task in tasks}
    for task, path in paths.items():
        _check_task(task)
        check_output(path, suffixes=(".parquet",))
    built = {task: _snapshot_table(config, tables, task, as_of=as_of, allow_empty=allow_empty) for task in tasks}
    with contextlib.ExitStack() as files:  # each moved into place as the stack closes, none if a write fails
        for task, path in paths.items():
            pq.write_table(built[task], files.enter_context(atomic_output(path)))
    return {task: (paths[task], built[task].num_rows) for task in tasks}
