"""Every cache swarmdns keeps, under one policy: bounded, safe under threads, pure.

A cache here only remembers what a pure function made from its arguments
(a checked name, a query's bytes, an address object, a parsed file): it can
spare work, never change a result. What the nameserver answers is never
cached, since the engine's TTL of 600 s says nothing about membership.

Each cache is ``functools.lru_cache``: its C implementation is bounded and
safe to call from any number of threads. Errors are not remembered, so bad
input raises every time with the same message.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import _lru_cache_wrapper, lru_cache
from ipaddress import IPv4Address
from typing import TypeVar

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


def cache_sizes() -> dict[str, int]:
    """How many entries each cache holds now, by the function's qualified name."""
    return {
        f"{cache.__module__}.{cache.__qualname__}": cache.cache_info().currsize
        for cache in _caches
    }


#: The address object for each 32-bit value: the same task's address is the
#: same object from one lookup to the next, so comparing two answers costs next
#: to nothing, and making an address costs a dictionary look-up (30 ns rather
#: than 150 ns). 16,384 entries take about 3 MB at most.
address = memoize(maxsize=16384)(IPv4Address)
