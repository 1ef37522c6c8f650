"""One typed, frozen run configuration, read from one YAML file.

Every default of the project lives here, once. The configuration maps a user's
own tables onto the canonical tables of the data contract (``transactions``,
``customers``, ``events``, ``leads``, ``lead_events``), chooses the engine, the
MLflow tracking URI and the per-model horizons, lookbacks and cut-offs.

Unknown keys and wrong types are errors that name the key: a typo in a config
must never silently fall back to a default.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "CANONICAL_COLUMNS",
    "FEATURE_SETTINGS",
    "Config",
    "ConfigError",
    "DuckDBConfig",
    "ModelConfig",
    "ModelsConfig",
    "RowFilter",
    "ServingConfig",
    "SourceConfig",
    "SparkConfig",
    "TableConfig",
    "TablesConfig",
    "feature_settings",
    "load_config",
    "population_rule",
]

# Required and optional canonical columns per table, from the data contract.
CANONICAL_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "transactions": {
        "required": ("customer_id", "timestamp", "amount"),
        "optional": ("order_id", "product_id", "category", "quantity", "channel"),
    },
    "customers": {"required": ("customer_id",), "optional": ("signup_at",)},
    "events": {
        "required": ("customer_id", "timestamp", "event_type"),
        "optional": ("channel", "value"),
    },
    "leads": {"required": ("lead_id", "created_at"), "optional": ("converted_at", "converted")},
    "lead_events": {"required": ("lead_id", "timestamp", "event_type"), "optional": ("channel",)},
}

# Canonical columns that hold a point in time; they are parsed and checked as timestamps.
TIMESTAMP_COLUMNS = frozenset({"timestamp", "created_at", "converted_at", "signup_at"})
# Canonical columns that must be numbers.
NUMERIC_COLUMNS = frozenset({"amount", "quantity", "value", "converted"})
# Canonical identifier columns: compared as strings everywhere.
ID_COLUMNS = frozenset({"customer_id", "lead_id", "order_id", "product_id"})
# The event_type of a customer event that ends the relationship: churn within the window, purchases or not.
CANCELLATION = "cancellation"


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the key."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Frozen):
    """Where a table is read from: a file (``path``) or a table in a database (``url``).

    ``path`` is resolved against the config file's folder when relative; ``format`` is inferred from
    its suffix when omitted. A DuckDB file needs ``table``. ``url`` is a connection URL that
    ``ibis.connect`` takes (``postgres://crm@db.internal:5432/crm``, ``sqlite:///crm.db``; the
    backend's driver must be installed: ``pip install crmscore[postgres]`` for PostgreSQL) with the
    ``table`` to read and, when it is not the default, the ``database`` (for PostgreSQL the schema)
    it is in. ``${NAME}`` in the URL is read from the environment when the table is read, so that a
    password stays out of the file; a password written in the URL is masked wherever crmscore shows
    or logs the config.
    """

    path: str | None = None
    url: str | None = None
    format: Literal["parquet", "csv", "duckdb", "database"] | None = None
    table: str | None = None
    database: str | None = None
    csv_options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _infer_format(self) -> SourceConfig:
        if (self.path is None) == (self.url is None):
            raise ValueError("give 'path' (a file) or 'url' (a database table), one of the two")
        if self.url is not None:
            if self.format not in (None, "database"):
                raise ValueError(f"'url' reads a database table: format must be database or unset, not {self.format}")
            if "://" not in self.url:
                raise ValueError(
                    f"'url' must be a connection URL such as postgres://user@host:5432/crm, got {self.url!r}"
                )
            if not self.table:
                raise ValueError("a database source needs 'table': the name of the table to read")
            object.__setattr__(self, "format", "database")
            return self
        if self.format == "database":
            raise ValueError("format database reads a table through 'url', not 'path'")
        if self.database is not None:
            raise ValueError("'database' is for a 'url' source (the schema the table is in)")
        if self.format is None:
            suffix = Path(self.path).suffix.lower()
            inferred = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".duckdb": "duckdb", ".db": "duckdb"}
            if suffix not in inferred and "*" not in self.path:
                raise ValueError(f"cannot infer the format of {self.path!r}: set 'format' to parquet, csv or duckdb")
            object.__setattr__(self, "format", inferred.get(suffix, "parquet"))
        if self.format == "duckdb" and not self.table:
            raise ValueError("a duckdb source needs 'table': the name of the table inside the DuckDB file")
        return self


# The password of a connection URL (scheme://user:password@host): masked in what is shown or logged.
URL_PASSWORD = re.compile(r"(?P<head>://[^/@:]*:)(?P<password>[^@/]*)@")


# A setting or query parameter whose name says it holds a secret (spark.hadoop.fs.s3a.secret.key,
# ?password=..., sslkey is a path and stays): its value is masked in what is logged.
SECRET_NAME = re.compile(r"(?i)(password|passwd|pwd|secret|token|credential|access[._-]?key|api[._-]?key)")
_URL_QUERY_SECRET = re.compile(r"(?P<head>[?&](?P<name>[^=&#]+)=)(?P<value>[^&#]*)")


def masked_url(url: str) -> str:
    """``url`` with the password written in it (not a ``${NAME}`` read from the environment) as ``***``:
    the ``user:password@`` form, and a query parameter named as a secret (``?user=a&password=...``,
    which an auditor found in clear in a run's config.json until 2026-12-07)."""
    url = URL_PASSWORD.sub(
        lambda m: m.group(0) if m.group("password").startswith("${") else f"{m.group('head')}***@", url
    )
    return _URL_QUERY_SECRET.sub(
        lambda m: (
            f"{m.group('head')}***"
            if SECRET_NAME.search(m.group("name")) and not m.group("value").startswith("${")
            else m.group(0)
        ),
        url,
    )


def masked_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` (``spark.conf``, a CSV reader's options) with each value whose name says it is a
    secret (:data:`SECRET_NAME`) as ``***``, unless it is a ``${NAME}`` read from the environment."""
    return {
        name: "***" if SECRET_NAME.search(str(name)) and not str(value).startswith("${") else value
        for name, value in settings.items()
    }


class RowFilter(_Frozen):
    """A named rule that keeps rows for which ``keep`` (a SQL boolean expression over source columns) is true.

    Rows it drops are counted under ``name`` and reported by ``crmscore validate``.
    """

    name: str
    keep: str


class TableConfig(_Frozen):
    """How one user table maps onto a canonical table.

    ``columns`` maps canonical names to a source column name or a SQL expression
    over source columns (``amount: Quantity * Price``). ``attributes`` adds any
    further columns under names of the user's choice (``country: Country``).
    ``attributes: "*"`` keeps every source column that no canonical column uses.
    ``exclude`` lists attributes that must never become features
    (post-outcome leakage such as ``duration``).
    """

    source: SourceConfig
    columns: dict[str, str]
    attributes: dict[str, str] | Literal["*"] = Field(default_factory=dict)
    filters: tuple[RowFilter, ...] = ()
    exclude: tuple[str, ...] = ()
    drop_duplicates: bool = False
    timestamp_format: str | None = None


class TablesConfig(_Frozen):
    transactions: TableConfig | None = None
    customers: TableConfig | None = None
    events: TableConfig | None = None
    leads: TableConfig | None = None
    lead_events: TableConfig | None = None

    @model_validator(mode="after")
    def _check_columns(self) -> TablesConfig:
        for name in CANONICAL_COLUMNS:
            table = getattr(self, name)
            if table is None:
                continue
            known = set(CANONICAL_COLUMNS[name]["required"]) | set(CANONICAL_COLUMNS[name]["optional"])
            unknown = sorted(set(table.columns) - known)
            if unknown:
                raise ValueError(
                    f"tables.{name}.columns: unknown canonical column(s) {unknown}; "
                    f"allowed: {sorted(known)} (put any other column under 'attributes')"
                )
            missing = [c for c in CANONICAL_COLUMNS[name]["required"] if c not in table.columns]
            if missing:
                raise ValueError(f"tables.{name}.columns: required canonical column(s) {missing} are not mapped")
            clash = sorted(set(table.attributes) & known) if isinstance(table.attributes, dict) else []
            if clash:
                raise ValueError(f"tables.{name}.attributes: {clash} are canonical names; map them under 'columns'")
        if self.leads is not None:
            if "converted" not in self.leads.columns and "converted_at" not in self.leads.columns:
                # Lead labels need one of the two; scoring alone would not, but every shipped use trains.
                raise ValueError("tables.leads.columns: map 'converted' (0/1) or 'converted_at' to train lead models")
        return self


# The decimals of a tier threshold at most: those the lists show a probability to (serving.lists.CSV_DECIMALS).
TIER_DECIMALS = 4


class ModelConfig(_Frozen):
    """Population window, horizon and backtest layout of one model.

    ``lgbm_params`` and, for next purchase, ``spend_params`` override the LightGBM parameters of
    the classifier and of the spend head (``{num_leaves: 31, num_threads: 8}``); the names are
    checked against LightGBM's when the model is built (:func:`models.spec.override_params`).
    """

    horizon_days: int = Field(90, gt=0)
    lookback_days: int = Field(365, gt=0)
    test_cutoff: dt.date | None = None
    step_days: int = Field(30, gt=0)
    n_train_cutoffs: int = Field(4, gt=0)
    tiers: dict[str, float] = Field(default_factory=lambda: {"high": 0.7, "medium": 0.4, "low": 0.0})
    top_k_reasons: int = Field(3, gt=0)
    seed: int = 42
    lgbm_params: dict[str, bool | int | float | str] = Field(default_factory=dict)
    spend_params: dict[str, bool | int | float | str] = Field(default_factory=dict)

    @field_validator("tiers")
    @classmethod
    def _tiers_descending(cls, value: dict[str, float]) -> dict[str, float]:
        thresholds = list(value.values())
        if thresholds != sorted(thresholds, reverse=True) or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError("tiers: thresholds must lie in [0, 1] and be listed from the highest tier down")
        if thresholds and thresholds[-1] != 0.0:
            lowest = list(value)[-1]
            raise ValueError(
                f"tiers: the lowest tier must start at 0, so every probability has a tier ({lowest!r} starts at "
                f"{thresholds[-1]:g}, and a probability below it would be called {lowest!r}); add one, e.g. low: 0"
            )
        # The lists show probabilities to 4 decimals, truncated (serving.lists.CSV_DECIMALS): with a threshold of
        # at most 4, a shown probability is at least a threshold exactly when the tier reaches it.
        finer = {name: t for name, t in value.items() if -Decimal(repr(float(t))).as_tuple().exponent > TIER_DECIMALS}
        if finer:
            name, threshold = next(iter(finer.items()))
            raise ValueError(
                f"tiers: {name!r} starts at {threshold!r}, finer than the {TIER_DECIMALS} decimals the lists show "
                f"probabilities to, so a row shown at {threshold:.{TIER_DECIMALS}f} could be in either tier; "
                f"give at most {TIER_DECIMALS} decimals"
            )
        return value


def population_rule(task: str, mc: ModelConfig) -> str:
    """Who is in ``task``'s population at a cut-off, in words (the rules ``features.pipeline``
    applies; the model specs and the error messages of an empty or missed population quote it)."""
    if task == "lead":
        return f"leads created in the {mc.step_days} days up to the cut-off and not converted by it"
    if task == "churn":
        return f"customers with a purchase in the {mc.lookback_days} days up to the cut-off"
    if task == "next_purchase":
        return "customers with a transaction at or before the cut-off"
    raise ValueError(f"task must be one of ('churn', 'next_purchase', 'lead'), got {task!r}")


# The settings of ``models.<task>`` that decide a model's inputs and question: who is in the
# population and what its features read (the horizon sets the "same window a year earlier"). A
# registered model is scored with those it was trained with (models.catalog.scoring_config), and a
# snapshot says which it was built with (features.pipeline.write_snapshots).
FEATURE_SETTINGS: dict[str, tuple[str, ...]] = {
    "churn": ("horizon_days", "lookback_days"),
    "next_purchase": ("horizon_days",),
    "lead": ("horizon_days", "step_days"),
}


def feature_settings(mc: ModelConfig, task: str) -> dict[str, int]:
    """``mc``'s :data:`FEATURE_SETTINGS` of ``task``, as a registered version's tag and a snapshot hold them."""
    return {name: getattr(mc, name) for name in FEATURE_SETTINGS[task]}


# Each model's defaults, also for a section that sets only some fields (``churn: {test_cutoff: ...}``).
# Churn and next purchase: a year of monthly training cut-offs, because their seasonal prior shift
# reads the base rate's change between the calibration and the test season one year earlier, so
# the cut-offs must reach a year before the calibration cut-off (13 at 30 days; cut-offs before
# the data starts add no rows, and only the latest six fit the model). Leads: a 30-day horizon and
# grades A-D.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "churn": {"n_train_cutoffs": 13},
    "next_purchase": {"n_train_cutoffs": 13},
    "lead": {
        "horizon_days": 30,
        "tiers": {"A": 0.5, "B": 0.25, "C": 0.1, "D": 0.0},
        "step_days": 30,
        "n_train_cutoffs": 6,
    },
}


class ModelsConfig(_Frozen):
    # Every section, given or not, starts from MODEL_DEFAULTS (the validator below).
    churn: ModelConfig
    next_purchase: ModelConfig
    lead: ModelConfig

    @model_validator(mode="before")
    @classmethod
    def _model_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        sections = {**{task: {} for task in MODEL_DEFAULTS}, **data}
        return {
            task: {**MODEL_DEFAULTS.get(task, {}), **section} if isinstance(section, dict) else section
            for task, section in sections.items()
        }


class SparkConfig(_Frozen):
    master: str = "local[2]"
    app_name: str = "crmscore"
    conf: dict[str, str] = Field(default_factory=dict)


class DuckDBConfig(_Frozen):
    """``duckdb:``. ``threads``: DuckDB's worker threads. One, by default, computes every feature the
    same to the last bit on every run: with more, parallel sums add up in no fixed order, and a value
    can differ in its 13th digit from one run to the next (measured: 1 run in 2 on the bundled
    churn features), enough to change a data digest or a batch file's bytes. More threads are
    faster on a quiet machine with cores to spare (see the README's benchmarks); None is DuckDB's
    own default, one per core."""

    threads: int | None = Field(1, gt=0)


class ServingConfig(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(3000, gt=0, lt=65536)
    max_batch: int = Field(1000, gt=0)
    # Posted histories: purchases and events in one call, all records together (1,000,000 took a worker
    # from 0.6 to 3.4 GB and other calls waited 6 s behind it), and the request body in MB (413 above it).
    max_posted_rows: int = Field(100_000, gt=0)
    max_body_mb: float = Field(50.0, gt=0)
    api_keys_env: str = "CRMSCORE_API_KEYS"
    api_keys_file: str | None = None
    snapshot_path: str | None = None
    # Seconds between the server's own reloads (a new champion or snapshot file is served without a
    # call to /reload); None: only /reload and a restart load new ones.
    reload_every_s: float | None = Field(None, gt=0)
    # Worker processes serving the API behind its one port (BentoML's ``workers``), each with its own
    # copy of the models and snapshots (~420 MiB each on the bundled data); "cpu_count": one per core.
    # /reload reaches every worker (serving.workers module).
    workers: int | Literal["cpu_count"] = 1
    # When the snapshot rows' SHAP values (what reasons are written from) are computed: "background",
    # all of them by a pass after each load (one core busy ~1 ms a row per worker; answers with reasons
    # never wait for it); "on_request", only the rows a request with reasons or a list asks for, each
    # then kept (for servers whose callers rarely ask for reasons: ~1 ms a row on first need).
    explain_snapshots: Literal["background", "on_request"] = "background"
    # A file (JSON lines, appended; relative to this file's folder) getting the audit record of every
    # list call and /reload, besides the server log's line; None: the log line only.
    audit_log: str | None = None

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> Any:
        if value == "cpu_count" or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 64):
            return value
        raise ValueError('a whole number of processes from 1 to 64, or "cpu_count" (one per core)')


def registry_prefix_for(name: str) -> str:
    """A ``registry_prefix`` of its own for a project named ``name``: ``crmscore-`` and the name with
    anything MLflow would not take as ``-`` (``saas demo`` -> ``crmscore-saas-demo``)."""
    return f"crmscore-{re.sub(r'[^A-Za-z0-9._-]+', '-', name).strip('-._')[:90] or 'project'}"


class Config(_Frozen):
    """The whole run configuration. Build it with :func:`load_config`."""

    name: str
    engine: Literal["duckdb", "spark"] = "duckdb"
    spark: SparkConfig = Field(default_factory=SparkConfig)
    duckdb: DuckDBConfig = Field(default_factory=DuckDBConfig)
    tracking_uri: str = "sqlite:///mlflow.db"
    registry_uri: str | None = None
    # Registered models (and MLflow experiments) are named <registry_prefix>-<task>: two projects sharing
    # one tracking store (a team's MLflow server, a folder's mlflow.db) each need their own.
    registry_prefix: str = "crmscore"
    output_dir: str = "outputs"
    tables: TablesConfig
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    base_dir: Path = Field(default=Path("."), exclude=True)
    # The file it was read from (load_config), for commands that messages suggest.
    path: Path | None = Field(default=None, exclude=True)

    @field_validator("registry_prefix")
    @classmethod
    def _registry_prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", value):
            raise ValueError(
                "letters, digits, '.', '_' and '-' (at most 100, a letter or digit first), e.g. crmscore-saas"
            )
        return value

    def resolve(self, path: str) -> str:
        """Return ``path`` made absolute against the config file's folder (URLs and absolute paths unchanged)."""
        if "://" in path or Path(path).is_absolute():
            return path
        return str((self.base_dir / path).resolve())

    def source_label(self, source: SourceConfig) -> str:
        """Where a table is read from, for reports and messages: the resolved path, or the masked URL and table."""
        if source.url is None:
            return self.resolve(source.path)
        where = f"{source.database}.{source.table}" if source.database else source.table
        return f"{masked_url(source.url)} table {where}"

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain data, for logging to MLflow and storing with a model, secrets
        masked: a password in a source URL or the tracking URIs, and a ``spark.conf`` setting or CSV
        option named as a secret (an S3 secret key was logged in clear until 2026-12-07)."""
        data = self.model_dump(mode="json")
        for table in data["tables"].values():
            if table is not None:
                if table["source"].get("url"):
                    table["source"]["url"] = masked_url(table["source"]["url"])
                table["source"]["csv_options"] = masked_settings(table["source"]["csv_options"])
        data["spark"]["conf"] = masked_settings(data["spark"]["conf"])
        for key in ("tracking_uri", "registry_uri"):
            if data.get(key):
                data[key] = masked_url(data[key])
        return data


def _format_error(error: ValidationError, path: Path) -> str:
    lines = [f"invalid config {path}:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def _check_lookbacks(raw: dict[str, Any], path: Path) -> None:
    """Refuse a ``lookback_days`` a file sets for next purchase or leads: only churn's population has
    a lookback window, and the setting was read and ignored (the bundled config set 730 for next
    purchase). The default value passes, as a config written out by ``Config.to_dict`` has it; the
    configs registries hold are not read through here."""
    default = ModelConfig.model_fields["lookback_days"].default
    models = raw.get("models") if isinstance(raw.get("models"), dict) else {}
    for task in ("next_purchase", "lead"):
        section = models.get(task)
        if isinstance(section, dict) and section.get("lookback_days", default) != default:
            raise ConfigError(
                f"config {path}: models.{task}.lookback_days: only churn has a lookback window; the {task} "
                f"population is {population_rule(task, ModelConfig())}. Remove the setting"
            )


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: PyYAML keeps the last silently, so
    a second ``models:`` block appended to a file dropped the first one's test cut-off without a word,
    and the reviewed file differed from what ran."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *anchor``: overriding its keys is the point
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is given twice in one mapping (first on line {seen[key] + 1}); "
                    "YAML would keep only the last, so merge them",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path, *, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate a YAML configuration file.

    Parameters
    ----------
    path
        The YAML file. Relative source paths inside it are resolved against its folder.
    overrides
        Top-level keys to replace after reading (e.g. ``{"engine": "spark"}``).

    Raises
    ------
    ConfigError
        The file is missing, not YAML, or has an unknown key or a value of the wrong type;
        the message names the key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with path.open(encoding="utf-8") as handle:  # a stream: YAML's error names the file, not "<unicode string>"
            raw = yaml.load(handle, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path}: the top level must be a mapping of keys to values")
    raw.update(overrides or {})
    for internal in ("base_dir", "path"):
        if internal in raw:
            raise ConfigError(f"config {path}: {internal}: unknown key")
    _check_lookbacks(raw, path)
    try:
        return Config(**raw, base_dir=path.resolve().parent, path=path.resolve())
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, path)) from exc
