"""FakeCompose: a model Compose project whose DNS answers like Docker's embedded server."""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from ipaddress import IPv4Network

from ._base import ServedFake
from ._compose import (
    DEFAULT_NETWORK,
    ComposeService,
    Container,
    ContainerKey,
    ContainerState,
    Project,
)
from ._compose_control import COMPOSE_OPERATIONS, ComposeState
from ._engines import DEFAULT_ENGINE, EngineVersion, engine_profile
from ._loop import check_host
from ._nodes import Scheduler, Timer
from ._responder import DEFAULT_QUERY_LOG, Responder, Upstream
from ._server import DNSServer
from ._serving import Serving
from ._swarm import Network, SwarmError, check_networks
from ._zone import compose_zone


class _Timers:
    """A Compose project's delayed effects (stop grace periods), due on the real clock.

    While the fake serves, one thread applies each when due; while it is
    stopped they wait, and ``settle()`` applies them in the caller's thread.
    A ``reset()`` voids them all.
    """

    def __init__(self, lock: threading.RLock, publish: Callable[[], None]) -> None:
        self._lock = lock
        self._publish = publish
        self._scheduler = Scheduler("swarmdns-fake-compose")
        self._serving = False
        self._generation = 0

    def start(self, manager_port: int, *, again: bool) -> None:
        self._serving = True
        if self._scheduler.pending:
            self._scheduler.start()

    def detach(self) -> list[DNSServer]:
        self._serving = False
        return []

    def pause(self) -> None:
        self._scheduler.stop()

    def forget_ports(self) -> None:
        """No port of its own to forget."""

    def errors(self) -> list[BaseException]:
        return list(self._scheduler.errors)

    def later(self, delay: float, effect: Callable[[], None]) -> Timer:
        """Apply ``effect`` under the lock in ``delay`` seconds, then publish; unless reset."""
        generation = self._generation

        def apply() -> None:
            with self._lock:
                if generation == self._generation:
                    effect()
                    self._publish()

        timer = self._scheduler.later(delay, apply)
        if self._serving:
            self._scheduler.start()
        return timer

    def cancel(self, timer: Timer) -> None:
        self._scheduler.cancel(timer)

    def reset(self) -> None:
        self._generation += 1
        self._scheduler.clear()

    def settle(self, timeout: float) -> None:
        self._scheduler.settle(timeout)


def _check_grace(grace: float) -> float:
    if isinstance(grace, bool) or not isinstance(grace, int | float):
        raise TypeError(f"grace is a number of seconds, not {grace!r}")
    if not (math.isfinite(grace) and 0 <= grace <= 3600):
        raise ValueError(f"grace must be between 0 and 3600 seconds, not {grace!r}")
    return float(grace)


class FakeCompose(ServedFake):
    """A fake Docker Compose project with a real DNS server that answers like Docker's engine.

    The sibling of ``FakeSwarm``, served the same way (``start()``, ``stop()``,
    ``nameserver``, ``serve_control()``, ``inject()``, ``queries``, ``engine``,
    ``upstream``...), for code that runs under ``docker compose``. Measured
    on the engine: ``<service>`` and ``<service>.<network>`` answer every
    running container of the service (TTL 600, shuffled), its container name
    (``proj-web-1``), short ID and aliases resolve; there is no
    ``tasks.<service>`` (the engine forwards it), no virtual IP, and health
    is ignored; a container's PTR record is ``proj-web-1.proj_default.``.
    A service scaled to 0 has no name: it is forwarded too.

    Networks are the project's: ``default`` is ``<project>_default``, any
    other name ``<project>_<name>``; each gets a /16 from the engine's local
    pools (172.18.0.0/16, 172.19.0.0/16, ...). Nothing is sent to them.

    ``stop_container()`` keeps a container in DNS for its grace period, as
    the engine does, on the real clock: ``settle()`` waits for it to end.
    (``start()`` and ``stop()`` start and stop the fake's server, as
    ``FakeSwarm``'s do.)

    Use it as a context manager, or call ``start()`` and ``stop()``::

        with FakeCompose("shop") as compose:
            compose.create_service("web", scale=3)
            print(compose.nameserver, [c.name for c in compose.containers("web")])

    Args:
        project: The Compose project's name (lower-case letters, digits, '-', '_').
        host: The loopback address to serve on.
        port: The port for both UDP and TCP; 0 lets the system choose.
        seed: Makes the answers' order (and generated IDs) repeatable.
        upstream: What names the project does not own get (see ``Upstream``).
        engine: The Docker Engine version to answer like (one of ``ENGINES``).
        query_log: How many of the newest messages ``queries`` keeps.

    Raises:
        ValueError: ``host`` is not an IP address, ``engine`` is not a version
            the fake models, or ``query_log`` is negative.
        SwarmError: ``project`` is not a name Compose takes.
    """

    _what = "the fake Compose project"

    def __init__(
        self,
        project: str = "proj",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        upstream: Upstream = Upstream.NXDOMAIN,
        engine: EngineVersion = DEFAULT_ENGINE,
        query_log: int = DEFAULT_QUERY_LOG,
    ) -> None:
        self._initial_engine = engine_profile(engine).version
        host = check_host(host)
        self._seed = seed
        self._initial_project = project
        self._project = Project(project, seed=seed)
        self._lock = threading.RLock()
        self._responder = Responder(seed=seed, engine=engine, query_log=query_log)
        self._timers = _Timers(self._lock, self._publish)
        #: Each stopping container's end of grace, by container ID.
        self._stopping: dict[str, Timer] = {}
        self._serving = Serving(
            self._responder,
            self._timers,
            self,
            lock=self._lock,
            host=host,
            port=port,
            operations=COMPOSE_OPERATIONS,
            what=self._what,
        )
        self._initial_upstream = upstream
        self.upstream = upstream
        self._publish()

    def __repr__(self) -> str:
        where = self.nameserver if self._serving.server is not None else "stopped"
        return (
            f"<FakeCompose {self.project!r} {where}, engine {self.engine}:"
            f" {len(self._project.services)} services>"
        )

    def reset(self, *, project: str | None = None) -> None:
        """Forget every service, network, fault and logged query.

        The project is named as the fake was created unless ``project`` says
        otherwise (until the next reset); pending grace periods are dropped.
        The upstream and the engine go back to those the fake was created
        with; the server keeps its port. The ``compose_dns`` fixture calls
        this between tests.

        Raises:
            SwarmError: ``project`` is not a name Compose takes.
        """
        fresh = Project(self._initial_project if project is None else project, seed=self._seed)
        self._serving.drop_pending()
        with self._lock:
            self._timers.reset()
            self._stopping.clear()
            self._project = fresh
            self._answer_as_created()
            self._publish()

    def state(self) -> ComposeState:
        """A snapshot of the whole project: services (with containers) and networks.

        What ``FakeControl.state`` returns (as JSON, ``FakeControl.request("state")``)
        to another process.
        """
        with self._lock:
            return ComposeState(
                project=self._project.name,
                services=self._project.services,
                networks=self._project.networks,
                engine=self.engine,
                nameserver=None if self._serving.server is None else self.nameserver,
            )

    # -- the project -----------------------------------------------------------

    @property
    def project(self) -> str:
        """The Compose project's name."""
        return self._project.name

    @property
    def networks(self) -> tuple[Network, ...]:
        """Every network (full names, ``<project>_<name>``), in order of creation."""
        with self._lock:
            return self._project.networks

    @property
    def engine_networks(self) -> tuple[IPv4Network, ...]:
        """Where every address the fake hands out lies: the engine's local pools.

        172.16.0.0/12 and 192.168.0.0/16; what ``SWARMDNS_PROVENANCE`` takes
        to treat the fake as the engine (the ``compose_dns`` fixture sets it).
        """
        return self._project.engine_networks

    def create_service(
        self,
        name: str,
        scale: int = 1,
        *,
        networks: Sequence[str] = (DEFAULT_NETWORK,),
        aliases: Sequence[str] = (),
    ) -> ComposeService:
        """Create a service and start its containers, numbered from 1.

        Args:
            name: The service's name, as in the Compose file.
            scale: How many containers to run.
            networks: The networks it is on, by their names in the Compose
                file: ``default`` is ``<project>_default``, ``x`` is
                ``<project>_x``; created when missing.
            aliases: Extra names for its containers on every network.

        Raises:
            SwarmError: The name is taken or not one Compose takes, a network
                is listed twice, or a network has too few free addresses.
        """
        for what, value in (("networks", networks), ("aliases", aliases)):
            if isinstance(value, str):
                raise TypeError(f"{what} takes a sequence of names, not one string: [{value!r}]")
        with self._changing() as project:
            return project.create_service(
                name, scale, networks=tuple(networks), aliases=tuple(aliases)
            )

    def service(self, name: str) -> ComposeService:
        """The current snapshot of a service."""
        with self._lock:
            return self._project.service(name)

    @property
    def services(self) -> tuple[ComposeService, ...]:
        """Snapshots of every service, in order of creation."""
        with self._lock:
            return self._project.services

    def scale(self, name: str, scale: int) -> ComposeService:
        """Run containers 1 to ``scale``, as ``docker compose up --scale`` does.

        Scaling down removes the highest numbers; scaling up starts the
        missing numbers, on new addresses, and starts stopped containers
        among the kept ones again (on their own addresses). At 0 the service
        has no name in DNS: it is forwarded.

        Raises:
            SwarmError: No such service, or too few free addresses.
        """
        with self._changing() as project:
            for container in project.service(name).containers:
                self._end_grace(container)
            return project.scale(name, scale)

    def remove_service(self, name: str) -> None:
        """Remove a service and its containers: every one of their names vanishes."""
        with self._changing() as project:
            for container in project.service(name).containers:
                self._end_grace(container)
            project.remove_service(name)

    def containers(self, service: str) -> tuple[Container, ...]:
        """Every container of a service, by number, running or not."""
        return self.service(service).containers

    def container(self, container: ContainerKey) -> Container:
        """The fake's record of a container.

        By its name (``proj-web-1``), its ID (or a prefix of at least 3
        digits), its address (on any of its networks), the value itself, or a
        ``swarmdns.Task`` a lookup returned (by its ``ip``).
        ``kill_container()``, ``stop_container()``, ``start_container()`` and
        ``inside()`` take the same.

        Raises:
            SwarmError: No container matches.
        """
        with self._lock:
            return self._project.find(container)[1]

    def kill_container(self, container: ContainerKey) -> Container:
        """Kill a container (``docker kill``): out of DNS at once.

        ``start_container()`` brings it back, on the same addresses.

        Raises:
            SwarmError: No container matches.
        """
        with self._changing() as project:
            self._end_grace(project.find(container)[1])
            return project.set_state(container, ContainerState.EXITED)

    def stop_container(self, container: ContainerKey, grace: float = 10.0) -> Container:
        """Stop a container (``docker stop``): in DNS for ``grace`` seconds, then out.

        As on the engine, DNS lists the container until it exits, which is at
        the end of the grace period (a container that ignores SIGTERM; one
        that exits sooner is ``kill_container()``). ``settle()`` waits for
        it. ``start_container()`` brings it back. A container that is not
        running is left as it is.

        Raises:
            SwarmError: No container matches.
            ValueError: ``grace`` is not from 0 to 3600 seconds.
        """
        seconds = _check_grace(grace)
        with self._changing() as project:
            found = project.find(container)[1]
            if found.state is not ContainerState.RUNNING:
                return found
            if not seconds:
                return project.set_state(found, ContainerState.EXITED)
            stopping = project.set_state(found, ContainerState.STOPPING)
            self._stopping[found.container_id] = self._timers.later(
                seconds, functools.partial(self._exit, found.container_id)
            )
            return stopping

    def start_container(self, container: ContainerKey) -> Container:
        """Start a stopped or killed container again: back in DNS on the same addresses.

        Raises:
            SwarmError: No container matches.
        """
        with self._changing() as project:
            self._end_grace(project.find(container)[1])
            return project.set_state(container, ContainerState.RUNNING)

    def _exit(self, container_id: str) -> None:
        """A stopping container's grace period is over: it exits (under the lock)."""
        self._stopping.pop(container_id, None)
        with contextlib.suppress(SwarmError):  # removed meanwhile
            found = self._project.find(container_id)[1]
            if found.state is ContainerState.STOPPING:
                self._project.set_state(found, ContainerState.EXITED)

    def _end_grace(self, container: Container) -> None:
        timer = self._stopping.pop(container.container_id, None)
        if timer is not None:
            self._timers.cancel(timer)

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every grace period has ended and its container left DNS.

        Raises:
            TimeoutError: Some are still pending after ``timeout`` seconds.
        """
        self._timers.settle(timeout)

    @property
    def client_networks(self) -> tuple[str, ...] | None:
        """The networks (full names) the asking container is on (None: every network).

        The engine answers a name from the asking container's own networks
        only: a container on two networks is answered with its address on
        the asker's. With None, each name is answered from the first network
        (by name) that knows it.
        """
        with self._lock:
            return self._project.client_networks

    @client_networks.setter
    def client_networks(self, networks: Sequence[str] | None) -> None:
        with self._changing() as project:
            project.client_networks = check_networks(
                networks,
                (n.name for n in project.networks),
                f"; name them in full, such as {project.network_name(DEFAULT_NETWORK)!r}",
            )

    @contextlib.contextmanager
    def inside(self, container: ContainerKey) -> Iterator[Container]:
        """Make swarmdns, in this process, believe it runs inside ``container``, for the block.

        Sets ``SWARMDNS_OWN_ADDRESSES`` to the container's addresses (every
        network's) and ``SWARMDNS_RUNTIME`` to ``compose``, so that
        ``whoami()`` and ``exclude_self`` take the container as this one; and,
        as the engine does, DNS answers only names on the container's
        networks (``client_networks``). All three are put back afterwards.
        Only this process's environment changes: pass it on to a child process
        to make that one the container.

        Yields:
            The fake's record of the container.

        Raises:
            SwarmError: No container matches.
        """
        found = self.container(container)
        with self._inside(found.addresses, "compose"):
            yield found

    @contextlib.contextmanager
    def _changing(self) -> Iterator[Project]:
        """Lock the model for one change, then publish it (a refused change changes nothing)."""
        with self._lock:
            yield self._project
            self._publish()

    def _publish(self) -> None:
        """Hand the server the tables for the project as it is now."""
        self._responder.zone = compose_zone(self._project)
