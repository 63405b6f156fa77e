"""The asyncio API: ``service_vip``, ``task_ips`` and ``tasks``, awaitable.

Each behaves exactly like its synchronous twin in ``swarmdns`` (they run the
same plans); the backend must have an async ``resolve_async()`` method, as
every built-in backend does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import TypeVar

from . import _lookups
from ._backend import AsyncBackend, Backend, async_backend
from ._errors import SwarmDNSError
from ._lookups import DEFAULT_TIMEOUT, Deadline, Plan, Result
from ._model import Question, Task

__all__ = ["service_vip", "task_ips", "tasks"]

T = TypeVar("T")
#: At most this many questions of one lookup are asked at once.
MAX_CONCURRENT = 16
#: A backend gets this long past the deadline to report its own timeout
#: before it is cut off.
_GRACE = 0.1


async def _ask(
    backend: AsyncBackend, question: Question, deadline: Deadline, slots: asyncio.Semaphore
) -> Result:
    async with slots:
        remaining = deadline.remaining()
        if remaining <= 0:
            return deadline.expired(question)
        try:
            return await asyncio.wait_for(
                backend.resolve_async(question, remaining), remaining + _GRACE
            )
        except SwarmDNSError as error:
            return error
        except asyncio.TimeoutError:
            return deadline.overrun(question, backend)
        except Exception as error:  # any backend failure is a failed question
            return _lookups.backend_failure(question, backend, error)


async def _ask_all(
    backend: AsyncBackend, questions: Sequence[Question], deadline: Deadline
) -> list[Result]:
    slots = asyncio.Semaphore(MAX_CONCURRENT)
    return list(await asyncio.gather(*(_ask(backend, q, deadline, slots) for q in questions)))


async def run(plan: Plan[T], backend: Backend | AsyncBackend | None, timeout: float) -> T:
    """Drive ``plan`` to its result, asking ``backend`` within ``timeout`` seconds."""
    deadline = Deadline(timeout)
    chosen = async_backend(backend)
    try:
        questions = next(plan)
        while True:
            questions = plan.send(await _ask_all(chosen, questions, deadline))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def service_vip(
    service: str,
    *,
    network: str | None = None,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> IPv4Address:
    """The virtual IP of ``service``; see ``swarmdns.service_vip``."""
    return await run(_lookups.service_vip(service, network), backend, timeout)


async def task_ips(
    service: str,
    *,
    network: str | None = None,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[IPv4Address, ...]:
    """The sorted addresses of every running task; see ``swarmdns.task_ips``."""
    return await run(_lookups.task_ips(service, network), backend, timeout)


async def tasks(
    service: str,
    *,
    network: str | None = None,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[Task, ...]:
    """Every running task with its PTR identity; see ``swarmdns.tasks``."""
    return await run(_lookups.tasks(service, network), backend, timeout)
