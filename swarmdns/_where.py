"""Where a lookup runs, for the front ends: the runtime asked for, and what tells ``auto``."""

from __future__ import annotations

import os
from ipaddress import IPv4Address

from ._backends.base import AsyncBackend, Backend
from ._backends.default import get_default_backend
from ._backends.nameserver import system_nameserver
from ._backends.system import SystemBackend
from ._errors import ConfigurationError
from ._own_addresses import OWN_ADDRESSES_VARIABLE, own_addresses_in_order
from ._provenance import ENGINE_ADDRESS
from ._runtime import (
    COMPOSE,
    RUNTIME_VARIABLE,
    SWARM,
    Where,
    check_runtime,
    detected,
    runtime_from,
)


def where_for(
    runtime: object, backend: Backend | AsyncBackend | None, *, own: bool = False
) -> Where:
    """Where a lookup through ``backend`` runs: ``runtime``, or ``SWARMDNS_RUNTIME``'s.

    ``auto`` is told by the engine when this runs in a container: when
    ``backend`` asks the engine at 127.0.0.11 (a ``DirectBackend``), or asks
    one that ``SWARMDNS_PROVENANCE`` calls the engine while
    ``SWARMDNS_OWN_ADDRESSES`` says which addresses are this container's (a
    test inside the fake). Elsewhere ``auto`` means a Swarm, as before. This
    reads the container's own addresses, unless the process already knows:
    what was told through a backend holds for it for the process.

    With ``own`` (for ``whoami()``), the container's own addresses are read
    whatever the runtime.

    Raises:
        TypeError, ConfigurationError: ``runtime`` (or the variable) names no
            runtime, or ``SWARMDNS_OWN_ADDRESSES`` holds no addresses.
    """
    if runtime is None:
        chosen = runtime_from(os.environ.get(RUNTIME_VARIABLE))
    else:
        chosen = check_runtime(runtime)
    target = get_default_backend() if backend is None else backend
    if own:
        return Where(runtime=chosen, engine=_engine_of(target, anywhere=True), own=_own())
    # What a backend told is kept for it, unless the own addresses are
    # pretended (a test), which may change from one call to the next.
    pretended = chosen == "auto" and bool(os.environ.get(OWN_ADDRESSES_VARIABLE))
    if chosen == "auto" and not pretended:
        chosen = detected.of_backend(target) or "auto"
    if chosen != "auto":
        return SWARM if chosen == "swarm" else COMPOSE
    engine = _engine_of(target, anywhere=pretended)
    kept_for = None if pretended else target
    settled = Where(engine=engine).settled
    if settled is not None:
        detected.remember(engine, settled, kept_for)
        return SWARM if settled == "swarm" else COMPOSE
    return Where(engine=engine, own=_own(), backend=kept_for)


def _own() -> tuple[IPv4Address, ...]:
    """This container's own addresses; none where the kernel does not list them (not Linux)."""
    if os.environ.get(OWN_ADDRESSES_VARIABLE):
        return own_addresses_in_order()  # a bad value is an error, not "no addresses"
    try:
        return own_addresses_in_order()
    except ConfigurationError:
        return ()


def _engine_of(backend: Backend | AsyncBackend, *, anywhere: bool) -> str | None:
    """The engine ``backend`` asks: at 127.0.0.11, or ``anywhere`` it is declared one."""
    if isinstance(backend, SystemBackend):  # the C library asks resolv.conf's first one
        host = system_nameserver()
        return None if host is None or not (anywhere or host == ENGINE_ADDRESS) else host
    nameservers = getattr(backend, "nameservers", None)
    if not callable(nameservers):
        return None
    try:
        servers = nameservers()
    except ConfigurationError:
        return None
    for server in servers:
        if getattr(server, "engine", None) is not None and (
            anywhere or getattr(server, "host", None) == ENGINE_ADDRESS
        ):
            return str(server)
    return None
