"""What the registry holds, and moving a task's ``champion`` by hand.

``crmscore train`` moves ``champion`` only through the promotion gate (:mod:`training.tracking`).
These are for the people who run the service: :func:`list_versions` shows every registered version
of a task with its aliases, test cut-off, test metrics and the gate's decision (``crmscore
models``); :func:`promote_version` points ``champion`` at a version chosen by hand, to roll back a
champion that misbehaves in production or to promote a challenger the gate kept out (``crmscore
promote``). Both read what :func:`training.tracking.log_and_register` tagged on each version, so
neither downloads a model except the one being promoted, whose files are read first: an alias must
never point at a version the service cannot load.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
from collections.abc import Sequence
from typing import Any

from features.config import Config
from training.pyfunc import (
    CHAMPION,
    NoChampionError,
    cli_model_name,
    load_version,
    pick_version,
    registered_name,
    registered_versions,
    registry_client,
    train_command,
    version_info,
)

__all__ = ["champion_history", "list_versions", "promote_version", "record_champion", "render_versions"]

# The tag a hand promotion leaves on the version it promotes (the gate's own decision stays in ``promotion``).
MANUAL_TAG = "manual_promotion"
# The registered model's tags that keep every move of ``champion``, one per move, keyed by its time.
HISTORY_PREFIX = "champion_history."


def record_champion(
    client: Any, name: str, *, version: str, previous: str | None, how: str, reason: str | None = None
) -> None:
    """Keep one move of ``champion`` to ``version`` on the registered model, as its own tag (the
    version's own tags say only its latest): when, from which version, how (the gate, forced at
    training, by hand), why, and the operating-system user who ran it. :func:`champion_history`
    reads them back: which version was champion on a given date, and why."""
    now = dt.datetime.now(dt.UTC)
    entry = {
        "at": now.isoformat(timespec="milliseconds"),
        "version": str(version),
        "previous": previous,
        "how": how,
        "reason": reason,
        "by": _user(),
    }
    client.set_registered_model_tag(name, HISTORY_PREFIX + now.strftime("%Y%m%dT%H%M%S%fZ"), json.dumps(entry)[:5000])


def champion_history(client: Any, name: str) -> list[dict[str, Any]]:
    """Every move of ``champion`` :func:`record_champion` kept, oldest first (none before 2026-12-07)."""
    tags = client.get_registered_model(name).tags or {}
    return [json.loads(value) for key, value in sorted(tags.items()) if key.startswith(HISTORY_PREFIX)]


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container's numeric uid)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _row(name: str, version: Any, aliases: list[str]) -> dict[str, Any]:
    info = version_info(name, version, None)
    return {
        "version": info["version"],
        "aliases": aliases,
        "registered_at": info["trained_at"],
        "test_cutoff": info["test_cutoff"],
        "roc_auc": info["metrics"].get("roc_auc"),
        "ece": info["metrics"].get("ece"),
        "grade": (version.tags or {}).get("grade"),
        "promotion": info["promotion"],
        MANUAL_TAG: info[MANUAL_TAG],
        "run_id": info["run_id"],
        "code": info["code"],
    }


def list_versions(config: Config, tasks: Sequence[str]) -> list[dict[str, Any]]:
    """Every registered version of each task's model, newest first.

    Returns
    -------
    One ``{"model_name", "tracking_uri", "versions"}`` per task; each version ``{"version",
    "aliases", "registered_at", "test_cutoff", "roc_auc", "ece", "grade", "promotion"`` (the gate's
    reason), ``"manual_promotion"`` (set by :func:`promote_version`, else None), ``"run_id"``, ``"code"``
    (the crmscore version and git commit that trained it, ``training.tracking.code_version``)``}``. A
    task without a registered model has an empty list.

    Raises
    ------
    NoChampionError
        The SQLite registry file the config names does not exist (none is created).
    RegistryUnavailable
        The registry did not answer.
    """
    client = registry_client(config, tasks[0] if len(tasks) == 1 else None, "no registered model")
    listings = []
    for task in tasks:
        name = registered_name(task, config)
        found = registered_versions(client, config, name).values()
        rows = [{**_row(name, v, aliases), "config": (v.tags or {}).get("config")} for v, aliases in found]
        rows.sort(key=lambda row: int(row["version"]), reverse=True)
        for row, older in zip(rows, [*rows[1:], None] if rows else [], strict=True):
            row["config_against"] = older["version"] if older else None
            row["config_changes"] = config_changes(older["config"], row["config"], task) if older else []
        for row in rows:
            del row["config"]
        history = champion_history(client, name) if rows else []
        listings.append({"model_name": name, "tracking_uri": config.tracking_uri, "versions": rows, "history": history})
    return listings


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def config_changes(older: str | None, newer: str | None, task: str) -> list[str]:
    """What the config a version was trained with (its ``config`` tag, JSON) changed against the version
    before it, for ``task``: the tables' mapping and the task's own model settings, as
    ``models.churn.seed 7 (was 42)``; the test cut-off, listed beside each version, and other tasks'
    settings are left out. Empty when either has no tag (a version trained before it was kept)."""
    if not older or not newer:
        return []
    try:
        before, after = _flat(json.loads(older)), _flat(json.loads(newer))
    except (json.JSONDecodeError, TypeError):
        return []
    keep = (f"models.{task}.", "tables.", "engine")
    out = []
    for key in sorted(before.keys() | after.keys()):
        if not key.startswith(keep) or key == f"models.{task}.test_cutoff" or before.get(key) == after.get(key):
            continue
        out.append(
            f"{key} {json.dumps(after[key]) if key in after else '(removed)'}"
            f" (was {json.dumps(before[key]) if key in before else 'unset'})"
        )
    return out


def question_of(spec: Any) -> dict[str, str]:
    """What a model answers, as its version's tags hold it: its horizon and its population's rule.
    Two models that differ in either score different rows or different outcomes."""
    return {"horizon_days": str(spec.horizon_days), "population": spec.population}


def other_question(tags: dict[str, str], other: dict[str, str]) -> dict[str, tuple[str, str]]:
    """The tags of :func:`question_of` that both hold and that differ, as ``{key: (tags', other's)}``
    (versions registered before a tag existed do not hold it)."""
    keys = ("horizon_days", "population")
    return {k: (tags[k], other[k]) for k in keys if k in tags and k in other and tags[k] != other[k]}


def promote_version(config: Config, task: str, version: str, *, reason: str | None = None) -> dict[str, Any]:
    """Point ``champion`` at ``version`` of ``task``'s model, after reading its files.

    The version gets tag ``manual_promotion`` saying when, from which version and why; its gate
    decision (``promotion``) is kept. A running ``crmscore serve`` keeps the old champion until
    ``POST /reload``.

    Returns
    -------
    ``{"model_name", "version", "previous"`` (the champion before, None without one),
    ``"changed"`` (False when ``version`` already was champion), ``"test_cutoff",
    "warnings"}``: what differs from the previous champion that a person should know (another test
    cut-off, so their metrics do not compare; a lower test ROC AUC; grade C).

    Raises
    ------
    ValueError
        No such version; the message lists the registered ones.
    NoChampionError
        No registered model (or no registry file) for the task.
    ChampionFilesError
        The version's files cannot be read: the alias is not moved.
    """
    name = registered_name(task, config)
    client = registry_client(config, task, "no registered model")
    versions = registered_versions(client, config, name)
    if not versions:
        raise NoChampionError(
            f"no registered model '{name}' in the registry at {config.tracking_uri}. "
            f"Train one with: {train_command(config, task)}"
        )
    target, aliases = pick_version(versions, name, version)
    wanted = str(target.version)
    if "promotion" not in (target.tags or {}):
        # train tags a version (test cut-off, metrics, the gate's decision) right after registering it: a
        # version without the gate's tag is one whose train was stopped in between, never tested.
        raise ValueError(
            f"--version: {name} v{wanted} has no test cut-off, metrics or gate decision: its train stopped after "
            "registering it and before testing it, so it cannot be promoted; train again"
        )
    previous = next((number for number, (_, names) in versions.items() if CHAMPION in names), None)
    row = _row(name, target, aliases)
    if previous == wanted:
        return {
            "model_name": name,
            "version": wanted,
            "previous": previous,
            "changed": False,
            "test_cutoff": row["test_cutoff"],
            "warnings": [],
        }
    load_version(config, task, client, target, label="to promote")  # raises ChampionFilesError
    warnings = []
    if previous is not None:
        old = _row(name, *versions[previous])
        differ = other_question(versions[previous][0].tags or {}, target.tags or {})
        if differ:
            warnings.append(
                f"v{wanted} answers another question than champion v{previous} ("
                + ", ".join(f"{k} {new!r} against {old!r}" for k, (old, new) in differ.items())
                + f"): their metrics do not compare, and scores, tiers and lists change meaning; set models."
                f"{task} in the config to match it"
            )
        elif old["test_cutoff"] != row["test_cutoff"]:
            warnings.append(
                f"v{wanted} was tested at {row['test_cutoff']} and champion v{previous} at {old['test_cutoff']}: "
                "their test metrics are not on the same rows and do not compare (compare them on the same dates "
                f"with crmscore monitor {cli_model_name(task)} --version {wanted}, and without --version)"
            )
        elif old["roc_auc"] is not None and row["roc_auc"] is not None and row["roc_auc"] < old["roc_auc"]:
            warnings.append(
                f"v{wanted} has a lower test roc_auc than champion v{previous} at the same test cut-off "
                f"({row['roc_auc']:.4f} < {old['roc_auc']:.4f})"
            )
    if row["grade"] == "C":
        warnings.append(f"v{wanted} is graded C: it ranked below a baseline at its test cut-off")
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    note = f"made champion by hand on {now}, replacing {'v' + previous if previous else 'no champion'}"
    client.set_registered_model_alias(name, CHAMPION, wanted)
    client.set_model_version_tag(name, wanted, MANUAL_TAG, f"{note}: {reason}" if reason else note)
    record_champion(client, name, version=wanted, previous=previous, how="by hand (crmscore promote)", reason=reason)
    return {
        "model_name": name,
        "version": wanted,
        "previous": previous,
        "changed": True,
        "test_cutoff": row["test_cutoff"],
        "warnings": warnings,
    }


def render_versions(listing: dict[str, Any]) -> str:
    """:func:`list_versions` as text: one line per version, newest first, then the gate's reason
    (and a hand promotion's note) beneath it."""
    name, versions = listing["model_name"], listing["versions"]
    if not versions:
        return f"{name}: no registered version in {listing['tracking_uri']}"
    lines = [f"{name} ({len(versions)} version{'s' if len(versions) > 1 else ''} in {listing['tracking_uri']})"]
    for row in versions:
        aliases = ", ".join(row["aliases"]) or "-"
        metrics = " ".join(
            f"{key} {row[key]:.4f}" if row[key] is not None else f"{key} -" for key in ("roc_auc", "ece")
        )
        lines.append(
            f"  v{row['version']:<4} {aliases:<22} registered {row['registered_at'][:16].replace('T', ' ')} UTC, "
            f"test cut-off {row['test_cutoff'] or '-'}, {metrics}, grade {row['grade'] or '-'}"
        )
        if row["promotion"]:
            lines.append(f"        gate: {row['promotion']}")
        elif row["test_cutoff"] is None and not row[MANUAL_TAG]:
            # Registered, then the train was killed before its test tags and the gate: not promotable.
            lines.append("        incomplete: its train stopped after registering it, before the test and the gate")
        if row[MANUAL_TAG]:
            lines.append(f"        {row[MANUAL_TAG]}")
        if row["code"]:
            lines.append(f"        trained by {row['code']}")
        if row.get("config_changes"):
            changes = row["config_changes"]
            shown = "; ".join(changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5 else "")
            lines.append(f"        config against v{row['config_against']}: {shown}")
    if listing.get("history"):
        lines.append("  champion history (oldest first):")
        for move in listing["history"]:
            was = f"v{move['previous']}" if move.get("previous") else "none"
            why = f": {move['reason']}" if move.get("reason") else ""
            lines.append(
                f"    {move['at'][:19].replace('T', ' ')} UTC  v{move['version']} (was {was}), {move['how']}, "
                f"by {move['by']}{why}"
            )
    return "\n".join(lines)
