"""Running the command: its input, its failures, its timeout, and cancelling it."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from swarmdns._actions.child import CommandResult, CommandRunner, retry_delay

from .helpers import (
    PATIENCE,
    alive,
    batch_of,
    change,
    in_thread,
    messages,
    started_pid,
    wait_until,
)


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


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "SIGTERM"])
def test_an_interrupt_while_the_command_starts_stops_it(
    monkeypatch: pytest.MonkeyPatch, signum: signal.Signals
) -> None:
    """The interrupt comes once the child exists, before the runner has it (as in Popen's wait)."""
    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def interrupted_popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        process = real_popen(*args, **kwargs)
        started.append(process)
        signal.raise_signal(signum)
        return process

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "Popen", interrupted_popen)
    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(KeyboardInterrupt):
            CommandRunner("sleep 600", timeout=PATIENCE, kill_grace=PATIENCE).run("{}")
        handlers = {s: signal.getsignal(s) for s in previous}
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

    (process,) = started
    assert process.poll() is not None  # stopped and reaped, not left running
    assert handlers == {signal.SIGINT: interrupt, signal.SIGTERM: interrupt}  # put back


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "SIGTERM"])
def test_an_interrupt_while_the_handlers_are_put_back_is_not_lost(
    monkeypatch: pytest.MonkeyPatch, signum: signal.Signals
) -> None:
    """It comes as the started command's runner puts the handlers back: it still stops the command.

    Python runs a handler between any two bytecodes; here the runner's own one
    notes it just as the first handler is put back (a CI run lost it so, and
    waited for its command, an hour long).
    """
    real_signal = signal.signal
    handlers: dict[int, Any] = {}

    def signal_in_between(number: int, handler: Any) -> Any:
        before: Callable[[int, object], object] = real_signal(number, handler)  # type: ignore[assignment]
        if handler is interrupt and not handlers:  # the first handler put back
            handlers[number] = handler
            before(signum, None)  # the runner's handler, as Python would run it here
        return before

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(signal, "signal", signal_in_between)
    try:
        with pytest.raises(KeyboardInterrupt):
            CommandRunner("sleep 600", timeout=PATIENCE, kill_grace=PATIENCE).run("{}")
    finally:
        monkeypatch.undo()
        for s, handler in previous.items():
            signal.signal(s, handler)

    assert handlers  # the interrupt came while the handlers were put back
    (process,) = started
    assert process.poll() is not None  # stopped, not waited for


def test_a_command_that_starts_without_an_interrupt_leaves_the_handlers_as_they_were() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    assert CommandRunner("true", timeout=PATIENCE).run("{}").ok

    assert {s: signal.getsignal(s) for s in before} == before


def test_retry_delay_doubles_up_to_its_longest() -> None:
    delays = [retry_delay(failures, first=0.5, longest=30.0) for failures in range(1, 10)]

    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_a_command_that_could_not_start_is_tried_again(
    monkeypatch: pytest.MonkeyPatch, quiet_caplog: pytest.LogCaptureFixture
) -> None:
    real_popen = subprocess.Popen
    calls: list[object] = []

    def popen(*args: Any, **kwargs: Any) -> object:
        calls.append(args)
        if len(calls) <= 2:
            raise OSError(24, "Too many open files")
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen)

    result = CommandRunner("exit 3", tries=None, retry_after=0.001).run("{}")

    assert (len(calls), result.returncode) == (3, 3)
    errors = messages(quiet_caplog, logging.ERROR)
    assert len(errors) == 2
    assert "could not start the command 'exit 3': [Errno 24] Too many open files;" in errors[0]
    assert errors[0].endswith("trying again in 0.001 s")
    assert errors[1].endswith("trying again in 0.002 s")


def test_trying_again_gives_up_after_its_tries(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []

    def popen(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise FileNotFoundError(2, "No such file or directory", "/bin/sh")

    monkeypatch.setattr(subprocess, "Popen", popen)

    result = CommandRunner("reload", tries=3, retry_after=0.001).run("{}")

    assert (len(calls), result.returncode, result.cancelled) == (3, None, False)


def test_cancel_ends_the_wait_to_try_again(monkeypatch: pytest.MonkeyPatch) -> None:
    tried = threading.Event()

    def popen(*args: object, **kwargs: object) -> None:
        tried.set()
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(subprocess, "Popen", popen)
    runner = CommandRunner("reload", tries=None, retry_after=3600)

    thread, returned = in_thread(lambda: runner.run("{}"))
    assert tried.wait(PATIENCE)
    runner.cancel()
    thread.join(PATIENCE)

    assert not thread.is_alive()
    assert [(r.returncode, r.cancelled) for r in returned] == [(None, True)]
