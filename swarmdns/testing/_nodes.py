"""Several nodes: what each node's engine knows of the Swarm, and when it learns more.

Each node of a real Swarm runs its own embedded DNS server, which answers
from the endpoint records its engine holds: its own tasks' at once, other
nodes' as gossip brings them (about 0.1 s later). A node cut off from the
others drops out of their DNS once they detect the failure (5-8 s), and the
manager starts its replicated tasks elsewhere once it marks the node Down
(10-15 s).

``Gossip`` keeps each node's knowledge and builds its DNS tables, without
I/O or clock. ``Cluster``, which ``FakeSwarm`` owns, drives it: it gives each
node past the first its DNS server, and decides when each effect happens,
with ``Scheduler`` (one thread) for the delayed ones.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import ClassVar

from attrs import evolve, field, frozen

from .._model import Task as DNSTask
from ._loop import binding_again, endpoint
from ._responder import Reply, Responder, Transport
from ._server import DNSServer
from ._swarm import Service, Swarm, SwarmError, Task
from ._zone import Zone, ZoneBuilder

logger = logging.getLogger("swarmdns.testing")

_STOP_TIMEOUT = 10.0
#: Each node has a DNS server, with a thread and two sockets.
_MAX_NODES = 64


def check_seconds(_instance: object, attribute: object, value: float) -> None:
    """An attrs validator: a delay of 0 to 3600 seconds (``NodeDelays``, ``OperationDelays``)."""
    name = getattr(attribute, "name", "delay")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} is a number of seconds, not {value!r}")
    if not (math.isfinite(value) and 0 <= value <= 3600):
        raise ValueError(f"{name} must be between 0 and 3600 seconds, not {value!r}")


@frozen(kw_only=True)
class NodeDelays:
    """How long a Swarm of several nodes takes to show a change on each node.

    The defaults are what a three-node Swarm was seen doing (engines 20.10,
    26.1 and 28.5). With every delay 0, each effect happens within the call
    that causes it, and tests need no waiting.

    Attributes:
        propagation: From a change on a node (its tasks start, stop, die or
            turn healthy; that node's own DNS shows it at once) until every
            other node's DNS shows it. Seen: 5-190 ms.
        failure_detection: From ``isolate()`` until the other nodes' DNS drops
            the isolated node's tasks. Seen: 5-8 s.
        down: From ``isolate()`` until the manager marks the node Down and
            starts its replicated tasks on the other nodes. Seen: 10-15 s.
        rejoin: From ``rejoin()`` until the nodes' DNS agree again: the
            others show the returning node's tasks, and it theirs.
            Seen: 0.03-2 s.
    """

    #: Every delay 0: every effect within the call that causes it.
    INSTANT: ClassVar[NodeDelays]

    propagation: float = field(default=0.1, validator=check_seconds)
    failure_detection: float = field(default=6.0, validator=check_seconds)
    down: float = field(default=12.0, validator=check_seconds)
    rejoin: float = field(default=0.5, validator=check_seconds)


NodeDelays.INSTANT = NodeDelays(propagation=0, failure_detection=0, down=0, rejoin=0)


@frozen(kw_only=True)
class Node:
    """A snapshot of one node of the fake Swarm, and where its DNS listens.

    Attributes:
        name: ``node-1``, ``node-2``, ... in the order the nodes joined;
            ``node-1`` is the manager, whose DNS is the fake's own.
        id: The node ID, as in a global task's name.
        host: The address its DNS server listens on.
        port: Its DNS server's port (UDP and TCP), or None while the fake is stopped.
        isolated: Cut off from the other nodes (``isolate()``).
        paused: Isolated as a paused engine: its DNS does not answer. A node
            whose link was cut (``isolate(node, paused=False)``) answers from
            what it knew.
        down: Marked Down by the manager: no task is placed on it.
        stale: Back from ``rejoin(node, stale=True)`` (the Docker 29.x bug,
            moby/moby#53141): the other nodes' DNS leaves out its tasks, but
            those of services ``force_update()`` has replaced since.
        drained: Drained by its operator (``drain()``): no task runs on it.
    """

    name: str
    id: str
    host: str
    port: int | None
    isolated: bool = False
    paused: bool = False
    down: bool = False
    stale: bool = False
    drained: bool = False

    @property
    def nameserver(self) -> str:
        """``host:port`` (``[host]:port`` for IPv6), as ``SWARMDNS_NAMESERVER`` takes it.

        Raises:
            RuntimeError: The fake is stopped.
        """
        if self.port is None:
            raise RuntimeError(f"{self.name} has no DNS server: the fake Swarm is stopped")
        return endpoint(self.host, self.port)


class Silent:
    """Answers nothing: the DNS of a node whose engine is paused, so clients time out."""

    def respond(self, data: bytes, transport: Transport, *, waited: float = 0.0) -> Reply:
        """No reply, whatever the message."""
        return Reply(data=None)


SILENT = Silent()

#: A node's endpoint records: each service's tasks on that node, by service ID.
Records = Mapping[str, tuple[Task, ...]]
#: A delayed effect as the scheduler holds it: when it is due, its number, itself.
Timer = tuple[float, int, Callable[[], None]]


@frozen(kw_only=True)
class Delivery:
    """One node's records as gossip carries them to another node.

    Attributes:
        source: The node the records are about.
        target: The node that learns them.
        records: The source's records when they were sent.
        epochs: Both nodes' epochs when they were sent: an isolation or a
            return in between makes the delivery void.
    """

    source: str
    target: str
    records: Records
    epochs: tuple[int, int]


class NodeView:
    """What one node's engine knows, and the DNS that answers from it."""

    def __init__(self, node: str, responder: Responder) -> None:
        self.node = node
        self.responder = responder
        self.server: DNSServer | None = None
        self.zones = ZoneBuilder()
        #: Each node's records as this node last learnt them.
        self.known: dict[str, Records] = {}
        self.isolated = False
        #: Isolated as a paused engine, whose DNS does not answer.
        self.paused = False
        #: The other nodes have given up on this one (failure detection passed).
        self.detected = False
        #: Counts isolations and returns, to void what was sent before.
        self.epoch = 0
        self._services: dict[str, tuple[tuple[tuple[Task, ...], ...], Service]] = {}

    def services(
        self, nodes: list[str], definitions: Mapping[str, Service], rank: Mapping[str, int]
    ) -> tuple[Service, ...]:
        """Each service this node knows a task of, with only those tasks.

        A service whose known tasks did not change is the same object as at
        the last call, so that ``ZoneBuilder`` reuses its networks' tables.
        """
        parts: dict[str, list[tuple[Task, ...]]] = {}
        for node in nodes:
            for service_id, tasks in self.known.get(node, {}).items():
                parts.setdefault(service_id, []).append(tasks)
        cached, self._services = self._services, {}
        views = []
        for service_id in sorted(parts, key=rank.__getitem__):
            key = tuple(parts[service_id])
            previous = cached.get(service_id)
            if previous is not None and previous[0] == key:
                view = previous[1]
            else:
                tasks = tuple(itertools.chain.from_iterable(key))
                view = evolve(definitions[service_id], tasks=tasks)
            self._services[service_id] = (key, view)
            views.append(view)
        return tuple(views)


class Gossip:
    """Each node's knowledge of the Swarm's tasks, and how it changes; no I/O, no clock.

    Every change to the model is a change on the nodes whose tasks it touches:
    that node knows it at once, the others through a ``Delivery`` that the
    caller applies after the propagation delay. The first node is the manager.
    """

    def __init__(self) -> None:
        self.views: dict[str, NodeView] = {}
        self._local: dict[str, Records] = {}
        self._definitions: dict[str, Service] = {}
        self._rank: dict[str, int] = {}
        self._split: dict[str, tuple[Service, dict[str, tuple[Task, ...]]]] = {}
        self._dirty: set[str] = set()
        #: Nodes back from a stale rejoin, each with the services (by ID)
        #: force-updated since, whose records the other nodes take again.
        self._stale: dict[str, set[str]] = {}

    # -- the model, node by node ---------------------------------------------------

    def _records(self, swarm: Swarm) -> dict[str, Records]:
        """Each node's records in the model as it is now."""
        local: dict[str, dict[str, tuple[Task, ...]]] = {node: {} for node in swarm.nodes}
        split: dict[str, tuple[Service, dict[str, tuple[Task, ...]]]] = {}
        for service in swarm.services:
            previous = self._split.get(service.id)
            if previous is not None and previous[0] is service:
                by_node = previous[1]
            else:
                grouped: dict[str, list[Task]] = {}
                for task in service.tasks:
                    grouped.setdefault(task.node_id, []).append(task)
                by_node = {node: tuple(tasks) for node, tasks in grouped.items()}
                self._definitions[service.id] = service
                self._rank.setdefault(service.id, len(self._rank))
            split[service.id] = (service, by_node)
            for node, tasks in by_node.items():
                local[node][service.id] = tasks
        self._split = split
        return dict(local)

    def join(self, node: str, responder: Responder, swarm: Swarm) -> list[Delivery]:
        """Add a node's view; the first one knows its own tasks, as the model has them.

        Returns:
            What the other nodes send the new one.
        """
        view = NodeView(node, responder)
        self.views[node] = view
        self._dirty.add(node)
        if len(self.views) == 1:
            self._local = self._records(swarm)
            view.known = {node: self._local.get(node, {})}
            self._local = {node: view.known[node]}  # others' records: news to it
            return []
        deliveries = (self._delivery(source, node) for source in self.views if source != node)
        return [d for d in deliveries if d is not None]

    def publish(self, swarm: Swarm) -> list[Delivery]:
        """Take in the model after a change.

        Returns:
            What each node whose tasks changed sends every other node.
        """
        local = self._records(swarm)
        changed = [node for node in local if local[node] != self._local.get(node, {})]
        self._local = local
        self._dirty.update(self.views)  # networks or attachments may have changed
        deliveries: list[Delivery | None] = []
        for source in changed:
            view = self.views[source]
            if not view.isolated:
                view.known[source] = local[source]
            deliveries.extend(
                self._delivery(source, target) for target in self.views if target != source
            )
        return [d for d in deliveries if d is not None]

    def _shared(self, source: str) -> Records:
        """A node's records as the other nodes take them in.

        All of them, unless it came back from a stale rejoin: then only those
        of the services force-updated since (moby/moby#53141).
        """
        records = self._local.get(source, {})
        republished = self._stale.get(source)
        if republished is None:
            return records
        return {service: tasks for service, tasks in records.items() if service in republished}

    def stale(self, node: str) -> bool:
        """Whether the node came back from a stale rejoin (and has not rejoined since)."""
        return node in self._stale

    def republish(self, service_id: str) -> None:
        """A service's tasks were all replaced: every node takes its records in again."""
        for republished in self._stale.values():
            republished.add(service_id)

    def _delivery(self, source: str, target: str) -> Delivery | None:
        sender, receiver = self.views[source], self.views[target]
        records = self._shared(source)
        if sender.isolated or receiver.isolated or receiver.known.get(source, {}) == records:
            return None
        return Delivery(
            source=source, target=target, records=records, epochs=(sender.epoch, receiver.epoch)
        )

    def deliver(self, delivery: Delivery) -> None:
        """A node learns another's records, unless either was cut off meanwhile."""
        sender, receiver = self.views[delivery.source], self.views[delivery.target]
        if (sender.epoch, receiver.epoch) != delivery.epochs:
            return
        receiver.known[delivery.source] = delivery.records
        self._dirty.add(delivery.target)

    # -- losing a node and getting it back -----------------------------------------

    def isolate(self, node: str, *, paused: bool) -> int:
        """Cut a node off: nobody learns from it, it learns from nobody.

        Whether paused or cut off, what it knows stays as it was, its own
        tasks included: a worker cut off from the manager goes on running them
        (until ``detect``).

        Returns:
            Its new epoch, which later effects of the isolation check.
        """
        view = self.views[node]
        view.isolated = True
        view.paused = paused
        view.epoch += 1
        return view.epoch

    def isolated_since(self, node: str, epoch: int) -> bool:
        """Whether the node is still cut off since the isolation that gave ``epoch``."""
        view = self.views[node]
        return view.isolated and view.epoch == epoch

    def detect(self, node: str, epoch: int) -> None:
        """An isolated node and the others give up on each other: they forget each other's tasks.

        A paused node forgets nothing: it does not run, and its DNS is silent.
        """
        if not self.isolated_since(node, epoch):
            return
        view = self.views[node]
        view.detected = True
        if not view.paused:
            view.known = {node: view.known[node]} if node in view.known else {}
            self._dirty.add(node)
        for other in self.views.values():
            if other.node != node and not other.isolated:
                other.known.pop(node, None)
                self._dirty.add(other.node)

    def rejoin(self, node: str, *, stale: bool = False) -> int:
        """A node is back: its own DNS answers again, from its own tasks as they are now.

        Args:
            node: The node.
            stale: Model Docker 29.x (moby/moby#53141): if the others had given
                up on it (``detect``), they take none of its records from now
                on, but those of services force-updated since (``republish``).

        Returns:
            Its new epoch, which the coming ``sync`` checks.
        """
        view = self.views[node]
        if stale and view.detected:
            self._stale[node] = set()
        else:
            self._stale.pop(node, None)
        view.isolated = False
        view.paused = False
        view.epoch += 1
        view.known[node] = self._local.get(node, {})
        self._dirty.add(node)
        return view.epoch

    def sync(self, node: str, epoch: int) -> None:
        """A returning node and the others exchange everything they know."""
        view = self.views[node]
        if view.isolated or view.epoch != epoch:
            return
        view.detected = False
        for other in self.views.values():
            if other.node == node:
                continue
            if other.isolated:
                if other.detected:
                    view.known.pop(other.node, None)
                continue
            view.known[other.node] = self._shared(other.node)
            other.known[node] = self._shared(node)
            self._dirty.add(other.node)
        self._dirty.add(node)

    # -- DNS -------------------------------------------------------------------------

    def take_dirty(self) -> list[str]:
        """The nodes whose DNS tables need building again, once each."""
        dirty = [node for node in self.views if node in self._dirty]
        self._dirty.clear()
        return dirty

    def zone(self, node: str, swarm: Swarm) -> Zone:
        """The DNS tables of one node, from what it knows."""
        view = self.views[node]
        services = view.services(list(self.views), self._definitions, self._rank)
        return view.zones.build_view(swarm, services)


class Scheduler:
    """Runs delayed effects in time order on one thread of its own, while started.

    While stopped, effects wait (``settle()`` then runs them in the caller's
    thread, each when it is due). An effect that raises is recorded in
    ``errors`` and logged.
    """

    def __init__(self, name: str = "swarmdns-fake-nodes") -> None:
        self._name = name
        self._changed = threading.Condition()
        self._queue: list[Timer] = []
        self._order = itertools.count()
        self._busy = 0
        self._thread: threading.Thread | None = None
        self._stopping: threading.Event | None = None
        self.errors: list[BaseException] = []

    @property
    def pending(self) -> int:
        """How many effects are waiting or running."""
        with self._changed:
            return len(self._queue) + self._busy

    def later(self, delay: float, effect: Callable[[], None]) -> Timer:
        """Run ``effect`` in ``delay`` seconds; returns what ``cancel()`` takes."""
        entry = (time.monotonic() + delay, next(self._order), effect)
        with self._changed:
            heapq.heappush(self._queue, entry)
            self._changed.notify_all()
        return entry

    def cancel(self, timer: Timer) -> None:
        """Forget an effect that has not run yet."""
        with self._changed:
            for index, entry in enumerate(self._queue):
                if entry[1] == timer[1]:
                    self._queue[index] = self._queue[-1]
                    self._queue.pop()
                    heapq.heapify(self._queue)
                    self._changed.notify_all()
                    return

    def clear(self) -> None:
        """Forget every effect that has not run yet."""
        with self._changed:
            self._queue.clear()
            self._changed.notify_all()

    def start(self) -> None:
        """Start the thread; idempotent."""
        with self._changed:
            if self._thread is not None:
                return
            stopping = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(stopping,), name=self._name, daemon=True
            )
            self._thread, self._stopping = thread, stopping
            thread.start()

    def stop(self) -> None:
        """Stop and join the thread, keeping what is pending; idempotent."""
        with self._changed:
            thread, self._thread = self._thread, None
            if self._stopping is not None:
                self._stopping.set()
            self._changed.notify_all()
        if thread is not None:
            thread.join(_STOP_TIMEOUT)
            if thread.is_alive():  # pragma: no cover - only a bug gets here
                raise RuntimeError("the fake Swarm's node scheduler did not stop within 10 s")

    def _due(self) -> Callable[[], None] | None:
        """Under the lock: take the first effect if it is due."""
        if self._queue and self._queue[0][0] <= time.monotonic():
            effect = heapq.heappop(self._queue)[2]
            self._busy += 1
            return effect
        return None

    def _wait(self, limit: float | None = None) -> float | None:
        """Under the lock: how long until the first effect is due (at most ``limit``)."""
        if not self._queue:
            return limit
        until = max(0.0, self._queue[0][0] - time.monotonic())
        return until if limit is None else min(until, limit)

    def _run(self, stopping: threading.Event) -> None:
        while True:
            with self._changed:
                effect = None
                while effect is None:
                    if stopping.is_set():
                        return
                    effect = self._due()
                    if effect is None:
                        self._changed.wait(self._wait())
            self._apply(effect)

    def _apply(self, effect: Callable[[], None]) -> None:
        try:
            effect()
        except Exception as error:  # pragma: no cover - only a bug gets here
            logger.error("a delayed effect of the fake Swarm failed", exc_info=error)
            self.errors.append(error)
        finally:
            with self._changed:
                self._busy -= 1
                self._changed.notify_all()

    def settle(self, timeout: float) -> None:
        """Wait until no effect is waiting or running.

        Raises:
            TimeoutError: Effects are still pending after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        for effect in self._drive(deadline):
            self._apply(effect)

    def _drive(self, deadline: float) -> Iterator[Callable[[], None]]:
        """Wait for the queue to empty; while stopped, hand over each effect when due."""
        while True:
            with self._changed:
                while True:
                    if not self._queue and not self._busy:
                        return
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        due = self._wait()
                        raise TimeoutError(
                            f"{len(self._queue) + self._busy} delayed effects of the fake"
                            f" Swarm are still pending"
                            + ("" if due is None else f", the next due in {due:.3f} s")
                        )
                    if self._thread is None and not self._busy:
                        effect = self._due()
                        if effect is not None:
                            break
                        self._changed.wait(self._wait(remaining))
                    else:
                        self._changed.wait(remaining)
            yield effect


class Cluster:
    """The nodes of a ``FakeSwarm``: each one's view and DNS, and when effects happen.

    The fake owns the model of the Swarm and the first node's DNS server (the
    manager's). The cluster gives every other node a responder and, while the
    fake serves, a DNS server of its own on the same host, answering from
    what that node knows (``Gossip``); it applies each delayed effect when
    due (``Scheduler``), and voids those from before a ``reset()``. Until a
    second node joins there is no gossip, and the fake's tables are the only
    ones.

    Args:
        manager: The first node's responder, the fake's own; the other nodes
            share its fault table and query log, and take its upstream and engine.
        lock: The fake's lock, which every change and every effect holds.
        model: The fake's model of the Swarm, as it is now.
        change: Locks the model for one change, then publishes it (the fake's).
        held: Whether a ``batch()`` holds changes back from DNS.
        host: The address every node's DNS server listens on.
        seed: Makes the other nodes' answers repeatable.
        nodes: How many nodes the Swarm has, the manager included.
        delays: How long effects take; the measured ones when None.
    """

    def __init__(
        self,
        manager: Responder,
        *,
        lock: threading.RLock,
        model: Callable[[], Swarm],
        change: Callable[[], AbstractContextManager[Swarm]],
        held: Callable[[], bool],
        host: str,
        seed: int | None,
        nodes: int,
        delays: NodeDelays | None,
    ) -> None:
        self._manager = manager
        self._lock = lock
        self._model = model
        self._change = change
        self._held = held
        self._host = host
        self._seed = seed
        self._initial_nodes = _check_node_count(nodes)
        self._initial_delays = _check_delays(delays) or NodeDelays()
        self._node_count = self._initial_nodes
        self._delays = self._initial_delays
        self._gossip: Gossip | None = None
        self._scheduler = Scheduler()
        self._isolation_timers: dict[str, list[Timer]] = {}
        #: Each node's DNS port, which a restart binds again.
        self._ports: dict[str, int] = {}
        #: The manager's DNS port while the fake serves, else None.
        self._manager_port: int | None = None
        self._generation = 0  # counts resets: an effect from before one is void

    # -- the fake's life cycle -----------------------------------------------------

    def grow(self) -> None:
        """Add the nodes past the first that the Swarm was created (or last reset) with."""
        for _ in range(self._node_count - 1):
            self.add_node()

    def reset(self, nodes: int | None, delays: NodeDelays | None) -> None:
        """Drop every node but the first, and every pending effect; ``grow()`` adds nodes back.

        Args:
            nodes: The node count until the next reset; None: the one at creation.
            delays: The delays until the next reset; None: those at creation.
        """
        count = self._initial_nodes if nodes is None else _check_node_count(nodes)
        chosen = _check_delays(delays) or self._initial_delays
        self._generation += 1
        self._scheduler.clear()
        self._isolation_timers.clear()
        self._ports.clear()
        for server in self._take_servers():
            server.stop()
        self._gossip = None
        self._node_count, self._delays = count, chosen

    def start(self, manager_port: int, *, again: bool) -> None:
        """Serve every other node's DNS (on the port it had before, if any); run due effects.

        Args:
            manager_port: Where the fake's own DNS, the manager's, listens.
            again: The fake was started before: an error names a port taken meanwhile.

        Raises:
            OSError: A node's port is taken; ``detach()`` takes the servers started.
        """
        self._manager_port = manager_port
        if self._gossip is not None:
            for view in list(self._gossip.views.values())[1:]:
                view.server = self._serve(view, again=again)
        if self._scheduler.pending:
            self._scheduler.start()

    def detach(self) -> list[DNSServer]:
        """The fake stops serving: every node's DNS server, for the caller to stop."""
        self._manager_port = None
        return self._take_servers()

    def pause(self) -> None:
        """Stop the thread that applies delayed effects, which stay pending; without the lock."""
        self._scheduler.stop()

    def forget_ports(self) -> None:
        """Let the next ``start()`` serve every node's DNS on a free port."""
        self._ports.clear()

    def responders(self) -> list[Responder]:
        """Every node's responder but the manager's."""
        views = () if self._gossip is None else list(self._gossip.views.values())[1:]
        return [view.responder for view in views]

    def errors(self) -> list[BaseException]:
        """What the delayed effects and the nodes' DNS servers raised (bugs only)."""
        errors = list(self._scheduler.errors)
        for view in () if self._gossip is None else self._gossip.views.values():
            if view.server is not None:
                errors.extend(view.server.internal_errors)
        return errors

    def publish(self) -> bool:
        """Each node takes in a change of the model: its own at once, the others' later.

        Returns:
            False while the Swarm has had one node only: the fake's own tables
            are then the only ones, and its to build.
        """
        if self._gossip is None:
            return False
        self._spread(self._gossip.publish(self._model()))
        self._refresh_zones()
        return True

    # -- nodes (``FakeSwarm`` documents each) ----------------------------------------

    def add_node(self) -> Node:
        """Add a node to the model, with its view and, while serving, its DNS server."""
        with self._change() as swarm:
            node = swarm.add_node()
            self._join(node, swarm)
        with self._lock:
            return self._node_value(node)

    @property
    def nodes(self) -> tuple[Node, ...]:
        """Every node, in the order they joined."""
        with self._lock:
            return tuple(self._node_value(node) for node in self._model().nodes)

    def node(self, node: Node | Task | DNSTask | str) -> Node:
        """A node by name or ID, as it is now; or the node a task runs on."""
        with self._lock:
            return self._node_value(self._node_id(node))

    def tasks_on(self, node: Node | str) -> tuple[Task, ...]:
        """Every task placed on a node, visible in DNS or not."""
        with self._lock:
            node_id = self._node_id(node)
            return tuple(
                task
                for service in self._model().services
                for task in service.tasks
                if task.node_id == node_id
            )

    @property
    def delays(self) -> NodeDelays:
        """The delays in force, until the next reset."""
        return self._delays

    def isolate(self, node: Node | str, *, paused: bool) -> Node:
        """Cut a node off, and set the timers of failure detection and of Down."""
        with self._lock:
            node_id, gossip, view = self._worker(node)
            if view.isolated:
                raise SwarmError(f"{self._node_name(node_id)} is already isolated")
            epoch = gossip.isolate(node_id, paused=paused)
            if view.server is not None and paused:
                view.server.responder = SILENT
            timers = [
                self.after(
                    self._delays.failure_detection,
                    functools.partial(gossip.detect, node_id, epoch),
                ),
                self.after(self._delays.down, functools.partial(self._mark_down, node_id, epoch)),
            ]
            self._isolation_timers[node_id] = [t for t in timers if t is not None]
            self._refresh_zones()
            return self._node_value(node_id)

    def rejoin(self, node: Node | str, *, stale: bool = False) -> Node:
        """Bring an isolated node back, and set the timer of its synchronisation."""
        if not isinstance(stale, bool):
            raise TypeError(f"stale is True or False, not {stale!r}")
        with self._lock:
            node_id, gossip, view = self._worker(node)
            if not view.isolated:
                raise SwarmError(f"{self._node_name(node_id)} is not isolated")
            for timer in self._isolation_timers.pop(node_id, ()):
                self._scheduler.cancel(timer)
            epoch = gossip.rejoin(node_id, stale=stale)
            if node_id in self._model().down:
                with self._change() as swarm:
                    swarm.node_up(node_id)
            self._refresh_zones()
            if view.server is not None:
                view.server.responder = view.responder
            self.after(self._delays.rejoin, functools.partial(gossip.sync, node_id, epoch))
            self._refresh_zones()
            return self._node_value(node_id)

    def republish(self, service_id: str) -> None:
        """A service's tasks were all replaced (``force_update()``): every node takes them in.

        Call it inside the change, before it is published.
        """
        if self._gossip is not None:
            self._gossip.republish(service_id)

    def settle(self, timeout: float) -> None:
        """Wait until no delayed effect is pending.

        Raises:
            TimeoutError: Effects are still pending after ``timeout`` seconds.
            RuntimeError: Called inside ``batch()``, which holds every effect back.
        """
        if self._held():
            raise RuntimeError("settle() inside batch() would wait for the batch itself")
        self._scheduler.settle(timeout)

    # -- inside --------------------------------------------------------------------

    def _join(self, node: str, swarm: Swarm) -> None:
        """Give a node that joined the model its view and, while serving, DNS server."""
        if self._gossip is None:
            self._gossip = Gossip()
            self._gossip.join(swarm.nodes[0], self._manager, swarm)
        responder = Responder(seed=self._seed, engine=self._manager.engine.version)
        responder.faults = self._manager.faults  # one fault table, one log
        responder.log = self._manager.log
        responder.upstream = self._manager.upstream
        self._spread(self._gossip.join(node, responder, swarm))
        if self._manager_port is not None:
            view = self._gossip.views[node]
            view.server = self._serve(view, again=False)

    def _serve(self, view: NodeView, *, again: bool) -> DNSServer:
        port = self._ports.get(view.node, 0)
        what = f"{self._node_name(view.node)}'s DNS server"
        with binding_again(what, self._host, port if again else 0):
            server = DNSServer(
                SILENT if view.paused else view.responder, host=self._host, port=port
            )
        server.start()
        self._ports[view.node] = server.port
        return server

    def _take_servers(self) -> list[DNSServer]:
        servers = []
        for view in () if self._gossip is None else self._gossip.views.values():
            if view.server is not None:
                servers.append(view.server)
                view.server = None
        return servers

    def _node_id(self, node: Node | Task | DNSTask | str) -> str:
        swarm = self._model()
        if isinstance(node, Node):
            key = node.id
        elif isinstance(node, Task):
            key = node.node_id
        elif isinstance(node, DNSTask):
            key = swarm.find_task(node)[1].node_id
        elif isinstance(node, str):
            key = node
        else:
            raise TypeError(
                f"a node is a Node, a task (the fake's or a swarmdns.Task), or a node's name"
                f" or ID; not {node!r}"
            )
        nodes = swarm.nodes
        if key in nodes:
            return key
        number = key.removeprefix("node-")
        if number.isdigit() and 1 <= int(number) <= len(nodes) and key != number:
            return nodes[int(number) - 1]
        raise SwarmError(f"no node {key!r} (nodes: node-1 to node-{len(nodes)}, or their IDs)")

    def _node_name(self, node_id: str) -> str:
        return f"node-{self._model().nodes.index(node_id) + 1}"

    def _node_value(self, node_id: str) -> Node:
        view = None if self._gossip is None else self._gossip.views[node_id]
        if node_id == self._model().nodes[0]:
            port = self._manager_port
        else:
            port = None if view is None or view.server is None else view.server.port
        return Node(
            name=self._node_name(node_id),
            id=node_id,
            host=self._host,
            port=port,
            isolated=view is not None and view.isolated,
            paused=view is not None and view.paused,
            down=node_id in self._model().down,
            stale=self._gossip is not None and self._gossip.stale(node_id),
            drained=node_id in self._model().drained,
        )

    def _worker(self, node: Node | str) -> tuple[str, Gossip, NodeView]:
        """A node other than the manager, with its view."""
        node_id = self._node_id(node)
        if self._gossip is None or node_id == self._model().nodes[0]:
            raise SwarmError(
                "node-1 is the manager, whose DNS is the fake's own: its loss is not"
                " modelled; isolate another node (FakeSwarm(nodes=3), add_node())"
            )
        return node_id, self._gossip, self._gossip.views[node_id]

    def _mark_down(self, node: str, epoch: int) -> None:
        """The manager's Down timeout for an isolated node has passed."""
        if self._gossip is not None and self._gossip.isolated_since(node, epoch):
            with self._change() as swarm:
                swarm.node_down(node)

    def _spread(self, deliveries: list[Delivery]) -> None:
        gossip = self._gossip
        if gossip is not None:
            for delivery in deliveries:
                self.after(self._delays.propagation, functools.partial(gossip.deliver, delivery))

    def after(self, delay: float, effect: Callable[[], None]) -> Timer | None:
        """Apply ``effect`` now (delay 0), or when due; returns what cancels it."""
        if delay <= 0:
            effect()
            return None
        generation = self._generation

        def apply() -> None:
            with self._lock:
                if generation == self._generation:
                    effect()
                    self._refresh_zones()

        timer = self._scheduler.later(delay, apply)
        if self._manager_port is not None:
            self._scheduler.start()
        return timer

    def _refresh_zones(self) -> None:
        """Give each node whose knowledge changed its new DNS tables."""
        gossip = self._gossip
        if gossip is None or self._held():
            return
        swarm = self._model()
        for node in gossip.take_dirty():
            gossip.views[node].responder.zone = gossip.zone(node, swarm)


def _check_node_count(nodes: int) -> int:
    if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= _MAX_NODES:
        raise ValueError(f"nodes must be a whole number from 1 to {_MAX_NODES}, not {nodes!r}")
    return nodes


def _check_delays(delays: NodeDelays | None) -> NodeDelays | None:
    if delays is not None and not isinstance(delays, NodeDelays):
        raise TypeError(f"delays must be a NodeDelays, not {delays!r}")
    return delays
