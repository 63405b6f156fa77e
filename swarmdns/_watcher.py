"""Watches that run in a background thread, for code without a loop.

``TaskWatcher`` sits above both front ends: its thread runs the asyncio
driver of ``_async``, so that ``stop()`` can abandon a lookup in flight.
``FleetWatcher``'s thread runs the synchronous fleet driver of ``_sync``,
whose ``close()`` wakes it from any thread. ``_Background`` is what both share:
the thread's life cycle, callbacks and waiting for changes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from ipaddress import IPv4Address
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import asyncio

from ._backends.base import AsyncBackend, Backend
from ._backends.default import async_backend
from ._deadlines import seconds
from ._fleet import FleetCore, FleetView
from ._log import logger
from ._lookups import DEFAULT_TIMEOUT
from ._own_addresses import excluded_for
from ._runtime import Runtime
from ._sync import FleetWatch, settled
from ._values import HealthEvent, TaskSetChange, WatchSettings
from ._watch import (
    Stepper,
    WaitCore,
    WatchCore,
    WatchView,
    prepare_watch,
    watch_steps,
)
from ._where import where_for

_Watcher = TypeVar("_Watcher", bound="_Background")
#: How long ``stop()`` waits for the thread before cancelling the watch again.
_CANCEL_AGAIN_AFTER = 0.05


def _wait_limit(timeout: float | None) -> float | None:
    """A watcher's wait's ``timeout``, checked: None (no limit), or 0 to a day."""
    return None if timeout is None else seconds("timeout", timeout, zero=True)


class _Background:
    """A watch in a background thread: its life cycle, its callbacks, and waiting on it.

    A subclass says what the thread does (``_work``) and how to make it end
    (``_interrupt``, called again every 50 ms until the thread has ended).
    """

    def __init__(self, name: str, on_change: Callable[[TaskSetChange], object] | None) -> None:
        self._name = name
        self._callbacks: list[Callable[[TaskSetChange], object]] = []
        if on_change is not None:
            self.add_callback(on_change)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._changes = 0
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._finished = False

    # -- life cycle ------------------------------------------------------------

    def start(self: _Watcher) -> _Watcher:
        """Start watching in a background thread; returns the watcher itself."""
        with self._lock:
            if self._thread is not None or self._stopping:
                raise RuntimeError(
                    f"a {type(self).__name__} can be started once; create a new one"
                )
            self._thread = threading.Thread(
                target=self._run, name=f"swarmdns-watch-{self._name}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching and join the thread; a lookup in flight is abandoned.

        Returns once the thread has ended: at once, or, with a synchronous
        backend, when the lookup in flight ends (within its ``timeout``).
        """
        with self._lock:
            self._stopping = True
        thread = self._thread
        while True:
            # Interrupted again until it ends: a cancel can be lost (a library
            # that swallows it, or one landing as a step completes).
            self._interrupt()
            if thread is None or thread is threading.current_thread():
                return
            thread.join(_CANCEL_AGAIN_AFTER)
            if not thread.is_alive():
                return

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
        """Block until the next change (an initial set counts); False on timeout or end.

        Args:
            timeout: Seconds to wait at most (0 to a day); None: no limit.
        """
        limit = _wait_limit(timeout)
        with self._changed:
            seen = self._changes
            self._changed.wait_for(lambda: self._changes > seen or self._finished, limit)
            return self._changes > seen

    def _wait_for(self, wait: WaitCore) -> tuple[IPv4Address, ...]:
        """Block until ``wait`` has enough tasks, or its time is up."""
        with self._changed:
            if self._thread is None:
                raise RuntimeError(
                    f"the {type(self).__name__} was never started: call start() first"
                )
            self._changed.wait_for(lambda: wait.enough() or self._finished, wait.remaining())
            return wait.result(
                ended=self._finished,
                what=f"the {type(self).__name__}",
                how="stopped",
                cause=self._error,
            )

    # -- the thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._work()
        except BaseException as error:  # kept for .error, then logged
            self._error = error
            logger().error("watching %s ended", self._name, exc_info=error)
        finally:
            with self._changed:
                self._finished = True
                self._changed.notify_all()

    def _work(self) -> None:
        """Watch until interrupted; hand each change to ``_deliver``."""
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Make ``_work`` end soon; called from any thread, maybe more than once."""
        raise NotImplementedError

    def _deliver(self, change: TaskSetChange) -> None:
        with self._changed:
            self._changes += 1
            self._changed.notify_all()
        for callback in self._callbacks:
            try:
                callback(change)
            except Exception:
                logger().exception("a %s callback failed on %r", type(self).__name__, change)


class TaskWatcher(_Background, WatchView):
    """Follows a service's tasks in a background thread.

    For applications not built around a loop: read ``current`` at any time,
    and have ``on_change`` (or callbacks added later) called on each change,
    in the watcher's thread. A callback that raises is logged, and the watch
    goes on::

        with TaskWatcher("web", exclude_self=True, on_change=print) as peers:
            ...
            send_to_all(peers.current)

    The thread runs an asyncio loop, so ``stop()`` abandons a lookup in
    flight and returns at once; with a backend that has only a synchronous
    ``resolve()``, it waits for that lookup (at most ``timeout``). ``stop()``
    also waits for a callback that is running.

    It takes the arguments of ``watch_tasks()``, with the same meaning (a
    ``fail_after`` that passes ends the watch: see ``error``), and
    ``on_change``.

    Args:
        service: The service's name.
        on_health: As for ``watch_tasks()``; called in the watcher's thread.
        on_change: Called with each ``TaskSetChange``, the initial set included.

    Raises:
        InvalidName: At once, for a name Docker would not accept.
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
        min_tasks: int = 0,
        max_drop: float | None = None,
        hold_for: float | None = None,
        on_health: Callable[[HealthEvent], object] | None = None,
        runtime: Runtime | None = None,
        on_change: Callable[[TaskSetChange], object] | None = None,
    ) -> None:
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
        self._core: WatchCore = prepare_watch(
            service, settings, excluded=excluded_for(settings), on_health=on_health, where=where
        )
        self._where = where
        super().__init__(service, on_change)
        self._settings = settings
        self._service = service
        self._chosen: AsyncBackend | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<TaskWatcher {self._core.query_name!r} {state}: {len(self.current)} tasks>"

    def start(self) -> TaskWatcher:
        """Start watching in a background thread; returns the watcher itself.

        Raises:
            TypeError: The backend can answer neither synchronously nor asynchronously.
        """
        self._chosen = async_backend(self._settings.backend)
        super().start()
        return self

    def wait_until_started(self, timeout: float | None = None) -> bool:
        """Block until the first lookup succeeded; False on timeout or if the watch ended.

        Args:
            timeout: Seconds to wait at most (0 to a day); None: no limit.
        """
        limit = _wait_limit(timeout)
        with self._changed:
            self._changed.wait_for(lambda: self._core.started or self._finished, limit)
            return self._core.started

    def wait_for_tasks(self, count: int, *, timeout: float) -> tuple[IPv4Address, ...]:
        """Block until the watch shows at least ``count`` tasks; return them all.

        Waits on the watch's own lookups, so an application that already
        follows a service needs no second poller (``swarmdns.wait_for_tasks``)
        to wait for its peers.

        Args:
            count: How many tasks to wait for.
            timeout: Seconds to wait at most.

        Raises:
            NotEnoughTasks: Fewer than ``count`` were shown when ``timeout`` ran
                out (it carries the ``current`` addresses).
            RuntimeError: The watcher was never started, or has stopped (the
                error that ended it is the cause).
        """
        wait = WaitCore(self._core, count, seconds("timeout", timeout))
        return self._wait_for(wait)

    def _work(self) -> None:
        import asyncio  # noqa: PLC0415 - asyncio only when a watcher runs

        from . import _async  # noqa: PLC0415 - the same reason

        backend = self._chosen
        loop = asyncio.new_event_loop()
        try:
            steps = Stepper(watch_steps(self._core, self._settings.timeout))
            lookup = _async.lookup(self._service, self._settings.network, backend, self._where)
            watch = _async.AsyncTaskWatch(self._core, steps, lookup)
            task = loop.create_task(self._consume(watch))
            with self._lock:
                self._loop, self._task = loop, task
                if self._stopping:
                    task.cancel()  # stop() came before the loop was ready
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(task)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def _interrupt(self) -> None:
        with self._lock:
            loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the watch ended
                loop.call_soon_threadsafe(task.cancel)

    async def _consume(self, watch: AsyncIterator[TaskSetChange]) -> None:
        async for change in watch:
            self._deliver(change)


class FleetWatcher(_Background, FleetView):
    """Follows many services' tasks in a background thread, through one socket.

    ``watch_services()`` for code without a loop: read ``current[service]``
    at any time, and have ``on_change`` (or callbacks added later) called on
    each change of any service, in the watcher's thread::

        with FleetWatcher(["web", "api"], on_change=reload) as fleet:
            ...
            fleet.add("worker")

    ``stop()`` wakes the thread and returns once it has ended (with a
    backend other than ``DirectBackend``, once the lookup in flight ends).

    It takes the arguments of ``watch_services()``, with the same meaning (a
    ``fail_after`` that passes ends the watch: see ``error``), and
    ``on_change``.

    Args:
        services: The services' names; more can be added while it runs.
        on_health: As for ``watch_tasks()``; called in the watcher's thread.
        on_change: Called with each ``TaskSetChange``, every initial set included.

    Raises:
        InvalidName: At once, for a name Docker would not accept.
    """

    def __init__(
        self,
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
        on_change: Callable[[TaskSetChange], object] | None = None,
    ) -> None:
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
        self._core = settled(
            FleetCore(
                services,
                settings,
                excluded=excluded_for(settings),
                on_health=on_health,
                where=where,
            )
        )
        self._watch = FleetWatch.driven(self._core)
        super().__init__("fleet", on_change)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<FleetWatcher {state}: {len(self._core.slots())} services>"

    def _wake(self) -> None:
        self._watch._wake()  # the watch this watcher runs

    def wait_for_tasks(
        self, service: str, count: int, *, timeout: float
    ) -> tuple[IPv4Address, ...]:
        """Block until ``service`` shows at least ``count`` tasks; return them all.

        Raises:
            KeyError: ``service`` is not followed.
            NotEnoughTasks: Fewer than ``count`` were shown when ``timeout`` ran
                out (it carries the ``current`` addresses).
            RuntimeError: The watcher was never started, or has stopped.
        """
        wait = WaitCore(self._core.watch_of(service), count, seconds("timeout", timeout))
        return self._wait_for(wait)

    def _work(self) -> None:
        changes: Iterator[TaskSetChange] = self._watch
        with self._watch:
            if self._stopping:
                return
            for change in changes:
                self._deliver(change)

    def _interrupt(self) -> None:
        self._watch.close()
