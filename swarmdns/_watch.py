"""Following a service's tasks: diffing, debounce, holds, error policy and pacing, without I/O.

``WatchCore`` is told the outcome of each lookup and decides what to report
and when to look again; ``watch_steps()`` and ``wait_steps()`` turn those
decisions into steps (look up, sleep, report). The synchronous iterator, the
asynchronous iterator and ``TaskWatcher``'s thread only carry out the steps.
``prepare_watch()`` and ``prepare_wait()`` set a watch up from its options,
checked once (``WatchSettings``), for every front end. A watch's changes wait
for the user in a ``ChangeQueue`` (``_values``); its health events go to the
``on_health`` callback of its front end.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Generator, Iterable
from datetime import datetime, timedelta, timezone
from ipaddress import IPv4Address

from attrs import frozen

from ._deadlines import Deadline, shown
from ._errors import (
    NotEnoughTasks,
    ResolutionError,
    ResolutionTimeout,
    SwarmDNSError,
    WatchTimeout,
)
from ._log import logger
from ._lookups import DEFAULT_TIMEOUT, instances_query
from ._model import Disowned
from ._runtime import SWARM, Where
from ._values import (
    ChangeQueue,
    HealthEvent,
    Hold,
    LookupsFailing,
    LookupsRecovered,
    TaskSetChange,
    WatchHealth,
    WatchSettings,
    checked_callback,
)

#: A failed lookup is retried after interval / 16, then twice that each time,
#: up to the interval.
_BACKOFF_DIVISOR = 16


def is_transient(error: SwarmDNSError) -> bool:
    """Whether a lookup error may pass: a timeout or a failed or garbled answer.

    Configuration and name errors will not get better by asking again.
    """
    return isinstance(error, ResolutionTimeout | ResolutionError)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class WatchCore:
    """The decisions of one watch: what changed, what to report, when to ask again.

    Args:
        service: The service watched, for events and messages.
        query_name: The name looked up, for messages (``tasks.web.``).
        interval, jitter, removal_debounce, fail_after, min_tasks, max_drop,
            hold_for: A watch's options, as ``WatchSettings`` checked them
            (``prepare_watch()`` passes them).
        exclude: Addresses never to report (this container's own).
        clock: Monotonic seconds, for pacing, ``fail_after`` and health events.
        wall_clock: The time stamped on events and health.
        rng: The source of jitter.
        on_health: Called with a ``LookupsFailing`` when lookups start failing
            and a ``LookupsRecovered`` when they work again, a ``ChangeHeld``
            when a change is held and a ``HoldReleased`` when the hold ends;
            one that raises is logged.

    A change that removes tasks goes through the removal debounce first;
    what the debounce lets through is then judged by its ``Hold``. A
    change held is not reported (its additions are), and its removals stay
    due: every later lookup judges them again, with the answer it brings.
    """

    def __init__(
        self,
        service: str,
        *,
        query_name: str,
        interval: float = 2.0,
        jitter: float = 0.1,
        removal_debounce: int = 1,
        fail_after: float | None = None,
        min_tasks: int = 0,
        max_drop: float | None = None,
        hold_for: float | None = None,
        exclude: Iterable[IPv4Address] = (),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
        rng: random.Random | None = None,
        on_health: Callable[[HealthEvent], object] | None = None,
    ) -> None:
        self.service = service
        self.query_name = query_name
        self.interval = interval
        self.jitter = jitter
        self.removal_debounce = removal_debounce
        self.fail_after = fail_after
        self.exclude = frozenset(exclude)
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng if rng is not None else random.Random()
        self._on_health = checked_callback("on_health", on_health)
        self._reported: frozenset[IPv4Address] | None = None
        self._current: tuple[IPv4Address, ...] = ()  # _reported, sorted once per change
        self._missing: dict[IPv4Address, int] = {}
        self._failures = 0
        self._lookups = 0
        self._failures_by_kind: dict[str, int] = {}
        self._changes = 0
        self._last_error: SwarmDNSError | None = None
        self._last_success: datetime | None = None
        self._failing_since: datetime | None = None
        self._failed_at = 0.0  # when the outage under way began, on the monotonic clock
        self._healthy_since = clock()
        self._last_answer: tuple[IPv4Address, ...] | None = None
        self._forwarded: str | None = None  # why the last answer was not the engine's own
        self._hold = Hold(
            service, query_name, min_tasks=min_tasks, max_drop=max_drop, hold_for=hold_for
        )
        self._naming: Callable[[], str | None] | None = None
        # The thread that drives the watch and the threads that read it.
        self._lock = threading.RLock()

    def begin(self) -> None:
        """Start the clocks: the watch begins now, not when it was set up."""
        with self._lock:
            self._healthy_since = self._clock()

    @property
    def current(self) -> tuple[IPv4Address, ...]:
        """The addresses reported so far, sorted (empty before the first lookup)."""
        with self._lock:
            return self._current

    @property
    def started(self) -> bool:
        """Whether a lookup has succeeded yet (and so the initial set is known)."""
        with self._lock:
            return self._reported is not None

    @property
    def health(self) -> WatchHealth:
        """A snapshot of how the lookups are going."""
        with self._lock:
            return WatchHealth(
                consecutive_failures=self._failures,
                last_success=self._last_success,
                last_error=self._last_error,
                lookups=self._lookups,
                failures_by_kind=dict(self._failures_by_kind),
                changes=self._changes,
                failing_since=self._failing_since,
                held=self._hold.held,
                holds=self._hold.holds,
                forwarded=self._forwarded,
            )

    def name_when_told(self, name: Callable[[], str | None]) -> None:
        """Name the watch in its messages by ``name()``, once known (``auto``'s runtime)."""
        self._naming = name

    def _named(self) -> None:
        name = self._naming() if self._naming is not None else None
        if name is not None:
            self.query_name = self._hold.query_name = name
            self._naming = None

    def succeeded(self, addresses: Iterable[IPv4Address]) -> TaskSetChange | None:
        """Take a successful lookup's addresses; return the change to report, if any.

        The first success after failures also tells ``on_health``, and so do
        the start and the end of a hold (once the watch's state is updated,
        outside its lock).
        """
        answer = tuple(addresses)
        forwarded = addresses.reason if isinstance(addresses, Disowned) else None
        with self._lock:
            if self._naming is not None:
                self._named()
            if forwarded != self._forwarded:
                self._note_forwarded(forwarded)
            # The usual case: the same answer as last time, nothing pending.
            # Comparing tuples is far cheaper than hashing the addresses.
            if answer == self._last_answer and self._repeated():
                return None
            self._last_answer = answer
            seen = frozenset(answer) - self.exclude
            events: list[HealthEvent] = []
            recovery = self._count_success(len(seen))
            if recovery is not None:
                events.append(recovery)
            change = self._succeeded(seen, events)
        for event in events:
            self._tell(event)
        return change

    def _note_forwarded(self, reason: str | None) -> None:
        """The answers turned forwarded, or the engine's own again: say so once."""
        if reason is not None:
            logger().warning(
                "the engine forwarded %s to the host's resolvers, so it reads as no tasks: %s",
                self.query_name,
                reason,
            )
        self._forwarded = reason

    def repeated(self) -> bool:
        """Take a successful lookup with the same answer as the last one, if nothing is pending.

        For a caller that compares answers more cheaply than ``succeeded``
        can. False: a removal or a recovery is pending, so call ``succeeded``.
        """
        with self._lock:
            return self._repeated()

    def _repeated(self) -> bool:
        if self._missing or self._failures or self._reported is None:
            return False
        self._lookups += 1
        self._last_success = self._wall_clock()
        self._healthy_since = self._clock()
        return True

    def _count_success(self, tasks: int) -> LookupsRecovered | None:
        """Count a success; if it ends an outage, the event that says so."""
        self._lookups += 1
        self._last_success = self._wall_clock()
        self._healthy_since = self._clock()
        if not self._failures:
            return None
        logger().info(
            "looking up %s works again after %d failed attempts; %d tasks",
            self.query_name,
            self._failures,
            tasks,
        )
        recovery = LookupsRecovered(
            service=self.service,
            at=self._healthy_since,
            failed_for=self._healthy_since - self._failed_at,
            failures=self._failures,
            observed_at=self._last_success,
        )
        self._failures = 0
        self._failing_since = None
        self._last_error = None
        return recovery

    def _succeeded(
        self, seen: frozenset[IPv4Address], events: list[HealthEvent]
    ) -> TaskSetChange | None:
        """The change ``seen`` makes; the hold events it makes go to ``events``."""
        if self._reported is None:
            self._report(seen)
            return self._change(added=seen, removed=frozenset())
        for address in seen:
            self._missing.pop(address, None)
        due: set[IPv4Address] = set()
        for address in self._reported - seen:
            # Counted on while a removal is held, so that it stays due.
            count = self._missing[address] = self._missing.get(address, 0) + 1
            if count >= self.removal_debounce:
                due.add(address)
        added = seen - self._reported
        removed = frozenset(due)
        if (removed or self._hold.held is not None) and not self._hold.believed(
            before=self._reported | added,
            removed=removed,
            now=self._healthy_since,  # the end of this lookup, on the monotonic clock
            observed_at=self._last_success or self._wall_clock(),
            events=events,
        ):
            removed = frozenset()
        for address in removed:
            del self._missing[address]
        if not added and not removed:
            return None
        self._report((self._reported | added) - removed)
        return self._change(added=frozenset(added), removed=removed)

    def _report(self, addresses: frozenset[IPv4Address]) -> None:
        self._reported = addresses
        self._current = tuple(sorted(addresses, key=int))  # as IPv4Address orders, in C

    def failed(self, error: SwarmDNSError) -> None:
        """Take a failed lookup: the set stays as it is.

        The first failure of an outage tells ``on_health`` (outside the lock).

        Raises:
            SwarmDNSError: ``error`` itself when it will not pass by retrying.
            WatchTimeout: ``fail_after`` seconds went by without a success.
        """
        if not is_transient(error):
            raise error
        with self._lock:
            if self._naming is not None:
                self._named()
            now = self._clock()
            failing = self._failed(error, now)
            stale = now - self._healthy_since
            failures = self._failures
        if failing is not None:
            self._tell(failing)
        if self.fail_after is not None and stale >= self.fail_after:
            raise WatchTimeout(
                f"no successful lookup of {self.query_name!r} for {stale:.3g} s"
                f" ({failures} attempts), over fail_after={self.fail_after:g}; last error:"
                f" {error}",
                name=self.query_name,
                nameserver=error.nameserver,
                last_error=error,
                service=self.service,
                failed_for=stale,
            ) from error

    def _failed(self, error: SwarmDNSError, now: float) -> LookupsFailing | None:
        """Count a failure at ``now``; if it begins an outage, the event that says so."""
        self._failures += 1
        self._lookups += 1
        kind = type(error).__name__
        self._failures_by_kind[kind] = self._failures_by_kind.get(kind, 0) + 1
        self._last_error = error
        if self._failures > 1:
            return None
        self._failed_at = now
        # The wall-clock time of ``now``, not of this line: the thread may have
        # waited between the two, and a recovery's ``failed_for`` is told in
        # monotonic seconds from ``now``.
        self._failing_since = self._wall_clock() - timedelta(seconds=self._clock() - now)
        logger().warning(
            "looking up %s failed; keeping the last %d known tasks and retrying: %s",
            self.query_name,
            len(self._reported or ()),
            error,
        )
        return LookupsFailing(
            service=self.service, since=now, error=error, observed_at=self._failing_since
        )

    def _tell(self, event: HealthEvent) -> None:
        """Hand ``event`` to ``on_health``; one that raises is logged, and the watch goes on."""
        if self._on_health is None:
            return
        try:
            self._on_health(event)
        except Exception:
            logger().exception("an on_health callback failed on %r", event)

    def next_delay(self) -> float:
        """Seconds to wait before the next lookup: the interval, or a backoff after failures."""
        if self._failures:
            first = self.interval / _BACKOFF_DIVISOR
            base = min(self.interval, first * 2.0 ** min(self._failures - 1, 32))
        else:
            base = self.interval
        return base * (1 + self._rng.uniform(-self.jitter, self.jitter))

    def _change(
        self, *, added: frozenset[IPv4Address], removed: frozenset[IPv4Address]
    ) -> TaskSetChange:
        self._changes += 1
        return TaskSetChange(
            service=self.service,
            added=added,
            removed=removed,
            current=self.current,
            observed_at=self._wall_clock(),
        )


class WatchView:
    """What every way of watching shows of its watch: the current set, its health."""

    _core: WatchCore

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._core.query_name!r}: {len(self.current)} tasks>"

    @property
    def service(self) -> str:
        """The service watched."""
        return self._core.service

    @property
    def current(self) -> tuple[IPv4Address, ...]:
        """The addresses as last reported, sorted (empty before the first lookup)."""
        return self._core.current

    @property
    def health(self) -> WatchHealth:
        """Consecutive failures, the last success and the last error."""
        return self._core.health


#: More tasks than ``tasks.<service>`` can ever show: one per IPv4 address.
_MOST_TASKS = 2**32


class WaitCore:
    """The decisions of ``wait_for_tasks()``: enough yet, or out of time."""

    def __init__(
        self,
        watch: WatchCore,
        count: int,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(count, bool) or not isinstance(count, int):
            raise TypeError(f"count must be a whole number of tasks, not {shown(count)}")
        if not 0 <= count <= _MOST_TASKS:
            raise ValueError(
                f"count must be from 0 to {_MOST_TASKS} (every IPv4 address), not {shown(count)}"
            )
        self.watch = watch
        self.count = count
        self.deadline = Deadline(timeout, clock=clock)

    def enough(self) -> bool:
        """Whether the last successful lookup showed at least ``count`` tasks."""
        return self.watch.started and len(self.watch.current) >= self.count

    def remaining(self) -> float:
        """Seconds left before giving up."""
        return self.deadline.remaining()

    def next_delay(self) -> float:
        """Seconds to wait before the next lookup, never past the end."""
        return min(self.watch.next_delay(), self.remaining())

    def result(
        self,
        *,
        ended: bool,
        what: str = "the watch",
        how: str = "was closed",
        cause: BaseException | None = None,
    ) -> tuple[IPv4Address, ...]:
        """The addresses once there are enough, after a wait that stopped; else why not.

        Args:
            ended: Whether the watch ended (was closed or stopped) during the wait.
            what: The watch, as the error names it.
            how: How it ended, as the error says it.
            cause: Why the watch ended, chained to the error.

        Raises:
            RuntimeError: ``ended``, without enough tasks.
            NotEnoughTasks: Not enough tasks, and not ``ended``: out of time.
        """
        current = self.watch.current
        if self.enough():
            return current
        if ended:
            raise RuntimeError(
                f"{what} of {self.watch.service!r} {how} before it showed {self.count} tasks"
                f" (it showed {len(current)})"
            ) from cause
        raise self.timed_out()

    def timed_out(self) -> NotEnoughTasks:
        """The error to raise once no time remains."""
        current = self.watch.current
        error = self.watch.health.last_error
        seen = ", ".join(str(ip) for ip in current) or "none"
        last = f"; the last lookup failed: {error}" if error is not None else ""
        return NotEnoughTasks(
            f"waited {self.deadline.timeout:g} s for {self.count} tasks of"
            f" {self.watch.service!r}, but {self.watch.query_name!r} showed {len(current)}"
            f" ({seen}){last}",
            name=self.watch.query_name,
            nameserver=None if error is None else error.nameserver,
            current=current,
            wanted=self.count,
        )


@frozen
class Lookup:
    """Step: look ``tasks.<service>`` up within ``timeout`` seconds, send back the result."""

    timeout: float


@frozen
class Sleep:
    """Step: wait ``seconds``, then send back None."""

    seconds: float


#: What a watch asks its driver to do next, or a change to hand to the user.
Step = Lookup | Sleep | TaskSetChange
#: What the driver sends back after a Lookup.
LookupResult = tuple[IPv4Address, ...] | SwarmDNSError


class Stepper:
    """Carries a watch's steps over many calls: changes not yet taken, a wait cut short.

    An iterator watch runs its steps only while it is asked for something:
    the next change, or enough tasks before a deadline. ``next_action()``
    says what to do until that holds; a wait or a lookup that a deadline
    cut short is taken up again where it stopped by the next call.

    Args:
        steps: The watch's steps (``watch_steps()``, or ``wait_steps()``).
        clock: Monotonic seconds, for waits cut short.
    """

    def __init__(
        self,
        steps: Generator[Step, LookupResult | None, object],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._steps = steps
        self._clock = clock
        self._reply: LookupResult | None = None
        self._lookup: Lookup | None = None
        self._wake_at: float | None = None
        #: Changes not yet handed to the user, oldest first (bounded: merged past it).
        self.pending = ChangeQueue()
        self._first = True  # the next change is the watch's first event
        self.ended = False
        #: What the steps returned once they ended (a wait's tasks), else None.
        self.result: object = None

    def next_action(
        self, until: Callable[[], bool], deadline: Deadline | None = None
    ) -> Lookup | Sleep | None:
        """What to do next, or None once ``until()`` holds, the deadline passed or the steps ended.

        After a ``Lookup``, pass its result to ``took()``; after a ``Sleep``,
        just ask again.
        """
        while not until() and not self.ended:
            if deadline is not None and deadline.remaining() <= 0:
                return None
            if self._lookup is not None:
                return self._lookup
            if self._wake_at is not None:
                left = self._wake_at - self._clock()
                if left > 0:
                    return Sleep(left if deadline is None else min(left, deadline.remaining()))
                self._wake_at = None
            try:
                step = self._steps.send(self._reply)
            except StopIteration as done:
                self.ended = True
                self.result = done.value
                return None
            self._reply = None
            if isinstance(step, Lookup):
                self._lookup = step
            elif isinstance(step, Sleep):
                self._wake_at = self._clock() + step.seconds
            else:
                self.pending.append(step, first=self._first)
                self._first = False
        return None

    def took(self, result: LookupResult) -> None:
        """The result of the ``Lookup`` that ``next_action()`` asked for."""
        self._reply = result
        self._lookup = None

    def close(self) -> None:
        """End the steps."""
        self._steps.close()
        self.ended = True


def watch_steps(core: WatchCore, timeout: float) -> Generator[Step, LookupResult | None, None]:
    """The steps of a watch, forever: look up, report any change, wait."""
    core.begin()
    while True:
        result = yield Lookup(timeout)
        if isinstance(result, SwarmDNSError):
            core.failed(result)
        elif result is not None:
            change = core.succeeded(result)
            if change is not None:
                yield change
        yield Sleep(core.next_delay())


def wait_steps(
    wait: WaitCore, lookup_timeout: float
) -> Generator[Step, LookupResult | None, tuple[IPv4Address, ...]]:
    """The steps of ``wait_for_tasks()``: look up until enough tasks, or time is up."""
    wait.watch.begin()
    while True:
        remaining = wait.remaining()
        if remaining <= 0:
            raise wait.timed_out()
        result = yield Lookup(min(lookup_timeout, remaining))
        if isinstance(result, SwarmDNSError):
            wait.watch.failed(result)
        elif result is not None:
            wait.watch.succeeded(result)
            if wait.enough():
                return wait.watch.current
        if wait.remaining() <= 0:
            raise wait.timed_out()
        yield Sleep(wait.next_delay())


def prepare_watch(
    service: str,
    settings: WatchSettings,
    *,
    excluded: frozenset[IPv4Address],
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    on_health: Callable[[HealthEvent], object] | None = None,
    where: Where = SWARM,
) -> WatchCore:
    """Set up the decisions of a watch of ``service``; shared by every front end and fleet.

    Args:
        service: The service to watch.
        settings: The watch's options, checked.
        excluded: The addresses to leave out: ``settings.exclude``, and this
            container's own when ``settings.exclude_self`` (read by the front
            end, ``_own_addresses.excluded_for()``: a decision does no I/O).
        clock: Monotonic seconds.
        rng: The source of jitter.
        on_health: Told when lookups start failing and when they work again,
            and when a change is held and when the hold ends.
        where: Where the watch runs; its name in messages is the one that
            lists the instances there (a Swarm's until ``auto`` is told).

    Raises:
        InvalidName: ``service`` is not a name Docker allows.
    """
    network = settings.network
    query_name = instances_query(service, network, where.settled or "swarm").question.name
    core = WatchCore(
        service,
        query_name=query_name,
        interval=settings.interval,
        jitter=settings.jitter,
        removal_debounce=settings.removal_debounce,
        fail_after=settings.fail_after,
        min_tasks=settings.min_tasks,
        max_drop=settings.max_drop,
        hold_for=settings.hold_for,
        exclude=excluded,
        clock=clock,
        rng=rng,
        on_health=on_health,
    )
    if where.settled is None:
        core.name_when_told(lambda: _told_name(service, network, where))
    return core


def _told_name(service: str, network: str | None, where: Where) -> str | None:
    """The name that lists ``service``'s instances where it runs, once that is told."""
    runtime = where.settled
    return None if runtime is None else instances_query(service, network, runtime).question.name


def prepare_wait(
    service: str,
    count: int,
    settings: WatchSettings,
    *,
    timeout: float,
    excluded: frozenset[IPv4Address],
    where: Where = SWARM,
) -> Generator[Step, LookupResult | None, tuple[IPv4Address, ...]]:
    """Set up ``wait_for_tasks()``'s steps from its checked settings; shared by both APIs.

    ``timeout`` bounds the whole wait; each lookup in it gets at most
    ``DEFAULT_TIMEOUT`` of it. ``excluded`` is as for ``prepare_watch()``.
    """
    core = prepare_watch(service, settings, excluded=excluded, where=where)
    return wait_steps(WaitCore(core, count, timeout), DEFAULT_TIMEOUT)
