"""Discover the tasks of a Docker Swarm service through Docker's embedded DNS.

Inside a Swarm container, ``<service>`` resolves to one virtual IP, while
``tasks.<service>`` lists the address of every running task::

    import swarmdns

    swarmdns.service_vip("web")  # IPv4Address('10.0.1.2')
    swarmdns.task_ips("web")  # (IPv4Address('10.0.1.3'), IPv4Address('10.0.1.4'))

``watch_tasks()`` follows the set as tasks come and go, ``TaskWatcher`` does
so in a background thread, and ``wait_for_tasks()`` waits for enough peers.
``watch_services()`` (and ``FleetWatcher``) follow many services through one
socket.
``swarmdns.aio`` has the same functions for asyncio, and ``swarmdns.testing``
a fake of the engine's DNS server (with pytest fixtures) to test against.

The package reads in layers, each importing only those below it:

- ``_model``, ``_errors``, ``_deadlines``, ``_memo`` (every cache): values and rules.
- ``_names`` (query names), ``_lookups`` (what each lookup asks, and what
  NXDOMAIN and every other answer mean), ``_values`` (a watch's options,
  checked once, and what it hands out), ``_watch`` (how a watch decides
  changes, removals, holds, failures and pacing), ``_fleet`` (the schedule of a
  watch over many services): decisions, without I/O.
- ``_backends``: who answers, and how (``direct`` decides when TCP is used;
  ``mux`` matches many queries in flight on one socket).
- ``_sync`` and ``_async``: the front ends, which carry out the decisions;
  ``_watcher``, watches in a thread, on top of both.
"""

from __future__ import annotations

from ._backends.base import AsyncBackend, Backend
from ._backends.default import get_default_backend, set_default_backend
from ._backends.direct import DirectBackend, DNSPythonBackend
from ._backends.nameserver import NAMESERVER_VARIABLE
from ._backends.static import StaticBackend
from ._backends.system import SystemBackend
from ._errors import (
    ConfigurationError,
    ForwardedAnswer,
    InvalidName,
    NotEnoughTasks,
    NoVirtualIP,
    ResolutionError,
    ResolutionTimeout,
    SelfUnknown,
    ServiceNotFound,
    SwarmDNSError,
    WatchTimeout,
)
from ._lookups import DEFAULT_TIMEOUT
from ._model import Answer, Question, RecordType, Task
from ._own_addresses import OWN_ADDRESSES_VARIABLE
from ._provenance import PROVENANCE_VARIABLE, Provenance
from ._runtime import RUNTIME_VARIABLE, Runtime
from ._sync import (
    FleetWatch,
    TaskWatch,
    service_vip,
    task_ips,
    tasks,
    wait_for_tasks,
    watch_services,
    watch_tasks,
    whoami,
)
from ._values import (
    ChangeHeld,
    HealthEvent,
    HoldReleased,
    LookupsFailing,
    LookupsRecovered,
    TaskSetChange,
    WatchHealth,
)
from ._watcher import FleetWatcher, TaskWatcher

try:  # written from git by the build and by editable installs (hatch-vcs)
    from ._version import __version__
except ImportError:  # a source tree that was never built or installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "DEFAULT_TIMEOUT",
    "NAMESERVER_VARIABLE",
    "OWN_ADDRESSES_VARIABLE",
    "PROVENANCE_VARIABLE",
    "RUNTIME_VARIABLE",
    "Answer",
    "AsyncBackend",
    "Backend",
    "ChangeHeld",
    "ConfigurationError",
    "DNSPythonBackend",
    "DirectBackend",
    "FleetWatch",
    "FleetWatcher",
    "ForwardedAnswer",
    "HealthEvent",
    "HoldReleased",
    "InvalidName",
    "LookupsFailing",
    "LookupsRecovered",
    "NoVirtualIP",
    "NotEnoughTasks",
    "Provenance",
    "Question",
    "RecordType",
    "ResolutionError",
    "ResolutionTimeout",
    "Runtime",
    "SelfUnknown",
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
    "watch_services",
    "watch_tasks",
    "whoami",
]
