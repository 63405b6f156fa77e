"""Discover the tasks of a Docker Swarm service through Docker's embedded DNS.

Inside a Swarm container, ``<service>`` resolves to one virtual IP, while
``tasks.<service>`` lists the address of every running task::

    import swarmdns

    swarmdns.service_vip("web")  # IPv4Address('10.0.1.2')
    swarmdns.task_ips("web")  # (IPv4Address('10.0.1.3'), IPv4Address('10.0.1.4'))

``watch_tasks()`` follows the set as tasks come and go, ``TaskWatcher`` does
so in a background thread, and ``wait_for_tasks()`` waits for enough peers.
``swarmdns.aio`` has the same functions for asyncio, and ``swarmdns.testing``
a fake of the engine's DNS server (with pytest fixtures) to test against.
"""

from __future__ import annotations

from ._api import service_vip, task_ips, tasks
from ._backend import AsyncBackend, Backend, get_default_backend, set_default_backend
from ._dnspython import DNSPythonBackend
from ._errors import (
    ConfigurationError,
    InvalidName,
    NotEnoughTasks,
    NoVirtualIP,
    ResolutionError,
    ResolutionTimeout,
    ServiceNotFound,
    SwarmDNSError,
    WatchTimeout,
)
from ._lookups import DEFAULT_TIMEOUT
from ._model import Answer, Question, RecordType, Task
from ._nameserver import NAMESERVER_VARIABLE
from ._static import StaticBackend
from ._system import SystemBackend
from ._watch import TaskSetChange, WatchHealth
from ._watching import TaskWatch, TaskWatcher, wait_for_tasks, watch_tasks

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TIMEOUT",
    "NAMESERVER_VARIABLE",
    "Answer",
    "AsyncBackend",
    "Backend",
    "ConfigurationError",
    "DNSPythonBackend",
    "InvalidName",
    "NoVirtualIP",
    "NotEnoughTasks",
    "Question",
    "RecordType",
    "ResolutionError",
    "ResolutionTimeout",
    "ServiceNotFound",
    "StaticBackend",
    "SwarmDNSError",
    "SystemBackend",
    "Task",
    "TaskSetChange",
    "TaskWatch",
    "TaskWatcher",
    "WatchHealth",
    "WatchTimeout",
    "__version__",
    "get_default_backend",
    "service_vip",
    "set_default_backend",
    "task_ips",
    "tasks",
    "wait_for_tasks",
    "watch_tasks",
]
