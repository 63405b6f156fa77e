"""Acting on changes: options, the settle window, batches, rendering, the command, the loop."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from ipaddress import IPv4Address
from pathlib import Path
from typing import TypeVar

import pytest

from swarmdns import ConfigurationError, ResolutionTimeout, Task, TaskSetChange, _actions
from swarmdns._actions import (
    RENDER_EXTRA,
    ActionLoop,
    Actions,
    Batch,
    CommandResult,
    CommandRunner,
    PendingChanges,
    Renderer,
    SettleWindow,
    render_context,
    write_if_changed,
)

T = TypeVar("T")

WALL = datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc)
#: The longest any test waits for a thread or a process that should be quick.
PATIENCE = 10.0


def ip(last_octet: int) -> IPv4Address:
    return IPv4Address(f"10.0.1.{last_octet}")


def change(service: str, *current: int, added: tuple[int, ...] = ()) -> TaskSetChange:
    """A change whose set is now ``current`` (``added`` matters only to the watch, not here)."""
    return TaskSetChange(
        service=service,
        added=frozenset(ip(n) for n in added),
        removed=frozenset(),
        current=tuple(sorted(ip(n) for n in current)),
        observed_at=WALL,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_until(condition: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
    """Wait for something a real process does, within a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.01)


def no_leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if "swarmdns-tmp" in p.name)


# -- the settle window ------------------------------------------------------------


def test_without_a_wait_a_change_is_due_at_once() -> None:
    window = SettleWindow(clock=Clock())

    assert (window.pending, window.due(), window.next_deadline()) == (False, False, None)
    window.changed(5.0)
    assert window.pending
    assert window.next_deadline() == 5.0
    assert window.due(5.0)


def test_a_burst_is_due_once_quiet_for_min() -> None:
    window = SettleWindow(2.0, 10.0)

    for now in (0.0, 1.0, 2.5):
        window.changed(now)
        assert not window.due(now)

    assert window.next_deadline() == 4.5
    assert not window.due(4.49)
    assert window.due(4.5)


def test_a_burst_that_never_quiets_is_due_max_after_its_first_change() -> None:
    window = SettleWindow(2.0, 5.0)

    now = 0.0
    while now < 5.0:  # a change every second: never 2 s of quiet
        window.changed(now)
        assert not window.due(now)
        now += 1.0
    window.changed(4.9)

    assert window.next_deadline() == 5.0
    assert window.due(5.0)


def test_after_acting_the_next_burst_starts_afresh() -> None:
    window = SettleWindow(2.0, 5.0)
    window.changed(0.0)
    window.acted()

    assert (window.pending, window.next_deadline(), window.due(100.0)) == (False, None, False)
    window.changed(100.0)  # its max runs from here, not from 0
    window.changed(101.0)
    assert window.next_deadline() == 103.0


def test_max_defaults_to_four_times_min() -> None:
    window = SettleWindow(0.5)
    assert window.max_wait == 2.0
    window.changed(0.0)
    for now in (0.4, 0.8, 1.2, 1.6):
        window.changed(now)

    assert window.next_deadline() == 2.0


def test_the_window_reads_its_clock_when_not_given_now() -> None:
    clock = Clock()
    window = SettleWindow(1.0, clock=clock)
    window.changed()
    clock.now += 0.9
    assert not window.due()
    clock.now += 0.1
    assert window.due()


@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        ((-1.0,), ValueError, "min_quiet must be zero or more"),
        ((1.0, -1.0), ValueError, "max_wait must be zero or more"),
        ((float("inf"),), ValueError, "finite"),
        ((2.0, 1.0), ValueError, r"max_wait \(1 s\) must be at least min_quiet \(2 s\)"),
        ((True,), TypeError, "min_quiet must be a number of seconds"),
        (("2",), TypeError, "min_quiet must be a number of seconds"),
    ],
)
def test_bad_windows(arguments: tuple[object, ...], error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        SettleWindow(*arguments)  # type: ignore[arg-type]


# -- batches ---------------------------------------------------------------------


def test_the_first_batch_waits_for_every_initial_set() -> None:
    pending = PendingChanges(["web", "api"])
    pending.add(change("web", 3, 4))

    assert (pending.ready, pending.waiting_for) == (False, frozenset({"api"}))
    pending.add(change("api"))  # an empty initial set counts
    assert pending.ready

    batch = pending.take()
    assert batch is not None
    assert batch.services == ("api", "web")
    assert [(c.added, c.removed) for c in batch.changes] == [
        (frozenset(), frozenset()),
        ({ip(3), ip(4)}, frozenset()),
    ]
    assert dict(batch.current) == {"api": (), "web": (ip(3), ip(4))}
    assert not pending.ready


def test_later_batches_hold_the_net_change_of_the_services_that_changed() -> None:
    pending = PendingChanges(["web", "api"])
    pending.add(change("web", 3, 4))
    pending.add(change("api", 7))
    pending.take()

    pending.add(change("web", 3, 4, 5))
    pending.add(change("web", 4, 5, 6))  # 3 left, 5 and 6 came
    batch = pending.take()

    assert batch is not None
    (web,) = batch.changes
    assert web.service == "web"
    assert web.added == {ip(5), ip(6)}
    assert web.removed == {ip(3)}
    assert web.current == (ip(4), ip(5), ip(6))
    assert dict(batch.current) == {"api": (ip(7),), "web": (ip(4), ip(5), ip(6))}


def test_a_burst_that_cancels_out_makes_no_batch() -> None:
    pending = PendingChanges(["web"])
    pending.add(change("web", 3, 4))
    pending.take()

    pending.add(change("web", 4))
    pending.add(change("web", 3, 4))  # the task came back

    assert pending.ready
    assert pending.take() is None
    assert not pending.ready


def test_a_service_that_came_back_is_left_out_of_a_batch() -> None:
    pending = PendingChanges(["web", "api"])
    pending.add(change("web", 3))
    pending.add(change("api", 7))
    pending.take()

    pending.add(change("web"))
    pending.add(change("web", 3))
    pending.add(change("api", 7, 8))
    batch = pending.take()

    assert batch is not None
    assert batch.services == ("api",)


def test_pending_changes_take_a_list_of_services() -> None:
    with pytest.raises(TypeError, match=r"not one: \['web'\]"):
        PendingChanges("web")


def batch_of(*changes: TaskSetChange, services: tuple[str, ...] = ()) -> Batch:
    pending = PendingChanges(services)
    for each in changes:
        pending.add(each)
    batch = pending.take()
    assert batch is not None
    return batch


def test_a_batch_as_json() -> None:
    pending = PendingChanges(["web", "api"])
    pending.add(change("web", 3))
    pending.add(change("api", 7))
    pending.take()
    pending.add(change("web", 4, 10))
    batch = pending.take()
    assert batch is not None

    assert json.loads(batch.to_json()) == {
        "changes": [
            {
                "service": "web",
                "added": ["10.0.1.4", "10.0.1.10"],  # sorted as addresses, not text
                "removed": ["10.0.1.3"],
                "current": ["10.0.1.4", "10.0.1.10"],
            }
        ],
        "services": {"api": ["10.0.1.7"], "web": ["10.0.1.4", "10.0.1.10"]},
    }


def test_the_environment_of_one_service() -> None:
    batch = batch_of(change("web", 10, 9))

    assert batch.environment() == {
        "SWARMDNS_SERVICE": "web",
        "SWARMDNS_TASKS": "10.0.1.9 10.0.1.10",
    }


def test_the_environment_of_several_services_has_every_address_once() -> None:
    batch = batch_of(change("web", 3, 10), change("api", 3, 4), change("db"))

    assert batch.environment() == {
        "SWARMDNS_SERVICE": "api,db,web",
        "SWARMDNS_TASKS": "10.0.1.3 10.0.1.4 10.0.1.10",
    }


def test_an_empty_set_has_empty_variables() -> None:
    assert batch_of(change("web")).environment() == {
        "SWARMDNS_SERVICE": "web",
        "SWARMDNS_TASKS": "",
    }


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "upstreams.j2"
    path.write_text("{% for ip in ips %}server {{ ip }}:80;\n{% endfor %}")
    return path


# -- the template's names -----------------------------------------------------------


def test_the_context_of_one_service() -> None:
    context = render_context({"web": (ip(10), ip(9))})

    assert context == {
        "service": "web",
        "ips": ["10.0.1.9", "10.0.1.10"],
        "services": {"web": {"ips": ["10.0.1.9", "10.0.1.10"]}},
    }


def test_the_context_of_several_services_has_only_the_mapping() -> None:
    context = render_context({"web": (ip(3),), "api": ()})

    assert context == {"services": {"api": {"ips": []}, "web": {"ips": ["10.0.1.3"]}}}


def test_the_context_with_tasks() -> None:
    named = Task(ip=ip(3), name="web.1.abc", service="web", slot=1, task_id="abc", network="n")
    gone = Task(ip=ip(99), name="web.9.old")  # the lookup saw a task since gone

    context = render_context({"web": (ip(4), ip(3))}, {"web": (gone, named)})

    assert context["tasks"] == [named, Task(ip=ip(4))]  # by address; ip only when not seen
    assert context["services"]["web"]["tasks"] == context["tasks"]


# -- rendering -------------------------------------------------------------------


def one_service(*octets: int) -> dict[str, object]:
    return render_context({"web": tuple(ip(n) for n in octets)})


def test_render_writes_the_file_when_it_changes(template: Path, tmp_path: Path) -> None:
    dest = tmp_path / "upstreams.conf"
    renderer = Renderer(template, dest)

    assert renderer.render(one_service(3, 4)) is True
    assert dest.read_text() == "server 10.0.1.3:80;\nserver 10.0.1.4:80;\n"
    first = dest.stat()

    assert renderer.render(one_service(4, 3)) is False  # the same content
    assert dest.stat().st_ino == first.st_ino
    assert dest.stat().st_mtime_ns == first.st_mtime_ns

    assert renderer.render(one_service(5)) is True
    assert dest.read_text() == "server 10.0.1.5:80;\n"
    assert dest.stat().st_ino != first.st_ino  # replaced, not written over
    assert no_leftovers(tmp_path) == []


def test_render_keeps_the_old_files_mode(template: Path, tmp_path: Path) -> None:
    dest = tmp_path / "upstreams.conf"
    dest.write_text("old\n")
    dest.chmod(0o640)

    assert Renderer(template, dest).render(one_service(3))
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o000, 0o644)])
def test_a_new_file_gets_0o644_less_the_umask(
    umask: int, mode: int, template: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "upstreams.conf"
    renderer = Renderer(template, dest)
    old = os.umask(umask)
    try:
        renderer.render(one_service(3))
    finally:
        os.umask(old)

    assert stat.S_IMODE(dest.stat().st_mode) == mode


def test_the_file_is_replaced_whole(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "upstreams.conf"
    dest.write_text("old\n")
    seen: list[tuple[str, list[str]]] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:  # the new content is on disk before it replaces DEST
        seen.append((dest.read_text(), [p.read_text() for p in tmp_path.glob("*swarmdns-tmp")]))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    Renderer(template, dest).render(one_service(3, 4))

    assert seen[0] == ("old\n", ["server 10.0.1.3:80;\nserver 10.0.1.4:80;\n"])
    assert dest.read_text() == "server 10.0.1.3:80;\nserver 10.0.1.4:80;\n"


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_a_failed_write_leaves_the_file_and_no_temporary_file(
    failing: str, template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "upstreams.conf"
    dest.write_text("old\n")

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match="No space left on device") as caught:
        Renderer(template, dest).render(one_service(3))

    assert caught.value.errno == 28
    assert repr(str(dest)) in str(caught.value)
    assert repr(str(template)) in str(caught.value)
    assert dest.read_text() == "old\n"
    assert no_leftovers(tmp_path) == []


def test_an_unwritable_directory_raises_a_permission_error(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def refuse(path: object, flags: int, mode: int = 0o777) -> int:
        if "swarmdns-tmp" in str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(PermissionError, match="its directory must be writable"):
        Renderer(template, tmp_path / "out").render(one_service(3))


def test_write_if_changed_on_its_own(tmp_path: Path) -> None:
    path = tmp_path / "f"

    assert write_if_changed(path, b"a") is True
    assert write_if_changed(path, b"a") is False
    assert write_if_changed(path, b"") is True
    assert path.read_bytes() == b""


def test_the_trailing_newline_is_kept(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("{{ service }}\n")
    dest = tmp_path / "out"

    Renderer(template, dest).render(one_service(3))

    assert dest.read_text() == "web\n"


def test_nothing_is_escaped(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("{{ '<&>' }}")

    assert Renderer(template, tmp_path / "out").render_text({}) == "<&>"


def test_an_undefined_name_names_the_template_and_line_and_leaves_the_file(
    tmp_path: Path,
) -> None:
    template = tmp_path / "t.j2"
    template.write_text("first\n{% for ip in ips %}\n{{ ip }} {{ port }}\n{% endfor %}\n")
    dest = tmp_path / "out"
    dest.write_text("old\n")

    with pytest.raises(ConfigurationError) as caught:
        Renderer(template, dest).render(one_service(3))

    message = str(caught.value)
    assert message.startswith(f"template {str(template)!r}, line 3: 'port' is undefined")
    assert "the template gets ips, service, services" in message
    assert f"{str(dest)!r} was left as it was" in message
    assert caught.value.source == str(template)
    assert dest.read_text() == "old\n"
    assert no_leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("service", "service is set only when one service is watched"),
        ("ips", "with several, use services['NAME'].ips"),
        ("tasks", "tasks are set only when the tasks' identities are looked up"),
    ],
)
def test_a_name_that_is_not_set_says_why(name: str, words: str, tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text(f"{{{{ {name} }}}}")
    several = render_context({"web": (ip(3),), "api": ()})

    with pytest.raises(ConfigurationError, match=f"line 1: '{name}' is undefined") as caught:
        Renderer(template, tmp_path / "out").render(several)

    assert words in str(caught.value)


def test_a_missing_key_is_an_error_too(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("{{ services.db.ips }}")

    with pytest.raises(ConfigurationError, match="line 1: 'dict object' has no attribute 'db'"):
        Renderer(template, tmp_path / "out").render(one_service(3))


def test_an_error_in_an_included_template_names_that_one(tmp_path: Path) -> None:
    (tmp_path / "part.j2").write_text("ok\n{{ nope }}\n")
    template = tmp_path / "main.j2"
    template.write_text("{% include 'part.j2' %}")

    with pytest.raises(ConfigurationError) as caught:
        Renderer(template, tmp_path / "out").render(one_service(3))

    assert str(caught.value).startswith(f"template {str(tmp_path / 'part.j2')!r}, line 2:")


def test_an_included_template_that_does_not_exist(tmp_path: Path) -> None:
    template = tmp_path / "main.j2"
    template.write_text("a\n{% include 'missing.j2' %}")

    with pytest.raises(ConfigurationError) as caught:
        Renderer(template, tmp_path / "out").render(one_service(3))

    assert str(caught.value).startswith(
        f"template {str(template)!r}, line 2: the template it includes, 'missing.j2',"
        f" does not exist (templates are found in {str(tmp_path)!r})"
    )


def test_a_python_error_in_a_template_is_named_too(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("\n\n{{ ips | length // 0 }}")

    with pytest.raises(ConfigurationError, match="line 3: ZeroDivisionError: "):
        Renderer(template, tmp_path / "out").render(one_service(3))


def test_a_syntax_error_shows_at_once_with_its_line(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("fine\n{% for ip in ips %}\n{{ ip }\n")

    with pytest.raises(ConfigurationError) as caught:
        Renderer(template, tmp_path / "out")

    assert str(caught.value).startswith(f"template {str(template)!r}, line 3: ")
    assert str(caught.value).endswith("; fix the template")
    assert not (tmp_path / "out").exists()


def test_a_template_that_is_not_text(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_bytes(b"\xff\xfe\x00")

    with pytest.raises(ConfigurationError, match="must be UTF-8 text"):
        Renderer(template, tmp_path / "out")


def test_a_template_that_went_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        Renderer(tmp_path / "gone.j2", tmp_path / "out")


def test_without_jinja2_the_error_says_what_to_install(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)  # import jinja2 now raises ImportError

    with pytest.raises(ConfigurationError) as caught:
        Renderer(template, tmp_path / "out")

    assert "needs Jinja2, which is not installed" in str(caught.value)
    assert str(caught.value).endswith(RENDER_EXTRA)
    assert RENDER_EXTRA == "pip install 'swarmdns[render]'"
    assert isinstance(caught.value.__cause__, ImportError)


def test_jinja2_is_imported_only_to_render(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)  # import jinja2 now raises ImportError
    name = "swarmdns._actions_without_jinja2"
    spec = importlib.util.spec_from_file_location(
        name, _actions.__file__, submodule_search_locations=list(_actions.__path__)
    )
    assert spec is not None
    assert spec.loader is not None
    fresh = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, fresh)

    try:
        spec.loader.exec_module(fresh)  # an ImportError if a module of the package imported jinja2
    finally:  # its modules, loaded afresh under the new name
        for loaded in [module for module in sys.modules if module.startswith(f"{name}.")]:
            del sys.modules[loaded]

    assert fresh.SettleWindow(1.0).max_wait == 4.0


# -- the command -------------------------------------------------------------------


@pytest.fixture
def quiet_caplog(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="swarmdns")
    return caplog


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_the_command_gets_the_batch_on_stdin_and_in_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = batch_of(change("web", 10, 9))
    runner = CommandRunner(
        'cat > stdin.json; printf "%s|%s|%s" "$SWARMDNS_SERVICE" "$SWARMDNS_TASKS" "$HOME"'
        " > env.txt",
        timeout=PATIENCE,
    )
    monkeypatch.chdir(tmp_path)  # the command runs in the current directory

    result = runner.run(batch.to_json(), batch.environment())

    assert result.ok
    assert result == CommandResult(returncode=0, duration=result.duration)
    assert json.loads((tmp_path / "stdin.json").read_text()) == json.loads(batch.to_json())
    # this process's environment, plus the batch's
    assert (tmp_path / "env.txt").read_text() == f"web|10.0.1.9 10.0.1.10|{os.environ['HOME']}"


def test_a_failing_command_is_logged_and_returns(quiet_caplog: pytest.LogCaptureFixture) -> None:
    result = CommandRunner("exit 3", timeout=PATIENCE).run("{}", {"SWARMDNS_SERVICE": "web"})

    assert (result.returncode, result.ok, result.timed_out) == (3, False, False)
    (warning,) = messages(quiet_caplog, logging.WARNING)
    assert "the command 'exit 3' (for web) exited with status 3 after" in warning
    assert warning.endswith("the watch goes on")


def test_a_failing_run_once_does_not_promise_a_watch(
    quiet_caplog: pytest.LogCaptureFixture,
) -> None:
    runner = CommandRunner("exit 3", timeout=PATIENCE, watching=False)

    runner.run("{}")

    (warning,) = messages(quiet_caplog, logging.WARNING)
    assert "exited with status 3" in warning
    assert "watch" not in warning


def test_a_command_killed_by_a_signal_says_which(quiet_caplog: pytest.LogCaptureFixture) -> None:
    result = CommandRunner("kill -TERM $$", timeout=PATIENCE).run("{}")

    assert result.returncode == -15
    assert "was killed by SIGTERM" in messages(quiet_caplog, logging.WARNING)[0]


def test_a_command_that_succeeds_is_logged_as_info(quiet_caplog: pytest.LogCaptureFixture) -> None:
    assert CommandRunner("true", timeout=PATIENCE).run("{}").ok
    assert messages(quiet_caplog, logging.WARNING) == []
    assert "ran the command 'true'" in messages(quiet_caplog, logging.INFO)[0]


def test_a_command_that_does_not_read_its_stdin_is_fine() -> None:
    big = json.dumps({"changes": ["x" * 1_000_000]})  # far more than a pipe holds

    assert CommandRunner("exit 0", timeout=PATIENCE).run(big).ok


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def test_a_hanging_command_is_stopped_with_its_process_group(
    tmp_path: Path, quiet_caplog: pytest.LogCaptureFixture
) -> None:
    pid_file = tmp_path / "child.pid"
    # A child that ignores SIGTERM, so that only SIGKILL to the group ends it.
    command = f"(trap '' TERM; exec sleep 300) & echo $! > {pid_file}; wait"
    runner = CommandRunner(command, timeout=1.0, kill_grace=0.2)

    started = time.monotonic()
    result = runner.run("{}", {"SWARMDNS_SERVICE": "web"})

    assert time.monotonic() - started < PATIENCE
    assert result.timed_out
    assert not result.ok
    assert result.duration >= 1.0
    child = int(pid_file.read_text())
    wait_until(lambda: not alive(child), "the child is killed")
    (error,) = messages(quiet_caplog, logging.ERROR)
    assert "ran past its timeout of 1 s and was stopped, with its process group" in error
    assert "raise the timeout (--exec-timeout)" in error


def test_a_command_that_ends_on_sigterm_is_not_waited_for_until_the_grace_ends() -> None:
    runner = CommandRunner("sleep 300", timeout=0.2, kill_grace=PATIENCE * 2)

    started = time.monotonic()
    result = runner.run("{}")

    assert result.timed_out
    assert time.monotonic() - started < PATIENCE


def test_a_command_that_cannot_start_is_logged(
    monkeypatch: pytest.MonkeyPatch, quiet_caplog: pytest.LogCaptureFixture
) -> None:
    def popen(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError(2, "No such file or directory", "/bin/sh")

    monkeypatch.setattr(subprocess, "Popen", popen)

    result = CommandRunner("reload").run("{}")

    assert (result.returncode, result.ok) == (None, False)
    assert "could not start the command 'reload'" in messages(quiet_caplog, logging.ERROR)[0]


def test_runs_from_two_threads_take_turns(tmp_path: Path) -> None:
    log = tmp_path / "log"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # The first run waits for a line on the fifo; the second must wait for it.
    runner = CommandRunner(
        f'echo "start $SWARMDNS_SERVICE" >> {log}; [ "$SWARMDNS_SERVICE" = b ] || read x < {fifo};'
        f' echo "end $SWARMDNS_SERVICE" >> {log}',
        timeout=PATIENCE,
    )
    first = threading.Thread(target=runner.run, args=("{}", {"SWARMDNS_SERVICE": "a"}))
    second = threading.Thread(target=runner.run, args=("{}", {"SWARMDNS_SERVICE": "b"}))
    first.start()
    wait_until(lambda: log.exists() and log.read_text() == "start a\n", "the first run starts")
    second.start()
    second.join(0.3)
    assert second.is_alive()
    assert log.read_text() == "start a\n"

    fifo.write_text("go\n")
    first.join(PATIENCE)
    second.join(PATIENCE)

    assert log.read_text() == "start a\nend a\nstart b\nend b\n"


@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        (("",), ValueError, "command must be a shell command"),
        (("  ",), ValueError, "command must be a shell command"),
        (("x", 0), ValueError, "timeout must be a positive"),
        (("x", -1), ValueError, "timeout must be a positive"),
        (("x", "5"), TypeError, "timeout must be a number"),
    ],
)
def test_bad_runners(arguments: tuple[object, ...], error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        CommandRunner(*arguments)  # type: ignore[arg-type]


def started_pid(pid_file: Path) -> int:
    """The pid a command wrote to ``pid_file`` once started (``echo $$ > FILE``)."""
    wait_until(lambda: pid_file.read_text().endswith("\n"), "the command starts")
    return int(pid_file.read_text())


@pytest.fixture
def pid_file(tmp_path: Path) -> Iterator[Path]:
    """Where a command writes its pid; whatever still runs in its group is killed after."""
    path = tmp_path / "command.pid"
    path.touch()
    yield path
    text = path.read_text()
    if text.endswith("\n") and alive(int(text)):  # the test failed: leave nothing behind
        os.killpg(int(text), signal.SIGKILL)


def in_thread(function: Callable[[], T]) -> tuple[threading.Thread, list[T]]:
    """Call ``function`` in a thread; the list gets what it returns."""
    returned: list[T] = []
    thread = threading.Thread(target=lambda: returned.append(function()), daemon=True)
    thread.start()
    return thread, returned


def test_cancel_stops_the_command_under_way_with_its_process_group(
    pid_file: Path, tmp_path: Path, quiet_caplog: pytest.LogCaptureFixture
) -> None:
    child_file = tmp_path / "child.pid"
    # The shell and a child in its group, both well past any deadline here.
    command = f"sleep 600 & echo $! > {child_file}; echo $$ > {pid_file}; wait"
    runner = CommandRunner(command, timeout=3600)
    thread, returned = in_thread(lambda: runner.run("{}", {"SWARMDNS_SERVICE": "web"}))
    shell = started_pid(pid_file)
    child = int(child_file.read_text())

    runner.cancel()
    thread.join(PATIENCE)

    assert not thread.is_alive()
    (result,) = returned
    assert result.cancelled
    assert not result.ok
    assert not result.timed_out
    assert result.returncode == -15
    assert not alive(shell)
    wait_until(lambda: not alive(child), "the child is stopped too")  # reaped by init
    assert runner.closed
    (warning,) = messages(quiet_caplog, logging.WARNING)
    assert "the command" in warning
    assert "(for web) was stopped, with its process group" in warning
    assert warning.endswith("because the watch is stopping")
    assert messages(quiet_caplog, logging.ERROR) == []  # not a timeout


def test_cancel_kills_a_command_that_ignores_sigterm_after_the_grace(pid_file: Path) -> None:
    runner = CommandRunner(
        f"trap '' TERM; echo $$ > {pid_file}; exec sleep 600", timeout=3600, kill_grace=0.2
    )
    thread, returned = in_thread(lambda: runner.run("{}"))
    started_pid(pid_file)

    runner.cancel()
    thread.join(PATIENCE)

    assert not thread.is_alive()
    (result,) = returned
    assert result == CommandResult(returncode=-9, cancelled=True, duration=result.duration)


#: A child that, on SIGTERM, takes a moment to clean up, then says it did.
_CLEANS_UP = """\
import os, signal, sys, time
def finish(*_):
    time.sleep(0.3)
    with open(sys.argv[1], "w") as done:
        done.write("cleaned up")
    sys.exit(0)
signal.signal(signal.SIGTERM, finish)
with open(sys.argv[2], "w") as pid_file:
    pid_file.write(f"{os.getpid()}\\n")
while True:
    time.sleep(1)
"""


def test_the_grace_is_the_whole_groups_not_only_the_shells(pid_file: Path, tmp_path: Path) -> None:
    # The shell ends at SIGTERM at once; its child cleans up within the grace.
    script, done = tmp_path / "child.py", tmp_path / "done"
    script.write_text(_CLEANS_UP)
    runner = CommandRunner(
        f"{sys.executable} {script} {done} {pid_file} & wait", timeout=3600, kill_grace=PATIENCE
    )
    thread, returned = in_thread(lambda: runner.run("{}"))
    child = started_pid(pid_file)

    runner.cancel()
    thread.join(PATIENCE)

    assert done.read_text() == "cleaned up"  # not killed before its grace was over
    assert not alive(child)
    (result,) = returned
    assert result.cancelled


def test_cancel_with_nothing_running_only_closes_the_runner(
    tmp_path: Path, quiet_caplog: pytest.LogCaptureFixture
) -> None:
    ran = tmp_path / "ran"
    runner = CommandRunner(f"touch {ran}", timeout=PATIENCE)

    runner.cancel()
    runner.cancel()  # as often as wished
    result = runner.run("{}")

    assert result == CommandResult(returncode=None, cancelled=True)
    assert not result.ok
    assert not ran.exists()
    assert "not running the command" in messages(quiet_caplog, logging.INFO)[0]
    assert messages(quiet_caplog, logging.WARNING) == []
    assert "closed" in repr(runner)


def test_a_second_run_does_not_start_the_command_after_cancel(
    pid_file: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    runner = CommandRunner(
        f'echo "$SWARMDNS_SERVICE" >> {log}; [ "$SWARMDNS_SERVICE" = b ] && exit;'
        f" echo $$ > {pid_file}; exec sleep 600",
        timeout=3600,
    )
    first, first_result = in_thread(lambda: runner.run("{}", {"SWARMDNS_SERVICE": "a"}))
    started_pid(pid_file)
    second, second_result = in_thread(lambda: runner.run("{}", {"SWARMDNS_SERVICE": "b"}))

    runner.cancel()
    first.join(PATIENCE)
    second.join(PATIENCE)

    assert not first.is_alive()
    assert not second.is_alive()
    assert [result.cancelled for result in first_result + second_result] == [True, True]
    assert log.read_text() == "a\n"


def test_cancel_from_several_threads_at_once(pid_file: Path) -> None:
    runner = CommandRunner(f"echo $$ > {pid_file}; exec sleep 600", timeout=3600)
    thread, returned = in_thread(lambda: runner.run("{}"))
    started_pid(pid_file)

    cancels = [threading.Thread(target=runner.cancel) for _ in range(4)]
    for cancel in cancels:
        cancel.start()
    for cancel in [*cancels, thread]:
        cancel.join(PATIENCE)

    assert not any(t.is_alive() for t in [*cancels, thread])
    (result,) = returned
    assert result.cancelled


# -- actions -------------------------------------------------------------------------


class Recorder:
    """A stand-in CommandRunner that records its runs."""

    def __init__(self) -> None:
        self.runs: list[tuple[dict[str, object], dict[str, str]]] = []

    def run(self, event_json: str, env: dict[str, str]) -> CommandResult:
        self.runs.append((json.loads(event_json), env))
        return CommandResult(returncode=0)


def test_the_command_runs_only_when_a_rendered_file_changed(
    template: Path, tmp_path: Path
) -> None:
    recorder = Recorder()
    actions = Actions([Renderer(template, tmp_path / "out")], recorder)  # type: ignore[arg-type]
    pending = PendingChanges(["web"])

    pending.add(change("web", 3))
    actions(pending.take())  # type: ignore[arg-type]
    assert [env for _, env in recorder.runs] == [
        {"SWARMDNS_SERVICE": "web", "SWARMDNS_TASKS": "10.0.1.3"}
    ]

    (tmp_path / "out").write_text("server 10.0.1.3:80;\nserver 10.0.1.4:80;\n")
    pending.add(change("web", 3, 4))
    actions(pending.take())  # type: ignore[arg-type]
    assert len(recorder.runs) == 1  # the file already said so


def test_without_templates_the_command_runs_on_every_batch() -> None:
    recorder = Recorder()
    actions = Actions(runner=recorder)  # type: ignore[arg-type]

    actions(batch_of(change("web", 3)))
    actions(batch_of(change("web", 3)))

    assert len(recorder.runs) == 2
    assert recorder.runs[0][0]["services"] == {"web": ["10.0.1.3"]}


def test_a_failing_template_holds_the_command_back_but_not_the_others(
    template: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken.j2"
    broken.write_text("{{ nope }}")
    also_broken = tmp_path / "also.j2"
    also_broken.write_text("{{ nope_either }}")
    recorder = Recorder()
    actions = Actions(
        [
            Renderer(broken, tmp_path / "a"),
            Renderer(template, tmp_path / "b"),
            Renderer(also_broken, tmp_path / "c"),
        ],
        recorder,  # type: ignore[arg-type]
    )

    with pytest.raises(ConfigurationError, match="'nope' is undefined"):
        actions(batch_of(change("web", 3)))

    assert (tmp_path / "b").read_text() == "server 10.0.1.3:80;\n"
    assert recorder.runs == []
    assert "'nope_either' is undefined" in messages(caplog, logging.ERROR)[0]


def test_tasks_are_looked_up_for_the_services_that_changed(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text(
        "{% for name, s in services.items() %}{% for t in s.tasks %}"
        "{{ name }} {{ t.ip }} {{ t.name }}\n{% endfor %}{% endfor %}"
    )
    asked: list[str] = []

    def lookup(service: str) -> tuple[Task, ...]:
        asked.append(service)
        if service == "api":
            raise ResolutionTimeout("no answer", name="tasks.api.")
        return (Task(ip=ip(3), name=f"{service}.1.x"),)

    actions = Actions([Renderer(template, tmp_path / "out")], lookup_tasks=lookup)
    pending = PendingChanges(["web", "api"])
    pending.add(change("web", 3))
    pending.add(change("api", 7))
    actions(pending.take())  # type: ignore[arg-type]

    assert sorted(asked) == ["api", "web"]
    assert (tmp_path / "out").read_text() == "api 10.0.1.7 None\nweb 10.0.1.3 web.1.x\n"

    pending.add(change("api", 7, 8))
    actions(pending.take())  # type: ignore[arg-type]
    assert sorted(asked) == ["api", "api", "web"]  # web's tasks are kept
    assert "web 10.0.1.3 web.1.x" in (tmp_path / "out").read_text()


# -- the loop ---------------------------------------------------------------------


def test_the_loop_acts_once_the_burst_settles_on_its_clock() -> None:
    clock = Clock()
    loop = ActionLoop(print, ["web"], window=SettleWindow(2.0, 10.0), clock=clock)

    loop.submit(change("web", 3))
    assert loop.take_due() is None
    clock.now += 1.0
    loop.submit(change("web", 3, 4))
    clock.now += 1.9
    assert loop.take_due() is None
    clock.now += 0.1

    batch = loop.take_due()
    assert batch is not None
    assert batch.changes[0].current == (ip(3), ip(4))
    assert loop.take_due(clock.now + 100) is None  # nothing more

    clock.now += 100  # long past the first burst's max: the next burst has its own
    loop.submit(change("web", 4))
    assert loop.take_due() is None
    clock.now += 2.0
    assert loop.take_due() is not None


def test_act_now_acts_at_once_on_what_came_and_returns_what_the_action_did() -> None:
    acted: list[Batch] = []

    def act(batch: Batch) -> str:
        acted.append(batch)
        return "done"

    loop = ActionLoop(act, ["web", "api"], window=SettleWindow(60.0))
    loop.submit(change("web", 3))
    too_soon = loop.act_now()  # api's initial set has not come
    loop.submit(change("api", 4))

    assert too_soon is None
    assert loop.act_now() == "done"  # the window's 60 s are not waited for
    assert loop.act_now() is None  # nothing new
    assert [sorted(b.current) for b in acted] == [["api", "web"]]
    assert loop.actions == 1


def test_the_loop_waits_for_every_initial_set() -> None:
    clock = Clock()
    loop = ActionLoop(print, ["web", "api"], clock=clock)
    loop.submit(change("web", 3))

    assert loop.take_due() is None
    assert loop.waiting_for == {"api"}
    loop.submit(change("api"))
    batch = loop.take_due()
    assert batch is not None
    assert batch.services == ("api", "web")


@pytest.fixture
def running() -> Iterator[Callable[[ActionLoop], threading.Thread]]:
    """Runs loops in threads; stops and joins them after the test."""
    started: list[tuple[ActionLoop, threading.Thread]] = []
    errors: list[BaseException] = []

    def start(loop: ActionLoop) -> threading.Thread:
        def run() -> None:
            try:
                loop.run()
            except BaseException as error:  # kept for the test to see
                errors.append(error)

        thread = threading.Thread(target=run, daemon=True)
        thread.errors = errors  # type: ignore[attr-defined]
        thread.start()
        started.append((loop, thread))
        return thread

    yield start
    for loop, thread in started:
        loop.stop()
        thread.join(PATIENCE)
        assert not thread.is_alive()


class Gate:
    """An action that records each batch and holds the first one until released."""

    def __init__(self, fail_on: tuple[int, ...] = ()) -> None:
        self.batches: list[Batch] = []
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.entered.release()
        if len(self.batches) == 1:
            assert self.release.wait(PATIENCE)
        if len(self.batches) in self.fail_on:
            raise ConfigurationError("the template broke", source="t.j2")

    def wait_for_batch(self) -> None:
        assert self.entered.acquire(timeout=PATIENCE), "no action came"


def test_changes_during_an_action_make_exactly_one_more_with_the_latest_state(
    running: Callable[[ActionLoop], threading.Thread],
) -> None:
    gate = Gate()
    loop = ActionLoop(gate, ["web", "api"])
    loop.submit(change("web", 3))
    loop.submit(change("api", 7))
    thread = running(loop)
    gate.wait_for_batch()

    loop.submit(change("web", 3, 4))  # while the first action runs
    loop.submit(change("api", 7, 8))
    loop.submit(change("web", 4, 5))
    gate.release.set()
    gate.wait_for_batch()
    loop.stop()
    thread.join(PATIENCE)

    assert not thread.is_alive()
    assert len(gate.batches) == 2
    second = gate.batches[1]
    assert second.services == ("api", "web")
    assert dict(second.current) == {"api": (ip(7), ip(8)), "web": (ip(4), ip(5))}
    web = second.changes[1]
    assert (web.added, web.removed) == (frozenset({ip(4), ip(5)}), frozenset({ip(3)}))
    assert loop.actions == 2


def test_a_failing_first_action_ends_the_loop(
    running: Callable[[ActionLoop], threading.Thread],
) -> None:
    gate = Gate(fail_on=(1,))
    gate.release.set()
    loop = ActionLoop(gate, ["web"])
    loop.submit(change("web", 3))
    thread = running(loop)

    thread.join(PATIENCE)

    assert not thread.is_alive()
    (error,) = thread.errors  # type: ignore[attr-defined]
    assert isinstance(error, ConfigurationError)


def test_a_later_failing_action_is_logged_and_the_loop_goes_on(
    running: Callable[[ActionLoop], threading.Thread], caplog: pytest.LogCaptureFixture
) -> None:
    gate = Gate(fail_on=(2,))
    gate.release.set()
    loop = ActionLoop(gate, ["web"])
    loop.submit(change("web", 3))
    running(loop)
    gate.wait_for_batch()

    loop.submit(change("web", 4))
    gate.wait_for_batch()
    loop.submit(change("web", 5))
    gate.wait_for_batch()

    assert [b.changes[0].current for b in gate.batches] == [(ip(3),), (ip(4),), (ip(5),)]
    (error,) = messages(caplog, logging.ERROR)
    assert "acting on the change of web failed; the watch goes on" in error
    assert "the template broke" in error


def test_stop_ends_an_idle_loop(running: Callable[[ActionLoop], threading.Thread]) -> None:
    loop = ActionLoop(print, ["web"])
    thread = running(loop)

    loop.stop()
    thread.join(PATIENCE)

    assert not thread.is_alive()


def test_stop_cuts_the_command_under_way_short(
    pid_file: Path, running: Callable[[ActionLoop], threading.Thread]
) -> None:
    runner = CommandRunner(f"echo $$ > {pid_file}; exec sleep 600", timeout=3600)
    actions = Actions(runner=runner)
    loop = ActionLoop(actions, ["web"], cancel=actions.cancel)
    thread = running(loop)
    loop.submit(change("web", 3))
    command = started_pid(pid_file)

    stopping, _ = in_thread(loop.stop)
    stopping.join(PATIENCE)
    thread.join(PATIENCE)

    assert not stopping.is_alive()
    assert not thread.is_alive()
    assert thread.errors == []  # type: ignore[attr-defined]
    assert not alive(command)
    assert loop.actions == 1
    assert runner.closed


def test_stop_cancels_even_when_no_action_runs(
    running: Callable[[ActionLoop], threading.Thread],
) -> None:
    cancels: list[None] = []
    loop = ActionLoop(print, ["web"], cancel=lambda: cancels.append(None))
    thread = running(loop)

    loop.stop()
    thread.join(PATIENCE)

    assert not thread.is_alive()
    assert cancels == [None]  # so that a batch taken just now starts no command


def test_cancelling_actions_without_a_command_does_nothing(template: Path, tmp_path: Path) -> None:
    actions = Actions([Renderer(template, tmp_path / "out")])

    actions.cancel()
    actions(batch_of(change("web", 3)))

    assert (tmp_path / "out").read_text() == "server 10.0.1.3:80;\n"


def test_the_loop_renders_and_runs_the_command_end_to_end(
    template: Path, tmp_path: Path, running: Callable[[ActionLoop], threading.Thread]
) -> None:
    dest = tmp_path / "upstreams.conf"
    log = tmp_path / "log"
    runner = CommandRunner(
        f'echo "$SWARMDNS_SERVICE $SWARMDNS_TASKS $(wc -l < {dest})" >> {log}', timeout=PATIENCE
    )
    loop = ActionLoop(Actions([Renderer(template, dest)], runner), ["web"])
    running(loop)

    loop.submit(change("web", 3))
    wait_until(lambda: log.exists() and log.read_text().count("\n") == 1, "the first run")
    loop.submit(change("web", 3, 4))
    wait_until(lambda: log.read_text().count("\n") == 2, "the second run")

    assert log.read_text().split("\n") == ["web 10.0.1.3 1", "web 10.0.1.3 10.0.1.4 2", ""]
    assert dest.read_text() == "server 10.0.1.3:80;\nserver 10.0.1.4:80;\n"
