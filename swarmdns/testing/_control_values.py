"""The values the fake's control channel carries, as JSON and back.

The server turns the fake's snapshots into JSON (``task_json()``,
``service_json()``, ``state_json()``, ``operation_json()``), and
``FakeControl`` turns the JSON back into the same values (``task_from()``
and the others): a ``Service`` or ``Task`` as the ``FakeSwarm`` returns it,
a ``SwarmState`` for the whole Swarm, a ``RemoteOperation`` for an
operation that runs in the other process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Protocol, TypeVar

import attrs
from attrs import frozen

from ._engines import EngineVersion
from ._nodes import Node
from ._operations import (
    Operation,
    OperationDelays,
    OperationKind,
    TimelineEvent,
    UpdateSettings,
)
from ._swarm import Network, Service, SwarmError, Task, TaskState


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


@frozen(kw_only=True)
class RemoteOperation:
    """An operation of a fake in another process, as its control channel reports it.

    What ``FakeControl.update_service()``, ``rollback()``, ``drain()``,
    ``activate()`` and ``operation()`` return: a snapshot of the ``Operation``
    the fake runs, which the channel knows by ``id``.

    Attributes:
        id: How the channel knows it: ``FakeControl.operation(id)`` reads it again.
        kind: ``"update"``, ``"rollback"``, ``"drain"`` or ``"activate"``.
        target: The service, or the node's name.
        settings: How an update or rollback proceeds (None for a node).
        delays: How long each step takes.
        done: Whether every step has happened.
        cancelled: Whether a reset dropped it before its end.
        took: Seconds from its start to its end, once done.
        timeline: Every step so far, in order.
        fewest: The fewest tasks DNS listed at any moment, for each service
            it touched (the updated one, or those with a task on the node).
        most: The most tasks DNS listed at any moment, for the same services.
    """

    id: int
    kind: OperationKind
    target: str
    settings: UpdateSettings | None
    delays: OperationDelays
    done: bool
    cancelled: bool
    took: float | None
    timeline: tuple[TimelineEvent, ...]
    fewest: Mapping[str, int]
    most: Mapping[str, int]


def operation_json(number: int, operation: Operation) -> dict[str, Any]:
    """An operation as JSON, under the ID the channel gave it."""
    timeline = operation.timeline
    touched = [operation.target] if operation.settings is not None else []
    touched += [event.service for event in timeline]
    services = list(dict.fromkeys(touched))
    return {
        "id": number,
        "kind": operation.kind,
        "target": operation.target,
        "settings": None if operation.settings is None else attrs.asdict(operation.settings),
        "delays": attrs.asdict(operation.delays),
        "done": operation.done,
        "cancelled": operation.cancelled,
        "took": operation.took,
        "timeline": [
            {
                "at": event.at,
                "step": event.step,
                "service": event.service,
                "task": event.task,
                "ip": str(event.ip),
            }
            for event in timeline
        ],
        "fewest": {service: operation.fewest(service) for service in services},
        "most": {service: operation.most(service) for service in services},
    }


def operation_from(data: Mapping[str, Any]) -> RemoteOperation:
    """An operation from its JSON (``operation_json()``)."""
    settings = data["settings"]
    return RemoteOperation(
        id=data["id"],
        kind=data["kind"],
        target=data["target"],
        settings=None if settings is None else UpdateSettings(**settings),
        delays=OperationDelays(**data["delays"]),
        done=data["done"],
        cancelled=data["cancelled"],
        took=data["took"],
        timeline=tuple(
            TimelineEvent(
                at=event["at"],
                step=event["step"],
                service=event["service"],
                task=event["task"],
                ip=IPv4Address(event["ip"]),
            )
            for event in data["timeline"]
        ),
        fewest=dict(data["fewest"]),
        most=dict(data["most"]),
    )


def task_from(data: Mapping[str, Any]) -> Task:
    """A task from its JSON (``task_json()``)."""
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


def service_from(data: Mapping[str, Any]) -> Service:
    """A service from its JSON (``service_json()``)."""
    return Service(
        name=data["name"],
        id=data["id"],
        mode=data["mode"],
        endpoint_mode=data["endpoint_mode"],
        networks=tuple(data["networks"]),
        aliases=tuple(data["aliases"]),
        vips={network: IPv4Address(ip) for network, ip in data["vips"].items()},
        tasks=tuple(task_from(task) for task in data["tasks"]),
        replicas=data["replicas"],
        healthcheck=data["healthcheck"],
        stack=data["stack"],
        placement=tuple(data["placement"]),
    )


def state_from(data: Mapping[str, Any]) -> SwarmState:
    """The whole Swarm from its JSON (``state_json()``)."""
    return SwarmState(
        services=tuple(service_from(s) for s in data["services"]),
        networks=tuple(
            Network(name=n["name"], id=n["id"], subnet=IPv4Network(n["subnet"]))
            for n in data["networks"]
        ),
        nodes=tuple(Node(**n) for n in data["nodes"]),
        engine=data["engine"],
        nameserver=data["nameserver"],
    )
