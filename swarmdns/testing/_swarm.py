"""A model of a Swarm's services, tasks and overlay networks, without any I/O.

The model holds what the engine's DNS depends on: which tasks run where, on
which networks, with which addresses, and which of them are visible (running,
and healthy when the service has a healthcheck). ``_zone.ZoneBuilder`` projects
it onto the lookup tables the fake server answers from.
"""

from __future__ import annotations

import enum
import random
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import AddressValueError, IPv4Address, IPv4Network
from types import MappingProxyType
from typing import Literal, TypeVar, get_args

from attrs import evolve, field, frozen

from .._model import Task as DNSTask

#: Swarmkit's rule for service names (and so for aliases and stack names).
_SERVICE_NAME = re.compile(r"^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$")
#: Docker's rule for network names.
_NETWORK_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_MAX_NAME_LENGTH = 63
_ID_ALPHABET = string.digits + string.ascii_lowercase
_ID_LENGTH = 25
#: Docker's default address pool for overlays: /24 networks out of 10.0.0.0/8,
#: the first of which goes to the ingress network.
_DEFAULT_POOL = IPv4Network("10.0.0.0/8")
_DEFAULT_SUBNET_PREFIX = 24
#: The task addresses of a network created without a subnet: a /24 but for
#: its network address, gateway and broadcast.
_DEFAULT_ROOM = (1 << (32 - _DEFAULT_SUBNET_PREFIX)) - 3
#: The most replicas one service may ask for, through any front end (the
#: Python API, the control channel, ``swarmdns serve``): well past what a
#: real overlay holds (a /24: 253 tasks), and about 10 MB of the fake's memory.
MAX_REPLICAS = 10_000

#: How a service's name resolves: ``"vip"``, to one virtual IP (the engine's
#: load balancer), or ``"dnsrr"``, to every task's address.
EndpointMode = Literal["vip", "dnsrr"]
#: How a service places its tasks: ``"replicated"``, a chosen number of
#: replicas, or ``"global"``, one task per node.
ServiceMode = Literal["replicated", "global"]
_ENDPOINT_MODES: tuple[EndpointMode, ...] = get_args(EndpointMode)
_SERVICE_MODES: tuple[ServiceMode, ...] = get_args(ServiceMode)


def _read_only(mapping: Mapping[str, IPv4Address]) -> Mapping[str, IPv4Address]:
    """A snapshot's own copy, which nobody can change under the server."""
    return MappingProxyType(dict(mapping))


class SwarmError(ValueError):
    """An operation on the fake Swarm that the engine would refuse too."""


def _either(choices: Sequence[str]) -> str:
    """``'a' or 'b'``, ``'a', 'b' or 'c'``: the choices as a message names them."""
    *most, last = (repr(choice) for choice in choices)
    return f"{', '.join(most)} or {last}" if most else last


_Choice = TypeVar("_Choice", bound=str)


def _one_of(value: object, choices: tuple[_Choice, ...], what: str) -> _Choice:
    """``value`` if it is one of ``choices``, as their type; else the engine's refusal."""
    for choice in choices:
        if value == choice:
            return choice
    raise SwarmError(f"{what} must be {_either(choices)}, not {value!r}")


def check_endpoint_mode(mode: object) -> EndpointMode:
    """``mode`` if it is an ``EndpointMode``, as that type.

    Raises:
        SwarmError: It is not (whatever its type), as the engine refuses it.
    """
    return _one_of(mode, _ENDPOINT_MODES, "endpoint mode")


def check_service_mode(mode: object) -> ServiceMode:
    """``mode`` if it is a ``ServiceMode``, as that type.

    Raises:
        SwarmError: It is not (whatever its type), as the engine refuses it.
    """
    return _one_of(mode, _SERVICE_MODES, "mode")


class TaskState(enum.Enum):
    """Where a task is in its life, as far as DNS can tell."""

    #: Started, waiting for its first successful healthcheck: not in DNS yet.
    STARTING = "starting"
    #: Running (and healthy, if the service has a healthcheck): in DNS.
    RUNNING = "running"
    #: Failing its healthcheck: out of DNS until it is replaced.
    UNHEALTHY = "unhealthy"
    #: Told to stop (by an update or a drain): out of DNS, its container
    #: still running, and its addresses taken, until it exits.
    STOPPING = "stopping"


@frozen(kw_only=True)
class Network:
    """An overlay network of the fake Swarm.

    Attributes:
        name: The network's name, as in ``tasks.web.<name>``.
        id: The network's ID.
        subnet: Where its addresses come from.
    """

    name: str
    id: str
    subnet: IPv4Network

    @property
    def gateway(self) -> IPv4Address:
        """The subnet's first address, which the engine keeps for the gateway."""
        return self.subnet.network_address + 1


@frozen(kw_only=True)
class Task:
    """The fake's record of one task it runs: a container with an address on each network.

    Not to be confused with ``swarmdns.Task``, which is what a lookup learns
    about a task from DNS (one address, and what its PTR record tells). This
    one is the fake's own bookkeeping, known in full whether or not DNS lists
    the task: every network's address, the container, the node, the state.
    ``swarmdns.testing.FakeTask`` is another name for it, for code that uses
    both.

    To go from this to what DNS tells, ``as_dns(network)`` gives the
    ``swarmdns.Task`` that ``swarmdns.tasks()`` returns for it; the other
    way, ``FakeSwarm.task()`` finds the fake's record of a ``swarmdns.Task``
    (by its address), and ``kill_task()`` and its kin take either.

    Attributes:
        id: The task ID (25 characters, like the engine's).
        service: The name of the task's service.
        slot: The replica slot, or None for a task of a global service.
        node_id: The node the task runs on.
        container_id: The container's full ID (64 hexadecimal digits).
        hostname: The container's hostname (by default its short ID).
        state: Whether DNS shows the task.
        addresses: The task's address on each of its service's networks.
    """

    id: str
    service: str
    slot: int | None
    node_id: str
    container_id: str
    hostname: str
    state: TaskState
    addresses: Mapping[str, IPv4Address] = field(hash=False, converter=_read_only)

    @property
    def name(self) -> str:
        """The container name: ``<service>.<slot>.<id>``, or with the node ID."""
        middle = self.node_id if self.slot is None else str(self.slot)
        return f"{self.service}.{middle}.{self.id}"

    @property
    def ip(self) -> IPv4Address:
        """The task's address on its service's first network."""
        return next(iter(self.addresses.values()))

    @property
    def visible(self) -> bool:
        """Whether the engine's DNS lists this task."""
        return self.state is TaskState.RUNNING

    @property
    def running(self) -> bool:
        """Whether the task is meant to run: it is not on its way out (``STOPPING``)."""
        return self.state is not TaskState.STOPPING

    def ptr_target(self, network: str) -> str:
        """The name a PTR query for this task's address on ``network`` returns."""
        return f"{self.name}.{network}."

    def as_dns(self, network: str | None = None) -> DNSTask:
        """What DNS tells about this task on ``network``: a ``swarmdns.Task``.

        The value ``swarmdns.tasks(service, network=network)`` returns for this
        task while DNS lists it (its address on that network and what its PTR
        record says), so a test can compare the two directly. For a service
        on several networks, name the network: asked without one, the engine
        answers from the asking container's first network by name, which need
        not be the service's first.

        Args:
            network: One of the task's networks; its service's first by default.

        Raises:
            SwarmError: The task has no address on ``network``.
        """
        chosen = next(iter(self.addresses)) if network is None else network
        if chosen not in self.addresses:
            raise SwarmError(
                f"task {self.name} has no address on network {network!r}"
                f" (its networks: {', '.join(self.addresses)})"
            )
        return DNSTask(
            ip=self.addresses[chosen],
            name=self.name,
            service=self.service,
            slot=self.slot,
            node_id=self.node_id if self.slot is None else None,
            task_id=self.id,
            network=chosen,
        )


@frozen(kw_only=True)
class Service:
    """A snapshot of one service of the fake Swarm.

    Attributes:
        name: The service's full name (``<stack>_<name>`` in a stack).
        id: The service ID.
        mode: ``"replicated"`` or ``"global"`` (a ``ServiceMode``).
        endpoint_mode: ``"vip"`` or ``"dnsrr"`` (an ``EndpointMode``).
        networks: The networks the service is attached to, in order.
        aliases: Extra names the service answers to on every network (a stack
            adds the service's short name).
        vips: The virtual IP on each network (empty in dnsrr mode).
        tasks: Every task, visible in DNS or not, by slot (or node).
        replicas: The number of replicas asked for (None for a global service).
        healthcheck: Whether new tasks wait for a healthy check before DNS lists them.
        stack: The stack the service belongs to, if any.
        placement: The IDs of the nodes its tasks may run on (a placement
            constraint); empty: any node.
    """

    name: str
    id: str
    mode: ServiceMode
    endpoint_mode: EndpointMode
    networks: tuple[str, ...]
    aliases: tuple[str, ...]
    vips: Mapping[str, IPv4Address] = field(hash=False, converter=_read_only)
    tasks: tuple[Task, ...]
    replicas: int | None
    healthcheck: bool
    stack: str | None
    placement: tuple[str, ...] = ()

    def may_run_on(self, node: str) -> bool:
        """Whether the placement constraint lets a task of this service run on ``node``."""
        return not self.placement or node in self.placement

    @property
    def vip(self) -> IPv4Address | None:
        """The virtual IP on the first network, or None in dnsrr mode."""
        return self.vips.get(self.networks[0])

    @property
    def task_ips(self) -> tuple[IPv4Address, ...]:
        """Sorted addresses, on the first network, of the tasks DNS lists."""
        return tuple(sorted(task.ip for task in self.tasks if task.visible))

    def task_ips_on(self, network: str) -> tuple[IPv4Address, ...]:
        """Sorted addresses, on ``network``, of the tasks DNS lists."""
        if network not in self.networks:
            raise SwarmError(f"service {self.name!r} is not attached to network {network!r}")
        return tuple(sorted(task.addresses[network] for task in self.tasks if task.visible))


#: What names a task: the fake's value, what DNS told (``swarmdns.Task``), its
#: address, or its ID, name or container ID.
TaskKey = Task | DNSTask | IPv4Address | str


def address_key(key: object) -> tuple[IPv4Address, str] | None:
    """The address a key of a task (or container) names, and how a message tells it; else None.

    A ``swarmdns.Task`` (what a lookup returned) names its ``ip``; an
    ``IPv4Address``, or a dotted quad as a ``str``, names itself.
    """
    if isinstance(key, DNSTask):
        return key.ip, f" (swarmdns.Task {key.name or key.ip})"
    if isinstance(key, IPv4Address):
        return key, ""
    if isinstance(key, str) and (address := _as_address(key)) is not None:
        return address, ""
    return None


def check_networks(
    networks: Sequence[str] | None, known: Iterable[str], hint: str
) -> tuple[str, ...] | None:
    """``networks`` as the asking container's (``client_networks``), if each exists.

    Raises:
        TypeError: ``networks`` is one string.
        SwarmError: A network is unknown; the message ends with ``hint``.
    """
    if isinstance(networks, str):
        raise TypeError("client_networks takes a sequence of network names, not one string")
    if networks is None:
        return None
    existing = set(known)
    unknown = [n for n in networks if n not in existing]
    if unknown:
        raise SwarmError(
            f"no network named {', '.join(map(repr, unknown))}"
            f" (networks: {', '.join(sorted(existing)) or 'none'}){hint}"
        )
    return tuple(networks)


def _as_address(text: str) -> IPv4Address | None:
    """``text`` as an IPv4 address, if it is a dotted quad (task IDs never are)."""
    if text.count(".") != 3:
        return None
    try:
        return IPv4Address(text)
    except AddressValueError:
        return None


def _check_name(kind: str, name: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(name, str) or not pattern.fullmatch(name):
        raise SwarmError(
            f"invalid {kind} name {name!r}: Docker allows letters, digits"
            + (", '-', '_' and '.'" if pattern is _NETWORK_NAME else ", '-' and '_' inside")
        )
    if len(name) > _MAX_NAME_LENGTH:
        raise SwarmError(f"invalid {kind} name {name!r}: longer than 63 characters")
    return name


class _AddressPool:
    """Hands out a network's addresses the way the engine's IPAM does for overlays.

    Allocation is serial: each new address follows the last one handed out,
    wrapping around, so an address just released is not reused at once.
    """

    def __init__(self, subnet: IPv4Network) -> None:
        self._first = int(subnet.network_address) + 2  # .1 is the gateway
        self._last = int(subnet.broadcast_address) - 1
        self._next = self._first
        self._in_use: set[int] = set()
        self._subnet = subnet

    def allocate(self) -> IPv4Address:
        size = self._last - self._first + 1
        for step in range(size):
            candidate = self._first + (self._next - self._first + step) % size
            if candidate not in self._in_use:
                self._in_use.add(candidate)
                self._next = candidate + 1 if candidate < self._last else self._first
                return IPv4Address(candidate)
        raise SwarmError(f"no address left in {self._subnet}: give the network a larger subnet")

    @property
    def free(self) -> int:
        """How many more addresses it can hand out."""
        return self._last - self._first + 1 - len(self._in_use)

    def release(self, address: IPv4Address) -> None:
        self._in_use.discard(int(address))

    def claim(self, address: IPv4Address) -> None:
        self._in_use.add(int(address))


class Swarm:
    """The mutable state of a fake Swarm; not thread-safe (FakeSwarm locks it)."""

    def __init__(self, *, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._networks: dict[str, Network] = {}
        self._pools: dict[str, _AddressPool] = {}
        self._services: dict[str, Service] = {}
        self._used_subnets = {IPv4Network("10.0.0.0/24")}  # the ingress network's
        self.nodes: list[str] = [self._new_id()]
        #: Nodes the manager has marked Down: no new task is placed on them.
        self.down: set[str] = set()
        #: Nodes drained by their operator: no task runs on them.
        self.drained: set[str] = set()
        #: The slots of each replicated service that found no node to run on.
        self.pending: dict[str, set[int]] = {}
        #: The services that were updated: they have a previous spec to roll back to.
        self.updated: set[str] = set()
        self._load_balancers: dict[tuple[str, str], IPv4Address] = {}
        self.client_networks: tuple[str, ...] | None = None

    # -- identifiers and addresses -------------------------------------------

    def _new_id(self) -> str:
        return "".join(self._rng.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))

    def _new_container_id(self) -> str:
        return f"{self._rng.getrandbits(256):064x}"

    def _free_subnet(self) -> IPv4Network:
        for subnet in _DEFAULT_POOL.subnets(new_prefix=_DEFAULT_SUBNET_PREFIX):
            if not any(subnet.overlaps(used) for used in self._used_subnets):
                return subnet
        raise SwarmError("the default address pool 10.0.0.0/8 is used up")  # pragma: no cover

    # -- networks ------------------------------------------------------------

    def create_network(self, name: str, *, subnet: str | IPv4Network | None = None) -> Network:
        _check_name("network", name, _NETWORK_NAME)
        if name in self._networks:
            raise SwarmError(f"network {name!r} already exists")
        if subnet is None:
            chosen = self._free_subnet()
        else:
            try:
                chosen = IPv4Network(subnet)
            except ValueError as error:
                raise SwarmError(
                    f"invalid subnet {subnet!r} for network {name!r}: {error}"
                ) from None
            if chosen.num_addresses < 4:
                raise SwarmError(f"subnet {chosen} of network {name!r} holds no task addresses")
            clash = next((used for used in self._used_subnets if chosen.overlaps(used)), None)
            if clash is not None:
                raise SwarmError(f"subnet {chosen} of network {name!r} overlaps {clash}")
        network = Network(name=name, id=self._new_id(), subnet=chosen)
        self._networks[name] = network
        self._pools[name] = _AddressPool(chosen)
        self._used_subnets.add(chosen)
        return network

    def remove_network(self, name: str) -> None:
        network = self._network(name)
        users = sorted(s.name for s in self._services.values() if name in s.networks)
        if users:
            raise SwarmError(f"network {name!r} is in use by services {', '.join(users)}")
        del self._networks[name], self._pools[name]
        for key in [k for k in self._load_balancers if k[0] == name]:
            del self._load_balancers[key]
        self._used_subnets.discard(network.subnet)

    def _network(self, name: str) -> Network:
        try:
            return self._networks[name]
        except KeyError:
            raise SwarmError(f"no network named {name!r}") from None

    @property
    def networks(self) -> tuple[Network, ...]:
        return tuple(self._networks.values())

    @property
    def engine_networks(self) -> tuple[IPv4Network, ...]:
        """Where every task address and VIP lies: the pool, and subnets chosen outside it."""
        outside = (
            n.subnet for n in self._networks.values() if not n.subnet.subnet_of(_DEFAULT_POOL)
        )
        return (_DEFAULT_POOL, *dict.fromkeys(outside))

    # -- services ------------------------------------------------------------

    def create_service(
        self,
        name: str,
        replicas: int | None,
        *,
        networks: Sequence[str],
        endpoint_mode: EndpointMode,
        aliases: Iterable[str],
        healthcheck: bool,
        stack: str | None,
        placement: Sequence[str] = (),
    ) -> Service:
        name, aliases = self._check_spec(
            name,
            replicas,
            networks=networks,
            endpoint_mode=endpoint_mode,
            aliases=aliases,
            stack=stack,
        )
        for node in placement:
            self._known_node(node)
        if replicas is None:
            placed = sum(1 for node in self.nodes if self._open(node, placement))
        else:
            placed = replicas
        vip = endpoint_mode == "vip"
        what = f"service {name!r} ({placed} tasks{' and a VIP' if vip else ''})"
        self._check_room(what, networks, placed + vip)
        if replicas is not None:
            _check_cap(replicas, name)
        for network in networks:
            if network not in self._networks:
                self.create_network(network)
        vips: dict[str, IPv4Address] = {}
        try:
            for network in networks if endpoint_mode == "vip" else ():
                vips[network] = self._pools[network].allocate()
        except SwarmError:
            self._release_addresses(vips)
            raise
        service = Service(
            name=name,
            id=self._new_id(),
            mode="replicated" if replicas is not None else "global",
            endpoint_mode=endpoint_mode,
            networks=tuple(networks),
            aliases=aliases,
            vips=vips,
            tasks=(),
            replicas=replicas,
            healthcheck=healthcheck,
            stack=stack,
            placement=tuple(dict.fromkeys(placement)),
        )
        placements: list[tuple[int | None, str | None]]
        if replicas is None:
            placements = [(None, node) for node in self.nodes if self._open(node, placement)]
        else:
            placements = [(slot, None) for slot in range(1, replicas + 1)]
        try:
            tasks = self._new_tasks(service, placements)
        except SwarmError:
            self._release_addresses(vips)
            raise
        return self._store(evolve(service, tasks=tasks))

    def _check_spec(
        self,
        name: str,
        replicas: int | None,
        *,
        networks: Sequence[str],
        endpoint_mode: EndpointMode,
        aliases: Iterable[str],
        stack: str | None,
    ) -> tuple[str, tuple[str, ...]]:
        """Refuse what the engine would refuse; return the full name and the aliases."""
        _check_name("service", name, _SERVICE_NAME)
        if stack is not None:
            _check_name("stack", stack, _SERVICE_NAME)
            aliases = (name, *aliases)
            name = _check_name("service", f"{stack}_{name}", _SERVICE_NAME)
        if name in self._services:
            raise SwarmError(f"service {name!r} already exists")
        check_endpoint_mode(endpoint_mode)
        if replicas is not None:
            _check_replicas(replicas)
        if not networks:
            raise SwarmError(f"service {name!r} needs at least one network for DNS")
        if len(set(networks)) != len(networks):
            raise SwarmError(f"service {name!r} lists a network twice: {list(networks)}")
        for network in networks:
            if network not in self._networks:
                _check_name("network", network, _NETWORK_NAME)
        checked = (_check_name("alias", alias, _SERVICE_NAME) for alias in aliases)
        return name, tuple(dict.fromkeys(checked))

    def service(self, name: str) -> Service:
        try:
            return self._services[name]
        except KeyError:
            known = ", ".join(sorted(self._services)) or "none"
            raise SwarmError(f"no service named {name!r} (services: {known})") from None

    @property
    def services(self) -> tuple[Service, ...]:
        return tuple(self._services.values())

    def remove_service(self, name: str) -> None:
        service = self.service(name)
        for task in service.tasks:
            self._release(task)
        for network, vip in service.vips.items():
            self._pools[network].release(vip)
        del self._services[name]
        self.pending.pop(name, None)
        self.updated.discard(name)

    def remove_stack(self, stack: str) -> None:
        members = [s.name for s in self._services.values() if s.stack == stack]
        if not members:
            raise SwarmError(f"no stack named {stack!r}")
        for name in members:
            self.remove_service(name)

    def scale(self, name: str, replicas: int) -> Service:
        service = self.service(name)
        if service.replicas is None:
            raise SwarmError(f"service {name!r} is global: it runs one task per node")
        _check_replicas(replicas)
        kept = tuple(t for t in service.tasks if t.slot is not None and t.slot <= replicas)
        what = f"scaling service {name!r} from {len(kept)} to {replicas} replicas"
        self._check_room(what, service.networks, replicas - len(kept))
        _check_cap(replicas, name)
        used = {t.slot for t in kept}
        added = self._new_tasks(
            service, [(slot, None) for slot in range(1, replicas + 1) if slot not in used]
        )
        for task in service.tasks:
            if task not in kept:
                self._release(task)
        tasks = tuple(sorted(kept + added, key=_task_order))
        waiting = self.pending.get(name)
        if waiting:
            waiting.intersection_update(range(1, replicas + 1))
        return self._store(evolve(service, tasks=tasks, replicas=replicas))

    def _check_room(self, what: str, networks: Sequence[str], needed: int) -> None:
        """Refuse, before allocating anything, what needs more addresses than a network has left.

        Args:
            what: What asks, as the message says it.
            networks: The networks each of the ``needed`` addresses is wanted on.
            needed: How many new addresses each network must hand out.
        """
        for network in networks:
            pool = self._pools.get(network)
            room = _DEFAULT_ROOM if pool is None else pool.free
            if needed > room:
                subnet = "the new /24" if pool is None else str(self._networks[network].subnet)
                raise SwarmError(
                    f"{what} needs {needed} new addresses on network {network!r}, which has"
                    f" {room} free: no address left in {subnet} for {needed - room} of them;"
                    " ask for fewer replicas, or give the network a larger subnet"
                    " (create_network(name, subnet=...)) before creating the service"
                )

    # -- tasks ---------------------------------------------------------------

    def _new_task(self, service: Service, *, slot: int | None, node_id: str) -> Task:
        container_id = self._new_container_id()
        addresses: dict[str, IPv4Address] = {}
        try:
            for network in service.networks:
                addresses[network] = self._pools[network].allocate()
        except SwarmError:
            self._release_addresses(addresses)
            raise
        return Task(
            id=self._new_id(),
            service=service.name,
            slot=slot,
            node_id=node_id,
            container_id=container_id,
            hostname=container_id[:12],
            state=TaskState.STARTING if service.healthcheck else TaskState.RUNNING,
            addresses=addresses,
        )

    def _new_tasks(
        self, service: Service, placements: Iterable[tuple[int | None, str | None]]
    ) -> tuple[Task, ...]:
        """Start tasks at (slot, node) placements: all of them, or none.

        A replica that no node may run (the placement constraint, drained or
        Down nodes) is not started: its slot waits in ``pending``.
        """
        made: list[Task] = []
        waiting: list[int] = []
        try:
            for slot, chosen in placements:
                node = self._place(service, slot, made) if chosen is None else chosen
                if node is None:
                    if slot is not None:
                        waiting.append(slot)
                    continue
                made.append(self._new_task(service, slot=slot, node_id=node))
        except SwarmError:
            for task in made:
                self._release(task)
            raise
        slots = self.pending.setdefault(service.name, set())
        slots.update(waiting)
        slots.difference_update(t.slot for t in made)
        for task in made:
            self._attach_node(task)
        return tuple(made)

    def _attach_node(self, task: Task) -> None:
        """Give the task's node a load-balancer address on each of its networks.

        The engine does so when a node first runs a task on a network; the
        address is never in DNS, but it takes its place in the serial order.
        """
        for network in task.addresses:
            key = (network, task.node_id)
            if key not in self._load_balancers:
                try:
                    self._load_balancers[key] = self._pools[network].allocate()
                except SwarmError:
                    return  # a full subnet: the task still runs

    def _release(self, task: Task) -> None:
        self._release_addresses(task.addresses)

    def _release_addresses(self, addresses: Mapping[str, IPv4Address]) -> None:
        for network, address in addresses.items():
            self._pools[network].release(address)

    def _store(self, service: Service) -> Service:
        self._services[service.name] = service
        return service

    def find_task(self, task: TaskKey) -> tuple[Service, Task]:
        """Find a task by value, address, ID, name, container ID or (unique) ID prefix.

        An address (``IPv4Address``, or a dotted quad as a ``str``) matches the
        task with that address on any of its networks; a ``swarmdns.Task``
        (what a lookup returned) matches by its ``ip``.
        """
        by_address = address_key(task)
        if by_address is not None:
            return self._task_at(*by_address)
        if not isinstance(task, Task | str):
            raise TypeError(
                "a task is the fake's Task, a swarmdns.Task, its address (an IPv4Address"
                f" or a str), or its ID, name or container ID as a str; not {task!r}"
            )
        key = task.id if isinstance(task, Task) else task
        matches = [
            (service, candidate)
            for service in self._services.values()
            for candidate in service.tasks
            if key in (candidate.id, candidate.name, candidate.container_id)
            or (len(key) >= 3 and candidate.id.startswith(key))
        ]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise SwarmError(f"no running task {key!r}: it may have been killed or replaced")
        raise SwarmError(f"task {key!r} is ambiguous: {len(matches)} tasks match")

    def _task_at(self, address: IPv4Address, what: str) -> tuple[Service, Task]:
        for service in self._services.values():
            for candidate in service.tasks:
                if address in candidate.addresses.values():
                    return service, candidate
        for service in self._services.values():
            for network, vip in service.vips.items():
                if vip == address:
                    raise SwarmError(
                        f"{address}{what} is the virtual IP of service {service.name!r} on"
                        f" network {network!r}, not a task's address; pass one of its"
                        " tasks' addresses (Service.task_ips) instead"
                    )
        raise SwarmError(
            f"no task has address {address}{what}: it may have been killed or replaced;"
            " FakeSwarm.services lists every task with its addresses"
        )

    def kill_task(self, task: TaskKey) -> Service:
        service, found = self.find_task(task)
        self._release(found)
        return self._store(evolve(service, tasks=tuple(t for t in service.tasks if t != found)))

    def replace_task(self, task: TaskKey) -> tuple[Service, Task]:
        service, found = self.find_task(task)
        self._release(found)
        try:
            replacement = self._new_task(service, slot=found.slot, node_id=found.node_id)
        except SwarmError:
            for network, address in found.addresses.items():
                self._pools[network].claim(address)
            raise
        tasks = tuple(replacement if t == found else t for t in service.tasks)
        return self._store(evolve(service, tasks=tasks)), replacement

    def reschedule(self, name: str) -> tuple[Task, ...]:
        service = self.service(name)
        if service.replicas is None:
            running = {t.node_id for t in service.tasks}
            new = self._new_tasks(
                service,
                [(None, n) for n in self.nodes if n not in running and self._open(n, service)],
            )
        else:
            used = {t.slot for t in service.tasks}
            slots = range(1, service.replicas + 1)
            new = self._new_tasks(service, [(slot, None) for slot in slots if slot not in used])
        self._store(evolve(service, tasks=tuple(sorted(service.tasks + new, key=_task_order))))
        return new

    def force_update(self, name: str) -> Service:
        """Replace every task, as ``docker service update --force`` does.

        Each task's replacement keeps its slot (or node) and node, with a new
        ID and new addresses; empty slots (or nodes) are filled too. All of
        it, or nothing when a network runs out of addresses.
        """
        service = self.service(name)
        old = service.tasks
        placements: list[tuple[int | None, str | None]] = [(t.slot, t.node_id) for t in old]
        if service.replicas is None:
            running = {t.node_id for t in old} | self.down
            placements += [(None, n) for n in self.nodes if n not in running]
        else:
            used = {t.slot for t in old}
            placements += [(s, None) for s in range(1, service.replicas + 1) if s not in used]
        for task in old:
            self._release(task)
        try:
            new = self._new_tasks(service, placements)
        except SwarmError:
            for task in old:
                for network, address in task.addresses.items():
                    self._pools[network].claim(address)
            raise
        return self._store(evolve(service, tasks=tuple(sorted(new, key=_task_order))))

    def set_state(self, task: TaskKey, state: TaskState) -> Task:
        service, found = self.find_task(task)
        if not service.healthcheck:
            raise SwarmError(f"service {service.name!r} has no healthcheck")
        updated = evolve(found, state=state)
        self._store(
            evolve(
                service,
                tasks=tuple(updated if t == found else t for t in service.tasks),
            )
        )
        return updated

    # -- nodes ---------------------------------------------------------------

    def add_node(self) -> str:
        node = self._new_id()
        globals_ = [
            s for s in self._services.values() if s.replicas is None and s.may_run_on(node)
        ]
        started: list[tuple[Service, Task]] = []
        try:
            for service in globals_:
                (task,) = self._new_tasks(service, [(None, node)])
                started.append((service, task))
        except SwarmError:
            for _, task in started:
                self._release(task)
            raise
        self.nodes.append(node)
        for service, task in started:
            self._store(evolve(service, tasks=(*service.tasks, task)))
        return node

    def _place(self, service: Service, slot: int | None, planned: Sequence[Task]) -> str | None:
        """The node a new replica goes to: round-robin by slot, in the order nodes joined.

        A slot whose node may not take it (Down, drained, or outside the
        service's placement) goes to the node left with the fewest of the
        service's tasks (the earliest to join, on a tie), as the scheduler
        spreads; None when no node may take it.
        """
        candidates = [n for n in self.nodes if self._open(n, service)]
        if not candidates:
            return None
        node = self.nodes[(slot or 1) % len(self.nodes) - 1]
        if node in candidates:
            return node
        load = Counter(t.node_id for t in (*service.tasks, *planned) if t.running)
        return min(candidates, key=lambda n: load[n])

    def _open(self, node: str, service: Service | Sequence[str]) -> bool:
        """Whether a new task of ``service`` (or of that placement) may start on ``node``."""
        placement = service.placement if isinstance(service, Service) else service
        return (
            node not in self.down
            and node not in self.drained
            and (not placement or node in placement)
        )

    def node_down(self, node: str) -> tuple[Task, ...]:
        """The manager marks ``node`` Down: its replicated tasks start again elsewhere.

        Each replacement takes the lost task's slot, with a new ID and new
        addresses. Tasks of global services stay where they are. A slot that
        finds no free address stays empty, as a task pending in the engine.

        Returns:
            The replacement tasks.
        """
        self._known_node(node)
        if node == self.nodes[0]:
            raise SwarmError("the first node is the manager: it cannot be marked Down")
        self.down.add(node)
        started: list[Task] = []
        for service in self.services:
            lost = [t for t in service.tasks if t.node_id == node and t.slot is not None]
            if not lost:
                continue
            kept = tuple(t for t in service.tasks if t not in lost)
            try:
                new = self._new_tasks(evolve(service, tasks=kept), [(t.slot, None) for t in lost])
            except SwarmError:
                new = ()
            for task in lost:
                self._release(task)
            self._store(evolve(service, tasks=tuple(sorted(kept + new, key=_task_order))))
            started.extend(new)
        return tuple(started)

    def node_up(self, node: str) -> tuple[Task, ...]:
        """``node`` is Ready again: every global service without a task there starts one.

        Returns:
            The tasks started.
        """
        self._known_node(node)
        self.down.discard(node)
        started: list[Task] = []
        for service in self.services:
            if (
                service.replicas is None
                and self._open(node, service)
                and all(t.node_id != node for t in service.tasks)
            ):
                try:
                    (task,) = self._new_tasks(service, [(None, node)])
                except SwarmError:
                    continue  # no address left: the task stays pending
                self._store(
                    evolve(service, tasks=tuple(sorted((*service.tasks, task), key=_task_order)))
                )
                started.append(task)
        return tuple(started)

    # -- operations, one step at a time (``_operations`` drives them) -----------

    def _by_id(self, task_id: str) -> tuple[Service, Task] | None:
        for service in self._services.values():
            for task in service.tasks:
                if task.id == task_id:
                    return service, task
        return None

    def _swap(self, service: Service, old: Task, new: Task | None) -> None:
        kept = (t if t != old else new for t in service.tasks)
        self._store(evolve(service, tasks=tuple(t for t in kept if t is not None)))

    def stop_task(self, task_id: str) -> Task | None:
        """Take a task out of DNS; its container (and addresses) stay until ``exit_task()``.

        Returns:
            The stopping task, or None if it is gone or already stopping.
        """
        found = self._by_id(task_id)
        if found is None or not found[1].running:
            return None
        service, task = found
        stopped = evolve(task, state=TaskState.STOPPING)
        self._swap(service, task, stopped)
        return stopped

    def exit_task(self, task_id: str) -> Task | None:
        """A task's container exits: its addresses are free again. None if it is gone."""
        found = self._by_id(task_id)
        if found is None:
            return None
        service, task = found
        self._release(task)
        self._swap(service, task, None)
        return task

    def start_task(self, name: str, *, slot: int | None, node: str | None) -> Task | None:
        """Start a task in ``slot`` (a global one on ``node``), on ``node`` if it may run there.

        Returns:
            The new task; None when the service is gone, the slot is past its
            replicas, or no node may run it (the slot then waits in ``pending``),
            or a network has no address left for it.
        """
        service = self._services.get(name)
        if service is None:
            return None
        if slot is None:
            if node is None or not self._open(node, service):
                return None
        elif service.replicas is None or slot > service.replicas:
            return None
        elif node is not None and not self._open(node, service):
            node = None
        try:
            started = self._new_tasks(service, [(slot, node)])
        except SwarmError:
            return None  # no address left: pending on the engine too
        if not started:
            return None
        self._store(
            evolve(service, tasks=tuple(sorted((*service.tasks, *started), key=_task_order)))
        )
        return started[0]

    def pass_healthcheck(self, task_id: str) -> Task | None:
        """A starting task's health check passes: DNS lists it. None if it is not starting."""
        found = self._by_id(task_id)
        if found is None or found[1].state is not TaskState.STARTING:
            return None
        service, task = found
        listed = evolve(task, state=TaskState.RUNNING)
        self._swap(service, task, listed)
        return listed

    def drain(self, node: str) -> tuple[Task, ...]:
        """Mark a node drained: nothing new starts on it. Returns the tasks to stop there."""
        self._known_node(node)
        if node in self.drained:
            raise SwarmError(f"node {node!r} is already drained")
        self.drained.add(node)
        return tuple(
            task
            for service in self.services
            for task in service.tasks
            if task.node_id == node and task.running
        )

    def activate(self, node: str) -> tuple[tuple[str, int | None], ...]:
        """Make a drained node active again. Returns the tasks that may now start there.

        Those are the replicas waiting for a node that this one may run, and
        the global services' tasks for it; nothing that runs elsewhere moves back.
        """
        self._known_node(node)
        if node not in self.drained:
            raise SwarmError(f"node {node!r} is not drained")
        self.drained.discard(node)
        waiting: list[tuple[str, int | None]] = []
        for service in self.services:
            if not self._open(node, service):
                continue
            if service.replicas is None:
                if all(t.node_id != node for t in service.tasks):
                    waiting.append((service.name, None))
            else:
                waiting.extend(
                    (service.name, slot) for slot in sorted(self.pending.get(service.name, ()))
                )
        return tuple(waiting)

    def _known_node(self, node: str) -> None:
        if node not in self.nodes:
            raise SwarmError(f"no node {node!r} (nodes: {', '.join(self.nodes)})")


def _check_replicas(replicas: int, what: str = "replicas") -> None:
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise SwarmError(f"{what} must be a whole number of at least 0, not {replicas!r}")


def _check_cap(replicas: int, service: str, what: str = "replicas") -> None:
    if replicas > MAX_REPLICAS:
        raise SwarmError(
            f"service {service!r}: {replicas} {what} is more than the fake runs for one"
            f" service ({MAX_REPLICAS}); ask for at most {MAX_REPLICAS}"
        )


def _task_order(task: Task) -> tuple[int, str]:
    return (task.slot or 0, task.node_id)
