"""A fake of Docker Swarm's embedded DNS server, for testing discovery code.

``FakeSwarm`` models services, tasks and overlay networks and serves DNS over
UDP and TCP on loopback, answering exactly as the engine's server at
127.0.0.11 does. With pytest, the ``swarm_dns`` fixture (installed with
swarmdns) gives each test an empty ``FakeSwarm`` and points
``SWARMDNS_NAMESERVER`` at it. ``FakeSwarm(engine=...)`` picks the Docker
Engine version to answer like, one of ``ENGINES``.
"""

from __future__ import annotations

from ._engines import ENGINES
from ._fake import FakeSwarm
from ._nodes import Node, NodeDelays
from ._responder import TTL, Delay, Fault, Outcome, QueryRecord, Upstream
from ._swarm import Network, Service, SwarmError, Task, TaskState

__all__ = [
    "ENGINES",
    "TTL",
    "Delay",
    "FakeSwarm",
    "Fault",
    "Network",
    "Node",
    "NodeDelays",
    "Outcome",
    "QueryRecord",
    "Service",
    "SwarmError",
    "Task",
    "TaskState",
    "Upstream",
]
