"""The ``crmscore`` command line: one Typer app; each package owns the logic of its commands.

``validate`` (with the models' check of their config sections) and ``features`` come from
:mod:`features.cli`; ``train``, ``score``, ``explain``, ``backtest``, ``monitor``, ``models`` and
``promote`` call :mod:`training`; ``at-risk``, ``serve`` and ``demo`` are the serving ring's own.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from features.cli import AllowEmptyOption, ConfigOption, JsonOption, features_command, validate_config
from features.config import ConfigError, ServingConfig, load_config

__all__ = ["app"]

app = typer.Typer(
    name="crmscore",
    help="Calibrated, explained customer scores for CRM: churn, next purchase and lead qualification.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("features")(features_command)

# The options of the lists written for people (at-risk, top).
CsvOutOption = Annotated[Path, typer.Option("--out", help="CSV file to write.")]
CounterReasonsOption = Annotated[
    int,
    typer.Option(
        "--counter-reasons", min=0, max=10, help="Counter-reasons per row: what lowers the score (the risk, for churn)."
    ),
]


@app.command("init")
def init_command(
    out: Annotated[Path, typer.Option("--out", help="The config file to write (YAML).")],
    transactions: Annotated[
        Path | None, typer.Option("--transactions", help="Your transactions export (.parquet or .csv).")
    ] = None,
    customers: Annotated[
        Path | None, typer.Option("--customers", help="Customer attributes (with --transactions).")
    ] = None,
    events: Annotated[
        Path | None, typer.Option("--events", help="Touchpoints: emails, visits, calls (with --transactions).")
    ] = None,
    leads: Annotated[Path | None, typer.Option("--leads", help="Your leads export (.parquet or .csv).")] = None,
    lead_events: Annotated[
        Path | None, typer.Option("--lead-events", help="Touchpoints of the leads (with --leads).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="The config's name (default: the file's stem).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
) -> None:
    """Draft a config for your own export: the column mapping guessed from names and types, each model's test cut-off the latest complete one; then validated as `crmscore validate` does.

    Read the draft: each guess is a comment in it. Exit 2, writing nothing, when a required column cannot be guessed or the tables do not pass the data contract.
    """
    import yaml

    from features.config import Config
    from features.draft import draft_config
    from features.files import write_text_atomic
    from features.labels import MAIN_TABLE
    from features.sources import ContractError, load_tables
    from training.monitor import latest_closed_cutoff
    from training.pyfunc import cli_model_name

    if out.exists() and not force:
        raise _fail(f"--out {out} exists; pass --force to replace it")
    try:
        files = {
            "transactions": transactions,
            "customers": customers,
            "events": events,
            "leads": leads,
            "lead_events": lead_events,
        }
        text, drafts = draft_config(out, files, name=name)
        drafted = {d.table for d in drafts}
        tasks = [task for task, table in MAIN_TABLE.items() if table in drafted]
        # Read as the file will be, from the folder of --out where the relative source paths point, to find
        # the cut-offs; nothing is written until the draft passes.
        try:
            cfg = Config(**yaml.safe_load(text), base_dir=out.resolve().parent)
        except ValidationError as exc:
            raise ConfigError(f"the draft for {out} is not a valid config: {exc}") from exc
        tables = load_tables(cfg)
        cutoffs = {task: latest_closed_cutoff(cfg, task, tables=tables) for task in tasks}
    except (ConfigError, ContractError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    models = {}
    for task, cutoff in cutoffs.items():
        section = {"test_cutoff": cutoff.isoformat()}
        if task != "lead":  # a year of monthly cut-offs: what the seasonal correction needs (README)
            section.update(step_days=30, n_train_cutoffs=13)
        models[task] = section
    text += (
        "\n# The latest cut-offs whose outcome windows the data has closed; `crmscore train --as-of` overrides.\n"
        + yaml.safe_dump({"models": models}, sort_keys=False)
    )
    write_text_atomic(out, text)
    for report in tables.reports.values():
        typer.echo("\n".join(report.lines()))
    for draft in drafts:
        typer.echo(f"{draft.table}: " + "; ".join(draft.notes))
    typer.echo(f"wrote {out}; next: crmscore train {cli_model_name(tasks[0])} --config {out}")


@app.command("validate")
def validate_command(config: ConfigOption, json_out: JsonOption = None) -> None:
    """Print a data-quality summary per table; exit non-zero on a contract error or a bad model section."""
    from models.catalog import check_model_sections

    validate_config(config, json_out, checks=(check_model_sections,))


MODEL_NAMES = {"churn": "churn", "next-purchase": "next_purchase", "next_purchase": "next_purchase", "lead": "lead"}
REPO_ROOT = Path(__file__).resolve().parents[1]


def _task(model: str) -> str:
    """The task of a MODEL argument, whatever its case (``Next-Purchase``, as a help text is copied)."""
    task = MODEL_NAMES.get(model.strip().casefold())
    if task is None:
        raise typer.BadParameter(f"MODEL must be churn, next-purchase or lead (got {model!r})", param_hint="MODEL")
    return task


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=code)


def _warn(message: str) -> None:
    typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)


@app.command("train")
def train_command(
    model: Annotated[str, typer.Argument(help="churn, next-purchase or lead")],
    config: ConfigOption,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Test cut-off T (default: from config).")] = None,
    metrics_out: Annotated[Path | None, typer.Option("--metrics-out", help="Write the metrics JSON here.")] = None,
    force_promote: Annotated[
        bool,
        typer.Option(
            "--force-promote/--no-force-promote",
            help="Make this version champion, better or not (default: only if it beats the champion).",
        ),
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="With --force-promote: why, kept with the promotion (crmscore models)."),
    ] = None,
) -> None:
    """Backtest with test cut-off T, calibrate, log to MLflow, register; promote to champion only if better."""
    from training.pyfunc import RegistryUnavailable
    from training.registry import check_reason
    from training.train import train_model

    task = _task(model)
    if reason and not force_promote:
        raise _fail("--reason explains a --force-promote; the gate gives its own reason")
    try:
        check_reason(reason)  # before the backtest, as promote does: the promotion tag keeps it whole
        cfg = load_config(config)
        # `mlflow run` passes an empty string for an unset parameter.
        result = train_model(
            cfg,
            task,
            test_cutoff=as_of or None,
            force_promote=force_promote,
            reason=reason or None,
            metrics_out=metrics_out or None,
            progress=_progress,
        )
    except (ConfigError, ValueError, RegistryUnavailable) as exc:
        raise _fail(str(exc)) from exc
    # The JSON is the output (pipe it, or use --metrics-out); the summary follows on stderr, so that it is
    # what a terminal shows last.
    typer.echo(json.dumps(result, indent=2, default=str))
    from training.train import summary_lines

    typer.echo("\n".join(summary_lines(result)), err=True)


def _progress(line: str) -> None:
    """A long command's step line, on stderr (stdout keeps its result)."""
    typer.echo(line, err=True)


def _write_batch_summary(path: Path, batch: Any, *, task: str, as_of: str) -> None:
    """``score --summary``: the run's findings as JSON, written atomically after the scores (a nightly
    job reads ``drift.max_psi`` or ``stale_warning`` instead of parsing the warnings it printed)."""
    from features.files import write_text_atomic
    from models.drift import drift_overview

    found = {
        "status": "ok",
        "task": task,
        "as_of": as_of,
        "out": str(batch.out),
        "rows": batch.rows,
        "model_name": batch.model_name,
        "model_version": batch.model_version,
        "data_until": batch.data_until,
        "population_shift": batch.population_shift,
        "settings_warning": batch.settings_warning,
        "stale_warning": batch.stale_warning,
        "history_warning": batch.history_warning,
        "drift": drift_overview(batch.drift),
        "warnings": batch.warnings,
    }
    write_text_atomic(path, json.dumps(found, indent=2, default=float))
    typer.echo(f"summary -> {path}")


def _write_failure_summary(path: Path | None, exc: BaseException, *, task: str, as_of: str, code: int) -> None:
    """``score --summary`` of a run that failed: ``status: failed`` with the exit code and the error, in place
    of an earlier run's summary a job would otherwise read as tonight's (nothing was scored; the output, if
    any, is the earlier run's, untouched). A summary that cannot be written either is said, not raised over
    the error itself."""
    from features.files import write_text_atomic

    if path is None:
        return
    if code == 128 + signal.SIGTERM and (isinstance(exc, SystemExit) or "signal" in _SIGNALLED):
        error = "stopped by a signal"
    elif isinstance(exc, KeyboardInterrupt) or _SIGNALLED.get("signal") == signal.SIGINT:
        error = "interrupted"
    elif isinstance(exc, SystemExit):
        error = f"exited with status {code}"
    else:
        error = str(exc) if code == 2 else f"{type(exc).__name__}: {exc}"
    found = {"status": "failed", "exit_code": code, "error": error, "task": task, "as_of": as_of}
    try:
        write_text_atomic(path, json.dumps(found, indent=2))
    except Exception as write_error:  # noqa: BLE001 - the run's own error is the one to report
        _warn(f"--summary {path} could not be written: {write_error}")


# The signal that stopped this process (SIGTERM, SIGINT), once :func:`_on_signal` has run.
_SIGNALLED: dict[str, int] = {}


def _on_signal(signum: int, _frame: Any) -> None:
    """SIGTERM (a scheduler's timeout, Airflow's kill) as an exit with 143, Ctrl-C as KeyboardInterrupt; which
    one is kept, since on Spark the exception raised inside py4j's socket read comes back as another
    (``Py4JError``, ``KeyError: 'p'``), which made a stopped run exit 1 with three tracebacks."""
    _SIGNALLED["signal"] = signum
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    sys.exit(128 + signum)


def _exit_code(exc: BaseException) -> int:
    """The status a process ends with on ``exc``: 128 + the signal's number when one stopped it (143 for
    SIGTERM, 130 for Ctrl-C, whatever exception it became), a SystemExit's own, 130 for Ctrl-C, else 1."""
    if "signal" in _SIGNALLED:
        return 128 + _SIGNALLED["signal"]
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else 1
    return 130 if isinstance(exc, KeyboardInterrupt) else 1


VersionOption = Annotated[
    str | None,
    typer.Option("--version", help="A registered version instead of the champion (crmscore models lists them)."),
]


@app.command("score")
def score_command(
    model: Annotated[str, typer.Argument(help="churn, next-purchase or lead")],
    config: ConfigOption,
    as_of: Annotated[str, typer.Option("--as-of", help="Score as of this date.")],
    # A str, not a Path: Path("s3a://bucket/x") would collapse the double slash.
    out: Annotated[str, typer.Option("--out", help="Parquet or CSV file; a Parquet folder with engine: spark.")],
    explain: Annotated[
        bool,
        typer.Option(
            "--explain/--no-explain",
            help="Add the top reasons per row, and the counter-reasons (what lowers the score).",
        ),
    ] = False,
    allow_empty: AllowEmptyOption = False,
    summary: Annotated[
        Path | None,
        typer.Option(
            "--summary",
            help="Also write what the run found as JSON (rows, the stale-export and short-history warnings, the "
            "feature drift), for the job that runs it to read.",
        ),
    ] = None,
    version: VersionOption = None,
) -> None:
    """Batch scores for the model's whole population with the champion (or --version), written atomically.

    Exit 2, writing nothing, when the population of the date is empty (a date outside the data, or an export that stopped), unless --allow-empty.

    The file is for systems: full-precision probabilities, and with --explain each row's reasons as JSON. For a list to read in a spreadsheet (reasons as sentences, figures truncated to 4 decimals, money to 2), use crmscore at-risk or crmscore top.
    """
    from features.files import OutputError, check_output
    from training.pyfunc import ChampionUnavailable

    task = _task(model)
    checked: Path | None = None  # the --summary path, once it is known to be one to write
    try:
        from features.timebase import normalize_as_of

        normalize_as_of(as_of)  # a malformed date is refused before the data is read
        if summary is not None:
            check_output(summary, suffixes=(".json",), option="--summary")
            checked = summary
        cfg = load_config(config)
        options = {"explain": explain, "allow_empty": allow_empty, "progress": _progress, "version": version or None}
        if cfg.engine == "spark":
            from serving.spark_batch import score_spark

            batch = score_spark(cfg, task, as_of=as_of, out_dir=out, **options)
        else:
            from training.score import score_batch

            batch = score_batch(cfg, task, as_of=as_of, out=out, **options)
    except (ConfigError, ValueError, ChampionUnavailable, OutputError) as exc:
        _write_failure_summary(checked, exc, task=task, as_of=as_of, code=2)
        raise _fail(str(exc)) from exc
    except BaseException as exc:  # an unforeseen error, Ctrl-C, SIGTERM: said in the summary, then raised
        _write_failure_summary(checked, exc, task=task, as_of=as_of, code=_exit_code(exc))
        if "signal" in _SIGNALLED:  # whatever py4j turned the signal's exit into: the signal's status, quietly
            raise SystemExit(_exit_code(exc)) from None
        raise
    for warning in batch.warnings:
        _warn(warning)
    typer.echo(f"scored {batch.rows:,} {task} rows as of {as_of} -> {out}")
    if summary is not None:
        _write_batch_summary(summary, batch, task=task, as_of=as_of)
    if batch.population_shift:
        typer.echo(
            f"probabilities anchored to the base rate of the model's latest training fold (log-odds shift "
            f"{batch.population_shift:+.2f} for the whole population): that fold's rate, not the months' since, "
            "until the model is retrained"
        )


@app.command("explain")
def explain_command(
    model: Annotated[str, typer.Argument(help="churn, next-purchase or lead")],
    config: ConfigOption,
    ids: Annotated[list[str], typer.Option("--id", help="customer_id or lead_id (repeat for several).")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="Default: the last row of the data.")] = None,
    k: Annotated[
        int | None, typer.Option("--k", min=0, max=20, help="Reasons each way (default: the model's).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="An earlier date: the customer's score then, and what raised and lowered it since (customers).",
        ),
    ] = None,
    version: VersionOption = None,
) -> None:
    """Why the champion gives these customers (or leads) their scores: reasons each way and the log-odds account.

    Exit 1 when an id is not in the population of the date (the others are still explained).
    """
    from training.explain import explain_ids, render
    from training.pyfunc import ChampionUnavailable

    task = _task(model)
    try:
        result = explain_ids(
            load_config(config), task, ids, as_of=as_of or None, k=k, since=since or None, version=version or None
        )
    except (ConfigError, ValueError, ChampionUnavailable) as exc:
        raise _fail(str(exc)) from exc
    for warning in result["warnings"]:
        _warn(warning)
    typer.echo(json.dumps(result, indent=2, default=str) if as_json else render(result))
    if any("error" in item for item in result["items"]):
        raise typer.Exit(1)


def _echo_table(table, key: str) -> None:
    """Print a per-date table without its ``error`` and ``warning`` columns, then those on stderr."""
    import pandas as pd

    shown = [c for c in table.columns if c not in ("error", "warning")]
    with pd.option_context("display.width", 250, "display.max_columns", None, "display.float_format", "{:.4g}".format):
        typer.echo(table[shown].to_string(index=False))
    for _, row in table[table["error"].notna()].iterrows():
        typer.secho(f"not evaluated: {row[key]}: {row['error']}", fg=typer.colors.YELLOW, err=True)
    if "warning" in table.columns:
        for _, row in table[table["warning"].notna()].iterrows():
            _warn(f"{row[key]}: {row['warning']}")


@app.command("backtest")
def backtest_command(
    model: Annotated[str, typer.Argument(help="churn, next-purchase or lead")],
    config: ConfigOption,
    start: Annotated[str, typer.Option("--from", help="First test cut-off.")],
    end: Annotated[str, typer.Option("--to", help="Last test cut-off.")],
    every: Annotated[str, typer.Option("--every", help="Pandas frequency of the cut-offs: MS, 30D, W-MON...")] = "MS",
    out: Annotated[Path | None, typer.Option("--out", help="Also write the table (CSV or Parquet).")] = None,
) -> None:
    """The training backtest at every test cut-off from --from to --to: one row per origin, nothing registered."""

    from features.files import check_output
    from training.origins import evaluate_origins, origin_dates
    from training.score import TABLE_SUFFIXES, write_atomic

    task = _task(model)
    try:
        cfg = load_config(config)
        if out is not None:
            check_output(out, suffixes=TABLE_SUFFIXES)
        origins = origin_dates(start, end, every)
        table = evaluate_origins(
            cfg, task, origins, progress=lambda i, n, c: typer.echo(f"[{i + 1}/{n}] test cut-off {c}", err=True)
        )
        if out is not None:
            write_atomic(table, out)
    except (ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    _echo_table(table, "test_cutoff")
    done = table[table["error"].isna()]
    if len(done):
        means = ", ".join(
            f"{c} {done[c].mean():.4f}"
            for c in ("roc_auc", "brier", "ece", "ece_without_anchor", "brier_without_anchor")
            if c in done.columns
        )
        typer.echo(f"{len(done)} of {len(table)} origins evaluated; means: {means}")
    else:
        raise _fail(f"none of the {len(table)} test cut-offs could be evaluated")
    if out is not None:
        typer.echo(f"wrote {len(table)} rows to {out}")


@app.command("monitor")
def monitor_command(
    model: Annotated[str, typer.Argument(help="churn, next-purchase or lead")],
    config: ConfigOption,
    start: Annotated[
        str | None, typer.Option("--from", help="First date (default: the champion's test cut-off).")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last date (default: the latest closed window).")] = None,
    every: Annotated[str, typer.Option("--every", help="Pandas frequency of the dates: MS, 30D, W-MON...")] = "MS",
    out: Annotated[Path | None, typer.Option("--out", help="Also write the table (CSV or Parquet).")] = None,
    max_auc_drop: Annotated[
        float | None,
        typer.Option(
            "--max-auc-drop", min=0.0, help="Exit 3 when an out-of-sample ROC AUC is this far below training."
        ),
    ] = None,
    version: VersionOption = None,
) -> None:
    """The champion's scores at past dates against what happened next: one row per date, nothing registered.

    Exit codes: 0 done, 2 bad input or nothing to evaluate, 3 a date fell more than --max-auc-drop below the champion's test ROC AUC (the table is printed and written first).
    """
    from features.files import check_output
    from training.monitor import monitor_champion
    from training.pyfunc import ChampionUnavailable
    from training.score import TABLE_SUFFIXES, write_atomic

    task = _task(model)
    try:
        cfg = load_config(config)
        if out is not None:
            check_output(out, suffixes=TABLE_SUFFIXES)
        # `mlflow run` passes an empty string for an unset parameter.
        table, info = monitor_champion(
            cfg,
            task,
            start=start or None,
            end=end or None,
            every=every,
            version=version or None,
            progress=lambda i, n, d: typer.echo(f"[{i + 1}/{n}] scoring as of {d}", err=True),
        )
        if out is not None:
            write_atomic(table, out)
    except (ConfigError, ValueError, ChampionUnavailable) as exc:
        raise _fail(str(exc)) from exc
    if info.get("settings_warning"):
        typer.echo(f"warning: {info['settings_warning']}", err=True)
    trained = info.get("metrics", {})
    typer.echo(
        f"{info['model_name']} version {info['version']} ({info.get('alias') or 'no alias'}), test cut-off "
        f"{info.get('test_cutoff')}: "
        f"ROC AUC {trained.get('roc_auc', float('nan')):.4f}, ECE {trained.get('ece', float('nan')):.4f} at training"
    )
    _echo_table(table, "as_of")
    done = table[table["error"].isna()]
    if done.empty:
        raise _fail(f"none of the {len(table)} dates could be evaluated")
    fresh = done[done["out_of_sample"].fillna(False).astype(bool)]
    if len(fresh):
        typer.echo(
            f"{len(fresh)} out-of-sample dates; mean ROC AUC {fresh['roc_auc'].mean():.4f}, "
            f"mean ECE {fresh['ece'].mean():.4f}, worst ROC AUC {fresh['roc_auc'].min():.4f} ({fresh.loc[fresh['roc_auc'].idxmin(), 'as_of']})"
        )
    if out is not None:
        typer.echo(f"wrote {len(table)} rows to {out}")
    if max_auc_drop is not None:
        fallen = fresh[fresh["roc_auc_change"].astype(float) < -max_auc_drop]
        if len(fallen):
            dates = ", ".join(f"{r.as_of} ({r.roc_auc:.4f})" for r in fallen.itertuples())
            raise _fail(
                f"ROC AUC more than {max_auc_drop} below the champion's {trained.get('roc_auc', float('nan')):.4f} "
                f"at {len(fallen)} of {len(fresh)} out-of-sample dates: {dates}; retrain or look at these dates",
                code=3,
            )


@app.command("models")
def models_command(
    config: ConfigOption,
    model: Annotated[str | None, typer.Argument(help="churn, next-purchase or lead (default: all three)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """The registered versions of each model, newest first: aliases, test cut-off, test metrics, the gate's reason."""
    from training.pyfunc import ChampionUnavailable
    from training.registry import list_versions, render_versions

    tasks = [_task(model)] if model else ["churn", "next_purchase", "lead"]
    try:
        cfg = load_config(config)
        listings = list_versions(cfg, tasks)
    except (ConfigError, ValueError, ChampionUnavailable) as exc:
        raise _fail(str(exc)) from exc
    for listing in listings:
        for warning in listing["warnings"]:  # an unreadable history tag: the rest is listed
            _warn(warning)
    if as_json:
        typer.echo(json.dumps(listings if model is None else listings[0], indent=2))
    else:
        typer.echo("\n\n".join(render_versions(listing) for listing in listings))


@app.command("promote")
def promote_command(
    model: Annotated[str, typer.Argument(help="churn, next-purchase or lead")],
    config: ConfigOption,
    version: Annotated[str, typer.Option("--version", help="The registered version to make champion (e.g. 3).")],
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Why, kept on the version (tag manual_promotion); at most 1,000 characters."),
    ] = None,
) -> None:
    """Make a registered version champion by hand: roll back, or overrule the gate. `crmscore models` lists them.

    The version's files are read first; a running `crmscore serve` switches on POST /reload.
    """
    from training.pyfunc import ChampionUnavailable
    from training.registry import check_reason, promote_version

    task = _task(model)
    try:
        check_reason(reason)  # before the config and the registry: nothing moves
        done = promote_version(load_config(config), task, version, reason=reason)
    except (ConfigError, ValueError, ChampionUnavailable) as exc:
        raise _fail(str(exc)) from exc
    for warning in done["warnings"]:
        _warn(warning)
    if not done["changed"]:
        typer.echo(f"{done['model_name']} v{done['version']} already is champion; nothing changed")
        return
    before = f"v{done['previous']}" if done["previous"] else "none"
    typer.echo(
        f"{done['model_name']}: champion is now v{done['version']} (was {before}); a running crmscore serve "
        "keeps the old one until POST /reload"
    )


SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="An earlier date (last week's list): each row also gets the same model's probability_then and "
        "tier_then, empty for a customer not in that date's population.",
    ),
]
WhereOption = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        help="ATTRIBUTE=VALUE (country=France), ATTRIBUTE!=VALUE, or a number compared with >, >=, <, <= "
        "(age>=40); repeat to combine: values of one attribute are alternatives (country=France "
        "--where country=Germany), everything else must hold.",
    ),
]
ExcludeOption = Annotated[
    Path | None,
    typer.Option(
        "--exclude",
        help="A suppression list never to list (opted out, already in a campaign): a CSV with a customer_id "
        "(lead_id) column, or one id per line.",
    ),
]


def _exclude_ids(path: Path | None, task: str) -> frozenset[str] | None:
    """The ids of ``--exclude`` for ``task``'s list, read before any scoring."""
    from features.pipeline import ENTITY
    from serving.lists import read_ids

    if path is None:
        return None
    try:
        return read_ids(path, ENTITY[task])
    except ValueError as exc:
        raise typer.BadParameter(str(exc).removeprefix("--exclude "), param_hint="--exclude") from exc


MovedUpOption = Annotated[
    bool,
    typer.Option(
        "--moved-up",
        help="With --since: only those in a higher tier than at that date (the newly at risk, the newly promising).",
    ),
]
PerOption = Annotated[
    str | None,
    typer.Option(
        "--per", help="An attribute (country, job...; or tier): the top N of each of its values, e.g. per sales region."
    ),
]


def _wrote(listed: Any, out: Path, per: str | None, what: str, each: int) -> str:
    """The summary line of a list command, with the scoring date (by default the data's last row);
    with ``per``, the ``each`` (--top) of each value."""
    from features.timebase import normalize_as_of

    top = f"the top {len(listed.rows):,}"
    if per is not None:
        groups = {row.get(per, (row.get("attributes") or {}).get(per)) for row in listed.rows}
        top = f"{len(listed.rows):,} rows, the top {each:,} of each of {len(groups):,} {per} values,"
    when = f" as of {normalize_as_of(listed.as_of):%Y-%m-%d %H:%M}" if listed.as_of is not None else ""
    return f"wrote {top} of {listed.matched:,} {what}{when} to {out}"


# ATTRIBUTE, then the first operator: a value may hold any character ("a=b" is attribute a, value "b").
_WHERE = re.compile(r"^\s*([^=!<>\s][^=!<>]*?)\s*(!=|>=|<=|=|>|<)\s*(.*?)\s*$")


def _where_filters(where: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``--where`` options as the lists' ``where`` mapping (attribute -> {operator: operand}, as
    ``serving.lists.conditions`` reads it): the values of ``=`` (and of ``!=``) of one attribute
    are a list; a comparison given twice for one attribute is refused."""
    filters: dict[str, dict[str, Any]] = {}
    for item in where or ():
        match = _WHERE.match(item)
        if match is None:
            raise typer.BadParameter(
                f"expected ATTRIBUTE=VALUE, ATTRIBUTE!=VALUE or ATTRIBUTE>=NUMBER (>, <, <=), got {item!r}",
                param_hint="--where",
            )
        name, op, value = match.groups()
        if value.startswith("="):  # `country==France` listed no one, for the value '=France', and exited 0
            raise typer.BadParameter(
                f"{item!r} gives {name} the value {value!r}: write ATTRIBUTE=VALUE, one '=' ({name}{op}{value[1:]})",
                param_hint="--where",
            )
        wanted = filters.setdefault(name, {})
        if op in ("=", "!="):
            wanted.setdefault(op, []).append(value)
        elif op in wanted:
            raise typer.BadParameter(f"{name}{op} given twice ({item!r})", param_hint="--where")
        else:
            wanted[op] = value
    return filters


# The fields of the lists' messages (the API's names) and the options of the list commands that give them.
_LIST_OPTIONS = {"tiers": "--tier", "min_value": "--min-value", "top": "--top", "per": "--per", "as_of": "--as-of"}


def _list_error(exc: Exception) -> typer.Exit:
    """A list command's error naming its option where the message names the API's field: `--tier hi` was
    refused as `tiers: unknown tier`, `--as-of 09/12/2011` as `as_of: ...`."""
    text = str(exc)
    field = text.split(": ", 1)[0]
    return _fail(_LIST_OPTIONS[field] + text[len(field) :] if field in _LIST_OPTIONS else text)


@app.command("at-risk")
def at_risk_command(
    config: ConfigOption,
    out: CsvOutOption,
    top: Annotated[int, typer.Option("--top", min=1, help="How many customers.")] = 100,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Default: the last transaction date.")] = None,
    tier: Annotated[
        list[str] | None, typer.Option("--tier", help="Keep this risk tier (repeat for several): high, medium...")
    ] = None,
    min_value: Annotated[
        float | None, typer.Option("--min-value", help="Keep a value at risk of at least this.")
    ] = None,
    where: WhereOption = None,
    counter_reasons: CounterReasonsOption = 1,
    allow_empty: AllowEmptyOption = False,
    since: SinceOption = None,
    exclude: ExcludeOption = None,
    per: PerOption = None,
    moved_up: MovedUpOption = False,
) -> None:
    """Top N customers by value at risk (P(churn) x expected spend), with reasons; no server needed.

    Exit 2, writing nothing, when the churn population of the date is empty, unless --allow-empty.
    """
    from serving.at_risk import at_risk_list
    from training.pyfunc import ChampionUnavailable

    filters, excluded = _where_filters(where), _exclude_ids(exclude, "churn")
    try:
        cfg = load_config(config)
        listed = at_risk_list(
            cfg,
            top=top,
            as_of=as_of or None,
            out=out,
            tiers=tier or None,
            min_value=min_value,
            where=filters or None,
            counter_k=counter_reasons,
            allow_empty=allow_empty,
            since=since or None,
            exclude=excluded,
            per=per,
            moved_up=moved_up,
        )
    except (ConfigError, ValueError, ChampionUnavailable) as exc:
        raise _list_error(exc) from exc
    for warning in listed.warnings:
        _warn(warning)
    typer.echo(_wrote(listed, out, per, "customers by value at risk", top))
    _list_notes(listed)


def _list_notes(listed: Any) -> None:
    """What a list command says after its summary line: the suppression list's and --since's notes."""
    for note in (listed.exclude_note, listed.since_note):
        if note:
            typer.echo(note)


@app.command("top")
def top_command(
    model: Annotated[str, typer.Argument(help="next-purchase (by expected value) or lead (by P(convert))")],
    config: ConfigOption,
    out: CsvOutOption,
    top: Annotated[int, typer.Option("--top", min=1, help="How many customers or leads.")] = 100,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Default: the data's last row.")] = None,
    tier: Annotated[
        list[str] | None, typer.Option("--tier", help="Keep this tier or grade (repeat for several): A, B...")
    ] = None,
    min_value: Annotated[
        float | None,
        typer.Option(
            "--min-value", help="Keep an expected value (next-purchase) or P(convert) (lead) of at least this."
        ),
    ] = None,
    where: WhereOption = None,
    counter_reasons: CounterReasonsOption = 1,
    allow_empty: AllowEmptyOption = False,
    since: SinceOption = None,
    exclude: ExcludeOption = None,
    per: PerOption = None,
    moved_up: MovedUpOption = False,
) -> None:
    """The best prospects with their reasons, for a campaign or a sales team: customers by expected value over the horizon (next purchase), or open leads by P(convert); no server needed.

    Churn's list, by value at risk, is `crmscore at-risk`. Exit 2, writing nothing, when the population of the date is empty, unless --allow-empty.
    """
    from serving.top import top_list
    from training.pyfunc import ChampionUnavailable

    task = _task(model)
    filters = _where_filters(where)
    excluded = _exclude_ids(exclude, task)
    try:
        listed = top_list(
            load_config(config),
            task,
            top=top,
            out=out,
            as_of=as_of or None,
            tiers=tier or None,
            min_value=min_value,
            where=filters or None,
            counter_k=counter_reasons,
            allow_empty=allow_empty,
            since=since or None,
            exclude=excluded,
            per=per,
            moved_up=moved_up,
        )
    except (ConfigError, ValueError, ChampionUnavailable) as exc:
        raise _list_error(exc) from exc
    for warning in listed.warnings:
        _warn(warning)
    typer.echo(_wrote(listed, out, per, f"by {listed.ranked_by.replace('_', ' ')}", top))
    _list_notes(listed)


def with_workers(overrides: str | None, workers: int | str) -> str:
    """BentoML's ``BENTOML_CONFIG_OVERRIDES`` (JSON, or None) with the service's worker count set,
    and whatever else it overrides kept.

    Raises
    ------
    ValueError
        ``overrides`` is not a JSON object; the message names the variable.
    """
    try:
        merged = json.loads(overrides or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"BENTOML_CONFIG_OVERRIDES is not JSON ({exc}), so --workers cannot be added to it") from exc
    if not isinstance(merged, dict):
        raise ValueError("BENTOML_CONFIG_OVERRIDES is not a JSON object, so --workers cannot be added to it")
    merged.setdefault("services", {}).setdefault("crmscore", {})["workers"] = workers
    return json.dumps(merged)


def _stop_with_parent(parent: int) -> None:
    """In BentoML's server process, before it runs: SIGTERM when crmscore serve dies, even by SIGKILL (an
    OOM kill, a supervisor's last resort), which no handler sees; BentoML stops its workers on SIGTERM.
    Before, the server and its workers ran on, still answering on the port and blocking a restart. Linux
    only (prctl PR_SET_PDEATHSIG); elsewhere nothing changes."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the request took hold
        os._exit(1)


@app.command("serve")
def serve_command(
    config: ConfigOption,
    port: Annotated[int | None, typer.Option("--port", help="Default: serving.port of the config.")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Default: serving.host (loopback).")] = None,
    workers: Annotated[
        str | None,
        typer.Option(
            "--workers",
            help="Worker processes, each with its own models: a number, or cpu_count. Default: serving.workers.",
        ),
    ] = None,
) -> None:
    """Run the BentoML scoring API on the champion models."""
    from serving.auth import AuthConfigError, load_keys

    try:
        cfg = load_config(config)
        if workers is not None:  # checked by the config's own rule
            count = int(workers) if workers.strip().isdigit() else workers
            ServingConfig.model_validate({**cfg.serving.model_dump(), "workers": count})
        # Here, before BentoML: a worker that fails at start is started again and again, and the server
        # neither answers nor exits (a process manager sees it running).
        keys = load_keys(cfg)
    except (ConfigError, AuthConfigError) as exc:
        raise _fail(str(exc)) from exc
    except ValidationError as exc:
        raise _fail(f"--workers {workers}: {exc.errors()[0]['msg']}") from exc
    if not len(keys):
        _warn(
            f"no API keys: environment variable {cfg.serving.api_keys_env} is empty and serving.api_keys_file is "
            "not set, so every scoring route answers 401 (keys are key:role, separated by commas or new lines; "
            "roles scorer, marketer, admin)"
        )
    env = {
        **os.environ,
        "CRMSCORE_CONFIG": str(Path(config).resolve()),
        # The service works in the caller's folder: a relative tracking_uri, output_dir and snapshot
        # paths resolve against it, as they do for every other command.
        "CRMSCORE_WORKDIR": os.getcwd(),
        "BENTOML_DO_NOT_TRACK": "true",
        # One OpenMP thread per LightGBM predict: a single-row score takes 0.08 ms with one thread, but
        # with OpenMP's default (all cores) each predict waits at a barrier for threads the kernel may
        # have descheduled: measured 18 ms per single-row score on 2 busy cores.
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    # BentoML empties its Prometheus folder (<BENTOML_HOME>/prometheus_multiproc_dir) at every start, so
    # a second server on the host wiped the first one's /metrics counters: each server gets a BentoML
    # home of its own (it serves from the MLflow registry and uses nothing of BentoML's store), unless
    # BENTOML_HOME says where BentoML's home is.
    if workers is not None:
        try:
            env["BENTOML_CONFIG_OVERRIDES"] = with_workers(os.environ.get("BENTOML_CONFIG_OVERRIDES"), count)
        except ValueError as exc:
            raise _fail(str(exc)) from exc
    home = None if os.environ.get("BENTOML_HOME") else Path(tempfile.mkdtemp(prefix="crmscore-serve-"))
    if home is not None:
        env["BENTOML_HOME"] = str(home)
    bentoml = Path(sys.executable).with_name("bentoml")
    command = [
        str(bentoml),
        "serve",
        "serving.service:CrmScore",
        "--host",
        host or cfg.serving.host,
        "--port",
        str(port or cfg.serving.port),
        # BentoML imports the service from its working directory, ahead of the installed packages: from
        # the caller's folder, a folder there named serving, models, features or training (a user's
        # project, an older checkout of crmscore) was imported in place of crmscore's own code.
        "--working-dir",
        str(REPO_ROOT),
    ]
    from serving.launch import stop_process
    from serving.workers import ReloadChannel

    # Stopped by a signal (a process manager's SIGTERM), still remove the home: the server gets the
    # signal with its process group, or is killed here on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    parent = os.getpid()
    server = subprocess.Popen(command, env=env, preexec_fn=lambda: _stop_with_parent(parent))  # noqa: PLW1509
    try:
        code = server.wait()
    finally:
        # BentoML's workers run in sessions of their own, which the group's signal does not reach: killing the
        # server at once, as the SIGTERM handler's exit used to, left them running as orphans on the port.
        stop_process(server, group=False)
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(ReloadChannel.folder_of(server.pid), ignore_errors=True)  # its workers' reload channel
    raise typer.Exit(code)


@app.command("demo")
def demo_command(
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where outputs go.")] = Path("outputs"),
    retail_config: Annotated[Path, typer.Option("--retail-config")] = REPO_ROOT / "configs" / "online_retail.yaml",
    leads_config: Annotated[Path, typer.Option("--leads-config")] = REPO_ROOT / "configs" / "bank_leads.yaml",
) -> None:
    """Everything end to end on the bundled data: validate, features, train, score, at-risk list, reports."""
    from serving.demo import run_demo

    started = time.monotonic()
    try:
        summary = run_demo(retail_config=retail_config, leads_config=leads_config, out_dir=out_dir, echo=typer.echo)
    except (ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"\ndemo finished in {dt.timedelta(seconds=round(time.monotonic() - started))}")
    for line in summary:
        typer.echo(line)


def main() -> None:  # console entry point
    # Progress bars of artifact downloads would interleave with the commands' own progress lines.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    # SIGTERM (a scheduler's timeout, Airflow's kill) as an exit: the temporary file of an output being
    # written is removed, and an MLflow run is ended as FAILED, where the signal's default left both behind
    # (a hidden .tmp beside the output, a run RUNNING forever). serve sets its own handler.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        app()
    except Exception as exc:
        if "signal" in _SIGNALLED:
            raise SystemExit(128 + _SIGNALLED["signal"]) from None
        said = registry_database_error(exc)
        if said is None:
            raise
        typer.secho(f"error: {said}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None


def registry_database_error(exc: BaseException) -> str | None:
    """The sentence for an error of the registry's database (SQLite locked by another job, read-only), or
    None for any other error. Any command that reads or writes the registry met it as ~100 lines of
    SQLAlchemy traceback with exit 1, which a scheduler cannot tell from a crash."""
    text = next((str(e) for e in _chain(exc) if type(e).__name__ == "OperationalError"), None)
    if text is None:
        return None
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if "locked" in first:
        return f"the MLflow registry's database is locked by another process ({first}); retry when it is done"
    if "readonly" in first or "read-only" in first:
        return f"the MLflow registry's database cannot be written ({first}); make it writable"
    return f"the MLflow registry's database failed: {first}"


def _chain(exc: BaseException):
    """``exc`` and the exceptions it was raised from or during, once each."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__
