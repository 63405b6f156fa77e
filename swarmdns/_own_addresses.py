"""This container's own addresses and networks, read from the kernel without sending a packet."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from ipaddress import AddressValueError, IPv4Address, IPv4Network
from typing import TYPE_CHECKING

from ._errors import ConfigurationError
from ._values import checked_exclude

if TYPE_CHECKING:
    from ._values import WatchSettings

#: The variable that, when set, gives this container's own addresses
#: (comma-separated) instead of the kernel's: how a test makes the library
#: believe it runs inside a task or container of the fake.
OWN_ADDRESSES_VARIABLE = "SWARMDNS_OWN_ADDRESSES"

#: The kernel's routing tables; the "Local" one lists every address of every
#: interface in this network namespace as a "/32 host LOCAL" entry.
FIB_TRIE = "/proc/net/fib_trie"


def parse_fib_trie(text: str) -> frozenset[IPv4Address]:
    """The addresses that ``/proc/net/fib_trie`` marks as local host addresses."""
    found = set()
    leaf = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|-- "):
            leaf = stripped[4:]
        elif stripped.startswith("+-- "):
            leaf = None
        elif leaf is not None and stripped.startswith("/32 host LOCAL"):
            found.add(IPv4Address(leaf))
    return frozenset(found)


def local_addresses(path: str = FIB_TRIE) -> frozenset[IPv4Address]:
    """Every IPv4 address of this network namespace (the container's own).

    ``SWARMDNS_OWN_ADDRESSES``, when set, gives them instead.

    Raises:
        ConfigurationError: The kernel's table cannot be read (not Linux?), or
            ``SWARMDNS_OWN_ADDRESSES`` holds something else than addresses.
    """
    given = os.environ.get(OWN_ADDRESSES_VARIABLE)
    if given:
        return frozenset(parse_own_addresses(given))
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return parse_fib_trie(file.read())
    except OSError as error:
        raise ConfigurationError(
            f"exclude_self needs this container's addresses, but {path} cannot be read"
            f" ({error.strerror}); it exists on Linux. Pass exclude=[...] instead.",
            source=path,
        ) from error


def parse_own_addresses(text: str) -> tuple[IPv4Address, ...]:
    """The addresses ``SWARMDNS_OWN_ADDRESSES`` lists, comma-separated, each once, in order.

    Raises:
        ConfigurationError: An entry is not an IPv4 address.
    """
    try:
        listed = (IPv4Address(item.strip()) for item in text.split(",") if item.strip())
        return tuple(dict.fromkeys(listed))
    except AddressValueError as error:
        raise ConfigurationError(
            f"{OWN_ADDRESSES_VARIABLE}={text!r} is not a comma-separated list of IPv4"
            f" addresses ({error}); unset it to read this container's own from the kernel",
            source=OWN_ADDRESSES_VARIABLE,
        ) from error


def excluded_addresses(
    exclude: Iterable[IPv4Address | str], *, exclude_self: bool
) -> frozenset[IPv4Address]:
    """The addresses a watch leaves out: ``exclude``, and this container's own if asked.

    Raises:
        TypeError: ``exclude`` is one address, not a list of them.
        ConfigurationError: ``exclude_self`` on a system without ``/proc/net/fib_trie``.
    """
    excluded = checked_exclude(exclude)
    return excluded | local_addresses() if exclude_self else excluded


def excluded_for(settings: WatchSettings) -> frozenset[IPv4Address]:
    """What a watch with ``settings`` leaves out; the front ends read it and hand it in.

    Raises:
        ConfigurationError: ``exclude_self`` on a system without ``/proc/net/fib_trie``.
    """
    return excluded_addresses(settings.exclude, exclude_self=settings.exclude_self)


#: The kernel's IPv4 routes of this network namespace, one per line.
ROUTES = "/proc/net/route"
_RTF_UP = 0x1


def parse_routes(text: str) -> tuple[IPv4Network, ...]:
    """The subnets ``/proc/net/route`` reaches directly: those of this container's networks.

    A route without a gateway, other than the default one and loopback's,
    is a subnet an interface sits on. The kernel prints each address as the
    hexadecimal of its bytes read in this machine's byte order.
    """
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or fields[0] == "lo":
            continue
        try:
            destination, gateway, flags, mask = (int(fields[i], 16) for i in (1, 2, 3, 7))
        except ValueError:
            continue
        if gateway or not mask or not flags & _RTF_UP:
            continue
        address = IPv4Address(destination.to_bytes(4, sys.byteorder))
        netmask = IPv4Address(mask.to_bytes(4, sys.byteorder))
        try:
            found.append(IPv4Network(f"{address}/{netmask}"))
        except ValueError:  # host bits set: not a subnet route
            continue
    return tuple(dict.fromkeys(found))


def own_addresses_in_order() -> tuple[IPv4Address, ...]:
    """This container's own addresses, the likeliest to be named by the engine first.

    ``SWARMDNS_OWN_ADDRESSES`` in its order; else the kernel's, with those
    on the default route's networks last: in a Swarm task that is
    ``docker_gwbridge``, whose PTR the engine forwards to the host's
    resolvers (under Compose it is the project's network, the only one).

    Raises:
        ConfigurationError: As ``local_addresses()``.
    """
    given = os.environ.get(OWN_ADDRESSES_VARIABLE)
    if given:
        return parse_own_addresses(given)
    addresses = local_addresses()
    try:
        with open(ROUTES, encoding="ascii", errors="replace") as file:
            last = default_route_subnets(file.read())
    except OSError:
        last = ()
    return tuple(sorted(addresses, key=lambda ip: (any(ip in n for n in last), int(ip))))


def default_route_subnets(text: str) -> tuple[IPv4Network, ...]:
    """The subnets ``/proc/net/route`` reaches directly through the default route's interfaces."""
    interfaces = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[1] == "00000000" and fields[7] == "00000000":
            interfaces.add(fields[0])
    subnets: list[IPv4Network] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] in interfaces:
            subnets.extend(parse_routes(f"header\n{line}"))
    return tuple(subnets)


class ContainerNetworks:
    """This container's networks, as the kernel lists them, read at most once per ``refresh`` s.

    A container can join a network while it runs, so the list is read again
    when it is older than ``refresh`` seconds; in between, asking costs a
    clock reading. Without the kernel's table (not Linux), the list is empty.
    Safe under threads: one reader at a time, and the list is replaced whole.
    """

    def __init__(
        self,
        path: str = ROUTES,
        *,
        refresh: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._refresh = refresh
        self._clock = clock
        self._lock = threading.Lock()
        self._networks: tuple[IPv4Network, ...] = ()
        self._read_at: float | None = None

    def __call__(self) -> tuple[IPv4Network, ...]:
        """The networks, read again if the last reading is older than ``refresh``."""
        read_at = self._read_at
        if read_at is not None and self._clock() - read_at < self._refresh:
            return self._networks
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._refresh:
                self._networks = self._read()
                self._read_at = now
            return self._networks

    def _read(self) -> tuple[IPv4Network, ...]:
        try:
            with open(self._path, encoding="ascii", errors="replace") as file:
                return parse_routes(file.read())
        except OSError:
            return ()


#: This process's networks: the one reader every backend shares.
container_networks = ContainerNetworks()
