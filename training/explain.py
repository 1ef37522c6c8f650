"""One customer's (or lead's) score taken apart: ``crmscore explain``.

The champion scores the whole population of the date, as ``crmscore score`` does (so an anchored
lead model gets its population's anchor), and for each requested id returns the score with every
reason each way and the additive account behind it: the model's base log-odds (the SHAP expected
value), plus the shown reasons and counter-reasons, plus the rest of the features, is the raw
log-odds score, which the calibrator (with the seasonal correction and the anchor of the date)
turns into the probability.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.config import Config
from features.labels import MAIN_TABLE
from features.pipeline import population_features
from features.sources import CanonicalTables, load_tables
from features.timebase import normalize_as_of
from models.catalog import scoring_config, spec_for
from training.pyfunc import load_champion
from training.score import check_since, date_warnings
from training.train import normalize_task

__all__ = ["explain_ids", "id_hint", "render"]


def id_hint(known: Mapping[str, Any], key: str) -> str:
    """A hint when a spelling of ``key`` that clients often produce is among the ``known`` ids:
    surrounding blanks, a numeric id written as a float by a spreadsheet (``"12346.0"``), another
    case (``l41175``), or the leading zeros one system writes and another drops (``12346`` for
    ``0012346``, and the reverse)."""
    plain = key.strip().removesuffix(".0")
    guesses = [key.strip(), plain, plain.upper(), plain.lower(), plain.lstrip("0") or "0"]
    guesses += [plain.zfill(width) for width in range(len(plain) + 1, len(plain) + 9)] if plain.isdigit() else []
    for guess in dict.fromkeys(guesses):
        if guess != key and guess in known:
            return f" (did you mean {guess!r}?)"
    return ""


def explain_ids(
    config: Config,
    task: str,
    ids: Sequence[str],
    *,
    as_of: Any = None,
    k: int | None = None,
    tables: CanonicalTables | None = None,
    since: Any = None,
    version: str | None = None,
) -> dict[str, Any]:
    """The champion's (or a registered ``version``'s) score of each id at ``as_of`` with ``k`` reasons
    each way and its log-odds account.

    ``since`` (customers): an earlier date; each id in both populations also gets ``since``, the same
    champion's score then and what moved it most (:func:`_moves`).

    ``as_of`` defaults to the last row the task reads ("now" for an export); ``k`` to the model's
    ``top_k_reasons``. An id outside the population of the date gets an ``error`` naming the rule;
    ``warnings`` are those of a batch at the date (:func:`training.score.date_warnings`).

    Raises
    ------
    training.pyfunc.NoChampionError
        No champion model is registered for ``task``.
    ValueError
        No id given, no data to take a default date from, or a ``since`` that is not a date
        before ``as_of`` (or is given for leads).
    """
    task = normalize_task(task)
    if not ids:
        raise ValueError("give at least one --id")
    if since is not None and task == "lead":
        raise ValueError("--since compares a customer over time; a lead is scored once, in its first days")
    since = check_since(since)  # before the model is loaded
    scorer, info = load_champion(config, task, version=version)
    model_config, settings_warning = scoring_config(config, task, info)
    spec = spec_for(task, model_config)
    if tables is None:
        tables = load_tables(config)
    if as_of is None:  # the main table's last row, as the lists take it (events that run later do not move it)
        as_of = tables.last_timestamp(MAIN_TABLE[task])
    as_of = normalize_as_of(as_of)
    check_since(since, as_of, what="the date explained")
    k = model_config.top_k_reasons if k is None else k
    features = population_features(
        tables.with_vocabulary(scorer.vocabulary), task, as_of=as_of, model_config=model_config
    ).reset_index(drop=True)
    X = scorer.prepare(features)
    shift = scorer.population_shift(X, as_of=as_of)
    position = {str(key): i for i, key in enumerate(features[scorer.entity].astype(str))}
    rows = [position[key] for key in ids if key in position]
    # By position among ``rows``: category values no training row had, scored as missing.
    chosen = features.iloc[rows].reset_index(drop=True)
    warnings = scorer.unseen_warnings(chosen, X[rows])
    contrib = scorer.contributions(X[rows], as_of) if rows else np.empty((0, len(scorer.feature_names) + 1))
    scored = enumerate(
        scorer.score_matrix(
            X[rows],
            k=k,
            counter_k=k,
            as_of=as_of,
            contrib=contrib,
            population_shift=shift,
            unseen=scorer.unseen_rows(chosen, X[rows]),
        )
    )
    moves = (
        _moves(
            scorer,
            tables,
            task,
            model_config,
            [key for key in ids if key in position],
            X[rows],
            contrib,
            as_of,
            since,
            k,
        )
        if since is not None
        else {}
    )
    items = []
    for key in ids:
        if key not in position:
            why = id_hint(position, key) or _where_it_stands(tables, task, key, as_of, model_config)
            items.append({"id": key, "error": f"not in the {task} population at {as_of} ({spec.population}){why}"})
            continue
        n, item = next(scored)
        row = contrib[n]
        if n in warnings:
            item["warnings"] = warnings[n]
        shown = sum(r["impact"] for r in (*item["reasons"], *item["counter_reasons"]))
        items.append(
            {
                "id": key,
                **item,
                "base_log_odds": float(row[-1]),
                "shown_impact": float(shown),
                "other_impact": float(row[:-1].sum() - shown),
                "raw_log_odds": float(row.sum()),
                **({"since": moves[key]} if key in moves else {}),
            }
        )
    return {
        "task": task,
        "as_of": as_of.isoformat(sep=" "),
        # As ``crmscore score`` warns: settings changed since training, where the date sits in the data.
        "warnings": [w for w in (settings_warning, *date_warnings(tables, task, as_of).values()) if w],
        "model_name": info["model_name"],
        "model_version": str(info["version"]),
        "score_label": spec.score_label,
        "raises": scorer.reasons.direction,
        "lowers": scorer.reasons.counter_label(),
        # The features each reason group sums, so that a reader of a group's reason sees what it covers.
        "groups": {name: list(features) for name, features in scorer.reasons.groups.items()},
        "items": items,
    }


def _moves(
    scorer: Any,
    tables: CanonicalTables,
    task: str,
    model_config: Any,
    keys: Sequence[str],
    X: np.ndarray,
    contrib: np.ndarray,
    as_of: Any,
    since: Any,
    k: int,
) -> dict[str, dict[str, Any]]:
    """What changed each customer's score since ``since``: the same champion scores the population
    of that date as the batch would, and the change of each reason's SHAP value (its group's sum)
    from then to ``as_of`` is written as reasons are, with today's values and the change as impact:
    ``raised`` the score most, ``lowered`` it most. Only features whose value changed are told;
    the change of the others (through interactions) is ``unchanged_change``. By TreeSHAP's
    additivity the changes of all features sum to the change of the raw log-odds. ``probability_at_then_calibration`` is today's raw
    score calibrated as at ``since`` (its seasonal correction and anchor): from the probability then
    to it is the customer's doing, from it to today's the calibration of the two dates.

    ``keys``, ``X`` and ``contrib`` are the explained ids in the population at ``as_of``, their
    matrix and contributions; a key outside the population at ``since`` gets ``error``."""
    from models.reasons import dated_values

    features = population_features(
        tables.with_vocabulary(scorer.vocabulary), task, as_of=since, model_config=model_config
    ).reset_index(drop=True)
    position = {str(key): i for i, key in enumerate(features[scorer.entity].astype(str))}
    out = {
        key: {"as_of": since.isoformat(sep=" "), "error": f"not in the {task} population at {since}"}
        for key in keys
        if key not in position
    }
    both = [n for n, key in enumerate(keys) if key in position]
    if not both:
        return out
    X_all = scorer.prepare(features)
    then_rows = [position[keys[n]] for n in both]
    then_contrib = scorer.contributions(X_all[then_rows], since)
    shift_then = scorer.population_shift(X_all, as_of=since)
    scored = scorer.score_matrix(
        X_all[then_rows], k=0, explain=False, as_of=since, contrib=then_contrib, population_shift=shift_then
    )
    # Today's raw log-odds through the calibration of ``since``: splits the probability's change.
    recalibrated = scorer.score_matrix(
        X[both], k=0, explain=False, as_of=since, contrib=contrib[both], population_shift=shift_then
    )
    change = contrib[both, :-1] - then_contrib[:, :-1]
    # A feature whose value did not move (a country) still changes its SHAP value through the
    # features it interacts with; naming it ("Based in Australia") as what moved the score would
    # credit it with the others' doing. Its change is accounted for apart, not told as a reason.
    now, before = X[both], X_all[then_rows]
    unchanged = (now == before) | (np.isnan(now) & np.isnan(before))
    moved = np.where(unchanged, 0.0, change)
    dated = dated_values(as_of, scorer.horizon_days)
    raised = scorer.reasons.explain(moved, now, k=k, dated=dated)
    lowered = scorer.reasons.explain(moved, now, k=k, counter=True, dated=dated)
    for j, n in enumerate(both):
        then = scored[j]
        shown = sum(r["impact"] for r in (*raised[j], *lowered[j]))
        out[keys[n]] = {
            "as_of": since.isoformat(sep=" "),
            "probability": then["probability"],
            **{
                name: then[name]
                for name in ("tier", "value_at_risk", "expected_spend", "expected_value")
                if name in then
            },
            "raw_log_odds": float(then_contrib[j].sum()),
            "probability_at_then_calibration": float(recalibrated[j]["probability"]),
            "raised": raised[j],
            "lowered": lowered[j],
            # The account of the raw log-odds' change: the base value's, the shown reasons', the
            # other features that changed, and the features that did not (through the others).
            "base_change": float(contrib[n, -1] - then_contrib[j, -1]),
            "shown_change": float(shown),
            "other_change": float(moved[j].sum() - shown),
            "unchanged_change": float(change[j].sum() - moved[j].sum()),
        }
    return out


def _where_it_stands(tables: CanonicalTables, task: str, key: str, as_of: Any, mc: Any) -> str:
    """Where an id outside the population stands against the rule, from its own rows: none at all
    (a mistyped id), all after ``as_of``, for churn its latest purchase before the lookback or
    refunds only, for a lead its ``created_at`` outside the window or its conversion by ``as_of``."""
    import ibis

    at = ibis.literal(as_of, type="timestamp")
    if task == "lead":
        leads = tables.leads
        rows = leads.filter(leads.lead_id == key)
        columns = {"created": rows.created_at.max()}
        if "converted_at" in leads.columns:
            columns["converted"] = rows.converted_at.min()
        found = rows.aggregate(n=rows.count(), **columns).to_pandas().iloc[0]
        if found["n"] == 0:
            return f"; no row of lead_id {key!r} in table 'leads'"
        created = found["created"]
        if created > as_of:
            return f"; its created_at, {created:%Y-%m-%d %H:%M}, is after as_of"
        if (as_of - created).days >= mc.step_days:
            return f"; its created_at, {created:%Y-%m-%d %H:%M}, is {(as_of - created).days:,} days before as_of"
        converted = found.get("converted")
        if not pd.isna(converted) and converted <= as_of:
            return f"; it converted at {converted:%Y-%m-%d %H:%M}, by as_of"
        return ""
    lines = tables.transactions
    rows = lines.filter(lines.customer_id == key)
    before = rows.timestamp <= at
    found = (
        rows.aggregate(
            n=rows.count(),
            first=rows.timestamp.min(),
            up_to=before.sum(),
            bought=rows.timestamp.max(where=before & (rows.amount > 0)),
        )
        .to_pandas()
        .iloc[0]
    )
    if found["n"] == 0:
        return f"; no row of customer_id {key!r} in table 'transactions'"
    if found["up_to"] == 0:
        return f"; its first line, {found['first']:%Y-%m-%d %H:%M}, is after as_of"
    if task == "churn":
        bought = found["bought"]
        if pd.isna(bought):  # no purchase (amount > 0) up to as_of
            return f"; its {int(found['up_to'])} line(s) up to as_of are refunds only (amount <= 0)"
        return f"; its latest purchase, {bought:%Y-%m-%d %H:%M}, is {(as_of - bought).days:,} days before as_of"
    return ""


def render(result: dict[str, Any]) -> str:
    """The explanation as text for a terminal: one block per id."""
    lines = [f"{result['model_name']} v{result['model_version']}, as of {result['as_of']}"]
    for item in result["items"]:
        lines.append("")
        if "error" in item:
            lines.append(f"{item['id']}: {item['error']}")
            continue
        tier = item.get("tier") or item.get("grade")
        money = [
            f"{name.replace('_', ' ')} {item[name]:,.0f}"
            for name in ("value_at_risk", "expected_spend", "expected_value")
            if item.get(name) is not None
        ]
        lines.append(
            f"{item['id']}: {result['score_label']} {item['probability']:.3f}, {tier}"
            + "".join(f", {m}" for m in money)
        )
        for title, reasons in ((result["raises"], item["reasons"]), (result["lowers"], item["counter_reasons"])):
            lines.append(f"  {title}:" if reasons else f"  {title}: nothing")
            # The direction is the heading; the sentence alone under it, and the group it speaks for.
            lines.extend(
                f"    {r['impact']:+.3f}  {r['text'].removesuffix(f' ({title})')}"
                + (f"  [{r['group']}: {len(result['groups'][r['group']])} features]" if r.get("group") else "")
                for r in reasons
            )
        lines.append(
            f"  log-odds: base {item['base_log_odds']:+.3f} + shown {item['shown_impact']:+.3f}"
            f" + other features {item['other_impact']:+.3f} = {item['raw_log_odds']:+.3f};"
            f" calibrated for the date: {item['probability']:.3f}"
        )
        lines.extend(_render_since(item, result))
        lines.extend(f"  warning: {w}" for w in item.get("warnings", ()))
    return "\n".join(lines)


def _render_since(item: Mapping[str, Any], result: Mapping[str, Any]) -> list[str]:
    """The ``since`` block of an item: the score then, and what raised and lowered it since."""
    then = item.get("since")
    if then is None:
        return []
    if "error" in then:
        return [f"  since {then['as_of']}: {then['error']}"]
    lines = [
        f"  since {then['as_of']}: {then['probability']:.3f}, {then.get('tier')} -> {item['probability']:.3f}, "
        f"{item.get('tier')}; raw log-odds {then['raw_log_odds']:+.3f} -> {item['raw_log_odds']:+.3f}: the date's base"
        f" {then['base_change']:+.3f}, shown {then['shown_change']:+.3f}, other features {then['other_change']:+.3f},"
        f" features whose value did not change {then['unchanged_change']:+.3f}",
        f"    of the probability's {item['probability'] - then['probability']:+.3f}: "
        f"{then['probability_at_then_calibration'] - then['probability']:+.3f} from the raw score (at "
        f"{then['as_of']}'s calibration), {item['probability'] - then['probability_at_then_calibration']:+.3f} "
        "from the calibration of the two dates (seasonal correction, anchor)",
    ]
    # The heading says the direction; the sentences drop their own "(raises churn risk)".
    suffixes = (f" ({result['raises']})", f" ({result['lowers']})")
    for title, reasons in (("raised it", then["raised"]), ("lowered it", then["lowered"])):
        lines.append(f"    {title}:" if reasons else f"    {title}: nothing")
        lines.extend(
            f"      {r['impact']:+.3f}  {r['text'].removesuffix(suffixes[0]).removesuffix(suffixes[1])}"
            for r in reasons
        )
    return lines
