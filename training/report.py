"""Plots (ROC, calibration, cumulative gains, SHAP summary) and the HTML report of one trained model.

Plots are PNG bytes drawn with matplotlib's Agg backend (no display needed); the same bytes
are logged to MLflow and embedded in the report as base64, so the report is one file that
opens in any browser.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from features.files import write_text_atomic
from models.drift import PSI_ALERT
from models.reasons import ReasonWriter
from training.backtest import BacktestResult, gain_text
from training.calibration import MIN_ISOTONIC_ROWS

__all__ = ["group_strength", "make_plots", "render_report", "write_report"]


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _curves(result: BacktestResult) -> dict[str, np.ndarray]:
    p = result.predictions
    curves = {"model": p["probability"].to_numpy()}
    for column in p.columns:
        if column.startswith("baseline_"):
            curves[column.removeprefix("baseline_")] = p[column].to_numpy()
    return curves


def make_plots(result: BacktestResult) -> dict[str, bytes]:
    """PNG bytes of ``roc``, ``calibration``, ``gains`` and ``shap_summary`` on the test fold, and
    ``shap_by_reason_group`` for a model whose reasons group features (``ReasonWriter.groups``)."""
    y = result.predictions["label"].to_numpy()
    curves = _curves(result)
    label = result.spec.score_label
    plots: dict[str, bytes] = {}

    plt, fig, ax = _figure()
    for name, score in curves.items():
        fpr, tpr, _ = roc_curve(y, score)
        auc = result.metrics["roc_auc"] if name == "model" else result.baselines[name]["roc_auc"]
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})", lw=2 if name == "model" else 1)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC, test cut-off {result.test_cutoff}")
    ax.legend(loc="lower right")
    plots["roc"] = _png(plt, fig)

    plt, fig, ax = _figure()
    edges = np.linspace(0, 1, 11)
    for name, score in curves.items():
        bins = np.clip(np.digitize(score, edges) - 1, 0, 9)
        xs, ys = [], []
        for b in range(10):
            mask = bins == b
            if mask.sum() >= 10:
                xs.append(score[mask].mean())
                ys.append(y[mask].mean())
        ax.plot(xs, ys, "o-", label=name, lw=2 if name == "model" else 1, ms=3)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ece = result.metrics["ece"]
    ax.set(xlabel=f"predicted {label}", ylabel="observed rate", title=f"Calibration (model ECE {ece:.3f})")
    ax.legend(loc="upper left")
    plots["calibration"] = _png(plt, fig)

    plt, fig, ax = _figure()
    share = np.arange(1, len(y) + 1) / len(y)
    for name, score in curves.items():
        order = np.argsort(-score, kind="stable")
        ax.plot(share, np.cumsum(y[order]) / y.sum(), label=name, lw=2 if name == "model" else 1)
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="random")
    ax.axvline(0.1, color="grey", lw=0.5)
    ax.set(
        xlabel="share of population targeted (by score)",
        ylabel="share of positives captured",
        title=f"Cumulative gains (lift at 10%: {result.metrics['lift_at_10']:.2f})",
    )
    ax.legend(loc="lower right")
    plots["gains"] = _png(plt, fig)

    scorer = result.scorer
    contrib = scorer.contributions(result.test_X, as_of=result.test_cutoff)[:, :-1]  # every head's, as scored
    mean_abs = np.abs(contrib).mean(axis=0)
    top = np.argsort(-mean_abs)[:15][::-1]
    plt, fig, ax = _figure()
    context = set(getattr(scorer.reasons, "context", ()))
    ax.barh(
        [scorer.feature_names[i] + (" (context)" if scorer.feature_names[i] in context else "") for i in top],
        mean_abs[top],
    )
    ax.set(xlabel="mean |SHAP value| (log-odds)", title="SHAP summary: what drives the score")
    plots["shap_summary"] = _png(plt, fig)
    if scorer.reasons.groups:
        strength = group_strength(contrib, scorer.reasons)
        labels = sorted(strength, key=strength.get)[-15:]
        plt, fig, ax = _figure()
        ax.barh(labels, [strength[label] for label in labels])
        ax.set(xlabel="mean |SHAP value| (log-odds)", title="SHAP summary by reason group")
        plots["shap_by_reason_group"] = _png(plt, fig)
    return plots


def group_strength(contrib: np.ndarray, reasons: ReasonWriter) -> dict[str, float]:
    """Mean |SHAP value| per reason unit (:meth:`ReasonWriter.unit_sums`): each group summed per row
    first, as its reason sums it (labelled ``"recency (12 features)"``), every other feature alone
    (``" (context)"`` if it is one)."""
    names = reasons.feature_names
    labels = [
        f"{group} ({len(columns)} features)"
        if group
        else names[columns[0]] + (" (context)" if names[columns[0]] in reasons.context else "")
        for group, columns in reasons.units()
    ]
    return dict(zip(labels, np.abs(reasons.unit_sums(contrib)).mean(axis=0).tolist(), strict=True))


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 100 else f"{value:,.1f}"
    return html.escape(str(value))


# What each metric of the table says, for a reader who does not train models (a marketer deciding
# whether to trust the scores): "higher is better" or "lower", and in words what it measures.
METRIC_MEANINGS = {
    "roc_auc": "ranking: the chance that a random positive is scored above a random negative (0.5 = coin, 1 = perfect; higher is better)",
    "pr_auc": "ranking, counted on the positives only (higher is better)",
    "brier": "mean squared gap between probability and outcome (lower is better)",
    "ece": "calibration error: how far the probabilities are from the observed rates, on average (0.03 = 3 points; lower is better)",
    "lift_at_10": "how many times the base rate the top 10% by score holds (higher is better)",
    "capture_at_10": "share of all positives found in the top 10% by score (higher is better)",
    "prior_shift_logit": "the seasonal correction: how far (in log-odds) the probabilities were moved from the calibration fold's season to the test window's",
    "prior_scale": "the seasonal correction's slope on the log-odds (1 = none)",
    "calibration_base_rate": "the rate of positives in the calibration fold (the latest training cut-off)",
    "expected_test_base_rate": "the rate of positives the seasonal correction expected for the test window, from a year before; compare with the test base rate above",
    "roc_auc_se": "standard error of the ROC AUC on these test rows (DeLong): about 95% of repeat samples land within twice it",
    "roc_auc_gain": "ROC AUC above the best baseline on the same rows",
    "roc_auc_gain_se": "standard error of that gain (DeLong's paired test)",
    "roc_auc_gain_low": "95% interval of the gain, low end: above 0 means the lead is more than the noise of one test fold",
    "roc_auc_gain_high": "95% interval of the gain, high end",
    "roc_auc_gain_p_value": "the chance of a gain this large if the model ranked no better than the baseline (lower is stronger evidence)",
    "rmse": "typical error of the expected value per customer, in money (lower is better)",
    "tweedie_deviance": "error of the expected value suited to spend with many zeros (lower is better; undefined, shown as a dash, when a prediction of 0 meets a customer who spent)",
    "poisson_deviance": "another error of the expected value (lower is better; undefined alike)",
    "gini": "how well the expected value ranks customers by what they spent (1 = perfect, 0 = random; higher is better)",
    "population_shift_logit": "the anchor: how far (in log-odds) the probabilities were moved so their mean is the latest known conversion rate",
    "ece_without_anchor": "the calibration error the probabilities would have without the anchor",
    "brier_without_anchor": "the Brier score without the anchor",
}


def render_report(result: BacktestResult, plots: dict[str, bytes], *, run: dict[str, Any] | None = None) -> str:
    """The HTML report: metrics against baselines, the backtest table and the plots."""
    run = run or {}
    names = ["model", *result.baselines]
    keys = [k for k in result.metrics if k != "base_rate" and not k.startswith("drift_")]
    rows = []
    for key in keys:
        cells = [_cell(result.metrics.get(key))] + [_cell(result.baselines[b].get(key)) for b in result.baselines]
        meaning = html.escape(METRIC_MEANINGS.get(key, ""))
        rows.append(
            f"<tr><th>{html.escape(key)}</th>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + f'<td class="meaning">{meaning}</td></tr>'
        )
    metrics_table = (
        "<table><tr><th>metric</th>"
        + "".join(f"<th>{html.escape(n)}</th>" for n in names)
        + '<th class="meaning">what it says</th></tr>'
        + "".join(rows)
        + "</table>"
    )
    backtest = result.table.to_html(index=False, float_format=lambda v: f"{v:.4f}", border=0)
    drift = _drift_table(result)
    images = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, png in plots.items()
    )
    spec = result.spec
    facts = {
        "model": run.get("model_name", result.scorer.model_name),
        "version": run.get("version"),
        # At registration: a later version may take the alias, which the registry (crmscore models) says.
        "alias when registered": run.get("alias"),
        "promotion gate": None
        if "reason" not in run
        else f"{'promoted' if run.get('promoted') else 'kept out'}: {run['reason']}",
        "run id": run.get("run_id"),
        "code": run.get("code"),
        "data digests (training / test rows)": " / ".join((run.get("data_digests") or {}).values()) or None,
        "grade": result.grade,
        "test cut-off": result.test_cutoff,
        "horizon (days)": spec.horizon_days,
        "population": spec.population,
        "label": spec.label,
        "training cut-offs": ", ".join(str(c) for c in sorted(result.cutoffs)),
        "rows (train / test)": f"{result.n_train:,} / {result.n_test:,}",
        "test base rate": f"{result.metrics['base_rate']:.3f}",
        "calibration": _calibration_text(result),
        "seasonal prior shift": _prior_text(result.calibration.get("prior_shift")),
    }
    if "population_shift_logit" in result.metrics:
        facts["population anchor"] = (
            f"mean probability set to the latest fold's rate {result.metrics['calibration_base_rate']:.3f} "
            f"(log-odds {result.metrics['population_shift_logit']:+.2f}); "
            f"ECE {result.metrics['ece']:.3f}, {result.metrics['ece_without_anchor']:.3f} without"
        )
    context = getattr(result.scorer.reasons, "context", [])
    if context:
        facts["context features"] = (
            f"{', '.join(context)}: one value (or nearly) within every training cut-off, so they count in the score "
            "but are never given as a reason"
        )
    sentence = gain_text(result.metrics, result.baselines)
    gain = (
        f"<p>{html.escape(sentence)}: an interval that holds 0 is a lead within the noise of one test fold.</p>"
        if sentence
        else ""
    )
    if run.get("settings"):
        facts["settings"] = ", ".join(f"{k} {v}" for k, v in run["settings"].items())
    fact_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_cell(v)}</td></tr>" for k, v in facts.items())
    warnings = "".join(f'<p class="warning">Warning: {html.escape(w)}</p>' for w in result.warnings)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>crmscore: {html.escape(spec.task)} model report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }}
th:first-child {{ text-align: left; }}
.grade {{ font-size: 2rem; font-weight: bold; }}
.warning {{ background: #fff4e5; border-left: 4px solid #e69500; padding: 6px 10px; }}
td.meaning, th.meaning {{ text-align: left; color: #555; font-size: 0.9em; max-width: 420px; }}
figure {{ display: inline-block; margin: 0.5rem; }} img {{ max-width: 520px; }}
</style></head><body>
<h1>{html.escape(spec.score_label)} &mdash; {html.escape(spec.task)}</h1>
<p class="grade">Prediction quality: {html.escape(result.grade)}</p>
<p>Grade A: ROC AUC at least 0.02 above the best baseline; B: level or better; C: below a baseline.</p>
{gain}
{warnings}
<table>{fact_rows}</table>
<h2>Test metrics against baselines (same run, same rows)</h2>
{metrics_table}
{_segment_table(result)}
<h2>Backtest (final model on each cut-off; "fit" rows are in-sample)</h2>
{backtest}
{_params_table(result)}
{drift}
<h2>Plots</h2>
{images}
</body></html>
"""


def _params_table(result: BacktestResult) -> str:
    """The parameters the model was fitted with (LightGBM's, the rounds, the blends): what the run's
    MLflow parameters hold, so the report alone says how a version differs from another."""
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in sorted(result.params.items())
        if v is not None
    )
    return f"<h2>Parameters</h2><table>{rows}</table>" if rows else ""


def _segment_table(result: BacktestResult) -> str:
    """The test metrics per segment (:mod:`training.segments`), with the best baseline's ROC AUC."""
    table = result.segments
    if table.empty:
        return ""
    baseline = result.params.get("roc_auc_gain_baseline")
    rows = "".join(
        f"<tr><th>{html.escape(str(r.feature))}: {html.escape(str(r.segment))}</th><td>{r.rows:,}</td>"
        + "".join(
            f"<td>{_cell(v)}</td>"
            for v in (r.base_rate, r.mean_probability, r.roc_auc, r.roc_auc_se, r.baseline_roc_auc, r.ece)
        )
        + "</tr>"
        for r in table.itertuples(index=False)
    )
    return (
        "<h2>Test metrics by segment</h2>"
        "<p>The same test rows split by a feature: where the model ranks and calibrates well and where it "
        "does not. A segment's ROC AUC is only as sure as its standard error (a 95% interval reaches about "
        "two standard errors either way); &ndash; where a segment holds one class.</p>"
        "<table><tr><th>segment</th><th>rows</th><th>base rate</th><th>mean probability</th><th>ROC AUC</th>"
        f"<th>ROC AUC se</th><th>ROC AUC {html.escape(baseline or 'baseline')}</th><th>ECE</th></tr>{rows}</table>"
    )


def _drift_table(result: BacktestResult, limit: int = 10) -> str:
    """The features that moved most between the training rows and the test fold."""
    if not result.drift:
        return ""
    alerts = sum(d.level == "alert" for d in result.drift)
    verdict = (
        f"{alerts} of {len(result.drift)} features shifted beyond PSI {PSI_ALERT}: the test fold's probabilities "
        "rest on values the trees saw rarely or never, so read its calibration with care."
        if alerts
        else f"No feature shifted beyond PSI {PSI_ALERT}."
    )
    rows = "".join(
        f"<tr><th>{html.escape(d.feature)}</th><td>{d.psi:.3f}</td><td>{d.out_of_range:.1%}</td>"
        f"<td>{d.training_missing:.1%} &rarr; {d.missing:.1%}</td><td>{html.escape(d.level)}</td></tr>"
        for d in result.drift[:limit]
    )
    unseen = [
        f"{d.feature} " + ", ".join(f"{v!r} ({n:,})" for v, n in d.unseen_values)
        for d in result.drift
        if d.unseen_values
    ]
    unseen_note = (
        "<p>Category values of the test fold that no training row had, scored as a missing category "
        f"(rows): {html.escape('; '.join(unseen))}.</p>"
        if unseen
        else ""
    )
    return (
        "<h2>Feature drift: test fold against the training rows</h2>"
        f"<p>Population stability index (PSI) over training deciles; 0.1-0.25 worth a look, above 0.25 a "
        f"shift. Trees score a value beyond the training range like the nearest one seen. {verdict}</p>"
        "<table><tr><th>feature</th><th>PSI</th><th>outside training range</th><th>missing (train &rarr; test)</th>"
        f"<th>level</th></tr>{rows}</table>{unseen_note}"
    )


def write_report(
    result: BacktestResult, plots: dict[str, bytes], path: str | Path, *, run: dict[str, Any] | None = None
) -> Path:
    """Write the HTML report to ``path`` (folders created, whole or not at all) and return the path."""
    return write_text_atomic(path, render_report(result, plots, run=run))


def _calibration_text(result: BacktestResult) -> str:
    """The calibrator and how it was chosen: by out-of-fold Brier score when both were fitted, else why the
    one there is ("chosen by out-of-fold Brier" was said of a 172-row fold where isotonic is never tried)."""
    kind, fold = result.calibration["kind"], result.params["calibration_cutoff"]
    tried = result.calibration.get("brier_out_of_fold") or {}
    if len(tried) > 1:
        return f"{kind} (chosen by out-of-fold Brier on {fold})"
    return f"{kind} (the only one fitted on {fold}: isotonic needs {MIN_ISOTONIC_ROWS:,} rows or more)"


def _prior_text(prior: dict | None) -> str:
    if not prior or not prior.get("applied"):
        return f"none ({(prior or {}).get('note') or 'not used by this model'})"
    scale = prior.get("scale", 1.0)
    scaled = f"log-odds x {scale:.3f}, then " if scale != 1.0 else ""
    weights = prior.get("test_season_weights") or {}
    read = (
        "; the test season read from "
        + " + ".join(f"{c} ({w:.0%})" for c, w in sorted(weights.items()))
        + " (interpolated, as at every scoring date)"
        if weights
        else ""
    )
    return (
        f"{scaled}{prior['shift']:+.3f} log-odds ({prior.get('method')}; reference cut-offs "
        f"{prior['calibration_season_cutoff']} -> {prior['test_season_cutoff']}, base rates "
        f"{prior['calibration_season_rate']:.3f} -> {prior['test_season_rate']:.3f}{read}); expected test base "
        f"rate {prior['expected_test_rate']:.3f}"
    )
