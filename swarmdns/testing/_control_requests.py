"""What each request of the fake's control channel does, and how it is checked and answered.

A request is one line of JSON, an object naming the operation and its
arguments::

    {"op": "scale", "name": "web", "replicas": 5}

``answer()`` turns it into its reply, without I/O: ``Fields`` takes each
argument once with its type checked, the operation's handler (``OPERATIONS``
for a ``FakeSwarm``, ``COMMON_OPERATIONS`` for what every fake serves
alike) drives the fake, and its result or error becomes the reply::

    {"ok": true, "result": {"name": "web", ...}}
    {"ok": false, "error": "SwarmError", "message": "scale: no service named 'wbe' ..."}

Operations over time (updates, rollbacks, drains) are kept by ID in an
``OperationBook``; a request that waits for one's end gets a ``Waiting``,
which the server turns into the reply once it is ready.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
from attrs import frozen

from ._control_values import SwarmState, operation_json, service_json, state_json, task_json
from ._operations import Operation, OperationDelays, UpdateOrder
from ._responder import Delay, Fault, Injected
from ._swarm import (
    MAX_REPLICAS,
    EndpointMode,
    Service,
    ServiceMode,
    SwarmError,
    Task,
    TaskKey,
    check_endpoint_mode,
    check_service_mode,
)

#: The most faults one ``inject`` request may queue.
MAX_FAULTS = 1000
#: How long a request with ``wait=true`` waits for its operation's end,
#: unless its ``timeout`` says otherwise (as ``Operation.wait()``).
WAIT_TIMEOUT = 60.0
#: The longest ``timeout`` (or update ``delay``) a request may give, in seconds.
MAX_WAIT = 3600.0
#: How many finished operations the channel keeps for ``operation`` requests
#: (the oldest go first); running ones are always kept.
KEPT_OPERATIONS = 100


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
        return error_reply(
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


def error_reply(kind: str, message: str) -> dict[str, Any]:
    """An error reply: what went wrong (``kind``, as ``ControlError.kind``), and why."""
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
        return error_reply("BadRequest", str(error))
    except SwarmError as error:
        return error_reply("SwarmError", f"{op}: {error}")
    except (ValueError, TypeError) as error:
        return error_reply("BadRequest", f"{op}: {error}")
    except Exception as error:  # a bug: the channel goes on serving
        record(error)
        return error_reply(
            "InternalError",
            f"{op} failed inside the fake ({type(error).__name__}: {error}); the fake goes on"
            " serving; please report this as a bug of swarmdns",
        )
    if isinstance(result, Waiting):
        return result.reply() if result.ready(time.monotonic()) else result
    return {"ok": True, "result": result}
