"""FakeSwarm: a model Swarm whose DNS answers like Docker's embedded server."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from ipaddress import IPv4Network

from .._model import Task as DNSTask
from ._base import ServedFake
from ._control import SwarmState
from ._engines import DEFAULT_ENGINE, EngineVersion, engine_profile
from ._loop import check_host
from ._nodes import Cluster, Node, NodeDelays
from ._operations import (
    Arrival,
    Evacuation,
    Operation,
    OperationDelays,
    OperationKind,
    Rollout,
    Stage,
    UpdateOrder,
    UpdateSettings,
)
from ._responder import DEFAULT_QUERY_LOG, Responder, Upstream
from ._serving import Serving
from ._swarm import (
    EndpointMode,
    Network,
    Service,
    ServiceMode,
    Swarm,
    SwarmError,
    Task,
    TaskKey,
    TaskState,
    check_networks,
    check_service_mode,
)
from ._zone import ZoneBuilder

_DEFAULT_NETWORK = "default"


class FakeSwarm(ServedFake):
    """A fake Swarm with a real DNS server that answers like Docker's engine.

    The server listens on UDP and TCP on one port of ``host`` (chosen by the
    operating system unless ``port`` is given), and keeps it across
    ``stop()`` and ``start()``, so that an address handed out stays true.
    Create services, scale them, kill and replace tasks, and the answers
    change at once, exactly as the engine's would: ``<service>`` gives the
    virtual IP (every task in dnsrr mode), ``tasks.<service>`` every visible
    task, names may end with ``.<network>``, and a service without tasks
    vanishes from DNS.

    Addresses come from per-network subnets like the engine's (10.0.1.0/24,
    10.0.2.0/24, ...); nothing is ever sent to them.

    Where Docker Engine versions answer differently (truncation, failures,
    a task's resolv.conf), the fake answers like ``engine``: ``"20.10"``,
    ``"26.1"`` or ``"28.5"`` (the default).

    Use it as a context manager, or call ``start()`` and ``stop()``::

        with FakeSwarm() as swarm:
            web = swarm.create_service("web", replicas=3)
            print(swarm.nameserver, web.vip, web.task_ips)

    Another process can drive a running fake through ``serve_control()``
    and ``FakeControl``.

    Args:
        host: The loopback address to serve on.
        port: The port for both UDP and TCP; 0 lets the system choose.
        seed: Makes the answers' order (and generated IDs) repeatable.
        upstream: What names the Swarm does not own get (see ``Upstream``).
        engine: The Docker Engine version to answer like (an ``EngineVersion``,
            one of ``ENGINES``).
        nodes: How many nodes the Swarm has, each with a DNS server of its own
            (see ``nodes``); the fake's own server is the first node's.
        delays: How long changes take to reach the other nodes, and how a
            node's loss plays out (see ``NodeDelays``); the measured ones by default.
        query_log: How many of the newest messages ``queries`` keeps (10,000
            by default, about 1.5 MB; 0 keeps none). Older ones fall off, but
            ``wait_for_queries()`` and ``count_queries()`` count every message.

    Raises:
        ValueError: ``host`` is not an IP address, ``engine`` is not a
            version the fake models, or ``query_log`` is negative.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        upstream: Upstream = Upstream.NXDOMAIN,
        engine: EngineVersion = DEFAULT_ENGINE,
        nodes: int = 1,
        delays: NodeDelays | None = None,
        query_log: int = DEFAULT_QUERY_LOG,
    ) -> None:
        self._initial_engine = engine_profile(engine).version
        host = check_host(host)
        self._seed = seed
        self._lock = threading.RLock()
        self._batches = 0
        self._swarm = Swarm(seed=seed)
        self._zones = ZoneBuilder()
        self._responder = Responder(seed=seed, engine=engine, query_log=query_log)
        #: The nodes: node-1's DNS is this fake's own, the others' the cluster's.
        self._cluster = Cluster(
            self._responder,
            lock=self._lock,
            model=lambda: self._swarm,
            change=self._changing,
            held=lambda: self._batches > 0,
            host=host,
            seed=seed,
            nodes=nodes,
            delays=delays,
        )
        self._cluster.grow()
        self._serving = Serving(
            self._responder, self._cluster, self, lock=self._lock, host=host, port=port
        )
        self._initial_upstream = upstream
        self.upstream = upstream
        self._stage = Stage(self._changing, self._cluster.after)
        #: Operations still running, which a reset cancels.
        self._operations: list[Operation] = []

    def state(self) -> SwarmState:
        """A snapshot of the whole Swarm: services (with tasks and VIPs), networks, nodes.

        What ``FakeControl.state()`` returns to another process.
        """
        with self._lock:
            return SwarmState(
                services=self._swarm.services,
                networks=self._swarm.networks,
                nodes=self.nodes,
                engine=self.engine,
                nameserver=None if self._serving.server is None else self.nameserver,
            )

    def __repr__(self) -> str:
        where = self.nameserver if self._serving.server is not None else "stopped"
        return f"<FakeSwarm {where}, engine {self.engine}: {len(self._swarm.services)} services>"

    def reset(self, *, nodes: int | None = None, delays: NodeDelays | None = None) -> None:
        """Forget every service, network, node, fault and logged query.

        The Swarm has the nodes and delays the fake was created with again
        (none isolated), unless ``nodes`` or ``delays`` say otherwise until the
        next reset; pending delayed effects are dropped.

        The upstream and the engine go back to those the fake was created
        with. The server keeps running on the same port; what clients sent
        before and it has not read yet is dropped, so that it never reaches
        the log after the reset. The ``swarm_dns`` fixture calls this between
        tests.
        """
        self._serving.drop_pending()
        with self._lock:
            for operation in self._operations:
                operation.cancel()
            self._operations.clear()
            self._cluster.reset(nodes, delays)
            with self._changing():
                self._swarm = Swarm(seed=self._seed)
                self._zones = ZoneBuilder()
            self._answer_as_created()  # the manager's alone: no other node yet
            self._cluster.grow()

    def _responders(self) -> Sequence[Responder]:
        return (self._responder, *self._cluster.responders())

    # -- the Swarm ---------------------------------------------------------------

    def create_network(self, name: str, *, subnet: str | None = None) -> Network:
        """Create an overlay network; its subnet is the next free /24 unless given.

        Services create the networks they name, so this is needed only to
        choose a subnet, such as a larger one for hundreds of tasks.
        """
        with self._changing() as swarm:
            return swarm.create_network(name, subnet=subnet)

    def remove_network(self, name: str) -> None:
        """Remove a network that no service uses."""
        with self._changing() as swarm:
            swarm.remove_network(name)

    @property
    def networks(self) -> tuple[Network, ...]:
        """Every network, in order of creation."""
        with self._lock:
            return self._swarm.networks

    @property
    def engine_networks(self) -> tuple[IPv4Network, ...]:
        """The networks every address the fake hands to tasks and VIPs lies in.

        The engine's default address pool, 10.0.0.0/8, where networks get
        their subnets, followed by each network's subnet chosen outside it
        (``create_network(subnet=...)``), in order of creation. This is what
        ``SWARMDNS_PROVENANCE`` takes to treat the fake as the engine (the
        ``swarm_dns`` fixture sets it so at the start of each test).
        """
        with self._lock:
            return self._swarm.engine_networks

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
        placement: Sequence[Node | str] | None = None,
    ) -> Service:
        """Create a service and start its tasks.

        Args:
            name: The service's name (``<stack>_<name>`` when ``stack`` is given).
            replicas: How many tasks to run (ignored for a global service).
            network: The network, or networks, to attach the service to;
                created when missing. Defaults to ``"default"``, or to
                ``<stack>_default`` in a stack.
            endpoint_mode: ``"vip"`` (``<name>`` gives one virtual IP) or
                ``"dnsrr"`` (``<name>`` gives every task's address); see
                ``EndpointMode``.
            mode: ``"replicated"``, or ``"global"`` for one task per node; see
                ``ServiceMode``.
            aliases: Extra names for the service on every network.
            healthcheck: Tasks start unhealthy and stay out of DNS until
                ``mark_healthy()``.
            stack: Deploy as part of this stack: the service is named
                ``<stack>_<name>`` and also answers to ``<name>``.
            placement: The nodes (names such as ``"node-3"``, IDs or ``Node``
                values) its tasks may run on, as a constraint such as
                ``node.hostname==node-3`` does; any node by default. A replica
                that no node may run waits, out of DNS, until one may
                (``activate()``).

        Returns:
            A snapshot of the new service, with ``.vip`` and ``.task_ips``.

        Raises:
            SwarmError: The engine would refuse this (bad name, duplicate, ...),
                or a network has too few free addresses for the tasks (checked
                before any starts), or ``replicas`` is over ``MAX_REPLICAS``
                (10,000).
        """
        if isinstance(aliases, str):
            raise TypeError(f"aliases takes a sequence of names, not one string: [{aliases!r}]")
        if isinstance(placement, str):
            raise TypeError(
                f"placement takes a sequence of nodes, not one string: [{placement!r}]"
            )
        check_service_mode(mode)
        if network is None:
            networks: Sequence[str] = (_DEFAULT_NETWORK if stack is None else f"{stack}_default",)
        elif isinstance(network, str):
            networks = (network,)
        else:
            networks = tuple(network)
        with self._changing() as swarm:
            return swarm.create_service(
                name,
                replicas if mode == "replicated" else None,
                networks=networks,
                endpoint_mode=endpoint_mode,
                aliases=aliases,
                healthcheck=healthcheck,
                stack=stack,
                placement=[self._cluster.node(node).id for node in placement or ()],
            )

    def service(self, name: str) -> Service:
        """The current snapshot of a service."""
        with self._lock:
            return self._swarm.service(name)

    @property
    def services(self) -> tuple[Service, ...]:
        """Snapshots of every service, in order of creation."""
        with self._lock:
            return self._swarm.services

    def scale(self, name: str, replicas: int) -> Service:
        """Set a replicated service's task count; new tasks take new addresses.

        Raises:
            SwarmError: No such service, a global one, or more replicas than
                its networks have free addresses (checked before any starts)
                or than ``MAX_REPLICAS`` (10,000); nothing changes.
        """
        with self._changing() as swarm:
            return swarm.scale(name, replicas)

    def remove_service(self, name: str) -> None:
        """Remove a service: every one of its names vanishes from DNS."""
        with self._changing() as swarm:
            swarm.remove_service(name)

    def remove_stack(self, stack: str) -> None:
        """Remove every service of a stack."""
        with self._changing() as swarm:
            swarm.remove_stack(stack)

    def task(self, task: TaskKey) -> Task:
        """The fake's record of a task, found as ``kill_task()`` finds it.

        From what a lookup returned (a ``swarmdns.Task``) or an address, this
        gives the task's ID, node, container and every network's address.

        Raises:
            SwarmError: No task matches (or, for an ID prefix, several do).
        """
        with self._lock:
            return self._swarm.find_task(task)[1]

    def kill_task(self, task: TaskKey) -> Service:
        """Kill one task without replacing it.

        The task may be given as the fake's ``Task``, as a ``swarmdns.Task``
        (what a lookup returned; matched by its ``ip``), as its address (an
        ``IPv4Address`` or a dotted quad, on any of its networks), or by its
        ID, name or container ID. ``replace_task()``, ``mark_healthy()`` and
        ``mark_unhealthy()`` take the same.

        Its slot stays empty until ``reschedule()``, like the engine's restart
        delay; use ``replace_task()`` to do both at once.

        Raises:
            SwarmError: No task matches (the message says why: killed or
                replaced meanwhile, or the address is a service's VIP).
        """
        with self._changing() as swarm:
            return swarm.kill_task(task)

    def replace_task(self, task: TaskKey) -> Task:
        """Kill one task and start its replacement in the same slot (new ID, new address)."""
        with self._changing() as swarm:
            _, replacement = swarm.replace_task(task)
        return replacement

    def force_update(self, name: str) -> Service:
        """Replace every task of a service, as ``docker service update --force`` does.

        Each replacement keeps its slot (or, for a global service, its node)
        and node, with a new ID and new addresses; empty slots are filled too.
        DNS shows the new tasks, on every node: this is also what brings a
        service back on the nodes that left out a node's tasks after
        ``rejoin(node, stale=True)``.

        Raises:
            SwarmError: There is no such service, or its networks have too
                few addresses left for the new tasks (then nothing changes).
        """
        with self._changing() as swarm:
            service = swarm.force_update(name)
            self._cluster.republish(service.id)
            return service

    # -- operations over time ------------------------------------------------------

    def update_service(
        self,
        name: str,
        *,
        order: UpdateOrder = "stop-first",
        parallelism: int = 1,
        delay: float = 0.0,
        delays: OperationDelays | None = None,
    ) -> Operation:
        """Replace every task of a service, batch by batch, as ``docker service update --force``.

        Runs in the background, step by step on the fake's clock (see
        ``OperationDelays``; the measured delays by default), while the fake
        serves: stop-first, each old task leaves DNS, its container exits,
        and its replacement starts and enters DNS (once its health check
        passes, for a service with one); start-first, the replacement enters
        DNS before the old task leaves. Every replacement keeps its slot and
        node, with a new ID and new addresses; the VIP stays. With
        ``OperationDelays.INSTANT`` it is over when the call returns.

        Args:
            name: The service.
            order: ``"stop-first"`` or ``"start-first"`` (``--update-order``).
            parallelism: Tasks per batch (``--update-parallelism``); 0: all at once.
            delay: Seconds between batches (``--update-delay``).
            delays: How long each step takes.

        Returns:
            The operation: ``wait()`` for its end, read its ``timeline``.

        Raises:
            SwarmError: No such service, or an update or rollback of it is under way.
            ValueError: A setting is out of range.
        """
        settings = UpdateSettings(order=order, parallelism=parallelism, delay=delay)
        return self._roll_out("update", name, settings, delays)

    def rollback(
        self,
        name: str,
        *,
        order: UpdateOrder = "stop-first",
        parallelism: int = 1,
        delay: float = 0.0,
        delays: OperationDelays | None = None,
    ) -> Operation:
        """Undo a service's last update, as ``docker service rollback`` does: every task replaced.

        It proceeds as an update does, with the rollback settings, whose
        defaults are Docker's (``--rollback-order`` stop-first, parallelism 1),
        not those of the update it undoes.

        Raises:
            SwarmError: No such service, it was never updated (the engine has
                no previous spec), or an update or rollback of it is under way.
        """
        settings = UpdateSettings(order=order, parallelism=parallelism, delay=delay)
        return self._roll_out("rollback", name, settings, delays)

    def _roll_out(
        self,
        kind: OperationKind,
        name: str,
        settings: UpdateSettings,
        delays: OperationDelays | None,
    ) -> Operation:
        chosen = _check_operation_delays(delays)
        with self._lock:
            service = self._swarm.service(name)
            if kind == "rollback" and name not in self._swarm.updated:
                raise SwarmError(
                    f"service {name!r} has no previous spec to roll back to: it was never"
                    " updated (update_service() first)"
                )
            busy = next(
                (
                    o
                    for o in self._operations
                    if o.target == name and o.kind in ("update", "rollback") and not o.done
                ),
                None,
            )
            if busy is not None:
                raise SwarmError(
                    f"service {name!r} is being changed by {busy!r}; wait() for it first"
                )
            self._swarm.updated.add(name)
            operation = self._operation(
                kind, name, settings, chosen, {name: len(service.task_ips)}
            )
            Rollout(self._stage, operation, settings, service.tasks).begin()
            return operation

    def drain(self, node: Node | str, *, delays: OperationDelays | None = None) -> Operation:
        """Drain a node, as ``docker node update --availability drain`` does.

        Every task on it stops (out of DNS after ``delays.stop``); each
        replicated one starts again on another node that its placement allows,
        with a new ID and new addresses, once its container has exited. A
        replica that no other node may run waits out of DNS, and a service left
        with no task vanishes from DNS (NXDOMAIN). Nothing new starts on the node.

        Raises:
            SwarmError: No such node, or it is drained already.
        """
        chosen = _check_operation_delays(delays)
        with self._lock:
            found = self._cluster.node(node)
            listed = {s.name: len(s.task_ips) for s in self._swarm.services}
            with self._changing() as swarm:
                leaving = swarm.drain(found.id)
            operation = self._operation("drain", found.name, None, chosen, listed)
            Evacuation(self._stage, operation, leaving).begin()
            return operation

    def activate(self, node: Node | str, *, delays: OperationDelays | None = None) -> Operation:
        """Make a drained node active again (``--availability active``).

        Nothing moves back to it: only the replicas that waited for a node it
        may run, and global services' tasks, start there.

        Raises:
            SwarmError: No such node, or it is not drained.
        """
        chosen = _check_operation_delays(delays)
        with self._lock:
            found = self._cluster.node(node)
            listed = {s.name: len(s.task_ips) for s in self._swarm.services}
            with self._changing() as swarm:
                waiting = swarm.activate(found.id)
            operation = self._operation("activate", found.name, None, chosen, listed)
            Arrival(self._stage, operation, waiting, found.id).begin()
            return operation

    def _operation(
        self,
        kind: OperationKind,
        target: str,
        settings: UpdateSettings | None,
        delays: OperationDelays,
        listed: dict[str, int],
    ) -> Operation:
        """A new operation, kept until it ends so that a reset can cancel it."""
        self._operations = [o for o in self._operations if not o.done]
        operation = Operation(
            kind=kind, target=target, settings=settings, delays=delays, listed=listed
        )
        self._operations.append(operation)
        return operation

    def reschedule(self, name: str) -> tuple[Task, ...]:
        """Start tasks in every empty slot of a service (or node, for global)."""
        with self._changing() as swarm:
            return swarm.reschedule(name)

    def mark_healthy(self, task: TaskKey) -> Task:
        """Report a task of a service with a healthcheck healthy: DNS lists it."""
        with self._changing() as swarm:
            return swarm.set_state(task, TaskState.RUNNING)

    def mark_unhealthy(self, task: TaskKey) -> Task:
        """Report a task unhealthy: DNS stops listing it."""
        with self._changing() as swarm:
            return swarm.set_state(task, TaskState.UNHEALTHY)

    @property
    def client_networks(self) -> tuple[str, ...] | None:
        """The networks the asking container is attached to (None: every network).

        The engine only knows names on the asking container's own networks.
        """
        with self._lock:
            return self._swarm.client_networks

    @client_networks.setter
    def client_networks(self, networks: Sequence[str] | None) -> None:
        with self._changing() as swarm:
            swarm.client_networks = check_networks(
                networks,
                (n.name for n in swarm.networks),
                "; create the services or networks first",
            )

    @contextlib.contextmanager
    def inside(self, task: TaskKey) -> Iterator[Task]:
        """Make swarmdns, in this process, believe it runs inside ``task``, for the block.

        Sets ``SWARMDNS_OWN_ADDRESSES`` to the task's addresses (every
        network's) and ``SWARMDNS_RUNTIME`` to ``swarm``, so that
        ``whoami()`` and ``exclude_self`` take the task as this container;
        and, as the engine does for a task, DNS answers only names on the
        task's networks (``client_networks``). All three are put back as they
        were afterwards. Only this process's environment changes: pass it on to
        a child process to make that one the task.

        The task is found as ``kill_task()`` finds it.

        Yields:
            The fake's record of the task.

        Raises:
            SwarmError: No task matches.
        """
        found = self.task(task)
        with self._inside(found.addresses, "swarm"):
            yield found

    @contextlib.contextmanager
    def _changing(self) -> Iterator[Swarm]:
        """Lock the model for one change, then publish it unless a batch defers that.

        A change the model refuses publishes nothing: the model is as it was.
        """
        with self._lock:
            yield self._swarm
            self._publish()

    def _publish(self) -> None:
        """Hand the server the tables for the Swarm as it is now."""
        if not self._batches and not self._cluster.publish():
            self._responder.zone = self._zones.build(self._swarm)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Make every change inside the block visible in DNS at once, at its end.

        For many changes that the engine would show together, or simply to
        set up a large Swarm quickly (DNS is rebuilt once, not per change).
        Other threads see DNS as it was until the block ends.
        """
        with self._lock:
            self._batches += 1
            try:
                yield
            finally:
                self._batches -= 1
                self._publish()

    # -- several nodes -------------------------------------------------------------

    def add_node(self) -> Node:
        """Add a node, with a DNS server of its own; every global service starts a task on it.

        The new node's tasks reach the other nodes' DNS, and theirs its DNS,
        after ``delays.propagation``.
        """
        return self._cluster.add_node()

    @property
    def nodes(self) -> tuple[Node, ...]:
        """Every node, in the order they joined.

        The first, ``node-1``, is the manager, and its DNS server is the fake's
        own (``host``, ``port``, ``nameserver``). Each other node's embedded DNS
        listens on a port of its own, on the same host, and answers from what
        that node knows: its own tasks at once, other nodes' after
        ``delays.propagation``.
        """
        return self._cluster.nodes

    def node(self, node: Node | Task | DNSTask | str) -> Node:
        """A node by name (``"node-2"``) or ID, as it is now; or the node a task runs on.

        The task may be the fake's ``Task`` or a ``swarmdns.Task`` a lookup returned.

        Raises:
            SwarmError: There is no such node.
        """
        return self._cluster.node(node)

    def tasks_on(self, node: Node | str) -> tuple[Task, ...]:
        """Every task placed on a node (by name, ID or value), visible in DNS or not."""
        return self._cluster.tasks_on(node)

    @property
    def delays(self) -> NodeDelays:
        """How long changes take to reach other nodes, and how a node's loss plays out."""
        return self._cluster.delays

    def isolate(self, node: Node | str, *, paused: bool = True) -> Node:
        """Cut a node off from the others, as a paused engine or a lost link does.

        At once, a paused node's own DNS stops answering: queries to it time
        out. A node whose link was cut (``paused=False``) goes on answering
        from what it knew when it was cut off, every node's tasks included,
        as the engine does. After ``delays.failure_detection``, the other
        nodes' DNS drops its tasks, and a cut-off node's DNS drops theirs,
        keeping its own. After ``delays.down`` (if still isolated), the
        manager marks it Down and starts its replicated tasks on the other
        nodes, with new IDs and new addresses; tasks of global services stay
        on it. With zero delays, all of this happens before the call returns.

        Raises:
            SwarmError: The node is unknown, already isolated, or the first
                node (the manager, whose loss is not modelled).
        """
        return self._cluster.isolate(node, paused=paused)

    def rejoin(self, node: Node | str, *, stale: bool = False) -> Node:
        """Bring an isolated node back.

        Its own DNS answers again at once. After ``delays.rejoin``, the other
        nodes' DNS shows its tasks again and its DNS theirs. If the manager had
        marked it Down, it comes back without the replicated tasks started
        elsewhere meanwhile, and global services start their tasks on it if
        missing.

        With ``stale=True``, it comes back as on Docker 29.x (moby/moby#53141,
        fixed after 29.7.2, in no release yet): if the other nodes had given up
        on it (``delays.failure_detection`` passed), they never take its tasks
        back. Their DNS answers NXDOMAIN for the services whose tasks all run
        on it, and lists only the other tasks of the rest, for as long as the
        Swarm runs (hours, on the engine), until ``force_update()`` replaces a
        service's tasks. The returning node's own DNS sees every node's tasks.
        ``Node.stale`` tells which nodes came back so.

        Raises:
            SwarmError: The node is unknown or not isolated.
        """
        return self._cluster.rejoin(node, stale=stale)

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until no delayed effect of the nodes is pending.

        Propagation to other nodes, failure detection, a node marked Down, a
        returning node's synchronisation: each is applied when due, by one
        thread of the fake's (while it is stopped, by this call). With zero
        delays nothing is ever pending.

        Raises:
            TimeoutError: Effects are still pending after ``timeout`` seconds.
            RuntimeError: Called inside ``batch()``, which holds every effect back.
        """
        self._cluster.settle(timeout)


def _check_operation_delays(delays: OperationDelays | None) -> OperationDelays:
    if delays is None:
        return OperationDelays()
    if not isinstance(delays, OperationDelays):
        raise TypeError(f"delays must be an OperationDelays, not {delays!r}")
    return delays
