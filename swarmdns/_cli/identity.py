"""``swarmdns self``: print this container's own address and who it is (``whoami()``)."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from .._sync import whoami
from .common import EXIT_OK
from .query import Query, add_query_options
from .tasks import task_json

HELP = "print this container's own address, and its task or Compose container"
DESCRIPTION = (
    "Print this container's own address on its network (or on --network N), with its service"
    " and slot and task ID (Swarm) or its project, service and number (Compose), as the"
    " engine's PTR records name it. Never a virtual IP, ingress or gateway-bridge address."
    " Exits 1 when it cannot tell (no identity, or several networks and no --network)."
)


def add_options(parser: argparse.ArgumentParser) -> None:
    add_query_options(parser)


def run(options: argparse.Namespace, out: TextIO) -> int:
    query = Query.from_options(options)
    me = whoami(**query.lookup_options)
    runtime = "compose" if me.task_id is None else "swarm"
    if query.as_json:
        print(json.dumps({**task_json(me), "runtime": runtime}), file=out)
    else:
        slot = me.slot if me.slot is not None else (me.node_id or "?")
        print(f"{me.ip}\t{me.name or '?'}\t{slot}\t{me.network or '?'}", file=out)
    return EXIT_OK
