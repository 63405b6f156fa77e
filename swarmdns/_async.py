"""The asyncio API: lookups and watches, awaitable, carried out on the running loop.

Each function behaves exactly like its synchronous twin in ``_sync``: they
run the same plans (``_lookups``) and the same watch steps (``_watch``);
only the carrying out differs.
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
from ._backends.base import AsyncBackend, Backend, keeps_deadline
from ._backends.default import async_backend
from ._deadlines import Deadline, Overrun, seconds, within
from ._errors import SwarmDNSError
from ._lookups import DEFAULT_TIMEOUT, Plan, Result
from ._model import Question, Task
from ._watch import (
    Lookup,
    LookupResult,
    Sleep,
    Step,
    TaskSetChange,
    WatchCore,
    WatchView,
    prepare_wait,
    prepare_watch,
    watch_steps,
)

T = TypeVar("T")
#: A backend that does not keep its own deadline gets this long past it to
#: report its own timeout before it is cut off.
_GRACE = 0.1


async def _ask(
    backend: AsyncBackend,
    question: Question,
    deadline: Deadline,
    slots: asyncio.Semaphore | None = None,
) -> Result:
    async with slots if slots is not None else contextlib.nullcontext():
        remaining = deadline.remaining()
        if remaining <= 0:
            return _lookups.expired(question, deadline)
        try:
            if keeps_deadline(backend):
                answer = await backend.resolve_async(question, remaining)
            else:
                answer = await within(
                    backend.resolve_async(question, remaining), remaining + _GRACE
                )
        except Overrun:
            return _lookups.overrun(question, backend, deadline)
        except Exception as error:  # any backend failure is a failed question
            return _lookups.failed(question, backend, error)
        return _lookups.checked(question, backend, answer)


async def _ask_all(
    backend: AsyncBackend, questions: Sequence[Question], deadline: Deadline
) -> list[Result]:
    if len(questions) == 1:  # the usual case: no task to create
        return [await _ask(backend, questions[0], deadline)]
    slots = asyncio.Semaphore(_lookups.MAX_CONCURRENT)
    asking = [asyncio.ensure_future(_ask(backend, q, deadline, slots)) for q in questions]
    try:
        return list(await asyncio.gather(*asking))
    finally:
        # Cancelled: end every question before going on, so that no socket
        # outlives the call.
        for task in asking:
            task.cancel()
        await asyncio.gather(*asking, return_exceptions=True)


async def _run(plan: Plan[T], backend: Backend | AsyncBackend | None, timeout: float) -> T:
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
    """The virtual IP of ``service``; the asyncio twin of ``swarmdns.service_vip``.

    Args:
        service: The service's name (``web``, or ``shop_web`` in a stack).
        network: Ask about the service's address on this network only.
        backend: Who answers; by default the process-wide default backend.
        timeout: Seconds the whole lookup may take.

    Raises:
        ServiceNotFound: NXDOMAIN: no such service, or none of its tasks runs.
        NoVirtualIP: The service runs in dnsrr mode (several addresses).
        ResolutionTimeout: No answer within ``timeout``.
        ResolutionError: The nameserver failed or answered nonsense.
        InvalidName: ``service`` or ``network`` is not a name Docker allows.
    """
    return await _run(_lookups.service_vip(service, network), backend, timeout)


async def task_ips(
    service: str,
    *,
    network: str | None = None,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[IPv4Address, ...]:
    """The sorted addresses of every running task; the twin of ``swarmdns.task_ips``.

    Args:
        service: The service's name.
        network: Ask about the service's addresses on this network only.
        backend: Who answers; by default the process-wide default backend.
        timeout: Seconds the whole lookup may take.

    Raises:
        ResolutionTimeout: No answer within ``timeout``.
        ResolutionError: The nameserver failed or answered nonsense.
        InvalidName: ``service`` or ``network`` is not a name Docker allows.
    """
    return await _run(_lookups.task_ips(service, network), backend, timeout)


async def tasks(
    service: str,
    *,
    network: str | None = None,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[Task, ...]:
    """Every running task with its PTR identity; the twin of ``swarmdns.tasks``.

    Args:
        service: The service's name.
        network: Ask about the service's tasks on this network only.
        backend: Who answers; by default the process-wide default backend.
        timeout: Seconds the whole lookup, PTR lookups included, may take.

    Raises:
        ResolutionTimeout: No answer to the ``tasks.<service>`` query within ``timeout``.
        ResolutionError: The nameserver failed or answered nonsense.
        InvalidName: ``service`` or ``network`` is not a name Docker allows.
    """
    return await _run(_lookups.tasks(service, network), backend, timeout)


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
    """Follow the tasks of ``service``; the asyncio twin of ``swarmdns.watch_tasks``.

    Cancelling the task or ``aclose()`` ends the watch at once, a lookup in
    flight included; between changes nothing is held.

    Args:
        service: The service's name.
        network: Watch the service's addresses on this network only.
        interval: Seconds between lookups.
        backend: Who answers; by default the process-wide default backend.
        timeout: Seconds each lookup may take.
        removal_debounce: Report an address removed only after it has been
            missing from this many successful lookups in a row.
        jitter: Vary each wait by this fraction of the interval, either way.
        exclude_self: Leave out this container's own addresses.
        exclude: Further addresses to leave out.
        fail_after: End with ``WatchTimeout`` after this many seconds without a
            successful lookup (by default, never).

    Returns:
        An async iterator of changes that also shows the watch's ``current``
        set and its ``health``; ``aclose()`` ends it.

    Raises:
        InvalidName: At once, for a name Docker would not accept.
        WatchTimeout: From the iterator, once ``fail_after`` has passed.
    """
    core = prepare_watch(
        service,
        network=network,
        interval=interval,
        jitter=jitter,
        removal_debounce=removal_debounce,
        fail_after=fail_after,
        exclude_self=exclude_self,
        exclude=exclude,
    )
    steps = watch_steps(core, seconds("timeout", timeout))
    return AsyncTaskWatch(core, changes(steps, lookup(service, network, backend)))


class AsyncTaskWatch(WatchView, AsyncIterator[TaskSetChange]):
    """The async iterator ``watch_tasks()`` returns: changes, plus the watch's state.

    The asyncio twin of ``swarmdns.TaskWatch``.
    """

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
            return await _run(_lookups.task_ips(service, network), backend, timeout)
        except SwarmDNSError as error:
            return error

    return task_ips_or_error


async def _carry_out(
    step: Lookup | Sleep, lookup: Callable[[float], Awaitable[LookupResult]]
) -> LookupResult | None:
    """Do what ``step`` asks; the lookup's result, or None after a sleep."""
    if isinstance(step, Lookup):
        return await lookup(step.timeout)
    await asyncio.sleep(step.seconds)
    return None


async def changes(
    steps: Generator[Step, LookupResult | None, object],
    lookup: Callable[[float], Awaitable[LookupResult]],
) -> AsyncGenerator[TaskSetChange, None]:
    """Carry out a watch's steps and yield its changes."""
    reply: LookupResult | None = None
    while True:
        try:
            step = steps.send(reply)
        except StopIteration:
            return
        if isinstance(step, TaskSetChange):
            reply = None
            yield step
        else:
            reply = await _carry_out(step, lookup)


async def _outcome(
    steps: Generator[Step, LookupResult | None, T],
    lookup: Callable[[float], Awaitable[LookupResult]],
) -> T:
    """Carry out steps that report no change (a wait's) to their result."""
    reply: LookupResult | None = None
    while True:
        try:
            step = steps.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        reply = None if isinstance(step, TaskSetChange) else await _carry_out(step, lookup)


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
    """Wait until at least ``count`` tasks are visible; the twin of ``swarmdns.wait_for_tasks``.

    Args:
        service: The service's name.
        count: How many tasks to wait for.
        timeout: Seconds the whole wait may take (each lookup in it gets at
            most ``DEFAULT_TIMEOUT`` of them).
        network: Count the service's addresses on this network only.
        interval: Seconds between lookups.
        backend: Who answers; by default the process-wide default backend.
        exclude_self: Leave out this container's own addresses.
        exclude: Further addresses to leave out.

    Raises:
        NotEnoughTasks: Fewer than ``count`` were visible when ``timeout`` ran
            out (a ``TimeoutError``; it carries the ``current`` addresses).
    """
    steps = prepare_wait(
        service,
        count,
        timeout=timeout,
        network=network,
        interval=interval,
        exclude_self=exclude_self,
        exclude=exclude,
    )
    return await _outcome(steps, lookup(service, network, backend))
