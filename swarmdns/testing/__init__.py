"""A fake of Docker Swarm's embedded DNS server, for testing discovery code.

``FakeSwarm`` models services, tasks and overlay networks and serves DNS over
UDP and TCP on loopback, answering exactly as the engine's server at
127.0.0.11 does. With pytest, the ``swarm_dns`` fixture (installed with
swarmdns) gives each test an empty ``FakeSwarm`` and points
``SWARMDNS_NAMESERVER`` at it. ``FakeSwarm(engine=...)`` picks the Docker
Engine version to answer like, one of ``ENGINES`` (an ``EngineVersion``).
``create_service()`` takes an ``EndpointMode`` and a ``ServiceMode``; each
``QueryRecord`` says its ``Transport``. These are ``Literal`` types, for type
checkers; the fake checks an engine or a mode it is given at run time too.

``FakeCompose`` is its sibling for a Docker Compose project (services of
numbered containers on bridge networks, no VIP, no ``tasks.<service>``), with
the ``compose_dns`` fixture. ``FakeSwarm.inside(task)`` and
``FakeCompose.inside(container)`` make swarmdns believe it runs inside a task
or container of the fake.

``serve_control()`` lets another process drive a running fake, with
``FakeControl``.

``Task`` here is the fake's record of a task it runs (also named
``FakeTask``); ``swarmdns.Task`` is what a lookup learns about a task from
DNS. ``Task.as_dns()`` and ``FakeSwarm.task()`` go from one to the other.
"""

from __future__ import annotations

from ._compose import ComposeService, Container, ContainerState
from ._compose_control import ComposeState
from ._compose_fake import FakeCompose
from ._control import ControlError, FakeControl, SwarmState
from ._engines import ENGINES, EngineVersion
from ._fake import FakeSwarm
from ._nodes import Node, NodeDelays
from ._operations import (
    Operation,
    OperationDelays,
    OperationKind,
    TimelineEvent,
    TimelineStep,
    UpdateOrder,
    UpdateSettings,
)
from ._responder import (
    HIJACK_ADDRESSES,
    TTL,
    UPSTREAM_TTL,
    Delay,
    Fault,
    Outcome,
    QueryRecord,
    Transport,
    Upstream,
)
from ._swarm import EndpointMode, Network, Service, ServiceMode, SwarmError, Task, TaskState

#: Another name for ``Task``, the fake's record of a task, for code that also
#: uses ``swarmdns.Task`` (what DNS tells about a task).
FakeTask = Task

__all__ = [
    "ENGINES",
    "HIJACK_ADDRESSES",
    "TTL",
    "UPSTREAM_TTL",
    "ComposeService",
    "ComposeState",
    "Container",
    "ContainerState",
    "ControlError",
    "Delay",
    "EndpointMode",
    "EngineVersion",
    "FakeCompose",
    "FakeControl",
    "FakeSwarm",
    "FakeTask",
    "Fault",
    "Network",
    "Node",
    "NodeDelays",
    "Operation",
    "OperationDelays",
    "OperationKind",
    "Outcome",
    "QueryRecord",
    "Service",
    "ServiceMode",
    "SwarmError",
    "SwarmState",
    "Task",
    "TaskState",
    "TimelineEvent",
    "TimelineStep",
    "Transport",
    "UpdateOrder",
    "UpdateSettings",
    "Upstream",
]
