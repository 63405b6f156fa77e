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
or to read a reply.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import math
import selectors
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Protocol, TypeVar

from attrs import frozen

from .._model import Task as DNSTask
from ._engines import EngineVersion
from ._loop import SelectorThread, endpoint
from ._nodes import Node
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

    def state(self) -> SwarmState:
        """A snapshot of the Swarm."""
        ...


class BadRequest(Exception):
    """The request is not one the channel understands."""


_REQUIRED = object()


class Fields:
    """A request's fields, each taken once with its type checked.

    Raises ``BadRequest`` for a field missing, unknown or of the wrong type.
    """

    def __init__(self, op: str, fields: dict[str, object], known: Sequence[str]) -> None:
        unknown = sorted(set(fields) - set(known))
        if unknown:
            takes = ", ".join(known) or "no fields"
            raise BadRequest(
                f"{op} takes {takes}; not {', '.join(map(repr, unknown))}"
                " (see docs/testing.md, 'Driving a fake from another process')"
            )
        self._op = op
        self._fields = fields

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


#: Each operation a channel serves, and the fields it takes; the first
#: argument of each is the fake the channel drives.
Operations = Mapping[str, tuple[Callable[[Any, Fields], object], tuple[str, ...]]]
#: Operations every fake's channel serves alike.
COMMON_OPERATIONS: Operations = {
    "inject": (_inject, ("fault", "name", "qtype")),
    "clear_faults": (_clear_faults, ("name",)),
    "reset": (_reset, ()),
}
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
        ),
    ),
    "scale": (_scale, ("name", "replicas")),
    "remove_service": (_remove_service, ("name",)),
    "kill_task": (_kill_task, ("task",)),
    "replace_task": (_replace_task, ("task",)),
    "reschedule": (_reschedule, ("name",)),
    "mark_healthy": (_mark_healthy, ("task",)),
    "mark_unhealthy": (_mark_unhealthy, ("task",)),
    **COMMON_OPERATIONS,
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
) -> dict[str, Any]:
    """The reply to one request line; never raises (a bug is recorded, and reported).

    Args:
        fake: What the operations drive.
        line: The request.
        record: Called with an exception that only a bug raises.
        operations: The operations served: a ``FakeSwarm``'s unless told otherwise.
    """
    op = "request"
    try:
        op, request = _decode(line, operations)
        operation, known = operations[op]
        result = operation(fake, Fields(op, request, known))
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

    def settle_deadline(self, now: float) -> None:
        """Idle: ``IDLE_TIMEOUT`` from now; else ``REQUEST_TIMEOUT`` from when it got busy."""
        if self.received or self.skipping or self.outgoing:
            if self.busy_since is None:
                self.busy_since = now
            self.deadline = self.busy_since + REQUEST_TIMEOUT
        else:
            self.busy_since = None
            self.deadline = now + IDLE_TIMEOUT


class ControlServer(SelectorThread[_Connection]):
    """Serves the control channel of a fake on a loopback TCP port until stopped.

    ``operations`` are those of a ``FakeSwarm`` unless told otherwise (a
    ``FakeCompose`` serves its own).
    """

    def __init__(
        self, fake: object, *, host: str, port: int, operations: Operations = OPERATIONS
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be a whole number from 0 to 65535, not {port!r}")
        host = check_loopback(host)
        self._fake = fake
        self._operations = operations
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
        deadlines = [c.deadline for c in self._connections.values()]
        if self._accept_paused_until:
            deadlines.append(self._accept_paused_until)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _after_round(self) -> None:
        now = time.monotonic()
        if self._accept_paused_until and self._accept_paused_until <= now:
            self._accept_paused_until = 0.0
            self._accept(len(self._connections) < MAX_CONNECTIONS)
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
        if sock in self._connections:
            self._serve(connection)
            connection.settle_deadline(time.monotonic())

    def _serve(self, connection: _Connection) -> None:
        """Answer each whole line received, one at a time while the replies go out."""
        while not connection.outgoing:
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
                reply = answer(self._fake, line, self._record, self._operations)
            connection.busy_since = None  # a request done: the reply gets its own time
            connection.outgoing += json.dumps(reply).encode() + b"\n"
            self._flush(connection)
            if connection.sock not in self._connections:
                return
        self._want(connection)

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
    connection, and returns the same values (snapshots, decoded)::

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
        deadline = time.monotonic() + self._timeout
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
    ) -> Service:
        """Create a service and start its tasks (see ``FakeSwarm.create_service()``)."""
        if isinstance(aliases, str):
            raise TypeError(f"aliases takes a sequence of names, not one string: [{aliases!r}]")
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
