"""``crmscore demo``: the whole product on the bundled data, one step after another.

Validate both bundled configs, write the feature snapshots the API serves from,
train the three models (MLflow tracking and registry), score everyone, write the
at-risk list and an HTML report per model. Each step says what it did.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from features.config import Config, load_config
from features.sources import CanonicalTables, load_tables

__all__ = ["run_demo"]


def _step(echo: Callable[[str], None], title: str) -> float:
    echo(f"\n== {title}")
    return time.monotonic()


def _latest_date(tables: CanonicalTables, table: str, column: str) -> str:
    report = tables.reports[table]
    return str(report.date_max.date()) if report.date_max is not None else ""


def run_demo(
    *, retail_config: Path, leads_config: Path, out_dir: Path, echo: Callable[[str], None] = print
) -> list[str]:
    """Run every step on the bundled data and return summary lines.

    Parameters
    ----------
    retail_config, leads_config
        The transactions config (churn, next purchase) and the leads config.
    out_dir
        Folder for snapshots, metrics, scores, reports and the at-risk list.
    echo
        Where progress goes.
    """
    from features.pipeline import write_snapshot

    out_dir.mkdir(parents=True, exist_ok=True)
    configs: dict[str, Config] = {"retail": load_config(retail_config), "leads": load_config(leads_config)}
    summary: list[str] = []

    tables: dict[str, CanonicalTables] = {}
    for key, config in configs.items():
        t0 = _step(echo, f"validate {config.name}")
        tables[key] = load_tables(config)
        for report in tables[key].reports.values():
            echo("\n".join(report.lines()))
        echo(f"   ({time.monotonic() - t0:.1f}s)")

    snapshots = out_dir / "snapshots"
    jobs = [
        ("retail", "churn", "transactions", "timestamp"),
        ("retail", "next_purchase", "transactions", "timestamp"),
        ("leads", "lead", "leads", "created_at"),
    ]
    for key, task, table, column in jobs:
        as_of = _latest_date(tables[key], table, column)
        t0 = _step(echo, f"features: {task} snapshot as of {as_of}")
        path = snapshots / f"{task}.parquet"
        rows = write_snapshot(configs[key], as_of=as_of, out=path, task=task)
        echo(f"   wrote {rows:,} rows to {path} ({time.monotonic() - t0:.1f}s)")
        summary.append(f"snapshot {task}: {rows:,} rows as of {as_of} -> {path}")

    (out_dir / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
