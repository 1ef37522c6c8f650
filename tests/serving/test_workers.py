"""A /reload that reaches every worker of a server: the generation, the acknowledgements, follow and reload_all.

Workers are played here by runtimes in this process, each with a channel of its own pid: this
process's for one, a live ``sleep`` process's for the others (what makes a worker count is a live
pid), on the real files of a folder. The real thing, two BentoML workers behind one port, is
tested in ``test_api.py``.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator

import pytest

from serving.runtime import ModelUnavailable, Runtime
from serving.workers import PREFIX, ReloadChannel, follow, reload_all
from tests.serving.test_runtime import config, loader  # noqa: F401 (the config fixture)


@pytest.fixture
def sleeper() -> Iterator[int]:
    """The pid of a live process (another worker's, as far as the channel can tell)."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_generations_count_up_and_only_live_workers_acknowledge(tmp_path, sleeper):
    channel = ReloadChannel(tmp_path)
    assert channel.generation() == 0
    assert [channel.request(), channel.request()] == [1, 2]
    assert ReloadChannel(tmp_path, pid=sleeper).generation() == 2  # one folder, one generation
    channel.acknowledge(2)
    ReloadChannel(tmp_path, pid=sleeper).acknowledge(1, "boom")
    gone = dead_pid()
    ReloadChannel(tmp_path, pid=gone).acknowledge(2)
    acks = channel.acks()
    assert {pid: (a.generation, a.error) for pid, a in acks.items()} == {os.getpid(): (2, None), sleeper: (1, "boom")}
    assert not (tmp_path / f"ack-{gone}.json").exists()  # a dead worker's acknowledgement is removed
    done, behind = channel.wait(2, timeout_s=0.1)
    assert [a.pid for a in done] == [os.getpid()] and behind == [sleeper]


def test_the_channel_of_a_server_is_named_after_it_and_dead_servers_folders_go(tmp_path, sleeper):
    stale, running = tmp_path / f"{PREFIX}{dead_pid()}", tmp_path / f"{PREFIX}{sleeper}"
    stale.mkdir()
    running.mkdir()
    channel = ReloadChannel.of_server(tmp_path)
    assert channel.folder == tmp_path / f"{PREFIX}{os.getppid()}" and channel.folder.is_dir()
    assert not stale.exists() and running.exists()


def test_reload_all_answers_once_every_worker_has_reloaded(config, tmp_path, sleeper):  # noqa: F811
    versions = {"churn": "1"}
    stop = threading.Event()
    changes: list[tuple[int, list[str], str]] = []
    channels = [ReloadChannel(tmp_path), ReloadChannel(tmp_path, pid=sleeper)]
    runtimes = []
    for i, channel in enumerate(channels):
        loaded = channel.generation()
        runtime = Runtime(config, loader=loader(versions), background=False)
        follow(
            runtime,
            channel,
            loaded,
            on_change=lambda tasks, state, i=i: changes.append((i, tasks, state.models["churn"].scorer.version)),
            stop=stop,
        )
        runtimes.append(runtime)
    try:
        versions["churn"] = "2"  # a new champion
        assert reload_all(channels[0], timeout_s=30) == 2
        # Both have reloaded when it answers, and said what changed before acknowledging.
        assert [r.state.models["churn"].scorer.version for r in runtimes] == ["2", "2"]
        assert sorted(changes) == [(0, ["churn"], "2"), (1, ["churn"], "2")]
        assert {a.generation for a in channels[0].acks().values()} == {1}
    finally:
        stop.set()


def test_a_reload_asked_for_while_a_worker_loads_is_done_by_it(config, tmp_path):  # noqa: F811
    channel = ReloadChannel(tmp_path)
    versions = {"churn": "1"}
    loaded = channel.generation()  # read before the load, as the service does
    runtime = Runtime(config, loader=loader(versions), background=False)
    versions["churn"] = "2"
    generation = ReloadChannel(tmp_path, pid=os.getppid()).request()  # another worker's /reload, meanwhile
    stop = threading.Event()
    follow(runtime, channel, loaded, on_change=lambda *_: None, stop=stop)
    try:
        done, behind = channel.wait(generation, timeout_s=30)
    finally:
        stop.set()
    assert [a.pid for a in done] == [os.getpid()] and behind == []
    assert runtime.state.models["churn"].scorer.version == "2"


def test_reload_all_names_the_workers_that_failed_or_did_not_finish(config, tmp_path, sleeper):  # noqa: F811
    channel, other = ReloadChannel(tmp_path), ReloadChannel(tmp_path, pid=sleeper)

    def answer(error_here: str | None, error_there: str | None) -> threading.Thread:
        """Acknowledge the next generation for both workers once it is asked for."""
        target = channel.generation() + 1

        def run() -> None:
            while channel.generation() < target:
                threading.Event().wait(0.01)
            channel.acknowledge(target, error_here)
            other.acknowledge(target, error_there)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    channel.acknowledge(0)
    other.acknowledge(0)
    answer(None, "reload failed, still serving the models loaded before: registry down")
    with pytest.raises(ModelUnavailable, match=rf"reload failed in 1 of 2 workers \(pid {sleeper}\).*registry down"):
        reload_all(channel, timeout_s=30)
    same = "reload failed, still serving the models loaded before: registry down"
    answer(same, same)
    with pytest.raises(ModelUnavailable) as failed:
        reload_all(channel, timeout_s=30)
    assert str(failed.value) == same  # every worker failed alike: the one worker's message
    channel.acknowledge(channel.generation() + 1)  # this worker answers, the other never does
    with pytest.raises(ModelUnavailable, match=rf"1 of 2 workers \(pid {sleeper}\) had not finished after 0 s"):
        reload_all(channel, timeout_s=0.3)


@pytest.mark.parametrize("workers", ["0", "65", "many", "1.5"])
def test_serve_refuses_a_bad_worker_count_before_starting_anything(workers):
    from typer.testing import CliRunner

    from serving.cli import REPO_ROOT, app

    bundled = REPO_ROOT / "configs" / "online_retail.yaml"
    result = CliRunner().invoke(app, ["serve", "--config", str(bundled), "--workers", workers])
    assert result.exit_code == 2
    assert f"--workers {workers}: " in result.output and '"cpu_count" (one per core)' in result.output


def test_the_worker_count_joins_bentoml_overrides_already_set():
    import json

    from serving.cli import with_workers

    assert json.loads(with_workers(None, 2)) == {"services": {"crmscore": {"workers": 2}}}
    given = json.dumps({"services": {"crmscore": {"workers": 1, "traffic": {"timeout": 5}}}, "api_server": {"x": 1}})
    assert json.loads(with_workers(given, "cpu_count")) == {
        "services": {"crmscore": {"workers": "cpu_count", "traffic": {"timeout": 5}}},
        "api_server": {"x": 1},
    }


def test_a_failing_first_step_is_reported_and_the_reload_still_goes_on(config, tmp_path):  # noqa: F811
    """The service reads its API keys before each reload: a malformed key file must not stop a new
    champion from being served, and must not pass unsaid either (a 503 with its message)."""
    versions = {"churn": "1"}
    runtime = Runtime(config, loader=loader(versions), background=False)

    def keys() -> None:
        raise ModelUnavailable("API keys not read again, the ones read before still apply: entry 1")

    versions["churn"] = "2"
    changes = []
    error = runtime.refresh(keys, lambda tasks, state: changes.append((tasks, state)))
    ((tasks, state),) = changes
    assert state is runtime.state and state.models["churn"].scorer.version == "2"
    assert error == "API keys not read again, the ones read before still apply: entry 1"
    nothing = runtime.refresh()
    assert nothing is None

    channel, stop = ReloadChannel(tmp_path), threading.Event()
    follow(runtime, channel, channel.generation(), on_change=lambda *_: None, stop=stop, first=keys)
    versions["churn"] = "3"
    try:
        with pytest.raises(ModelUnavailable, match=r"^API keys not read again, the ones read before still apply"):
            reload_all(channel, timeout_s=30)
    finally:
        stop.set()
    assert runtime.state.models["churn"].scorer.version == "3"


@pytest.mark.parametrize("given", ["{not json", "[1, 2]"])
def test_serve_names_bentoml_overrides_it_cannot_add_the_worker_count_to(given):
    from typer.testing import CliRunner

    from serving.cli import REPO_ROOT, app

    bundled = REPO_ROOT / "configs" / "online_retail.yaml"
    result = CliRunner().invoke(
        app, ["serve", "--config", str(bundled), "--workers", "2"], env={"BENTOML_CONFIG_OVERRIDES": given}
    )
    assert result.exit_code == 2 and "BENTOML_CONFIG_OVERRIDES is not" in result.output


def test_a_reload_folder_someone_else_could_write_or_a_link_is_refused(tmp_path):
    """Its name in the shared temp folder is the server's pid: a local user who made it first, open to all,
    could ask the workers for reloads or write the error /reload answers (a security review, 2026-12-07)."""
    from serving.workers import ChannelError

    open_to_all = tmp_path / "crmscore-workers-1"
    open_to_all.mkdir()
    open_to_all.chmod(0o777)
    with pytest.raises(
        ChannelError, match=r"crmscore-workers-1 belongs to another user .* or others may write to it \(mode 777\)"
    ):
        ReloadChannel(open_to_all)
    link = tmp_path / "crmscore-workers-2"
    link.symlink_to(open_to_all)
    with pytest.raises(ChannelError, match="is not a folder"):
        ReloadChannel(link)
    fresh = ReloadChannel(tmp_path / "crmscore-workers-3")
    assert fresh.folder.stat().st_mode & 0o077 == 0  # made private
