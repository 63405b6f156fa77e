"""A model of a Docker Compose project's services, containers and networks, without I/O.

What the engine's DNS answers for a Compose project depends on which
containers run (or are stopping) on which bridge networks, with which
addresses; ``_zone.compose_zone`` projects it onto the lookup tables the fake
server answers from, as ``_zone.ZoneBuilder`` does for a Swarm.

Measured (docs/fake-fidelity.md, "Compose"): ``<service>`` answers every
running container of the service, the container name, its short ID and any
alias resolve, each also as ``<name>.<network>``; there is no
``tasks.<service>`` (forwarded), no virtual IP and no health gating; a
stopped container keeps its address and gets it back on ``start``.
"""

from __future__ import annotations

import enum
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network

from attrs import evolve, field, frozen

from .._model import Task as DNSTask
from ._swarm import (
    _NETWORK_NAME,
    _SERVICE_NAME,
    Network,
    SwarmError,
    _AddressPool,
    _check_cap,
    _check_name,
    _check_replicas,
    _read_only,
    address_key,
)

#: Compose's rule for project names: lower-case letters, digits, '-' and '_'.
_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
#: Where the engine takes bridge networks' subnets from (its default local
#: address pools): 172.17.0.0/16 to 172.31.0.0/16 (the first is docker0's),
#: then 192.168.0.0/20, 192.168.16.0/20, ...
_LOCAL_POOLS = (IPv4Network("172.16.0.0/12"), IPv4Network("192.168.0.0/16"))
_DOCKER0 = IPv4Network("172.17.0.0/16")
#: The network a service is on unless told otherwise: ``<project>_default``.
DEFAULT_NETWORK = "default"


class ContainerState(enum.Enum):
    """Where a Compose container is in its life, as far as DNS can tell."""

    #: Running: in DNS (health is ignored).
    RUNNING = "running"
    #: Stopped with ``docker stop``, within its grace period: still in DNS.
    STOPPING = "stopping"
    #: Exited (killed, or stopped past its grace period): out of DNS, its
    #: addresses kept for ``start``.
    EXITED = "exited"


@frozen(kw_only=True)
class Container:
    """The fake's record of one container of a Compose service.

    Attributes:
        name: The container name, ``<project>-<service>-<number>``.
        project: The Compose project.
        service: The service's name within the project.
        number: The container number, from 1.
        container_id: The container's full ID (64 hexadecimal digits).
        state: Whether DNS lists it (running or stopping) or not (exited).
        addresses: Its address on each of its service's networks (full
            names, ``<project>_<network>``), kept while it is exited.
    """

    name: str
    project: str
    service: str
    number: int
    container_id: str
    state: ContainerState
    addresses: Mapping[str, IPv4Address] = field(hash=False, converter=_read_only)

    @property
    def ip(self) -> IPv4Address:
        """The container's address on its service's first network."""
        return next(iter(self.addresses.values()))

    @property
    def short_id(self) -> str:
        """The first 12 digits of the container ID, which resolve too."""
        return self.container_id[:12]

    @property
    def visible(self) -> bool:
        """Whether the engine's DNS lists this container (health is ignored)."""
        return self.state is not ContainerState.EXITED

    def ptr_target(self, network: str) -> str:
        """The name a PTR query for its address on ``network`` returns (never an alias)."""
        return f"{self.name}.{network}."

    def as_dns(self, network: str | None = None) -> DNSTask:
        """What DNS tells about this container on ``network``: a ``swarmdns.Task``.

        Its name is the container name, its slot the container number, its
        project the project's; Compose has no task or node ID.

        Raises:
            SwarmError: The container has no address on ``network``.
        """
        chosen = next(iter(self.addresses)) if network is None else network
        if chosen not in self.addresses:
            raise SwarmError(
                f"container {self.name} has no address on network {network!r}"
                f" (its networks: {', '.join(self.addresses)})"
            )
        return DNSTask(
            ip=self.addresses[chosen],
            name=self.name,
            service=self.service,
            slot=self.number,
            node_id=None,
            task_id=None,
            network=chosen,
            project=self.project,
        )


@frozen(kw_only=True)
class ComposeService:
    """A snapshot of one service of the fake Compose project.

    Attributes:
        name: The service's name within the project, as in ``web``.
        project: The project.
        networks: Its networks' full names (``<project>_<name>``), in order.
        aliases: Extra names for its containers on every network.
        scale: How many containers it is scaled to.
        containers: Every container, by number, running or not.
    """

    name: str
    project: str
    networks: tuple[str, ...]
    aliases: tuple[str, ...]
    scale: int
    containers: tuple[Container, ...]

    @property
    def ips(self) -> tuple[IPv4Address, ...]:
        """Sorted addresses, on the first network, of the containers DNS lists."""
        return tuple(sorted(c.ip for c in self.containers if c.visible))

    def ips_on(self, network: str) -> tuple[IPv4Address, ...]:
        """Sorted addresses, on ``network`` (full name), of the containers DNS lists."""
        if network not in self.networks:
            raise SwarmError(f"service {self.name!r} is not attached to network {network!r}")
        return tuple(sorted(c.addresses[network] for c in self.containers if c.visible))


#: What names a container: the fake's value, what DNS told (a ``swarmdns.Task``),
#: its address, or its name, full or short ID.
ContainerKey = Container | DNSTask | IPv4Address | str


class Project:
    """The mutable state of a fake Compose project; not thread-safe (FakeCompose locks it)."""

    def __init__(self, name: str, *, seed: int | None = None) -> None:
        if not isinstance(name, str) or not _PROJECT_NAME.fullmatch(name):
            raise SwarmError(
                f"invalid project name {name!r}: Compose allows lower-case letters, digits,"
                " '-' and '_', starting with a letter or digit"
            )
        self.name = name
        self._rng = random.Random(seed)
        self._networks: dict[str, Network] = {}
        self._pools: dict[str, _AddressPool] = {}
        self._services: dict[str, ComposeService] = {}
        #: The networks (full names) the asking container is on; None: every one.
        self.client_networks: tuple[str, ...] | None = None

    # -- networks ------------------------------------------------------------

    def network_name(self, name: str) -> str:
        """A network's full name: ``<project>_<name>``, as ``proj_default``."""
        return f"{self.name}_{name}"

    def _free_subnet(self) -> IPv4Network:
        used = [n.subnet for n in self._networks.values()]
        candidates = [
            *(s for s in _LOCAL_POOLS[0].subnets(new_prefix=16) if s > _DOCKER0),
            *_LOCAL_POOLS[1].subnets(new_prefix=20),
        ]
        for subnet in candidates:
            if not any(subnet.overlaps(u) for u in used):
                return subnet
        raise SwarmError("the engine's local address pools are used up")  # pragma: no cover

    def _ensure_network(self, full: str) -> None:
        if full not in self._networks:
            subnet = self._free_subnet()
            self._networks[full] = Network(name=full, id=self._new_id(), subnet=subnet)
            self._pools[full] = _AddressPool(subnet)

    @property
    def networks(self) -> tuple[Network, ...]:
        return tuple(self._networks.values())

    @property
    def engine_networks(self) -> tuple[IPv4Network, ...]:
        """Where every container address lies: the engine's local address pools."""
        return _LOCAL_POOLS

    # -- services ------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{self._rng.getrandbits(256):064x}"

    def create_service(
        self, name: str, scale: int, *, networks: Sequence[str], aliases: Iterable[str]
    ) -> ComposeService:
        _check_name("service", name, _SERVICE_NAME)
        if name in self._services:
            raise SwarmError(f"service {name!r} already exists in project {self.name!r}")
        _check_scale(scale, name)
        if not networks:
            raise SwarmError(f"service {name!r} needs at least one network")
        if len(set(networks)) != len(networks):
            raise SwarmError(f"service {name!r} lists a network twice: {list(networks)}")
        full = tuple(self.network_name(_check_name("network", n, _NETWORK_NAME)) for n in networks)
        checked = tuple(dict.fromkeys(_check_name("alias", a, _SERVICE_NAME) for a in aliases))
        self._check_room(f"service {name!r} ({scale} containers)", full, scale)
        for network in full:
            self._ensure_network(network)
        service = ComposeService(
            name=name, project=self.name, networks=full, aliases=checked, scale=0, containers=()
        )
        return self._store(evolve(service, scale=scale, containers=self._new(service, scale)))

    def _check_room(self, what: str, networks: Sequence[str], needed: int) -> None:
        for network in networks:
            pool = self._pools.get(network)
            room = (1 << 16) - 3 if pool is None else pool.free
            if needed > room:
                raise SwarmError(
                    f"{what} needs {needed} new addresses on network {network!r}, which has"
                    f" {room} free; ask for fewer containers"
                )

    def _new(self, service: ComposeService, upto: int) -> tuple[Container, ...]:
        """Start the containers numbered 1 to ``upto`` that the service lacks: all or none."""
        have = {c.number for c in service.containers}
        made: list[Container] = []
        try:
            for number in range(1, upto + 1):
                if number not in have:
                    made.append(self._new_container(service, number))
        except SwarmError:
            for container in made:
                self._release(container)
            raise
        return tuple(sorted((*service.containers, *made), key=lambda c: c.number))

    def _new_container(self, service: ComposeService, number: int) -> Container:
        addresses: dict[str, IPv4Address] = {}
        try:
            for network in service.networks:
                addresses[network] = self._pools[network].allocate()
        except SwarmError:
            self._release_addresses(addresses)
            raise
        return Container(
            name=f"{self.name}-{service.name}-{number}",
            project=self.name,
            service=service.name,
            number=number,
            container_id=self._new_id(),
            state=ContainerState.RUNNING,
            addresses=addresses,
        )

    def _release(self, container: Container) -> None:
        self._release_addresses(container.addresses)

    def _release_addresses(self, addresses: Mapping[str, IPv4Address]) -> None:
        for network, address in addresses.items():
            self._pools[network].release(address)

    def _store(self, service: ComposeService) -> ComposeService:
        self._services[service.name] = service
        return service

    def service(self, name: str) -> ComposeService:
        try:
            return self._services[name]
        except KeyError:
            known = ", ".join(sorted(self._services)) or "none"
            raise SwarmError(
                f"no service named {name!r} in project {self.name!r} (services: {known})"
            ) from None

    @property
    def services(self) -> tuple[ComposeService, ...]:
        return tuple(self._services.values())

    def scale(self, name: str, scale: int) -> ComposeService:
        """Containers 1 to ``scale``, running: the highest numbers go, missing ones start.

        Stopped containers among them start again, on the addresses they kept.
        """
        service = self.service(name)
        _check_scale(scale, name)
        kept = tuple(c for c in service.containers if c.number <= scale)
        self._check_room(
            f"scaling service {name!r} to {scale}", service.networks, scale - len(kept)
        )
        for container in service.containers:
            if container.number > scale:
                self._release(container)
        running = tuple(evolve(c, state=ContainerState.RUNNING) for c in kept)
        resized = evolve(service, scale=scale, containers=running)
        return self._store(evolve(resized, containers=self._new(resized, scale)))

    def remove_service(self, name: str) -> None:
        for container in self.service(name).containers:
            self._release(container)
        del self._services[name]

    # -- containers -----------------------------------------------------------

    def find(self, key: ContainerKey) -> tuple[ComposeService, Container]:
        """A container by value, address, name, ID or (unique, 3 or more digits) ID prefix."""
        by_address = address_key(key)
        if by_address is not None:
            return self._at(*by_address)
        if not isinstance(key, Container | str):
            raise TypeError(
                "a container is the fake's Container, a swarmdns.Task, its address (an"
                f" IPv4Address or a str), or its name or ID as a str; not {key!r}"
            )
        text = key.container_id if isinstance(key, Container) else key
        matches = [
            (service, container)
            for service in self._services.values()
            for container in service.containers
            if text == container.name
            or (len(text) >= 3 and container.container_id.startswith(text))
        ]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise SwarmError(
                f"no container {text!r} in project {self.name!r}: it may have been removed"
                " (scaled down, or its service removed)"
            )
        raise SwarmError(f"container {text!r} is ambiguous: {len(matches)} containers match")

    def _at(self, address: IPv4Address, what: str) -> tuple[ComposeService, Container]:
        for service in self._services.values():
            for container in service.containers:
                if address in container.addresses.values():
                    return service, container
        raise SwarmError(
            f"no container has address {address}{what}: it may have been removed;"
            " FakeCompose.containers(service) lists each with its addresses"
        )

    def set_state(self, key: ContainerKey, state: ContainerState) -> Container:
        service, found = self.find(key)
        updated = evolve(found, state=state)
        containers = tuple(updated if c is found else c for c in service.containers)
        self._store(evolve(service, containers=containers))
        return updated


def _check_scale(scale: int, service: str) -> None:
    _check_replicas(scale, "scale")
    _check_cap(scale, service, "containers")
