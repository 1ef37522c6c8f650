"""Commands owned by the features package: ``crmscore validate`` and ``crmscore features``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from features.config import ConfigError, load_config
from features.sources import ContractError, load_tables

__all__ = ["features_command", "validate_command"]

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="YAML config mapping your tables.")]


def validate_command(
    config: ConfigOption,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the summary as JSON.")] = None,
) -> None:
    """Print a data-quality summary per table; exit non-zero on a contract error."""
    try:
        cfg = load_config(config)
        tables = load_tables(cfg)
    except (ConfigError, ContractError) as exc:
        typer.secho(f"contract error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from exc
    for report in tables.reports.values():
        typer.echo("\n".join(report.lines()))
    if json_out is not None:
        json_out.write_text(json.dumps({k: r.to_dict() for k, r in tables.reports.items()}, indent=2, default=str))
    typer.echo("contract: OK")


def features_command(
    config: ConfigOption,
    as_of: Annotated[str, typer.Option("--as-of", help="Cut-off date (YYYY-MM-DD): only events up to it are used.")],
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
    task: Annotated[
        str | None, typer.Option("--task", help="churn, next_purchase or lead: that model's population.")
    ] = None,
) -> None:
    """Write the feature table for one cut-off (the snapshot the API looks customers up in)."""
    from features.pipeline import write_snapshot

    try:
        cfg = load_config(config)
        rows = write_snapshot(cfg, as_of=as_of, out=out, task=task)
    except (ConfigError, ContractError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(f"wrote {rows:,} rows as of {as_of} to {out}")
