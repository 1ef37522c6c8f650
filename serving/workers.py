"""The worker processes of one server, and a ``/reload`` that reaches every one of them.

BentoML runs ``serving.workers`` processes of the service behind one port, each holding its own
models and snapshots (:class:`serving.runtime.Runtime`), and a request reaches whichever accepts
it. A reload done by the worker that got ``POST /reload`` alone would leave the others serving
what they loaded before, and a call by id would get one champion or the other by chance.

So the workers of one server share a folder (:meth:`ReloadChannel.of_server`, named after the
server process, their common parent) holding a reload *generation* and each worker's
acknowledgement of the generation it has loaded. ``/reload`` raises the generation
(:meth:`ReloadChannel.request`); every worker, the one that got the call included, runs
:func:`follow`, which sees the new generation within ``POLL_S``, reloads and acknowledges it,
with the error when its reload failed; ``/reload`` answers once every live worker has
(:func:`reload_all`). One worker goes the same way, so there is one path to test.

A worker that starts while a reload is going on reads the generation before it loads (the
service does), so it either loads after the request or sees it and reloads. Acknowledgements of
dead workers (a worker BentoML restarted) are removed, and so are the folders of servers no
longer running. Files, not a socket or a signal: the workers share no port of their own, and a
file written with :func:`os.replace` is read whole or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from serving.runtime import LOG, ModelUnavailable, Runtime, State

__all__ = ["POLL_S", "Ack", "ChannelError", "ReloadChannel", "follow", "reload_all"]

# Seconds between a worker's looks at the generation: what a /reload waits at most before every
# worker has started reloading. A look reads a file of a few bytes.
POLL_S = 0.05
PREFIX = "crmscore-workers-"


@dataclass(frozen=True)
class Ack:
    """A worker's acknowledgement: the generation it loaded, or failed to load (``error``)."""

    pid: int
    generation: int
    error: str | None = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once: a reader sees the old file or the new one."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


class ChannelError(RuntimeError):
    """The reload channel's folder is not this user's own (made first by someone else)."""


def _check_private(folder: Path) -> None:
    """The channel's folder must be a folder of this user that no one else can write: its name in the
    shared temp folder is predictable (the server's pid), and another local user who made it first could
    ask for reloads or put an error of their choosing in /reload's answer."""
    st = folder.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ChannelError(f"the workers' reload folder {folder} is not a folder (a link?): remove it and start again")
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise ChannelError(
            f"the workers' reload folder {folder} belongs to another user (uid {st.st_uid}) or others may write "
            f"to it (mode {stat.S_IMODE(st.st_mode):o}): remove it and start again"
        )


class ReloadChannel:
    """The reload generation and the workers' acknowledgements in ``folder``, seen by worker ``pid``."""

    def __init__(self, folder: Path, *, pid: int | None = None) -> None:
        self.folder = Path(folder)
        self.pid = os.getpid() if pid is None else pid
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _check_private(self.folder)

    @staticmethod
    def folder_of(server_pid: int, root: Path | None = None) -> Path:
        """Where the channel of the server process ``server_pid`` is: ``<temp>/crmscore-workers-<pid>``
        (``crmscore serve`` removes it when the server stops)."""
        return (Path(tempfile.gettempdir()) if root is None else root) / f"{PREFIX}{server_pid}"

    @classmethod
    def of_server(cls, root: Path | None = None) -> ReloadChannel:
        """The channel of this worker's server, its parent process. Folders of servers no longer
        running (started otherwise than by ``crmscore serve``, or killed) are removed first."""
        root = Path(tempfile.gettempdir()) if root is None else root
        for folder in root.glob(f"{PREFIX}*"):
            pid = folder.name.removeprefix(PREFIX)
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)
        return cls(cls.folder_of(os.getppid(), root))

    def generation(self) -> int:
        """The latest reload asked for (0 before any)."""
        try:
            return int((self.folder / "generation").read_text())
        except FileNotFoundError:
            return 0

    def request(self) -> int:
        """Ask every worker to reload; returns the new generation they will acknowledge."""
        with (self.folder / "lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two /reload calls at once get two generations
            generation = self.generation() + 1
            _write(self.folder / "generation", str(generation))
        return generation

    def acknowledge(self, generation: int, error: str | None = None) -> None:
        """This worker has loaded ``generation``, or failed to (``error``: it serves what it had)."""
        ack = {"pid": self.pid, "generation": generation, "error": error}
        _write(self.folder / f"ack-{self.pid}.json", json.dumps(ack))

    def acks(self) -> dict[int, Ack]:
        """The live workers' acknowledgements, by pid; those of dead workers are removed."""
        found = {}
        for path in self.folder.glob("ack-*.json"):
            with contextlib.suppress(FileNotFoundError):
                ack = Ack(**json.loads(path.read_text()))
                if _alive(ack.pid):
                    found[ack.pid] = ack
                else:
                    path.unlink(missing_ok=True)
        return found

    def wait(self, generation: int, timeout_s: float) -> tuple[list[Ack], list[int]]:
        """Wait until every live worker has acknowledged ``generation`` (or a later one), for at most
        ``timeout_s``; returns the acknowledgements and the pids of the workers still behind."""
        deadline = time.monotonic() + timeout_s
        while True:
            acks = self.acks()
            behind = sorted(pid for pid, ack in acks.items() if ack.generation < generation)
            if not behind or time.monotonic() >= deadline:
                return [ack for ack in acks.values() if ack.generation >= generation], behind
            time.sleep(0.005)  # only while a /reload waits


def follow(
    runtime: Runtime,
    channel: ReloadChannel,
    loaded: int,
    *,
    on_change: Callable[[list[str], State], None],
    stop: threading.Event,
    first: Callable[[], None] | None = None,
    poll_s: float = POLL_S,
) -> threading.Thread:
    """Reload ``runtime`` whenever ``channel``'s generation passes ``loaded`` (the generation read
    before the runtime was built), in a daemon thread until ``stop`` is set, and acknowledge it.

    Each reload is a :meth:`Runtime.refresh` with ``first`` (the service reads its API keys again)
    and ``on_change``, whose failures are acknowledged as the error; ``on_change`` runs before the
    acknowledgement, so that what a worker reports (its ``/metrics`` gauges) has moved when
    ``/reload`` answers."""

    def loop() -> None:
        seen = loaded
        while not stop.wait(poll_s):
            target = channel.generation()
            if target <= seen:
                continue
            seen = target
            channel.acknowledge(target, runtime.refresh(first, on_change))

    channel.acknowledge(loaded)
    thread = threading.Thread(target=loop, name="crmscore-reload-follow", daemon=True)
    thread.start()
    return thread


def reload_all(channel: ReloadChannel, *, timeout_s: float) -> int:
    """Have every worker of the server reload (:func:`follow`), and wait until each has; returns how
    many did.

    Raises
    ------
    ModelUnavailable
        A worker's reload failed (it keeps serving the models it had loaded), or a worker had not
        finished within ``timeout_s`` (it keeps serving them until it has); the message names them.
    """
    generation = channel.request()
    acks, behind = channel.wait(generation, timeout_s)
    failed = [ack for ack in acks if ack.error is not None]
    if behind:
        LOG.warning("reload: workers %s not finished after %.0f s", behind, timeout_s)
        raise ModelUnavailable(
            f"reload: {len(behind)} of {len(acks) + len(behind)} workers (pid {', '.join(map(str, behind))}) "
            f"had not finished after {timeout_s:.0f} s; they serve the models loaded before until they do"
        )
    errors = sorted({ack.error for ack in failed if ack.error})
    if failed and len(failed) == len(acks) and len(errors) == 1:
        raise ModelUnavailable(errors[0])  # every worker failed alike: as one worker says it
    if failed:
        pids = ", ".join(str(ack.pid) for ack in failed)
        raise ModelUnavailable(
            f"reload failed in {len(failed)} of {len(acks)} workers (pid {pids}), which serve the models loaded "
            f"before while the others serve the new ones; POST /reload again once the cause is fixed: "
            + " | ".join(errors)
        )
    return len(acks)
