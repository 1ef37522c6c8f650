"""Read the user's tables, map them onto the canonical tables and check the data contract.

Every row that does not reach a canonical table is counted under the rule that
dropped it; a breach of the contract (a missing required column, an unparseable
timestamp column, a required column that is entirely null) raises
:class:`ContractError` naming the table, the column and the rule, with a few
offending values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dtypes
import ibis.expr.types as ir
import pandas as pd
import sqlglot
from ibis.backends import BaseBackend
from sqlglot.dialects.spark import Spark

from features.config import (
    CANCELLATION,
    CANONICAL_COLUMNS,
    ID_COLUMNS,
    NUMERIC_COLUMNS,
    TIMESTAMP_COLUMNS,
    URL_PASSWORD,
    Config,
    SourceConfig,
    TableConfig,
)

__all__ = ["CanonicalTables", "ContractError", "TableReport", "java_pattern", "load_tables", "map_table"]

MAX_EVENT_TYPES_SHOWN = 8

_ENTITY = {
    "transactions": "customer_id",
    "customers": "customer_id",
    "events": "customer_id",
    "leads": "lead_id",
    "lead_events": "lead_id",
}
TIME_COLUMN = {"transactions": "timestamp", "events": "timestamp", "lead_events": "timestamp", "leads": "created_at"}
# A row dated after the run (beyond a day's slack for time zones) has not happened: a typo in a year
# (2027 for 2011). Kept, it would be the data's end, and every label window before it would count as
# observed. The rule drops it and validate counts it.
FUTURE_SLACK = dt.timedelta(days=1)
# Rows without a time, as a share of those read, that validate warns of (a date format that does not fit).
MANY_WITHOUT_TIME = 0.01


class ContractError(ValueError):
    """Input that breaks the data contract. ``table``, ``column`` and ``rule`` say where and how."""

    def __init__(self, table: str, column: str, rule: str, detail: str = "") -> None:
        self.table, self.column, self.rule = table, column, rule
        # "<source>": the rule is about the source itself (its file, its database), not a column.
        where = "its source" if column == "<source>" else f"column '{column}'"
        message = f"table '{table}', {where}: {rule}"
        super().__init__(f"{message}. {detail}".strip() if detail else message)


@dataclass
class TableReport:
    """Data-quality summary of one canonical table, as printed by ``crmscore validate``."""

    table: str
    source: str
    rows_read: int
    rows_kept: int
    dropped: dict[str, int]
    entities: int
    entity_column: str
    date_min: dt.datetime | None = None
    date_max: dt.datetime | None = None
    duplicates: int = 0
    refunds: int = 0
    cancelled_orders: int | None = 0  # None when no order_id is mapped
    null_rates: dict[str, float] = field(default_factory=dict)
    excluded: tuple[str, ...] = ()
    event_types: dict[str, int] = field(default_factory=dict)  # events tables: rows kept per event_type
    warnings: list[str] = field(default_factory=list)  # rows kept that the models will read oddly

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("date_min", "date_max"):
            out[key] = None if out[key] is None else str(out[key])
        return out

    def lines(self) -> list[str]:
        """Readable summary lines."""
        share = (lambda n: f"{n:,} ({n / self.rows_read:.1%})") if self.rows_read else str
        out = [
            f"{self.table}  <- {self.source}",
            f"  rows read     {self.rows_read:,}",
            f"  rows kept     {share(self.rows_kept)}",
        ]
        for rule, n in self.dropped.items():
            out.append(f"  dropped: {rule:<28} {share(n)}")
        out.append(f"  {self.entity_column + 's':<13} {self.entities:,}")
        if self.date_min is not None:
            out.append(f"  date range    {self.date_min} .. {self.date_max}")
        if self.table == "transactions":
            orders = "no order_id mapped" if self.cancelled_orders is None else f"{self.cancelled_orders:,}"
            out.append(f"  refund/return lines (amount < 0) {self.refunds:,}; orders with a refund {orders}")
        out.append(f"  exact duplicate rows {self.duplicates:,}")
        nulls = {c: r for c, r in self.null_rates.items() if r > 0}
        if nulls:
            out.append("  null rates    " + ", ".join(f"{c} {r:.1%}" for c, r in nulls.items()))
        if self.excluded:
            out.append(f"  excluded columns (never features): {', '.join(self.excluded)}")
        if self.event_types:
            shown = list(self.event_types.items())[:MAX_EVENT_TYPES_SHOWN]
            more = len(self.event_types) - len(shown)
            out.append(
                "  event types   " + ", ".join(f"{k} {n:,}" for k, n in shown) + (f" and {more} more" if more else "")
            )
        out.extend(f"  warning: {w}" for w in self.warnings)
        if self.table == "events" and self.rows_kept:
            n = self.event_types.get(CANCELLATION, 0)
            out.append(
                f"  cancellations {n:,} (event_type '{CANCELLATION}': churn within the window)"
                if n
                else f"  cancellations none: no event_type '{CANCELLATION}', so churn labels read purchases only"
            )
        return out


def _unpadded(ids: ir.Table, key: str) -> ir.Table:
    """The distinct ``key`` values of ``ids`` without leading zeros (``0012346`` -> ``12346``)."""
    return ids.select(**{key: ids[key].re_replace(r"^0+", "")}).distinct()


@dataclass
class CanonicalTables:
    """The canonical tables of one configuration, as Ibis expressions on one backend."""

    con: BaseBackend
    transactions: ir.Table | None = None
    customers: ir.Table | None = None
    events: ir.Table | None = None
    leads: ir.Table | None = None
    lead_events: ir.Table | None = None
    reports: dict[str, TableReport] = field(default_factory=dict)
    # What the feature code would otherwise read from the rows to choose its columns, by
    # "transactions.attributes" (the category attributes), "events.event_type", "events.channel",
    # "lead_events.event_type" and "lead_events.channel" (features.pipeline.vocabularies): a
    # trained model's, for posted records and later exports, so that they get its columns.
    # Empty: each feature call reads them from the table's own rows.
    vocabulary: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def with_vocabulary(self, vocabulary: Mapping[str, Sequence[str]] | None) -> CanonicalTables:
        """These tables with a trained model's vocabulary fixed (``Scorer.vocabulary``),
        so that its features are computed with the columns it was trained on; unchanged without one."""
        if not vocabulary:
            return self
        return dataclasses.replace(self, vocabulary={k: tuple(v) for k, v in vocabulary.items()})

    def last_timestamp(self, table: str) -> str:
        """The latest event time of ``table`` (ISO, second precision): "now" for a nightly job on an export.

        Raises
        ------
        ValueError
            ``table`` is not configured, or no row of it passed validation.
        """
        report = self.reports.get(table)
        if report is None:
            raise ValueError(f"table '{table}' is not configured: no data to take a date from")
        if report.date_max is None:
            raise ValueError(f"table '{table}' has no rows left after validation: nothing to score")
        return report.date_max.isoformat(sep=" ")

    def date_tail_warnings(self, *, gap_days: int = 180, share: float = 0.01) -> list[str]:
        """A sentence for each table whose first or last few rows (under ``share`` of them) lie more than
        ``gap_days`` from all the others: a year typed wrong (2021 for 2011) that passes every rule, and
        becomes the data's end, the date the commands score at by default (20 such rows of 805,000 made
        ``at-risk`` list 13 customers "as of 2021-12-05")."""
        out = []
        for table, column in TIME_COLUMN.items():
            rows = getattr(self, table)
            if rows is None:
                continue
            days = rows.group_by(day=rows[column].date()).agg(n=rows.count()).execute().dropna()
            if len(days) < 2:
                continue
            days = days.assign(day=pd.to_datetime(days["day"])).sort_values("day").reset_index(drop=True)
            total, counts = int(days["n"].sum()), days["n"].to_numpy()
            wide = [i for i, gap in enumerate(days["day"].diff().dt.days) if gap > gap_days]  # gap before row i
            # The widest stretch of rows cut off by a gap that is still few: after the first such gap, before the last.
            last = next((i for i in wide if counts[i:].sum() < share * total), None)
            first = next((i for i in reversed(wide) if counts[:i].sum() < share * total), None)
            found = [] if last is None else [("last", days.iloc[last:], days["day"].iloc[last - 1])]
            found += [] if first is None else [("first", days.iloc[:first], days["day"].iloc[first])]
            for end, part, edge in found:  # edge: the other rows' last (first) day
                n = int(part["n"].sum())
                away = abs((part["day"].min() if end == "last" else part["day"].max()) - edge).days
                out.append(
                    f"table '{table}': its {end} {n:,} row{'s' * (n != 1)} ({part['day'].min():%Y-%m-%d} .. "
                    f"{part['day'].max():%Y-%m-%d}) lie {away:,} days from the other {total - n:,}, which "
                    f"{'end' if end == 'last' else 'start'} {edge:%Y-%m-%d}: a year typed wrong?"
                    + (" They are the data's end, the date the commands score at by default." if end == "last" else "")
                )
        return out

    def case_variant_warnings(self, *, shown: int = 3, max_values: int = 1_000) -> list[str]:
        """A sentence for each category column (an attribute, an event type or channel, of at most
        ``max_values`` values; not an id, not free text) whose values differ only in case or surrounding
        blanks (``UNITED KINGDOM`` and ``United Kingdom``): the model takes them for two categories, and
        ``--per`` lists each. Names the first ``shown`` such values."""
        out = []
        for table in TIME_COLUMN:
            rows = getattr(self, table)
            if rows is None:
                continue
            for name, kind in rows.schema().items():
                if not kind.is_string() or name in ID_COLUMNS or name.endswith("_id"):
                    continue
                present = rows.filter(rows[name].notnull())
                column = present[name]
                found = present.group_by(key=column.strip().lower(), value=column).agg(n=present.count()).execute()
                if len(found) > max_values:  # free text (a product description), not a category
                    continue
                clashing = found[found.duplicated("key", keep=False)].sort_values(
                    ["key", "n", "value"], ascending=[True, False, True]
                )
                if clashing.empty:
                    continue
                groups = [
                    " and ".join(f"{v!r} ({n:,})" for v, n in zip(g["value"], g["n"], strict=True))
                    for _, g in clashing.groupby("key", sort=True)
                ]
                more = len(groups) - shown
                out.append(
                    f"table '{table}', column '{name}': values that differ only in case or blanks, which the model "
                    f"takes for different categories: {'; '.join(groups[:shown])}"
                    + (f"; and {more:,} more" if more > 0 else "")
                    + f" (map one spelling: an expression in tables.{table}, e.g. upper(trim(...)))"
                )
        return out

    def id_match_warnings(self, *, below: float = 0.5) -> list[str]:
        """A sentence for each table whose ids mostly miss the table they belong to: customers and events
        against transactions, lead events against leads (under ``below`` of its ids there). Exports of two
        systems spell ids apart (``12346`` and ``0012346``): every table passed, and the customers'
        attributes and the events joined nobody. Says when the ids match once leading zeros are stripped."""
        out = []
        for child, parent, key in (
            ("customers", "transactions", "customer_id"),
            ("events", "transactions", "customer_id"),
            ("lead_events", "leads", "lead_id"),
        ):
            ours, theirs = getattr(self, child), getattr(self, parent)
            if ours is None or theirs is None:
                continue
            ids, known = ours.select(key).distinct(), theirs.select(key).distinct()
            n = int(ids.count().execute())
            matched = int(ids.semi_join(known, key).count().execute())
            if not n or matched >= below * n:
                continue
            said = f"table '{child}': {matched:,} of its {n:,} {key} values are in table '{parent}'"
            if int(_unpadded(ids, key).semi_join(_unpadded(known, key), key).count().execute()) >= below * n:
                example = theirs.select(key).limit(1).execute()[key].iloc[0]
                said += (
                    f", and most are once leading zeros are stripped: the tables spell ids apart (table '{parent}' "
                    f"writes e.g. {example!r}); map both to one spelling (an expression in tables.{child}.columns)"
                )
            else:
                said += ": most of its rows join no one there (ids of another system, or another column?)"
            out.append(said)
        return out

    def fingerprint(self) -> dict[str, Any]:
        """Source, row counts, date range and :meth:`content_digest` per table: what MLflow logs to
        identify the input data."""
        found = {}
        for name, report in self.reports.items():
            found[name] = {
                k: v
                for k, v in report.to_dict().items()
                if k in ("source", "rows_read", "rows_kept", "date_min", "date_max")
            }
            table = getattr(self, name, None)
            if table is not None:
                found[name]["content_digest"] = self.content_digest(table)
        return found

    def content_digest(self, table: ir.Table) -> str:
        """A digest of a canonical table's rows as validated (every column's value, in any row order):
        one changed value changes it, where counts and dates need not. Its hash and its text form of
        numbers are the engine's, so DuckDB's and Spark's differ for the same rows; with DuckDB it is
        the same on every run (``duckdb.threads`` aside: a hash sum adds up in any order)."""
        parts = [table[c].cast("string").fill_null("<null>") for c in table.columns]
        row = parts[0]
        for part in parts[1:]:
            row = row.concat("|", part)
        # Summed modulo 2^31 per row, the total stays an exact int64 on either engine (Spark's ANSI mode
        # refuses an overflow) up to a billion rows; the row count beside it.
        found = table.aggregate(total=(row.hash() % 2147483647).sum(), rows=table.count()).to_pyarrow().to_pylist()[0]
        return hashlib.sha256(f"{int(found['total'] or 0)}:{int(found['rows'])}".encode()).hexdigest()[:16]


# ``${NAME}`` in a source URL: read from the environment when the table is read.
_ENV_VARIABLE = re.compile(r"\$\{(\w+)\}")


def _read_database(table: str, src: SourceConfig, label: str) -> Any:
    """The whole table a ``url`` source names, read through the database's Ibis backend, as Arrow.

    The feature engine (DuckDB or Spark) then holds it like any file source, so the feature SQL runs
    where it always runs and the database only answers one ``SELECT``.
    """
    missing = sorted({n for n in _ENV_VARIABLE.findall(src.url) if n not in os.environ})
    if missing:
        raise ContractError(
            table, "<source>", "environment variable not set", f"{', '.join(missing)}, used in url {label}"
        )
    url = _ENV_VARIABLE.sub(lambda m: os.environ[m.group(1)], src.url)
    secrets = [m.group("password") for m in URL_PASSWORD.finditer(url) if m.group("password")]

    def _fail(rule: str, exc: Exception) -> ContractError:
        text = f"{type(exc).__name__}: {exc}".strip()
        for secret in secrets:  # a driver may echo the URL back
            text = text.replace(secret, "***")
        return ContractError(table, "<source>", rule, f"{label}: {text}")

    try:
        remote = ibis.connect(url)
    except Exception as exc:  # a missing driver (ImportError), a refused connection, a bad URL
        raise _fail("cannot connect to the database", exc) from exc
    try:
        return remote.table(src.table, database=src.database).to_pyarrow()
    except Exception as exc:
        raise _fail("cannot read the table", exc) from exc
    finally:
        remote.disconnect()


# Ids an export writes for a missing one: no id (upper case; compared stripped and upper-cased).
NULL_MARKERS = ("", "NULL", "NONE", "N/A", "#N/A", "NAN", "-")


def _read_source(con: BaseBackend, config: Config, table: str, spec: TableConfig) -> ir.Table:
    src = spec.source
    name = f"src_{table}"
    if src.format == "database":
        return memtable_source(con, _read_database(table, src, config.source_label(src)), name)
    path = config.resolve(src.path)
    if "://" not in path and not any(ch in path for ch in "*?[") and not Path(path).exists():
        raise ContractError(table, "<source>", "source file not found", f"path {path}")
    if src.format == "parquet":
        try:
            return con.read_parquet(path, table_name=name)
        except Exception as exc:
            # Spark cannot read nanosecond timestamps, which pandas writes by default; say how to fix the file.
            if "TIMESTAMP(NANOS" not in str(exc):
                # A file cut short (a copy still running, a full disk at the export) or not Parquet: a contract
                # error naming it (it was the engine's traceback, exit 1, where a missing file exits 2).
                raise ContractError(
                    table, "<source>", "the Parquet reader refused the file", f"source {path}: {_first_line(exc)}"
                ) from exc
            raise ContractError(
                table,
                "<source>",
                "Spark reads Parquet timestamps in micro- or milliseconds, not nanoseconds",
                f"source {path}; rewrite it with pyarrow.parquet.write_table(..., coerce_timestamps='us') "
                "or pandas.DataFrame.to_parquet(..., coerce_timestamps='us', allow_truncated_timestamps=True)",
            ) from exc
    if src.format == "csv":
        options = dict(src.csv_options)
        if config.engine == "duckdb" and (any(ch in path for ch in "*?[") or Path(path).is_dir()):
            # Files of one export that gained or lost a column (a "Discount" from 2010 on): matched by name,
            # a missing column null. By position DuckDB refused the folder at the first read, in a traceback.
            options.setdefault("union_by_name", True)
        try:
            raw = con.read_csv(path, table_name=name, **options)
        except Exception as exc:  # an option the reader does not know (pandas' `decimal`), a malformed file
            raise ContractError(
                table,
                "<source>",
                "the CSV reader refused the file or source.csv_options",
                f"source {path}, csv_options {src.csv_options}: {_first_line(exc)}. The options are the engine's CSV "
                "reader's (DuckDB read_csv: delim, decimal_separator, dateformat, header, ...; Spark: sep, header, ...)",
            ) from exc
        ids = _integer_id_columns(spec, raw) + _formatted_timestamp_columns(spec, raw)
        if not ids or {"types", "columns", "schema"} & set(src.csv_options):  # the user typed the columns
            return raw
        # An id read as an integer loses its leading zeros ("007" and "7" become one customer): read it as
        # the text it is. DuckDB infers from a sample of rows, Spark from all, so they can differ otherwise.
        # A timestamp with a timestamp_format is read as text too, and parsed by that format: the reader's
        # own guess took 05/01/2008 for 5 January where the format said 1 May.
        if config.engine == "duckdb":
            return con.read_csv(path, table_name=name, **{**options, "types": dict.fromkeys(ids, "VARCHAR")})
        from pyspark.sql.types import StringType, StructField, StructType

        inferred = con._session.table(name).schema
        schema = StructType([StructField(f.name, StringType()) if f.name in ids else f for f in inferred.fields])
        return con.read_csv(path, table_name=name, **{**options, "schema": schema, "inferSchema": False})
    # A DuckDB file is attached read-only to the session, so it joins with the other sources.
    if config.engine != "duckdb":
        raise ContractError(table, "<source>", "a duckdb source needs engine: duckdb", f"source {path}")
    alias = f"db_{table}"
    con.raw_sql(f"ATTACH IF NOT EXISTS '{path}' AS {alias} (READ_ONLY)")
    con.raw_sql(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {alias}.{_quote(src.table)}")
    return con.table(name)


def _integer_id_columns(spec: TableConfig, raw: ir.Table) -> list[str]:
    """Source columns mapped as they are onto an id column that the reader typed as integers."""
    return [
        expr
        for canonical, expr in spec.columns.items()
        if canonical in ID_COLUMNS and expr in raw.columns and raw[expr].type().is_integer()
    ]


def _formatted_timestamp_columns(spec: TableConfig, raw: ir.Table) -> list[str]:
    """Source columns mapped as they are onto a timestamp column that the reader typed as a date or
    timestamp by its own guess, when the config gives the format."""
    if not spec.timestamp_format:
        return []
    return [
        expr
        for canonical, expr in spec.columns.items()
        if canonical in TIMESTAMP_COLUMNS and expr in raw.columns and raw[expr].type().is_temporal()
    ]


def _referenced_columns(expression: str, *, dialect: str) -> list[str]:
    try:
        parsed = sqlglot.parse_one(expression, read=dialect)
    except sqlglot.errors.ParseError as exc:
        raise ValueError(f"not a valid SQL expression: {expression!r} ({exc})") from exc
    return [c.name for c in parsed.find_all(sqlglot.exp.Column)]


def _check_columns(table: str, raw: ir.Table, exprs: dict[str, str], source: str, dialect: str) -> None:
    available = set(raw.columns)
    for canonical, expression in exprs.items():
        try:
            used = _referenced_columns(expression, dialect=dialect)
        except ValueError as exc:
            raise ContractError(
                table, canonical, "mapping must be a source column or SQL expression", str(exc)
            ) from exc
        missing = [c for c in used if c not in available]
        if missing:
            raise ContractError(
                table,
                missing[0],
                "required column is missing from the source",
                f"'{canonical}' is mapped to {expression!r}; source {source} has columns {sorted(available)}",
            )


def _first_line(exc: Exception) -> str:
    """The engine's own sentence of an error (DuckDB's Binder error), without the query it quotes; of
    a Spark (py4j) error, the innermost Java cause's, where py4j's first line says only "An error
    occurred while calling o49.parquet" (a truncated Parquet file read so on Spark, where DuckDB said
    "No magic bytes found at end of file")."""
    java = getattr(exc, "java_exception", None)
    if java is not None:
        try:
            while java.getCause() is not None:
                java = java.getCause()
            said = java.getMessage() or java.getClass().getSimpleName()
            return f"{java.getClass().getSimpleName()}: {said.strip().splitlines()[0]}"
        except Exception:  # noqa: BLE001 - py4j's own text is still an answer
            pass
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _failing_expression(
    table: str, raw: ir.Table, raw_name: str, mapped: dict[str, str], spec: TableConfig, keeps: list[str], dialect: str
) -> ContractError:
    """The contract error of the first mapping or filter the engine refuses on the source (a text
    column compared with a number: ``"Price EUR" > 0`` when decimal commas left it text), found by
    trying each alone; the mapping's own names, not the engine's traceback."""
    tries = {name: ("column", expr) for name, expr in mapped.items()}
    tries.update({f"filter '{f.name}'": ("filter", k) for f, k in zip(spec.filters, keeps, strict=True)})
    for name, (kind, expr) in tries.items():
        try:
            raw.sql(f"SELECT {expr} AS x FROM {raw_name}", dialect=dialect)
        except Exception as exc:
            types = ", ".join(f"{c} ({t})" for c, t in raw.schema().items())
            return ContractError(
                table,
                name,
                f"the {kind} expression does not run on the source",
                f"{expr!r}: {_first_line(exc)}; the source's columns: {types}",
            )
    return ContractError(table, "<source>", "the mapping does not run on the source", f"source {raw_name}")


def _quote(name: str, dialect: str = "duckdb") -> str:
    # Spark SQL reads "x" as a string literal, not a column: identifiers take backticks there.
    if dialect == "spark":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def _column_or_sql(expression: str, raw: ir.Table, dialect: str) -> str:
    """A mapping that names a source column exactly is that column, even when SQL would read it otherwise.

    ``Customer ID`` (a space) or ``when`` and ``order`` (keywords) are column names in real exports;
    anything else is a SQL expression over the source columns.
    """
    return _quote(expression, dialect) if expression in raw.columns else expression


def _attributes(spec: TableConfig, raw: ir.Table, mapped_sources: set[str], dialect: str) -> dict[str, str]:
    if spec.attributes == "*":
        return {c: _quote(c, dialect) for c in raw.columns if c not in mapped_sources and c not in spec.exclude}
    return {
        name: _column_or_sql(expr, raw, dialect) for name, expr in spec.attributes.items() if name not in spec.exclude
    }


def _examples(expr: ir.Table, column: str, n: int = 5) -> list[Any]:
    return expr.select(column).distinct().limit(n).to_pandas()[column].tolist()


def _timestamp_hint(spec: TableConfig, column: str, dialect: str) -> str:
    """What to do about timestamps that do not parse: set the format, or with one set, say so and how
    to drop such rows by rule instead (DuckDB: ``try_strptime`` in the mapping gives them a null
    timestamp, a counted drop)."""
    fmt = spec.timestamp_format
    if not fmt:
        return " (set timestamp_format in the config)"
    source = _quote(spec.columns[column], dialect)
    parse = (
        f"try_to_timestamp({source}, '{java_pattern(fmt)}')"
        if dialect == "spark"
        else f"try_strptime({source}, '{fmt}')"
    )
    return (
        f" (they do not match timestamp_format {fmt!r}; to drop such rows instead, map {column}: {parse}"
        f" (dropped rows are counted under 'no {column}'))"
    )


@ibis.udf.scalar.builtin(name="try_strptime")
def _try_strptime(value: str, format: str) -> dt.datetime:  # noqa: A002 - DuckDB's own argument name
    """DuckDB's ``try_strptime``: the timestamp ``value`` is in ``format``, or null when it is not."""


@ibis.udf.scalar.builtin(name="try_to_timestamp")
def _try_to_timestamp(value: str, format: str) -> dt.datetime:  # noqa: A002 - Spark's own argument name
    """Spark's ``try_to_timestamp``: the timestamp ``value`` is in the Java ``format``, or null when it is not."""


# strftime directives as Java DateTimeFormatter patterns (sqlglot's Spark mapping: %d/%m/%Y -> dd/MM/yyyy).
_JAVA_PATTERNS = Spark.INVERSE_TIME_MAPPING


def java_pattern(fmt: str) -> str:
    """A ``timestamp_format`` (strftime) as the pattern of Spark's ``to_timestamp``: each directive
    mapped, literal letters quoted (``%Y-%m-%dT%H:%M`` -> ``yyyy-MM-dd'T'HH:mm``).

    Raises
    ------
    ValueError
        A directive Spark has no pattern for.
    """
    out, i = [], 0
    while i < len(fmt):
        directive = next((d for d in (fmt[i : i + 3], fmt[i : i + 2]) if d in _JAVA_PATTERNS), None)
        if directive:
            out.append(_JAVA_PATTERNS[directive])
            i += len(directive)
            continue
        if fmt[i] == "%":
            raise ValueError(f"timestamp_format {fmt!r}: {fmt[i : i + 2]!r} has no Spark pattern")
        out.append(f"'{fmt[i]}'" if fmt[i].isalpha() else "''" if fmt[i] == "'" else fmt[i])
        i += 1
    return "".join(out)


def _parse_timestamps(value: ir.StringValue, fmt: str, dialect: str) -> ir.TimestampValue:
    """``value`` parsed by ``timestamp_format``; a value the format does not parse is null (counted
    and refused by :func:`map_table`, not the engine's own exception). Ibis labels strptime UTC;
    the result is the naive wall-clock time, as from every other source."""
    if dialect == "duckdb":
        return _try_strptime(value, fmt).cast("timestamp")
    return _try_to_timestamp(value, java_pattern(fmt)).cast("timestamp")


def map_table(
    con: BaseBackend, config: Config, table: str, *, raw: ir.Table | None = None
) -> tuple[ir.Table, TableReport]:
    """Map one configured table onto its canonical columns, apply the row rules and count what they drop.

    Parameters
    ----------
    con
        The Ibis backend that executes the mapping.
    config
        The run configuration.
    table
        Canonical table name (``transactions``, ``customers``, ``events``, ``leads``, ``lead_events``).
    raw
        The source table, when already read (tests pass in-memory tables).

    Returns
    -------
    The canonical table (cached on the backend) and its data-quality report.

    Raises
    ------
    ContractError
        A mapped column is missing, a timestamp column does not parse, or a required column is entirely null.
    """
    spec: TableConfig = getattr(config.tables, table)
    source = config.source_label(spec.source)
    dialect = "spark" if config.engine == "spark" else "duckdb"
    if raw is None:
        raw = _read_source(con, config, table, spec)
    # A table the engine holds in a catalog is named catalog.schema.table: quote each part.
    raw_name = ".".join(_quote(part, dialect) for part in raw.get_name().split("."))
    mapped_sources = {e for e in spec.columns.values() if e in raw.columns}
    attributes = _attributes(spec, raw, mapped_sources, dialect)
    for name in spec.exclude:
        if name not in raw.columns and name not in spec.attributes:
            raise ContractError(table, name, "excluded column is not in the source", f"source {source}")
    columns = {name: _column_or_sql(expr, raw, dialect) for name, expr in spec.columns.items()}
    _check_columns(table, raw, {**columns, **attributes}, source, dialect)
    keeps = [_column_or_sql(f.keep, raw, dialect) for f in spec.filters]
    _check_columns(
        table, raw, {f"filter '{f.name}'": k for f, k in zip(spec.filters, keeps, strict=True)}, source, dialect
    )
    keep_flags = {f"__keep_{i}": keep for i, keep in enumerate(keeps)}

    # "Exact duplicate" means the same source row: a source column that no canonical column or attribute
    # carries as it is (Price, when amount = Quantity * Price) rides along until the duplicates are counted,
    # so two lines of one order that map to the same few canonical values are not taken for one.
    carried = {*columns.values(), *attributes.values()}
    quoted = (_quote(c, dialect) for c in raw.columns)
    row_identity = {f"__src_{i}": q for i, q in enumerate(quoted) if q not in carried}
    selects = [
        f"{expr} AS {_quote(name, dialect)}"
        for name, expr in {**columns, **attributes, **keep_flags, **row_identity}.items()
    ]
    try:
        mapped = raw.sql(f"SELECT {', '.join(selects)} FROM {raw_name}", dialect=dialect)
    except Exception as exc:
        raise _failing_expression(table, raw, raw_name, {**columns, **attributes}, spec, keeps, dialect) from exc

    # Types of the contract: ids as strings (a float id 12346.0 becomes "12346"), numbers as float64.
    casts = {}
    for column in spec.columns:
        value = mapped[column]
        if column in ID_COLUMNS:
            if value.type().is_floating():
                value = value.cast("int64")
            # An id of blanks ("  ", a guest checkout) is no id, nor is a null written as text by an export
            # ("NULL", "N/A", Excel's "#N/A": it was one customer with every such row): the "no customer_id"
            # rule counts them.
            text = value.cast("string")
            missing = text.strip().upper().isin(NULL_MARKERS)
            casts[column] = ibis.ifelse(missing, ibis.null("string"), text)
        elif column in NUMERIC_COLUMNS:
            if not value.type().is_numeric() and not value.type().is_boolean():
                casts[column] = value.try_cast("float64")
            else:
                casts[column] = value.cast("float64")
        elif column in TIMESTAMP_COLUMNS:
            if value.type().is_timestamp():
                casts[column] = value.cast("timestamp")
            elif value.type().is_date():
                casts[column] = value.cast("timestamp")
            elif spec.timestamp_format and value.type().is_string():
                casts[column] = _parse_timestamps(value, spec.timestamp_format, dialect)
            elif value.type().is_string():
                # Through a zoned timestamp: DuckDB's cast to a plain one dropped an ISO text's offset
                # ('2025-07-06T01:00:00+01:00' read 01:00, not 00:00 UTC; Spark's honoured it); text without
                # one reads as UTC, the session's zone, as before.
                casts[column] = value.try_cast(dtypes.Timestamp(timezone="UTC")).cast("timestamp")
            else:
                casts[column] = value.try_cast("timestamp")
        elif column in ("event_type", "channel", "category"):
            casts[column] = value.cast("string")
    typed = mapped.mutate(**{f"__raw_{c}": mapped[c] for c in casts if c in TIMESTAMP_COLUMNS or c in NUMERIC_COLUMNS})
    typed = typed.mutate(**{c: v for c, v in casts.items()}) if casts else typed
    try:
        typed = typed.cache()
    except Exception as exc:  # the reader's lazy errors surface here (files of a folder that disagree)
        raise ContractError(table, "<source>", "the source could not be read", _first_line(exc)) from exc

    # One pass counts what every check below needs: the values that do not parse, the nulls per
    # column, and the rows each rule drops (each row once, under the first rule it breaks).
    required = CANONICAL_COLUMNS[table]["required"]
    data_columns = [c for c in typed.columns if not c.startswith("__")]
    parsed = [c for c in casts if c in TIMESTAMP_COLUMNS or c in NUMERIC_COLUMNS]
    unparsed = {column: typed[f"__raw_{column}"].notnull() & typed[column].isnull() for column in parsed}
    aggs = {"rows_read": typed.count()}
    for column, condition in unparsed.items():
        aggs[f"bad__{column}"] = condition.sum()
    for column in data_columns:
        aggs[f"null__{column}"] = typed[column].isnull().sum()
    passed = ibis.literal(True)
    rules = [(f"no {column}", typed[column].notnull()) for column in required]
    if (time_column := TIME_COLUMN.get(table)) in typed.columns:
        latest = dt.datetime.now(dt.UTC).replace(tzinfo=None) + FUTURE_SLACK
        rules.append((f"{time_column} in the future", typed[time_column] <= ibis.literal(latest)))
    rules += [(rule.name, typed[flag].fill_null(False)) for flag, rule in zip(keep_flags, spec.filters, strict=True)]
    for i, (_, keep) in enumerate(rules):
        aggs[f"drop__{i}"] = (passed & ~keep).sum()
        passed = passed & keep
    counts = {k: int(v or 0) for k, v in typed.aggregate(**aggs).to_pyarrow().to_pylist()[0].items()}

    # Unparseable values: present in the source, null after parsing. A contract error, with examples.
    for column in parsed:
        if n_bad := counts[f"bad__{column}"]:
            bad = typed.filter(unparsed[column])
            kind = "timestamp" if column in TIMESTAMP_COLUMNS else "number"
            raise ContractError(
                table,
                column,
                f"values must parse as a {kind}",
                f"{n_bad:,} row(s) do not, e.g. {_examples(bad, f'__raw_{column}')}"
                + (
                    (
                        # Numbers are no dates in any format: the mapping names the wrong column.
                        f" (the mapped values are numbers ({typed[f'__raw_{column}'].type()}), not times: map "
                        f"{column} to the source column that holds the dates)"
                        if typed[f"__raw_{column}"].type().is_numeric()
                        else _timestamp_hint(spec, column, dialect)
                    )
                    if kind == "timestamp"
                    else ""
                )
                + (
                    f" (map a condition instead, e.g. converted: {spec.columns[column]} = 'yes')"
                    if column == "converted"
                    else ""
                ),
            )

    rows_read = counts["rows_read"]
    for column in required:
        if rows_read and counts[f"null__{column}"] == rows_read:
            raise ContractError(
                table, column, "required column is entirely null", f"all {rows_read:,} rows of {source} are null"
            )

    dropped = {name: counts[f"drop__{i}"] for i, (name, _) in enumerate(rules)}
    kept = typed.filter(passed)
    kept = kept.select(*data_columns, *row_identity)
    n_before_dedup = rows_read - sum(dropped.values())
    distinct = kept.distinct()
    duplicates = n_before_dedup - distinct.count().to_pyarrow().as_py()
    if spec.drop_duplicates:
        dropped["exact duplicate row"] = duplicates
        kept = distinct
    kept = kept.select(*data_columns).cache()

    entity = _ENTITY[table]
    stats = {"rows_kept": kept.count(), "entities": kept[entity].nunique()}
    time_col = TIME_COLUMN.get(table)
    if time_col:
        stats["date_min"] = kept[time_col].min()
        stats["date_max"] = kept[time_col].max()
    if table == "transactions":
        stats["refunds"] = (kept.amount < 0).sum()
    summary = kept.aggregate(**stats).to_pyarrow().to_pylist()[0]
    cancelled = None if table == "transactions" and "order_id" not in kept.columns else 0
    if table == "transactions" and "order_id" in kept.columns:
        cancelled = kept.filter(kept.amount < 0).order_id.nunique().to_pyarrow().as_py()
    event_types: dict[str, int] = {}
    if "event_type" in kept.columns:
        counts_by_type = kept.event_type.value_counts().to_pyarrow().to_pylist()
        rows = sorted(
            ((r["event_type"], r["event_type_count"]) for r in counts_by_type), key=lambda r: (-r[1], str(r[0]))
        )
        event_types = {str(k): int(n) for k, n in rows}
    warnings = _lead_warnings(kept) if table == "leads" else _customer_warnings(kept) if table == "customers" else []
    if not rows_read:  # a nightly job that gates on validate let a failed export through, exit 0, unsaid
        warnings.append(f"{source} has no rows: an export that failed or has not arrived yet?")
    if time_column and rows_read and dropped.get(f"no {time_column}", 0) >= MANY_WITHOUT_TIME * rows_read:
        # A format that does not fit (try_strptime with day and month swapped) reads most dates as null.
        warnings.append(
            f"{dropped[f'no {time_column}'] / rows_read:.1%} of the rows have no {time_column}: if the mapping "
            "parses text dates (try_strptime, timestamp_format), check that its format is the export's"
        )
    report = TableReport(
        warnings=warnings,
        table=table,
        source=source,
        rows_read=rows_read,
        rows_kept=summary["rows_kept"],
        # The built-in rules are said when they drop rows; the config's filters always.
        dropped={k: v for k, v in dropped.items() if v or not (k.startswith("no ") or k.endswith(" in the future"))},
        entities=summary["entities"],
        entity_column=entity,
        date_min=summary.get("date_min"),
        date_max=summary.get("date_max"),
        duplicates=duplicates,
        refunds=int(summary.get("refunds") or 0),
        cancelled_orders=cancelled,
        null_rates={c: (counts[f"null__{c}"] / rows_read if rows_read else 0.0) for c in data_columns},
        excluded=tuple(spec.exclude),
        event_types=event_types,
    )
    assert report.rows_read == report.rows_kept + sum(report.dropped.values()), "a row was lost without a rule"
    return kept, report


def _repeated(table: ir.Table, key: str) -> dict[str, int]:
    """How many ``key`` values appear on more than one row (``ids``) and on how many rows (``rows``)."""
    per_id = table.group_by(key).aggregate(n=table.count())
    many = per_id.filter(per_id.n > 1)
    return many.aggregate(ids=many.count(), rows=many.n.sum()).to_pyarrow().to_pylist()[0]


def _customer_warnings(customers: ir.Table) -> list[str]:
    """What in a valid customers table the models will read oddly: a customer id on several rows, of
    which the features take one (the first the engine reads), so conflicting attributes go unseen."""
    repeated = _repeated(customers, "customer_id")
    if not repeated["ids"]:
        return []
    return [
        f"{repeated['ids']:,} customer_id(s) appear on more than one row ({repeated['rows']:,} rows): the features "
        "take one row of each, so their attributes should agree (deduplicate the export)"
    ]


def _lead_warnings(leads: ir.Table) -> list[str]:
    """What in a valid leads table the models will read oddly: repeated lead ids, conversions before creation."""
    out = []
    repeated = _repeated(leads, "lead_id")
    if repeated["ids"]:
        out.append(
            f"{repeated['ids']:,} lead_id(s) appear on more than one row ({repeated['rows']:,} rows): each row is "
            "trained on as a lead of its own, and scoring by id picks one"
        )
    if "converted_at" in leads.columns:
        early = leads.filter(leads.converted_at < leads.created_at).count().to_pyarrow().as_py()
        if early:
            out.append(
                f"{early:,} lead(s) have converted_at before created_at: they count as not converted within "
                "the horizon (check the two columns' time zones or the export)"
            )
    return out


def load_tables(config: Config, *, con: BaseBackend | None = None) -> CanonicalTables:
    """Read, map and check every configured table.

    Parameters
    ----------
    config
        The run configuration.
    con
        An Ibis backend; by default a new one for ``config.engine``.
    """
    if con is None:
        from features.engine import connect

        con = connect(config)
    tables = CanonicalTables(con=con)
    for name in CANONICAL_COLUMNS:
        if getattr(config.tables, name) is None:
            continue
        canonical, report = map_table(con, config, name)
        setattr(tables, name, canonical)
        tables.reports[name] = report
    return tables


def memtable_source(con: BaseBackend, frame: Any, name: str) -> ir.Table:
    """Register an in-memory frame as a named source table (for tests and posted histories)."""
    if con.name == "pyspark":
        # The PySpark backend has no temporary tables; a temporary view is its session-scoped equivalent.
        return con.create_view(name, ibis.memtable(frame), overwrite=True)
    if hasattr(con, "create_table"):
        return con.create_table(name, ibis.memtable(frame), temp=True, overwrite=True)
    return ibis.memtable(frame, name=name)
