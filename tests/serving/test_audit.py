"""The audit trail's records, on hand-made answers and request scopes; the server's own in test_api.py."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest

from serving.audit import AuditUnwritable, of_list, record
from serving.auth import KEY_ID_SCOPE_KEY, ROLE_SCOPE_KEY, key_id

BODY = {
    "n_listed": 2,
    "n_matched": 40,
    "n_excluded": 1,
    "listed_ids": ["12346", "14911"],
    "as_of": "2011-12-09",
    "model_name": "crmscore-churn",
    "model_version": "3",
}
SCOPE = {
    "path": "/at_risk",
    "client": ("10.0.0.7", 51234),
    KEY_ID_SCOPE_KEY: key_id("s3cret"),
    ROLE_SCOPE_KEY: "marketer",
}


def test_a_list_is_described_by_what_was_asked_and_what_came_back():
    # Three ids sent (one as a spreadsheet writes it), one of them in the snapshot: the record says both.
    options = {"top": 2, "k": 0, "tiers": ["high"], "where": None, "moved_up": False, "exclude": ["3", "1.0", " 2"]}
    options.update(config=object(), id_key="id", format="csv")
    text, fields = of_list("churn", BODY, options)
    # k=0 was asked for (it is not "not given"); None and False are the defaults, left out.
    assert fields == {
        "task": "churn",
        "as_of": "2011-12-09",
        "model_name": "crmscore-churn",
        "model_version": "3",
        "rows_listed": 2,
        "rows_matched": 40,
        "ids_sent": 3,
        # printf '1\n2\n3\n' | sha256sum: the file a team says it sent can be checked against it.
        "exclude_digest": hashlib.sha256(b"1\n2\n3\n").hexdigest()[:16],
        "ids_excluded": 1,
        "options": {"top": 2, "k": 0, "tiers": ["high"], "format": "csv"},
        "ids_listed": ["12346", "14911"],
    }
    assert text == (
        "2 of 40 matching rows of the churn snapshot as of 2011-12-09 (crmscore-churn v3), 1 rows excluded by 3 ids "
        "sent, "
        '{"format": "csv", "k": 0, "tiers": ["high"], "top": 2}'
    )


def test_a_record_goes_to_the_log_and_as_one_json_line_to_the_file(tmp_path, caplog):
    audit = tmp_path / "audit.jsonl"
    with caplog.at_level(logging.INFO, logger="bentoml.crmscore"):
        record(SCOPE, "2 of 40", {"task": "churn"}, str(audit))
        record(SCOPE, "again", {"task": "lead"}, str(audit))
        record(SCOPE, "log only", {}, None)
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k != "time"} for r in lines] == [
        {"route": "/at_risk", "key_id": key_id("s3cret"), "role": "marketer", "client": "10.0.0.7", "task": t}
        for t in ("churn", "lead")
    ]
    assert lines[0]["time"].endswith("+00:00")
    logged = [r.getMessage() for r in caplog.records]
    assert logged[0] == f"audit: /at_risk by key {key_id('s3cret')} (marketer) from 10.0.0.7: 2 of 40"
    assert len(logged) == 3 and not any("s3cret" in m for m in logged) and "s3cret" not in audit.read_text()


def test_an_audit_file_that_cannot_be_written_names_itself(tmp_path):
    folder = tmp_path / "audit.jsonl"
    folder.mkdir()
    with pytest.raises(AuditUnwritable, match=f"serving.audit_log {folder} cannot be written"):
        record(SCOPE, "x", {}, str(folder))


def test_a_long_where_list_is_recorded_by_its_count_and_digest():
    """A segment of 200,000 ids in ``where`` made audit lines of 2 MB."""
    ids = [str(i) for i in range(1000)]
    options = {"top": 5, "where": {"customer_id": ids, "country": ["France"], "age": {">=": 40, "!=": ids}}}
    text, fields = of_list("churn", BODY, options)
    digest = hashlib.sha256("".join(f"{i}\n" for i in sorted(ids)).encode()).hexdigest()[:16]
    assert fields["options"]["where"] == {
        "customer_id": f"<1,000 values, digest {digest}>",
        "country": ["France"],
        "age": {">=": 40, "!=": f"<1,000 values, digest {digest}>"},
    }
    assert len(text) < 400


def test_a_long_where_value_is_recorded_by_its_start_length_and_digest():
    from serving.audit import _short, exclude_digest

    value = "Fr" + "a" * 5_000
    assert _short(["France", value]) == [
        "France",
        f"{value[:100]}... <5,002 characters, digest {exclude_digest([value])}>",
    ]
