"""Following a service's tasks: diffing, debounce, error policy and pacing, without I/O.

``WatchCore`` is told the outcome of each lookup and decides what to report
and when to look again; ``watch_steps()`` and ``wait_steps()`` turn those
decisions into steps (look up, sleep, report). The synchronous iterator, the
asynchronous iterator and ``TaskWatcher``'s thread only carry out the steps.
``prepare_watch()`` and ``prepare_wait()`` check a watch's arguments and set
it up, once for every front end.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Generator, Iterable, Iterator
from datetime import datetime, timezone
from ipaddress import IPv4Address

from attrs import frozen

from ._deadlines import Deadline, seconds
from ._errors import (
    NotEnoughTasks,
    ResolutionError,
    ResolutionTimeout,
    SwarmDNSError,
    WatchTimeout,
)
from ._log import logger
from ._lookups import DEFAULT_TIMEOUT, instances_query
from ._own_addresses import local_addresses
from ._values import TaskSetChange, WatchHealth

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
        interval: Seconds between lookups while they succeed.
        jitter: Each wait is the interval times a random factor in
            ``1 ± jitter``, so that replicas do not poll in step.
        removal_debounce: Report an address as removed only once it has been
            missing from this many successful lookups in a row.
        fail_after: End the watch with ``WatchTimeout`` after this many seconds
            without a successful lookup; None waits forever.
        exclude: Addresses never to report (this container's own).
        clock: Monotonic seconds, for pacing and ``fail_after``.
        wall_clock: The time stamped on events and health.
        rng: The source of jitter.
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
        exclude: Iterable[IPv4Address] = (),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self.interval = seconds("interval", interval)
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter < 1:
            raise ValueError(
                f"jitter must be a fraction from 0 up to (not including) 1, not {jitter!r}"
            )
        if isinstance(removal_debounce, bool) or not isinstance(removal_debounce, int):
            raise TypeError(f"removal_debounce must be a whole number, not {removal_debounce!r}")
        if removal_debounce < 1:
            raise ValueError(f"removal_debounce must be at least 1, not {removal_debounce!r}")
        self.fail_after = None if fail_after is None else seconds("fail_after", fail_after)
        self.service = service
        self.query_name = query_name
        self.jitter = float(jitter)
        self.removal_debounce = removal_debounce
        self.exclude = frozenset(IPv4Address(ip) for ip in exclude)
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng if rng is not None else random.Random()
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
        self._healthy_since = clock()
        self._last_answer: tuple[IPv4Address, ...] | None = None
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
            )

    def succeeded(self, addresses: Iterable[IPv4Address]) -> TaskSetChange | None:
        """Take a successful lookup's addresses; return the change to report, if any."""
        answer = tuple(addresses)
        with self._lock:
            # The usual case: the same answer as last time, nothing pending.
            # Comparing tuples is far cheaper than hashing the addresses.
            if answer == self._last_answer and self._repeated():
                return None
            self._last_answer = answer
            return self._succeeded(frozenset(answer) - self.exclude)

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

    def _succeeded(self, seen: frozenset[IPv4Address]) -> TaskSetChange | None:
        if self._failures:
            logger().info(
                "looking up %s works again after %d failed attempts; %d tasks",
                self.query_name,
                self._failures,
                len(seen),
            )
        self._failures = 0
        self._failing_since = None
        self._lookups += 1
        self._last_error = None
        self._last_success = self._wall_clock()
        self._healthy_since = self._clock()
        if self._reported is None:
            self._report(seen)
            return self._change(added=seen, removed=frozenset())
        for address in seen:
            self._missing.pop(address, None)
        removed = set()
        for address in self._reported - seen:
            count = self._missing.get(address, 0) + 1
            if count >= self.removal_debounce:
                removed.add(address)
                self._missing.pop(address, None)
            else:
                self._missing[address] = count
        added = seen - self._reported
        if not added and not removed:
            return None
        self._report((self._reported | added) - removed)
        return self._change(added=frozenset(added), removed=frozenset(removed))

    def _report(self, addresses: frozenset[IPv4Address]) -> None:
        self._reported = addresses
        self._current = tuple(sorted(addresses))

    def failed(self, error: SwarmDNSError) -> None:
        """Take a failed lookup: the set stays as it is.

        Raises:
            SwarmDNSError: ``error`` itself when it will not pass by retrying.
            WatchTimeout: ``fail_after`` seconds went by without a success.
        """
        if not is_transient(error):
            raise error
        with self._lock:
            self._failed(error)

    def _failed(self, error: SwarmDNSError) -> None:
        self._failures += 1
        self._lookups += 1
        kind = type(error).__name__
        self._failures_by_kind[kind] = self._failures_by_kind.get(kind, 0) + 1
        self._last_error = error
        if self._failures == 1:
            self._failing_since = self._wall_clock()
            logger().warning(
                "looking up %s failed; keeping the last %d known tasks and retrying: %s",
                self.query_name,
                len(self._reported or ()),
                error,
            )
        stale = self._clock() - self._healthy_since
        if self.fail_after is not None and stale >= self.fail_after:
            raise WatchTimeout(
                f"no successful lookup of {self.query_name!r} for {stale:.3g} s"
                f" ({self._failures} attempts), over fail_after={self.fail_after:g}; last error:"
                f" {error}",
                name=self.query_name,
                nameserver=error.nameserver,
                last_error=error,
            ) from error

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
            raise TypeError(f"count must be a whole number of tasks, not {count!r}")
        if count < 0:
            raise ValueError(f"count must be at least 0, not {count!r}")
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


#: Changes a watch keeps for its iterator before it merges them. A program
#: that only waits on a watch (``wait_for_tasks()``) and never iterates it
#: would otherwise keep every change the watch saw, for ever. Past this many, a
#: new change is merged into the newest change of its service still kept
#: (``net_change()``), so the iterator gets the net change and nothing of the
#: final state is lost. 1,000 is far more than a program that iterates leaves
#: between two ``next()`` calls (a rolling update of a service of 100 tasks
#: makes about 200 changes), so it never sees a merge; and at about 1 KB a
#: change (a service of 50 tasks) the changes kept weigh about 1 MB.
MAX_PENDING_CHANGES = 1000


def net_change(
    older: TaskSetChange, newer: TaskSetChange, *, initial: bool = False
) -> TaskSetChange | None:
    """Two consecutive changes of a service as one: the net change, ``older`` then ``newer``.

    It goes from the set before ``older`` to the set after ``newer``.

    Args:
        older: A change.
        newer: The change of the same service right after it.
        initial: ``older`` is the service's first event, its initial set; then
            the net change is its initial set too (everything in ``added``),
            even when it is empty.

    Returns:
        The net change, with ``newer``'s ``current`` and ``observed_at``; None
        when the set is back where it was before ``older``, which is no change
        to report (unless ``older`` is the initial set).

    Raises:
        ValueError: The changes are of different services, ``newer`` does not
            start from the set ``older`` ends with, or ``initial`` is claimed
            for a change that is not a whole set.
    """
    if older.service != newer.service:
        raise ValueError(
            f"only changes of one service merge, not {older.service!r} and {newer.service!r}"
        )
    between = frozenset(older.current)
    after = frozenset(newer.current)
    if not (
        newer.removed <= between
        and newer.added.isdisjoint(between)
        and (between - newer.removed) | newer.added == after
    ):
        raise ValueError(f"{newer!r} does not follow {older!r}")
    if initial:
        if older.removed or older.added != between:
            raise ValueError(f"{older!r} is not an initial set")
        before: frozenset[IPv4Address] = frozenset()
    else:
        before = (between - older.added) | older.removed
    added = after - before
    removed = before - after
    if not added and not removed and not initial:
        return None
    return TaskSetChange(
        service=newer.service,
        added=added,
        removed=removed,
        current=newer.current,
        observed_at=newer.observed_at,
    )


class ChangeQueue:
    """Changes not yet handed to the user, oldest first, bounded: what every watch keeps.

    The first ``MAX_PENDING_CHANGES`` changes are kept as they come. Past
    that, a new change is merged (``net_change()``) into the newest change of
    its service still kept, in that change's place; when the two together
    change nothing, both go. A service with no change kept gets an entry of
    its own, so a watch of one service keeps at most ``MAX_PENDING_CHANGES``
    changes and a watch of many fewer than ``MAX_PENDING_CHANGES`` plus the
    number of its services. The order of the entries never changes, and
    taking them all still brings each service to its current set.

    The queue is told which changes are a service's first event, its initial
    set: merged with later changes it stays the initial set, and is never
    dropped. A first event that comes past the bound while changes of an
    earlier watch of its service are kept (a fleet's service discarded and
    added again) takes the place of the newest of them: the initial set says
    all there is to know.

    Safe to use from several threads, as the ``deque`` it replaces.
    """

    def __init__(self) -> None:
        self._bound = MAX_PENDING_CHANGES  # read now, so that a test can make it small
        self._entries: OrderedDict[int, TaskSetChange] = OrderedDict()
        self._by_service: dict[str, deque[int]] = {}  # the keys of each service's entries
        self._initial: set[int] = set()  # the keys of entries that are a first event
        self._keys = itertools.count()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ChangeQueue: {len(self)} changes>"

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __iter__(self) -> Iterator[TaskSetChange]:
        """The changes kept, oldest first (as they are now)."""
        with self._lock:
            return iter(list(self._entries.values()))

    def append(self, change: TaskSetChange, *, first: bool = False) -> None:
        """Keep ``change`` for the user, merged if the queue is full.

        Args:
            change: The newest change of its service.
            first: ``change`` is its service's first event, the initial set.
        """
        with self._lock:
            keys = self._by_service.get(change.service)
            if keys is None or len(self._entries) < self._bound:
                self._add(change, first=first)
                return
            newest = keys[-1]
            if first:
                self._entries[newest] = change
                self._initial.add(newest)
                return
            merged = net_change(self._entries[newest], change, initial=newest in self._initial)
            if merged is not None:
                self._entries[newest] = merged
                return
            del self._entries[newest]
            keys.pop()
            if not keys:
                del self._by_service[change.service]

    def _add(self, change: TaskSetChange, *, first: bool) -> None:
        key = next(self._keys)
        self._entries[key] = change
        self._by_service.setdefault(change.service, deque()).append(key)
        if first:
            self._initial.add(key)

    def popleft(self) -> TaskSetChange:
        """Take the oldest change.

        Raises:
            IndexError: There is none.
        """
        with self._lock:
            if not self._entries:
                raise IndexError("no change is waiting")
            key, change = self._entries.popitem(last=False)
            keys = self._by_service[change.service]
            keys.popleft()
            if not keys:
                del self._by_service[change.service]
            self._initial.discard(key)
            return change

    def clear(self) -> None:
        """Forget every change kept."""
        with self._lock:
            self._entries.clear()
            self._by_service.clear()
            self._initial.clear()


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


def excluded_addresses(
    exclude: Iterable[IPv4Address | str], *, exclude_self: bool
) -> frozenset[IPv4Address]:
    """The addresses a watch leaves out: ``exclude``, and this container's own if asked.

    Raises:
        TypeError: ``exclude`` is one address, not a list of them.
        ConfigurationError: ``exclude_self`` on a system without ``/proc/net/fib_trie``.
    """
    if isinstance(exclude, str | IPv4Address):
        raise TypeError(f"exclude takes a list of addresses, not one: [{str(exclude)!r}]")
    excluded = frozenset(IPv4Address(ip) for ip in exclude)
    return excluded | local_addresses() if exclude_self else excluded


def prepare_watch(
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
    """Check a watch's arguments and set up its decisions; shared by every front end.

    Raises:
        InvalidName: ``service`` or ``network`` is not a name Docker allows.
        ConfigurationError: ``exclude_self`` on a system without ``/proc/net/fib_trie``.
        TypeError, ValueError: Another argument is out of range.
    """
    query_name = instances_query(service, network).question.name
    excluded = excluded_addresses(exclude, exclude_self=exclude_self)
    return WatchCore(
        service,
        query_name=query_name,
        interval=interval,
        jitter=jitter,
        removal_debounce=removal_debounce,
        fail_after=fail_after,
        exclude=excluded,
    )


def prepare_wait(
    service: str,
    count: int,
    *,
    timeout: float,
    network: str | None,
    interval: float,
    exclude_self: bool,
    exclude: Iterable[IPv4Address | str],
) -> Generator[Step, LookupResult | None, tuple[IPv4Address, ...]]:
    """Check ``wait_for_tasks()``'s arguments and set up its steps; shared by both APIs.

    ``timeout`` bounds the whole wait; each lookup in it gets at most
    ``DEFAULT_TIMEOUT`` of it.
    """
    core = prepare_watch(
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
