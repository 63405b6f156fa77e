"""FakeSwarm: a model Swarm whose DNS answers like Docker's embedded server."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TypeVar

from ._responder import Injected, QueryRecord, Responder, Upstream
from ._server import DNSServer
from ._swarm import Network, Service, Swarm, SwarmError, Task, TaskState
from ._zone import ZoneBuilder

_DEFAULT_NETWORK = "default"
_Fake = TypeVar("_Fake", bound="FakeSwarm")


class FakeSwarm:
    """A fake Swarm with a real DNS server that answers like Docker's engine.

    The server listens on UDP and TCP on one port of ``host`` (chosen by the
    operating system unless ``port`` is given). Create services, scale them,
    kill and replace tasks, and the answers change at once, exactly as the
    engine's would: ``<service>`` gives the virtual IP (every task in dnsrr
    mode), ``tasks.<service>`` every visible task, names may end with
    ``.<network>``, and a service without tasks vanishes from DNS.

    Addresses come from per-network subnets like the engine's (10.0.1.0/24,
    10.0.2.0/24, ...); nothing is ever sent to them.

    Use it as a context manager, or call ``start()`` and ``stop()``::

        with FakeSwarm() as swarm:
            web = swarm.create_service("web", replicas=3)
            print(swarm.nameserver, web.vip, web.task_ips)

    Args:
        host: The loopback address to serve on.
        port: The port for both UDP and TCP; 0 lets the system choose.
        seed: Makes the answers' order (and generated IDs) repeatable.
        upstream: What names the Swarm does not own get (see ``Upstream``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        upstream: Upstream = Upstream.NXDOMAIN,
    ) -> None:
        self._host = host
        self._port = port
        self._seed = seed
        self._lock = threading.RLock()
        self._batches = 0
        self._swarm = Swarm(seed=seed)
        self._zones = ZoneBuilder()
        self._responder = Responder(seed=seed)
        self._server: DNSServer | None = None
        self._initial_upstream = upstream
        self.upstream = upstream

    # -- life cycle ------------------------------------------------------------

    def start(self: _Fake) -> _Fake:
        """Bind the sockets and start answering; returns the fake itself."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError(
                    f"the fake Swarm DNS server is already running at {self.nameserver}"
                )
            server = DNSServer(self._responder, host=self._host, port=self._port)
            server.start()
            self._server = server
        return self

    def stop(self) -> None:
        """Stop answering and release the sockets and the thread; idempotent."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self: _Fake) -> _Fake:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.nameserver if self._server is not None else "stopped"
        return f"<FakeSwarm {where}: {len(self._swarm.services)} services>"

    def reset(self) -> None:
        """Forget every service, network, node, fault and logged query.

        The server keeps running on the same port; the ``swarm_dns`` fixture
        calls this between tests.
        """
        with self._lock:
            with self._changing():
                self._swarm = Swarm(seed=self._seed)
                self._zones = ZoneBuilder()
            self._responder.upstream = self._initial_upstream
            self._responder.seed(self._seed)
            self._responder.faults.clear()
            self._responder.log.clear()

    # -- where it listens ------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the server is answering."""
        server = self._server
        return server is not None and server.running

    @property
    def _running(self) -> DNSServer:
        server = self._server
        if server is None:
            raise RuntimeError("the fake Swarm DNS server is not running: call start() first")
        return server

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._running.host

    @property
    def port(self) -> int:
        """The port the server listens on, for both UDP and TCP."""
        return self._running.port

    @property
    def nameserver(self) -> str:
        """``host:port`` (``[host]:port`` for IPv6), as ``SWARMDNS_NAMESERVER`` takes it."""
        server = self._running
        host = f"[{server.host}]" if ":" in server.host else server.host
        return f"{host}:{server.port}"

    @property
    def internal_errors(self) -> tuple[BaseException, ...]:
        """Exceptions the server caught in its own code (always empty, barring bugs)."""
        server = self._server
        return () if server is None else tuple(server.internal_errors)

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

    def create_service(
        self,
        name: str,
        replicas: int = 1,
        *,
        network: str | Sequence[str] | None = None,
        endpoint_mode: str = "vip",
        mode: str = "replicated",
        aliases: Sequence[str] = (),
        healthcheck: bool = False,
        stack: str | None = None,
    ) -> Service:
        """Create a service and start its tasks.

        Args:
            name: The service's name (``<stack>_<name>`` when ``stack`` is given).
            replicas: How many tasks to run (ignored for a global service).
            network: The network, or networks, to attach the service to;
                created when missing. Defaults to ``"default"``, or to
                ``<stack>_default`` in a stack.
            endpoint_mode: ``"vip"`` (``<name>`` gives one virtual IP) or
                ``"dnsrr"`` (``<name>`` gives every task's address).
            mode: ``"replicated"``, or ``"global"`` for one task per node.
            aliases: Extra names for the service on every network.
            healthcheck: Tasks start unhealthy and stay out of DNS until
                ``mark_healthy()``.
            stack: Deploy as part of this stack: the service is named
                ``<stack>_<name>`` and also answers to ``<name>``.

        Returns:
            A snapshot of the new service, with ``.vip`` and ``.task_ips``.

        Raises:
            SwarmError: The engine would refuse this (bad name, duplicate, ...).
        """
        if isinstance(aliases, str):
            raise TypeError(f"aliases takes a sequence of names, not one string: [{aliases!r}]")
        if mode not in ("replicated", "global"):
            raise SwarmError(f"mode must be 'replicated' or 'global', not {mode!r}")
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
        """Set a replicated service's task count; new tasks take new addresses."""
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

    def kill_task(self, task: Task | str) -> Service:
        """Kill one task (by value, ID, name or container ID) without replacing it.

        Its slot stays empty until ``reschedule()``, like the engine's restart
        delay; use ``replace_task()`` to do both at once.
        """
        with self._changing() as swarm:
            return swarm.kill_task(task)

    def replace_task(self, task: Task | str) -> Task:
        """Kill one task and start its replacement in the same slot (new ID, new address)."""
        with self._changing() as swarm:
            _, replacement = swarm.replace_task(task)
        return replacement

    def reschedule(self, name: str) -> tuple[Task, ...]:
        """Start tasks in every empty slot of a service (or node, for global)."""
        with self._changing() as swarm:
            return swarm.reschedule(name)

    def mark_healthy(self, task: Task | str) -> Task:
        """Report a task of a service with a healthcheck healthy: DNS lists it."""
        with self._changing() as swarm:
            return swarm.set_state(task, TaskState.RUNNING)

    def mark_unhealthy(self, task: Task | str) -> Task:
        """Report a task unhealthy: DNS stops listing it."""
        with self._changing() as swarm:
            return swarm.set_state(task, TaskState.UNHEALTHY)

    def add_node(self) -> str:
        """Add a node to the Swarm; every global service starts a task on it."""
        with self._changing() as swarm:
            return swarm.add_node()

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node IDs, starting with the one the fake starts with."""
        with self._lock:
            return tuple(self._swarm.nodes)

    @property
    def client_networks(self) -> tuple[str, ...] | None:
        """The networks the asking container is attached to (None: every network).

        The engine only knows names on the asking container's own networks.
        """
        with self._lock:
            return self._swarm.client_networks

    @client_networks.setter
    def client_networks(self, networks: Sequence[str] | None) -> None:
        if isinstance(networks, str):
            raise TypeError("client_networks takes a sequence of network names, not one string")
        with self._changing() as swarm:
            if networks is not None:
                known = {n.name for n in swarm.networks}
                unknown = [n for n in networks if n not in known]
                if unknown:
                    raise SwarmError(
                        f"no network named {', '.join(map(repr, unknown))}"
                        f" (networks: {', '.join(sorted(known)) or 'none'});"
                        " create the services or networks first"
                    )
            swarm.client_networks = None if networks is None else tuple(networks)

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
        if not self._batches:
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

    # -- DNS behaviour and faults --------------------------------------------------

    @property
    def upstream(self) -> Upstream:
        """What names the Swarm does not own, and empty services, get."""
        return self._responder.upstream

    @upstream.setter
    def upstream(self, upstream: Upstream) -> None:
        if not isinstance(upstream, Upstream):
            raise TypeError(f"upstream must be an Upstream member, not {upstream!r}")
        self._responder.upstream = upstream

    def seed(self, seed: int | None) -> None:
        """Make the order of answers repeatable from now on (None: random again)."""
        self._responder.seed(seed)

    def inject(
        self,
        fault: Injected | Sequence[Injected],
        *,
        name: str | None = None,
        qtype: str | None = None,
    ) -> None:
        """Make the server misbehave for ``name`` (any case), or for every name.

        With ``qtype`` (``"A"``, ``"AAAA"``, ``"PTR"``, ...), only queries of
        that type misbehave, so that a one-time fault for A is not used up by
        the AAAA query a C library sends alongside it.

        A single ``Fault`` or ``Delay`` lasts until ``clear_faults()``. A
        sequence is used up one query at a time, after which the name is
        answered as usual again: ``inject([Fault.SERVFAIL] * 2, name="tasks.web")``
        fails twice, then answers. A name's own faults come before faults for
        every name.
        """
        self._responder.faults.inject(fault, name, qtype)

    def clear_faults(self, name: str | None = None) -> None:
        """Stop misbehaving for ``name``, or for every name when None."""
        self._responder.faults.clear(name)

    # -- what the server received --------------------------------------------------

    @property
    def queries(self) -> tuple[QueryRecord, ...]:
        """Every message received since the start (or the last reset), oldest first."""
        return self._responder.log.snapshot()

    def clear_queries(self) -> None:
        """Forget the messages received so far."""
        self._responder.log.clear()

    def wait_for_queries(
        self, count: int, *, name: str | None = None, timeout: float = 5.0
    ) -> tuple[QueryRecord, ...]:
        """Block until ``count`` messages (about ``name``, if given) have arrived.

        Returns:
            Those messages, oldest first.

        Raises:
            TimeoutError: Fewer arrived within ``timeout`` seconds.
        """
        return self._responder.log.wait(count, name=name, timeout=timeout)
