"""A control channel for a running fake, so that another process can drive it.

``FakeSwarm.serve_control()`` listens on loopback TCP. Each request is one
line of JSON, an object naming the operation and its arguments::

    {"op": "scale", "name": "web", "replicas": 5}

and each reply one line, in order, on the same connection::

    {"ok": true, "result": {"name": "web", ...}}
    {"ok": false, "error": "SwarmError", "message": "scale: no service named 'wbe' ..."}

``FakeControl`` is the Python client, with one method per operation.

The server is one thread running a ``selectors`` loop, like the DNS server's:
a bad request gets an error reply and never ends the loop; a request longer
than ``MAX_REQUEST_BYTES`` is refused; at most ``MAX_CONNECTIONS`` are served
at once (more wait to be accepted), one idle for ``IDLE_TIMEOUT`` is closed,
and so is one that takes longer than ``REQUEST_TIMEOUT`` to send a request
or to read a reply. A request that waits for an operation's end
(``"wait": true``) holds its connection's replies until then, or until its
``timeout``, while the loop serves the other connections.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import json
import math
import selectors
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Protocol, TypeVar

import attrs
from attrs import frozen

from .._model import Task as DNSTask
from ._engines import EngineVersion
from ._loop import SelectorThread, endpoint
from ._nodes import Node
from ._operations import (
    Operation,
    OperationDelays,
    OperationKind,
    TimelineEvent,
    UpdateOrder,
    UpdateSettings,
)
from ._responder import Delay, Fault, Injected
from ._swarm import (
    MAX_REPLICAS,
    EndpointMode,
    Network,
    Service,
    ServiceMode,
    SwarmError,
    Task,
    TaskKey,
    TaskState,
    check_endpoint_mode,
    check_service_mode,
)

#: The longest request line the server reads, in bytes.
MAX_REQUEST_BYTES = 64 * 1024
#: How many connections are served at once; more wait to be accepted.
MAX_CONNECTIONS = 16
#: A connection with nothing to do for this many seconds is closed.
IDLE_TIMEOUT = 60.0
#: A request must arrive whole, and its reply be read, within this many
#: seconds of its first byte (of the reply's): a client trickling bytes is
#: closed then, and cannot keep a place from the others for ever.
REQUEST_TIMEOUT = 10.0
#: The most faults one ``inject`` request may queue.
MAX_FAULTS = 1000
#: The longest reply the client reads, in bytes.
MAX_REPLY_BYTES = 64 * 1024 * 1024
#: How long a request with ``wait=true`` waits for its operation's end,
#: unless its ``timeout`` says otherwise (as ``Operation.wait()``).
WAIT_TIMEOUT = 60.0
#: The longest ``timeout`` (or update ``delay``) a request may give, in seconds.
MAX_WAIT = 3600.0
#: How many finished operations the channel keeps for ``operation`` requests
#: (the oldest go first); running ones are always kept.
KEPT_OPERATIONS = 100
#: How often the channel's loop looks at the operations requests wait for.
_WAIT_POLL = 0.01
_RECV_SIZE = 65536
_ACCEPT_PAUSE = 0.5
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class ControlError(Exception):
    """The fake's control channel could not carry out a request.

    The fake refusing the operation itself (no such service, say) raises
    ``SwarmError`` instead, as the same call on the ``FakeSwarm`` would.

    Attributes:
        kind: What went wrong: ``"BadRequest"``, ``"RequestTooLarge"``,
            ``"InternalError"`` (the server's reply), or ``"Unreachable"``,
            ``"Timeout"``, ``"BadReply"`` (on the client's side).
    """

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def check_loopback(host: str) -> str:
    """``host`` if it is a loopback address (``localhost`` reads as 127.0.0.1).

    Raises:
        ValueError: It is not: the channel lets whoever reaches it change the fake.
    """
    if host == "localhost":
        return "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"the control channel listens on loopback only, since whoever reaches it can"
            f" change the fake: {host!r} is not a loopback address; use 127.0.0.1 or ::1"
        )
    return host


# -- values as JSON, and back ------------------------------------------------------


class _Named(Protocol):
    @property
    def name(self) -> str: ...


_Service = TypeVar("_Service", bound=_Named)


def named(services: Sequence[_Service], name: str) -> _Service:
    """The service of a snapshot called ``name``.

    Raises:
        SwarmError: There is no such service.
    """
    for service in services:
        if service.name == name:
            return service
    known = ", ".join(s.name for s in services) or "none"
    raise SwarmError(f"no service named {name!r} (services: {known})")


@frozen(kw_only=True)
class SwarmState:
    """A snapshot of the whole fake Swarm: ``FakeSwarm.state()``, ``FakeControl.state()``.

    Attributes:
        services: Every service, in order of creation, with its tasks and VIPs.
        networks: Every network, in order of creation.
        nodes: Every node, in the order they joined.
        engine: The Docker Engine version the fake answers like (an ``EngineVersion``).
        nameserver: Where its DNS listens (``host:port``), or None while stopped.
    """

    services: tuple[Service, ...]
    networks: tuple[Network, ...]
    nodes: tuple[Node, ...]
    engine: EngineVersion
    nameserver: str | None

    def service(self, name: str) -> Service:
        """The service called ``name``.

        Raises:
            SwarmError: There is no such service.
        """
        return named(self.services, name)

    @property
    def tasks(self) -> tuple[Task, ...]:
        """Every task of every service, visible in DNS or not."""
        return tuple(task for service in self.services for task in service.tasks)


def task_json(task: Task) -> dict[str, Any]:
    """A task as JSON: its fields, and ``ip`` and ``visible`` for convenience."""
    return {
        "id": task.id,
        "name": task.name,
        "service": task.service,
        "slot": task.slot,
        "node_id": task.node_id,
        "container_id": task.container_id,
        "hostname": task.hostname,
        "state": task.state.value,
        "addresses": {network: str(ip) for network, ip in task.addresses.items()},
        "ip": str(task.ip),
        "visible": task.visible,
    }


def service_json(service: Service) -> dict[str, Any]:
    """A service as JSON: its fields, and ``vip`` and ``task_ips`` for convenience."""
    return {
        "name": service.name,
        "id": service.id,
        "mode": service.mode,
        "endpoint_mode": service.endpoint_mode,
        "networks": list(service.networks),
        "aliases": list(service.aliases),
        "vips": {network: str(ip) for network, ip in service.vips.items()},
        "vip": None if service.vip is None else str(service.vip),
        "task_ips": [str(ip) for ip in service.task_ips],
        "tasks": [task_json(task) for task in service.tasks],
        "replicas": service.replicas,
        "healthcheck": service.healthcheck,
        "stack": service.stack,
        "placement": list(service.placement),
    }


def state_json(state: SwarmState) -> dict[str, Any]:
    """The whole Swarm as JSON."""
    return {
        "services": [service_json(s) for s in state.services],
        "networks": [
            {"name": n.name, "id": n.id, "subnet": str(n.subnet)} for n in state.networks
        ],
        "nodes": [
            {
                "name": n.name,
                "id": n.id,
                "host": n.host,
                "port": n.port,
                "isolated": n.isolated,
                "paused": n.paused,
                "down": n.down,
                "stale": n.stale,
                "drained": n.drained,
            }
            for n in state.nodes
        ],
        "engine": state.engine,
        "nameserver": state.nameserver,
    }


@frozen(kw_only=True)
class RemoteOperation:
    """An operation of a fake in another process, as its control channel reports it.

    What ``FakeControl.update_service()``, ``rollback()``, ``drain()``,
    ``activate()`` and ``operation()`` return: a snapshot of the ``Operation``
    the fake runs, which the channel knows by ``id``.

    Attributes:
        id: How the channel knows it: ``FakeControl.operation(id)`` reads it again.
        kind: ``"update"``, ``"rollback"``, ``"drain"`` or ``"activate"``.
        target: The service, or the node's name.
        settings: How an update or rollback proceeds (None for a node).
        delays: How long each step takes.
        done: Whether every step has happened.
        cancelled: Whether a reset dropped it before its end.
        took: Seconds from its start to its end, once done.
        timeline: Every step so far, in order.
        fewest: The fewest tasks DNS listed at any moment, for each service
            it touched (the updated one, or those with a task on the node).
        most: The most tasks DNS listed at any moment, for the same services.
    """

    id: int
    kind: OperationKind
    target: str
    settings: UpdateSettings | None
    delays: OperationDelays
    done: bool
    cancelled: bool
    took: float | None
    timeline: tuple[TimelineEvent, ...]
    fewest: Mapping[str, int]
    most: Mapping[str, int]


def operation_json(number: int, operation: Operation) -> dict[str, Any]:
    """An operation as JSON, under the ID the channel gave it."""
    timeline = operation.timeline
    touched = [operation.target] if operation.settings is not None else []
    touched += [event.service for event in timeline]
    services = list(dict.fromkeys(touched))
    return {
        "id": number,
        "kind": operation.kind,
        "target": operation.target,
        "settings": None if operation.settings is None else attrs.asdict(operation.settings),
        "delays": attrs.asdict(operation.delays),
        "done": operation.done,
        "cancelled": operation.cancelled,
        "took": operation.took,
        "timeline": [
            {
                "at": event.at,
                "step": event.step,
                "service": event.service,
                "task": event.task,
                "ip": str(event.ip),
            }
            for event in timeline
        ],
        "fewest": {service: operation.fewest(service) for service in services},
        "most": {service: operation.most(service) for service in services},
    }


def _operation_from(data: Mapping[str, Any]) -> RemoteOperation:
    settings = data["settings"]
    return RemoteOperation(
        id=data["id"],
        kind=data["kind"],
        target=data["target"],
        settings=None if settings is None else UpdateSettings(**settings),
        delays=OperationDelays(**data["delays"]),
        done=data["done"],
        cancelled=data["cancelled"],
        took=data["took"],
        timeline=tuple(
            TimelineEvent(
                at=event["at"],
                step=event["step"],
                service=event["service"],
                task=event["task"],
                ip=IPv4Address(event["ip"]),
            )
            for event in data["timeline"]
        ),
        fewest=dict(data["fewest"]),
        most=dict(data["most"]),
    )


def _task_from(data: Mapping[str, Any]) -> Task:
    return Task(
        id=data["id"],
        service=data["service"],
        slot=data["slot"],
        node_id=data["node_id"],
        container_id=data["container_id"],
        hostname=data["hostname"],
        state=TaskState(data["state"]),
        addresses={network: IPv4Address(ip) for network, ip in data["addresses"].items()},
    )


def _service_from(data: Mapping[str, Any]) -> Service:
    return Service(
        name=data["name"],
        id=data["id"],
        mode=data["mode"],
        endpoint_mode=data["endpoint_mode"],
        networks=tuple(data["networks"]),
        aliases=tuple(data["aliases"]),
        vips={network: IPv4Address(ip) for network, ip in data["vips"].items()},
        tasks=tuple(_task_from(task) for task in data["tasks"]),
        replicas=data["replicas"],
        healthcheck=data["healthcheck"],
        stack=data["stack"],
        placement=tuple(data["placement"]),
    )


def _state_from(data: Mapping[str, Any]) -> SwarmState:
    return SwarmState(
        services=tuple(_service_from(s) for s in data["services"]),
        networks=tuple(
            Network(name=n["name"], id=n["id"], subnet=IPv4Network(n["subnet"]))
            for n in data["networks"]
        ),
        nodes=tuple(Node(**n) for n in data["nodes"]),
        engine=data["engine"],
        nameserver=data["nameserver"],
    )


# -- requests ----------------------------------------------------------------------


class Faulty(Protocol):
    """What every fake's control channel drives alike: faults and reset."""

    def inject(
        self,
        fault: Injected | Sequence[Injected],
        *,
        name: str | None = None,
        qtype: str | None = None,
    ) -> None:
        """Inject faults."""
        ...

    def clear_faults(self, name: str | None = None) -> None:
        """Clear faults."""
        ...

    def reset(self) -> None:
        """Forget everything."""
        ...


class Controlled(Faulty, Protocol):
    """What the control channel drives: a ``FakeSwarm``."""

    def create_service(
        self,
        name: str,
        replicas: int = 1,
        *,
        network: str | Sequence[str] | None = None,
        endpoint_mode: EndpointMode = "vip",
        mode: ServiceMode = "replicated",
        aliases: Sequence[str] = (),
        healthcheck: bool = False,
        stack: str | None = None,
        placement: Sequence[str] | None = None,
    ) -> Service:
        """Create a service."""
        ...

    def scale(self, name: str, replicas: int) -> Service:
        """Scale a service."""
        ...

    def remove_service(self, name: str) -> None:
        """Remove a service."""
        ...

    def kill_task(self, task: TaskKey) -> Service:
        """Kill a task."""
        ...

    def replace_task(self, task: TaskKey) -> Task:
        """Replace a task."""
        ...

    def reschedule(self, name: str) -> tuple[Task, ...]:
        """Fill a service's empty slots."""
        ...

    def mark_healthy(self, task: TaskKey) -> Task:
        """Mark a task healthy."""
        ...

    def mark_unhealthy(self, task: TaskKey) -> Task:
        """Mark a task unhealthy."""
        ...

    def update_service(
        self,
        name: str,
        *,
        order: UpdateOrder = "stop-first",
        parallelism: int = 1,
        delay: float = 0.0,
        delays: OperationDelays | None = None,
    ) -> Operation:
        """Start an update of a service."""
        ...

    def rollback(
        self,
        name: str,
        *,
        order: UpdateOrder = "stop-first",
        parallelism: int = 1,
        delay: float = 0.0,
        delays: OperationDelays | None = None,
    ) -> Operation:
        """Start a rollback of a service."""
        ...

    def drain(self, node: str, *, delays: OperationDelays | None = None) -> Operation:
        """Start draining a node."""
        ...

    def activate(self, node: str, *, delays: OperationDelays | None = None) -> Operation:
        """Start making a drained node active."""
        ...

    def state(self) -> SwarmState:
        """A snapshot of the Swarm."""
        ...


class BadRequest(Exception):
    """The request is not one the channel understands."""


_REQUIRED = object()


class Fields:
    """A request's fields, each taken once with its type checked.

    Raises ``BadRequest`` for a field missing, unknown or of the wrong type.

    Attributes:
        book: The operations the channel started (a new book when none is given).
    """

    def __init__(
        self,
        op: str,
        fields: dict[str, object],
        known: Sequence[str],
        book: OperationBook | None = None,
    ) -> None:
        unknown = sorted(set(fields) - set(known))
        if unknown:
            takes = ", ".join(known) or "no fields"
            raise BadRequest(
                f"{op} takes {takes}; not {', '.join(map(repr, unknown))}"
                " (see docs/testing.md, 'Driving a fake from another process')"
            )
        self._op = op
        self._fields = fields
        self.book = OperationBook() if book is None else book

    def _get(self, key: str, default: object) -> object:
        if key in self._fields:
            return self._fields[key]
        if default is _REQUIRED:
            raise BadRequest(f"{self._op} needs {key!r}")
        return default

    def _wrong(self, key: str, wanted: str, value: object) -> BadRequest:
        shown = json.dumps(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return BadRequest(f"{self._op}: {key!r} must be {wanted}, not {shown}")

    def text(self, key: str) -> str:
        """A string, which the request must give."""
        value = self._get(key, _REQUIRED)
        if not isinstance(value, str):
            raise self._wrong(key, "a string", value)
        return value

    def optional_text(self, key: str, default: str | None = None) -> str | None:
        """A string, null, or the default when missing."""
        value = self._get(key, default)
        if value is not None and not isinstance(value, str):
            raise self._wrong(key, "a string", value)
        return value

    def whole(self, key: str, default: object = _REQUIRED) -> int:
        """A whole number from 0 to ``MAX_REPLICAS``."""
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self._wrong(key, "a whole number of at least 0", value)
        if value > MAX_REPLICAS:
            raise self._wrong(key, f"at most {MAX_REPLICAS}", value)
        return value

    def number(self, key: str, default: float) -> float:
        """A number, or the default when missing."""
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong(key, "a number", value)
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        """True or false."""
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false", value)
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        """A list of strings (none when missing)."""
        value = self._get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._wrong(key, "a list of strings", value)
        return tuple(value)

    def text_or_texts(self, key: str) -> str | tuple[str, ...] | None:
        """A string, a list of strings, or null (the default)."""
        value = self._get(key, None)
        return value if value is None or isinstance(value, str) else self.texts(key)

    def seconds(self, key: str, default: float) -> float:
        """A number of seconds from 0 to ``MAX_WAIT``, or the default when missing."""
        value = self.number(key, default)
        if not (math.isfinite(value) and 0 <= value <= MAX_WAIT):
            raise self._wrong(key, f"a number of seconds from 0 to {MAX_WAIT:g}", value)
        return value

    def ident(self, key: str) -> int:
        """A whole number of at least 1, which the request must give."""
        value = self._get(key, _REQUIRED)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self._wrong(key, "a whole number of at least 1", value)
        return value

    def order(self, key: str) -> UpdateOrder:
        """``"stop-first"`` (the default) or ``"start-first"``."""
        value = self.optional_text(key, "stop-first") or "stop-first"
        if value == "start-first":
            return "start-first"
        if value != "stop-first":
            raise self._wrong(key, '"stop-first" or "start-first"', value)
        return "stop-first"

    def delays(self, key: str) -> OperationDelays | None:
        """How long an operation's steps take; None (the measured delays) when missing.

        ``"instant"``, ``{"scale": FACTOR}`` (the measured delays times
        FACTOR), or an object of some of ``OperationDelays``'s fields in
        seconds (the others measured).
        """
        value = self._get(key, None)
        if value is None:
            return None
        if value == "instant":
            return OperationDelays.INSTANT
        steps = [f.name for f in attrs.fields(OperationDelays)]
        if isinstance(value, dict) and (set(value) == {"scale"} or set(value) <= set(steps)):
            try:
                if set(value) == {"scale"}:
                    return OperationDelays().scaled(value["scale"])
                return OperationDelays(**value)
            except (TypeError, ValueError) as error:
                raise BadRequest(f"{self._op}: {key!r}: {error}") from None
        raise self._wrong(
            key,
            '"instant", {"scale": FACTOR} (the measured delays times FACTOR), or an object'
            f" of seconds for any of {', '.join(steps)} (the others measured)",
            value,
        )

    def faults(self, key: str) -> Injected | list[Injected]:
        """A fault's name, a delay in seconds, or a non-empty list of them."""
        value = self._get(key, _REQUIRED)
        if isinstance(value, list):
            if not 1 <= len(value) <= MAX_FAULTS:
                raise self._wrong(key, f"a list of 1 to {MAX_FAULTS} faults", value)
            return [self._fault(key, item) for item in value]
        return self._fault(key, value)

    def _fault(self, key: str, value: object) -> Injected:
        wanted = f"a fault ({', '.join(f.name for f in Fault)}) or a delay in seconds"
        if isinstance(value, str):
            spelled = value.strip().upper().replace("-", "_")
            if spelled in Fault.__members__:
                return Fault[spelled]
            raise self._wrong(key, wanted, value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong(key, wanted, value)
        if not math.isfinite(value) or not 0 <= value <= 3600:
            raise self._wrong(key, "a delay from 0 to 3600 seconds", value)
        return Delay(value)


def _state(fake: Controlled, fields: Fields) -> object:
    return state_json(fake.state())


def _create_service(fake: Controlled, fields: Fields) -> object:
    name = fields.text("name")
    replicas = fields.whole("replicas", 1)
    network = fields.text_or_texts("network")
    endpoint_mode = fields.optional_text("endpoint_mode", "vip") or "vip"
    mode = fields.optional_text("mode", "replicated") or "replicated"
    aliases = fields.texts("aliases")
    healthcheck = fields.flag("healthcheck", False)
    stack = fields.optional_text("stack")
    placement = fields.texts("placement")
    # Every field is read (a malformed one is a BadRequest) before the modes
    # are checked (SwarmError, as from FakeSwarm), the mode first as it does.
    checked_mode = check_service_mode(mode)
    checked_endpoint_mode = check_endpoint_mode(endpoint_mode)
    return service_json(
        fake.create_service(
            name,
            replicas,
            network=network,
            endpoint_mode=checked_endpoint_mode,
            mode=checked_mode,
            aliases=aliases,
            healthcheck=healthcheck,
            stack=stack,
            placement=placement,
        )
    )


def _scale(fake: Controlled, fields: Fields) -> object:
    return service_json(fake.scale(fields.text("name"), fields.whole("replicas")))


def _remove_service(fake: Controlled, fields: Fields) -> object:
    fake.remove_service(fields.text("name"))
    return None


def _kill_task(fake: Controlled, fields: Fields) -> object:
    return service_json(fake.kill_task(fields.text("task")))


def _replace_task(fake: Controlled, fields: Fields) -> object:
    return task_json(fake.replace_task(fields.text("task")))


def _reschedule(fake: Controlled, fields: Fields) -> object:
    return [task_json(task) for task in fake.reschedule(fields.text("name"))]


def _mark_healthy(fake: Controlled, fields: Fields) -> object:
    return task_json(fake.mark_healthy(fields.text("task")))


def _mark_unhealthy(fake: Controlled, fields: Fields) -> object:
    return task_json(fake.mark_unhealthy(fields.text("task")))


def _inject(fake: Faulty, fields: Fields) -> object:
    fake.inject(
        fields.faults("fault"),
        name=fields.optional_text("name"),
        qtype=fields.optional_text("qtype"),
    )
    return None


def _clear_faults(fake: Faulty, fields: Fields) -> object:
    fake.clear_faults(fields.optional_text("name"))
    return None


def _reset(fake: Faulty, fields: Fields) -> object:
    fake.reset()
    return None


# -- operations over time ------------------------------------------------------------


_OPERATION_IDS = itertools.count(1)


class OperationBook:
    """The operations a channel started, by ID, for ``operation`` requests.

    Finished ones past ``KEPT_OPERATIONS`` are dropped, the oldest first;
    ``reset`` forgets them all. No two books give the same ID, so that an ID
    from before a reset, or from a channel since closed, names nothing
    rather than another operation.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[int, Operation] = {}

    def add(self, operation: Operation) -> int:
        """Keep ``operation``; returns its ID."""
        with self._lock:
            number = next(_OPERATION_IDS)
            self._kept[number] = operation
            over = [n for n, o in self._kept.items() if o.done or o.cancelled]
            for old in over[: max(0, len(over) - KEPT_OPERATIONS)]:
                del self._kept[old]
            return number

    def get(self, number: int) -> Operation:
        """The operation of that ID.

        Raises:
            SwarmError: The channel does not know it.
        """
        with self._lock:
            operation = self._kept.get(number)
            if operation is None:
                known = ", ".join(map(str, self._kept)) or "none"
                raise SwarmError(
                    f"no operation {number} (known: {known}); the channel keeps the last"
                    f" {KEPT_OPERATIONS} finished ones, and forgets them all on reset"
                )
            return operation

    def forget(self) -> None:
        """Forget every operation."""
        with self._lock:
            self._kept.clear()


@frozen
class Waiting:
    """A reply that waits for an operation's end (``wait=true``) or its deadline.

    Attributes:
        number: The operation's ID.
        operation: What the request waits for.
        until: When it stops waiting (``time.monotonic()``).
        timeout: The request's ``timeout``, for the message.
    """

    number: int
    operation: Operation
    until: float
    timeout: float

    def ready(self, now: float) -> bool:
        """Whether the reply can go: the operation is over, or the deadline passed."""
        return self.operation.done or self.operation.cancelled or now >= self.until

    def reply(self) -> dict[str, Any]:
        """The operation as it is, or a ``Timeout`` error if it is still running."""
        operation = self.operation
        if operation.done or operation.cancelled:
            return {"ok": True, "result": operation_json(self.number, operation)}
        return _error(
            "Timeout",
            f"the {operation.kind} of {operation.target} (operation {self.number}) is still"
            f" running after {self.timeout:g} s ({len(operation.timeline)} steps so far); wait"
            f" again (operation id={self.number} wait=true), with a longer timeout, or pass"
            ' faster delays ("instant", or {"scale": 0.1})',
        )


@frozen
class _Wait:
    """Whether a request waits for its operation's end, and for how long at most."""

    wait: bool
    timeout: float

    @classmethod
    def read(cls, fields: Fields) -> _Wait:
        return cls(fields.flag("wait", False), fields.seconds("timeout", WAIT_TIMEOUT))

    def reply(self, number: int, operation: Operation) -> object:
        """The operation as JSON now, or the ``Waiting`` reply the channel sends at its end."""
        if not self.wait:
            return operation_json(number, operation)
        return Waiting(number, operation, time.monotonic() + self.timeout, self.timeout)


def _started(fields: Fields, operation: Operation, wait: _Wait) -> object:
    return wait.reply(fields.book.add(operation), operation)


def _update_service(fake: Controlled, fields: Fields) -> object:
    return _rolled_out(fields, fake.update_service)


def _rollback(fake: Controlled, fields: Fields) -> object:
    return _rolled_out(fields, fake.rollback)


def _rolled_out(fields: Fields, start: Callable[..., Operation]) -> object:
    # Every field is read before anything starts: a malformed one starts nothing.
    name = fields.text("name")
    order = fields.order("order")
    parallelism = fields.whole("parallelism", 1)
    delay = fields.seconds("delay", 0.0)
    delays = fields.delays("delays")
    wait = _Wait.read(fields)
    operation = start(name, order=order, parallelism=parallelism, delay=delay, delays=delays)
    return _started(fields, operation, wait)


def _drain(fake: Controlled, fields: Fields) -> object:
    return _on_node(fields, fake.drain)


def _activate(fake: Controlled, fields: Fields) -> object:
    return _on_node(fields, fake.activate)


def _on_node(fields: Fields, start: Callable[..., Operation]) -> object:
    node = fields.text("node")
    delays = fields.delays("delays")
    wait = _Wait.read(fields)
    return _started(fields, start(node, delays=delays), wait)


def _operation(fake: object, fields: Fields) -> object:
    number = fields.ident("id")
    wait = _Wait.read(fields)
    return wait.reply(number, fields.book.get(number))


def _reset_swarm(fake: Faulty, fields: Fields) -> object:
    fake.reset()
    fields.book.forget()
    return None


#: Each operation a channel serves, and the fields it takes; the first
#: argument of each is the fake the channel drives.
Operations = Mapping[str, tuple[Callable[[Any, Fields], object], tuple[str, ...]]]
#: Operations every fake's channel serves alike.
COMMON_OPERATIONS: Operations = {
    "inject": (_inject, ("fault", "name", "qtype")),
    "clear_faults": (_clear_faults, ("name",)),
    "reset": (_reset, ()),
}
_ROLLING = ("name", "order", "parallelism", "delay", "delays", "wait", "timeout")
#: Each operation of a ``FakeSwarm``'s channel, and the fields it takes.
OPERATIONS: Operations = {
    "state": (_state, ()),
    "create_service": (
        _create_service,
        (
            "name",
            "replicas",
            "network",
            "endpoint_mode",
            "mode",
            "aliases",
            "healthcheck",
            "stack",
            "placement",
        ),
    ),
    "scale": (_scale, ("name", "replicas")),
    "remove_service": (_remove_service, ("name",)),
    "kill_task": (_kill_task, ("task",)),
    "replace_task": (_replace_task, ("task",)),
    "reschedule": (_reschedule, ("name",)),
    "mark_healthy": (_mark_healthy, ("task",)),
    "mark_unhealthy": (_mark_unhealthy, ("task",)),
    "update_service": (_update_service, _ROLLING),
    "rollback": (_rollback, _ROLLING),
    "drain": (_drain, ("node", "delays", "wait", "timeout")),
    "activate": (_activate, ("node", "delays", "wait", "timeout")),
    "operation": (_operation, ("id", "wait", "timeout")),
    **COMMON_OPERATIONS,
    "reset": (_reset_swarm, ()),
}


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": kind, "message": message}


def _decode(line: bytes, operations: Operations) -> tuple[str, dict[str, object]]:
    """The operation a request line names, and its other fields."""
    try:
        request = json.loads(line)
    except (ValueError, RecursionError) as error:
        raise BadRequest(
            f'a request is one line of JSON, such as {{"op": "state"}}; this one is not'
            f" ({type(error).__name__}: {str(error)[:80]})"
        ) from None
    if not isinstance(request, dict):
        raise BadRequest(
            'a request is a JSON object with an "op", such as {"op": "state"};'
            f" not a {type(request).__name__}"
        )
    op = request.pop("op", None)
    if not isinstance(op, str) or op not in operations:
        shown = json.dumps(op)[:60]
        raise BadRequest(f"unknown op {shown}; the ops are {', '.join(sorted(operations))}")
    return op, request


def answer(
    fake: object,
    line: bytes,
    record: Callable[[Exception], None],
    operations: Operations = OPERATIONS,
    book: OperationBook | None = None,
) -> dict[str, Any] | Waiting:
    """The reply to one request line; never raises (a bug is recorded, and reported).

    A request that waits for an operation's end (``wait=true``) gets a
    ``Waiting``, which the channel turns into a reply once it is ready.

    Args:
        fake: What the operations drive.
        line: The request.
        record: Called with an exception that only a bug raises.
        operations: The operations served: a ``FakeSwarm``'s unless told otherwise.
        book: The operations the channel started, which requests name by ID.
    """
    op = "request"
    try:
        op, request = _decode(line, operations)
        operation, known = operations[op]
        result = operation(fake, Fields(op, request, known, book))
    except BadRequest as error:
        return _error("BadRequest", str(error))
    except SwarmError as error:
        return _error("SwarmError", f"{op}: {error}")
    except (ValueError, TypeError) as error:
        return _error("BadRequest", f"{op}: {error}")
    except Exception as error:  # a bug: the channel goes on serving
        record(error)
        return _error(
            "InternalError",
            f"{op} failed inside the fake ({type(error).__name__}: {error}); the fake goes on"
            " serving; please report this as a bug of swarmdns",
        )
    if isinstance(result, Waiting):
        return result.reply() if result.ready(time.monotonic()) else result
    return {"ok": True, "result": result}


# -- the server --------------------------------------------------------------------


class _Connection:
    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.received = bytearray()
        self.outgoing = bytearray()
        self.deadline = now + IDLE_TIMEOUT
        self.skipping = False  # discarding the rest of an over-long line
        #: Since when a request has been coming in, or a reply going out; None: idle.
        self.busy_since: float | None = None
        #: The reply that waits for an operation's end; the next requests wait behind it.
        self.waiting: Waiting | None = None

    def settle_deadline(self, now: float) -> None:
        """Idle: ``IDLE_TIMEOUT`` from now; else ``REQUEST_TIMEOUT`` from when it got busy.

        While a reply waits for an operation, until its own deadline (and the
        time to send it).
        """
        if self.waiting is not None:
            self.busy_since = None
            self.deadline = self.waiting.until + REQUEST_TIMEOUT
        elif self.received or self.skipping or self.outgoing:
            if self.busy_since is None:
                self.busy_since = now
            self.deadline = self.busy_since + REQUEST_TIMEOUT
        else:
            self.busy_since = None
            self.deadline = now + IDLE_TIMEOUT


class ControlServer(SelectorThread[_Connection]):
    """Serves the control channel of a fake on a loopback TCP port until stopped.

    ``operations`` are those of a ``FakeSwarm`` unless told otherwise (a
    ``FakeCompose`` serves its own). The operations over time it starts are
    kept by ID while it serves (see ``OperationBook``).
    """

    def __init__(
        self, fake: object, *, host: str, port: int, operations: Operations = OPERATIONS
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be a whole number from 0 to 65535, not {port!r}")
        host = check_loopback(host)
        self._fake = fake
        self._operations = operations
        self._book = OperationBook()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((host, port))
            self._listener.listen(64)
        except OSError:
            self._listener.close()
            raise
        self._listener.setblocking(False)
        super().__init__("the fake's control channel")
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._accepting = False
        self._accept_paused_until = 0.0

    @property
    def address(self) -> str:
        """``host:port`` (``[host]:port`` for IPv6), as ``FakeControl`` takes it."""
        return endpoint(self.host, self.port)

    def start(self) -> None:
        """Start serving in a background thread."""
        self._accept(True)
        self._start_thread(f"swarmdns-fake-control-{self.port}")

    def _close(self) -> None:
        self._listener.close()

    # -- the loop ------------------------------------------------------------------

    def _next_wakeup(self) -> float | None:
        now = time.monotonic()
        deadlines = [c.deadline for c in self._connections.values()]
        if self._accept_paused_until:
            deadlines.append(self._accept_paused_until)
        if any(c.waiting is not None for c in self._connections.values()):
            # An operation ends on the fake's clock, which cannot wake this loop,
            # and waiting for it here would stall every other client: the loop
            # looks at the operations replies wait for, this often, meanwhile.
            deadlines.append(now + _WAIT_POLL)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _after_round(self) -> None:
        now = time.monotonic()
        if self._accept_paused_until and self._accept_paused_until <= now:
            self._accept_paused_until = 0.0
            self._accept(len(self._connections) < MAX_CONNECTIONS)
        for connection in list(self._connections.values()):
            if connection.waiting is not None and connection.waiting.ready(now):
                reply = connection.waiting.reply()
                connection.waiting = None
                self._send_reply(connection, reply)
                if connection.sock in self._connections:
                    self._serve(connection)  # the requests that came in meanwhile
                    connection.settle_deadline(now)
        for connection in list(self._connections.values()):
            if connection.deadline <= now:
                self._drop(connection)

    def _accept(self, accepting: bool) -> None:
        """Listen for new connections, or leave them waiting in the backlog."""
        accepting = accepting and not self._accept_paused_until
        if accepting != self._accepting:
            if accepting:
                self._selector.register(self._listener, selectors.EVENT_READ, self._on_accept)
            else:
                self._selector.unregister(self._listener)
            self._accepting = accepting

    def _on_accept(self, listener: socket.socket, _events: int) -> None:
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as error:
            if error.errno not in _OUT_OF_RESOURCES:
                raise
            self._accept(False)  # until descriptors free up, rather than spin
            self._accept_paused_until = time.monotonic() + _ACCEPT_PAUSE
            return
        sock.setblocking(False)
        self._connections[sock] = _Connection(sock, time.monotonic())
        self._selector.register(sock, selectors.EVENT_READ, self._on_event)
        self._accept(len(self._connections) < MAX_CONNECTIONS)

    def _on_event(self, sock: socket.socket, events: int) -> None:
        connection = self._connections[sock]
        if events & selectors.EVENT_WRITE:
            self._flush(connection)
        elif events & selectors.EVENT_READ:
            try:
                data = sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._drop(connection)  # the client is done
                return
            connection.received += data
            if connection.waiting is not None and len(connection.received) > MAX_REQUEST_BYTES:
                # Requests pile up behind a reply that waits: a client sends
                # one or two meanwhile, not a flood that this would have to hold.
                self._drop(connection)
                return
        if sock in self._connections:
            self._serve(connection)
            connection.settle_deadline(time.monotonic())

    def _serve(self, connection: _Connection) -> None:
        """Answer each whole line received, one at a time while the replies go out."""
        while not connection.outgoing and connection.waiting is None:
            received = connection.received
            end = received.find(b"\n")
            if connection.skipping:
                if end < 0:
                    received.clear()
                    break
                del received[: end + 1]
                connection.skipping = False
                continue
            if end < 0 and len(received) <= MAX_REQUEST_BYTES:
                break
            if end < 0 or end > MAX_REQUEST_BYTES:
                connection.skipping = end < 0
                del received[: len(received) if end < 0 else end + 1]
                reply = _error(
                    "RequestTooLarge",
                    f"a request is one line of at most {MAX_REQUEST_BYTES} bytes; this one is"
                    " longer, and was skipped",
                )
            else:
                line = bytes(received[:end])
                del received[: end + 1]
                if not line.strip():
                    continue
                answered = answer(self._fake, line, self._record, self._operations, self._book)
                if isinstance(answered, Waiting):
                    connection.waiting = answered  # _after_round() replies when it is ready
                    break
                reply = answered
            self._send_reply(connection, reply)
            if connection.sock not in self._connections:
                return
        self._want(connection)

    def _send_reply(self, connection: _Connection, reply: dict[str, Any]) -> None:
        connection.busy_since = None  # a request done: the reply gets its own time
        connection.outgoing += json.dumps(reply).encode() + b"\n"
        self._flush(connection)

    def _flush(self, connection: _Connection) -> None:
        if not self._send_some(connection):
            return
        if not connection.outgoing:
            connection.busy_since = None  # a reply read: the next request gets its own time
        self._want(connection)

    def _want(self, connection: _Connection) -> None:
        """Wait to write while a reply is going out, else to read the next request."""
        if connection.sock in self._connections:
            events = selectors.EVENT_WRITE if connection.outgoing else selectors.EVENT_READ
            self._selector.modify(connection.sock, events, self._on_event)

    def _drop(self, connection: _Connection) -> None:
        super()._drop(connection)
        if not self._stopping:
            self._accept(len(self._connections) < MAX_CONNECTIONS)


# -- the client --------------------------------------------------------------------


def _parse_address(address: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(address, tuple):
        host, port = address
    elif isinstance(address, str):
        host, colon, port_text = address.rpartition(":")
        if not colon or not port_text.isdigit():
            raise ValueError(
                f"a control address is host:port, such as 127.0.0.1:5353 ([::1]:5353 for"
                f" IPv6); not {address!r}"
            )
        host, port = host.removeprefix("[").removesuffix("]"), int(port_text)
    else:
        raise TypeError(f"a control address is 'host:port' or (host, port), not {address!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
        raise ValueError(f"a control port is a whole number from 1 to 65535, not {port!r}")
    return host, port


def _task_key(task: TaskKey) -> str:
    if isinstance(task, Task):
        return task.id
    if isinstance(task, DNSTask):
        return str(task.ip)
    if isinstance(task, IPv4Address | str):
        return str(task)
    raise TypeError(
        "a task is the fake's Task, a swarmdns.Task, its address (an IPv4Address or a"
        f" str), or its ID, name or container ID as a str; not {task!r}"
    )


def _waits(fields: Mapping[str, object]) -> float:
    """How long the fake may hold a request's reply back: its ``timeout`` with ``wait=true``."""
    if fields.get("wait") is not True:
        return 0.0
    timeout = fields.get("timeout", WAIT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        return 0.0  # the fake refuses it at once
    return min(max(float(timeout), 0.0), MAX_WAIT) if math.isfinite(timeout) else 0.0


def _delays_json(delays: OperationDelays | None) -> dict[str, object]:
    if delays is None:
        return {}
    if not isinstance(delays, OperationDelays):
        raise TypeError(f"delays takes an OperationDelays, not {delays!r}")
    return {"delays": attrs.asdict(delays)}


def _fault_json(fault: object) -> object:
    if isinstance(fault, Fault):
        return fault.name
    if isinstance(fault, Delay):
        return fault.seconds
    return fault


class FakeControl:
    """Drives a fake Swarm running in another process, through its control channel.

    The fake listens for it once ``FakeSwarm.serve_control()`` was called
    (``swarmdns serve --control PORT`` on the command line). Each method does
    what the ``FakeSwarm`` method of the same name does, over one short
    connection, and returns the same values (snapshots, decoded; an update,
    rollback, drain or activation as a ``RemoteOperation``)::

        control = FakeControl("127.0.0.1:5380")
        control.scale("web", 5)
        control.kill_task("10.0.1.4")  # by address, ID, name, or value
        print(control.state().service("web").task_ips)

    Args:
        address: Where the channel listens: ``"host:port"`` (as
            ``FakeSwarm.control_address`` gives it) or ``(host, port)``.
        timeout: How many seconds each request may take, connecting included.

    Raises:
        ValueError: ``address`` is not ``host:port``.

    Every method raises ``SwarmError`` where the fake refuses the operation
    (the same error the ``FakeSwarm`` method raises), and ``ControlError``
    when the request could not be carried out: the channel unreachable or
    silent, or the request refused as malformed.
    """

    def __init__(self, address: str | tuple[str, int], *, timeout: float = 10.0) -> None:
        self._host, self._port = _parse_address(address)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self._timeout = float(timeout)

    @property
    def address(self) -> str:
        """``host:port`` of the channel."""
        return endpoint(self._host, self._port)

    def __repr__(self) -> str:
        return f"<FakeControl {self.address}>"

    def request(self, op: str, /, **fields: object) -> Any:  # noqa: ANN401 - JSON, as sent
        """Send one request as it goes on the wire; return its ``result`` as JSON.

        For tools that pass JSON through (``swarmdns control``); the other
        methods are this with their arguments checked and their results decoded.

        Raises:
            SwarmError: The fake refused the operation.
            ControlError: The request could not be carried out.
        """
        line = json.dumps({"op": op, **fields}).encode() + b"\n"
        deadline = time.monotonic() + self._timeout + _waits(fields)
        try:
            with socket.create_connection((self._host, self._port), self._timeout) as sock:
                sock.sendall(line)
                reply_line = self._read_line(sock, deadline)
        except TimeoutError:
            raise ControlError(
                f"{op}: the fake's control channel at {self.address} did not reply within"
                f" {self._timeout:g} s; it may be busy with {MAX_CONNECTIONS} other"
                " connections, or not a control channel: check the address",
                kind="Timeout",
            ) from None
        except OSError as error:
            raise ControlError(
                f"{op}: cannot reach the fake's control channel at {self.address}:"
                f" {error.strerror or error}; is the fake running, and serving its control"
                " channel there (FakeSwarm.serve_control(), swarmdns serve --control PORT)?",
                kind="Unreachable",
            ) from error
        return self._result(op, reply_line)

    def _read_line(self, sock: socket.socket, deadline: float) -> bytes:
        received = bytearray()
        while True:
            end = received.find(b"\n")
            if end >= 0:
                return bytes(received[:end])
            if len(received) > MAX_REPLY_BYTES:
                raise ControlError(
                    f"the reply from {self.address} is longer than {MAX_REPLY_BYTES} bytes:"
                    " is it a fake's control channel?",
                    kind="BadReply",
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = sock.recv(_RECV_SIZE)
            if not chunk:
                raise ControlError(
                    f"{self.address} closed the connection without replying: is it a fake's"
                    " control channel, and is the fake still running?",
                    kind="BadReply",
                )
            received += chunk

    def _result(self, op: str, line: bytes) -> Any:  # noqa: ANN401 - JSON, as sent
        try:
            reply = json.loads(line)
            ok = reply["ok"]
        except (ValueError, TypeError, KeyError):
            raise ControlError(
                f"{op}: {self.address} replied with something other than the fake's control"
                f" protocol ({bytes(line[:60])!r}): check the address",
                kind="BadReply",
            ) from None
        if ok:
            return reply.get("result")
        kind, message = str(reply.get("error")), str(reply.get("message"))
        if kind == "SwarmError":
            raise SwarmError(message)
        raise ControlError(message, kind=kind)

    # -- one method per operation ----------------------------------------------------

    def state(self) -> SwarmState:
        """The whole Swarm as it is now: services (with tasks and VIPs), networks, nodes."""
        return _state_from(self.request("state"))

    def create_service(
        self,
        name: str,
        replicas: int = 1,
        *,
        network: str | Sequence[str] | None = None,
        endpoint_mode: EndpointMode = "vip",
        mode: ServiceMode = "replicated",
        aliases: Sequence[str] = (),
        healthcheck: bool = False,
        stack: str | None = None,
        placement: Sequence[str] | None = None,
    ) -> Service:
        """Create a service and start its tasks (see ``FakeSwarm.create_service()``).

        ``placement`` names the nodes it may run on (``"node-3"``, or their IDs).
        """
        if isinstance(aliases, str):
            raise TypeError(f"aliases takes a sequence of names, not one string: [{aliases!r}]")
        if isinstance(placement, str):
            raise TypeError(
                f"placement takes a sequence of nodes, not one string: [{placement!r}]"
            )
        fields: dict[str, object] = {
            "name": name,
            "replicas": replicas,
            "endpoint_mode": endpoint_mode,
            "mode": mode,
            "aliases": list(aliases),
            "healthcheck": healthcheck,
        }
        if network is not None:
            fields["network"] = network if isinstance(network, str) else list(network)
        if stack is not None:
            fields["stack"] = stack
        if placement:
            fields["placement"] = list(placement)
        return _service_from(self.request("create_service", **fields))

    def scale(self, name: str, replicas: int) -> Service:
        """Set a replicated service's task count."""
        return _service_from(self.request("scale", name=name, replicas=replicas))

    def remove_service(self, name: str) -> None:
        """Remove a service: every one of its names vanishes from DNS."""
        self.request("remove_service", name=name)

    def kill_task(self, task: TaskKey) -> Service:
        """Kill one task (by value, address, ID, name or container ID) without replacing it."""
        return _service_from(self.request("kill_task", task=_task_key(task)))

    def replace_task(self, task: TaskKey) -> Task:
        """Kill one task and start its replacement in the same slot."""
        return _task_from(self.request("replace_task", task=_task_key(task)))

    def reschedule(self, name: str) -> tuple[Task, ...]:
        """Start tasks in every empty slot of a service; returns them."""
        return tuple(_task_from(t) for t in self.request("reschedule", name=name))

    def mark_healthy(self, task: TaskKey) -> Task:
        """Report a task of a service with a healthcheck healthy: DNS lists it."""
        return _task_from(self.request("mark_healthy", task=_task_key(task)))

    def mark_unhealthy(self, task: TaskKey) -> Task:
        """Report a task unhealthy: DNS stops listing it."""
        return _task_from(self.request("mark_unhealthy", task=_task_key(task)))

    def update_service(
        self,
        name: str,
        *,
        order: UpdateOrder = "stop-first",
        parallelism: int = 1,
        delay: float = 0.0,
        delays: OperationDelays | None = None,
        wait: bool = False,
        timeout: float = WAIT_TIMEOUT,
    ) -> RemoteOperation:
        """Replace every task of a service, batch by batch (see ``FakeSwarm.update_service()``).

        Args:
            name: The service.
            order: ``"stop-first"`` or ``"start-first"``.
            parallelism: Tasks per batch; 0: all at once.
            delay: Seconds between batches.
            delays: How long each step takes; the measured delays when None.
            wait: Reply once the update is over (or cancelled by a reset), not
                as it begins.
            timeout: With ``wait``, how many seconds to wait at most.

        Raises:
            ControlError: With ``wait``, it is still running after ``timeout``
                (``kind`` ``"Timeout"``; read it again with ``operation()``).
        """
        return self._rolled_out(
            "update_service",
            name,
            order=order,
            parallelism=parallelism,
            delay=delay,
            delays=delays,
            wait=wait,
            timeout=timeout,
        )

    def rollback(
        self,
        name: str,
        *,
        order: UpdateOrder = "stop-first",
        parallelism: int = 1,
        delay: float = 0.0,
        delays: OperationDelays | None = None,
        wait: bool = False,
        timeout: float = WAIT_TIMEOUT,
    ) -> RemoteOperation:
        """Undo a service's last update, with the rollback settings (see ``update_service()``)."""
        return self._rolled_out(
            "rollback",
            name,
            order=order,
            parallelism=parallelism,
            delay=delay,
            delays=delays,
            wait=wait,
            timeout=timeout,
        )

    def _rolled_out(
        self,
        op: str,
        name: str,
        *,
        order: UpdateOrder,
        parallelism: int,
        delay: float,
        delays: OperationDelays | None,
        wait: bool,
        timeout: float,
    ) -> RemoteOperation:
        fields: dict[str, object] = {
            "name": name,
            "order": order,
            "parallelism": parallelism,
            "delay": delay,
            **_delays_json(delays),
        }
        return self._operation(op, fields, wait, timeout)

    def drain(
        self,
        node: str,
        *,
        delays: OperationDelays | None = None,
        wait: bool = False,
        timeout: float = WAIT_TIMEOUT,
    ) -> RemoteOperation:
        """Drain a node (by name, such as ``"node-3"``, or ID; see ``FakeSwarm.drain()``)."""
        return self._operation("drain", {"node": node, **_delays_json(delays)}, wait, timeout)

    def activate(
        self,
        node: str,
        *,
        delays: OperationDelays | None = None,
        wait: bool = False,
        timeout: float = WAIT_TIMEOUT,
    ) -> RemoteOperation:
        """Make a drained node active again (see ``FakeSwarm.activate()``)."""
        return self._operation("activate", {"node": node, **_delays_json(delays)}, wait, timeout)

    def operation(
        self, id: int, *, wait: bool = False, timeout: float = WAIT_TIMEOUT
    ) -> RemoteOperation:
        """An operation the channel started, as it is now, or once over with ``wait``.

        Raises:
            SwarmError: The channel does not know the ID (it forgets them on reset).
            ControlError: With ``wait``, it is still running after ``timeout``.
        """
        return self._operation("operation", {"id": id}, wait, timeout)

    def _operation(
        self, op: str, fields: dict[str, object], wait: bool, timeout: float
    ) -> RemoteOperation:
        if wait:
            fields.update(wait=True, timeout=timeout)
        return _operation_from(self.request(op, **fields))

    def inject(
        self,
        fault: Injected | str | float | Sequence[Injected | str | float],
        *,
        name: str | None = None,
        qtype: str | None = None,
    ) -> None:
        """Make the fake misbehave (see ``FakeSwarm.inject()``).

        Args:
            fault: A ``Fault`` (or its name, such as ``"SERVFAIL"``), a ``Delay``
                (or its seconds), or a sequence of them, used up one query at a time.
            name: The name to misbehave for; every name when None.
            qtype: The query type to misbehave for (``"A"``, ...); every type when None.
        """
        value: object
        if isinstance(fault, str) or not isinstance(fault, Sequence):
            value = _fault_json(fault)
        else:
            value = [_fault_json(each) for each in fault]
        fields: dict[str, object] = {"fault": value}
        if name is not None:
            fields["name"] = name
        if qtype is not None:
            fields["qtype"] = qtype
        self.request("inject", **fields)

    def clear_faults(self, name: str | None = None) -> None:
        """Stop misbehaving for ``name``, or for every name when None."""
        self.request("clear_faults", **({} if name is None else {"name": name}))

    def reset(self) -> None:
        """Forget every service, network, node, fault and logged query (``FakeSwarm.reset()``)."""
        self.request("reset")
