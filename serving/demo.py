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
from features.files import write_text_atomic
from features.sources import CanonicalTables, load_tables

__all__ = ["run_demo"]


def _step(echo: Callable[[str], None], title: str) -> float:
    echo(f"\n== {title}")
    return time.monotonic()


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
    overrides = {"output_dir": str(out_dir)}
    configs: dict[str, Config] = {
        "retail": load_config(retail_config, overrides=overrides),
        "leads": load_config(leads_config, overrides=overrides),
    }
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
        ("retail", "churn", "transactions"),
        ("retail", "next_purchase", "transactions"),
        ("leads", "lead", "leads"),
    ]
    for key, task, table in jobs:
        as_of = tables[key].last_timestamp(table)
        t0 = _step(echo, f"features: {task} snapshot as of {as_of}")
        path = snapshots / f"{task}.parquet"
        rows = write_snapshot(configs[key], as_of=as_of, out=path, task=task)
        echo(f"   wrote {rows:,} rows to {path} ({time.monotonic() - t0:.1f}s)")
        summary.append(f"snapshot {task}: {rows:,} rows as of {as_of} -> {path}")

    from serving.at_risk import at_risk_list
    from training.monitor import monitor_champion
    from training.score import score_batch, write_atomic
    from training.train import summary_lines, train_model

    metrics_dir = out_dir / "metrics"
    for key, task, _ in jobs:
        _step(echo, f"train {task} (rolling-origin backtest, calibration, baselines, MLflow)")
        result = train_model(
            configs[key],
            task,
            tables=tables[key],
            metrics_out=metrics_dir / f"{task}.json",
            progress=lambda line: echo(f"   {line}"),
        )
        for line in summary_lines(result):  # the time is in train_model's last progress line
            echo(f"   {line}")
        metrics = result["metrics"]
        summary.append(
            f"{task}: ROC AUC {metrics.get('roc_auc', float('nan')):.3f}, ECE {metrics.get('ece', float('nan')):.3f}, "
            f"grade {result['grade']}, report {result.get('report')}"
        )

    for key, task, table in jobs:
        as_of = tables[key].last_timestamp(table)
        t0 = _step(echo, f"score {task}: everyone as of {as_of}, with reasons")
        path = out_dir / "scores" / f"{task}.parquet"
        batch = score_batch(configs[key], task, as_of=as_of, out=path, explain=True, tables=tables[key])
        echo(f"   {batch.rows:,} rows -> {path} ({time.monotonic() - t0:.1f}s)")
        for warning in batch.warnings:
            echo(f"   warning: {warning}")
        summary.append(f"scores {task}: {batch.rows:,} rows -> {path}")

    # Only the leads run on past their test cut-off (the retail data ends 90 days after it).
    t0 = _step(echo, "monitor lead: the champion against the outcomes of every month since its test cut-off")
    path = out_dir / "monitor" / "lead.csv"
    table, info = monitor_champion(configs["leads"], "lead", tables=tables["leads"])
    write_atomic(table, path)
    done = table[table["error"].isna()]
    echo(
        f"   {len(done)} months: ROC AUC {done['roc_auc'].min():.3f}-{done['roc_auc'].max():.3f} (mean {done['roc_auc'].mean():.3f}), "
        f"ECE {done['ece'].min():.3f}-{done['ece'].max():.3f} (mean {done['ece'].mean():.3f}); "
        f"at training {info['metrics']['roc_auc']:.3f} / {info['metrics']['ece']:.3f} ({time.monotonic() - t0:.1f}s)"
    )
    summary.append(f"monitor lead: {len(done)} months, mean ROC AUC {done['roc_auc'].mean():.3f} -> {path}")

    t0 = _step(echo, "at-risk list: top 100 customers by value at risk, with reasons")
    path = out_dir / "at_risk.csv"
    listed = at_risk_list(configs["retail"], top=100, out=path, tables=tables["retail"])
    rows = listed.rows
    for warning in listed.warnings:
        echo(f"   warning: {warning}")
    for row in rows[:3]:
        # The strongest reason each way: what raises the risk, and what keeps it from being higher.
        texts = [r[0]["text"] for r in (row["reasons"], row["counter_reasons"]) if r]
        echo(
            f"   {row['customer_id']}: P(churn) {row['probability']:.2f}, value at risk {row['value_at_risk']:,.0f}; "
            + "; ".join(texts)
        )
    echo(f"   {len(rows)} rows -> {path} ({time.monotonic() - t0:.1f}s)")
    summary.append(f"at-risk list: {len(rows)} customers -> {path}")

    write_text_atomic(out_dir / "demo_summary.json", json.dumps(summary, indent=2))
    return summary
