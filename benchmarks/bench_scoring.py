"""Scoring with reasons for every customer, against ``shap.TreeExplainer`` on the same booster; training times.

``run()`` trains the three models on the bundled data (backtest only, no MLflow), then scores
the whole churn population at the data's last day twice in the same process:

- crmscore: ``Scorer.prepare`` + ``Scorer.score_matrix(explain=True)`` (LightGBM's native
  TreeSHAP through ``pred_contrib``, calibrated probabilities, tiers, value at risk and the
  top-3 reason sentences), and again with 3 counter-reasons as well (what ``crmscore score
  --explain`` writes);
- baseline: ``shap.TreeExplainer`` on the same tree models and matrices: the booster's SHAP values
  of ``X`` and, for a churn model with its weekly hazard head, the head's of each week's matrix
  (SHAP values only: no chaining of the weeks, no probabilities, no sentences). The booster's
  alone is reported too.

Each timing is the best of ``repeats`` runs. ``quick`` trains churn only and scores 1,000 rows.

``snapshot_load``: how soon the API serves a large snapshot. The churn population replicated
``copies`` times with suffixed ids (SYNTHETIC: 12 x 4,273 = 51,276 customers, a property the bundled
data lacks) is loaded as the service loads it (``serving.runtime.load_snapshot`` and the lists'
frame, one OpenMP thread as ``crmscore serve`` runs): against the baseline, the same load followed
by every row's SHAP values (what a load did before it left them to a background pass).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCORE_AS_OF = "2011-12-09"


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _snapshot_load(scorer: Any, population: Any, *, copies: int) -> dict[str, Any]:
    """Seconds until a replicated snapshot is served, and until its SHAP values are all computed."""
    import tempfile

    import pandas as pd
    from threadpoolctl import threadpool_limits

    from serving.runtime import TaskModel, _list_frame, load_snapshot

    frame = pd.concat(
        [population.assign(customer_id=population.customer_id.astype(str) + f"-{i}") for i in range(copies)],
        ignore_index=True,
    ).assign(as_of=pd.Timestamp(SCORE_AS_OF))
    with tempfile.TemporaryDirectory(prefix="bench_snapshot_") as tmp, threadpool_limits(1, user_api="openmp"):
        path = Path(tmp) / "churn.parquet"
        frame.to_parquet(path)
        start = time.perf_counter()
        snapshot = load_snapshot(path, scorer)
        _list_frame(TaskModel(task="churn", scorer=scorer, info={}, snapshot=snapshot))
        served = time.perf_counter() - start
        snapshot.contrib.fill()
        explained = time.perf_counter() - start
    return {
        "rows": len(frame),
        "synthetic": f"the churn population at {SCORE_AS_OF} replicated {copies} times with suffixed ids",
        "served_after_s": round(served, 2),
        "every_shap_value_after_s": round(explained, 2),
        "speedup_to_serve_vs_computing_every_shap_value_first": round(explained / served, 1),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Time training of each model and batch scoring with reasons vs ``shap.TreeExplainer``."""
    import shap

    from features.config import load_config
    from features.pipeline import population_features
    from features.sources import load_tables
    from training.backtest import run_backtest
    from training.train import backtest_inputs

    retail = load_config(ROOT / "configs" / "online_retail.yaml")
    leads = load_config(ROOT / "configs" / "bank_leads.yaml")
    retail_tables = load_tables(retail)
    transactions = retail_tables.transactions.select("customer_id", "timestamp", "amount").to_pandas()
    tasks = ["churn"] if quick else ["churn", "next_purchase", "lead"]
    training: dict[str, dict[str, float]] = {}
    scorers = {}
    for task in tasks:
        config = leads if task == "lead" else retail
        tables = load_tables(leads) if task == "lead" else retail_tables
        start = time.perf_counter()
        spec, ts, _ = backtest_inputs(config, task, tables)
        features_s = time.perf_counter() - start
        result = run_backtest(ts, spec, transactions=None if task == "lead" else transactions)
        training[task] = {
            "features_s": round(features_s, 2),
            "fit_s": round(result.timings["fit_total_s"], 2),
            "backtest_with_baselines_s": round(time.perf_counter() - start - features_s, 2),
            "rows": result.n_train,
            "roc_auc": round(result.metrics["roc_auc"], 4),
        }
        scorers[task] = result.scorer

    scorer = scorers["churn"]
    population = population_features(retail_tables, "churn", as_of=SCORE_AS_OF, model_config=retail.models.churn)
    if quick:
        population = population.head(1000)
    repeats = 2 if quick else 3
    X = scorer.prepare(population)
    ours = _best(lambda: scorer.score_matrix(scorer.prepare(population), k=3, explain=True, as_of=SCORE_AS_OF), repeats)
    # What `crmscore score --explain` writes: 3 reasons and 3 counter-reasons per customer.
    both = _best(
        lambda: scorer.score_matrix(scorer.prepare(population), k=3, counter_k=3, explain=True, as_of=SCORE_AS_OF),
        repeats,
    )
    explainer = shap.TreeExplainer(scorer.booster)
    booster_only = _best(lambda: explainer.shap_values(X), repeats)
    hazard = getattr(scorer, "hazard", None)
    if hazard is not None:
        weekly = list(hazard.week_matrices(X, SCORE_AS_OF))
        hazard_explainer = shap.TreeExplainer(hazard.booster)

        def every_tree_model() -> None:
            explainer.shap_values(X)
            for design in weekly:
                hazard_explainer.shap_values(design)

        theirs = _best(every_tree_model, repeats)
    else:
        theirs = booster_only
    # Same SHAP values: LightGBM's pred_contrib and shap's TreeExplainer agree on the raw scale.
    native = scorer.booster.predict(X, pred_contrib=True, num_iteration=scorer.num_iteration)[:, :-1]
    reference = np.asarray(explainer.shap_values(X))
    return {
        "snapshot_load": _snapshot_load(scorer, population, copies=2 if quick else 12),
        "rows_scored": int(len(X)),
        "crmscore_score_with_reasons_s": round(ours, 4),
        "shap_tree_explainer_s": round(theirs, 4),
        "shap_tree_explainer_booster_only_s": round(booster_only, 4),
        "hazard_head": hazard is not None,
        "speedup_vs_shap": round(theirs / ours, 2) if ours > 0 else None,
        "crmscore_with_counter_reasons_s": round(both, 4),
        "speedup_vs_shap_with_counter_reasons": round(theirs / both, 2) if both > 0 else None,
        "rows_per_second": round(len(X) / ours, 1) if ours > 0 else None,
        "max_abs_shap_difference": float(np.abs(native - reference).max()),
        "training": training,
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
