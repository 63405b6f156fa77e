"""What a resolver backend is, and the process-wide default one."""

from __future__ import annotations

import threading
from typing import Protocol, cast, runtime_checkable

from ._model import Answer, Question


@runtime_checkable
class Backend(Protocol):
    """Answers questions for the synchronous API.

    ``resolve`` must return within ``timeout`` seconds. It returns an
    ``Answer`` for NOERROR (with or without records) and NXDOMAIN, and raises
    ``ResolutionTimeout`` or ``ResolutionError`` when there is no usable
    answer. Any other exception is reported as a ``ResolutionError``.
    """

    def resolve(self, question: Question, timeout: float) -> Answer:
        """Answer ``question`` within ``timeout`` seconds."""
        ...


@runtime_checkable
class AsyncBackend(Protocol):
    """Answers questions for ``swarmdns.aio``, with the same contract as ``Backend``."""

    async def resolve_async(self, question: Question, timeout: float) -> Answer:
        """Answer ``question`` within ``timeout`` seconds."""
        ...


_lock = threading.Lock()
_default: Backend | AsyncBackend | None = None


def set_default_backend(backend: Backend | AsyncBackend | None) -> None:
    """Use ``backend`` for every call that passes no ``backend=``.

    None restores the built-in default, ``DNSPythonBackend()``, which asks the
    nameserver in ``SWARMDNS_NAMESERVER`` or else ``/etc/resolv.conf``.
    """
    if type(backend).__module__.startswith("dns."):
        raise TypeError(
            f"{backend!r} is dnspython's, not a swarmdns backend; use"
            " swarmdns.DNSPythonBackend(['host:port']) to ask a given nameserver"
        )
    if backend is not None and not isinstance(backend, Backend | AsyncBackend):
        raise TypeError(
            f"{backend!r} is not a backend: it needs a resolve() method, an async"
            " resolve_async() method, or both"
        )
    global _default  # noqa: PLW0603 - the process-wide default is the point
    with _lock:
        _default = backend


def get_default_backend() -> Backend | AsyncBackend:
    """The backend calls without ``backend=`` use."""
    global _default  # noqa: PLW0603
    with _lock:
        if _default is None:
            from ._dnspython import DNSPythonBackend  # noqa: PLC0415 - only when needed

            _default = DNSPythonBackend()
        return _default


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
    """The backend to use from swarmdns.aio, or a TypeError saying why not."""
    chosen = get_default_backend() if backend is None else backend
    if not callable(getattr(chosen, "resolve_async", None)):
        raise TypeError(
            f"the backend {chosen!r} has no async resolve_async() method, so swarmdns.aio"
            " cannot use it; call the synchronous API, or give the backend resolve_async()"
        )
    return cast(AsyncBackend, chosen)
