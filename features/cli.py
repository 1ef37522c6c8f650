"""Commands owned by the features package: ``crmscore validate`` and ``crmscore features``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from features.config import Config, ConfigError, load_config
from features.files import OutputError, check_output, write_text_atomic
from features.sources import CanonicalTables, ContractError, load_tables

__all__ = ["features_command", "validate_command", "validate_config"]

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="YAML config mapping your tables.")]


JsonOption = Annotated[Path | None, typer.Option("--json", help="Also write the summary as JSON.")]
AllowEmptyOption = Annotated[
    bool, typer.Option("--allow-empty", help="Write an empty output when the population of the date is empty.")
]


def validate_config(
    config: Path, json_out: Path | None = None, *, checks: Sequence[Callable[[Config], None]] = ()
) -> None:
    """What ``crmscore validate`` does: the config, then ``checks``, then every table against the contract.

    ``checks`` are the outer packages' checks of their own config sections (the models' LightGBM
    overrides), run before the tables are read; each raises ``ValueError`` naming the field. The
    summary is printed, and with ``json_out`` written (atomically; the path is checked first).
    """
    try:
        if json_out is not None:
            check_output(json_out, suffixes=(".json",), option="--json")
        cfg = load_config(config)
        for check in checks:
            check(cfg)
        tables = load_tables(cfg)
    except OutputError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from exc
    except (ConfigError, ContractError, ValueError) as exc:
        typer.secho(f"contract error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from exc
    for report in tables.reports.values():
        typer.echo("\n".join(report.lines()))
    data_warnings = [*tables.date_tail_warnings(), *tables.id_match_warnings(), *tables.case_variant_warnings()]
    for warning in [*data_warnings, *_test_cutoff_warnings(cfg, tables)]:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    if json_out is not None:
        write_text_atomic(
            json_out, json.dumps({k: r.to_dict() for k, r in tables.reports.items()}, indent=2, default=str)
        )
    typer.echo("contract: OK")


def _test_cutoff_warnings(cfg: Config, tables: CanonicalTables) -> list[str]:
    """Each model's ``test_cutoff`` whose label window the data does not cover, as ``train`` would
    refuse it (a cut-off after the data, or a horizon longer than it), or that comes before the
    data's first row (nothing to train on): said by validate, which passed such a config that
    train then refused."""
    from features.labels import MAIN_TABLE, check_window_observed, data_span
    from features.timebase import normalize_as_of

    said = []
    for task, table in MAIN_TABLE.items():
        mc = getattr(cfg.models, task)
        if getattr(tables, table) is None or mc.test_cutoff is None:
            continue
        _, since, _ = data_span(tables, task)
        if since is not None and normalize_as_of(mc.test_cutoff) <= since:
            said.append(
                f"models.{task}.test_cutoff {mc.test_cutoff}: train would refuse it: it is not after the first row "
                f"of table '{table}' ({since:%Y-%m-%d %H:%M}), so there is no history to train on"
            )
            continue
        try:
            check_window_observed(tables, task, as_of=mc.test_cutoff, horizon_days=mc.horizon_days)
        except ValueError as exc:
            said.append(f"models.{task}.test_cutoff {mc.test_cutoff}: train would refuse it: {exc}")
    return said


def validate_command(config: ConfigOption, json_out: JsonOption = None) -> None:
    """Print a data-quality summary per table; exit non-zero on a contract error."""
    validate_config(config, json_out)


def features_command(
    config: ConfigOption,
    as_of: Annotated[str, typer.Option("--as-of", help="Cut-off date (YYYY-MM-DD): only events up to it are used.")],
    out: Annotated[Path | None, typer.Option("--out", help="Parquet file to write.")] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="churn, next_purchase or lead: that model's population.")
    ] = None,
    snapshots: Annotated[
        bool,
        typer.Option(
            "--snapshots",
            help="Instead of --out: the API's snapshots, <task>.parquet in its snapshot folder (serving.snapshot_path, "
            "else <output_dir>/snapshots), of --task or of every task the tables serve; all written or none.",
        ),
    ] = False,
    allow_empty: AllowEmptyOption = False,
) -> None:
    """Write the feature table for one cut-off (the snapshot the API looks customers up in).

    Exit 2, writing nothing, when the population of the date is empty, unless --allow-empty.
    """
    from features.labels import stale_warning
    from features.pipeline import write_snapshot, write_snapshots
    from features.timebase import as_of_text, normalize_as_of

    if (out is None) == (not snapshots):
        typer.secho("error: give --out FILE or --snapshots (not both)", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2)
    try:
        cfg = load_config(config)
        if out is not None:
            check_output(out, suffixes=(".parquet", ".pq"))  # before the tables are read, as ever
        tables = load_tables(cfg)
        options = {"as_of": as_of, "allow_empty": allow_empty, "tables": tables}
        if snapshots:
            written = write_snapshots(cfg, tasks=[task] if task else None, **options)
        else:
            written = {task: (out, write_snapshot(cfg, out=out, task=task, **options))}
    except (ConfigError, ContractError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from exc
    # An export that stopped arriving: the features are still written (as score's scores), and said to be old.
    for warning in dict.fromkeys(w for name in written if (w := stale_warning(tables, name or "churn", as_of))):
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    moment = normalize_as_of(as_of)
    for name, (path, rows) in written.items():
        typer.echo(f"wrote {rows:,} rows as of {as_of_text(moment)} to {path}" + (f" ({name})" if snapshots else ""))
    for note in dict.fromkeys(_later_rows_note(tables, name or "churn", moment) for name in written):
        if note:
            typer.echo(note)


def _later_rows_note(tables: CanonicalTables, task: str, moment: Any) -> str | None:
    """How many rows of ``task``'s main table come after the cut-off, left out of the features: a date is
    midnight at its start, so ``--as-of 2011-12-10`` left that day's own rows out without a word (a new
    customer of the day was then unknown to the API)."""
    from features.labels import MAIN_TABLE
    from features.sources import TIME_COLUMN

    table = MAIN_TABLE[task]
    rows = getattr(tables, table)
    if rows is None:
        return None
    later = int(rows.filter(rows[TIME_COLUMN[table]] > moment).count().execute())
    if not later:
        return None
    return (
        f"note: {later:,} rows of table '{table}' are after {moment:%Y-%m-%d %H:%M} and not in these features "
        "(a date is midnight at its start: give a time of day, or the next day, for the day's own rows)"
    )
