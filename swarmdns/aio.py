"""The asyncio API: lookups, ``whoami``, ``watch_tasks``, ``watch_services`` and more, awaitable.

Each behaves exactly like its synchronous twin in ``swarmdns`` (they run the
same plans and the same watch logic). A backend's async ``resolve_async()``
is used when it has one, as every built-in backend does; a backend with only
a synchronous ``resolve()`` runs in a worker thread.
"""

from __future__ import annotations

from ._async import (
    AsyncFleetWatch,
    AsyncTaskWatch,
    service_vip,
    task_ips,
    tasks,
    wait_for_tasks,
    watch_services,
    watch_tasks,
    whoami,
)

__all__ = [
    "AsyncFleetWatch",
    "AsyncTaskWatch",
    "service_vip",
    "task_ips",
    "tasks",
    "wait_for_tasks",
    "watch_services",
    "watch_tasks",
    "whoami",
]
