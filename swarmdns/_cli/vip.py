"""``swarmdns vip``: print the service's virtual IP."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from .._sync import service_vip
from .common import EXIT_OK
from .query import Query, add_query_options

HELP = "print the service's virtual IP"
DESCRIPTION = "Print the virtual IP of SERVICE (the A record of SERVICE)."


def add_options(parser: argparse.ArgumentParser) -> None:
    add_query_options(parser)
    parser.add_argument("service", metavar="SERVICE", help="the service's name")


def run(options: argparse.Namespace, out: TextIO) -> int:
    query = Query.from_options(options)
    address = service_vip(options.service, **query.lookup_options)
    print(json.dumps(str(address)) if query.as_json else address, file=out)
    return EXIT_OK
