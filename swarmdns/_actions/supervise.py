"""Supervising a program, as consul-template's exec mode: ``watch --supervise CMD``.

The program starts once the first action is done (every template rendered),
is sent a reload signal after each later action that changed a file (after a
random splay, if asked), and is forwarded the signal that stops the watch;
when it exits, the watch exits with its status.

The decisions are plain functions (``next_step()``, ``splay_delay()``,
``shell_script()``); ``Supervisor`` only carries them out on a process.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shlex
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import IO, Any, Literal

from .._errors import ConfigurationError
from .child import exit_status
from .log import _log
from .report import ActionEvent

Step = Literal["start", "reload", "nothing"]


def next_step(*, started: bool, changed: bool) -> Step:
    """What an action means for the program: start it, signal it to reload, or nothing.

    Args:
        started: Whether the program was started already (by an earlier action).
        changed: Whether this action changed a file (or had no file to
            render, or was asked for again by SIGHUP): when ``--exec`` would run.
    """
    if not started:
        return "start"  # the first action, changed or not: every file is now as it should be
    return "reload" if changed else "nothing"


def splay_delay(splay: float, draw: Callable[[], float] = random.random) -> float:
    """How long to wait before signalling: a random share of ``splay`` seconds.

    ``draw`` gives a number in [0, 1), so that replicas of a service that see
    the same change do not all reload at the same moment.
    """
    return splay * draw() if splay > 0 else 0.0


#: What makes a command more than one simple command, as shlex splits it.
_SEPARATORS = frozenset({";", "&", "&&", "|", "||", "(", ")", ";;", "|&"})
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
#: First words that ``exec`` cannot run: the shell's keywords, and builtins with no program.
# fmt: off
_NOT_PROGRAMS = frozenset([
    "!", "{", "}", "case", "for", "if", "until", "while", "function", "select",
    "exec", "exit", "return", "break", "continue", ":", ".", "source", "eval", "export",
    "readonly", "set", "shift", "times", "trap", "unset", "cd", "wait", "umask", "alias",
    "unalias", "command", "type", "getopts", "hash", "jobs", "fg", "bg", "ulimit", "local",
    "read",
])
# fmt: on


def shell_script(command: str) -> str:
    """What ``sh -c`` runs for ``command``: a simple command is prefixed with ``exec``.

    So that the program itself, not a shell waiting for it, is the process
    that gets the signals (dash, Debian's ``/bin/sh``, does not exec the last
    command of ``-c`` by itself). A compound command (``a && b``, ``a; b``,
    ``a | b``), one that starts with an assignment, a keyword or a builtin
    that is no program (``exit 3``, ``cd /srv && ...``), or one shlex
    cannot split is run as given: end it with ``exec PROGRAM`` yourself.
    """
    if "\n" in command:
        return command
    words = shlex.shlex(command, posix=True, punctuation_chars=True)
    words.whitespace_split = True
    try:
        split = list(words)
    except ValueError:  # unbalanced quotes: the shell says what is wrong
        return command
    if not split or _SEPARATORS.intersection(split):
        return command
    if split[0] in _NOT_PROGRAMS or _ASSIGNMENT.match(split[0]):
        return command
    return f"exec {command}"


def parse_signal(text: str, *, source: str) -> signal.Signals:
    """A signal given by name (``HUP``, ``SIGHUP``, any case) or number.

    Raises:
        ConfigurationError: No such signal.
    """
    name = text.strip().upper()
    try:
        if name.isdigit():
            return signal.Signals(int(name))
        return signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
    except (KeyError, ValueError):
        raise ConfigurationError(
            f"{source} {text!r} is not a signal; give a name such as HUP or USR2, or a number",
            source=source,
        ) from None


class Supervisor:
    """Starts a shell command once, signals it on changes, and tells when it exits.

    The command runs through ``/bin/sh -c`` in a session (and so a process
    group) of its own, so that Ctrl-C at a terminal reaches only ``watch``,
    which forwards it. Signals go to the shell's process, which a simple
    command replaces (``shell_script()``); a compound command should end with
    ``exec PROGRAM`` for the program to get them.

    Args:
        command: The shell command.
        reload_signal: Sent after an action that changed a file.
        splay: Seconds: the signal waits a random time up to this.
        on_exit: Called (from a thread) with the program's exit status, as a
            shell gives it, when it exits.
        stdout: Where the program's output goes, as ``subprocess.Popen``'s.
        draw: Random numbers in [0, 1), for the splay.
        on_event: Called with an ``ActionEvent`` when the program starts, is
            sent the reload signal, and exits.
    """

    def __init__(
        self,
        command: str,
        *,
        reload_signal: signal.Signals = signal.SIGHUP,
        splay: float = 0.0,
        on_exit: Callable[[int], object] = lambda status: None,
        stdout: int | IO[Any] | None = None,
        draw: Callable[[], float] = random.random,
        on_event: Callable[[ActionEvent], object] = lambda event: None,
    ) -> None:
        self.command = command
        self.reload_signal = reload_signal
        self.splay = splay
        self._on_exit = on_exit
        self._stdout = stdout
        self._draw = draw
        self._on_event = on_event
        self._lock = threading.Lock()  # guards _process and _closed
        self._process: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._cancelled = threading.Event()  # cuts a splay short
        self._exited = threading.Event()
        self._status: int | None = None
        self._waiter: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<Supervisor {self.command!r}, reload {self.reload_signal.name}>"

    @property
    def status(self) -> int | None:
        """The program's exit status once it has exited (as a shell gives it), else None."""
        return self._status

    def acted(self, changed: bool) -> None:
        """After an action: start the program the first time, then signal it if ``changed``.

        Raises:
            ConfigurationError: The program could not be started.
        """
        with self._lock:
            step = next_step(started=self._process is not None, changed=changed)
            if step == "start" and not self._closed:
                self._start()
        if step == "reload":
            self._reload()

    def _start(self) -> None:
        try:
            process = subprocess.Popen(  # noqa: S602 - the user gives a shell command
                shell_script(self.command),
                shell=True,
                stdout=self._stdout,
                start_new_session=True,
            )
        except OSError as error:
            raise ConfigurationError(
                f"cannot start the command {self.command!r}: {error}; check that its"
                " shell (/bin/sh) and program can run here",
                source="--supervise",
            ) from error
        self._process = process
        _log().info("started %r (process %d)", self.command, process.pid)
        self._on_event(ActionEvent(kind="program", outcome="started", command=self.command))
        self._waiter = threading.Thread(
            target=self._wait, args=(process,), name="swarmdns-supervised", daemon=True
        )
        self._waiter.start()

    def _wait(self, process: subprocess.Popen[bytes]) -> None:
        status = exit_status(process.wait())
        try:
            with self._lock:  # so that no "reloaded" is told after "exited"
                self._status = status
                self._exited.set()
                self._on_event(
                    ActionEvent(
                        kind="program", outcome="exited", command=self.command, status=status
                    )
                )
            (_log().info if status == 0 else _log().warning)(
                "the command %r exited with status %d; the watch ends with it",
                self.command,
                status,
            )
        finally:
            self._on_exit(status)  # the watch must end, whatever happened above

    def _reload(self) -> None:
        delay = splay_delay(self.splay, self._draw)
        if delay and self._cancelled.wait(delay):
            return  # the watch is stopping
        reloaded = ActionEvent(
            kind="program",
            outcome="reloaded",
            command=self.command,
            signal=self.reload_signal.name,
        )
        if self._send(self.reload_signal, telling=reloaded):
            _log().info("sent %s to %r", self.reload_signal.name, self.command)

    def _send(self, signum: int, *, telling: ActionEvent | None = None) -> bool:
        """Send ``signum`` to the program if it still runs, then tell ``telling``; whether sent."""
        with self._lock:
            process = self._process
            if process is None or self._exited.is_set():
                return False
            try:
                os.kill(process.pid, signum)
            except ProcessLookupError:
                return False
            if telling is not None:
                self._on_event(telling)
            return True

    def cancel(self) -> None:
        """Send no more reload signals, and start nothing: the watch is stopping. Any thread."""
        with self._lock:
            self._closed = True
        self._cancelled.set()

    def stop(self, signum: int = signal.SIGTERM, grace: float | None = None) -> int | None:
        """Send ``signum`` to the program, wait for it to exit; its status (None: never started).

        Args:
            signum: The signal that stopped the watch, forwarded.
            grace: Seconds to wait before SIGKILL to the program's process
                group; None: wait as long as it takes (``docker stop``'s own
                SIGKILL bounds it).
        """
        self.cancel()
        if self._process is None:
            return None
        self._send(signum)
        if not self._exited.wait(grace):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._exited.wait()
        if self._waiter is not None:
            self._waiter.join()
        return self._status
