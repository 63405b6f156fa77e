"""The synchronous API: lookups and watches, carried out in the calling thread.

The plans (``_lookups``) and the watch's steps (``_watch``) decide; this
module only carries questions to a backend, answers back, and sleeps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from ipaddress import IPv4Address
from typing import TypeVar, cast

from . import _lookups
from ._backends.base import AsyncBackend, Backend, WireBackend, speaks_wire
from ._backends.default import get_default_backend, sync_backend
from ._backends.fleet import SelectorTraffic
from ._deadlines import Deadline, seconds
from ._errors import SwarmDNSError
from ._fleet import FleetCore, FleetView, Turns
from ._lookups import DEFAULT_TIMEOUT, Plan, Result
from ._model import Question, Task
from ._own_addresses import excluded_for
from ._runtime import Runtime, Where
from ._values import HealthEvent, TaskSetChange, WatchSettings
from ._watch import (
    Lookup,
    LookupResult,
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


def _ask(backend: Backend, question: Question, deadline: Deadline) -> Result:
    remaining = deadline.remaining()
    if remaining <= 0:
        return _lookups.expired(question, deadline)
    try:
        answer = backend.resolve(question, remaining)
    except Exception as error:  # any backend failure is a failed question
        return _lookups.failed(question, backend, error)
    return _lookups.checked(question, backend, answer)


def _ask_all(backend: Backend, questions: Sequence[Question], deadline: Deadline) -> list[Result]:
    if len(questions) == 1:
        return [_ask(backend, questions[0], deadline)]
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - slow to import

    workers = min(_lookups.MAX_CONCURRENT, len(questions))
    with ThreadPoolExecutor(workers, thread_name_prefix="swarmdns") as pool:
        return list(pool.map(lambda q: _ask(backend, q, deadline), questions))


def _run(plan: Plan[T], backend: Backend | AsyncBackend | None, timeout: float) -> T:
    """Drive ``plan`` to its result, asking ``backend`` within ``timeout`` seconds."""
    deadline = Deadline(timeout)
    chosen = sync_backend(backend)
    try:
        questions = next(plan)
        while True:
            batch = _lookups.batch_deadline(deadline, questions)
            questions = plan.send(_ask_all(chosen, questions, batch))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def service_vip(
    service: str,
    *,
    network: str | None = None,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    runtime: Runtime | None = None,
) -> IPv4Address:
    """The virtual IP of ``service``: the A record of ``<service>[.<network>]``.

    ``swarmdns.aio.service_vip`` is the asyncio twin.

    Args:
        service: The service's name (``web``, or ``shop_web`` in a stack).
        network: Ask about the service's address on this network only.
        backend: Who answers; by default the process-wide default backend.
        timeout: Seconds the whole lookup may take.
        runtime: ``"swarm"``, ``"compose"`` or ``"auto"`` (by default
            ``SWARMDNS_RUNTIME``, else ``"auto"``): see docs/compose.md.

    Raises:
        ServiceNotFound: NXDOMAIN: no such service, or none of its tasks runs.
        NoVirtualIP: The service runs in dnsrr mode (several addresses).
        ResolutionTimeout: No answer within ``timeout``.
        ResolutionError: The nameserver failed or answered nonsense.
        InvalidName: ``service`` or ``network`` is not a name Docker allows.
    """
    where = where_for(runtime, backend)
    return _run(_lookups.service_vip(service, network, where), backend, timeout)


def task_ips(
    service: str,
    *,
    network: str | None = None,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    runtime: Runtime | None = None,
) -> tuple[IPv4Address, ...]:
    """The addresses of every running task of ``service``, sorted, from ``tasks.<service>``.

    A service that does not exist, or has no running task, gives ``()``: the
    engine answers both with NXDOMAIN. Failures raise instead, so that an
    empty tuple always means what it says. ``swarmdns.aio.task_ips`` is the
    asyncio twin.

    Args:
        service: The service's name.
        network: Ask about the service's addresses on this network only.
        backend: Who answers; by default the process-wide default backend.
        timeout: Seconds the whole lookup may take.
        runtime: ``"swarm"``, ``"compose"`` or ``"auto"`` (by default
            ``SWARMDNS_RUNTIME``, else ``"auto"``): see docs/compose.md.

    Raises:
        ResolutionTimeout: No answer within ``timeout``.
        ResolutionError: The nameserver failed or answered nonsense.
        InvalidName: ``service`` or ``network`` is not a name Docker allows.
    """
    where = where_for(runtime, backend)
    return _run(_lookups.task_ips(service, network, where), backend, timeout)


def tasks(
    service: str,
    *,
    network: str | None = None,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    runtime: Runtime | None = None,
) -> tuple[Task, ...]:
    """Every running task of ``service``, with its identity from the engine's PTR records.

    The PTR lookups run concurrently, within the same ``timeout``. A task whose
    PTR lookup fails keeps its ``ip``; its other fields are None.
    ``swarmdns.aio.tasks`` is the asyncio twin.

    Args:
        service: The service's name.
        network: Ask about the service's tasks on this network only.
        backend: Who answers; by default the process-wide default backend.
        timeout: Seconds the whole lookup, PTR lookups included, may take.
        runtime: ``"swarm"``, ``"compose"`` or ``"auto"`` (by default
            ``SWARMDNS_RUNTIME``, else ``"auto"``): see docs/compose.md.

    Raises:
        ResolutionTimeout: No answer to the ``tasks.<service>`` query within ``timeout``.
        ResolutionError: The nameserver failed or answered nonsense.
        InvalidName: ``service`` or ``network`` is not a name Docker allows.
    """
    where = where_for(runtime, backend)
    return _run(_lookups.tasks(service, network, where), backend, timeout)


def whoami(
    network: str | None = None,
    *,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    runtime: Runtime | None = None,
) -> Task:
    """This container's own address, with its task (Swarm) or its container (Compose).

    From the engine's PTR records of this container's own addresses: no
    manager or API socket needed, and never a virtual IP, ingress or
    gateway-bridge address. ``swarmdns.aio.whoami`` is the asyncio twin.

    Args:
        network: The network whose address is meant (needed on several).
        backend: As for ``task_ips()``.
        timeout: As for ``task_ips()``.
        runtime: As for ``task_ips()``.

    Raises:
        SelfUnknown: No own address is named as a task or container, none
            is on ``network``, or several networks are and it is None.
        ResolutionTimeout: No answer within ``timeout``.
    """
    where = where_for(runtime, backend, own=True)
    return _run(_lookups.whoami(network, where), backend, timeout)


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
) -> TaskWatch:
    """Follow the tasks of ``service``: yield a ``TaskSetChange`` whenever they change.

    The first event is the initial set. A failed lookup (timeout, SERVFAIL,
    REFUSED, a garbled answer) never changes the set: the watch keeps the last
    good one and retries with backoff. NXDOMAIN does change it: the engine
    answers so when the service has no task left (Docker 29.x, wrongly, also
    after a node came back: ``min_tasks`` and ``max_drop`` hold such a drop).
    ``swarmdns.aio.watch_tasks`` is the asyncio twin; ``TaskWatcher`` watches
    in a background thread. Every way of watching takes the options below,
    from ``network`` to ``on_health``, with the meaning said here.

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
        min_tasks: Never report fewer tasks than this: an answer that would
            leave fewer is held, and the watch keeps its last set (0, the
            default: no minimum). The initial set is reported as it is.
        max_drop: Hold an answer that would remove more than this share
            (above 0, at most 1) of the set at once (None, the default: any).
        hold_for: Report an answer held anyway once the hold has lasted this
            many seconds (None, the default: hold until an answer that is not
            held comes).
        on_health: Called with a ``LookupsFailing`` when lookups start
            failing, and a ``LookupsRecovered`` when they work again, a
            ``ChangeHeld`` when a change is held and a ``HoldReleased`` when
            the hold ends, where the lookups run (here, in ``next()``); one
            that raises is logged.
        runtime: ``"swarm"``, ``"compose"`` or ``"auto"`` (by default
            ``SWARMDNS_RUNTIME``, else ``"auto"``): see docs/compose.md.

    Returns:
        An iterator of changes that also shows the watch's ``current`` set and
        its ``health``; ``close()`` ends it.

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
    return TaskWatch(core, steps, _lookup(service, settings.network, settings.backend, where))


class TaskWatch(WatchView, Iterator[TaskSetChange]):
    """The iterator ``watch_tasks()`` returns: changes, plus the watch's state.

    Its lookups run while it is asked for the next change (or waits, in
    ``wait_for_tasks``); between them it holds no socket and no thread.
    ``close()`` (or leaving a ``with`` block) ends it.
    ``swarmdns.aio.AsyncTaskWatch`` is the asyncio twin.
    """

    def __init__(
        self, core: WatchCore, steps: Stepper, lookup: Callable[[float], LookupResult]
    ) -> None:
        self._core = core
        self._steps = steps
        self._lookup = lookup

    def __next__(self) -> TaskSetChange:
        pending = self._steps.pending
        if not pending:
            _run_steps(self._steps, self._lookup, lambda: bool(pending))
        if self._steps.ended or not pending:
            raise StopIteration
        return pending.popleft()

    def wait_for_tasks(self, count: int, *, timeout: float) -> tuple[IPv4Address, ...]:
        """Wait until the watch shows at least ``count`` tasks; return them all.

        Runs the watch's own lookups, so an application that follows its
        peers needs no second poller to wait for them. Changes seen while
        waiting are kept for the iterator. A lookup in flight at the deadline
        is let finish (it takes at most the watch's ``timeout``).

        Raises:
            NotEnoughTasks: Fewer than ``count`` were shown when ``timeout``
                ran out (it carries the ``current`` addresses).
            RuntimeError: The watch is closed.
        """
        wait = WaitCore(self._core, count, seconds("timeout", timeout))
        _run_steps(self._steps, self._lookup, wait.enough, wait.deadline)
        return wait.result(ended=self._steps.ended)

    def close(self) -> None:
        """End the watch."""
        self._steps.close()

    def __enter__(self) -> TaskWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _run_steps(
    steps: Stepper,
    lookup: Callable[[float], LookupResult],
    until: Callable[[], bool],
    deadline: Deadline | None = None,
) -> None:
    """Carry out a watch's steps until ``until()`` holds, the deadline passes, or it ends."""
    while (action := steps.next_action(until, deadline)) is not None:
        if isinstance(action, Lookup):
            steps.took(lookup(action.timeout))
        else:
            time.sleep(action.seconds)


def _lookup(
    service: str, network: str | None, backend: Backend | AsyncBackend | None, where: Where
) -> Callable[[float], LookupResult]:
    """A watch's lookup of its instances' name: the addresses, or the error."""

    def task_ips_or_error(timeout: float) -> LookupResult:
        try:
            return _run(_lookups.task_ips(service, network, where), backend, timeout)
        except SwarmDNSError as error:
            return error

    return task_ips_or_error


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
    runtime: Runtime | None = None,
) -> tuple[IPv4Address, ...]:
    """Wait until at least ``count`` tasks of ``service`` are visible; return them all.

    For cluster bootstrap: wait for the peers before forming the cluster.
    Failed lookups are retried until ``timeout``. DNS lists only healthy
    tasks: behind a HEALTHCHECK that passes only once the cluster has formed,
    it never gets enough (see "Running in Swarm" in the docs for the way out).
    ``swarmdns.aio.wait_for_tasks`` is the asyncio twin.

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
        runtime: ``"swarm"``, ``"compose"`` or ``"auto"`` (by default
            ``SWARMDNS_RUNTIME``, else ``"auto"``): see docs/compose.md.

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
    _run_steps(stepper, _lookup(service, network, backend, where), lambda: False)  # to their end
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
) -> FleetWatch:
    """Follow the tasks of many services at once: yield a ``TaskSetChange`` whenever one changes.

    Each service's first event is its initial set. Every rule of
    ``watch_tasks()`` holds for each service on its own: a failed lookup never
    changes its set, NXDOMAIN means no tasks, and removals are debounced. A
    service that fails or has no tasks is asked less often, from the
    interval up to 8 intervals or 5 s, and such doubtful lookups hold at
    most 32 of the 64 places in flight, so that the services that answer
    keep their interval (see docs/watching.md). With the default backend
    (or a ``DirectBackend``) every query goes through one UDP socket held for
    the whole watch, matched to its service by ID and question, with TCP for
    truncated answers; other
    backends are asked one lookup at a time. The lookups run while the
    iterator is asked for its next change (or waits, in ``wait_for_tasks``).
    ``swarmdns.aio.watch_services`` is the asyncio twin; ``FleetWatcher``
    watches in a background thread.

    ``services`` are the services' names; more can be added while it runs.
    The other arguments are the options of ``watch_tasks()``, for each
    service's watch, except that ``fail_after`` ends the whole watch once any
    one service has gone that long without a successful lookup (by default
    the watch goes on: a service whose lookups fail keeps its last set, and
    ``health`` or ``on_health`` says so).

    Returns:
        An iterator of changes that also shows each service's ``current`` set
        and ``health``, and can ``add()`` and ``discard()`` services;
        ``close()`` ends it.

    Raises:
        InvalidName: At once, for a name Docker would not accept.
        WatchTimeout: From the iterator, once a service's ``fail_after`` has passed.
        SwarmDNSError: From the iterator, for an error that retrying will not
            mend (a ``ConfigurationError``); the watch is then over. At once,
            when ``runtime`` is ``"auto"`` and the engine could not be asked
            where this runs (see docs/compose.md); pass ``runtime`` to skip that.
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
    return FleetWatch.driven(settled(core))


def settled(core: FleetCore) -> FleetCore:
    """``core``, told where it runs before its first lookup (raises if the engine cannot be)."""
    if core.unsettled:
        settings = core.settings
        core.settle(_run(_lookups.settle(core.where), settings.backend, settings.timeout))
    return core


class FleetWatch(FleetView, Iterator[TaskSetChange]):
    """The iterator ``watch_services()`` returns: changes, each service's state, and control.

    ``add()`` and ``discard()`` may be called from any thread, also while
    another thread waits for the next change. ``close()`` (or leaving a
    ``with`` block) ends the watch and closes its sockets.
    ``swarmdns.aio.AsyncFleetWatch`` is the asyncio twin.
    """

    def __init__(self, core: FleetCore, driver: _FleetDriver) -> None:
        self._core = core
        self._driver = driver

    def _wake(self) -> None:
        self._driver.wake()

    @classmethod
    def driven(cls, core: FleetCore) -> FleetWatch:
        """The watch of ``core``, its lookups through one socket or through its backend."""
        backend, timeout = core.settings.backend, core.settings.timeout
        chosen = get_default_backend() if backend is None else backend
        if speaks_wire(chosen):
            return cls(core, _SocketDriver(core, chosen, timeout))
        return cls(core, _LookupDriver(core, sync_backend(chosen), timeout))

    def __next__(self) -> TaskSetChange:
        changes = self._core.changes
        if not changes:
            with self._core.taking("thread"):
                self._driver.run(lambda: bool(changes))
        if self._driver.closed or not changes:
            raise StopIteration
        return changes.popleft()

    def wait_for_tasks(
        self, service: str, count: int, *, timeout: float
    ) -> tuple[IPv4Address, ...]:
        """Wait until ``service`` shows at least ``count`` tasks; return them all.

        Runs the watch's own lookups, so an application that follows its
        peers needs no second poller to wait for them. Changes seen while
        waiting are kept for the iterator; another thread may iterate meanwhile.

        Raises:
            KeyError: ``service`` is not followed.
            NotEnoughTasks: Fewer than ``count`` were shown when ``timeout``
                ran out (it carries the ``current`` addresses).
            RuntimeError: The watch is closed.
        """
        wait = WaitCore(self._core.watch_of(service), count, seconds("timeout", timeout))
        if not wait.enough():
            self._driver.run(wait.enough, wait.deadline)
        return wait.result(ended=self._driver.closed)

    def close(self) -> None:
        """End the watch and close its sockets; safe from any thread, and more than once."""
        self._driver.close()

    def __enter__(self) -> FleetWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _FleetDriver:
    """Carries out a fleet's lookups in the calling thread, until told to stop.

    One thread runs it at a time, others wait on its steps (``Turns``);
    ``wake()`` and ``close()`` may come from any thread.
    """

    def __init__(self, core: FleetCore, timeout: float) -> None:
        self._core = core
        self._timeout = timeout
        self._turns = Turns()

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._turns.closing

    def run(self, until: Callable[[], bool], deadline: Deadline | None = None) -> None:
        """Carry out lookups until ``until()`` holds, ``deadline`` passes, or the watch closes.

        Raises:
            SwarmDNSError: A lookup failed in a way retrying will not mend;
                the watch is closed (every thread in ``run()`` gets the error).
        """
        turns, error = self._turns, None
        if not turns.take(until, deadline):
            return
        try:
            self._catch_up()
            while not until() and not turns.closing:
                if deadline is not None and deadline.remaining() <= 0:
                    return
                self._step(deadline)
                turns.stepped()
        except BaseException as failure:
            error = failure
            raise
        finally:
            if turns.give_back(error):
                self._release()

    def wake(self) -> None:
        """Have the running loop look at the schedule again (a service was added)."""

    def close(self) -> None:
        """Stop the loop (from any thread) and release what it holds once it has stopped."""
        if self._turns.close():
            self._release()
        else:
            self.wake()

    def _wait_time(
        self, deadline: Deadline | None, *more: float | None, room: bool = True
    ) -> float:
        """Seconds until the next thing to do: a lookup due (if there is room), a timeout...

        With no room for another query in flight, a lookup due waits for an answer
        or a timeout instead of waking the loop again and again.
        """
        now = time.monotonic()
        due = self._core.next_due() if room else None
        times = [t - now for t in (due, *more) if t is not None]
        if deadline is not None:
            times.append(deadline.remaining())
        return max(0.0, min(times, default=self._core.interval))

    def _catch_up(self) -> None:
        """Take what came in while nobody ran the watch."""

    def _step(self, deadline: Deadline | None) -> None:
        """Do what is due, or wait for it."""
        raise NotImplementedError

    def _release(self) -> None:
        """Close what the driver holds."""


class _LookupDriver(_FleetDriver):
    """A fleet's lookups through a backend's own ``resolve()``, one after the other."""

    def __init__(self, core: FleetCore, backend: Backend, timeout: float) -> None:
        super().__init__(core, timeout)
        self._backend = backend
        self._woken = threading.Event()

    def wake(self) -> None:
        self._woken.set()

    def _step(self, deadline: Deadline | None) -> None:
        core = self._core
        due = core.due(time.monotonic(), room=1)
        if due:
            lookup = _lookup(due[0].service, core.network, self._backend, core.where)
            core.finished(due[0], lookup(self._timeout))
            return
        self._woken.wait(self._wait_time(deadline))
        self._woken.clear()


class _SocketDriver(_FleetDriver):
    """A fleet's lookups through one UDP socket (TCP for truncated answers), on a selector."""

    def __init__(self, core: FleetCore, backend: WireBackend, timeout: float) -> None:
        super().__init__(core, timeout)
        self._traffic = SelectorTraffic(core, backend, timeout)

    def wake(self) -> None:
        self._traffic.wake()

    def _catch_up(self) -> None:
        self._traffic.catch_up()

    def _step(self, deadline: Deadline | None) -> None:
        self._traffic.step(lambda *more, room: self._wait_time(deadline, *more, room=room))

    def _release(self) -> None:
        self._traffic.close()
