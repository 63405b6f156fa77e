"""The options every lookup command (``vip``, ``tasks``, ``watch``) takes, and their value."""

from __future__ import annotations

import argparse

import attrs

from .._backends.base import Backend
from .._backends.direct import DirectBackend
from .._backends.nameserver import parse_nameserver
from .._lookups import DEFAULT_TIMEOUT
from .options import add_duration_option, parse_duration


def add_query_options(parser: argparse.ArgumentParser) -> None:
    """``--network``, ``--nameserver``, ``--timeout`` and ``--json``."""
    parser.add_argument("--network", metavar="N", help="only the service's addresses on N")
    parser.add_argument(
        "--nameserver",
        metavar="HOST[:PORT]",
        help="ask this nameserver (default: SWARMDNS_NAMESERVER, else /etc/resolv.conf)",
    )
    add_duration_option(
        parser, "--timeout", help="how long one lookup may take", default=f"{DEFAULT_TIMEOUT:g}"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


@attrs.frozen(kw_only=True)
class Query:
    """How to look a service up, from the options: the one backend every lookup shares."""

    network: str | None
    backend: Backend | None
    timeout: float
    as_json: bool

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
        )


def _backend(nameserver: str | None) -> DirectBackend | None:
    """The backend ``--nameserver`` asks for; its error names the option."""
    if nameserver is None:
        return None
    parse_nameserver(nameserver, source="--nameserver")
    return DirectBackend([nameserver])
