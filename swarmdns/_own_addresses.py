"""This container's own addresses, read from the kernel without sending a packet."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from ._errors import ConfigurationError
from ._values import checked_exclude

if TYPE_CHECKING:
    from ._values import WatchSettings

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

    Raises:
        ConfigurationError: The kernel's table cannot be read (not Linux?).
    """
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return parse_fib_trie(file.read())
    except OSError as error:
        raise ConfigurationError(
            f"exclude_self needs this container's addresses, but {path} cannot be read"
            f" ({error.strerror}); it exists on Linux. Pass exclude=[...] instead.",
            source=path,
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
