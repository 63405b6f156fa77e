"""Every cache swarmdns keeps, under one policy: bounded, safe under threads, pure.

A cache here only remembers what a pure function made from its arguments
(a checked name, a query's bytes, an address object, a parsed file): it can
spare work, never change a result. What the nameserver answers is never
cached, since the engine's TTL of 600 s says nothing about membership.

Each cache of a function's results is ``functools.lru_cache``: its C
implementation is bounded and safe to call from any number of threads.
Errors are not remembered, so bad input raises every time with the same
message. The one other cache, the table of address objects, is bounded and
safe under threads too (``AddressTable``).

One cache of a function that also has an effect: ``_lookups._warn_unfit``
logs why a PTR name is no task's identity the first time it meets the name
(then it is remembered, so that a watch warns once per name, not at every
lookup); its result, None, is the same either way.

One store outside this policy is emptied with the caches, since tests need
that too: ``_runtime.detected``, where this process runs (a Swarm or
Compose), as the engine said once; it is a fact about the container, not an
answer, and is kept whole for the process (``register_table()``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import _lru_cache_wrapper, lru_cache
from ipaddress import IPv4Address
from operator import itemgetter
from typing import Protocol, TypeVar

T = TypeVar("T")

_caches: list[_lru_cache_wrapper[object]] = []


def memoize(maxsize: int) -> Callable[[Callable[..., T]], _lru_cache_wrapper[T]]:
    """Remember up to ``maxsize`` results of a pure function, least recently used out."""

    def decorate(function: Callable[..., T]) -> _lru_cache_wrapper[T]:
        cached = lru_cache(maxsize=maxsize)(function)
        _caches.append(cached)
        return cached

    return decorate


def clear_caches() -> None:
    """Forget everything every cache holds (for tests and long-lived processes)."""
    for cache in _caches:
        cache.cache_clear()
    for table in _tables.values():
        table.clear()


def cache_sizes() -> dict[str, int]:
    """How many entries each cache holds now, by the function's qualified name."""
    sizes = {
        f"{cache.__module__}.{cache.__qualname__}": cache.cache_info().currsize
        for cache in _caches
    }
    sizes.update({name: len(table) for name, table in _tables.items()})
    return sizes


class AddressTable:
    """The address object for each 32-bit value, made once.

    The same task's address is then the same object from one lookup to the
    next, so comparing two answers costs next to nothing, and making an
    address costs a dictionary look-up (15 ns rather than 150 ns). A watch over
    1,000 services of 50 tasks needs 50,000 of them, more than an
    ``lru_cache`` of a few megabytes holds, so this table is a plain
    dictionary instead: reading it takes no lock (a dictionary look-up is
    atomic), adding to it takes one, and once it is full it is emptied and
    fills again. At its limit of 65,536 entries it takes about 8 MB.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._known: dict[int, IPv4Address] = {}
        self._lock = threading.Lock()
        register_table(self, "addresses")

    def __len__(self) -> int:
        return len(self._known)

    def addresses(self, values: Sequence[int]) -> tuple[IPv4Address, ...]:
        """The address of each value, in order."""
        if len(values) > 1:
            try:  # every task seen before, the usual case: one look-up in C
                return itemgetter(*values)(self._known)  # type: ignore[no-any-return]
            except KeyError:
                pass
        known = self._known
        return tuple(
            address if (address := known.get(value)) is not None else self._add(value)
            for value in values
        )

    def _add(self, value: int) -> IPv4Address:
        address = IPv4Address(value)
        with self._lock:
            if len(self._known) >= self.limit:
                self._known.clear()
            return self._known.setdefault(value, address)

    def clear(self) -> None:
        """Forget every address."""
        with self._lock:
            self._known.clear()


class Table(Protocol):
    """A store ``clear_caches()`` empties and ``cache_sizes()`` counts."""

    def __len__(self) -> int: ...

    def clear(self) -> None: ...


_tables: dict[str, Table] = {}


def register_table(table: Table, name: str) -> None:
    """Have ``clear_caches()`` empty ``table`` and ``cache_sizes()`` count it."""
    _tables[f"{type(table).__module__}.{name}"] = table


#: Every task address swarmdns has read lately.
addresses = AddressTable(limit=65536)
