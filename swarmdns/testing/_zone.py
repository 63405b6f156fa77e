"""The lookup tables the fake server answers from, projected from the Swarm (or Compose) model.

The model knows services, tasks and networks; this module turns them into
what the engine's DNS would answer, once per change, so that answering a
query is a dictionary lookup.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address

from attrs import field, frozen

from ._compose import Project
from ._swarm import Network, Service, Swarm
from ._wire import encode_text_name

#: The engine recognises reverse names by these suffixes, spelled exactly so.
IPV4_REVERSE_SUFFIX = ".in-addr.arpa"
IPV6_REVERSE_SUFFIX = ".ip6.arpa"


@frozen(kw_only=True)
class NetworkZone:
    """What one network's DNS knows, keyed by lower-case name.

    Attributes:
        name: The network's name, spelled as created.
        names: Each name's addresses, packed, without duplicates.
        reverse: Each task address (packed) and its PTR target in wire form.
    """

    name: str
    names: Mapping[str, tuple[bytes, ...]] = field(repr=False)
    reverse: Mapping[bytes, bytes] = field(repr=False)

    @classmethod
    def build(
        cls,
        *,
        name: str,
        names: Mapping[str, list[IPv4Address]],
        reverse: Mapping[IPv4Address, str],
    ) -> NetworkZone:
        """Index a network's names and reverse names."""
        return cls(
            name=name,
            names={
                key.lower(): tuple(dict.fromkeys(ip.packed for ip in ips))
                for key, ips in names.items()
            },
            reverse={ip.packed: encode_text_name(target) for ip, target in reverse.items()},
        )


@frozen(kw_only=True)
class Zone:
    """What the asking container's DNS knows, network by network.

    Attributes:
        networks: The container's networks in the order the engine tries them.
    """

    networks: tuple[NetworkZone, ...] = ()

    def addresses(self, name: str) -> tuple[bytes, ...] | None:
        """The packed addresses of a name as sent, or None when it is unknown.

        Like the engine, ``a.b.c`` is tried as a name on every network, then as
        ``a.b`` on network ``c``, then as ``a`` on network ``b.c``. Names match
        in any case; the network suffix must be spelled as the network is.
        """
        if not name:
            return None
        candidates: list[tuple[str, str | None]] = [(name.lower(), None)]
        dot = name.rfind(".")
        while dot > 0:
            candidates.append((name[:dot].lower(), name[dot + 1 :]))
            dot = name.rfind(".", 0, dot)
        for key, network in candidates:
            for zone in self.networks:
                if network is not None and zone.name != network:
                    continue
                found = zone.names.get(key)
                if found:
                    return found
        return None

    def ptr_target(self, name: str) -> bytes | None:
        """The PTR target (wire form) for a name under in-addr.arpa, or None."""
        octets = name.removesuffix(IPV4_REVERSE_SUFFIX).split(".")
        if len(octets) != 4 or not all(o.isdigit() and len(o) <= 3 for o in octets):
            return None
        if any(len(o) > 1 and o.startswith("0") for o in octets):
            return None  # the engine's address parser refuses leading zeros
        if any(int(o) > 255 for o in octets):
            return None
        packed = bytes(int(o) for o in reversed(octets))
        for zone in self.networks:
            target = zone.reverse.get(packed)
            if target is not None:
                return target
        return None


class ZoneBuilder:
    """Projects a Swarm onto its DNS tables, rebuilding only the networks that changed.

    Service snapshots are immutable and replaced on every change, so a network
    whose services are the same objects (by identity) has the same tables: the
    previous ``NetworkZone`` is reused. The ``Zone`` itself is new on every
    build, which tells the responder to forget the records it wrote.
    """

    def __init__(self) -> None:
        self._built: dict[str, tuple[tuple[Service, ...], NetworkZone]] = {}

    def build(self, swarm: Swarm) -> Zone:
        """The DNS tables the asking container sees.

        The container is attached to ``swarm.client_networks`` (all networks
        when None). Like the engine, a name is looked up network by network, in
        the order of the container's networks (by name), and the first network
        that knows it answers.
        """
        return self.build_view(swarm, swarm.services)

    def build_view(self, swarm: Swarm, services: tuple[Service, ...]) -> Zone:
        """The DNS tables of a node that knows ``services`` (with the tasks it knows of).

        The networks and the asking container's networks are the Swarm's; the
        services are one node's view of them. Give each node its own builder,
        and the same service object for a service whose view has not changed.
        """
        attached = attached_networks(swarm.networks, swarm.client_networks)
        return Zone(networks=tuple(self._network_zone(name, services) for name in attached))

    def _network_zone(self, network: str, services: tuple[Service, ...]) -> NetworkZone:
        """A network's tables: the previous ones unless one of its services changed."""
        members = tuple(s for s in services if network in s.networks)
        built = self._built.get(network)
        if (
            built is not None
            and len(built[0]) == len(members)
            and all(old is new for old, new in zip(built[0], members, strict=True))
        ):
            return built[1]
        zone = _project_network(network, members)
        self._built[network] = (members, zone)
        return zone


def attached_networks(
    networks: Iterable[Network], client_networks: Iterable[str] | None
) -> list[str]:
    """The asking container's networks that exist, in the order the engine tries them (by name).

    ``client_networks`` None attaches it to every network.
    """
    existing = {network.name for network in networks}
    if client_networks is None:
        return sorted(existing)
    return sorted(n for n in client_networks if n in existing)


def compose_zone(project: Project) -> Zone:
    """What the asking container's DNS knows of a Compose project, network by network.

    On each network, every listed (running or stopping) container answers
    to its service's name, each alias, its container name and its short ID;
    its PTR names the container, never an alias. A service without listed
    containers has no name at all (the engine forwards it), and no name is
    ``tasks.<service>``.
    """
    attached = attached_networks(project.networks, project.client_networks)
    zones = []
    for network in attached:
        names: dict[str, list[IPv4Address]] = {}
        reverse: dict[IPv4Address, str] = {}
        for service in project.services:
            if network not in service.networks:
                continue
            for container in service.containers:
                if not container.visible:
                    continue
                address = container.addresses[network]
                for label in (service.name, *service.aliases, container.name, container.short_id):
                    names.setdefault(label, []).append(address)
                reverse[address] = container.ptr_target(network)
        zones.append(NetworkZone.build(name=network, names=names, reverse=reverse))
    return Zone(networks=tuple(zones))


def _project_network(network: str, members: tuple[Service, ...]) -> NetworkZone:
    """What the engine's DNS knows on ``network`` about the services attached to it."""
    names: dict[str, list[IPv4Address]] = {}
    reverse: dict[IPv4Address, str] = {}
    for service in members:
        visible = [t for t in service.tasks if t.visible]
        if not visible:
            continue  # the engine forgets every name of a service without tasks
        ips = [t.addresses[network] for t in visible]
        for label in (service.name, *service.aliases):
            names.setdefault(f"tasks.{label}", []).extend(ips)
            vip = service.vips.get(network)
            names.setdefault(label, []).extend([vip] if vip is not None else ips)
        for task in visible:
            address = task.addresses[network]
            for label in (task.name, task.container_id[:12], task.hostname):
                names.setdefault(label, []).append(address)
            reverse[address] = task.ptr_target(network)
    return NetworkZone.build(name=network, names=names, reverse=reverse)
