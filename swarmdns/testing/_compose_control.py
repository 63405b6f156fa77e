"""The control channel of a ``FakeCompose``: its operations, and its values as JSON.

The channel, its wire format and ``FakeControl.request()`` are those of
``FakeSwarm`` (``_control_server``, ``_control_requests``, ``_control``); a
Compose project answers other operations:
``state``, ``create_service``, ``scale``, ``remove_service``,
``kill_container``, ``stop_container``, ``start_container`` (and
``kill_task``, another name for ``kill_container``), and the faults and
``reset`` every fake takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from attrs import frozen

from ._compose import ComposeService, Container, ContainerKey
from ._control_requests import COMMON_OPERATIONS, Fields, Operations
from ._control_values import named
from ._engines import EngineVersion
from ._swarm import Network


@frozen(kw_only=True)
class ComposeState:
    """A snapshot of a whole fake Compose project: ``FakeCompose.state()``.

    Attributes:
        project: The project's name.
        services: Every service, in order of creation, with its containers.
        networks: Every network (full names, ``<project>_<name>``), in order of creation.
        engine: The Docker Engine version the fake answers like.
        nameserver: Where its DNS listens (``host:port``), or None while stopped.
    """

    project: str
    services: tuple[ComposeService, ...]
    networks: tuple[Network, ...]
    engine: EngineVersion
    nameserver: str | None

    def service(self, name: str) -> ComposeService:
        """The service called ``name``.

        Raises:
            SwarmError: There is no such service.
        """
        return named(self.services, name)

    @property
    def containers(self) -> tuple[Container, ...]:
        """Every container of every service, running or not."""
        return tuple(c for service in self.services for c in service.containers)


def container_json(container: Container) -> dict[str, Any]:
    """A container as JSON: its fields, and ``ip`` and ``visible`` for convenience."""
    return {
        "name": container.name,
        "project": container.project,
        "service": container.service,
        "number": container.number,
        "container_id": container.container_id,
        "state": container.state.value,
        "addresses": {network: str(ip) for network, ip in container.addresses.items()},
        "ip": str(container.ip),
        "visible": container.visible,
    }


def service_json(service: ComposeService) -> dict[str, Any]:
    """A Compose service as JSON: its fields, and ``ips`` for convenience."""
    return {
        "name": service.name,
        "project": service.project,
        "networks": list(service.networks),
        "aliases": list(service.aliases),
        "scale": service.scale,
        "ips": [str(ip) for ip in service.ips],
        "containers": [container_json(c) for c in service.containers],
    }


def state_json(state: ComposeState) -> dict[str, Any]:
    """The whole project as JSON."""
    return {
        "project": state.project,
        "services": [service_json(s) for s in state.services],
        "networks": [
            {"name": n.name, "id": n.id, "subnet": str(n.subnet)} for n in state.networks
        ],
        "engine": state.engine,
        "nameserver": state.nameserver,
    }


class ComposeControlled(Protocol):
    """What a Compose control channel drives: a ``FakeCompose``."""

    def state(self) -> ComposeState:
        """A snapshot of the project."""
        ...

    def create_service(
        self,
        name: str,
        scale: int = 1,
        *,
        networks: Sequence[str] = ("default",),
        aliases: Sequence[str] = (),
    ) -> ComposeService:
        """Create a service."""
        ...

    def scale(self, name: str, scale: int) -> ComposeService:
        """Scale a service."""
        ...

    def remove_service(self, name: str) -> None:
        """Remove a service."""
        ...

    def kill_container(self, container: ContainerKey) -> Container:
        """Kill a container."""
        ...

    def stop_container(self, container: ContainerKey, grace: float = 10.0) -> Container:
        """Stop a container."""
        ...

    def start_container(self, container: ContainerKey) -> Container:
        """Start a container again."""
        ...


def _state(fake: ComposeControlled, fields: Fields) -> object:
    return state_json(fake.state())


def _create_service(fake: ComposeControlled, fields: Fields) -> object:
    name = fields.text("name")
    scale = fields.whole("replicas", 1)
    networks = fields.text_or_texts("network")
    aliases = fields.texts("aliases")
    if networks is None:
        networks = ("default",)
    elif isinstance(networks, str):
        networks = (networks,)
    return service_json(fake.create_service(name, scale, networks=networks, aliases=aliases))


def _scale(fake: ComposeControlled, fields: Fields) -> object:
    return service_json(fake.scale(fields.text("name"), fields.whole("replicas")))


def _remove_service(fake: ComposeControlled, fields: Fields) -> object:
    fake.remove_service(fields.text("name"))
    return None


def _kill(fake: ComposeControlled, fields: Fields) -> object:
    return container_json(fake.kill_container(fields.text("container")))


def _kill_task(fake: ComposeControlled, fields: Fields) -> object:
    return container_json(fake.kill_container(fields.text("task")))


def _stop(fake: ComposeControlled, fields: Fields) -> object:
    container = fields.text("container")
    return container_json(fake.stop_container(container, fields.number("grace", 10.0)))


def _start(fake: ComposeControlled, fields: Fields) -> object:
    return container_json(fake.start_container(fields.text("container")))


#: Each operation of a ``FakeCompose``'s channel, and the fields it takes.
#: ``create_service`` and ``scale`` take ``replicas``, as a Swarm's do, so that
#: ``swarmdns control scale name=web replicas=5`` drives either.
COMPOSE_OPERATIONS: Operations = {
    "state": (_state, ()),
    "create_service": (_create_service, ("name", "replicas", "network", "aliases")),
    "scale": (_scale, ("name", "replicas")),
    "remove_service": (_remove_service, ("name",)),
    "kill_container": (_kill, ("container",)),
    "kill_task": (_kill_task, ("task",)),
    "stop_container": (_stop, ("container", "grace")),
    "start_container": (_start, ("container",)),
    **COMMON_OPERATIONS,
}
