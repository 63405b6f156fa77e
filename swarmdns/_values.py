"""The values of a watch: its options, what changed, and how its lookups are going.

Without I/O: ``WatchSettings`` checks a watch's options once for every front
end; ``TaskSetChange``, ``WatchHealth`` and the health events are what a
watch hands its users, and ``ChangeQueue`` keeps the changes not yet handed
out (merged with ``net_change()`` past its bound). ``Hold`` decides whether a
watch believes a drop (``min_tasks``, ``max_drop``, ``hold_for``), by the one
rule of ``hold_reason()``.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, cast

from attrs import evolve, field, frozen

from ._deadlines import seconds, shown
from ._errors import SwarmDNSError
from ._log import logger
from ._lookups import DEFAULT_TIMEOUT
from ._model import ipv4_address, listed
from ._names import check_network
from ._runtime import Runtime, check_runtime

if TYPE_CHECKING:
    from ._backends.base import AsyncBackend, Backend


def _addresses(value: frozenset[IPv4Address]) -> str:
    return "{" + ", ".join(str(ip) for ip in sorted(value)) + "}"


def _address_tuple(value: tuple[IPv4Address, ...]) -> str:
    return "(" + ", ".join(str(ip) for ip in value) + ")"


@frozen(kw_only=True)
class TaskSetChange:
    """A change in the set of a service's task addresses.

    The first change of a watch is the initial set, all of it in ``added``
    (even when empty); after that, a change is reported only when the set
    changes.

    Attributes:
        service: The service watched.
        added: Addresses that appeared.
        removed: Addresses that disappeared.
        current: Every address now, sorted.
        observed_at: When the lookup that showed the change finished (UTC).
    """

    service: str
    added: frozenset[IPv4Address] = field(repr=_addresses)
    removed: frozenset[IPv4Address] = field(repr=_addresses)
    current: tuple[IPv4Address, ...] = field(repr=_address_tuple)
    observed_at: datetime = field(repr=False)


@frozen(kw_only=True)
class WatchHealth:
    """How a watch's lookups are going.

    Attributes:
        consecutive_failures: Failed lookups since the last successful one.
        last_success: When the last lookup succeeded (UTC), or None.
        last_error: The error of the last failed lookup, or None.
        lookups: Lookups finished since the watch began, failed ones included.
        failures_by_kind: Failed lookups since the watch began, by the name of
            their error's class (``ResolutionTimeout``, ``ResolutionError``).
        changes: Changes reported since the watch began, the initial set included.
        failing_since: When the first of the failures under way happened (UTC),
            the moment an outage began; None while the last lookup succeeded.
        held: The change the watch holds back now (``min_tasks``, ``max_drop``),
            or None: a ``ChangeHeld`` whose ``since`` is when the hold began, and
            whose ``tasks``, ``removed`` and ``reason`` are those of the latest
            answer held.
        holds: Holds since the watch began, the one under way included.
        forwarded: Why the last successful lookup's answer was not the
            engine's own (it forwarded the name, so it reads as no tasks), or
            None when it was (``swarmdns.Provenance``).
    """

    consecutive_failures: int
    last_success: datetime | None
    last_error: SwarmDNSError | None = field(eq=False)
    lookups: int = 0
    failures_by_kind: Mapping[str, int] = field(factory=dict, eq=False)
    changes: int = 0
    failing_since: datetime | None = None
    held: ChangeHeld | None = None
    holds: int = 0
    forwarded: str | None = None


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


@frozen(kw_only=True)
class LookupsFailing:
    """A service's lookups started failing: the first failed lookup of an outage.

    The watch keeps the service's last known set and retries; once a lookup
    works again, ``LookupsRecovered`` follows. Failures that retrying will not
    mend end the watch instead, and are not reported this way.

    Attributes:
        service: The service watched.
        since: When that first failed lookup ended, on the monotonic clock
            (``time.monotonic()``), to compare with ``LookupsRecovered.at``.
        error: Its error (a ``ResolutionTimeout`` or ``ResolutionError``).
        observed_at: The same moment on the wall clock (UTC), as
            ``WatchHealth.failing_since`` shows it.
    """

    service: str
    since: float
    error: SwarmDNSError = field(eq=False)
    observed_at: datetime = field(repr=False)


@frozen(kw_only=True)
class LookupsRecovered:
    """A service's lookups work again: the first good lookup after ``LookupsFailing``.

    Attributes:
        service: The service watched.
        at: When that good lookup ended, on the monotonic clock
            (``time.monotonic()``).
        failed_for: Seconds from the end of the outage's first failed lookup
            to ``at``: ``at - LookupsFailing.since``.
        failures: How many lookups failed in the outage.
        observed_at: The moment ``at`` on the wall clock (UTC).
    """

    service: str
    at: float
    failed_for: float
    failures: int
    observed_at: datetime = field(repr=False)


@frozen(kw_only=True)
class ChangeHeld:
    """A watch holds its set against an answer it does not believe: the start of a hold.

    The answer would have left fewer than ``min_tasks`` tasks, or removed
    more than ``max_drop`` of them at once. The watch goes on reporting its
    last set (additions still pass) until an answer that is not held comes,
    or ``hold_for`` has passed; then ``HoldReleased`` follows.
    ``WatchHealth.held`` shows the hold under way in the same shape.

    Attributes:
        service: The service watched.
        since: When the hold began: the end of the first lookup held, on the
            monotonic clock (``time.monotonic()``), to compare with
            ``HoldReleased.at``.
        tasks: The set the answer held would have made, sorted.
        removed: The addresses it would have removed.
        reason: Why it is held, such as ``below min_tasks 2`` or
            ``drop of 3 of 4 exceeds max_drop 0.5``.
        observed_at: The same moment on the wall clock (UTC).
    """

    service: str
    since: float
    tasks: tuple[IPv4Address, ...] = field(repr=_address_tuple)
    removed: frozenset[IPv4Address] = field(repr=_addresses)
    reason: str
    observed_at: datetime = field(repr=False)


@frozen(kw_only=True)
class HoldReleased:
    """A watch's hold ends: the first lookup that is not held after ``ChangeHeld``.

    Attributes:
        service: The service watched.
        at: When that lookup ended, on the monotonic clock (``time.monotonic()``).
        held_for: Seconds from the start of the hold to ``at``: ``at - ChangeHeld.since``.
        expired: True when ``hold_for`` had passed and the answer held was
            reported anyway; False when an answer that is not held came
            (the tasks came back, or the drop became one the rule allows).
        observed_at: The moment ``at`` on the wall clock (UTC).
    """

    service: str
    at: float
    held_for: float
    expired: bool
    observed_at: datetime = field(repr=False)


#: What a watch tells ``on_health``: a service's lookups start failing, or work
#: again; a change is held, or the hold ends.
HealthEvent = LookupsFailing | LookupsRecovered | ChangeHeld | HoldReleased


def hold_reason(
    *, before: int, removed: int, min_tasks: int = 0, max_drop: float | None = None
) -> str | None:
    """Why a change that removes ``removed`` of ``before`` tasks is held, or None if it is not.

    The one rule of every watch, single or fleet. ``before`` counts the set
    the removals are taken from: the set reported, with the additions of the
    same answer (those are never held), so a task replaced by another is no
    drop at all.

    Args:
        before: Tasks before the removals.
        removed: Tasks the change removes.
        min_tasks: Fewer tasks than this are never reported (0: no minimum).
        max_drop: A change may remove at most this share of ``before`` (None: any).
    """
    if not removed:
        return None
    if before - removed < min_tasks:
        return f"below min_tasks {min_tasks}"
    if max_drop is not None and removed > max_drop * before:
        return f"drop of {removed} of {before} exceeds max_drop {max_drop:g}"
    return None


class Hold:
    """Whether a watch believes the removals an answer brings, or holds its set against them.

    Each ``WatchCore`` keeps one (for its service; in a fleet, one for each).
    An answer whose removals ``hold_reason()`` holds starts a hold: the watch
    reports none of them (its additions still pass) until an answer comes
    that is not held, or the hold has lasted ``hold_for`` seconds; answers
    held meanwhile keep the hold going. Guarded by its watch's lock.

    Args:
        service: The service watched, for events.
        query_name: The name looked up, for the log.
        min_tasks, max_drop, hold_for: The watch's options, checked.

    Attributes:
        held: The hold under way, or None: its ``since``, and the ``tasks``,
            ``removed`` and ``reason`` of the latest answer held.
        holds: Holds started since the watch began.
    """

    def __init__(
        self,
        service: str,
        query_name: str,
        *,
        min_tasks: int = 0,
        max_drop: float | None = None,
        hold_for: float | None = None,
    ) -> None:
        self.service = service
        self.query_name = query_name
        self.min_tasks = min_tasks
        self.max_drop = max_drop
        self.hold_for = hold_for
        self.held: ChangeHeld | None = None
        self.holds = 0

    def believed(
        self,
        *,
        before: frozenset[IPv4Address],
        removed: frozenset[IPv4Address],
        now: float,
        observed_at: datetime,
        events: list[HealthEvent],
    ) -> bool:
        """Whether to report ``removed`` now, or to hold it; a hold starting or ending is told.

        Args:
            before: The set the removals are taken from (reported, and added).
            removed: The removals due (past the debounce); may be none.
            now: When the lookup ended, on the monotonic clock.
            observed_at: The same moment on the wall clock.
            events: Where the ``ChangeHeld`` or ``HoldReleased`` goes, for the
                watch to tell outside its lock.
        """
        reason = hold_reason(
            before=len(before),
            removed=len(removed),
            min_tasks=self.min_tasks,
            max_drop=self.max_drop,
        )
        held = self.held
        if reason is None:
            if held is not None:
                events.append(self._release(now, observed_at, expired=False))
            return True
        if held is None:
            self.holds += 1
            self.held = ChangeHeld(
                service=self.service,
                since=now,
                tasks=tuple(sorted(before - removed, key=int)),
                removed=removed,
                reason=reason,
                observed_at=observed_at,
            )
            logger().warning(
                "holding the %d known tasks of %s against an answer of %d (%s)",
                len(before),
                self.query_name,
                len(before - removed),
                reason,
            )
            events.append(self.held)
            return False
        if self.hold_for is not None and now - held.since >= self.hold_for:
            events.append(self._release(now, observed_at, expired=True))
            return True
        self.held = evolve(
            held, tasks=tuple(sorted(before - removed, key=int)), removed=removed, reason=reason
        )
        return False

    def _release(self, now: float, observed_at: datetime, *, expired: bool) -> HoldReleased:
        """End the hold under way at ``now``."""
        assert self.held is not None  # noqa: S101 - for mypy: only while holding
        held_for = now - self.held.since
        self.held = None
        logger().info(
            "the hold of %s ends after %.3g s: %s",
            self.query_name,
            held_for,
            "hold_for passed, the answer held is reported" if expired else "an answer not held",
        )
        return HoldReleased(
            service=self.service,
            at=now,
            held_for=held_for,
            expired=expired,
            observed_at=observed_at,
        )


def _network(value: str | None) -> str | None:
    return None if value is None else check_network(value)


def _runtime(value: Runtime | None) -> Runtime | None:
    return None if value is None else check_runtime(value)


def checked_exclude(value: Iterable[IPv4Address | str]) -> frozenset[IPv4Address]:
    """The addresses of ``exclude``, checked.

    Raises:
        TypeError: ``exclude`` is one address, not a list of them, or not a list of
            addresses (their text, or ``IPv4Address``).
        ValueError: An address is not an IPv4 address.
    """
    if isinstance(value, str | IPv4Address):
        raise TypeError(f"exclude takes a list of addresses, not one: [{str(value)!r}]")
    if not listed(value):
        raise TypeError(f"exclude takes a list of addresses, not {value!r}")
    return frozenset(ipv4_address(ip, what="an address of exclude") for ip in value)


def checked_backend(value: object) -> Backend | AsyncBackend | None:
    """A ``backend=`` argument, checked: None (the default backend) or a backend.

    Raises:
        TypeError: It has neither ``resolve()`` nor ``resolve_async()`` (dnspython's
            resolver, say).
    """
    if value is None:
        return None
    if type(value).__module__.startswith("dns."):
        raise TypeError(
            f"{value!r} is dnspython's, not a swarmdns backend; use"
            " swarmdns.DirectBackend(['host:port']) to ask a given nameserver"
        )
    if not any(callable(getattr(value, method, None)) for method in ("resolve", "resolve_async")):
        raise TypeError(
            f"{value!r} is not a backend: it needs a resolve() method, an async"
            " resolve_async() method, or both"
        )
    return cast("Backend | AsyncBackend", value)


def checked_callback(name: str, value: object) -> Callable[[HealthEvent], object] | None:
    """A callback argument (``on_health``), checked: None or something callable.

    Raises:
        TypeError: It cannot be called.
    """
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable (or None), not {value!r}")
    return cast("Callable[[HealthEvent], object] | None", value)


def _flag(value: bool) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"exclude_self must be True or False, not {value!r}")
    return value


def _interval(value: float) -> float:
    return seconds("interval", value)


def _jitter(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(
            f"jitter must be a fraction from 0 up to (not including) 1, not {shown(value)}"
        )
    return float(value)


def _removal_debounce(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"removal_debounce must be a whole number, not {shown(value)}")
    if value < 1:
        raise ValueError(f"removal_debounce must be at least 1, not {shown(value)}")
    return value


def _fail_after(value: float | None) -> float | None:
    return None if value is None else seconds("fail_after", value)


def _min_tasks(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"min_tasks must be a whole number of tasks, not {value!r}")
    if value < 0:
        raise ValueError(f"min_tasks must be at least 0 (0: no minimum), not {value!r}")
    return value


def _max_drop(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"max_drop must be a fraction of the set or None, not {value!r}")
    if not 0 < value <= 1:
        raise ValueError(
            f"max_drop must be a fraction above 0 and at most 1 (0.5: half the set), or None,"
            f" not {value!r}"
        )
    return float(value)


def _hold_for(value: float | None) -> float | None:
    return None if value is None else seconds("hold_for", value)


def _timeout(value: float) -> float:
    return seconds("timeout", value)


@frozen(kw_only=True)
class WatchSettings:
    """A watch's options, checked once: every way of watching builds one from its arguments.

    ``watch_tasks()``, its asyncio twin and ``TaskWatcher`` take these
    options for one service; ``watch_services()``, its twin and
    ``FleetWatcher`` for each of theirs. What each means is said once, in
    ``watch_tasks()``'s docstring (and the options table of
    ``docs/watching.md``). The checks run in the order of the fields; a bad
    value raises the error it always did. Building one does no I/O: for
    ``exclude_self``, the front end reads this container's addresses when it
    sets the watch up (``_own_addresses.excluded_for()``) and hands them in.

    Raises:
        InvalidName: ``network`` is not a name Docker allows.
        TypeError, ValueError: Another option is out of range or of the wrong
            type (``backend`` not a backend, ``exclude_self`` not a bool), or
            ``exclude`` is one address instead of a list of them.
    """

    network: str | None = field(default=None, converter=_network)
    backend: Backend | AsyncBackend | None = field(default=None, converter=checked_backend)
    exclude_self: bool = field(default=False, converter=_flag)
    exclude: frozenset[IPv4Address] = field(default=(), converter=checked_exclude)
    interval: float = field(default=2.0, converter=_interval)
    jitter: float = field(default=0.1, converter=_jitter)
    removal_debounce: int = field(default=1, converter=_removal_debounce)
    fail_after: float | None = field(default=None, converter=_fail_after)
    timeout: float = field(default=DEFAULT_TIMEOUT, converter=_timeout)
    min_tasks: int = field(default=0, converter=_min_tasks)
    max_drop: float | None = field(default=None, converter=_max_drop)
    hold_for: float | None = field(default=None, converter=_hold_for)
    runtime: Runtime | None = field(default=None, converter=_runtime)
