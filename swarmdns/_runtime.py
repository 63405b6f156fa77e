"""Where the library runs (a Swarm or Compose), and what the engine's names mean there. No I/O.

In a Swarm, ``tasks.<service>`` lists a service's tasks and ``<service>`` is
its virtual IP. Under Compose (and for plain containers with a network
alias) ``<service>`` lists every container and ``tasks.<service>`` is not
the engine's: it is forwarded to the host's resolvers. So which name lists
the instances depends on where the process runs, which it learns from the
engine's PTR records for its own addresses: a Swarm task is
``web.1.<task id>.<network>.``, a Compose container ``proj-web-1.<network>.``.
"""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from ipaddress import IPv4Address
from typing import Literal

from attrs import field, frozen

from . import _memo
from ._errors import ConfigurationError
from ._model import Task
from ._names import NETWORK as _NETWORK
from ._names import SERVICE as _SERVICE

Runtime = Literal["auto", "swarm", "compose"]
Settled = Literal["swarm", "compose"]
RUNTIMES: tuple[Runtime, ...] = ("auto", "swarm", "compose")
#: The variable that chooses the runtime for the whole process.
RUNTIME_VARIABLE = "SWARMDNS_RUNTIME"

#: Swarmkit's IDs (tasks, nodes): 25 characters of lowercase letters and digits.
_SWARM_ID = re.compile(r"[a-z0-9]{25}")
#: Docker's rule for container names, less the '.' that would end a DNS label.
_CONTAINER = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]*")
#: A replica's slot: a positive whole number.
_SLOT = re.compile(r"[1-9][0-9]*")
#: A Compose container's name: ``<project>-<service>-<n>`` (``_`` in Compose v1).
_NUMBERED = re.compile(r"(?P<stem>.+?)[-_](?P<number>[0-9]+)")


def check_runtime(value: object, *, source: str = "runtime") -> Runtime:
    """Return ``value`` if it names a runtime.

    Raises:
        TypeError: ``value`` is not a string.
        ConfigurationError: It is not ``auto``, ``swarm`` or ``compose``.
    """
    if not isinstance(value, str):
        raise TypeError(f"{source} must be a str, not {type(value).__name__}: {value!r}")
    if value in RUNTIMES:
        return value
    raise ConfigurationError(
        f"{source}={value!r} is not a runtime: say 'swarm' (tasks.<service> lists a"
        " service's tasks), 'compose' (<service> lists its containers) or 'auto' (tell"
        " from this container's own name)",
        source=source,
    )


def runtime_from(value: str | None, *, source: str = RUNTIME_VARIABLE) -> Runtime:
    """The runtime ``SWARMDNS_RUNTIME`` (``value``) chooses; ``auto`` when unset or empty."""
    return "auto" if not value else check_runtime(value.strip().lower(), source=source)


class DetectedRuntimes:
    """Where this process runs, as learned from each engine: the one place that remembers it.

    Not an answer cache: a container does not move between a Swarm and
    Compose while it runs, so what the engine's names said once holds for
    the process. It is kept by engine address, and by backend, so that a
    lookup through a backend that has told it once costs a dictionary
    look-up, not a reading of its nameservers. Bounded (a process talks to
    one engine, tests to a few), safe under threads, and emptied by
    ``_memo.clear_caches()``.
    """

    MAX_ENGINES = 64

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runtimes: dict[str, Settled] = {}
        self._backends: weakref.WeakKeyDictionary[object, Settled] = weakref.WeakKeyDictionary()
        _memo.register_table(self, "detected")

    def __len__(self) -> int:
        return len(self._runtimes)

    def get(self, engine: str) -> Settled | None:
        """What ``engine``'s names said of this process, if they were asked."""
        return self._runtimes.get(engine)

    def of_backend(self, backend: object) -> Settled | None:
        """What was learned through ``backend``, if anything (and it can be remembered)."""
        try:
            return self._backends.get(backend)
        except TypeError:  # a backend without weak references is asked every time
            return None

    def remember(self, engine: str | None, runtime: Settled, backend: object = None) -> None:
        """Keep what ``engine`` said (through ``backend``); past the limit, the oldest goes."""
        with self._lock:
            if engine is not None:
                if engine not in self._runtimes and len(self._runtimes) >= self.MAX_ENGINES:
                    del self._runtimes[next(iter(self._runtimes))]
                self._runtimes[engine] = runtime
            if backend is not None:
                with contextlib.suppress(TypeError):
                    self._backends[backend] = runtime

    def clear(self) -> None:
        """Forget them all."""
        with self._lock:
            self._runtimes.clear()
            self._backends.clear()


detected = DetectedRuntimes()


@frozen(kw_only=True)
class Where:
    """Where a lookup runs: its runtime, and what it takes to tell ``auto``.

    The front ends build it (``_own_addresses.where_for()``); the plans read
    it. ``own`` is read only when the runtime is still to be told.

    Attributes:
        runtime: What was asked for: ``auto``, ``swarm`` or ``compose``.
        engine: The engine's address, when the backend asks the engine;
            ``auto`` is told only then (elsewhere it means ``swarm``).
        own: This container's own addresses, whose PTR records tell ``auto``,
            the likeliest to be named first.
        backend: The backend asked, under which what is told is remembered too.
    """

    runtime: Runtime = "auto"
    engine: str | None = None
    own: tuple[IPv4Address, ...] = field(default=(), repr=False)
    backend: object = field(default=None, repr=False, eq=False)

    @property
    def settled(self) -> Settled | None:
        """The runtime, if known without asking: chosen, learned before, or no engine to ask."""
        if self.runtime != "auto":
            return self.runtime
        if self.engine is None:
            return "swarm"
        return detected.get(self.engine)


#: A lookup for which the runtime is known: swarm.
SWARM = Where(runtime="swarm")
COMPOSE = Where(runtime="compose")


def swarm_task(ip: IPv4Address, target: str, service: str | None = None) -> Task | None:
    """The task a Swarm PTR target names, ``web.1.<task id>.<network>.``; None if not one.

    With ``service``, the target must name a task of that service (or of
    ``<stack>_<service>``); see ``why_not_a_task()``.
    """
    if why_not_a_task(target, service) is not None:
        return None
    labels = target.rstrip(".").split(".")
    name, slot_or_node, task_id, *network = labels
    slot = int(slot_or_node) if slot_or_node.isdigit() else None
    return Task(
        ip=ip,
        name=f"{name}.{slot_or_node}.{task_id}",
        service=name,
        slot=slot,
        node_id=None if slot is not None else slot_or_node,
        task_id=task_id,
        network=".".join(network),
    )


def why_not_a_task(target: str, service: str | None = None) -> str | None:  # noqa: PLR0911 - one return per rule
    r"""Why a PTR target is not a task name Docker could have given; None if it is one.

    Docker names a task's container ``<service>.<slot>.<task id>`` (a global
    service's, ``<service>.<node id>.<task id>``) and its PTR record adds the
    network, all checked by the engine. Anything else, such as a name from a
    hostile nameserver with ``#``, ``{`` or an escape (``\032``) in it, is
    not to be taken as a task's identity, nor one of another service than
    ``service`` (a stack's ``<stack>_<service>`` is that service).
    """
    labels = target.rstrip(".").split(".")
    if len(labels) < 4:
        return "it has fewer than 4 labels (service, slot or node ID, task ID, network)"
    name, slot_or_node, task_id, *network = labels
    if not _SERVICE.fullmatch(name):
        return f"{name!r} is not a service name Docker allows"
    if service is not None and not _same_service(name, service):
        return f"it names a task of {name!r}, not of {service!r}"
    if not (_SLOT.fullmatch(slot_or_node) or _SWARM_ID.fullmatch(slot_or_node)):
        return f"{slot_or_node!r} is neither a slot (1, 2...) nor a node ID"
    if not _SWARM_ID.fullmatch(task_id):
        return f"{task_id!r} is not a task ID (25 lowercase letters and digits)"
    if not _NETWORK.fullmatch(".".join(network)):
        return f"{'.'.join(network)!r} is not a network name Docker allows"
    return None


def _same_service(name: str, service: str) -> bool:
    """Whether a task of ``name`` is one of ``service``: the same, or ``<stack>_<service>``."""
    name, service = name.lower(), service.lower()
    if name == service:
        return True
    stack = name.removesuffix(f"_{service}")
    return stack != name and _SERVICE.fullmatch(stack) is not None


def compose_container(ip: IPv4Address, target: str, service: str | None = None) -> Task | None:
    r"""The container a Compose PTR target names, ``proj-web-1.<network>.``; None if not one.

    Its name is ``<project>-<service>-<number>``; which dash ends the project
    is told by ``service`` when it is known, else by the network's name
    (Compose names its networks ``<project>_<name>``), else by the last dash.
    A container named by hand (``container_name:``, ``docker run --name``)
    keeps its name, with no number. A name or network Docker would not
    allow (``#``, ``{``, escapes such as ``\032``) is no container's.
    """
    labels = target.rstrip(".").split(".")
    if len(labels) < 2:
        return None
    name, network = labels[0], ".".join(labels[1:])
    if not (_CONTAINER.fullmatch(name) and _NETWORK.fullmatch(network)):
        return None  # not a name Docker allows, so not the engine's
    numbered = _NUMBERED.fullmatch(name)
    if numbered is None or not numbered["number"].isascii():
        return Task(ip=ip, name=name, service=service, network=network)
    project, found = _split_stem(numbered["stem"], service, network)
    return Task(
        ip=ip,
        name=name,
        service=found,
        slot=int(numbered["number"]),
        network=network,
        project=project,
    )


def _split_stem(stem: str, service: str | None, network: str) -> tuple[str | None, str]:
    """``proj-web`` as (project, service)."""
    if service is not None:
        for separator in "-_":
            if stem.lower().endswith(f"{separator}{service.lower()}"):
                return stem[: -len(service) - 1], stem[-len(service) :]
        return None, service
    prefix = network.rpartition("_")[0]
    for separator in "-_":
        if prefix and stem.startswith(f"{prefix}{separator}") and len(stem) > len(prefix) + 1:
            return prefix, stem[len(prefix) + 1 :]
    for separator in "-_":
        project, found, rest = stem.rpartition(separator)
        if found:
            return project, rest
    return None, stem


def identity(ip: IPv4Address, target: str) -> tuple[Settled, Task] | None:
    """What the engine's PTR target for one of this container's addresses says it is.

    A Swarm task's target has a task ID (25 lowercase letters and digits)
    as its third label; a Compose container's, a container name and its
    network. None for anything else.
    """
    task = swarm_task(ip, target)
    if task is not None:
        return "swarm", task
    container = compose_container(ip, target)
    if container is not None and container.network and "." not in container.network:
        return "compose", container
    return None
