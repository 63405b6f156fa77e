"""The exceptions swarmdns raises: one base class, each also a matching built-in."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address


class SwarmDNSError(Exception):
    """Base class of every error swarmdns raises.

    Attributes:
        name: The DNS name that was asked, or the name that was refused; None
            when the error is not about a name.
        nameserver: The nameserver that was asked, when a query was sent.
    """

    def __init__(
        self, message: str, *, name: str | None = None, nameserver: str | None = None
    ) -> None:
        super().__init__(message)
        self.name = name
        self.nameserver = nameserver

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


def _rebuild(cls: type[SwarmDNSError], message: str, state: dict[str, object]) -> SwarmDNSError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class InvalidName(SwarmDNSError, ValueError):
    """A service or network name that Docker would not accept; no query was sent."""


class ConfigurationError(SwarmDNSError, ValueError):
    """The configuration cannot be used (say, a bad ``SWARMDNS_NAMESERVER``).

    Attributes:
        source: Where the bad setting came from: a variable, a file, an argument
            (``"SWARMDNS_NAMESERVER"``, ``"/etc/resolv.conf"``, ``"--service"``).
    """

    def __init__(self, message: str, *, source: str) -> None:
        super().__init__(message)
        self.source = source


class ServiceNotFound(SwarmDNSError, LookupError):
    """The engine does not know the service's name (NXDOMAIN).

    The engine also removes every name of a service with zero running tasks,
    so this can mean "scaled to zero" as well as "no such service".
    """


class NoVirtualIP(SwarmDNSError, LookupError):
    """The service name gave several addresses: it runs in dnsrr endpoint mode.

    Attributes:
        addresses: The addresses the name gave: its tasks'.
    """

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        nameserver: str | None = None,
        addresses: Sequence[IPv4Address] = (),
    ) -> None:
        super().__init__(message, name=name, nameserver=nameserver)
        self.addresses = tuple(addresses)


class SelfUnknown(SwarmDNSError, LookupError):
    """``whoami()`` cannot tell this container's own address and identity.

    No own address is named by the engine as a Swarm task or a Compose
    container (not in a container, or no embedded DNS), none is on the
    network asked for, or several networks are and none was asked for.
    ``name`` is the network asked for, if any.
    """


class ResolutionTimeout(SwarmDNSError, TimeoutError):
    """No answer arrived before the deadline."""


class ResolutionError(SwarmDNSError):
    """The nameserver failed (SERVFAIL, REFUSED) or its answer was unusable."""


class ForwardedAnswer(ResolutionError):
    """The engine forwarded the name, and the answer that came back held records.

    Raised only with ``Provenance(strict=True)``; otherwise such an answer
    reads as no tasks. The engine forwards the names it does not own, so the
    records are the host's resolvers' (one that rewrites NXDOMAIN makes up
    addresses), never tasks.
    """


class WatchTimeout(SwarmDNSError, TimeoutError):
    """A watch went longer than its ``fail_after`` without a successful lookup.

    Attributes:
        last_error: The error of the last failed lookup.
        service: The service whose lookups failed, or None if not known.
        failed_for: Seconds since its last successful lookup (or since the
            watch began), on the monotonic clock; None if not known.
    """

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        nameserver: str | None = None,
        last_error: SwarmDNSError | None = None,
        service: str | None = None,
        failed_for: float | None = None,
    ) -> None:
        super().__init__(message, name=name, nameserver=nameserver)
        self.last_error = last_error
        self.service = service
        self.failed_for = failed_for


class NotEnoughTasks(SwarmDNSError, TimeoutError):
    """``wait_for_tasks()`` ran out of time before enough tasks were visible.

    Attributes:
        current: The addresses that were visible at the end, sorted.
        wanted: How many tasks were waited for.
    """

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        nameserver: str | None = None,
        current: Sequence[IPv4Address] = (),
        wanted: int = 0,
    ) -> None:
        super().__init__(message, name=name, nameserver=nameserver)
        self.current = tuple(current)
        self.wanted = wanted
