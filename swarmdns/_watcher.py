"""Watching from synchronous code: the iterator, wait_for_tasks() and TaskWatcher."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from ipaddress import IPv4Address
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import asyncio

from . import _api, _lookups
from ._backend import AsyncBackend, Backend, get_default_backend, sync_backend
from ._errors import SwarmDNSError
from ._local import local_addresses
from ._lookups import DEFAULT_TIMEOUT, check_timeout
from ._model import Answer, Question
from ._names import tasks_name
from ._watch import (
    Lookup,
    LookupResult,
    Sleep,
    Step,
    TaskSetChange,
    WaitCore,
    WatchCore,
    WatchView,
    logger,
    wait_steps,
    watch_steps,
)

_Watcher = TypeVar("_Watcher", bound="TaskWatcher")
T = TypeVar("T")


def new_watch(
    service: str,
    *,
    network: str | None,
    interval: float,
    jitter: float,
    removal_debounce: int,
    fail_after: float | None,
    exclude_self: bool,
    exclude: Iterable[IPv4Address | str],
) -> WatchCore:
    """Check a watch's arguments and set up its decisions; shared by every driver."""
    query_name = tasks_name(service, network)
    if isinstance(exclude, str | IPv4Address):
        raise TypeError(f"exclude takes a list of addresses, not one: [{str(exclude)!r}]")
    excluded = {IPv4Address(ip) for ip in exclude}
    if exclude_self:
        excluded |= local_addresses()
    return WatchCore(
        service,
        query_name=query_name,
        interval=interval,
        jitter=jitter,
        removal_debounce=removal_debounce,
        fail_after=fail_after,
        exclude=excluded,
    )


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
) -> TaskWatch:
    """Follow the tasks of ``service``: yield a ``TaskSetChange`` whenever they change.

    The first event is the initial set. A failed lookup (timeout, SERVFAIL,
    REFUSED, a garbled answer) never changes the set: the watch keeps the last
    good one and retries with backoff. NXDOMAIN does change it: the engine
    answers so when the service has no task left.

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
        An iterator of changes that also shows the watch's ``current`` set and
        its ``health``; ``close()`` ends it.

    Raises:
        InvalidName: At once, for a name Docker would not accept.
        WatchTimeout: From the iterator, once ``fail_after`` has passed.
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
    return TaskWatch(core, _drive(steps, _lookup(service, network, backend)))


class TaskWatch(WatchView, Iterator[TaskSetChange]):
    """The iterator ``watch_tasks()`` returns: changes, plus the watch's state.

    ``close()`` (or leaving a ``with`` block) ends it; between changes it
    holds no socket and no thread.
    """

    def __init__(self, core: WatchCore, changes: Generator[TaskSetChange, None, None]) -> None:
        self._core = core
        self._changes = changes

    def __next__(self) -> TaskSetChange:
        return next(self._changes)

    def close(self) -> None:
        """End the watch."""
        self._changes.close()

    def __enter__(self) -> TaskWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _lookup(
    service: str, network: str | None, backend: Backend | AsyncBackend | None
) -> Callable[[float], LookupResult]:
    def lookup(timeout: float) -> LookupResult:
        try:
            return _api.run(_lookups.task_ips(service, network), backend, timeout)
        except SwarmDNSError as error:
            return error

    return lookup


def _drive(
    steps: Generator[Step, LookupResult | None, T], lookup: Callable[[float], LookupResult]
) -> Generator[TaskSetChange, None, T]:
    """Carry out a watch's steps; yield its changes, return its result."""
    reply: LookupResult | None = None
    while True:
        try:
            step = steps.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        reply = None
        if isinstance(step, Lookup):
            reply = lookup(step.timeout)
        elif isinstance(step, Sleep):
            time.sleep(step.seconds)
        else:
            yield step


def wait_for_tasks(
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
    """Wait until at least ``count`` tasks of ``service`` are visible; return them all.

    For cluster bootstrap: wait for the peers before forming the cluster.
    Failed lookups are retried until ``timeout``.

    Raises:
        NotEnoughTasks: Fewer than ``count`` were visible when ``timeout`` ran
            out (a ``TimeoutError``; it carries the ``current`` addresses).
    """
    steps = new_wait(
        service,
        count,
        timeout=timeout,
        network=network,
        interval=interval,
        exclude_self=exclude_self,
        exclude=exclude,
    )
    driver = _drive(steps, _lookup(service, network, backend))
    while True:
        try:
            next(driver)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def new_wait(
    service: str,
    count: int,
    *,
    timeout: float,
    network: str | None,
    interval: float,
    exclude_self: bool,
    exclude: Iterable[IPv4Address | str],
) -> Generator[Step, LookupResult | None, tuple[IPv4Address, ...]]:
    """Check ``wait_for_tasks()``'s arguments and set up its steps; shared by both APIs."""
    core = new_watch(
        service,
        network=network,
        interval=interval,
        jitter=0.1,
        removal_debounce=1,
        fail_after=None,
        exclude_self=exclude_self,
        exclude=exclude,
    )
    return wait_steps(WaitCore(core, count, timeout), DEFAULT_TIMEOUT)


class _ThreadedBackend:
    """Lets an asyncio loop use a backend that only has a synchronous resolve()."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def __repr__(self) -> str:
        return repr(self.backend)

    async def resolve_async(self, question: Question, timeout: float) -> Answer:
        import asyncio  # noqa: PLC0415 - asyncio only when a watcher runs

        return await asyncio.to_thread(self.backend.resolve, question, timeout)


class TaskWatcher(WatchView):
    """Follows a service's tasks in a background thread.

    For applications not built around a loop: read ``current`` at any time,
    and have ``on_change`` (or callbacks added later) called on each change,
    in the watcher's thread. A callback that raises is logged, and the watch
    goes on::

        with TaskWatcher("web", exclude_self=True, on_change=print) as peers:
            ...
            send_to_all(peers.current)

    The other arguments are those of ``watch_tasks()``. The thread runs an
    asyncio loop, so ``stop()`` abandons a lookup in flight and returns at
    once; with a backend that has only a synchronous ``resolve()``, it waits
    for that lookup (at most ``timeout``). ``stop()`` also waits for a
    callback that is running.
    """

    def __init__(
        self,
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
        on_change: Callable[[TaskSetChange], object] | None = None,
    ) -> None:
        self._core = new_watch(
            service,
            network=network,
            interval=interval,
            jitter=jitter,
            removal_debounce=removal_debounce,
            fail_after=fail_after,
            exclude_self=exclude_self,
            exclude=exclude,
        )
        self._timeout = check_timeout(timeout)
        self._service = service
        self._network = network
        self._backend = backend
        self._callbacks: list[Callable[[TaskSetChange], object]] = []
        if on_change is not None:
            self.add_callback(on_change)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._changes = 0
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._finished = False

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<TaskWatcher {self._core.query_name!r} {state}: {len(self.current)} tasks>"

    # -- life cycle ------------------------------------------------------------

    def start(self: _Watcher) -> _Watcher:
        """Start watching in a background thread; returns the watcher itself."""
        chosen = self._backend if self._backend is not None else get_default_backend()
        if not isinstance(chosen, AsyncBackend):
            chosen = _ThreadedBackend(sync_backend(chosen))
        with self._lock:
            if self._thread is not None or self._stopping:
                raise RuntimeError("a TaskWatcher can be started once; create a new one")
            self._thread = threading.Thread(
                target=self._run,
                args=(chosen,),
                name=f"swarmdns-watch-{self._service}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching and join the thread; a lookup in flight is abandoned."""
        with self._lock:
            self._stopping = True
            loop, task, thread = self._loop, self._task, self._thread
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the watch had ended
                loop.call_soon_threadsafe(task.cancel)
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def __enter__(self: _Watcher) -> _Watcher:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the watch is going on."""
        with self._lock:
            return self._thread is not None and not self._finished

    # -- what it sees ------------------------------------------------------------

    @property
    def error(self) -> BaseException | None:
        """What ended the watch (``WatchTimeout``, a configuration error), or None."""
        return self._error

    def add_callback(self, callback: Callable[[TaskSetChange], object]) -> None:
        """Call ``callback(change)`` in the watcher's thread on every later change.

        To be sure to see the initial set too, pass ``on_change=`` instead.
        """
        if not callable(callback):
            raise TypeError(f"a callback must be callable, not {callback!r}")
        self._callbacks = [*self._callbacks, callback]

    def remove_callback(self, callback: Callable[[TaskSetChange], object]) -> None:
        """Stop calling ``callback``."""
        self._callbacks = [c for c in self._callbacks if c is not callback]

    def wait_for_change(self, timeout: float | None = None) -> bool:
        """Block until the next change (the initial set counts); False on timeout or end."""
        with self._changed:
            seen = self._changes
            self._changed.wait_for(lambda: self._changes > seen or self._finished, timeout)
            return self._changes > seen

    def wait_until_started(self, timeout: float | None = None) -> bool:
        """Block until the first lookup succeeded; False on timeout or if the watch ended."""
        with self._changed:
            self._changed.wait_for(lambda: self._core.started or self._finished, timeout)
            return self._core.started

    # -- the thread ----------------------------------------------------------------

    def _run(self, backend: AsyncBackend) -> None:
        import asyncio  # noqa: PLC0415 - asyncio only when a watcher runs

        from . import aio  # noqa: PLC0415 - aio imports this module

        loop = asyncio.new_event_loop()
        try:
            steps = watch_steps(self._core, self._timeout)
            watch = aio.drive(steps, aio.lookup(self._service, self._network, backend))
            task = loop.create_task(self._consume(watch))
            with self._lock:
                self._loop, self._task = loop, task
                if self._stopping:
                    task.cancel()  # stop() came before the loop was ready
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            pass
        except BaseException as error:  # kept for .error, then logged
            self._error = error
            logger().error("watching %s ended", self._core.query_name, exc_info=error)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            with self._changed:
                self._finished = True
                self._changed.notify_all()

    async def _consume(self, watch: AsyncIterator[TaskSetChange]) -> None:
        async for change in watch:
            self._deliver(change)

    def _deliver(self, change: TaskSetChange) -> None:
        with self._changed:
            self._changes += 1
            self._changed.notify_all()
        for callback in self._callbacks:
            try:
                callback(change)
            except Exception:
                logger().exception("a TaskWatcher callback failed on %r", change)
