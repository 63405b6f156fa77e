"""The asyncio API: lookups and watches, awaitable, carried out on the running loop.

Each function behaves exactly like its synchronous twin in ``_sync``: they
run the same plans (``_lookups``) and the same watch steps (``_watch``);
only the carrying out differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from ipaddress import IPv4Address
from typing import TypeVar, cast

from . import _lookups
from ._backends.base import AsyncBackend, Backend, WireBackend, keeps_deadline, speaks_wire
from ._backends.default import async_backend, get_default_backend
from ._backends.fleet import LoopTraffic
from ._deadlines import Deadline, Overrun, seconds, within
from ._errors import SwarmDNSError
from ._fleet import MAX_IN_FLIGHT, FleetCore, FleetView, Slot
from ._lookups import DEFAULT_TIMEOUT, Plan, Result
from ._model import Question, Task
from ._own_addresses import excluded_for
from ._runtime import Runtime, Where
from ._values import HealthEvent, TaskSetChange, WatchSettings
from ._watch import (
    LookupResult,
    Sleep,
    Stepper,
    WaitCore,
    WatchCore,
    WatchView,
    prepare_wait,
    prepare_watch,
    watch_steps,
)
from ._where import where_for

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
            batch = _lookups.batch_deadline(deadline, questions)
            questions = plan.send(await _ask_all(chosen, questions, batch))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def service_vip(
    service: str,
    *,
    network: str | None = None,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    runtime: Runtime | None = None,
) -> IPv4Address:
    """The virtual IP of ``service``; the asyncio twin of ``swarmdns.service_vip``.

    It takes the same arguments, with the same meaning, and raises the same errors.
    """
    where = where_for(runtime, backend)
    return await _run(_lookups.service_vip(service, network, where), backend, timeout)


async def task_ips(
    service: str,
    *,
    network: str | None = None,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    runtime: Runtime | None = None,
) -> tuple[IPv4Address, ...]:
    """The sorted addresses of every running task; the twin of ``swarmdns.task_ips``.

    It takes the same arguments, with the same meaning, and raises the same errors.
    """
    where = where_for(runtime, backend)
    return await _run(_lookups.task_ips(service, network, where), backend, timeout)


async def tasks(
    service: str,
    *,
    network: str | None = None,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    runtime: Runtime | None = None,
) -> tuple[Task, ...]:
    """Every running task with its PTR identity; the twin of ``swarmdns.tasks``.

    It takes the same arguments, with the same meaning, and raises the same errors.
    """
    where = where_for(runtime, backend)
    return await _run(_lookups.tasks(service, network, where), backend, timeout)


async def whoami(
    network: str | None = None,
    *,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    runtime: Runtime | None = None,
) -> Task:
    """This container's own address and identity; the twin of ``swarmdns.whoami``.

    It takes the same arguments, with the same meaning, and raises the same errors.
    """
    where = where_for(runtime, backend, own=True)
    return await _run(_lookups.whoami(network, where), backend, timeout)


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
    min_tasks: int = 0,
    max_drop: float | None = None,
    hold_for: float | None = None,
    on_health: Callable[[HealthEvent], object] | None = None,
    runtime: Runtime | None = None,
) -> AsyncTaskWatch:
    """Follow the tasks of ``service``; the asyncio twin of ``swarmdns.watch_tasks``.

    It takes the same arguments, with the same meaning; ``on_health`` is
    called on the loop, while the iterator is awaited. Cancelling the task
    or ``aclose()`` ends the watch at once, a lookup in flight included;
    between changes nothing is held.

    Returns:
        An async iterator of changes that also shows the watch's ``current``
        set and its ``health``; ``aclose()`` ends it.

    Raises:
        InvalidName: At once, for a name Docker would not accept.
        WatchTimeout: From the iterator, once ``fail_after`` has passed.
    """
    settings = WatchSettings(
        network=network,
        backend=backend,
        exclude_self=exclude_self,
        exclude=exclude,
        interval=interval,
        jitter=jitter,
        removal_debounce=removal_debounce,
        fail_after=fail_after,
        timeout=timeout,
        min_tasks=min_tasks,
        max_drop=max_drop,
        hold_for=hold_for,
        runtime=runtime,
    )
    where = where_for(settings.runtime, settings.backend)
    core = prepare_watch(
        service, settings, excluded=excluded_for(settings), on_health=on_health, where=where
    )
    steps = Stepper(watch_steps(core, settings.timeout))
    return AsyncTaskWatch(core, steps, lookup(service, settings.network, settings.backend, where))


class AsyncTaskWatch(WatchView, AsyncIterator[TaskSetChange]):
    """The async iterator ``watch_tasks()`` returns: changes, plus the watch's state.

    The asyncio twin of ``swarmdns.TaskWatch``.
    """

    def __init__(
        self,
        core: WatchCore,
        steps: Stepper,
        lookup: Callable[[float], Coroutine[object, object, LookupResult]],
    ) -> None:
        self._core = core
        self._steps = steps
        self._lookup = lookup

    async def __anext__(self) -> TaskSetChange:
        pending = self._steps.pending
        if not pending:
            await _run_steps(self._steps, self._lookup, lambda: bool(pending))
        if self._steps.ended or not pending:
            raise StopAsyncIteration
        return pending.popleft()

    async def wait_for_tasks(self, count: int, *, timeout: float) -> tuple[IPv4Address, ...]:
        """Wait until the watch shows at least ``count`` tasks; return them all.

        The twin of ``TaskWatch.wait_for_tasks``; a lookup in flight at the
        deadline is abandoned, and asked again when the watch goes on.

        Raises:
            NotEnoughTasks: Fewer than ``count`` were shown when ``timeout``
                ran out (it carries the ``current`` addresses).
            RuntimeError: The watch is closed.
        """
        wait = WaitCore(self._core, count, seconds("timeout", timeout))
        await _run_steps(self._steps, self._lookup, wait.enough, wait.deadline)
        return wait.result(ended=self._steps.ended)

    async def aclose(self) -> None:
        """End the watch."""
        self._steps.close()

    async def __aenter__(self) -> AsyncTaskWatch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _run_steps(
    steps: Stepper,
    lookup: Callable[[float], Coroutine[object, object, LookupResult]],
    until: Callable[[], bool],
    deadline: Deadline | None = None,
) -> None:
    """Carry out a watch's steps until ``until()`` holds, the deadline passes, or it ends.

    A lookup that the deadline cuts short is abandoned; the steps ask it again.
    """
    while (action := steps.next_action(until, deadline)) is not None:
        if isinstance(action, Sleep):
            await asyncio.sleep(action.seconds)
        elif deadline is None:
            steps.took(await lookup(action.timeout))
        else:
            try:
                steps.took(await within(lookup(action.timeout), deadline.remaining()))
            except Overrun:
                return


def lookup(
    service: str, network: str | None, backend: Backend | AsyncBackend | None, where: Where
) -> Callable[[float], Coroutine[object, object, LookupResult]]:
    """A watch's lookup of its instances' name: the addresses, or the error."""

    async def task_ips_or_error(timeout: float) -> LookupResult:
        try:
            return await _run(_lookups.task_ips(service, network, where), backend, timeout)
        except SwarmDNSError as error:
            return error

    return task_ips_or_error


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
    runtime: Runtime | None = None,
) -> tuple[IPv4Address, ...]:
    """Wait until at least ``count`` tasks are visible; the twin of ``swarmdns.wait_for_tasks``.

    It takes the same arguments, with the same meaning.

    Raises:
        NotEnoughTasks: Fewer than ``count`` were visible when ``timeout`` ran
            out (a ``TimeoutError``; it carries the ``current`` addresses).
    """
    settings = WatchSettings(
        network=network,
        interval=interval,
        exclude_self=exclude_self,
        exclude=exclude,
        runtime=runtime,
    )
    where = where_for(settings.runtime, backend)
    steps = prepare_wait(
        service, count, settings, timeout=timeout, excluded=excluded_for(settings), where=where
    )
    stepper = Stepper(steps)
    await _run_steps(stepper, lookup(service, network, backend, where), lambda: False)
    return cast("tuple[IPv4Address, ...]", stepper.result)


def watch_services(
    services: Iterable[str],
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
    min_tasks: int = 0,
    max_drop: float | None = None,
    hold_for: float | None = None,
    on_health: Callable[[HealthEvent], object] | None = None,
    runtime: Runtime | None = None,
) -> AsyncFleetWatch:
    """Follow the tasks of many services at once; the asyncio twin of ``swarmdns.watch_services``.

    It takes the same arguments, with the same meaning. With the default
    backend (or a ``DirectBackend``) every query goes through one UDP socket
    on the running loop; other backends are asked through
    ``resolve_async()``, a few lookups at a time. The lookups run (and
    ``on_health`` is called) while the iterator is awaited (or
    ``wait_for_tasks`` waits); ``aclose()`` ends the watch and closes its
    sockets.

    Returns:
        An async iterator of changes that also shows each service's
        ``current`` set and ``health``, and can ``add()`` and ``discard()``
        services.

    Raises:
        InvalidName: At once, for a name Docker would not accept.
        WatchTimeout: From the iterator, once a service's ``fail_after`` has passed.
        SwarmDNSError: From the iterator, for an error that retrying will not
            mend (a ``ConfigurationError``); the watch is then over. Also
            from the iterator, when ``runtime`` is ``"auto"`` and the engine
            could not be asked where this runs.
    """
    settings = WatchSettings(
        network=network,
        backend=backend,
        exclude_self=exclude_self,
        exclude=exclude,
        interval=interval,
        jitter=jitter,
        removal_debounce=removal_debounce,
        fail_after=fail_after,
        timeout=timeout,
        min_tasks=min_tasks,
        max_drop=max_drop,
        hold_for=hold_for,
        runtime=runtime,
    )
    where = where_for(settings.runtime, settings.backend)
    core = FleetCore(
        services, settings, excluded=excluded_for(settings), on_health=on_health, where=where
    )
    chosen = get_default_backend() if backend is None else backend
    driver: _AsyncFleetDriver
    if speaks_wire(chosen):
        driver = _AsyncSocketDriver(core, chosen, settings.timeout)
    else:
        driver = _AsyncLookupDriver(core, async_backend(chosen), settings.timeout)
    return AsyncFleetWatch(core, driver)


class AsyncFleetWatch(FleetView, AsyncIterator[TaskSetChange]):
    """The async iterator ``watch_services()`` returns; the twin of ``swarmdns.FleetWatch``.

    Use it from the loop that iterates it; ``add()`` may also come from
    another thread.
    """

    def __init__(self, core: FleetCore, driver: _AsyncFleetDriver) -> None:
        self._core = core
        self._driver = driver

    def _wake(self) -> None:
        self._driver.wake()

    async def _settled(self) -> None:
        """Tell ``auto`` before the first lookup (the twin of ``_sync.settled``)."""
        if self._core.unsettled:
            plan, settings = _lookups.settle(self._core.where), self._core.settings
            self._core.settle(await _run(plan, settings.backend, settings.timeout))

    async def __anext__(self) -> TaskSetChange:
        changes = self._core.changes
        await self._settled()
        if not changes:
            with self._core.taking("task"):
                await self._driver.run(lambda: bool(changes))
        if self._driver.closed or not changes:
            raise StopAsyncIteration
        return changes.popleft()

    async def wait_for_tasks(
        self, service: str, count: int, *, timeout: float
    ) -> tuple[IPv4Address, ...]:
        """Wait until ``service`` shows at least ``count`` tasks; return them all.

        The twin of ``FleetWatch.wait_for_tasks``: changes seen while waiting
        are kept for the iterator, which another task may await meanwhile.

        Raises:
            KeyError: ``service`` is not followed.
            NotEnoughTasks: Fewer than ``count`` were shown when ``timeout``
                ran out (it carries the ``current`` addresses).
            RuntimeError: The watch is closed.
        """
        wait = WaitCore(self._core.watch_of(service), count, seconds("timeout", timeout))
        await self._settled()
        if not wait.enough():
            await self._driver.run(wait.enough, wait.deadline)
        return wait.result(ended=self._driver.closed)

    async def aclose(self) -> None:
        """End the watch and close its sockets, lookups and connections under way included."""
        await self._driver.aclose()

    async def __aenter__(self) -> AsyncFleetWatch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _AsyncFleetDriver:
    """Carries out a fleet's lookups on the running loop while someone awaits ``run()``."""

    def __init__(self, core: FleetCore, timeout: float) -> None:
        self._core = core
        self._timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[asyncio.Future[None], Callable[[], bool]] = {}  # each run()'s wait
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._failure: Exception | None = None
        self.closed = False

    async def run(self, until: Callable[[], bool], deadline: Deadline | None = None) -> None:
        """Carry out lookups until ``until()`` holds, ``deadline`` passes, or the watch closes.

        Other tasks may await it at the same time, each for what it waits for.

        Raises:
            SwarmDNSError: A lookup failed in a way retrying will not mend;
                the watch is closed (every task in ``run()`` gets the error).
            RuntimeError: The watch was started on another loop.
        """
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("the watch runs on the event loop that first iterated it")
        waiter: asyncio.Future[None] = loop.create_future()
        first = not self._waiters
        self._waiters[waiter] = until
        give_up = None
        if deadline is not None:
            give_up = loop.call_later(max(deadline.remaining(), 0.0), _resolve, waiter)
        try:
            if first:
                try:
                    self._start()
                except Exception as error:  # ends the watch, for its awaiters to raise
                    self._fail(error)
            self._tick()
            await waiter
        finally:
            if give_up is not None:
                give_up.cancel()
            del self._waiters[waiter]
            if not self._waiters:
                self._pause()

    @property
    def _bound_loop(self) -> asyncio.AbstractEventLoop:
        """The loop the watch runs on (set by the first ``run()``)."""
        if self._loop is None:
            raise RuntimeError("the watch has not run on a loop yet")
        return self._loop

    def wake(self) -> None:
        """Have the running loop look at the schedule again (a service was added)."""
        if self._loop is not None and self._waiters:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._loop.call_soon_threadsafe(self._tick)

    def close(self) -> None:
        """End the watch: release what it holds, and end a ``run()`` in progress."""
        if self.closed:
            return
        self.closed = True
        self._done()
        self._pause()
        self._release()

    async def aclose(self) -> None:
        """``close()``, then wait for the lookups and connections it cancelled to end."""
        self.close()
        under_way = self._under_way()
        if under_way:
            await asyncio.gather(*under_way, return_exceptions=True)

    def _under_way(self) -> list[asyncio.Task[object]]:
        """The tasks of lookups or connections that may still be ending."""
        return []

    def _tick(self) -> None:
        """Do what is due, then sleep until the next thing to do."""
        if not self._waiters or self.closed:
            return
        self._cancel_timer()  # woken early (a service added): the next timer replaces it
        try:
            self._do_due(time.monotonic())
        except Exception as error:  # ends the watch, for its awaiter to raise
            self._fail(error)
            return
        self._check()

    def _check(self) -> None:
        """End each ``run()`` whose wait is over; set the timer for the next step if one waits."""
        for waiter, until in list(self._waiters.items()):
            if not waiter.done() and until():
                _resolve(waiter)
        if all(waiter.done() for waiter in self._waiters):
            return
        when = min((t for t in self._next_times() if t is not None), default=None)
        if when is None or when >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._bound_loop.call_at(when, self._tick)
        self._timer_at = when

    def _done(self) -> None:
        """End every ``run()`` in progress."""
        for waiter in list(self._waiters):
            _resolve(waiter)

    def _fail(self, error: Exception) -> None:
        pending = [waiter for waiter in self._waiters if not waiter.done()]
        for waiter in pending:
            waiter.set_exception(error)
        if not pending:
            self._failure = error  # for the next run() to raise
        self.close()

    def _pause(self) -> None:
        self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = float("inf")

    def _next_times(self) -> list[float | None]:
        """When there is something to do: a lookup due, if there is room for it."""
        room = self._in_flight() < MAX_IN_FLIGHT
        return [self._core.next_due() if room else None]

    def _in_flight(self) -> int:
        """Lookups under way."""
        raise NotImplementedError

    def _start(self) -> None:
        """Begin listening (``run()`` starts)."""

    def _do_due(self, now: float) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        """Close what the driver holds."""


def _resolve(waiter: asyncio.Future[None]) -> None:
    """End the ``run()`` that awaits ``waiter``, unless it has ended."""
    if not waiter.done():
        waiter.set_result(None)


class _AsyncLookupDriver(_AsyncFleetDriver):
    """A fleet's lookups through a backend's ``resolve_async()``, a few at a time."""

    def __init__(self, core: FleetCore, backend: AsyncBackend, timeout: float) -> None:
        super().__init__(core, timeout)
        self._backend = backend
        self._lookups: dict[asyncio.Task[LookupResult], Slot] = {}

    def _in_flight(self) -> int:
        return len(self._lookups)

    def _do_due(self, now: float) -> None:
        for slot in self._core.due(now, MAX_IN_FLIGHT - len(self._lookups)):
            ask = lookup(slot.service, self._core.network, self._backend, self._core.where)
            task = self._bound_loop.create_task(ask(self._timeout))
            self._lookups[task] = slot
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[LookupResult]) -> None:
        slot = self._lookups.pop(task)
        if task.cancelled() or self.closed:
            return
        try:
            self._core.finished(slot, task.result())
        except Exception as error:  # ends the watch, for its awaiter to raise
            self._fail(error)
            return
        self._check()

    def _under_way(self) -> list[asyncio.Task[object]]:
        return list(self._lookups)

    def _release(self) -> None:
        for task in self._lookups:
            task.cancel()


class _AsyncSocketDriver(_AsyncFleetDriver):
    """A fleet's lookups through one UDP socket on the loop (TCP for truncated answers)."""

    def __init__(self, core: FleetCore, backend: WireBackend, timeout: float) -> None:
        super().__init__(core, timeout)
        self._traffic = LoopTraffic(core, backend, timeout, moved=self._check, failed=self._fail)

    def _next_times(self) -> list[float | None]:
        return [*super()._next_times(), self._traffic.next_expiry()]

    def _in_flight(self) -> int:
        return self._traffic.in_flight()

    def _start(self) -> None:
        self._traffic.start(self._bound_loop)

    def _pause(self) -> None:
        super()._pause()
        self._traffic.pause()

    def _do_due(self, now: float) -> None:
        self._traffic.send_due(now)

    def _under_way(self) -> list[asyncio.Task[object]]:
        return self._traffic.under_way()

    def _release(self) -> None:
        self._traffic.close()
