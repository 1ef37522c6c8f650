"""The scoring API's audit trail: who took which list of customers, and who changed what is served.

A list (``/at_risk``, ``/top/...``) hands out customers in bulk with the reasons behind their
scores, which state their purchase history; ``/reload`` changes the champions every caller gets.
Each such call is accounted for by :func:`record`: one line in the server's log, and with
``serving.audit_log`` one JSON record appended to that file. The caller is named by its key's id
(:func:`serving.auth.key_id`, never the key), role and address. Scores by id or posted record are
not audited one by one: a log line cost more than a score.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from serving.auth import KEY_ID_SCOPE_KEY, ROLE_SCOPE_KEY
from serving.lists import clean_ids
from serving.runtime import LOG, ModelUnavailable

__all__ = ["AuditUnwritable", "exclude_digest", "of_list", "record"]

# A list's options that are not asked for (the service's own) or are too long for a record (the ids).
_NOT_OPTIONS = ("config", "exclude", "id_key")


class AuditUnwritable(ModelUnavailable):
    """The audit file cannot be written: a list is refused (503) rather than handed out unaccounted for."""


def of_list(task: str, body: Mapping[str, Any], options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """What a list call took, from its answer (:func:`serving.runtime.ranked_list`) and its options:
    the log line's text and the record's fields (the options asked for; the suppression list's size,
    digest and the rows it left off; the ids handed out)."""
    asked = {k: v for k, v in options.items() if k not in _NOT_OPTIONS and v is not None and v is not False}
    if isinstance(asked.get("where"), Mapping):
        asked["where"] = {name: _short(spec) for name, spec in asked["where"].items()}
    sent = clean_ids(options.get("exclude") or ())
    excluded = int(body.get("n_excluded", 0))
    text = (
        f"{body['n_listed']} of {body['n_matched']} matching rows of the {task} snapshot as of {body['as_of']} "
        f"({body['model_name']} v{body['model_version']}), {excluded} rows excluded by {len(sent)} ids sent, "
        + json.dumps(asked, sort_keys=True, default=str)
    )
    fields = {
        "task": task,
        "as_of": body["as_of"],
        "model_name": body["model_name"],
        "model_version": body["model_version"],
        "rows_listed": body["n_listed"],
        "rows_matched": body["n_matched"],
        # The suppression list: how many ids it held, which (a digest of them, cleaned and sorted, to
        # check against the file a team says it sent: exclude_digest), and how many rows it left off.
        "ids_sent": len(sent),
        "exclude_digest": exclude_digest(sent) if sent else None,
        "ids_excluded": excluded,
        "options": asked,
        # Who was handed out, in the list's order: the record alone shows it, whatever the snapshot is later.
        "ids_listed": list(body.get("listed_ids") or ()),
    }
    return text, fields


# A ``where`` list longer than this is recorded by its length and digest (a segment of 200,000 ids made
# log lines of 2 MB).
LISTED_VALUES = 20
LISTED_CHARS = 100


def _short(spec: Any) -> Any:
    """A ``where`` entry as the record keeps it: long lists of values, and long values, by count and
    :func:`exclude_digest`."""
    if isinstance(spec, Mapping):
        return {op: _short(operand) for op, operand in spec.items()}
    if isinstance(spec, (list, tuple)) and len(spec) > LISTED_VALUES:
        return f"<{len(spec):,} values, digest {exclude_digest({str(v) for v in spec})}>"
    if isinstance(spec, (list, tuple)):
        return [_short(value) for value in spec]
    if isinstance(spec, str) and len(spec) > LISTED_CHARS:  # a value the API takes up to 1,000 characters
        return f"{spec[:LISTED_CHARS]}... <{len(spec):,} characters, digest {exclude_digest([spec])}>"
    return spec


def exclude_digest(ids: Iterable[str]) -> str:
    """The first 16 hex digits of the SHA-256 of a suppression list's ids as the API cleans them
    (:func:`serving.lists.clean_ids`), sorted, one per line: ``LC_ALL=C sort -u ids.txt | sha256sum``
    of a file of clean ids gives the same."""
    return hashlib.sha256("".join(f"{i}\n" for i in sorted(ids)).encode()).hexdigest()[:16]


def record(scope: Mapping[str, Any], what: str, fields: Mapping[str, Any], file: str | None) -> None:
    """Account for one call: a line in the log with the route, the caller's key id, role and address
    (a proxy's, behind one) from the request's ASGI ``scope``, and ``what``; with ``file``, the same
    and ``fields`` as one JSON line appended to it. The workers of a server share the file: each
    record is one write to a file opened for appending.

    Raises
    ------
    AuditUnwritable
        ``file`` cannot be written; the message names it.
    """
    path, client = scope.get("path", ""), (scope.get("client") or ("unknown",))[0]
    key, role = scope.get(KEY_ID_SCOPE_KEY), scope.get(ROLE_SCOPE_KEY)
    LOG.info("audit: %s by key %s (%s) from %s: %s", path, key, role, client, what)
    if file is None:
        return
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    entry = {"time": now, "route": path, "key_id": key, "role": role, "client": client, **fields}
    try:
        with open(file, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry, default=str) + "\n")
    except OSError as exc:
        raise AuditUnwritable(
            f"serving.audit_log {file} cannot be written ({exc}): lists are refused until it can"
        ) from exc
