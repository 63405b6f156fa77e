"""What operators do to a Swarm over time: rolling updates, rollbacks, drains.

On the engine, ``docker service update`` replaces a service's tasks batch by
batch, ``docker service rollback`` does it again with the rollback settings,
and ``docker node update --availability drain`` stops a node's tasks and
starts the replicated ones elsewhere. Each step takes time, and DNS shows
every step: this is what an application's discovery lives through.

``OperationDelays`` says how long each step takes (the measured defaults),
``UpdateSettings`` how an update proceeds, and ``plan_batches()`` which
tasks go together. ``Operation`` is what a test holds: it waits for the end
and reads the timeline. ``Rollout`` and ``Evacuation`` drive the steps on the
fake's scheduler, through ``Stage`` (the fake's lock, model and clock).
"""

from __future__ import annotations

import collections
import functools
import math
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from ipaddress import IPv4Address
from typing import ClassVar, Literal, get_args

from attrs import field, frozen

from ._nodes import check_seconds
from ._swarm import Swarm, SwarmError, Task

#: How an update replaces a task: stop the old one first, or start the new
#: one first (``docker service update --update-order``).
UpdateOrder = Literal["stop-first", "start-first"]
#: What an operation does: ``FakeSwarm.update_service()``, ``rollback()``,
#: ``drain()`` or ``activate()``.
OperationKind = Literal["update", "rollback", "drain", "activate"]
#: A step of a task in a timeline: it ``left`` DNS, its container ``exited``,
#: a new one ``started``, it ``entered`` DNS.
TimelineStep = Literal["left", "exited", "started", "entered"]
_ORDERS: tuple[UpdateOrder, ...] = get_args(UpdateOrder)


@frozen(kw_only=True)
class OperationDelays:
    """How long each step of an update, a rollback or a drain takes.

    The defaults follow Docker 28.5 (a service of 4 replicas whose health
    check passes about 3 s after start): a stop-first update of parallelism 1
    took 41.6 s, with 3 tasks in DNS for 31.5 s. With every delay 0
    (``INSTANT``), an operation ends within the call that starts it.

    Attributes:
        stop: From the decision to stop a task (its batch begins, its node is
            drained, its start-first replacement entered DNS) until DNS drops it.
        exit: From DNS dropping a task until its container exits: the engine
            waits for the removal to spread (seen: 2.0 s).
        start: From the old container's exit (or the decision, when nothing
            has to exit first) until the new container starts.
        healthy: From a new container's start until DNS lists it, for a
            service with a health check (seen: 5.5 s); a service without one
            is listed at start.
        monitor: From a batch's new tasks entering DNS until the next batch
            begins (the update's monitor, seen: 1.2 s); the update's ``delay``
            comes on top.
    """

    #: Every delay 0: an operation ends within the call that starts it.
    INSTANT: ClassVar[OperationDelays]

    stop: float = field(default=1.2, validator=check_seconds)
    exit: float = field(default=2.0, validator=check_seconds)
    start: float = field(default=0.4, validator=check_seconds)
    healthy: float = field(default=5.5, validator=check_seconds)
    monitor: float = field(default=1.2, validator=check_seconds)

    def scaled(self, factor: float) -> OperationDelays:
        """These delays multiplied by ``factor``: the same timeline, faster or slower.

        Raises:
            ValueError: ``factor`` is negative, or takes a delay past 3600 s.
        """
        if isinstance(factor, bool) or not isinstance(factor, int | float):
            raise TypeError(f"factor is a number, not {factor!r}")
        if not (math.isfinite(factor) and factor >= 0):
            raise ValueError(f"factor must be a finite number of at least 0, not {factor!r}")
        return OperationDelays(
            stop=self.stop * factor,
            exit=self.exit * factor,
            start=self.start * factor,
            healthy=self.healthy * factor,
            monitor=self.monitor * factor,
        )


OperationDelays.INSTANT = OperationDelays(stop=0, exit=0, start=0, healthy=0, monitor=0)


def _order(_instance: object, _attribute: object, value: object) -> None:
    if value not in _ORDERS:
        raise ValueError(f"order must be 'stop-first' or 'start-first', not {value!r}")


def _parallelism(_instance: object, _attribute: object, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"parallelism must be a whole number of at least 0 (0: every task at once),"
            f" not {value!r}"
        )


@frozen(kw_only=True)
class UpdateSettings:
    """How an update or a rollback replaces tasks (``--update-*``, ``--rollback-*``).

    The defaults are Docker's for both: stop-first, one task at a time, no delay.

    Attributes:
        order: ``"stop-first"`` (the old task leaves, then its replacement
            starts) or ``"start-first"`` (the replacement starts, and the old
            task stops once it is in DNS).
        parallelism: How many tasks each batch replaces; 0 replaces them all at once.
        delay: Seconds between a batch's end and the next batch, on top of
            ``OperationDelays.monitor``.
    """

    order: UpdateOrder = field(default="stop-first", validator=_order)
    parallelism: int = field(default=1, validator=_parallelism)
    delay: float = field(default=0.0, validator=check_seconds)


def plan_batches(tasks: Sequence[Task], parallelism: int) -> list[tuple[Task, ...]]:
    """The batches of an update: the running tasks by slot (or node), ``parallelism`` each.

    Tasks already on their way out (stopping) are not replaced again.
    """
    current = sorted((t for t in tasks if t.running), key=lambda t: (t.slot or 0, t.node_id))
    size = parallelism or max(len(current), 1)
    return [tuple(current[i : i + size]) for i in range(0, len(current), size)]


@frozen(kw_only=True)
class TimelineEvent:
    """One step of one task during an operation.

    Attributes:
        at: Seconds since the operation began (next to nothing for an instant one).
        step: ``"left"`` DNS, container ``"exited"``, new container
            ``"started"``, ``"entered"`` DNS.
        service: The task's service.
        task: The task's name (``<service>.<slot>.<id>``).
        ip: The task's address on its service's first network.
    """

    at: float
    step: TimelineStep
    service: str
    task: str
    ip: IPv4Address

    def __str__(self) -> str:
        return f"{self.at:7.3f} s  {self.step:<7}  {self.task} ({self.ip})"


class Operation:
    """An update, rollback, drain or activation of the fake Swarm, under way or over.

    The fake runs it in the background, on its own clock; ``wait()`` for its
    end, then read what DNS went through. Counts are of the tasks the
    manager's DNS lists, changed by this operation's own steps only.

    Attributes:
        kind: ``"update"``, ``"rollback"``, ``"drain"`` or ``"activate"``.
        target: The service, or the node's name.
        settings: How an update or rollback proceeds (None for a node).
        delays: How long each step takes.
    """

    def __init__(
        self,
        *,
        kind: OperationKind,
        target: str,
        settings: UpdateSettings | None,
        delays: OperationDelays,
        listed: dict[str, int],
    ) -> None:
        self.kind: OperationKind = kind
        self.target = target
        self.settings = settings
        self.delays = delays
        self._listed = dict(listed)
        #: Guards the steps and the end, which the fake's thread writes.
        self._lock = threading.Lock()
        self._began = time.monotonic()
        self._events: list[TimelineEvent] = []
        self._ended: float | None = None
        self._cancelled = False
        self._finished = threading.Event()

    def __repr__(self) -> str:
        how = (
            "" if self.settings is None else f" {self.settings.order} x{self.settings.parallelism}"
        )
        state = "cancelled" if self._cancelled else "done" if self.done else "running"
        return f"<Operation {self.kind} {self.target}{how}: {state}, {len(self.timeline)} steps>"

    @property
    def done(self) -> bool:
        """Whether every step has happened."""
        return self._ended is not None

    @property
    def cancelled(self) -> bool:
        """Whether ``reset()`` dropped it before its end."""
        return self._cancelled

    @property
    def took(self) -> float | None:
        """Seconds from its start to its end, once done."""
        return None if self._ended is None else self._ended - self._began

    @property
    def timeline(self) -> tuple[TimelineEvent, ...]:
        """Every step so far, in order."""
        with self._lock:
            return tuple(self._events)

    def wait(self, timeout: float = 60.0) -> Operation:
        """Wait until the operation is over; returns it, for chaining.

        Raises:
            TimeoutError: It is still running after ``timeout`` seconds (a
                stopped fake runs nothing: start it, or call ``settle()``).
            SwarmError: ``reset()`` cancelled it.
        """
        if not self._finished.wait(timeout):
            raise TimeoutError(
                f"the {self.kind} of {self.target} is still running after {timeout} s"
                f" ({len(self.timeline)} steps so far); wait longer, or pass faster"
                " delays (OperationDelays.INSTANT, or .scaled())"
            )
        if self._cancelled:
            raise SwarmError(f"the {self.kind} of {self.target} was cancelled by reset()")
        return self

    def counts(self, service: str | None = None) -> list[tuple[float, int]]:
        """How many of a service's tasks DNS listed, from the start and after each step.

        Args:
            service: The service; the target by default (for a drain, name it).
        """
        name = self._service(service)
        count = self._listed[name]
        counts = [(0.0, count)]
        for event in self.timeline:
            if event.service == name and event.step in ("left", "entered"):
                count += 1 if event.step == "entered" else -1
                counts.append((event.at, count))
        return counts

    def fewest(self, service: str | None = None) -> int:
        """The fewest tasks of a service DNS listed at any moment, even an instant one."""
        return min(count for _, count in self.counts(service))

    def most(self, service: str | None = None) -> int:
        """The most tasks of a service DNS listed at any moment."""
        return max(count for _, count in self.counts(service))

    def time_below(self, count: int, service: str | None = None) -> float:
        """Seconds during which DNS listed fewer than ``count`` tasks of a service."""
        end = self.took if self.took is not None else time.monotonic() - self._began
        steps = self.counts(service)
        below = 0.0
        for (at, listed), (until, _) in zip(steps, [*steps[1:], (end, 0)], strict=True):
            if listed < count:
                below += until - at
        return below

    def _service(self, service: str | None) -> str:
        name = self.target if service is None else service
        if name not in self._listed:
            known = ", ".join(sorted(self._listed)) or "none"
            raise SwarmError(
                f"the {self.kind} of {self.target} touched no service {name!r}"
                f" (it touched: {known})"
            )
        return name

    # -- what the runners tell it ----------------------------------------------------

    def record(self, step: TimelineStep, service: str, task: Task) -> None:
        """Add a step, now."""
        event = TimelineEvent(
            at=time.monotonic() - self._began,
            step=step,
            service=service,
            task=task.name,
            ip=task.ip,
        )
        with self._lock:
            self._listed.setdefault(service, 0)
            self._events.append(event)

    def finish(self) -> None:
        """Every step has happened."""
        with self._lock:
            self._ended = time.monotonic()
        self._finished.set()

    def cancel(self) -> None:
        """``reset()`` dropped the steps still pending."""
        with self._lock:
            if self._ended is not None:
                return
            self._cancelled = True
        self._finished.set()


@frozen
class Stage:
    """What a runner needs from the fake.

    Attributes:
        change: Locks the model for one change, then publishes it.
        after: Runs an effect under the fake's lock in so many seconds (at
            once, in the caller's lock, for 0).
    """

    change: Callable[[], AbstractContextManager[Swarm]]
    after: Callable[[float, Callable[[], None]], object]


class _Runner:
    """Counts an operation's pending steps, and ends it when none is left."""

    def __init__(self, stage: Stage, operation: Operation) -> None:
        self._stage = stage
        self.operation = operation
        self.delays = operation.delays
        self._pending = 0
        self._due: collections.deque[Callable[[], None]] = collections.deque()
        self._running_due = False

    def later(self, delay: float, effect: Callable[[], None]) -> None:
        """Run ``effect`` in ``delay`` seconds; at once, after those already due, for 0.

        Effects due now run one after the other in the order they were
        asked for, never one inside another, so that an instant operation
        goes through the same steps, in the same order, as a timed one.
        """
        self._pending += 1
        if delay > 0:
            self._stage.after(delay, functools.partial(self._run, effect))
            return
        self._due.append(effect)
        if self._running_due:
            return
        self._running_due = True
        try:
            while self._due:
                self._run(self._due.popleft())
        finally:
            self._running_due = False

    def _run(self, effect: Callable[[], None]) -> None:
        try:
            effect()
        finally:
            self._pending -= 1
            if self._pending == 0:
                self.operation.finish()

    # -- one task's steps ------------------------------------------------------------

    def stop(self, task: Task, then: Callable[[], None] | None = None) -> None:
        """Take ``task`` out of DNS after ``stop``; its container exits ``exit`` later."""

        def leave() -> None:
            with self._stage.change() as swarm:
                stopped = swarm.stop_task(task.id)
            if stopped is not None:
                self.operation.record("left", task.service, stopped)
            self.later(self.delays.exit, exit_)

        def exit_() -> None:
            with self._stage.change() as swarm:
                gone = swarm.exit_task(task.id)
            if gone is not None:
                self.operation.record("exited", task.service, gone)
            if then is not None:
                then()

        self.later(self.delays.stop, leave)

    def start(
        self, service: str, slot: int | None, node: str | None, entered: Callable[[], None]
    ) -> None:
        """Start a task in ``slot`` (on ``node`` if it may run there) after ``start``.

        ``entered`` runs once DNS lists it, or at once if it finds no node.
        """

        def begin() -> None:
            with self._stage.change() as swarm:
                new = swarm.start_task(service, slot=slot, node=node)
            if new is None:
                entered()  # no node for it: pending, as on the engine
                return
            self.operation.record("started", service, new)
            if new.visible:
                self.operation.record("entered", service, new)
                entered()
            else:
                self.later(self.delays.healthy, functools.partial(healthy, new))

        def healthy(new: Task) -> None:
            with self._stage.change() as swarm:
                listed = swarm.pass_healthcheck(new.id)
            if listed is not None:
                self.operation.record("entered", service, listed)
            entered()

        self.later(self.delays.start, begin)


class Rollout(_Runner):
    """An update or a rollback: every task replaced, batch by batch.

    Stop-first: each old task leaves DNS, exits, and its replacement starts
    and enters DNS. Start-first: the replacement starts and enters DNS, then
    the old task leaves and exits. A batch ends when its replacements are in
    DNS; the next begins ``monitor`` (plus the update's ``delay``) later.
    """

    def __init__(
        self, stage: Stage, operation: Operation, settings: UpdateSettings, tasks: Sequence[Task]
    ) -> None:
        super().__init__(stage, operation)
        self._settings = settings
        self._batches = plan_batches(tasks, settings.parallelism)

    def begin(self) -> None:
        """Start the first batch now (within the caller's lock)."""
        self.later(0.0, self._next_batch)

    def _next_batch(self) -> None:
        if not self._batches:
            return
        batch = self._batches.pop(0)
        left = len(batch)

        def replaced() -> None:
            nonlocal left
            left -= 1
            if left == 0 and self._batches:
                self.later(self.delays.monitor + self._settings.delay, self._next_batch)
            elif left == 0:
                self.later(self.delays.monitor, _nothing)  # the last batch's monitor

        for old in batch:
            if self._settings.order == "stop-first":
                self.stop(
                    old,
                    then=functools.partial(
                        self.start, old.service, old.slot, old.node_id, replaced
                    ),
                )
            else:
                self.start(
                    old.service,
                    old.slot,
                    old.node_id,
                    functools.partial(self._then_stop, old, replaced),
                )

    def _then_stop(self, old: Task, replaced: Callable[[], None]) -> None:
        """Start-first: the replacement is in DNS; the old task goes."""
        replaced()
        self.stop(old)


class Evacuation(_Runner):
    """A drain: the node's tasks stop; replicated ones start again on other nodes."""

    def __init__(self, stage: Stage, operation: Operation, tasks: Sequence[Task]) -> None:
        super().__init__(stage, operation)
        self._tasks = tasks

    def begin(self) -> None:
        """Stop every task of the node (within the caller's lock)."""
        self.later(0.0, self._stop_all)

    def _stop_all(self) -> None:
        for task in self._tasks:
            if task.slot is None:
                self.stop(task)  # a global service's task: nowhere else to go
            else:
                self.stop(
                    task,
                    then=functools.partial(self.start, task.service, task.slot, None, _nothing),
                )


class Arrival(_Runner):
    """An activation: the tasks that found no node may start on this one; nothing moves back."""

    def __init__(
        self,
        stage: Stage,
        operation: Operation,
        waiting: Sequence[tuple[str, int | None]],
        node: str,
    ) -> None:
        super().__init__(stage, operation)
        self._waiting = waiting
        self._node = node

    def begin(self) -> None:
        """Start every waiting task after ``start`` (within the caller's lock)."""
        self.later(0.0, self._start_all)

    def _start_all(self) -> None:
        for service, slot in self._waiting:
            self.start(service, slot, self._node if slot is None else None, _nothing)


def _nothing() -> None:
    """What follows a step that nothing waits on."""
