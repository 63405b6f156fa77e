"""Running the command: a shell command in a process group of its own, with a batch on stdin.

``CommandRunner`` runs it through ``/bin/sh -c`` with the batch as JSON on its
stdin, one run at a time, and stops it with its whole process group (SIGTERM,
then SIGKILL) after a timeout, or when ``cancel()`` is called because the
watch is stopping; ``CommandResult`` says how a run went. A command that
cannot start (no descriptor left, no shell) is tried again after a while
(``retry_delay()``), not left until the next change.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO, Any, Literal

from attrs import frozen

from .._deadlines import seconds
from .log import _log

#: The signals that interrupt swarmdns (Ctrl-C, and ``docker stop``'s SIGTERM).
_INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


class _HeldInterrupts:
    """Interrupts held back while a command starts, then handed to their handlers.

    Python runs signal handlers in the main thread between bytecodes. One that
    raises (``KeyboardInterrupt``) while ``Popen`` waits for the child to
    start, or before the runner knows the process, would leave the command
    running with nobody to stop it. So while a command starts, SIGINT and
    SIGTERM are only noted; ``release()`` puts the handlers back and hands
    them what came, where an interrupt stops the command. Outside the main
    thread, and for a handler not set from Python, nothing is held: no
    Python handler can interrupt there.
    """

    def __init__(self) -> None:
        self.caught: list[int] = []
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in _INTERRUPTS:
                if signal.getsignal(signum) is not None:
                    self._previous[signum] = signal.signal(signum, self._note)

    def _note(self, signum: int, frame: object) -> None:
        self.caught.append(signum)

    def release(self) -> None:
        """Put the handlers back, then raise what came in the meantime through them; once."""
        previous, self._previous = self._previous, {}
        try:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        finally:
            # A handler put back may raise at once (an interrupt): put back the rest too.
            for signum, handler in previous.items():
                if signal.getsignal(signum) == self._note:
                    signal.signal(signum, handler)
        # Only now: an interrupt noted while the handlers were put back is in it too.
        caught, self.caught = self.caught, []
        for signum in caught:
            signal.raise_signal(signum)  # its handler runs now, in this thread


@frozen(kw_only=True)
class CommandResult:
    """How a run of the command went.

    Attributes:
        returncode: The shell's exit status; negative when a signal ended it;
            None when it was not started (it could not be, or the runner was
            cancelled).
        timed_out: Whether it ran past its timeout and was stopped.
        cancelled: Whether ``CommandRunner.cancel()`` stopped it, or kept it
            from starting.
        duration: Seconds it ran.
    """

    returncode: int | None
    timed_out: bool = False
    cancelled: bool = False
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether it ended on its own, in time, with status 0."""
        return self.returncode == 0 and not self.timed_out and not self.cancelled


def retry_delay(failures: int, *, first: float = 0.5, longest: float = 30.0) -> float:
    """Seconds to wait before trying again to start a command that ``failures`` times failed to.

    ``first`` after the first failure, doubling with each one, up to ``longest``.
    """
    return min(longest, first * 2.0 ** min(max(failures, 1) - 1, 64))


def exit_status(returncode: int) -> int:
    """A process's ``returncode`` as a shell's exit status: ended by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _signal_group(group: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


#: Seconds between two looks at whether a stopped command's process group has ended.
_GROUP_POLL = 0.02


def _group_alive(group: int) -> bool:
    """Whether any process is left in a process group (zombies included)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user took the group's number
        return False
    return True


def _ended_by(returncode: int) -> str:
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"


class CommandRunner:
    """Runs a shell command with a batch as JSON on its stdin, one run at a time.

    The command runs through ``/bin/sh -c``, in a process group of its own,
    with this process's environment plus the variables given. One that fails
    is logged (logger ``swarmdns.actions``). One that runs past ``timeout`` is sent
    SIGTERM, with its whole process group, and what is left of the group
    SIGKILL ``kill_grace`` seconds later; that is logged too. Neither
    raises: the watch goes on. One that cannot be started (``OSError``:
    EMFILE, ENOENT...) is tried again after ``retry_delay()`` seconds
    (0.5, 1, 2... up to 30), up to ``tries`` times in all; the run waits for it.

    ``cancel()``, from any thread when the watch stops, stops the command
    under way in the same way and closes the runner: later runs start
    nothing. A run it cut short, or kept from starting, returns a result
    with ``cancelled`` set.

    Args:
        command: The shell command.
        timeout: Seconds a run may take; None: no limit.
        kill_grace: Seconds between SIGTERM and SIGKILL.
        stdout: Where the command's output goes (as ``subprocess.Popen``'s):
            by default this process's stdout; ``sys.stderr`` keeps it out of
            a stream of JSON.
        clock: Monotonic seconds, for the durations reported.
        watching: Whether a watch goes on after a run, as the failures logged
            say; False for a run once (``watch --once``).
        tries: How many times a run tries to start the command (by default
            once); None: until it starts, or ``cancel()``.
        retry_after: The first wait before trying again (``retry_delay()``'s
            ``first``); the next ones double, up to 30 s.
        label: What the command is, in what is logged.
    """

    def __init__(
        self,
        command: str,
        timeout: float | None = 30.0,
        *,
        kill_grace: float = 2.0,
        stdout: int | IO[Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        watching: bool = True,
        tries: int | None = 1,
        retry_after: float = 0.5,
        label: str = "the command",
    ) -> None:
        if not isinstance(command, str) or not command.strip():
            raise ValueError(f"command must be a shell command, not {command!r}")
        self.command = command
        self.timeout = None if timeout is None else seconds("timeout", timeout)
        self.kill_grace = seconds("kill_grace", kill_grace)
        self._stdout = stdout
        self._goes_on = "; the watch goes on" if watching else ""
        self._clock = clock
        self._tries = tries
        self._retry_after = seconds("retry_after", retry_after)
        self.label = label
        self._cancelled = threading.Event()  # wakes a wait to try again
        self._lock = threading.Lock()  # held for a whole run: one at a time
        # Guards the three below; held briefly, and while the command starts.
        self._state = threading.Lock()
        self._closed = False
        self._process: subprocess.Popen[bytes] | None = None  # the command under way
        self._stopping: Literal["timeout", "cancel"] | None = None  # why it is being stopped

    def __repr__(self) -> str:
        closed = ", closed" if self._closed else ""
        return f"<CommandRunner {self.command!r}, timeout {self.timeout}{closed}>"

    @property
    def closed(self) -> bool:
        """Whether ``cancel()`` was called: runs no longer start the command."""
        return self._closed

    def run(self, event_json: str, env: Mapping[str, str] | None = None) -> CommandResult:
        """Run the command and wait for it (or its timeout); a run in another thread goes first.

        Once the runner is closed (``cancel()``), the command is not started:
        the result has ``cancelled`` set, and no ``returncode``.

        Args:
            event_json: Written to the command's stdin (``Batch.to_json()``).
            env: Variables to add to this process's (``Batch.environment()``).
        """
        with self._lock:
            return self._run(event_json, {**os.environ, **(env or {})})

    def cancel(self) -> None:
        """Stop the command under way, because the watch is stopping, and close the runner.

        From any thread; a second call does nothing, and neither does one
        when no command runs but closing the runner. The command's process
        group gets SIGTERM, then SIGKILL once the whole group has ended or
        ``kill_grace`` seconds have passed, as on a timeout; this returns
        then, so it can take up to ``kill_grace``. The ``run()`` it cut short
        returns a result with ``cancelled`` set; later ones start nothing.
        """
        with self._state:
            self._closed = True
            self._cancelled.set()
            process = self._process
            if process is None or self._stopping is not None or process.poll() is not None:
                return  # nothing runs (or it just ended), or it is being stopped already
            self._stopping = "cancel"
        self._stop(process)

    def _run(self, event_json: str, env: dict[str, str]) -> CommandResult:
        started = self._clock()
        service = env.get("SWARMDNS_SERVICE")
        about = f" (for {service})" if service else ""
        process, held = self._started(env, about, started)
        if isinstance(process, CommandResult):
            held.release()
            return process
        try:
            held.release()  # an interrupt that came while it started stops it here
            process.communicate(event_json.encode(), timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with self._state:
                ours = self._stopping is None  # else cancel() is stopping it
                if ours:
                    self._stopping = "timeout"
            if ours:
                self._stop(process)
            else:
                process.wait()
        except BaseException:  # an interrupt: the command must not outlive the watch
            self._stop(process)
            _log().warning(
                "%s %r%s was stopped, with its process group, because swarmdns was interrupted",
                self.label,
                self.command,
                about,
            )
            raise
        finally:
            with self._state:
                self._process = None
                stopped_by = self._stopping
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
        return self._outcome(process.returncode, stopped_by, about, self._clock() - started)

    def _started(
        self, env: dict[str, str], about: str, started: float
    ) -> tuple[subprocess.Popen[bytes] | CommandResult, _HeldInterrupts]:
        """The command, started (tried again if it could not be), and the interrupts held.

        Or the result of not starting it: cancelled, or every try failed.
        """
        failures = 0
        while True:
            held = _HeldInterrupts()
            try:
                process = self._start(env)
            except BaseException:
                held.release()
                raise
            if not isinstance(process, OSError):
                return process, held
            held.release()
            failures += 1
            if self._tries is not None and failures >= self._tries:
                _log().error(
                    "could not start %s %r%s: %s%s",
                    self.label,
                    self.command,
                    about,
                    process,
                    self._goes_on,
                )
                return CommandResult(returncode=None, duration=self._clock() - started), held
            delay = retry_delay(failures, first=self._retry_after)
            _log().error(
                "could not start %s %r%s: %s; trying again in %g s",
                self.label,
                self.command,
                about,
                process,
                delay,
            )
            if self._cancelled.wait(delay):
                return self._not_run(), held

    def _outcome(
        self,
        returncode: int,
        stopped_by: Literal["timeout", "cancel"] | None,
        about: str,
        duration: float,
    ) -> CommandResult:
        """The result of a run that started, logged: stopped, failed, or done."""
        if stopped_by == "cancel":  # cancel() stops what is left of its group
            _log().warning(
                "%s %r%s was stopped, with its process group (SIGTERM, then"
                " SIGKILL), because the watch is stopping",
                self.label,
                self.command,
                about,
            )
            return CommandResult(returncode=returncode, cancelled=True, duration=duration)
        if stopped_by == "timeout":
            _log().error(
                "%s %r%s ran past its timeout of %g s and was stopped, with"
                " its process group (SIGTERM, then SIGKILL)%s. If it needs longer, raise"
                " the timeout (--exec-timeout)",
                self.label,
                self.command,
                about,
                self.timeout,
                self._goes_on,
            )
            return CommandResult(returncode=returncode, timed_out=True, duration=duration)
        if returncode != 0:
            _log().warning(
                "%s %r%s %s after %.3g s%s",
                self.label,
                self.command,
                about,
                _ended_by(returncode),
                duration,
                self._goes_on,
            )
        else:
            _log().info("ran %s %r%s in %.3g s", self.label, self.command, about, duration)
        return CommandResult(returncode=returncode, duration=duration)

    def _start(self, env: dict[str, str]) -> subprocess.Popen[bytes] | CommandResult | OSError:
        """The command, started; the result of not starting it (cancelled); or why it failed."""
        failure: OSError | None = None
        with self._state:  # cancel() comes first, or finds the process to stop
            closed = self._closed
            if not closed:
                try:
                    process = subprocess.Popen(  # noqa: S602 - the user gives a shell command
                        self.command,
                        shell=True,
                        stdin=subprocess.PIPE,
                        stdout=self._stdout,
                        env=env,
                        start_new_session=True,
                    )
                except OSError as error:
                    failure = error
                else:
                    self._process = process
                    self._stopping = None
                    return process
        if closed:
            return self._not_run()
        assert failure is not None  # noqa: S101 - for mypy
        return failure

    def _not_run(self) -> CommandResult:
        _log().info("not running %s %r: the watch is stopping", self.label, self.command)
        return CommandResult(returncode=None, cancelled=True)

    def _stop(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM to the command's process group; SIGKILL to what is left after the grace.

        The grace is the whole group's: the shell of ``a && b`` ends at once,
        while ``b`` may still be cleaning up. The thread of the run may be
        waiting for the process too: ``Popen`` allows that, and only that
        thread closes the process's stdin.
        """
        deadline = time.monotonic() + self.kill_grace
        _signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(self.kill_grace)
        # Nothing says when a process group empties: ask it, now and then.
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(_GROUP_POLL)
        _signal_group(process.pid, signal.SIGKILL)  # what ignored SIGTERM, or took too long
        process.wait()
