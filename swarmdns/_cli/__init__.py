"""The ``swarmdns`` command: look services up, watch them, run the fake.

Exit codes (``EXIT_CODES``, shown by ``--help``): 0 success; 1 not found (no
such service, fewer tasks than ``tasks --min``, no virtual IP where one was
asked for); 2 usage error; 3 DNS failure or timeout (for ``watch``, lookups
failing for longer than ``--fail-after``). Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import json
import os
import queue
import select
import shlex
import shutil
import signal
import socket
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from ipaddress import IPv4Address
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO

import attrs

from .. import __version__
from .._actions import (
    ACTIONS_LOGGER,
    ActionLoop,
    Actions,
    CommandResult,
    CommandRunner,
    Renderer,
    SettleWindow,
)
from .._backends.base import Backend
from .._backends.direct import DirectBackend
from .._deadlines import seconds
from .._errors import (
    ConfigurationError,
    InvalidName,
    NoVirtualIP,
    ResolutionError,
    ResolutionTimeout,
    ServiceNotFound,
    SwarmDNSError,
    WatchTimeout,
)
from .._lookups import DEFAULT_TIMEOUT
from .._model import Task
from .._names import tasks_name
from .._sync import service_vip, task_ips, tasks
from .._values import TaskSetChange, WatchHealth
from .._watch import excluded_addresses
from .._watcher import FleetWatcher, TaskWatcher
from .options import parse_render_spec, parse_wait

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_DNS_FAILURE = 3
EXIT_COMMAND_FAILED = 4
EXIT_INTERRUPTED = 130

#: The exit codes, as ``--help`` shows them (docs/cli.md shows the same table).
EXIT_CODES = """\
exit codes:
    0  success
    1  not found: no such service, fewer tasks than tasks --min (1 by default),
       or no virtual IP where vip asked for one
    2  usage: bad options, a name Docker would not accept, a bad
       SWARMDNS_NAMESERVER, or an address serve cannot listen on
    3  DNS failure or timeout; watch --once: a lookup failed; watch: lookups
       failed for longer than --fail-after
    4  watch --once: the --exec command failed, or ran past --exec-timeout
  130  watch --once: interrupted (Ctrl-C, SIGTERM) before it was done"""


class _Exit(Exception):
    """End the command with ``code``, and ``message`` as its one line on stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Formatter(argparse.HelpFormatter):
    """Wraps descriptions, but keeps text laid out by hand (the exit codes) as it is."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"swarmdns: {message} (see swarmdns --help)\n")


def _positive(text: str) -> float:
    try:
        return seconds("SECONDS", float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds") from None


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number from 0 to 65535")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of tasks (0 or more)")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="swarmdns",
        description="Discover the tasks of a Docker Swarm service through Docker's embedded DNS.",
        epilog=EXIT_CODES,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"swarmdns {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, *, help: str, description: str, parents: Sequence[_Parser] = ()
    ) -> argparse.ArgumentParser:
        found: argparse.ArgumentParser = commands.add_parser(
            name,
            help=help,
            description=description,
            parents=list(parents),
            epilog=EXIT_CODES,
            formatter_class=_Formatter,
        )
        return found

    query = _Parser(add_help=False)
    query.add_argument("--network", metavar="N", help="only the service's addresses on N")
    query.add_argument(
        "--nameserver",
        metavar="HOST[:PORT]",
        help="ask this nameserver (default: SWARMDNS_NAMESERVER, else /etc/resolv.conf)",
    )
    query.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long one lookup may take (default: {DEFAULT_TIMEOUT:g})",
    )
    query.add_argument("--json", action="store_true", help="print JSON")

    vip_command = command(
        "vip",
        parents=[query],
        help="print the service's virtual IP",
        description="Print the virtual IP of SERVICE (the A record of SERVICE).",
    )
    vip_command.add_argument("service", metavar="SERVICE", help="the service's name")
    tasks_command = command(
        "tasks",
        parents=[query],
        help="print the address of every running task",
        description="Print the address of every running task of SERVICE (tasks.SERVICE). "
        "With no task (the engine answers NXDOMAIN), or fewer than --min, it prints nothing "
        "and exits 1.",
    )
    tasks_command.add_argument("service", metavar="SERVICE", help="the service's name")
    tasks_command.add_argument(
        "--names", action="store_true", help="also each task's name, slot and ID (PTR records)"
    )
    tasks_command.add_argument(
        "--min",
        type=_count,
        default=1,
        metavar="N",
        help="exit 1 unless there are at least N tasks (default: 1; 0 accepts none)",
    )
    watch_command = command(
        "watch",
        parents=[query],
        help="print a line whenever the tasks change, until interrupted",
        description="Follow the tasks of each SERVICE: one line for each initial set, then one "
        "per change; a line when a service's lookups start failing, and one when they work "
        "again (both noticed within an interval). A failed lookup never changes the set. "
        "With several services, each change line names its service; all go through one "
        "socket. Ctrl-C or SIGTERM (docker stop) ends it, stopping a command under way with "
        "its process group, and so does the reader of its output going away.",
    )
    watch_command.add_argument(
        "services", nargs="+", metavar="SERVICE", help="the services' names (one or more)"
    )
    watch_command.add_argument(
        "--interval",
        type=_positive,
        default=2.0,
        metavar="S",
        help="seconds between lookups (default: 2)",
    )
    watch_command.add_argument(
        "--exclude-self",
        action="store_true",
        help="leave out this container's own addresses (a sidecar in a task of the service)",
    )
    watch_command.add_argument(
        "--once",
        action="store_true",
        help="look each service up once, print its set, render and run once (--render, --exec),"
        " and exit (3 if a lookup failed, 4 if the command failed)",
    )
    watch_command.add_argument(
        "--fail-after",
        type=_positive,
        metavar="SECONDS",
        help="exit 3 once a service's lookups have failed for this long (default: never)",
    )
    watch_command.add_argument(
        "--render",
        action="append",
        default=[],
        metavar="TEMPLATE:DEST",
        help="render the Jinja2 TEMPLATE into DEST on each change, atomically and only when"
        " its content changes (repeatable; needs pip install 'swarmdns[render]')",
    )
    watch_command.add_argument(
        "--exec",
        metavar="CMD",
        help="run CMD through the shell after each change (after rendering: only when a file"
        " changed), with the change as JSON on stdin and SWARMDNS_SERVICE and SWARMDNS_TASKS"
        " in its environment; its output goes to stderr",
    )
    watch_command.add_argument(
        "--exec-timeout",
        type=_positive,
        default=30.0,
        metavar="SECONDS",
        help="stop a command (and its process group) running longer than this (default: 30)",
    )
    watch_command.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics of the watch on http://HOST:PORT/metrics (needs pip"
        " install 'swarmdns[metrics]')",
    )
    watch_command.add_argument(
        "--wait",
        metavar="MIN[:MAX]",
        help="act once the tasks have been quiet for MIN seconds, at the latest MAX after the"
        " first change of a burst (default MAX: 4 x MIN), so a rolling update is one reload",
    )

    serve = command(
        "serve",
        help="run the fake Swarm DNS server, for local development",
        description="Run a fake of Docker's embedded DNS server with the given services, and "
        "print its address, until interrupted.",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address (or name, such as localhost) to listen on (default: 127.0.0.1)",
    )
    serve.add_argument(
        "--port", type=_port, default=0, help="port for UDP and TCP (default: any free one)"
    )
    serve.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="NAME[=REPLICAS]",
        help="a service to run (repeatable; default: web=3)",
    )
    serve.add_argument(
        "--file",
        type=Path,
        metavar="FILE",
        help='a JSON description: {"networks": [{"name": "mesh", "subnet": "10.9.0.0/24"}],'
        ' "services": [{"name": "web", "replicas": 3, "network": "mesh"}]}',
    )
    serve.add_argument(
        "--engine",
        metavar="VERSION",
        help="the Docker Engine version to answer like: 20.10, 26.1 or 28.5 (default: 28.5)",
    )
    serve.add_argument(
        "--control",
        type=_port_or_any,
        metavar="PORT",
        help="also open the control channel on 127.0.0.1:PORT (0: any free port), so that"
        " swarmdns control can scale services, kill tasks and inject faults",
    )
    control = command(
        "control",
        help="drive a running fake (swarmdns serve --control) from another process",
        description="Send one request to a running fake's control channel and print its"
        " result as JSON. FIELD=VALUE pairs are the request's fields; a VALUE that reads as"
        ' JSON (5, true, ["SERVFAIL"]) is sent as such, any other as text. Operations:'
        " state, create_service, scale, remove_service, kill_task, replace_task, reschedule,"
        " mark_healthy, mark_unhealthy, inject, clear_faults, reset.",
    )
    control.add_argument(
        "--address",
        default=os.environ.get("SWARMDNS_CONTROL"),
        metavar="HOST:PORT",
        help="the control channel (default: SWARMDNS_CONTROL)",
    )
    control.add_argument("op", metavar="OPERATION", help="what to do, such as scale or state")
    control.add_argument(
        "fields", nargs="*", metavar="FIELD=VALUE", help="the request's fields, such as name=web"
    )
    command(
        "demo",
        help="show swarmdns at work on a fake Swarm (no Swarm needed)",
        description="Start a fake Swarm with a sample service and show its virtual IP, its "
        "tasks, and a watch while it scales, loses a task and gets it replaced.",
    )
    return parser


def _port_or_any(text: str) -> int:
    if text == "0":
        return 0
    return _port(text)


def _control(options: argparse.Namespace, out: TextIO) -> int:
    from ..testing import ControlError, FakeControl, SwarmError  # noqa: PLC0415 - only when asked

    if not options.address:
        raise _Exit(
            EXIT_USAGE,
            "no control channel given: pass --address HOST:PORT (what swarmdns serve --control"
            " printed) or set SWARMDNS_CONTROL",
        )
    fields: dict[str, object] = {}
    for pair in options.fields:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise _Exit(EXIT_USAGE, f"{pair!r} is not FIELD=VALUE, such as name=web")
        try:
            fields[key] = json.loads(value)
        except ValueError:
            fields[key] = value
    try:
        result = FakeControl(options.address).request(options.op, **fields)
    except SwarmError as error:
        raise _Exit(EXIT_NOT_FOUND, f"the fake refused: {error}") from error
    except ControlError as error:
        code = EXIT_USAGE if error.kind in ("BadRequest", "RequestTooLarge") else EXIT_DNS_FAILURE
        raise _Exit(code, str(error)) from error
    except ValueError as error:  # a malformed address
        raise _Exit(EXIT_USAGE, f"--address: {error}") from error
    if result is not None:
        print(json.dumps(result), file=out)
    return EXIT_OK


def _backend(options: argparse.Namespace) -> Backend | None:
    if options.nameserver is None:
        return None
    return DirectBackend([options.nameserver])


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _stamp(moment: datetime) -> str:
    """A time in JSON: ISO 8601, in UTC, to the millisecond (``...T14:02:11.250+00:00``)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _clock(moment: datetime) -> str:
    """A time in a text line: ``14:02:11`` (UTC)."""
    return moment.astimezone(timezone.utc).strftime("%H:%M:%S")


def _task_json(task: Task) -> dict[str, Any]:
    return {**attrs.asdict(task), "ip": str(task.ip)}


def _change_line(change: TaskSetChange, as_json: bool, *, named: bool = False) -> str:
    if as_json:
        return json.dumps(
            {
                "event": "change",
                "at": _stamp(change.observed_at),
                "service": change.service,
                "added": sorted(str(ip) for ip in change.added),
                "removed": sorted(str(ip) for ip in change.removed),
                "current": [str(ip) for ip in change.current],
            }
        )
    added = " ".join(f"+{ip}" for ip in sorted(change.added))
    removed = " ".join(f"-{ip}" for ip in sorted(change.removed))
    current = " ".join(str(ip) for ip in change.current) or "(none)"
    service = change.service if named else ""
    parts = (_clock(change.observed_at), service, added, removed, "now:", current)
    return " ".join(p for p in parts if p)


def _failure_line(service: str, at: datetime, error: object, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {"event": "failure", "at": _stamp(at), "service": service, "error": str(error)}
        )
    return f"{_clock(at)} {service} lookups failing: {error}"


def _recovery_line(service: str, at: datetime, failed_for: float, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {
                "event": "recovery",
                "at": _stamp(at),
                "service": service,
                "failed_for": round(failed_for, 3),
            }
        )
    return f"{_clock(at)} {service} lookups work again after {failed_for:.1f} s"


def _vip(options: argparse.Namespace, out: TextIO) -> int:
    address = service_vip(
        options.service,
        network=options.network,
        backend=_backend(options),
        timeout=options.timeout,
    )
    print(json.dumps(str(address)) if options.json else address, file=out)
    return EXIT_OK


def _too_few(options: argparse.Namespace, found: Sequence[IPv4Address]) -> _Exit:
    """The error for fewer tasks than ``--min``: what was asked, what was found, what to do."""
    service, wanted = options.service, options.min
    if not found:
        name = tasks_name(service, options.network).rstrip(".")
        at_least = "" if wanted == 1 else f" (wanted at least {wanted})"
        return _Exit(
            EXIT_NOT_FOUND,
            f"no task of {service!r}{at_least}: the engine knows no task of it ({name} is"
            " NXDOMAIN); is the name misspelled, the service scaled to 0, or on no network"
            " shared with this container? (--min 0 accepts none)",
        )
    listed = ", ".join(str(ip) for ip in found)
    return _Exit(
        EXIT_NOT_FOUND,
        f"wanted at least {wanted} tasks of {service!r}, found {len(found)}: {listed}"
        f" (lower --min, or follow them as they start with: swarmdns watch {service})",
    )


def _tasks(options: argparse.Namespace, out: TextIO) -> int:
    lookup = {"network": options.network, "backend": _backend(options), "timeout": options.timeout}
    if options.names:
        found = tasks(options.service, **lookup)
        if len(found) < options.min:
            raise _too_few(options, [task.ip for task in found])
        if options.json:
            print(json.dumps([_task_json(t) for t in found]), file=out)
        for task in [] if options.json else found:
            slot = task.slot if task.slot is not None else (task.node_id or "?")
            print(f"{task.ip}\t{task.name or '?'}\t{slot}\t{task.network or '?'}", file=out)
        return EXIT_OK
    addresses = task_ips(options.service, **lookup)
    if len(addresses) < options.min:
        raise _too_few(options, addresses)
    if options.json:
        print(json.dumps([str(ip) for ip in addresses]), file=out)
    else:
        for address in addresses:
            print(address, file=out)
    return EXIT_OK


def _watch(options: argparse.Namespace, out: TextIO) -> int:
    with _interrupted_once(), _action_failures_shown():  # docker stop: as Ctrl-C, exit 0
        return _watch_until_interrupted(options, out)


def _watch_until_interrupted(options: argparse.Namespace, out: TextIO) -> int:
    services = list(dict.fromkeys(options.services))
    named = len(services) > 1
    actions = _action_loop(services, options)
    options.exclude = excluded_addresses((), exclude_self=options.exclude_self)
    if options.once:
        try:
            return _watch_once(services, options, out, named=named, actions=actions)
        except KeyboardInterrupt:  # not a success: a script must not go on as if it were
            raise _Exit(
                EXIT_INTERRUPTED,
                "interrupted before the lookups, the templates and the command were done;"
                " run it again",
            ) from None
    # None: the reader of the output went away; an exception: acting failed.
    changes: queue.Queue[TaskSetChange | BaseException | None] = queue.Queue()
    with (
        _library_log_silenced(),
        _acting(actions, changes.put),
        FleetWatcher(
            services,
            network=options.network,
            interval=options.interval,
            backend=_backend(options),
            timeout=options.timeout,
            exclude=options.exclude,
            on_change=changes.put if actions is None else _both(changes.put, actions.submit),
        ) as fleet,
        _when_reader_leaves(out, lambda: changes.put(None)),
        _metrics_served(options.metrics, fleet),
    ):
        _Follow(fleet, options, out, named=named).run(changes)


@contextlib.contextmanager
def _interrupted_once() -> Iterator[None]:
    """Within the block, SIGTERM interrupts as Ctrl-C does, and only the first interrupt counts.

    SIGTERM raises KeyboardInterrupt in the main thread, so ``docker stop``
    (SIGTERM, then SIGKILL 10 s later) ends ``watch`` cleanly: the command
    under way is stopped with its process group, threads and sockets are
    closed, and the exit status is Ctrl-C's. Any SIGTERM or SIGINT after the
    first is ignored, so that it does not cut the stopping short, which would
    leave the command running (SIGKILL still ends everything). The handlers
    before are put back afterwards (for ``main()`` called in a program's own
    process). Outside the main thread, where Python runs no signal handler,
    this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupted = False

    def interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, interrupt) for signum in _INTERRUPTS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            # None: a handler not set from Python, which cannot be put back; the default then.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


#: What stops ``watch``: Ctrl-C, and ``docker stop``'s SIGTERM.
_INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _metrics_served(address: str | None, fleet: FleetWatcher) -> Iterator[None]:
    """Serve ``fleet``'s metrics on ``address`` (``HOST:PORT``) while the watch runs."""
    if address is None:
        yield
        return
    from ..metrics import WatchCollector  # noqa: PLC0415 - an optional extra, only when asked

    collector = WatchCollector(fleet)
    from prometheus_client import CollectorRegistry, start_http_server  # noqa: PLC0415

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise _Exit(EXIT_USAGE, f"--metrics {address!r}: give HOST:PORT, such as 0.0.0.0:9109")
    registry = CollectorRegistry()
    registry.register(collector)
    try:
        server, thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    except OSError as error:
        raise ConfigurationError(
            f"cannot serve metrics on {address}: {error.strerror or error}; pick another port",
            source="--metrics",
        ) from error
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _action_loop(services: list[str], options: argparse.Namespace) -> ActionLoop | None:
    """What ``--render``, ``--exec`` and ``--wait`` ask for, checked before the watch starts."""
    if not options.render and options.exec is None:
        if options.wait is not None:
            raise _Exit(EXIT_USAGE, "--wait needs --render or --exec: there is nothing to do")
        return None
    renderers = [
        Renderer(spec.template, spec.dest) for spec in map(parse_render_spec, options.render)
    ]
    runner = None
    if options.exec is not None:
        runner = CommandRunner(
            options.exec,
            timeout=options.exec_timeout,
            stdout=sys.stderr,
            watching=not options.once,
        )
    lookup = functools.partial(
        tasks, network=options.network, backend=_backend(options), timeout=options.timeout
    )
    window = None if options.wait is None else SettleWindow(*parse_wait(options.wait))
    act = Actions(renderers, runner, lookup_tasks=lookup if renderers else None)
    return ActionLoop(act, services, window=window, cancel=act.cancel)


def _both(
    first: Callable[[TaskSetChange], object], second: Callable[[TaskSetChange], object]
) -> Callable[[TaskSetChange], None]:
    def both(change: TaskSetChange) -> None:
        first(change)
        second(change)

    return both


def _cannot_act(error: OSError) -> ConfigurationError:
    """The first action's failure to write a file, as the setting to fix."""
    failure = ConfigurationError(
        f"cannot act on the first change: {error}; check --render's DEST and --exec",
        source="--render",
    )
    failure.__cause__ = error
    return failure


@contextlib.contextmanager
def _acting(
    actions: ActionLoop | None, report: Callable[[BaseException], object]
) -> Iterator[None]:
    """Run the action loop in a thread while the watch runs; ``report`` its failure."""
    if actions is None:
        yield
        return

    def act() -> None:
        try:
            actions.run()
        except OSError as error:  # a file that cannot be written: a setting to fix
            report(_cannot_act(error))
        except BaseException as error:  # handed to the main thread, which raises it
            report(error)

    thread = threading.Thread(target=act, name="swarmdns-actions", daemon=True)
    thread.start()
    try:
        yield
    finally:
        actions.stop()
        thread.join()


@attrs.define
class _Outage:
    """A service whose lookups fail: since when (its first failed lookup), after which success."""

    since: datetime
    last_success: datetime | None


class _Follow:
    """The main thread of ``watch``: print changes, notice failures and recoveries.

    The ``FleetWatcher`` hands changes over at once; its health is read after
    each change, and at least once an interval, so a failure or a recovery
    shows within about an interval.
    """

    def __init__(
        self, fleet: FleetWatcher, options: argparse.Namespace, out: TextIO, *, named: bool
    ) -> None:
        self._fleet = fleet
        self._interval: float = options.interval
        self._fail_after: float | None = options.fail_after
        self._network: str | None = options.network
        self._json: bool = options.json
        self._out = out
        self._named = named
        self._started = _utc_now()
        self._outages: dict[str, _Outage] = {}

    def run(self, changes: queue.Queue[TaskSetChange | BaseException | None]) -> NoReturn:
        while True:
            try:
                change = changes.get(timeout=self._wait())
            except queue.Empty:
                pass
            else:
                while True:
                    if change is None:
                        raise BrokenPipeError("the reader of the output went away")
                    if isinstance(change, BaseException):
                        raise change
                    self._changed(change)
                    try:
                        change = changes.get_nowait()
                    except queue.Empty:
                        break
            if not self._fleet.running:
                self._ended()
            self._check_health()

    def _say(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    def _changed(self, change: TaskSetChange) -> None:
        outage = self._outages.get(change.service)
        if outage is not None and change.observed_at >= outage.since:
            # Only a lookup that worked shows a change: this one ended the outage.
            self._recovered(change.service, change.observed_at)
        self._say(_change_line(change, self._json, named=self._named))

    def _recovered(self, service: str, at: datetime) -> None:
        outage = self._outages.pop(service)
        failed_for = max(0.0, (at - outage.since).total_seconds())
        self._say(_recovery_line(service, at, failed_for, self._json))

    def _check_health(self) -> None:
        now = _utc_now()
        for service, health in list(self._fleet.health.items()):
            outage = self._outages.get(service)
            if (
                outage is not None
                and health.last_success is not None
                and (
                    health.consecutive_failures == 0 or health.last_success != outage.last_success
                )
            ):
                self._recovered(service, max(health.last_success, outage.since))
                outage = None
            if outage is None and health.consecutive_failures > 0:
                since = health.failing_since or now
                self._outages[service] = _Outage(since=since, last_success=health.last_success)
                self._say(_failure_line(service, since, health.last_error, self._json))
            if service in self._outages:
                self._check_fail_after(service, health, now)

    def _failing_since(self, health: WatchHealth) -> datetime:
        """Since when there has been no successful lookup."""
        return health.last_success or self._started

    def _check_fail_after(self, service: str, health: WatchHealth, now: datetime) -> None:
        if self._fail_after is None:
            return
        failing = (now - self._failing_since(health)).total_seconds()
        if failing >= self._fail_after:
            name = tasks_name(service, self._network).rstrip(".")
            raise WatchTimeout(
                f"no successful lookup of {service!r} for {failing:.1f} s, longer than"
                f" --fail-after {self._fail_after:g}; the last error: {health.last_error}",
                name=name,
                last_error=health.last_error,
            )

    def _wait(self) -> float:
        """How long to wait for a change: an interval, or less to a --fail-after deadline."""
        wait = self._interval
        if self._fail_after is not None and self._outages:
            health = self._fleet.health
            now = _utc_now()
            for service in self._outages:
                with contextlib.suppress(KeyError):
                    since = self._failing_since(health[service])
                    left = self._fail_after - (now - since).total_seconds()
                    wait = min(wait, max(0.0, left))
        return wait

    def _ended(self) -> NoReturn:
        error = self._fleet.error
        if isinstance(error, SwarmDNSError):
            raise error
        raise SwarmDNSError(f"the watch ended unexpectedly: {error!r}")


def _watch_once(
    services: list[str],
    options: argparse.Namespace,
    out: TextIO,
    *,
    named: bool,
    actions: ActionLoop | None,
) -> int:
    """Look each service up once, concurrently; print each set as a watch's first line.

    Then, if every lookup worked, render the templates and run the command
    once, as consul-template's ``-once``; after a failed lookup, nothing is
    rendered, so that a file never holds a set the engine did not give.
    """
    import asyncio  # noqa: PLC0415 - only for --once

    from .. import aio  # noqa: PLC0415 - the same reason

    for service in services:
        tasks_name(service, options.network)  # a bad name is a usage error, before any lookup
    backend = _backend(options)

    async def look_up(service: str) -> TaskSetChange | SwarmDNSError:
        try:
            answer = await aio.task_ips(
                service, network=options.network, backend=backend, timeout=options.timeout
            )
        except (ResolutionError, ResolutionTimeout) as error:  # not a bad configuration
            return error
        found = tuple(ip for ip in answer if ip not in options.exclude)
        return TaskSetChange(
            service=service,
            added=frozenset(found),
            removed=frozenset(),
            current=found,
            observed_at=_utc_now(),
        )

    async def look_up_all() -> list[TaskSetChange | SwarmDNSError]:
        return await asyncio.gather(*(look_up(service) for service in services))

    failed: list[tuple[str, SwarmDNSError]] = []
    for service, result in zip(services, asyncio.run(look_up_all()), strict=True):
        if isinstance(result, SwarmDNSError):
            failed.append((service, result))
        else:
            print(_change_line(result, options.json, named=named), file=out, flush=True)
            if actions is not None:
                actions.submit(result)
    if not failed:
        return EXIT_OK if actions is None else _act_once(actions)
    if len(failed) == 1:
        ((service, error),) = failed
        raise _Exit(EXIT_DNS_FAILURE, f"looking up {service!r} failed: {error}")
    each = "; ".join(f"{service!r}: {error}" for service, error in failed)
    raise _Exit(
        EXIT_DNS_FAILURE, f"looking up {len(failed)} of {len(services)} services failed: {each}"
    )


def _act_once(actions: ActionLoop) -> int:
    """Render and run on every service's set, once: the end of ``watch --once``."""
    try:
        result = actions.act_now()
    except OSError as error:
        raise _cannot_act(error) from error
    if isinstance(result, CommandResult) and not result.ok:
        if result.timed_out:
            why = "ran past --exec-timeout (above); raise it if the command needs longer"
        else:
            why = "failed (above); run it by hand to see why, then fix it"
        raise _Exit(EXIT_COMMAND_FAILED, f"the --exec command {why}")
    return EXIT_OK


@contextlib.contextmanager
def _action_failures_shown() -> Iterator[None]:
    """Print on stderr how a command or a rendering failed, as ``swarmdns: <message>`` lines.

    The library's other warnings (lookups) stay off stderr: ``watch`` prints
    failures and recoveries itself.
    """
    import logging  # noqa: PLC0415 - slow to import, needed only by watch

    actions = logging.getLogger(f"swarmdns.{ACTIONS_LOGGER}")
    shown = logging.StreamHandler(sys.stderr)
    shown.setLevel(logging.WARNING)
    shown.setFormatter(logging.Formatter("swarmdns: %(message)s"))
    actions.addHandler(shown)
    try:
        yield
    finally:
        actions.removeHandler(shown)


@contextlib.contextmanager
def _library_log_silenced() -> Iterator[None]:
    """Keep the library's own warnings off stderr: watch prints failures itself."""
    import logging  # noqa: PLC0415 - slow to import, needed only by watch

    library = logging.getLogger("swarmdns")
    quiet = logging.NullHandler()
    library.addHandler(quiet)
    try:
        yield
    finally:
        library.removeHandler(quiet)


@contextlib.contextmanager
def _when_reader_leaves(out: TextIO, notify: Callable[[], object]) -> Iterator[None]:
    """Call ``notify()`` (from a thread) if ``out`` is a pipe whose reader goes away.

    So that ``swarmdns watch web | head -1`` ends when ``head`` does, not when
    the next change comes (which may be hours later) and fails to be written.
    """
    try:
        fd = out.fileno()
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except (OSError, ValueError):  # no file behind it (io.StringIO)
        is_pipe = False
    if not is_pipe or not hasattr(select, "poll"):
        yield
        return
    stop_reading, stop_writing = os.pipe()

    def wait_for_reader_to_leave() -> None:
        poller = select.poll()
        poller.register(fd, 0)  # errors only: POLLERR once the pipe has no reader
        poller.register(stop_reading, select.POLLIN)
        if any(ready == fd for ready, _ in poller.poll()):
            notify()

    thread = threading.Thread(
        target=wait_for_reader_to_leave, name="swarmdns-output-reader", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        os.write(stop_writing, b"x")
        thread.join()
        os.close(stop_reading)
        os.close(stop_writing)


_DESCRIPTION_EXAMPLE = (
    '{"networks": [{"name": "mesh", "subnet": "10.9.0.0/24"}],'
    ' "services": [{"name": "web", "replicas": 3, "network": "mesh"}]}'
)


def _listed(description: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """``description[key]``: a list of objects (none when the key is missing)."""
    listed = description.get(key, [])
    if not isinstance(listed, list) or not all(isinstance(item, dict) for item in listed):
        raise TypeError(f"{key!r} must be a list of objects, not {json.dumps(listed)}")
    return listed


def _described(options: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The networks and services of ``serve``: from ``--file``, then each ``--service``."""
    networks: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    if options.file is not None:
        try:
            description = json.loads(options.file.read_text())
            if not isinstance(description, dict):
                raise TypeError("the description must be a JSON object")
            unknown = sorted(set(description) - {"networks", "services"})
            if unknown:
                raise TypeError(f"unknown key {unknown[0]!r} (it takes networks and services)")
            networks.extend(_listed(description, "networks"))
            services.extend(_listed(description, "services"))
        except (OSError, ValueError, TypeError) as error:
            raise ConfigurationError(
                f"cannot use {str(options.file)!r}: {error}; expected {_DESCRIPTION_EXAMPLE}",
                source="--file",
            ) from error
    for text in options.service:
        name, _, replicas = text.partition("=")
        if replicas and not replicas.isdigit():
            raise ConfigurationError(
                f"--service {text!r}: REPLICAS must be a whole number", source="--service"
            )
        services.append({"name": name, "replicas": int(replicas or 1)})
    return networks, services or [{"name": "web", "replicas": 3}]


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()


def _listen_address(host: str) -> str:
    """The address ``--host`` names (an IPv4 one if it has several): ``localhost`` is 127.0.0.1.

    ``SWARMDNS_NAMESERVER`` and ``dig @`` take an address, so the fake listens
    on one, and its hints print it.
    """
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as error:
        why = getattr(error, "strerror", None) or str(error)
        raise ConfigurationError(
            f"--host {host!r}: cannot find its address ({why}); give an address of this"
            " machine, such as 127.0.0.1 (the default)",
            source="--host",
        ) from error
    ordered = sorted(found, key=lambda info: info[0] != socket.AF_INET)
    return str(ordered[0][4][0])


_WHY_NOT = {
    errno.EADDRINUSE: "another program uses that port: choose another --port, or leave --port"
    " out for any free one",
    errno.EADDRNOTAVAIL: "that is not an address of this machine: give one that is, such as"
    " 127.0.0.1 (the default)",
    errno.EACCES: "ports below 1024 need privileges: choose a port from 1024 up, or leave"
    " --port out for any free one",
}


def _try_address(address: str) -> None:
    """Bind a socket to ``address`` (any port), for the reason it cannot be, if it cannot.

    With any free port, the fake tries several ports before it gives up, and
    its error no longer says why the address itself would not do.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((address, 0))


def _cannot_listen(host: str, address: str, port: int, error: OSError) -> ConfigurationError:
    where = host if host == address else f"{host} ({address})"
    where += f" port {port}" if port else " (any free port)"
    why = error.strerror or str(error) or type(error).__name__
    hint = _WHY_NOT.get(error.errno or 0)
    return ConfigurationError(
        f"cannot listen on {where}: {why}" + (f"; {hint}" if hint else ""),
        source="--host/--port",
    )


def _own_command() -> str:
    """How to run this swarmdns from a shell: ``swarmdns`` if that is it, else ``python -m``."""
    here = Path(sys.executable).with_name("swarmdns")
    found = shutil.which("swarmdns")
    with contextlib.suppress(OSError):
        if found is not None and here.exists() and Path(found).samefile(here):
            return "swarmdns"
    return f"{shlex.quote(sys.executable)} -m swarmdns"


def _summary(name: str, backend: Backend) -> tuple[str, bool]:
    """What DNS gives for a service of the fake (its virtual IP, its tasks); whether any."""
    addresses = task_ips(name, backend=backend)
    if not addresses:
        return f"  {name}: not in DNS (no running task)", False
    try:
        vip = f"vip {service_vip(name, backend=backend)}"
    except NoVirtualIP:
        vip = "no VIP (dnsrr)"
    return f"  {name}: {vip}, tasks {' '.join(str(ip) for ip in addresses)}", True


def _serve(options: argparse.Namespace, out: TextIO) -> int:
    from ..testing import ENGINES, FakeSwarm, SwarmError  # noqa: PLC0415 - the fake only when asked

    networks, services = _described(options)
    address = _listen_address(options.host)
    try:
        # Nobody reads this fake's query log, and it may run for days: keep none.
        swarm = FakeSwarm(
            host=address,
            port=options.port,
            engine=options.engine or ENGINES[-1],
            query_log=0,
        )
    except ValueError as error:
        raise ConfigurationError(f"--engine: {error}", source="--engine") from error
    try:
        _try_address(address)
        swarm.start()
    except OSError as error:
        raise _cannot_listen(options.host, address, options.port, error) from error
    try:
        for network in networks:
            try:
                swarm.create_network(**network)
            except (SwarmError, TypeError) as error:
                raise ConfigurationError(
                    f"network {json.dumps(network)}: {error}", source="--file"
                ) from error
        for service in services:
            try:
                swarm.create_service(**{"replicas": 1, **service})
            except (SwarmError, TypeError) as error:
                raise ConfigurationError(
                    f"service {json.dumps(service)}: {error}", source="--service/--file"
                ) from error
        backend = DirectBackend([swarm.nameserver])
        say = [
            f"fake Swarm DNS listening on {swarm.nameserver} (UDP and TCP),"
            f" answering like Docker Engine {swarm.engine}",
            "  networks: " + ", ".join(f"{n.name} {n.subnet}" for n in swarm.networks),
        ]
        in_dns = []
        for each in swarm.services:
            line, listed = _summary(each.name, backend)
            say.append(line)
            in_dns += [each.name] if listed else []
        shown = (in_dns or [swarm.services[0].name])[0]
        if options.control is not None:
            try:
                control = swarm.serve_control(options.control)
            except OSError as error:
                raise ConfigurationError(
                    f"cannot open the control channel on 127.0.0.1:{options.control}:"
                    f" {error.strerror or error}; pick another port, or 0 for any free one",
                    source="--control",
                ) from error
            say.append(
                f"control channel on {control}"
                f" (try: {_own_command()} control --address {control} state)"
            )
        say.append(f"try: dig @{swarm.host} -p {swarm.port} tasks.{shown}")
        say.append(f"or:  SWARMDNS_NAMESERVER={swarm.nameserver} {_own_command()} tasks {shown}")
        say.append("Ctrl-C stops it.")
        print("\n".join(say), file=out, flush=True)
        _wait_for_interrupt()
    finally:
        swarm.stop()
    return EXIT_OK


def _demo(options: argparse.Namespace, out: TextIO) -> int:
    from ..testing import FakeSwarm  # noqa: PLC0415 - the fake only when asked

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    with FakeSwarm() as swarm:
        backend = DirectBackend([swarm.nameserver])
        web = swarm.create_service("web", replicas=3, network="proxy")
        say(f"A fake Swarm (Docker's embedded DNS, on {swarm.nameserver}) runs service 'web'.")
        say()
        say("$ swarmdns vip web            # the virtual IP: one address, load-balanced")
        say(str(service_vip("web", backend=backend)))
        say("$ swarmdns tasks web --names  # tasks.web: every task, with its PTR identity")
        for task in tasks("web", backend=backend):
            say(f"{task.ip}\t{task.name}")
        say()
        say("$ swarmdns watch web           # meanwhile, the service changes:")
        changes: queue.Queue[TaskSetChange] = queue.Queue()
        with TaskWatcher("web", backend=backend, interval=0.1, on_change=changes.put):
            steps: list[tuple[str, Callable[[], object]]] = [
                ("scale web to 5", lambda: swarm.scale("web", 5)),
                ("a task dies", lambda: swarm.kill_task(web.tasks[0])),
                ("Swarm starts its replacement", lambda: swarm.reschedule("web")),
                ("scale web to 0: every name of 'web' vanishes", lambda: swarm.scale("web", 0)),
            ]
            say("  " + _change_line(changes.get(timeout=10), False))
            for description, step in steps:
                say(f"# {description}")
                step()
                say("  " + _change_line(changes.get(timeout=10), False))
        say()
        say("No Swarm was needed. Inside a task, the same commands talk to 127.0.0.11.")
    return EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "vip": _vip,
    "tasks": _tasks,
    "watch": _watch,
    "serve": _serve,
    "control": _control,
    "demo": _demo,
}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the ``swarmdns`` command; return its exit code."""
    options = _parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    code = EXIT_OK
    try:
        code = _run(options, stream)
        stream.flush()  # here, where a reader that went away is noticed
    except BrokenPipeError:
        # The reader went away (swarmdns watch | head -1): nothing more to say.
        _discard_output(stream)
    return code


def _run(options: argparse.Namespace, out: TextIO) -> int:
    """Run the command; an error becomes its line on stderr and its exit code."""
    try:
        return _COMMANDS[options.command](options, out)
    except KeyboardInterrupt:
        return EXIT_OK
    except (_Exit, SwarmDNSError) as error:
        print(f"swarmdns: {error}", file=sys.stderr)
        return _exit_code(error)


def _exit_code(error: _Exit | SwarmDNSError) -> int:
    if isinstance(error, _Exit):
        return error.code
    if isinstance(error, ServiceNotFound | NoVirtualIP):
        return EXIT_NOT_FOUND
    if isinstance(error, InvalidName | ConfigurationError):
        return EXIT_USAGE
    return EXIT_DNS_FAILURE


def _discard_output(stream: TextIO) -> None:
    """Send what is left for ``stream`` to /dev/null, so that exiting writes no error about it.

    Python flushes standard output at exit; into a pipe without a reader,
    that fails with a second BrokenPipeError, which it reports on stderr.
    """
    with contextlib.suppress(OSError, ValueError):
        fd = stream.fileno()
        nowhere = os.open(os.devnull, os.O_WRONLY)
        os.dup2(nowhere, fd)
        os.close(nowhere)


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())
