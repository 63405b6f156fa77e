"""``watch --supervise``'s decisions, without processes where they can be, and its Supervisor."""

from __future__ import annotations

import errno
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from swarmdns import ConfigurationError
from swarmdns._actions.child import CommandResult, exit_status
from swarmdns._actions.loop import ActionLoop, Actions
from swarmdns._actions.render import Renderer
from swarmdns._actions.report import ActionEvent
from swarmdns._actions.settle import PendingChanges, SettleWindow
from swarmdns._actions.supervise import (
    Supervisor,
    next_step,
    parse_signal,
    shell_script,
    splay_delay,
)

from .helpers import PATIENCE, Clock, change, ip

# -- the decisions ---------------------------------------------------------------------


def test_the_first_action_starts_the_program_changed_or_not() -> None:
    assert next_step(started=False, changed=False) == "start"
    assert next_step(started=False, changed=True) == "start"


def test_a_later_action_signals_only_when_a_file_changed() -> None:
    assert next_step(started=True, changed=True) == "reload"
    assert next_step(started=True, changed=False) == "nothing"


def test_the_splay_is_a_random_share_of_it() -> None:
    assert splay_delay(10.0, lambda: 0.25) == 2.5
    assert splay_delay(10.0, lambda: 0.0) == 0.0
    assert splay_delay(0.0, lambda: 0.9) == 0.0


@pytest.mark.parametrize(
    ("returncode", "status"), [(0, 0), (3, 3), (255, 255), (-9, 137), (-15, 143), (-1, 129)]
)
def test_a_signal_is_128_plus_its_number_as_a_shell_says(returncode: int, status: int) -> None:
    assert exit_status(returncode) == status


@pytest.mark.parametrize(
    ("text", "expected"),
    [("HUP", signal.SIGHUP), ("sighup", signal.SIGHUP), ("USR2", signal.SIGUSR2), ("10", 10)],
)
def test_a_signal_is_a_name_with_or_without_sig_or_a_number(text: str, expected: int) -> None:
    assert parse_signal(text, source="--reload-signal") == expected


@pytest.mark.parametrize("text", ["", "FOO", "SIG", "999", "-1", "1.5"])
def test_anything_else_is_no_signal(text: str) -> None:
    with pytest.raises(ConfigurationError, match="is not a signal; give a name such as HUP"):
        parse_signal(text, source="--reload-signal")


@pytest.mark.parametrize(
    ("command", "script"),
    [
        ('nginx -g "daemon off;"', 'exec nginx -g "daemon off;"'),
        ("prog 'a;b' >log 2>&1", "exec prog 'a;b' >log 2>&1"),
        ('prog "$X"', 'exec prog "$X"'),
        ("a && b", "a && b"),
        ("a; exec b", "a; exec b"),
        ("a | b", "a | b"),
        ("prog $(x)", "prog $(x)"),
        ("FOO=1 prog", "FOO=1 prog"),
        ("exec prog", "exec prog"),
        ("exit 7", "exit 7"),
        ("cd /srv", "cd /srv"),
        ("if true; then x; fi", "if true; then x; fi"),
        ("prog 'unbalanced", "prog 'unbalanced"),
        ("a\nb", "a\nb"),
    ],
)
def test_a_simple_command_is_execd_by_the_shell_and_any_other_run_as_given(
    command: str, script: str
) -> None:
    assert shell_script(command) == script


# -- with the action loop ----------------------------------------------------------------


class Recorder:
    """A stand-in CommandRunner that records its runs."""

    def __init__(self) -> None:
        self.runs = 0

    def run(self, event_json: str, env: dict[str, str]) -> CommandResult:
        self.runs += 1
        return CommandResult(returncode=0)


def test_actions_tell_after_each_batch_whether_a_file_changed(
    template: Path, tmp_path: Path
) -> None:
    told: list[bool] = []
    actions = Actions([Renderer(template, tmp_path / "out")], after=told.append)
    pending = PendingChanges(["web"])

    pending.add(change("web", 3))
    actions(pending.take())  # type: ignore[arg-type]
    pending.add(change("web", 3, 4))
    (tmp_path / "out").write_text("server 10.0.1.3:80;\nserver 10.0.1.4:80;\n")
    actions(pending.take())  # type: ignore[arg-type]
    pending.add(change("web", 4))
    actions(pending.take())  # type: ignore[arg-type]

    assert told == [True, False, True]


def test_a_batch_asked_again_has_every_service_and_runs_the_command_unchanged(
    tmp_path: Path,
) -> None:
    template = tmp_path / "both.j2"
    template.write_text("{{ services.web.ips | join(' ') }} {{ services.api.ips | join(' ') }}")
    recorder = Recorder()
    told: list[bool] = []
    actions = Actions(
        [Renderer(template, tmp_path / "out")],
        recorder,  # type: ignore[arg-type]
        after=told.append,
    )
    pending = PendingChanges(["web", "api"])
    pending.add(change("web", 3))
    pending.add(change("api", 5))
    actions(pending.take())  # type: ignore[arg-type]
    (tmp_path / "out").unlink()

    pending.again()
    batch = pending.take()

    assert batch is not None
    assert batch.again
    assert batch.services == ("api", "web")
    assert all(not each.added and not each.removed for each in batch.changes)
    actions(batch)
    assert (tmp_path / "out").read_text() == "10.0.1.3 10.0.1.5"  # rendered again
    assert recorder.runs == 2
    assert told == [True, True]
    assert pending.take() is None  # once


def test_act_again_is_due_at_once_whatever_the_window() -> None:
    clock = Clock()
    loop = ActionLoop(print, ["web"], window=SettleWindow(2.0, 10.0), clock=clock)
    loop.submit(change("web", 3))
    clock.now += 2.0
    first = loop.take_due()
    assert first is not None
    assert not first.again

    loop.act_again()
    batch = loop.take_due()

    assert batch is not None
    assert batch.again
    assert batch.changes[0].current == (ip(3),)
    assert loop.take_due(clock.now + 100) is None


def test_act_again_before_the_first_sets_waits_for_them_but_not_for_the_window() -> None:
    clock = Clock()
    loop = ActionLoop(print, ["web", "api"], window=SettleWindow(2.0, 10.0), clock=clock)
    loop.act_again()
    loop.submit(change("web", 3))
    assert loop.take_due() is None  # api's set has not come

    loop.submit(change("api", 4))
    batch = loop.take_due()

    assert batch is not None
    assert batch.services == ("api", "web")


# -- the supervisor, on a real process -------------------------------------------------

#: A program that reports each signal it gets on stdout, and exits 3 on SIGTERM.
PROGRAM = """
import signal, sys
def report(signum, frame):
    print(signal.Signals(signum).name, flush=True)
    if signum == signal.SIGTERM:
        sys.exit(3)
for each in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM):
    signal.signal(each, report)
print("started", flush=True)
while True:
    signal.pause()
"""


class Program:
    """The supervised PROGRAM's output, line by line, each read with a deadline."""

    def __init__(self, tmp_path: Path) -> None:
        script = tmp_path / "program.py"
        script.write_text(PROGRAM)
        self.command = f"{sys.executable} {script}"
        reading, self.writing = os.pipe()
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(reading,), daemon=True)
        self._reader.start()
        self.exits: queue.Queue[int] = queue.Queue()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd) as pipe:
            for line in pipe:
                self._lines.put(line.strip())

    def line(self) -> str:
        try:
            return self._lines.get(timeout=PATIENCE)
        except queue.Empty:
            pytest.fail(f"the program printed nothing within {PATIENCE} s")

    def exit(self) -> int:
        try:
            return self.exits.get(timeout=PATIENCE)
        except queue.Empty:
            pytest.fail(f"the program did not exit within {PATIENCE} s")

    def supervisor(self, **options: Any) -> Supervisor:
        return Supervisor(self.command, on_exit=self.exits.put, stdout=self.writing, **options)

    def close(self) -> None:
        os.close(self.writing)  # the reader ends once every writer has
        self._reader.join(PATIENCE)


@pytest.fixture
def program(tmp_path: Path) -> Iterator[Program]:
    program = Program(tmp_path)
    yield program
    program.close()


def test_the_supervisor_starts_once_signals_on_changes_and_forwards_the_stop(
    program: Program,
) -> None:
    events: list[ActionEvent] = []
    supervisor = program.supervisor(reload_signal=signal.SIGUSR1, on_event=events.append)
    try:
        supervisor.acted(False)
        assert program.line() == "started"
        supervisor.acted(False)  # no file changed: nothing
        supervisor.acted(True)
        assert program.line() == "SIGUSR1"
    finally:
        status = supervisor.stop(signal.SIGTERM)

    assert program.line() == "SIGTERM"
    assert status == 3
    assert program.exit() == 3
    assert supervisor.status == 3
    assert [(e.kind, e.outcome, e.signal, e.status) for e in events] == [
        ("program", "started", None, None),
        ("program", "reloaded", "SIGUSR1", None),
        ("program", "exited", None, 3),
    ]
    assert {e.command for e in events} == {program.command}


def test_a_program_that_exits_is_told_with_its_status_as_a_shell_gives_it(
    program: Program,
) -> None:
    supervisor = Supervisor("kill -KILL $$", on_exit=program.exits.put)
    supervisor.acted(True)

    assert program.exit() == 128 + signal.SIGKILL
    assert supervisor.stop() == 128 + signal.SIGKILL  # nothing left to stop
    supervisor.acted(True)  # no signal to a program gone: no error


def test_a_cancelled_supervisor_starts_nothing_and_cuts_a_splay_short(program: Program) -> None:
    never = Supervisor(program.command, on_exit=program.exits.put)
    never.cancel()
    never.acted(True)
    assert never.stop() is None

    supervisor = program.supervisor(splay=3600.0, draw=lambda: 0.5)
    supervisor.acted(True)
    assert program.line() == "started"
    signalling = threading.Thread(target=supervisor.acted, args=(True,))
    signalling.start()  # waits half an hour before SIGHUP
    supervisor.cancel()
    signalling.join(PATIENCE)
    assert not signalling.is_alive()
    assert supervisor.stop() == 3
    assert program.line() == "SIGTERM"  # and no SIGHUP before it


def test_a_program_that_cannot_start_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    supervisor = Supervisor("true", on_exit=print)
    monkeypatch.setattr(subprocess, "Popen", _cannot_start)
    with pytest.raises(ConfigurationError, match="cannot start the command 'true'"):
        supervisor.acted(True)
    assert supervisor.stop() is None


def _cannot_start(*args: object, **kwargs: object) -> NoReturn:
    raise OSError(errno.EMFILE, "Too many open files")
