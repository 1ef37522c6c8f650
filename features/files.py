"""Output files written whole or not at all, readable by whoever a new file would be readable by.

Every file crmscore writes for someone else to read (feature snapshots, batch scores, the
at-risk list, metrics JSON, reports) goes through :func:`atomic_output`: the content is
written to a temporary file in the target's folder and moved into place with ``os.replace``,
so a reader never sees half a file and a failed run leaves the previous file as it was.

``tempfile.mkstemp`` creates its file with mode 0600, which ``os.replace`` would carry over:
a list written by a nightly job's account would then be unreadable for the team it is for.
The finished file gets the mode the process's umask gives a new file (0644 under the usual
022), or, when it replaces a file, that file's mode.

:func:`check_output` refuses, before any work, an output the run could not write (an unknown
format, a folder where the file should be, a folder that cannot be written), so a nightly
job fails in its first second rather than after scoring everyone; it leaves nothing behind.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["OutputError", "atomic_output", "check_output", "new_file_mode", "write_text_atomic"]

_PROC_STATUS = "/proc/self/status"


class OutputError(ValueError):
    """An output path the run cannot write; the message names the path and the reason."""


def _label(out: Path, option: str | None) -> str:
    """How the errors name the output: ``--metrics-out m.json``, or the path alone."""
    return f"{option} {out}" if option else str(out)


def _existing_folder(out: Path, name: str, *, suffixes: Iterable[str] | None) -> Path:
    """The nearest folder of ``out`` that exists, after the checks that need no writing (errors start with ``name``)."""
    if out.is_dir():
        raise OutputError(f"{name}: is a folder; give the path of the file to write")
    if suffixes is not None:
        allowed = tuple(suffixes)
        if out.suffix.lower() not in allowed:
            raise OutputError(f"{name}: unknown format {out.suffix!r}; use {' or '.join(allowed)}")
    for folder in (out.parent, *out.parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise OutputError(f"{name}: {folder} is a file, not a folder")
            return folder
    raise OutputError(f"{name}: none of its folders exists")


def _temporary(out: Path, folder: Path, name: str) -> tuple[int, str]:
    """A temporary file in ``folder``, named after ``out``: ``(fd, path)``, or :class:`OutputError`."""
    try:
        return tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(f"{name}: cannot write in {folder} ({exc.strerror or exc})") from exc


def _prepare(out: Path, *, suffixes: Iterable[str] | None, option: str | None) -> tuple[int, str]:
    """Create ``out``'s folders and a temporary file beside it: ``(fd, path)``, or :class:`OutputError`."""
    name = _label(out, option)
    _existing_folder(out, name, suffixes=suffixes)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{name}: cannot create {out.parent} ({exc.strerror or exc})") from exc
    return _temporary(out, out.parent, name)


def check_output(out: str | Path, *, suffixes: Iterable[str] | None = None, option: str | None = "--out") -> Path:
    """Check that ``out`` can be written, before the work that produces it; return it as a Path.

    ``suffixes`` (e.g. ``(".parquet", ".csv")``) are the formats the writer knows; ``option``
    (``--out``, ``--metrics-out``) names the command-line option in the errors. The check
    creates a temporary file in the nearest folder of ``out`` that exists (where the write will
    create the missing folders), then removes it: nothing is left behind, not even a folder, so
    a run refused or failed later leaves the file system as it found it.

    Raises
    ------
    OutputError
        An unknown suffix, a folder at ``out``, a file where a folder should be, or a folder
        that cannot be written to.
    """
    out = Path(out)
    name = _label(out, option)
    fd, probe = _temporary(out, _existing_folder(out, name, suffixes=suffixes), name)
    os.close(fd)
    Path(probe).unlink(missing_ok=True)
    return out


def new_file_mode() -> int:
    """The permission bits ``open(path, "w")`` gives a new file under the current umask.

    Linux reports the umask in ``/proc/self/status``; elsewhere POSIX reads it only by setting
    it, so it is set to 0o077 and restored at once (a file another thread creates in between
    gets a stricter mode, never a looser one).
    """
    try:
        with open(_PROC_STATUS, encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return 0o666 & ~mask


# Write errors that are the output's place, not the run's: no space or quota left, a file too large, a
# read-only file system.
_FULL = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS") if hasattr(errno, name))


@contextmanager
def atomic_output(
    out: str | Path, *, suffixes: Iterable[str] | None = None, option: str | None = None
) -> Iterator[Path]:
    """Yield a temporary path next to ``out``; move it to ``out`` when the block succeeds.

    The parent folder is created when missing. If the block raises, the temporary file is
    removed and ``out`` is left untouched (absent, or its previous content). ``suffixes`` and
    the errors are those of :func:`check_output`.
    """
    out = Path(out)
    missing = [folder for folder in out.parents if not folder.exists()]  # the folders the write creates
    fd, name = _prepare(out, suffixes=suffixes, option=option)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        mode = stat.S_IMODE(out.stat().st_mode) if out.exists() else new_file_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, out)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        for folder in missing:  # innermost first: a failed run leaves no empty folder behind
            try:
                folder.rmdir()
            except OSError:
                break
        if isinstance(exc, OSError) and exc.errno in _FULL:
            # A full disk or a read-only file system: the path and the reason, not a 55-line traceback.
            raise OutputError(f"{_label(out, option)}: cannot be written ({exc.strerror or exc})") from exc
        raise


def write_text_atomic(out: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, line endings as given) to ``out`` through :func:`atomic_output`."""
    with atomic_output(out) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    return Path(out)
