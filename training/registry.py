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
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
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

__all__ = [
    "champion_history",
    "config_tag",
    "list_versions",
    "promote_version",
    "record_champion",
    "render_versions",
]

# The tag a hand promotion leaves on the version it promotes (the gate's own decision stays in ``promotion``).
MANUAL_TAG = "manual_promotion"
# The registered model's tags that keep every move of ``champion``, one per move, keyed by its time.
HISTORY_PREFIX = "champion_history."


# The longest tag value crmscore writes; every JSON tag written here fits it whole (a champion history tag cut at
# 5,000 characters mid-JSON made `crmscore models` fail for every model, 2026-12-07).
TAG_LIMIT = 5000
# The longest --reason a promotion keeps: a sentence or a ticket, not a document (a 6,000-character one was cut
# mid-JSON in the champion history).
REASON_LIMIT = 1000


def check_reason(reason: str | None, option: str = "--reason") -> None:
    """Refuse a reason longer than :data:`REASON_LIMIT`, before anything moves.

    Raises
    ------
    ValueError
        The reason is longer; the message names ``option`` and the limit.
    """
    if reason is not None and len(reason) > REASON_LIMIT:
        raise ValueError(
            f"{option} is {len(reason):,} characters, more than the {REASON_LIMIT:,} kept with a promotion: give "
            "a sentence (a ticket's number or link for more); nothing was changed"
        )


def _cut(text: str, keep: int) -> str:
    return text if keep >= len(text) else f"{text[:keep]} [... {len(text) - keep:,} characters cut]"


def _fitted(entry: dict[str, Any], limit: int = TAG_LIMIT) -> str:
    """``entry`` as JSON of at most ``limit`` characters: its free text (the reason, the warnings) shortened
    with a marker saying how much was cut, never the JSON text itself (JSON escapes make a text of 1,000
    characters up to 6,000)."""
    texts = [entry.get("reason") or "", *entry.get("warnings", [])]
    cap = max(map(len, texts))
    out, text = entry, json.dumps(entry)
    while len(text) > limit and cap > 0:
        cap //= 2  # a few rounds; every text longer than the cap says how much of it was cut
        out = {**entry, "reason": _cut(entry["reason"], cap) if entry.get("reason") else entry.get("reason")}
        if "warnings" in entry:
            out["warnings"] = [_cut(w, cap) for w in entry["warnings"]]
        text = json.dumps(out)
    if len(text) > limit:  # only the markers left of many warnings: say they were dropped
        text = json.dumps({**out, "warnings": [f"[{len(entry.get('warnings', []))} warnings cut]"]})
    return text


def record_champion(
    client: Any,
    name: str,
    *,
    version: str,
    previous: str | None,
    how: str,
    reason: str | None = None,
    warnings: Sequence[str] = (),
) -> None:
    """Keep one move of ``champion`` to ``version`` on the registered model, as its own tag (the
    version's own tags say only its latest): when, from which version, how (the gate, forced at
    training, by hand), why, what the person was warned of (a hand promotion to a worse version), and
    the operating-system user who ran it. :func:`champion_history` reads them back: which version was
    champion on a given date, and why. The tag is whole JSON within :data:`TAG_LIMIT`: a long reason or
    warning is shortened with a marker."""
    now = dt.datetime.now(dt.UTC)
    entry = {
        "at": now.isoformat(timespec="milliseconds"),
        "version": str(version),
        "previous": previous,
        "how": how,
        "reason": reason,
        "warnings": list(warnings),
        "by": _user(),
    }
    client.set_registered_model_tag(name, HISTORY_PREFIX + now.strftime("%Y%m%dT%H%M%S%fZ"), _fitted(entry))


def champion_history(client: Any, name: str, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """Every move of ``champion`` :func:`record_champion` kept, oldest first (none before 2026-12-07).

    A tag that is not JSON (before 2026-12-07 a long ``--reason`` cut it mid-JSON) is left out and said in
    ``problems``, naming the tag: one unreadable move must not fail the listing of every model."""
    tags = client.get_registered_model(name).tags or {}
    moves = []
    for key, value in sorted(tags.items()):
        if not key.startswith(HISTORY_PREFIX):
            continue
        try:
            move = json.loads(value)
        except (json.JSONDecodeError, TypeError) as exc:
            move = exc
        if not isinstance(move, dict) or not {"at", "version", "how", "by"} <= move.keys():
            if problems is not None:
                why = move if isinstance(move, Exception) else "not a move of champion"
                problems.append(
                    f"{name}: champion history tag '{key}' is not readable ({why}; {len(value or ''):,} characters, "
                    "cut by a crmscore before 2026-12-07?): left out of the history"
                )
            continue
        moves.append(move)
    return moves


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
    (the crmscore version and git commit that trained it, ``training.tracking.code_version``),
    ``"config_against", "config_changes"`` (:func:`config_changes`; a config too long for its tag is
    read from the run's ``config.json``)``}``; ``"history"`` (:func:`champion_history`) and ``"warnings"``
    (history tags that could not be read, each named: the rest is listed). A task without a registered
    model has an empty list.

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
        for row in rows:
            row["config"] = _whole_config(client, row["config"], row["run_id"])
        for row, older in zip(rows, [*rows[1:], None] if rows else [], strict=True):
            row["config_against"] = older["version"] if older else None
            row["config_changes"] = config_changes(older["config"], row["config"], task) if older else []
        for row in rows:
            del row["config"]
        problems: list[str] = []
        history = champion_history(client, name, problems) if rows else []
        listings.append(
            {
                "model_name": name,
                "tracking_uri": config.tracking_uri,
                "versions": rows,
                "history": history,
                "warnings": problems,
            }
        )
    return listings


def config_tag(ran: dict[str, Any], limit: int = TAG_LIMIT) -> str:
    """The version's ``config`` tag: the config a run used (``config.json`` of its run) as JSON, whole when it
    fits ``limit``. Until 2026-12-07 it was cut at 4,900 characters mid-JSON (a lead config of 40 filters), and
    ``crmscore models`` then said nothing changed though the seed had. Otherwise a compact form that is whole
    JSON too: ``{"name", "truncated": true, "digest"`` (of the whole, so two equal configs still compare equal)
    ``, "engine", "models"}`` and the ``tables`` without their filters, or without the tables when that is still
    too long; :func:`list_versions` reads the whole from the run's ``config.json``."""
    whole = json.dumps(ran)
    if len(whole) <= limit:
        return whole
    short = {
        "name": ran.get("name"),
        "truncated": True,
        "digest": hashlib.sha256(whole.encode()).hexdigest(),
        "engine": ran.get("engine"),
        "models": ran.get("models"),
        "tables": _unfiltered(ran.get("tables") or {}),
    }
    for drop in ((), ("tables",), ("tables", "models")):
        text = json.dumps({k: v for k, v in short.items() if k not in drop})
        if len(text) <= limit:
            return text
    return json.dumps({"name": str(ran.get("name"))[:200], "truncated": True, "digest": short["digest"]})


def _unfiltered(tables: Any) -> Any:
    if not isinstance(tables, dict):
        return tables
    return {t: {k: v for k, v in s.items() if k != "filters"} if isinstance(s, dict) else s for t, s in tables.items()}


def _whole_config(client: Any, tag: str | None, run_id: str | None) -> str | None:
    """A version's config as JSON text: its tag when whole, else the run's ``config.json`` (a config too long
    for the tag, or a tag a crmscore before 2026-12-07 cut mid-JSON); the tag as it is when the artifact
    cannot be read (:func:`config_changes` then says it could not compare)."""
    if not tag:
        return tag
    try:
        if not json.loads(tag).get("truncated"):
            return tag
    except (ValueError, AttributeError):
        pass
    if not run_id:
        return tag
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return Path(client.download_artifacts(run_id, "config.json", tmp)).read_text()
    except Exception:  # noqa: BLE001 - a run without it, or its files moved: compare what the tag holds
        return tag


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def config_changes(older: str | None, newer: str | None, task: str) -> list[str]:
    """What the config a version was trained with (its ``config`` tag, JSON) changed against the version
    before it, for ``task``: the tables' mapping and the task's own model settings, as
    ``models.churn.seed 7 (was 42)``; the test cut-off, listed beside each version, and other tasks'
    settings are left out. Empty when either has no tag (a version trained before it was kept). When the
    two cannot be compared in full (a tag cut mid-JSON, or :func:`config_tag`'s compact form, and no
    ``config.json`` to read instead) the last line says so: an empty list read as "nothing changed"."""
    if not older or not newer:
        return []
    try:
        loaded = [json.loads(older), json.loads(newer)]
    except (json.JSONDecodeError, TypeError):
        loaded = []
    if len(loaded) != 2 or not all(isinstance(data, dict) for data in loaded):
        return [
            "not compared: a config tag is not whole JSON (cut by a crmscore before 2026-12-07) and its run's "
            "config.json could not be read"
        ]
    cut = [data for data in loaded if data.get("truncated")]
    if cut and len(cut) == 2 and loaded[0].get("digest") == loaded[1].get("digest"):
        return []  # the same whole config
    if cut:  # compare only what both hold: the compact form's sections, the tables without their filters
        shared = {"engine", "models", "tables"}.intersection(*loaded)
        loaded = [
            {k: _unfiltered(v) if k == "tables" else v for k, v in data.items() if k in shared} for data in loaded
        ]
    before, after = (_flat(data) for data in loaded)
    keep = (f"models.{task}.", "tables.", "engine")
    out = []
    for key in sorted(before.keys() | after.keys()):
        if not key.startswith(keep) or key == f"models.{task}.test_cutoff" or before.get(key) == after.get(key):
            continue
        out.append(
            f"{key} {json.dumps(after[key]) if key in after else '(removed)'}"
            f" (was {json.dumps(before[key]) if key in before else 'unset'})"
        )
    if cut:
        out.append(
            "compared in part: a config too long for its tag is kept there without the tables' filters (or without "
            "the tables) and its run's config.json could not be read"
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
    cut-off, so their metrics do not compare; a lower test ROC AUC; grade C), kept with the promotion too
    (``manual_promotion`` and the champion history) so an auditor sees the person was warned.

    Raises
    ------
    ValueError
        No such version; the message lists the registered ones. A ``reason`` over :data:`REASON_LIMIT`
        characters (nothing moves).
    NoChampionError
        No registered model (or no registry file) for the task.
    ChampionFilesError
        The version's files cannot be read: the alias is not moved.
    """
    check_reason(reason)
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
    client.set_model_version_tag(name, wanted, MANUAL_TAG, manual_note(note, reason, warnings))
    record_champion(
        client,
        name,
        version=wanted,
        previous=previous,
        how="by hand (crmscore promote)",
        reason=reason,
        warnings=warnings,
    )
    return {
        "model_name": name,
        "version": wanted,
        "previous": previous,
        "changed": True,
        "test_cutoff": row["test_cutoff"],
        "warnings": warnings,
    }


def manual_note(note: str, reason: str | None, warnings: Sequence[str]) -> str:
    """The ``manual_promotion`` tag: when and replacing which version, why, and what the person was warned of
    when promoting (a lower test ROC AUC, another test cut-off): until 2026-12-07 a promotion to a worse
    version kept no trace of its warning, and an auditor could not tell a warned choice from an unwarned one.
    Within :data:`TAG_LIMIT`, the warnings shortened with a marker if they must be."""
    text = f"{note}: {reason}" if reason else note
    if not warnings:
        return text
    room = max(0, TAG_LIMIT - len(text) - len(" (warned: )") - 2 * len(warnings))
    cap = room // len(warnings)
    return f"{text} (warned: " + "; ".join(_cut(w, max(0, cap - 40)) if len(w) > cap else w for w in warnings) + ")"


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
            why += f" (warned: {'; '.join(move['warnings'])})" if move.get("warnings") else ""
            lines.append(
                f"    {move['at'][:19].replace('T', ' ')} UTC  v{move['version']} (was {was}), {move['how']}, "
                f"by {move['by']}{why}"
            )
    return "\n".join(lines)
