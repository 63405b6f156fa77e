"""Following many services at once: which lookup is due, and what each outcome means, without I/O.

``FleetCore`` keeps one ``WatchCore`` per service, so every rule of a single
watch holds for each (a failure never changes the set, NXDOMAIN means no
tasks, removals are debounced, a drop past ``min_tasks`` or ``max_drop`` is
held, failures back off, ``fail_after`` ends the watch, the start and the end
of an outage or of a hold go to ``on_health``), and one schedule for them
all. The drivers in ``_sync`` and ``_async`` ask it which services are
due, carry out the lookups (through one socket, ``_backends.fleet``, or a
backend's own way) and hand the outcomes back; the changes wait in
``FleetCore.changes`` for the user (a ``ChangeQueue``: past its bound, each
service's changes merge into one). ``FleetView`` is what every front end's
fleet watch shows of it.

The schedule keeps the services that answer with tasks apart from the
doubtful ones (not asked yet, or their last lookup failed or found no
tasks): doubtful lookups may hold only ``DOUBTFUL_IN_FLIGHT`` of
the ``MAX_IN_FLIGHT`` places, so a few silent names never hold up the others,
and they are asked again after a backoff, never sooner than the interval.
Most doubtful lookups are forwards, which the engine can hold only 1,024 of
for the whole container.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from ipaddress import IPv4Address
from typing import TypeVar

from . import _memo
from ._deadlines import Deadline
from ._errors import ResolutionTimeout, SwarmDNSError
from ._lookups import InstancesQuery, instances_query
from ._model import listed
from ._runtime import SWARM, Settled, Where
from ._values import (
    ChangeQueue,
    HealthEvent,
    TaskSetChange,
    WatchHealth,
    WatchSettings,
    checked_callback,
)
from ._watch import LookupResult, WatchCore, prepare_watch

V = TypeVar("V")

#: Lookups due within this many seconds of the one that wakes the driver go
#: out with it: fewer wake-ups, and well inside the jitter.
SLACK = 0.005
#: Lookups in flight at once, at most: a fleet's first round (or a backend's
#: own lookups) would otherwise burst past the socket's receive buffer (64
#: answers of 4 KB fit in Linux's default of 208 KB).
MAX_IN_FLIGHT = 64
#: Doubtful lookups in flight at once, at most: of services not looked up yet,
#: or whose last lookup failed or found no tasks. Each is probably a forward:
#: the engine passes every name it does not own (a service without tasks is
#: one) to the host's resolvers, 1,024 at once at most for the whole container
#: (REFUSED past that), and a silent resolver holds each for
#: ``FORWARD_HOLD`` seconds. 32 leaves the container's other
#: lookups 97 % of those forwards, and the prompt services at least 32 places
#: of ``MAX_IN_FLIGHT``, whatever the doubtful ones do.
DOUBTFUL_IN_FLIGHT = 32
#: How long the engine holds a forward that its upstream does not answer (it
#: then answers SERVFAIL, from Docker 24 on). A doubtful lookup that timed out
#: sooner counts in ``DOUBTFUL_IN_FLIGHT`` until then, as the engine still
#: counts it; but not a service's first, so that a fleet of new services
#: starts at the pace of the timeout.
FORWARD_HOLD = 4.0
#: A service whose lookups fail or find no tasks is asked again after the
#: interval, then twice as long each time, up to ``BACKOFF_INTERVALS``
#: intervals or ``BACKOFF_SECONDS``, whichever is shorter (never sooner than the
#: interval): one that gets tasks again is seen within that, plus the jitter.
BACKOFF_INTERVALS = 8
BACKOFF_SECONDS = 5.0


class Slot:
    """One service of the fleet: its watch, its question, and its place in the schedule.

    Attributes:
        service: The service's name.
        watch: The decisions of its watch.
        query: Which question lists its tasks, and how the answer is read.
        question: The question its lookups ask (the query's).
        values: The address values of its last usual answer, to spot a repeat
            without building the addresses again.
        watched: False once the service is discarded: its outcomes are dropped.
        prompt: Whether its last lookup found tasks: which part of the
            schedule it is in (a service not asked yet is doubtful).
        misses: Its lookups in a row that failed or found no tasks.
        asked_at: When its last lookup went out.
        tried: Whether a lookup of it has come back.
    """

    __slots__ = (
        "asked_at",
        "misses",
        "prompt",
        "query",
        "question",
        "service",
        "ticket",
        "tried",
        "values",
        "watch",
        "watched",
    )

    def __init__(self, service: str, watch: WatchCore, query: InstancesQuery) -> None:
        self.service = service
        self.watch = watch
        self.query = query
        self.question = query.question
        self.values: tuple[int, ...] | None = None
        self.watched = True
        self.ticket = -1  # the schedule entry that is this slot's next lookup
        self.prompt = False
        self.misses = 0
        self.asked_at = 0.0
        self.tried = False

    def __repr__(self) -> str:
        return f"<Slot {self.service!r}: {len(self.watch.current)} tasks>"


class FleetCore:
    """The decisions of a watch over many services: the schedule and each service's watch.

    Args:
        services: The services to follow at first.
        settings: The options of each service's watch, checked. With
            ``fail_after``, the first service whose lookups fail that long
            ends the whole watch.
        excluded: The addresses every service's watch leaves out, this
            container's own among them when asked (the front end reads them
            once, for every service).
        clock: Monotonic seconds, for the schedule.
        rng: The source of jitter.
        on_health: Told when a service's lookups start failing and when they
            work again.
        where: Where the watch runs. While ``auto`` is not told, the front
            end asks ``_lookups.settle()`` before the first lookup and hands
            the answer to ``settle()``.

    Raises:
        InvalidName: A service is not a name Docker allows.
    """

    def __init__(
        self,
        services: Iterable[str],
        settings: WatchSettings,
        *,
        excluded: frozenset[IPv4Address],
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_health: Callable[[HealthEvent], object] | None = None,
        where: Where = SWARM,
    ) -> None:
        self.settings = settings
        self.network = settings.network
        self.where = where
        self._excluded = excluded
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._on_health = checked_callback("on_health", on_health)
        # Written only under the lock, by copying: readers in other threads
        # take the dict as it is and never see it change under them.
        self._slots: dict[str, Slot] = {}
        self._lock = threading.Lock()
        # The lookups to come, by when they are due: the prompt services' and
        # the doubtful ones'.
        self._prompt: list[tuple[float, int, Slot]] = []
        self._doubtful: list[tuple[float, int, Slot]] = []
        self._doubtful_out = 0  # doubtful lookups in flight
        self._held: list[float] = []  # when each doubtful lookup that timed out frees its place
        self._tickets = itertools.count()
        self._taking = False  # someone waits for the next change
        #: Changes not yet handed to the user, oldest first (bounded: merged past it).
        self.changes = ChangeQueue()
        slots: dict[str, Slot] = {}
        for service in _names_of(services):
            if service not in slots:
                slots[service] = self._new_slot(service)
        self._slots = slots
        now = clock()
        for slot in slots.values():
            self._push(slot, now)

    @property
    def interval(self) -> float:
        """Seconds between each service's lookups while they succeed."""
        return self.settings.interval

    # -- the services ----------------------------------------------------------

    def add(self, service: str) -> bool:
        """Start following ``service`` (its first lookup is due now); False if already followed.

        Raises:
            InvalidName: ``service`` is not a name Docker allows.
        """
        (name,) = _names_of([service])
        slot = self._new_slot(name)
        with self._lock:
            if name in self._slots:
                return False
            self._slots = {**self._slots, name: slot}
            self._push(slot, self._clock())
        return True

    def discard(self, service: str) -> bool:
        """Stop following ``service``; False if it was not followed.

        Its changes not yet handed out stay; a lookup in flight is dropped.

        Raises:
            TypeError: ``service`` is not a name.
        """
        if not isinstance(service, str):
            raise TypeError(f"discard takes a service's name, not {service!r}")
        with self._lock:
            slot = self._slots.get(service)
            if slot is None:
                return False
            slot.watched = False
            self._slots = {name: s for name, s in self._slots.items() if name != service}
        return True

    @contextlib.contextmanager
    def taking(self, who: str) -> Iterator[None]:
        """Wait for the next change as its one taker: two would race for it.

        Waiting for enough tasks (``wait_for_tasks``) needs no such turn.

        Raises:
            RuntimeError: Another ``who`` (thread, task) waits for the next change.
        """
        with self._lock:
            if self._taking:
                raise RuntimeError(f"the watch's changes are already being taken by another {who}")
            self._taking = True
        try:
            yield
        finally:
            self._taking = False

    def watch_of(self, service: str) -> WatchCore:
        """The watch of ``service``.

        Raises:
            KeyError: ``service`` is not followed (with a message naming those that are).
        """
        slot = self._slots.get(service)
        if slot is None:
            followed = ", ".join(repr(name) for name in list(self._slots)[:5]) or "none"
            more = "..." if len(self._slots) > 5 else ""
            raise KeyError(
                f"{service!r} is not one of the services watched ({followed}{more});"
                " add() it first"
            )
        return slot.watch

    @property
    def current(self) -> Mapping[str, tuple[IPv4Address, ...]]:
        """Each service's addresses as last reported (a read-only, live view)."""
        return _View(self, lambda slot: slot.watch.current)

    @property
    def health(self) -> Mapping[str, WatchHealth]:
        """Each service's lookups: consecutive failures, last success, last error (live view)."""
        return _View(self, lambda slot: slot.watch.health)

    def slots(self) -> dict[str, Slot]:
        """The services followed now (a dict that is never changed afterwards)."""
        return self._slots

    # -- the schedule ------------------------------------------------------------

    def due(self, now: float, room: int = MAX_IN_FLIGHT) -> list[Slot]:
        """The services whose lookup is due by ``now`` (within ``SLACK``), at most ``room``.

        The earliest first; doubtful ones only while fewer than
        ``DOUBTFUL_IN_FLIGHT`` are out. Each is off the schedule until its
        outcome comes back (``succeeded_with`` or ``finished``).
        """
        ready: list[Slot] = []
        last = now + SLACK
        with self._lock:
            prompt, doubtful = self._prompt, self._doubtful
            free = DOUBTFUL_IN_FLIGHT - self._doubtful_out - self._holding(now)
            while len(ready) < room:
                early = prompt[0][0] if prompt else last + 1
                if free > 0 and doubtful and doubtful[0][0] <= min(early, last):
                    _, ticket, slot = heapq.heappop(doubtful)
                elif early <= last:
                    _, ticket, slot = heapq.heappop(prompt)
                else:
                    break
                if slot.watched and slot.ticket == ticket:
                    slot.ticket = -1
                    slot.asked_at = now
                    ready.append(slot)
                    if not slot.prompt:
                        free -= 1
                        self._doubtful_out += 1
        return ready

    def next_due(self) -> float | None:
        """When the next lookup may go out (None: none until an outcome comes back)."""
        with self._lock:
            prompt, doubtful = self._prompt, self._doubtful
            for schedule in (prompt, doubtful):
                while schedule and not _is_current(schedule[0]):
                    heapq.heappop(schedule)
            times = [prompt[0][0]] if prompt else []
            if doubtful:
                busy = self._doubtful_out + self._holding(self._clock())
                over = busy - DOUBTFUL_IN_FLIGHT  # places to free before one more goes
                if over < 0:
                    times.append(doubtful[0][0])
                elif over < len(self._held):  # some free as the engine gives up on forwards
                    times.append(max(doubtful[0][0], heapq.nsmallest(over + 1, self._held)[-1]))
            return min(times, default=None)

    def _holding(self, now: float) -> int:
        """Doubtful lookups that timed out but may still hold a forward at ``now`` (locked)."""
        held = self._held
        while held and held[0] <= now:
            heapq.heappop(held)
        return len(held)

    def succeeded_with(self, slot: Slot, values: tuple[int, ...]) -> None:
        """Take a usual answer's address values for ``slot``'s service.

        The same values as last time, with nothing pending, cost no addresses.
        """
        if slot.watched and (values != slot.values or not slot.watch.repeated()):
            slot.values = values
            first = not slot.watch.started
            self._report(slot.watch.succeeded(_memo.addresses.addresses(values)), first=first)
        self._landed(slot, found=bool(values))

    def finished(self, slot: Slot, result: LookupResult) -> None:
        """Take the outcome of ``slot``'s lookup: its addresses, or the error.

        Raises:
            SwarmDNSError: An error that will not pass by retrying (the watch ends).
        """
        if isinstance(result, SwarmDNSError):
            self._landed(slot, found=None, timed_out=isinstance(result, ResolutionTimeout))
            if slot.watched:
                slot.watch.failed(result)
            return
        if slot.watched:
            slot.values = None
            first = not slot.watch.started
            self._report(slot.watch.succeeded(result), first=first)
        self._landed(slot, found=bool(result))

    def _report(self, change: TaskSetChange | None, *, first: bool) -> None:
        """Keep ``change`` for the user; ``first``: the watch had reported nothing before."""
        if change is not None:
            self.changes.append(change, first=first)

    def _landed(self, slot: Slot, *, found: bool | None, timed_out: bool = False) -> None:
        """``slot``'s lookup is back: free its place, and put its next one on the schedule.

        Args:
            slot: The service looked up.
            found: Whether the answer held addresses; None if the lookup failed.
            timed_out: Whether it failed for want of an answer.
        """
        now = self._clock()
        interval = self.settings.interval
        if found:
            slot.misses = 0
            delay = interval
        else:
            slot.misses += 1
            delay = min(interval * 2.0 ** min(slot.misses - 1, 32), backoff_cap(interval))
        jitter = self.settings.jitter
        delay *= 1 + self._rng.uniform(-jitter, jitter)
        with self._lock:
            if not slot.prompt:
                self._doubtful_out -= 1
                if timed_out and slot.tried and now < slot.asked_at + FORWARD_HOLD:
                    heapq.heappush(self._held, slot.asked_at + FORWARD_HOLD)
            slot.tried = True
            slot.prompt = bool(found)
            self._push(slot, now + delay)

    def _push(self, slot: Slot, when: float) -> None:
        """Put ``slot``'s next lookup on its part of the schedule (the lock held)."""
        if slot.watched:
            slot.ticket = next(self._tickets)
            schedule = self._prompt if slot.prompt else self._doubtful
            heapq.heappush(schedule, (when, slot.ticket, slot))

    @property
    def unsettled(self) -> bool:
        """Whether the runtime is still to be told (``settle()``), before any lookup."""
        return self.where.settled is None

    def settle(self, runtime: Settled) -> None:
        """Ask each service's instances by the name that lists them in ``runtime``."""
        with self._lock:
            self.where = Where(runtime=runtime)
            for slot in self._slots.values():
                slot.query = instances_query(slot.service, self.network, runtime)
                slot.question = slot.query.question

    def _new_slot(self, service: str) -> Slot:
        query = instances_query(service, self.network, self.where.settled or "swarm")
        watch = prepare_watch(
            service,
            self.settings,
            excluded=self._excluded,
            clock=self._clock,
            rng=self._rng,
            on_health=self._on_health,
            where=self.where,
        )
        watch.begin()
        return Slot(service, watch, query)


def backoff_cap(interval: float) -> float:
    """The longest wait between lookups of a service that fails or has no tasks."""
    return max(interval, min(BACKOFF_INTERVALS * interval, BACKOFF_SECONDS))


def _is_current(entry: tuple[float, int, Slot]) -> bool:
    _, ticket, slot = entry
    return slot.watched and slot.ticket == ticket


def _names_of(services: Iterable[str]) -> list[str]:
    """The services given, as a list (one string is not read as a list of letters)."""
    if isinstance(services, str):
        raise TypeError(f"services takes a list of names, not one: [{services!r}]")
    if not listed(services):
        raise TypeError(f"services takes a list of names, not {services!r}")
    return list(services)


class Turns:
    """Whose turn it is to run a fleet's lookups, for a front end that runs them in its callers.

    One thread runs them at a time; another that wants to meanwhile waits on
    its steps until what it waits for holds, and takes over if that thread
    stops first. ``close()`` may come from any thread; what the watch holds
    is released once, by whoever is last out.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stepped = threading.Condition(self._lock)  # after each step, and at each end
        self._running = False
        self._released = False
        self._failure: Exception | None = None  # what ended the watch, for those waiting
        self.closing = False

    def take(self, until: Callable[[], bool], deadline: Deadline | None) -> bool:
        """Wait while another thread runs the lookups; True: the caller runs them now.

        False: ``until()`` holds, the deadline passed, or the watch is closing.

        Raises:
            Exception: What ended the watch in the thread that ran it while
                the caller waited.
        """
        with self._lock:
            waited = self._running
            while self._running and not self.closing and not until():
                if deadline is not None and deadline.remaining() <= 0:
                    return False
                self._stepped.wait(None if deadline is None else deadline.remaining())
            if waited and self._failure is not None:
                raise self._failure
            if self._running or self.closing:
                return False
            self._running = True
            return True

    def stepped(self) -> None:
        """The running thread made a step: those waiting look again."""
        with self._lock:
            self._stepped.notify_all()

    def give_back(self, error: BaseException | None) -> bool:
        """The running thread stops (``error``: what ended the watch); True: release now."""
        with self._lock:
            if error is not None:
                self.closing = True
                self._failure = error if isinstance(error, Exception) else None
            self._running = False
            self._stepped.notify_all()
            return self._release_now()

    def close(self) -> bool:
        """End the watch; True: nobody runs it, release what it holds now."""
        with self._lock:
            self.closing = True
            self._stepped.notify_all()
            return self._release_now()

    def _release_now(self) -> bool:
        release = self.closing and not self._running and not self._released
        self._released |= release
        return release


class _View(Mapping[str, V]):
    """A read-only mapping from each service followed to something of its watch."""

    def __init__(self, core: FleetCore, read: Callable[[Slot], V]) -> None:
        self._core = core
        self._read = read

    def __getitem__(self, service: str) -> V:
        return self._read(self._core.slots()[service])

    def __iter__(self) -> Iterator[str]:
        return iter(self._core.slots())

    def __len__(self) -> int:
        return len(self._core.slots())

    def __repr__(self) -> str:
        return repr(dict(self))


class FleetView:
    """What every way of watching a fleet shows: each service's set and health."""

    _core: FleetCore

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {len(self._core.slots())} services>"

    @property
    def services(self) -> tuple[str, ...]:
        """The services followed, in the order they were added."""
        return tuple(self._core.slots())

    @property
    def current(self) -> Mapping[str, tuple[IPv4Address, ...]]:
        """Each service's addresses as last reported, sorted (a read-only, live mapping)."""
        return self._core.current

    @property
    def health(self) -> Mapping[str, WatchHealth]:
        """Each service's consecutive failures, last success and last error (live mapping)."""
        return self._core.health

    def add(self, service: str) -> bool:
        """Follow ``service`` too; its first lookup is due at once. False if already followed.

        May be called from any thread, also while the watch runs.

        Raises:
            InvalidName: ``service`` is not a name Docker allows.
        """
        added = self._core.add(service)
        self._wake()
        return added

    def discard(self, service: str) -> bool:
        """Stop following ``service`` (changes of it not yet taken stay); False if not followed."""
        return self._core.discard(service)

    def _wake(self) -> None:
        """Have the watch look at its schedule again (a service was added)."""
        raise NotImplementedError
