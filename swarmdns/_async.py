"""The asyncio API: lookups, ``watch_tasks`` and ``wait_for_tasks``, awaitable.

Each behaves exactly like its synchronous twin in ``swarmdns`` (they run the
same plans and the same watch logic); the backend must have an async
``resolve_async()`` method, as every built-in backend does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Sequence,
)
from ipaddress import IPv4Address
from typing import TypeVar

from . import _lookups
from ._backend import AsyncBackend, Backend, async_backend
from ._deadlines import Overrun, within
from ._dnspython import DNSPythonBackend
from ._errors import SwarmDNSError
from ._lookups import DEFAULT_TIMEOUT, Deadline, Plan, Result, check_timeout
from ._model import Question, Task
from ._static import StaticBackend
from ._watch import (
    Lookup,
    LookupResult,
    Sleep,
    Step,
    TaskSetChange,
    WatchCore,
    WatchView,
    watch_steps,
)
from ._watching import new_wait, new_watch

__all__ = [
    "AsyncTaskWatch",
    "service_vip",
    "task_ips",
    "tasks",
    "wait_for_tasks",
    "watch_tasks",
]

T = TypeVar("T")
#: At most this many questions of one lookup are asked at once.
MAX_CONCURRENT = 16
#: A backend gets this long past the deadline to report its own timeout
#: before it is cut off.
_GRACE = 0.1
#: Backends that end every lookup by its deadline themselves: they are not
#: watched with a timer of their own (subclasses are, as they may do more).
_KEEPING_DEADLINES = (DNSPythonBackend, StaticBackend)


async def _ask(
    backend: AsyncBackend,
    question: Question,
    deadline: Deadline,
    slots: asyncio.Semaphore | None = None,
) -> Result:
    async with slots if slots is not None else contextlib.nullcontext():
        remaining = deadline.remaining()
        if remaining <= 0:
            return deadline.expired(question)
        try:
            if type(backend) in _KEEPING_DEADLINES:
                answer = await backend.resolve_async(question, remaining)
            else:
                answer = await within(
                    backend.resolve_async(question, remaining), remaining + _GRACE
                )
        except Overrun:
            return deadline.overrun(question, backend)
        except SwarmDNSError as error:
            return error
        except Exception as error:  # any backend failure is a failed question
            return _lookups.backend_failure(question, backend, error)
        return _lookups.checked(question, backend, answer)


async def _ask_all(
    backend: AsyncBackend, questions: Sequence[Question], deadline: Deadline
) -> list[Result]:
    if len(questions) == 1:  # the usual case: no task to create
        return [await _ask(backend, questions[0], deadline)]
    slots = asyncio.Semaphore(MAX_CONCURRENT)
    asking = [asyncio.ensure_future(_ask(backend, q, deadline, slots)) for q in questions]
    try:
        return list(await asyncio.gather(*asking))
    finally:
        # Cancelled: end every question before going on, so that no socket
        # outlives the call.
        for task in asking:
            task.cancel()
        await asyncio.gather(*asking, return_exceptions=True)


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


def watch_tasks(
    service: str,
    *,
    network: str | None = None,
    interval: float = 2.0,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    removal_debounce: int = 1,
    jitter: float = 0.1,
    exclude_self: bool = False,
    exclude: Iterable[IPv4Address | str] = (),
    fail_after: float | None = None,
) -> AsyncTaskWatch:
    """Follow the tasks of ``service``; see ``swarmdns.watch_tasks``.

    Cancelling the task or ``aclose()`` ends the watch at once, a lookup in
    flight included; between changes nothing is held.
    """
    core = new_watch(
        service,
        network=network,
        interval=interval,
        jitter=jitter,
        removal_debounce=removal_debounce,
        fail_after=fail_after,
        exclude_self=exclude_self,
        exclude=exclude,
    )
    steps = watch_steps(core, check_timeout(timeout))
    return AsyncTaskWatch(core, drive(steps, lookup(service, network, backend)))


class AsyncTaskWatch(WatchView, AsyncIterator[TaskSetChange]):
    """The async iterator ``watch_tasks()`` returns: changes, plus the watch's state."""

    def __init__(self, core: WatchCore, changes: AsyncGenerator[TaskSetChange, None]) -> None:
        self._core = core
        self._changes = changes

    async def __anext__(self) -> TaskSetChange:
        return await self._changes.__anext__()

    async def aclose(self) -> None:
        """End the watch."""
        await self._changes.aclose()

    async def __aenter__(self) -> AsyncTaskWatch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def lookup(
    service: str, network: str | None, backend: Backend | AsyncBackend | None
) -> Callable[[float], Awaitable[LookupResult]]:
    """A watch's lookup of ``tasks.<service>``: the addresses, or the error."""

    async def task_ips_or_error(timeout: float) -> LookupResult:
        try:
            return await run(_lookups.task_ips(service, network), backend, timeout)
        except SwarmDNSError as error:
            return error

    return task_ips_or_error


async def drive(
    steps: Generator[Step, LookupResult | None, object],
    lookup: Callable[[float], Awaitable[LookupResult]],
    result: list[object] | None = None,
) -> AsyncGenerator[TaskSetChange, None]:
    """Carry out a watch's steps; yield its changes, and put its result in ``result``."""
    reply: LookupResult | None = None
    while True:
        try:
            step = steps.send(reply)
        except StopIteration as done:
            if result is not None:
                result.append(done.value)
            return
        reply = None
        if isinstance(step, Lookup):
            reply = await lookup(step.timeout)
        elif isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
        else:
            yield step


async def wait_for_tasks(
    service: str,
    count: int,
    *,
    timeout: float,
    network: str | None = None,
    interval: float = 0.5,
    backend: Backend | AsyncBackend | None = None,
    exclude_self: bool = False,
    exclude: Iterable[IPv4Address | str] = (),
) -> tuple[IPv4Address, ...]:
    """Wait until at least ``count`` tasks are visible; see ``swarmdns.wait_for_tasks``."""
    steps = new_wait(
        service,
        count,
        timeout=timeout,
        network=network,
        interval=interval,
        exclude_self=exclude_self,
        exclude=exclude,
    )
    result: list[object] = []
    async for _ in drive(steps, lookup(service, network, backend), result):
        pass  # waiting reports no changes
    (found,) = result
    return found  # type: ignore[return-value]
