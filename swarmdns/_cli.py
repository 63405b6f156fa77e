"""The ``swarmdns`` command: look services up, watch them, run the fake.

Exit codes: 0 success; 1 not found, or no virtual IP where one was asked for;
2 usage error; 3 DNS failure or timeout. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import attrs

from . import __version__
from ._backends.base import Backend
from ._backends.direct import DirectBackend
from ._deadlines import seconds
from ._errors import (
    ConfigurationError,
    InvalidName,
    NoVirtualIP,
    ServiceNotFound,
    SwarmDNSError,
)
from ._lookups import DEFAULT_TIMEOUT
from ._model import Task
from ._sync import service_vip, task_ips, tasks, watch_services
from ._watch import TaskSetChange
from ._watcher import TaskWatcher

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_DNS_FAILURE = 3


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


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="swarmdns",
        description="Discover the tasks of a Docker Swarm service through Docker's embedded DNS.",
        epilog="Exit codes: 0 success, 1 not found or no virtual IP, 2 usage, 3 DNS failure.",
    )
    parser.add_argument("--version", action="version", version=f"swarmdns {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    vip_command = commands.add_parser(
        "vip",
        parents=[query],
        help="print the service's virtual IP",
        description="Print the virtual IP of SERVICE (the A record of SERVICE).",
    )
    vip_command.add_argument("service", metavar="SERVICE", help="the service's name")
    tasks_command = commands.add_parser(
        "tasks",
        parents=[query],
        help="print the address of every running task",
        description="Print the address of every running task of SERVICE (tasks.SERVICE).",
    )
    tasks_command.add_argument("service", metavar="SERVICE", help="the service's name")
    tasks_command.add_argument(
        "--names", action="store_true", help="also each task's name, slot and ID (PTR records)"
    )
    watch_command = commands.add_parser(
        "watch",
        parents=[query],
        help="print a line whenever the tasks change, until interrupted",
        description="Follow the tasks of each SERVICE: one line for each initial set, then one "
        "per change. A failed lookup never changes the set. With several services, each text "
        "line names its service; all go through one socket. Ctrl-C ends it.",
    )
    watch_command.add_argument(
        "services", nargs="+", metavar="SERVICE", help="the services' names (one or more)"
    )
    watch_command.add_argument(
        "--interval", type=_positive, default=2.0, metavar="S", help="seconds between lookups"
    )

    serve = commands.add_parser(
        "serve",
        help="run the fake Swarm DNS server, for local development",
        description="Run a fake of Docker's embedded DNS server with the given services, and "
        "print its address, until interrupted.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
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
        help='a JSON description: {"services": [{"name": "web", "replicas": 3, ...}]}',
    )
    serve.add_argument(
        "--engine",
        metavar="VERSION",
        help="the Docker Engine version to answer like: 20.10, 26.1 or 28.5 (default: 28.5)",
    )
    commands.add_parser(
        "demo",
        help="show swarmdns at work on a fake Swarm (no Swarm needed)",
        description="Start a fake Swarm with a sample service and show its virtual IP, its "
        "tasks, and a watch while it scales, loses a task and gets it replaced.",
    )
    return parser


def _backend(options: argparse.Namespace) -> Backend | None:
    if options.nameserver is None:
        return None
    return DirectBackend([options.nameserver])


def _task_json(task: Task) -> dict[str, Any]:
    return {**attrs.asdict(task), "ip": str(task.ip)}


def _change_line(change: TaskSetChange, as_json: bool, *, named: bool = False) -> str:
    if as_json:
        return json.dumps(
            {
                "service": change.service,
                "added": sorted(str(ip) for ip in change.added),
                "removed": sorted(str(ip) for ip in change.removed),
                "current": [str(ip) for ip in change.current],
            }
        )
    added = " ".join(f"+{ip}" for ip in sorted(change.added))
    removed = " ".join(f"-{ip}" for ip in sorted(change.removed))
    current = " ".join(str(ip) for ip in change.current) or "(none)"
    stamp = change.observed_at.strftime("%H:%M:%S")
    service = change.service if named else ""
    return " ".join(p for p in (stamp, service, added, removed, "now:", current) if p)


def _vip(options: argparse.Namespace, out: TextIO) -> int:
    address = service_vip(
        options.service,
        network=options.network,
        backend=_backend(options),
        timeout=options.timeout,
    )
    print(json.dumps(str(address)) if options.json else address, file=out)
    return EXIT_OK


def _tasks(options: argparse.Namespace, out: TextIO) -> int:
    lookup = {"network": options.network, "backend": _backend(options), "timeout": options.timeout}
    if options.names:
        found = tasks(options.service, **lookup)
        if options.json:
            print(json.dumps([_task_json(t) for t in found]), file=out)
        for task in [] if options.json else found:
            slot = task.slot if task.slot is not None else (task.node_id or "?")
            print(f"{task.ip}\t{task.name or '?'}\t{slot}\t{task.network or '?'}", file=out)
        return EXIT_OK
    addresses = task_ips(options.service, **lookup)
    if options.json:
        print(json.dumps([str(ip) for ip in addresses]), file=out)
    else:
        for address in addresses:
            print(address, file=out)
    return EXIT_OK


def _watch(options: argparse.Namespace, out: TextIO) -> int:
    named = len(set(options.services)) > 1
    with watch_services(
        options.services,
        network=options.network,
        interval=options.interval,
        backend=_backend(options),
        timeout=options.timeout,
    ) as changes:
        for change in changes:
            print(_change_line(change, options.json, named=named), file=out, flush=True)
    return EXIT_OK  # pragma: no cover - the watch ends by interruption


def _services_from(options: argparse.Namespace) -> list[dict[str, Any]]:
    services: list[dict[str, Any]] = []
    if options.file is not None:
        try:
            description = json.loads(options.file.read_text())
            listed = description["services"]
            if not isinstance(listed, list):
                raise TypeError("'services' must be a list")
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConfigurationError(
                f"cannot use {str(options.file)!r}: {error}; expected"
                ' {"services": [{"name": "web", "replicas": 3}]}',
                source="--file",
            ) from error
        services.extend(listed)
    for text in options.service:
        name, _, replicas = text.partition("=")
        if replicas and not replicas.isdigit():
            raise ConfigurationError(
                f"--service {text!r}: REPLICAS must be a whole number", source="--service"
            )
        services.append({"name": name, "replicas": int(replicas or 1)})
    return services or [{"name": "web", "replicas": 3}]


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()


def _serve(options: argparse.Namespace, out: TextIO) -> int:
    from .testing import ENGINES, FakeSwarm, SwarmError  # noqa: PLC0415 - the fake only when asked

    services = _services_from(options)
    try:
        # Nobody reads this fake's query log, and it may run for days: keep none.
        swarm = FakeSwarm(
            host=options.host,
            port=options.port,
            engine=options.engine or ENGINES[-1],
            query_log=0,
        )
    except ValueError as error:
        raise ConfigurationError(f"--engine: {error}", source="--engine") from error
    try:
        swarm.start()
    except OSError as error:
        raise ConfigurationError(
            f"cannot listen on {options.host}:{options.port}: {error.strerror}",
            source="--host/--port",
        ) from error
    try:
        for spec in services:
            try:
                swarm.create_service(**{"replicas": 1, **spec})
            except (SwarmError, TypeError) as error:
                raise ConfigurationError(
                    f"service {spec!r}: {error}", source="--service/--file"
                ) from error
        print(f"fake Swarm DNS listening on {swarm.nameserver} (UDP and TCP)", file=out)
        for service in swarm.services:
            ips = " ".join(str(ip) for ip in service.task_ips)
            print(f"  {service.name}: vip {service.vip or '-'}, tasks {ips}", file=out)
        print(f"try: dig @{swarm.host} -p {swarm.port} tasks.{swarm.services[0].name}", file=out)
        print(f"or:  SWARMDNS_NAMESERVER={swarm.nameserver} swarmdns tasks web", file=out)
        print("Ctrl-C stops it.", file=out, flush=True)
        _wait_for_interrupt()
    finally:
        swarm.stop()
    return EXIT_OK


def _demo(options: argparse.Namespace, out: TextIO) -> int:
    from .testing import FakeSwarm  # noqa: PLC0415 - the fake only when asked

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
    "demo": _demo,
}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the ``swarmdns`` command; return its exit code."""
    options = _parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    try:
        return _COMMANDS[options.command](options, stream)
    except KeyboardInterrupt:
        return EXIT_OK
    except (ServiceNotFound, NoVirtualIP) as error:
        print(f"swarmdns: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except (InvalidName, ConfigurationError) as error:
        print(f"swarmdns: {error}", file=sys.stderr)
        return EXIT_USAGE
    except SwarmDNSError as error:
        print(f"swarmdns: {error}", file=sys.stderr)
        return EXIT_DNS_FAILURE
    except BrokenPipeError:
        return EXIT_OK  # the reader went away (swarmdns watch | head)


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())
