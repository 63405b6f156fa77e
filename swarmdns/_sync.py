"""The synchronous API: lookups and watches, carried out in the calling thread.

The plans (``_lookups``) and the watch's steps (``_watch``) decide; this
module only carries questions to a backend, answers back, and sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from ipaddress import IPv4Address
from typing import TypeVar

from . import _lookups
from ._backends.base import AsyncBackend, Backend
from ._backends.default import sync_backend
from ._deadlines import Deadline, seconds
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
            questions = plan.send(_ask_all(chosen, questions, deadline))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def service_vip(
    service: str,
    *,
    network: str | None = None,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> IPv4Address:
    """The virtual IP of ``service``: the A record of ``<service>[.<network>]``.

    ``swarmdns.aio.service_vip`` is the asyncio twin.

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
    return _run(_lookups.service_vip(service, network), backend, timeout)


def task_ips(
    service: str,
    *,
    network: str | None = None,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
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

    Raises:
        ResolutionTimeout: No answer within ``timeout``.
        ResolutionError: The nameserver failed or answered nonsense.
        InvalidName: ``service`` or ``network`` is not a name Docker allows.
    """
    return _run(_lookups.task_ips(service, network), backend, timeout)


def tasks(
    service: str,
    *,
    network: str | None = None,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
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

    Raises:
        ResolutionTimeout: No answer to the ``tasks.<service>`` query within ``timeout``.
        ResolutionError: The nameserver failed or answered nonsense.
        InvalidName: ``service`` or ``network`` is not a name Docker allows.
    """
    return _run(_lookups.tasks(service, network), backend, timeout)


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
    answers so when the service has no task left. ``swarmdns.aio.watch_tasks``
    is the asyncio twin; ``TaskWatcher`` watches in a background thread.

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
    return TaskWatch(core, _drive(steps, _lookup(service, network, backend)))


class TaskWatch(WatchView, Iterator[TaskSetChange]):
    """The iterator ``watch_tasks()`` returns: changes, plus the watch's state.

    ``close()`` (or leaving a ``with`` block) ends it; between changes it
    holds no socket and no thread. ``swarmdns.aio.AsyncTaskWatch`` is the
    asyncio twin.
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
    """A watch's lookup of ``tasks.<service>``: the addresses, or the error."""

    def task_ips_or_error(timeout: float) -> LookupResult:
        try:
            return _run(_lookups.task_ips(service, network), backend, timeout)
        except SwarmDNSError as error:
            return error

    return task_ips_or_error


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
    Failed lookups are retried until ``timeout``. ``swarmdns.aio.wait_for_tasks``
    is the asyncio twin.

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
    changes = _drive(steps, _lookup(service, network, backend))
    while True:
        try:
            next(changes)  # waiting reports no changes
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
