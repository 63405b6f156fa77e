"""This container's own addresses, read from the kernel without sending a packet."""

from __future__ import annotations

from ipaddress import IPv4Address

from ._errors import ConfigurationError

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
