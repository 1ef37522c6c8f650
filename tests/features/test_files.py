"""Output files: whole or not at all, with the permissions a new file gets (not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat

import pytest

from features.files import OutputError, atomic_output, check_output, new_file_mode


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_a_new_file_gets_the_umask_mode(tmp_path, umask, mask, expected):
    umask(mask)
    out = tmp_path / "lists" / "at_risk.csv"  # the folder is created
    with atomic_output(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".at_risk.csv.")
        tmp.write_text("customer_id\n1\n")
    assert new_file_mode() == expected
    assert _mode(out) == expected and out.read_text() == "customer_id\n1\n"
    assert [p.name for p in out.parent.iterdir()] == ["at_risk.csv"]


def test_the_umask_reads_the_same_without_proc(tmp_path, umask, monkeypatch):
    umask(0o027)
    from_proc = new_file_mode()
    monkeypatch.setattr("features.files._PROC_STATUS", str(tmp_path / "no-proc"))  # not Linux: set and restore
    assert from_proc == new_file_mode() == 0o640
    assert os.umask(0o027) == 0o027  # restored


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    out = tmp_path / "scores.csv"
    out.write_text("old\n")
    out.chmod(0o664)  # a group-writable drop folder
    with atomic_output(out) as tmp:
        tmp.write_text("new\n")
    assert _mode(out) == 0o664 and out.read_text() == "new\n"


def test_a_failure_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    out = tmp_path / "scores.csv"
    out.write_text("previous\n")
    with pytest.raises(RuntimeError, match="scoring failed"), atomic_output(out) as tmp:
        tmp.write_text("half a fi")
        raise RuntimeError("scoring failed")
    assert out.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


def test_check_output_refuses_what_the_write_could_not_do(tmp_path):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_folder").mkdir()
    with pytest.raises(OutputError, match=r"scores\.json: unknown format '\.json'; use \.parquet or \.csv"):
        check_output(tmp_path / "scores.json", suffixes=(".parquet", ".csv"))
    with pytest.raises(OutputError, match="a_folder: is a folder; give the path of the file to write"):
        check_output(tmp_path / "a_folder")
    with pytest.raises(OutputError, match=r"a_file/deeper/s\.csv: .*a_file is a file, not a folder"):
        check_output(tmp_path / "a_file" / "deeper" / "s.csv")
    read_only = tmp_path / "read_only"
    read_only.mkdir(mode=0o555)
    if os.geteuid() != 0:  # root writes anyway
        with pytest.raises(OutputError, match=r"cannot write in .*read_only \(Permission denied\)"):
            check_output(read_only / "s.csv")
    read_only.rmdir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "a_folder"]  # nothing left behind
    # A writable path passes and leaves nothing behind, not even its missing folders: a run
    # refused later (bad config, no model) must not leave an empty folder.
    assert (
        check_output(tmp_path / "new" / "deeper" / "s.csv", suffixes=(".csv",)) == tmp_path / "new" / "deeper" / "s.csv"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "a_folder"]
    # The write creates them.
    with atomic_output(tmp_path / "new" / "deeper" / "s.csv") as tmp:
        tmp.write_text("x\n")
    assert (tmp_path / "new" / "deeper" / "s.csv").read_text() == "x\n"
    with pytest.raises(OutputError, match="is a file, not a folder"), atomic_output(tmp_path / "a_file" / "s.csv"):
        pass


def test_a_full_disk_is_an_output_error_and_leaves_no_folder_the_write_made(tmp_path):
    """A full disk under ``score --out`` was a 55-line traceback, exit 1, and left the empty folder
    the write had created (the README promises none)."""
    import errno

    out = tmp_path / "scores" / "nightly" / "churn.parquet"
    with pytest.raises(OutputError) as failed, atomic_output(out) as tmp:
        tmp.write_bytes(b"part of")
        raise OSError(errno.ENOSPC, "No space left on device")  # as the Parquet writer raises it
    assert str(failed.value) == f"{out}: cannot be written (No space left on device)"
    assert list(tmp_path.iterdir()) == []  # neither scores/ nor scores/nightly/ stays
    # Another error is the run's own, not the output's: raised as it is, and still nothing left behind.
    with pytest.raises(KeyError), atomic_output(out):
        raise KeyError("probability")
    assert list(tmp_path.iterdir()) == []
