"""``swarmdns tasks``: print the address (and with ``--names``, the name) of every task."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import Any, TextIO

import attrs

from .._lookups import instances_query
from .._model import Task
from .._sync import task_ips, tasks
from .._where import where_for
from .common import EXIT_NOT_FOUND, EXIT_OK, CommandExit
from .options import parse_count
from .query import Query, add_query_options

HELP = "print the address of every running task"
DESCRIPTION = (
    "Print the address of every running task of SERVICE (tasks.SERVICE; under Compose, every"
    " container of SERVICE). With no task (the engine answers NXDOMAIN), or fewer than --min,"
    " it prints nothing and exits 1."
)


def add_options(parser: argparse.ArgumentParser) -> None:
    add_query_options(parser)
    parser.add_argument("service", metavar="SERVICE", help="the service's name")
    parser.add_argument(
        "--names", action="store_true", help="also each task's name, slot and ID (PTR records)"
    )
    parser.add_argument(
        "--min",
        default="1",
        metavar="N",
        help="exit 1 unless there are at least N tasks (default: 1; 0 accepts none)",
    )


@attrs.frozen(kw_only=True)
class TasksRequest:
    """What ``tasks`` was asked for."""

    service: str
    query: Query
    names: bool
    min: int

    @classmethod
    def from_options(cls, options: argparse.Namespace) -> TasksRequest:
        return cls(
            service=options.service,
            query=Query.from_options(options),
            names=options.names,
            min=parse_count(options.min, source="--min", of="tasks"),
        )


def run(options: argparse.Namespace, out: TextIO) -> int:
    request = TasksRequest.from_options(options)
    query = request.query
    if request.names:
        found = tasks(request.service, **query.lookup_options)
        if len(found) < request.min:
            raise _too_few(request, [task.ip for task in found])
        if query.as_json:
            print(json.dumps([task_json(t) for t in found]), file=out)
        for task in [] if query.as_json else found:
            slot = task.slot if task.slot is not None else (task.node_id or "?")
            print(f"{task.ip}\t{task.name or '?'}\t{slot}\t{task.network or '?'}", file=out)
        return EXIT_OK
    addresses = task_ips(request.service, **query.lookup_options)
    if len(addresses) < request.min:
        raise _too_few(request, addresses)
    if query.as_json:
        print(json.dumps([str(ip) for ip in addresses]), file=out)
    else:
        for address in addresses:
            print(address, file=out)
    return EXIT_OK


def task_json(task: Task) -> dict[str, Any]:
    """A task as ``--json`` prints it."""
    return {**attrs.asdict(task), "ip": str(task.ip)}


def _too_few(request: TasksRequest, found: Sequence[IPv4Address]) -> CommandExit:
    """The error for fewer tasks than ``--min``: what was asked, what was found, what to do."""
    service, wanted = request.service, request.min
    if not found:
        query = request.query
        runtime = where_for(query.runtime, query.backend).settled or "swarm"
        name = instances_query(service, query.network, runtime).question.name.rstrip(".")
        at_least = "" if wanted == 1 else f" (wanted at least {wanted})"
        return CommandExit(
            EXIT_NOT_FOUND,
            f"no task of {service!r}{at_least}: the engine knows no task of it ({name} is"
            " NXDOMAIN); is the name misspelled, the service scaled to 0, or on no network"
            " shared with this container? (--min 0 accepts none)",
        )
    listed = ", ".join(str(ip) for ip in found)
    return CommandExit(
        EXIT_NOT_FOUND,
        f"wanted at least {wanted} tasks of {service!r}, found {len(found)}: {listed}"
        f" (lower --min, or follow them as they start with: swarmdns watch {service})",
    )
