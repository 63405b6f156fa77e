"""Acting on changes, as consul-template does: render files and run a command once a burst settles.

``swarmdns watch --render TEMPLATE:DEST --exec CMD --wait MIN:MAX`` is made of
these pieces:

- ``SettleWindow`` decides when a burst of changes has settled (quiet for
  ``min_quiet``, or ``max_wait`` after its first change); ``PendingChanges``
  merges the changes since the last action into a ``Batch``: each service's
  net change and every service's set. Neither does I/O.
- ``Renderer`` renders a Jinja2 template into a file, atomically and only when
  the content changes; ``CommandRunner`` runs a shell command with the batch
  as JSON on stdin, and stops it (its process group too) after a timeout, or
  when ``cancel()`` is called because the watch is stopping.
- ``Actions`` does both for one batch; ``ActionLoop`` takes changes from any
  thread (a watcher's ``on_change``) and acts on one batch at a time; its
  ``stop()`` cuts the action under way short (``Actions.cancel()``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from ipaddress import IPv4Address
from pathlib import Path
from types import MappingProxyType
from typing import IO, TYPE_CHECKING, Any, Literal

from attrs import frozen

from .._deadlines import seconds
from .._errors import ConfigurationError, SwarmDNSError
from .._log import logger
from .._model import Task
from .._values import TaskSetChange

if TYPE_CHECKING:
    import logging

    import jinja2

#: The child of the ``swarmdns`` logger that reports what actions did and how they failed.
ACTIONS_LOGGER = "actions"


def _log() -> logging.Logger:
    return logger(ACTIONS_LOGGER)


#: How to install what ``Renderer`` needs.
RENDER_EXTRA = "pip install 'swarmdns[render]'"

# -- when to act -----------------------------------------------------------------


def _non_negative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be zero or more seconds, and finite, not {value!r}")
    return float(value)


class SettleWindow:
    """When a burst of changes has settled: consul-template's ``wait``, without I/O.

    After a change, act once the set has been quiet for ``min_quiet`` seconds,
    and at the latest ``max_wait`` seconds after the burst's first change, so
    that a set that keeps changing is still acted on. With ``min_quiet`` 0
    (the default), act at once.

    Args:
        min_quiet: Seconds without a change before acting.
        max_wait: Seconds after a burst's first change to act at the latest;
            by default 4 times ``min_quiet``.
        clock: Monotonic seconds, read when a method is not given ``now``.

    Raises:
        TypeError, ValueError: A negative or infinite duration, or ``max_wait``
            below ``min_quiet``.
    """

    def __init__(
        self,
        min_quiet: float = 0.0,
        max_wait: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_quiet = _non_negative("min_quiet", min_quiet)
        self.max_wait = (
            4 * self.min_quiet if max_wait is None else _non_negative("max_wait", max_wait)
        )
        if self.max_wait < self.min_quiet:
            raise ValueError(
                f"max_wait ({self.max_wait:g} s) must be at least min_quiet ({self.min_quiet:g} s)"
            )
        self._clock = clock
        self._first: float | None = None
        self._last = 0.0

    def __repr__(self) -> str:
        return f"<SettleWindow {self.min_quiet:g}:{self.max_wait:g} s, due {self.next_deadline()}>"

    @property
    def pending(self) -> bool:
        """Whether a change waits to be acted on."""
        return self._first is not None

    def changed(self, now: float | None = None) -> None:
        """Take a change at ``now``: the first of a burst starts it, each restarts the quiet."""
        now = self._clock() if now is None else now
        if self._first is None:
            self._first = now
        self._last = now

    def next_deadline(self) -> float | None:
        """When the burst will be due, on the clock (None: no change waits)."""
        if self._first is None:
            return None
        return min(self._last + self.min_quiet, self._first + self.max_wait)

    def due(self, now: float | None = None) -> bool:
        """Whether to act now: a change waits, and it is quiet enough or waited long enough."""
        deadline = self.next_deadline()
        return deadline is not None and (self._clock() if now is None else now) >= deadline

    def acted(self) -> None:
        """The action has taken the burst: wait for the next change."""
        self._first = None


@frozen(kw_only=True)
class Batch:
    """What an action is about: the net changes since the last action, and every service's set.

    Attributes:
        changes: Each service that changed, sorted by name, with its net
            change against its set at the last action. The first batch has
            every service, each with its whole set added (even when empty).
        current: Every service's addresses now, sorted (by name, then address).
    """

    changes: tuple[TaskSetChange, ...]
    current: Mapping[str, tuple[IPv4Address, ...]]

    @property
    def services(self) -> tuple[str, ...]:
        """The names of the services that changed."""
        return tuple(change.service for change in self.changes)

    def to_json(self) -> str:
        """The batch for a command's stdin.

        ``{"changes": [{"service", "added", "removed", "current"}, ...],
        "services": {name: [address, ...]}}``: each change as a line of
        ``swarmdns watch --json``, and every service's addresses.
        """
        return json.dumps(
            {
                "changes": [
                    {
                        "service": change.service,
                        "added": [str(ip) for ip in sorted(change.added)],
                        "removed": [str(ip) for ip in sorted(change.removed)],
                        "current": [str(ip) for ip in change.current],
                    }
                    for change in self.changes
                ],
                "services": {
                    name: [str(ip) for ip in addresses] for name, addresses in self.current.items()
                },
            }
        )

    def environment(self) -> dict[str, str]:
        """The variables a command gets.

        ``SWARMDNS_SERVICE``: the services that changed, comma-separated.
        ``SWARMDNS_TASKS``: their addresses now, sorted and space-separated
        (with several services, every address of any of them, once; stdin has
        each service's own).
        """
        addresses = sorted({ip for change in self.changes for ip in change.current})
        return {
            "SWARMDNS_SERVICE": ",".join(self.services),
            "SWARMDNS_TASKS": " ".join(str(ip) for ip in addresses),
        }


class PendingChanges:
    """The changes since the last action, merged per service, and every service's set; no I/O.

    The first batch waits until every service named has reported its initial
    set, so that a template sees them all; it holds every service. After it,
    a service whose set came back to what it was (a task that left and came
    back within one burst) is left out, and a burst that leaves every set as
    it was makes no batch. Not thread-safe: ``ActionLoop`` holds a lock.

    Args:
        services: The services watched, whose initial sets the first batch waits for.
    """

    def __init__(self, services: Iterable[str] = ()) -> None:
        if isinstance(services, str):
            raise TypeError(f"services takes a list of names, not one: [{services!r}]")
        self._waiting_for = set(services)
        self._current: dict[str, tuple[IPv4Address, ...]] = {}
        self._before: dict[str, frozenset[IPv4Address]] = {}
        self._latest: dict[str, TaskSetChange] = {}
        self._first = True

    def add(self, change: TaskSetChange) -> None:
        """Take a change of a service's set."""
        service = change.service
        if service not in self._before:
            self._before[service] = frozenset(self._current.get(service, ()))
        self._current[service] = change.current
        self._latest[service] = change
        self._waiting_for.discard(service)

    @property
    def waiting_for(self) -> frozenset[str]:
        """The services named whose initial set has not come yet."""
        return frozenset(self._waiting_for)

    @property
    def ready(self) -> bool:
        """Whether there is something to take: changes, and every initial set."""
        return bool(self._before) and not self._waiting_for

    def take(self) -> Batch | None:
        """The batch of the changes so far (None if they cancel out), and start over."""
        changes = []
        for service in sorted(self._before):
            before = self._before[service]
            after = frozenset(self._current[service])
            if after != before or self._first:
                changes.append(
                    TaskSetChange(
                        service=service,
                        added=after - before,
                        removed=before - after,
                        current=self._current[service],
                        observed_at=self._latest[service].observed_at,
                    )
                )
        self._before.clear()
        if not changes:
            return None
        self._first = False
        current = {name: self._current[name] for name in sorted(self._current)}
        return Batch(changes=tuple(changes), current=MappingProxyType(current))


# -- rendering -------------------------------------------------------------------


def render_context(
    current: Mapping[str, Sequence[IPv4Address]],
    tasks: Mapping[str, Sequence[Task]] | None = None,
) -> dict[str, Any]:
    """The names a template sees.

    - ``services``: every service, ``{name: {"ips": [...], "tasks": [...]}}``.
    - ``service``, ``ips``, ``tasks``: the service's name and its entry's
      values, when exactly one service is watched.

    ``ips`` are addresses as text, sorted. ``tasks`` (here and in each entry)
    are there only when ``tasks`` is given: a ``Task`` for each address,
    sorted by address, with the identity the lookup gave (only ``ip`` for an
    address the lookup did not show).

    Args:
        current: Every service's addresses (``Batch.current``).
        tasks: Every service's tasks, with their identities (``swarmdns.tasks()``).
    """
    services: dict[str, dict[str, list[Any]]] = {}
    for name in sorted(current):
        addresses = sorted(IPv4Address(ip) for ip in current[name])
        entry: dict[str, list[Any]] = {"ips": [str(ip) for ip in addresses]}
        if tasks is not None:
            found = {task.ip: task for task in tasks.get(name, ())}
            entry["tasks"] = [found.get(ip) or Task(ip=ip) for ip in addresses]
        services[name] = entry
    context: dict[str, Any] = {"services": services}
    if len(services) == 1:
        ((name, entry),) = services.items()
        context["service"] = name
        context.update(entry)
    return context


def _load_template(path: Path) -> jinja2.Template:
    try:
        import jinja2  # noqa: PLC0415 - an optional extra, needed only to render
    except ImportError as error:
        raise ConfigurationError(
            f"rendering the template {str(path)!r} needs Jinja2, which is not installed;"
            f" install it with: {RENDER_EXTRA}",
            source=str(path),
        ) from error
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(path.parent),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - configuration files, not HTML
    )
    try:
        return environment.get_template(path.name)
    except jinja2.TemplateSyntaxError as error:
        where = _where(error.filename or str(path), error.lineno)
        raise ConfigurationError(
            f"{where}: {error.message}; fix the template", source=str(path)
        ) from None
    except jinja2.TemplateNotFound:
        raise ConfigurationError(
            f"the template {str(path)!r} does not exist; check the path", source=str(path)
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(
            f"cannot read the template {str(path)!r} ({error}); it must be UTF-8 text",
            source=str(path),
        ) from None


def _where(filename: str, line: int | None) -> str:
    return f"template {filename!r}" + (f", line {line}" if line is not None else "")


def _template_line(error: BaseException) -> tuple[str, int] | None:
    """The innermost template line in ``error``'s traceback (Jinja2 puts templates there)."""
    import traceback  # noqa: PLC0415 - only on trouble

    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        name = frame.filename
        if not name.endswith(".py") and not name.startswith("<") and frame.lineno is not None:
            return name, frame.lineno
    return None


_UNDEFINED = re.compile(r"'(\w+)' is undefined")


def _hint(message: str, context: Mapping[str, object]) -> str:
    """What to do about an undefined name, if it is one of the names a template may get."""
    match = _UNDEFINED.fullmatch(message)
    if match is None or match[1] in context:
        return ""
    if match[1] in ("service", "ips"):
        return (
            f" ({match[1]} is set only when one service is watched; with several, use"
            " services['NAME'].ips)"
        )
    if match[1] == "tasks":
        return " (tasks are set only when the tasks' identities are looked up)"
    return f" (the template gets {', '.join(sorted(context))})"


def write_if_changed(path: Path, data: bytes) -> bool:
    """Replace ``path`` with ``data`` atomically, unless it holds that already; True if it changed.

    The data goes to a temporary file in the same directory, is flushed to
    disk, and replaces ``path`` in one rename: a reader sees the old file or
    the new one, never part of one. The new file keeps the old one's mode
    (and owner, where allowed); a new file gets 0o644 less the umask. On any
    error, the temporary file is removed and ``path`` is left as it was.

    Raises:
        OSError: ``path`` or its directory could not be read or written.
    """
    try:
        with path.open("rb") as old:
            info: os.stat_result | None = os.fstat(old.fileno())
            if old.read() == data:
                return False
    except FileNotFoundError:
        info = None
    # An old file's mode is set before anything is written; until then, only we may read.
    descriptor, temporary = _create_temporary(path, 0o600 if info is not None else 0o644)
    try:
        with os.fdopen(descriptor, "wb") as new:
            if info is not None:
                if (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
                    with contextlib.suppress(PermissionError):
                        os.fchown(new.fileno(), info.st_uid, info.st_gid)
                os.fchmod(new.fileno(), stat.S_IMODE(info.st_mode))
            new.write(data)
            new.flush()
            os.fsync(new.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_directory(path.parent)
    return True


def _create_temporary(path: Path, mode: int) -> tuple[int, Path]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    while True:
        temporary = path.with_name(f".{path.name}.{os.urandom(4).hex()}.swarmdns-tmp")
        try:
            return os.open(temporary, flags, mode), temporary
        except FileExistsError:  # pragma: no cover - 1 in 4 billion
            continue


def _sync_directory(directory: Path) -> None:
    """Flush the rename to disk too, where the system allows it."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _describe(error: Exception, template: Path) -> str:
    """What went wrong in a template, in a few words."""
    import jinja2  # noqa: PLC0415 - loaded already: a template ran

    if isinstance(error, jinja2.TemplateNotFound):
        return (
            f"the template it includes, {error.name!r}, does not exist"
            f" (templates are found in {str(template.parent)!r})"
        )
    message = str(error) if error.args else type(error).__name__
    if isinstance(error, jinja2.TemplateError):
        return message
    return f"{type(error).__name__}: {message}"


class Renderer:
    """Renders a Jinja2 template into a file, atomically, when the content changes.

    The template is read and compiled here, once, so that a mistake in it
    shows at start. An undefined name is an error (``StrictUndefined``),
    nothing is escaped, a trailing newline is kept, and ``{% include %}``
    finds templates next to this one. Jinja2 is the extra ``swarmdns[render]``.

    Args:
        template_path: The Jinja2 template.
        dest_path: The file to write.

    Raises:
        ConfigurationError: Jinja2 is not installed, or the template cannot
            be read or compiled (the message names its file and line).
    """

    def __init__(
        self, template_path: str | os.PathLike[str], dest_path: str | os.PathLike[str]
    ) -> None:
        self.template_path = Path(template_path)
        self.dest_path = Path(dest_path)
        self._template = _load_template(self.template_path)

    def __repr__(self) -> str:
        return f"<Renderer {str(self.template_path)!r} -> {str(self.dest_path)!r}>"

    def render_text(self, context: Mapping[str, Any]) -> str:
        """The template's output for ``context`` (see ``render_context()``), without writing.

        Raises:
            ConfigurationError: The template failed, such as on an undefined name
                (the message names its file and line).
        """
        try:
            return self._template.render(context)
        except Exception as error:
            found = _template_line(error)
            where = _where(*found) if found else _where(str(self.template_path), None)
            message = _describe(error, self.template_path)
            raise ConfigurationError(
                f"{where}: {message}{_hint(message, context)};"
                f" {str(self.dest_path)!r} was left as it was",
                source=str(self.template_path),
            ) from error

    def render(self, context: Mapping[str, Any]) -> bool:
        """Render ``context`` into DEST, if that changes it; return whether it changed.

        Raises:
            ConfigurationError: The template failed; DEST was left as it was.
            OSError: DEST could not be written; it was left as it was, and no
                temporary file stays behind.
        """
        data = self.render_text(context).encode()
        try:
            return write_if_changed(self.dest_path, data)
        except OSError as error:
            raise OSError(
                error.errno,
                f"cannot write {str(self.dest_path)!r} (rendered from"
                f" {str(self.template_path)!r}): {error.strerror or error};"
                " its directory must be writable, as the file is replaced whole",
            ) from error


# -- running a command -------------------------------------------------------------


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
    raises: the watch goes on.

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
    ) -> None:
        if not isinstance(command, str) or not command.strip():
            raise ValueError(f"command must be a shell command, not {command!r}")
        self.command = command
        self.timeout = None if timeout is None else seconds("timeout", timeout)
        self.kill_grace = seconds("kill_grace", kill_grace)
        self._stdout = stdout
        self._goes_on = "; the watch goes on" if watching else ""
        self._clock = clock
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
            process = self._process
            if process is None or self._stopping is not None or process.poll() is not None:
                return  # nothing runs (or it just ended), or it is being stopped already
            self._stopping = "cancel"
        self._stop(process)

    def _run(self, event_json: str, env: dict[str, str]) -> CommandResult:
        started = self._clock()
        service = env.get("SWARMDNS_SERVICE")
        about = f" (for {service})" if service else ""
        process = self._start(env)
        if isinstance(process, CommandResult):
            return process
        try:
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
                "the command %r%s was stopped, with its process group, because swarmdns"
                " was interrupted",
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
        duration = self._clock() - started
        if stopped_by == "cancel":  # cancel() stops what is left of its group
            _log().warning(
                "the command %r%s was stopped, with its process group (SIGTERM, then"
                " SIGKILL), because the watch is stopping",
                self.command,
                about,
            )
            return CommandResult(returncode=process.returncode, cancelled=True, duration=duration)
        if stopped_by == "timeout":
            _log().error(
                "the command %r%s ran past its timeout of %g s and was stopped, with"
                " its process group (SIGTERM, then SIGKILL)%s. If it needs longer, raise"
                " the timeout (--exec-timeout)",
                self.command,
                about,
                self.timeout,
                self._goes_on,
            )
            return CommandResult(returncode=process.returncode, timed_out=True, duration=duration)
        if process.returncode != 0:
            _log().warning(
                "the command %r%s %s after %.3g s%s",
                self.command,
                about,
                _ended_by(process.returncode),
                duration,
                self._goes_on,
            )
        else:
            _log().info("ran the command %r%s in %.3g s", self.command, about, duration)
        return CommandResult(returncode=process.returncode, duration=duration)

    def _start(self, env: dict[str, str]) -> subprocess.Popen[bytes] | CommandResult:
        """The command, started; or the result of not starting it."""
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
            _log().info("not running the command %r: the watch is stopping", self.command)
            return CommandResult(returncode=None, cancelled=True)
        _log().error("could not start the command %r: %s%s", self.command, failure, self._goes_on)
        return CommandResult(returncode=None)

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


# -- acting on changes -------------------------------------------------------------


class Actions:
    """What to do with a batch: render every template, then run the command.

    As in consul-template, the command runs only when a rendered file
    changed; without templates, on every batch. A template that fails leaves
    its file as it was and holds the command back; its error is raised once
    every template was tried (the others' are logged).

    Args:
        renderers: The templates to render, in order.
        runner: The command to run, if any.
        lookup_tasks: Looks up a service's tasks with their identities (such
            as ``functools.partial(swarmdns.tasks, backend=...)``), for the
            templates' ``tasks``; only for the services that changed, the
            others' are kept. None leaves ``tasks`` out.
    """

    def __init__(
        self,
        renderers: Sequence[Renderer] = (),
        runner: CommandRunner | None = None,
        *,
        lookup_tasks: Callable[[str], Sequence[Task]] | None = None,
    ) -> None:
        self.renderers = tuple(renderers)
        self.runner = runner
        self._lookup_tasks = lookup_tasks
        self._tasks: dict[str, Sequence[Task]] = {}

    def __repr__(self) -> str:
        return f"<Actions {list(self.renderers)!r}, {self.runner!r}>"

    def cancel(self) -> None:
        """Stop the command under way, and run it no more: the watch is stopping.

        From any thread (``ActionLoop``'s ``cancel``); see
        ``CommandRunner.cancel()``. Without a command, nothing to do.
        """
        if self.runner is not None:
            self.runner.cancel()

    def __call__(self, batch: Batch) -> CommandResult | None:
        """Act on ``batch``; return the command's result, if it ran.

        Raises:
            ConfigurationError: A template failed.
            OSError: A file could not be written.
        """
        if self.renderers and not self._render(batch):
            _log().info(
                "the change of %s leaves every rendered file as it was", ", ".join(batch.services)
            )
            return None
        if self.runner is None:
            return None
        return self.runner.run(batch.to_json(), batch.environment())

    def _render(self, batch: Batch) -> bool:
        tasks = None if self._lookup_tasks is None else self._tasks_of(batch)
        context = render_context(batch.current, tasks)
        changed = False
        errors: list[SwarmDNSError | OSError] = []
        for renderer in self.renderers:
            try:
                if renderer.render(context):
                    changed = True
                    _log().info("rendered %s from %s", renderer.dest_path, renderer.template_path)
            except (SwarmDNSError, OSError) as error:
                errors.append(error)
        for other in errors[1:]:
            _log().error("%s", other)
        if errors:
            raise errors[0]
        return changed

    def _tasks_of(self, batch: Batch) -> dict[str, Sequence[Task]]:
        assert self._lookup_tasks is not None  # noqa: S101 - for mypy
        for service in batch.services:
            try:
                self._tasks[service] = self._lookup_tasks(service)
            except SwarmDNSError as error:
                _log().warning(
                    "looking up the tasks of %s failed; the templates get their addresses"
                    " without names: %s",
                    service,
                    error,
                )
                self._tasks[service] = ()
        return {name: self._tasks.get(name, ()) for name in batch.current}


class ActionLoop:
    """Acts on changes one batch at a time, once each burst has settled.

    ``submit()`` takes changes from any thread (a watcher's ``on_change``)
    and returns at once; ``run()`` acts on them, in the thread that calls it,
    never on two batches at once: changes that come while an action runs make
    exactly one more action after it, with the state then.

    An action's error (``SwarmDNSError``, ``OSError``) on the first batch ends
    ``run()``: a template that fails at start is a mistake to fix. After
    that, it is logged and the loop goes on; the next change tries again.

    ``stop()`` calls ``cancel``, which cuts the action under way short, so
    that a watch that stops does not wait for its command (up to its
    timeout), nor leave it running::

        actions = Actions(renderers, runner)
        loop = ActionLoop(actions, services, cancel=actions.cancel)

    Args:
        act: What to do with each batch (an ``Actions``).
        services: The services watched: the first action waits for all their
            initial sets.
        window: When a burst has settled; by default, at once.
        clock: Monotonic seconds, given to ``window`` as ``now``.
        cancel: Called (from the thread of ``stop()``) to end the action
            under way at once and to keep later ones from doing anything,
            such as ``Actions.cancel``; it may block until the action's
            command has ended. None: ``stop()`` waits for the action.
    """

    def __init__(
        self,
        act: Callable[[Batch], object],
        services: Iterable[str] = (),
        *,
        window: SettleWindow | None = None,
        clock: Callable[[], float] = time.monotonic,
        cancel: Callable[[], object] | None = None,
    ) -> None:
        self._act = act
        self._cancel = cancel
        self._pending = PendingChanges(services)
        self._window = window if window is not None else SettleWindow()
        self._clock = clock
        self._condition = threading.Condition()
        self._stopped = False
        self._done = 0

    def __repr__(self) -> str:
        return f"<ActionLoop {self._act!r}, {self._window!r}, {self._done} actions>"

    @property
    def actions(self) -> int:
        """How many batches were acted on (including those that failed after the first)."""
        return self._done

    @property
    def waiting_for(self) -> frozenset[str]:
        """The services whose initial set the first action still waits for."""
        with self._condition:
            return self._pending.waiting_for

    def submit(self, change: TaskSetChange) -> None:
        """Take a change, from any thread; returns at once."""
        with self._condition:
            self._pending.add(change)
            self._window.changed(self._clock())
            self._condition.notify_all()

    def act_now(self) -> object:
        """Act on the changes submitted so far, in this thread, without waiting: ``watch --once``.

        Returns:
            What the action returned (``Actions``: the command's result), or
            None when there was nothing to act on yet.

        Raises:
            Exception: What the action raised.
        """
        with self._condition:
            batch = self._pending.take() if self._pending.ready else None
            if batch is not None:
                self._window.acted()
        if batch is None:
            return None
        result = self._act(batch)
        self._done += 1
        return result

    def take_due(self, now: float | None = None) -> Batch | None:
        """The batch to act on, if one is due at ``now``; then the next burst starts.

        None also when the burst cancelled out. ``run()`` calls it; call it
        yourself to drive the loop on a clock of your own.
        """
        with self._condition:
            return self._take_due(self._clock() if now is None else now)

    def _take_due(self, now: float) -> Batch | None:
        if not (self._pending.ready and self._window.due(now)):
            return None
        self._window.acted()
        return self._pending.take()

    def _wait_time(self, now: float) -> float | None:
        deadline = self._window.next_deadline()
        if deadline is None or not self._pending.ready:
            return None  # until a change comes
        return max(0.0, deadline - now)

    def run(self) -> None:
        """Act on each batch once it is due, until ``stop()``.

        Raises:
            SwarmDNSError, OSError: The first action failed.
            Exception: Anything else an action raised (a bug), at any time.
        """
        while True:
            with self._condition:
                while True:
                    if self._stopped:
                        return
                    now = self._clock()
                    batch = self._take_due(now)
                    if batch is not None:
                        break
                    self._condition.wait(self._wait_time(now))
            try:
                self._act(batch)
            except (SwarmDNSError, OSError) as error:
                if not self._done:
                    raise
                _log().error(
                    "acting on the change of %s failed; the watch goes on, and the next change"
                    " tries again: %s",
                    ", ".join(batch.services),
                    error,
                )
            self._done += 1

    def stop(self) -> None:
        """End ``run()``, from any thread; the action under way is cut short.

        ``run()`` takes no batch after this. An action under way is
        cancelled (``cancel``: its command is stopped, with its process
        group), and ``run()`` returns once it has returned; this returns once
        ``cancel`` has. Without ``cancel``, ``run()`` returns when the action
        ends. Calling it again does no harm.
        """
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
        if self._cancel is not None:
            self._cancel()
