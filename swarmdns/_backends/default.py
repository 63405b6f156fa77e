"""The process-wide default backend, and picking the backend for a call.

The default is the one piece of state swarmdns shares across calls and
threads that is not a cache; it has this module as its only owner, and a
lock.
"""

from __future__ import annotations

import threading
from typing import cast

from .._values import checked_backend
from .base import AsyncBackend, Backend

_lock = threading.Lock()
_default: Backend | AsyncBackend | None = None


def set_default_backend(backend: Backend | AsyncBackend | None) -> None:
    """Use ``backend`` for every call that passes no ``backend=``.

    Args:
        backend: The backend; None restores the built-in default,
            ``DirectBackend()``, which asks the nameserver in
            ``SWARMDNS_NAMESERVER`` or else ``/etc/resolv.conf``.

    Raises:
        TypeError: ``backend`` has neither ``resolve()`` nor ``resolve_async()``.
    """
    checked = checked_backend(backend)
    global _default  # noqa: PLW0603 - the process-wide default is the point
    with _lock:
        _default = checked


def get_default_backend() -> Backend | AsyncBackend:
    """The backend that calls without ``backend=`` use."""
    global _default  # noqa: PLW0603
    with _lock:
        if _default is None:
            from .direct import DirectBackend  # noqa: PLC0415 - only when needed

            _default = DirectBackend()
        return _default


def swap_default_backend(
    backend: Backend | AsyncBackend | None,
) -> Backend | AsyncBackend | None:
    """Set the default as it was set (None: not chosen yet); return what it was.

    For code that must put things back as it found them, such as a fixture.
    """
    global _default
    with _lock:
        previous, _default = _default, backend
    return previous


def sync_backend(backend: Backend | AsyncBackend | None) -> Backend:
    """The backend to use from synchronous code, or a TypeError saying why not."""
    chosen = get_default_backend() if backend is None else backend
    if not callable(getattr(chosen, "resolve", None)):  # isinstance(Protocol) is slow
        raise TypeError(
            f"the backend {chosen!r} has no resolve() method, so it cannot be used from"
            " synchronous code; use swarmdns.aio, or give the backend a resolve() method"
        )
    return cast(Backend, chosen)


def async_backend(backend: Backend | AsyncBackend | None) -> AsyncBackend:
    """The backend to use from swarmdns.aio, or a TypeError saying why not.

    A backend with only a synchronous ``resolve()`` runs in a worker thread.
    """
    chosen = get_default_backend() if backend is None else backend
    if callable(getattr(chosen, "resolve_async", None)):
        return cast(AsyncBackend, chosen)
    if callable(getattr(chosen, "resolve", None)):
        from .threaded import ThreadedBackend  # noqa: PLC0415 - only when needed

        return ThreadedBackend(cast(Backend, chosen))
    raise TypeError(
        f"the backend {chosen!r} has neither resolve() nor an async resolve_async()"
        " method, so swarmdns.aio cannot use it; give it one of them"
    )
