"""Values a watch gives its users: what changed, and how its lookups are going."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from ipaddress import IPv4Address

from attrs import field, frozen

from ._errors import SwarmDNSError


def _addresses(value: frozenset[IPv4Address]) -> str:
    return "{" + ", ".join(str(ip) for ip in sorted(value)) + "}"


def _address_tuple(value: tuple[IPv4Address, ...]) -> str:
    return "(" + ", ".join(str(ip) for ip in value) + ")"


@frozen(kw_only=True)
class TaskSetChange:
    """A change in the set of a service's task addresses.

    The first change of a watch is the initial set, all of it in ``added``
    (even when empty); after that, a change is reported only when the set
    changes.

    Attributes:
        service: The service watched.
        added: Addresses that appeared.
        removed: Addresses that disappeared.
        current: Every address now, sorted.
        observed_at: When the lookup that showed the change finished (UTC).
    """

    service: str
    added: frozenset[IPv4Address] = field(repr=_addresses)
    removed: frozenset[IPv4Address] = field(repr=_addresses)
    current: tuple[IPv4Address, ...] = field(repr=_address_tuple)
    observed_at: datetime = field(repr=False)


@frozen(kw_only=True)
class WatchHealth:
    """How a watch's lookups are going.

    Attributes:
        consecutive_failures: Failed lookups since the last successful one.
        last_success: When the last lookup succeeded (UTC), or None.
        last_error: The error of the last failed lookup, or None.
        lookups: Lookups finished since the watch began, failed ones included.
        failures_by_kind: Failed lookups since the watch began, by the name of
            their error's class (``ResolutionTimeout``, ``ResolutionError``).
        changes: Changes reported since the watch began, the initial set included.
        failing_since: When the first of the failures under way happened (UTC),
            the moment an outage began; None while the last lookup succeeded.
    """

    consecutive_failures: int
    last_success: datetime | None
    last_error: SwarmDNSError | None = field(eq=False)
    lookups: int = 0
    failures_by_kind: Mapping[str, int] = field(factory=dict, eq=False)
    changes: int = 0
    failing_since: datetime | None = None
