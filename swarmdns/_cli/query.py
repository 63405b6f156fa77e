"""The options every lookup command (``vip``, ``tasks``, ``watch``, ``self``) takes."""

from __future__ import annotations

import argparse
from typing import TypedDict

import attrs

from .._backends.base import Backend
from .._backends.direct import DirectBackend
from .._backends.nameserver import parse_nameserver
from .._lookups import DEFAULT_TIMEOUT
from .._runtime import RUNTIMES, Runtime
from .options import add_duration_option, parse_duration


def add_query_options(parser: argparse.ArgumentParser) -> None:
    """``--network``, ``--nameserver``, ``--timeout``, ``--runtime`` and ``--json``."""
    parser.add_argument("--network", metavar="N", help="only the service's addresses on N")
    parser.add_argument(
        "--nameserver",
        metavar="HOST[:PORT]",
        help="ask this nameserver (default: SWARMDNS_NAMESERVER, else /etc/resolv.conf)",
    )
    add_duration_option(
        parser, "--timeout", help="how long one lookup may take", default=f"{DEFAULT_TIMEOUT:g}"
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="swarm: tasks.SERVICE lists the tasks; compose: SERVICE lists the containers;"
        " auto: this container's own name tells (default: SWARMDNS_RUNTIME, else auto)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


class LookupOptions(TypedDict):
    """What a lookup takes from the command's options."""

    network: str | None
    backend: Backend | None
    timeout: float
    runtime: Runtime | None


@attrs.frozen(kw_only=True)
class Query:
    """How to look a service up, from the options: the one backend every lookup shares."""

    network: str | None
    backend: Backend | None
    timeout: float
    as_json: bool
    runtime: Runtime | None = None

    @property
    def lookup_options(self) -> LookupOptions:
        """The keyword arguments this query gives a lookup (``task_ips()``, ``tasks()``...)."""
        return {
            "network": self.network,
            "backend": self.backend,
            "timeout": self.timeout,
            "runtime": self.runtime,
        }

    @classmethod
    def from_options(cls, options: argparse.Namespace) -> Query:
        """Read (and check) the options of ``add_query_options()``.

        Raises:
            ConfigurationError: A bad ``--timeout`` or ``--nameserver``.
        """
        return cls(
            network=options.network,
            timeout=parse_duration(options.timeout, source="--timeout", positive=True),
            backend=_backend(options.nameserver),
            as_json=options.json,
            runtime=options.runtime,
        )


def _backend(nameserver: str | None) -> DirectBackend | None:
    """The backend ``--nameserver`` asks for; its error names the option."""
    if nameserver is None:
        return None
    parse_nameserver(nameserver, source="--nameserver")
    return DirectBackend([nameserver])
