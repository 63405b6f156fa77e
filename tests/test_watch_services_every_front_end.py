"""watch_services(): many services in one watch, through both front ends.

Every behaviour that both have runs twice, through ``swarmdns.watch_services``
and through ``swarmdns.aio.watch_services`` (on an event loop in a thread of
its own), behind one blocking interface. Nothing here sleeps: a test changes
the Swarm (or a scripted backend), then waits for the watch's next change, for
``wait_for_tasks``, or for the fake's query log to show the lookups it
expects, always with a deadline. A change that must not happen is ruled out
by letting the watch look everything up a few more times, then making a
change elsewhere: that change must be the next one handed out.
"""

from __future__ import annotations

import asyncio
import gc
import os
import queue
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from ipaddress import IPv4Address
from typing import Any, TypeVar

import dns.flags
import dns.message
import dns.rcode
import pytest

import swarmdns
import swarmdns.aio
from swarmdns import (
    Answer,
    ChangeHeld,
    DirectBackend,
    FleetWatch,
    HealthEvent,
    HoldReleased,
    InvalidName,
    LookupsFailing,
    LookupsRecovered,
    NotEnoughTasks,
    Provenance,
    Question,
    ResolutionError,
    ResolutionTimeout,
    StaticBackend,
    SwarmDNSError,
    TaskSetChange,
    WatchTimeout,
)
from swarmdns._fleet import MAX_IN_FLIGHT, FleetView
from swarmdns.aio import AsyncFleetWatch
from swarmdns.testing import Delay, FakeSwarm, Fault

from .backends.hostile import HostileServer, Query, Script, add_a, addresses, response, to_wire

T = TypeVar("T")

EVENT_TIMEOUT = 10.0  # a bound for a broken test, not a timing expectation
WAIT_TIMEOUT = 5.0  # for wait_for_tasks() to see what the fake shows at once
FAST: dict[str, Any] = {"interval": 0.05, "jitter": 0.0, "timeout": 0.25}


# -- one blocking interface over both front ends --------------------------------------------------


class Fleet:
    """A fleet watch of either front end, driven from the test's thread.

    ``*_soon`` methods start a call and return its future at once, so that
    the test can change the Swarm while the watch runs.
    """

    watch: FleetView

    def next_or_end_soon(self) -> Future[TaskSetChange | None]:
        """Ask for the next change; None once the iteration has ended."""
        raise NotImplementedError

    def wait_for_tasks_soon(
        self, service: str, count: int, timeout: float
    ) -> Future[tuple[IPv4Address, ...]]:
        raise NotImplementedError

    def add(self, service: str) -> bool:
        raise NotImplementedError

    def discard(self, service: str) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def next_event(self) -> TaskSetChange:
        change = self.next_or_end_soon().result(EVENT_TIMEOUT)
        assert change is not None, "the watch ended instead of handing out a change"
        return change

    def wait_for_tasks(self, service: str, count: int, timeout: float) -> tuple[IPv4Address, ...]:
        return self.wait_for_tasks_soon(service, count, timeout).result(timeout + EVENT_TIMEOUT)


class SyncFleet(Fleet):
    """``swarmdns.watch_services``; each blocking call runs in a thread of its own."""

    def __init__(self, services: Sequence[str], **options: Any) -> None:
        self.watch = self.sync = swarmdns.watch_services(services, **options)
        self._threads: list[threading.Thread] = []

    def _in_thread(self, call: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()

        def run() -> None:
            future.set_running_or_notify_cancel()
            try:
                future.set_result(call())
            except BaseException as error:  # handed to the test through the future
                future.set_exception(error)

        thread = threading.Thread(target=run, name="fleet-test-call")
        thread.start()
        self._threads.append(thread)
        return future

    def next_or_end_soon(self) -> Future[TaskSetChange | None]:
        def step() -> TaskSetChange | None:
            try:
                return next(self.sync)
            except StopIteration:
                return None

        return self._in_thread(step)

    def wait_for_tasks_soon(
        self, service: str, count: int, timeout: float
    ) -> Future[tuple[IPv4Address, ...]]:
        return self._in_thread(lambda: self.sync.wait_for_tasks(service, count, timeout=timeout))

    def add(self, service: str) -> bool:
        return self.sync.add(service)

    def discard(self, service: str) -> bool:
        return self.sync.discard(service)

    def close(self) -> None:
        self.sync.close()
        for thread in self._threads:
            thread.join(EVENT_TIMEOUT)
        stuck = [thread for thread in self._threads if thread.is_alive()]
        assert not stuck, "a call on the watch went on after close()"


class AsyncFleet(Fleet):
    """``swarmdns.aio.watch_services`` on an event loop running in its own thread."""

    def __init__(self, services: Sequence[str], **options: Any) -> None:
        self.watch = self.aio = swarmdns.aio.watch_services(services, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fleet-test-loop")
        self._thread.start()

    def on_loop(self, call: Callable[[], T]) -> T:
        """Run ``call`` in the loop's thread and return what it returns."""

        async def run() -> T:
            return call()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(EVENT_TIMEOUT)

    def next_or_end_soon(self) -> Future[TaskSetChange | None]:
        async def step() -> TaskSetChange | None:
            try:
                return await anext(self.aio)
            except StopAsyncIteration:
                return None

        return asyncio.run_coroutine_threadsafe(step(), self._loop)

    def wait_for_tasks_soon(
        self, service: str, count: int, timeout: float
    ) -> Future[tuple[IPv4Address, ...]]:
        waiting = self.aio.wait_for_tasks(service, count, timeout=timeout)
        return asyncio.run_coroutine_threadsafe(waiting, self._loop)

    def add(self, service: str) -> bool:
        return self.aio.add(service)  # documented to be safe from another thread

    def discard(self, service: str) -> bool:
        return self.on_loop(lambda: self.aio.discard(service))

    def close(self) -> None:
        """``aclose()`` (twice), then check that every task it left has ended."""
        if self._loop.is_closed():
            return  # shut down already, the watch closed before

        async def finish() -> set[asyncio.Task[Any]]:
            await self.aio.aclose()
            await self.aio.aclose()  # closing twice is fine
            others = asyncio.all_tasks() - {asyncio.current_task()}
            if others:
                await asyncio.wait(others, timeout=EVENT_TIMEOUT)
            return {task for task in others if not task.done()}

        stuck = asyncio.run_coroutine_threadsafe(finish(), self._loop).result(EVENT_TIMEOUT)
        assert not stuck, f"tasks still running after aclose(): {stuck}"

    def shut_down(self) -> None:
        """Stop the loop and its thread (after ``close()``)."""
        if self._loop.is_closed():
            return

        async def shut_down() -> None:
            await self._loop.shutdown_asyncgens()
            await self._loop.shutdown_default_executor()

        try:
            asyncio.run_coroutine_threadsafe(shut_down(), self._loop).result(EVENT_TIMEOUT)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(EVENT_TIMEOUT)
            self._loop.close()


Open = Callable[..., Fleet]


@pytest.fixture(params=["sync", "async"])
def fleet(request: pytest.FixtureRequest, swarm_dns: FakeSwarm) -> Iterator[Open]:
    """Open a fleet watch through one front end; each is closed after the test.

    After the test, no thread may be left behind, and collecting garbage must
    find no socket left open (``-W error`` turns its ResourceWarning into a
    failure).
    """
    opened: list[Fleet] = []
    threads_before = set(threading.enumerate())

    def open_fleet(services: Sequence[str], **options: Any) -> Fleet:
        kind = SyncFleet if request.param == "sync" else AsyncFleet
        watch = kind(services, **{**FAST, **options})
        opened.append(watch)
        return watch

    yield open_fleet
    try:
        for watch in opened:
            watch.close()  # again, for those a test closed itself
    finally:
        for watch in opened:
            if isinstance(watch, AsyncFleet):
                watch.shut_down()
    gc.collect()
    left = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert left == [], f"threads left behind: {left}"


# -- helpers --------------------------------------------------------------------------------------


def ips(*found: IPv4Address) -> frozenset[IPv4Address]:
    return frozenset(found)


def tasks_of(service: str, network: str | None = None) -> str:
    return f"tasks.{service}" if network is None else f"tasks.{service}.{network}"


def initial_sets(watch: Fleet, count: int) -> dict[str, TaskSetChange]:
    """The next ``count`` changes, each the first of a different service."""
    firsts: dict[str, TaskSetChange] = {}
    for _ in range(count):
        change = watch.next_event()
        assert change.service not in firsts, f"a second change before every initial set: {change}"
        firsts[change.service] = change
    return firsts


def looked_up(swarm: FakeSwarm, services: Sequence[str], times: int = 3) -> None:
    """Wait until each service's tasks name has been asked ``times`` more times."""
    for service in services:
        seen = swarm.count_queries(tasks_of(service))
        swarm.wait_for_queries(seen + times, name=tasks_of(service), timeout=EVENT_TIMEOUT)


def next_is_only(
    watch: Fleet,
    swarm: FakeSwarm,
    quiet: Sequence[str],
    change: Callable[[], object],
    service: str,
) -> TaskSetChange:
    """The next change, after ``quiet`` were looked up again and ``change`` changed ``service``.

    Any change of a quiet service (a spurious one) would come out first.
    """
    pending = watch.next_or_end_soon()
    looked_up(swarm, quiet)
    change()
    seen = pending.result(EVENT_TIMEOUT)
    assert seen is not None, "the watch ended"
    assert seen.service == service, f"a change nobody made: {seen}"
    return seen


# -- the initial sets -----------------------------------------------------------------------------


def test_the_first_change_of_each_service_is_its_initial_set(
    swarm_dns: FakeSwarm, fleet: Open
) -> None:
    web = swarm_dns.create_service("web", replicas=3)
    api = swarm_dns.create_service("api", replicas=1)
    watch = fleet(["web", "api", "ghost", "web"])

    firsts = initial_sets(watch, 3)

    assert set(firsts) == {"web", "api", "ghost"}
    for service, expected in (("web", web.task_ips), ("api", api.task_ips), ("ghost", ())):
        first = firsts[service]
        assert (first.added, first.removed, first.current) == (ips(*expected), ips(), expected)
        assert first.observed_at.tzinfo is not None
    assert watch.watch.services == ("web", "api", "ghost")
    assert dict(watch.watch.current) == {"web": web.task_ips, "api": api.task_ips, "ghost": ()}
    for health in watch.watch.health.values():
        assert health.consecutive_failures == 0
        assert health.last_success is not None
        assert health.last_error is None


def test_an_unknown_service_is_nxdomain_and_empty(swarm_dns: FakeSwarm, fleet: Open) -> None:
    watch = fleet(["ghost"])

    first = watch.next_event()

    assert (first.service, first.added, first.current) == ("ghost", ips(), ())
    assert [q.outcome.name for q in swarm_dns.queries][:1] == ["NXDOMAIN"]
    assert watch.watch.health["ghost"].consecutive_failures == 0


def test_the_views_are_read_only(swarm_dns: FakeSwarm, fleet: Open) -> None:
    swarm_dns.create_service("web")
    watch = fleet(["web"])
    watch.next_event()

    current: Any = watch.watch.current
    health: Any = watch.watch.health
    with pytest.raises(TypeError):
        current["web"] = ()
    with pytest.raises(TypeError):
        health["web"] = None
    with pytest.raises(KeyError):
        current["api"]
    with pytest.raises(KeyError):
        health["api"]
    assert len(current) == 1
    assert "api" not in current


def test_a_network_scoped_watch_asks_each_service_on_that_network(
    swarm_dns: FakeSwarm, fleet: Open
) -> None:
    web = swarm_dns.create_service("web", replicas=2, network=["front", "back"])
    api = swarm_dns.create_service("api", replicas=1, network="back")
    watch = fleet(["web", "api"], network="back")

    firsts = initial_sets(watch, 2)

    assert firsts["web"].current == web.task_ips_on("back")
    assert firsts["api"].current == api.task_ips_on("back")
    assert {q.name for q in swarm_dns.queries} == {"tasks.web.back", "tasks.api.back"}


def test_more_services_than_lookups_in_flight_all_get_their_initial_set(
    swarm_dns: FakeSwarm, fleet: Open
) -> None:
    swarm_dns.create_network("wide", subnet="10.9.0.0/21")
    names = [f"s{i}" for i in range(5 * MAX_IN_FLIGHT)]  # more than may be in flight at once
    for name in names:
        swarm_dns.create_service(name, network="wide")
    watch = fleet(names, interval=30.0, timeout=5.0)

    firsts = initial_sets(watch, len(names))

    for service in swarm_dns.services:
        assert firsts[service.name].current == service.task_ips
    assert all(h.consecutive_failures == 0 for h in watch.watch.health.values())


# -- changes --------------------------------------------------------------------------------------


def test_scaling_one_service_changes_that_service_only(swarm_dns: FakeSwarm, fleet: Open) -> None:
    swarm_dns.create_service("a", replicas=2)
    b = swarm_dns.create_service("b", replicas=2)
    swarm_dns.create_service("c", replicas=1)
    watch = fleet(["a", "b", "c"])
    initial_sets(watch, 3)

    before = b.task_ips
    b = swarm_dns.scale("b", 4)
    up = watch.next_event()
    assert (up.service, up.added, up.removed) == ("b", ips(*b.task_ips) - ips(*before), ips())
    assert up.current == b.task_ips

    before = b.task_ips
    b = swarm_dns.scale("b", 1)
    down = watch.next_event()
    assert (down.service, down.added) == ("b", ips())
    assert down.removed == ips(*before) - ips(*b.task_ips)
    assert watch.watch.current["b"] == b.task_ips

    marker = next_is_only(watch, swarm_dns, ["a", "b", "c"], lambda: swarm_dns.scale("c", 2), "c")
    assert marker.current == swarm_dns.service("c").task_ips
    assert watch.watch.current["a"] == swarm_dns.service("a").task_ips


def test_a_replaced_task_is_one_change(swarm_dns: FakeSwarm, fleet: Open) -> None:
    web = swarm_dns.create_service("web", replicas=3)
    swarm_dns.create_service("api")
    watch = fleet(["web", "api"])
    initial_sets(watch, 2)

    old = web.tasks[1]
    new = swarm_dns.replace_task(old)
    change = watch.next_event()

    assert (change.service, change.added, change.removed) == ("web", ips(new.ip), ips(old.ip))


FAULTS: list[tuple[Fault | Delay, type[SwarmDNSError]]] = [
    (Fault.SERVFAIL, ResolutionError),
    (Fault.REFUSED, ResolutionError),
    (Fault.NO_REPLY, ResolutionTimeout),
    (Fault.GARBAGE, ResolutionTimeout),  # dropped: the wait goes on
    (Fault.WRONG_ID, ResolutionTimeout),  # dropped too
    (Delay(1.0), ResolutionTimeout),  # longer than the lookup's 0.25 s
]


@pytest.mark.parametrize(
    ("fault", "error"),
    FAULTS,
    ids=[getattr(f, "name", None) or repr(f) for f, _ in FAULTS],
)
def test_a_failing_service_keeps_its_set_and_shows_it_in_its_health(
    swarm_dns: FakeSwarm, fleet: Open, fault: Fault | Delay, error: type[SwarmDNSError]
) -> None:
    a = swarm_dns.create_service("a", replicas=2)
    b = swarm_dns.create_service("b", replicas=2)
    watch = fleet(["a", "b"])
    initial_sets(watch, 2)

    pending = watch.next_or_end_soon()
    failed_from = swarm_dns.count_queries("tasks.b")
    swarm_dns.inject(fault, name="tasks.b")
    # The third failing query is sent only once two failures were taken.
    swarm_dns.wait_for_queries(failed_from + 3, name="tasks.b", timeout=EVENT_TIMEOUT)
    failing = watch.watch.health["b"]
    assert failing.consecutive_failures >= 2
    assert isinstance(failing.last_error, error)
    assert watch.watch.current["b"] == b.task_ips
    assert watch.watch.current["a"] == a.task_ips
    looked_up(swarm_dns, ["a"])
    assert watch.watch.health["a"].consecutive_failures == 0

    swarm_dns.clear_faults()
    # The first query after the clear is answered; the second is sent after that answer.
    swarm_dns.wait_for_queries(
        swarm_dns.count_queries("tasks.b") + 2, name="tasks.b", timeout=EVENT_TIMEOUT
    )
    healthy = watch.watch.health["b"]
    assert (healthy.consecutive_failures, healthy.last_error) == (0, None)
    assert healthy.last_success is not None
    assert failing.last_success is not None
    assert healthy.last_success > failing.last_success

    # Nothing came out for b: neither during the failure nor when it ended.
    looked_up(swarm_dns, ["a", "b"])
    a = swarm_dns.scale("a", 3)
    marker = pending.result(EVENT_TIMEOUT)
    assert marker is not None
    assert (marker.service, marker.current) == ("a", a.task_ips)
    assert watch.watch.current["b"] == b.task_ips


def test_a_change_made_during_a_failure_comes_out_once_it_ends(
    swarm_dns: FakeSwarm, fleet: Open
) -> None:
    swarm_dns.create_service("a", replicas=2)
    b = swarm_dns.create_service("b", replicas=2)
    watch = fleet(["a", "b"])
    initial_sets(watch, 2)

    pending = watch.next_or_end_soon()
    failed_from = swarm_dns.count_queries("tasks.b")
    swarm_dns.inject(Fault.SERVFAIL, name="tasks.b")
    before = b.task_ips
    b = swarm_dns.scale("b", 3)
    swarm_dns.wait_for_queries(failed_from + 3, name="tasks.b", timeout=EVENT_TIMEOUT)
    assert not pending.done()
    assert watch.watch.current["b"] == before
    swarm_dns.clear_faults()

    change = pending.result(EVENT_TIMEOUT)
    assert change is not None
    assert (change.service, change.added, change.removed) == (
        "b",
        ips(*b.task_ips) - ips(*before),
        ips(),
    )
    assert watch.watch.health["b"].consecutive_failures == 0


def test_a_failure_from_the_first_lookup_on_delays_only_that_initial_set(
    swarm_dns: FakeSwarm, fleet: Open
) -> None:
    a = swarm_dns.create_service("a", replicas=2)
    b = swarm_dns.create_service("b", replicas=1)
    swarm_dns.inject([Fault.SERVFAIL] * 3, name="tasks.b")
    watch = fleet(["a", "b"])

    firsts = initial_sets(watch, 2)

    assert firsts["a"].current == a.task_ips
    assert (firsts["b"].added, firsts["b"].current) == (ips(*b.task_ips), b.task_ips)
    assert swarm_dns.count_queries("tasks.b") >= 4


def test_fail_after_ends_the_watch_once_one_service_fails_that_long(
    swarm_dns: FakeSwarm, fleet: Open
) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    swarm_dns.create_service("api", replicas=1)
    swarm_dns.inject(Fault.SERVFAIL, name="tasks.api")
    watch = fleet(["web", "api"], fail_after=0.3)

    first = watch.next_event()  # web's initial set; api has none
    with pytest.raises(WatchTimeout, match=r"tasks\.api\..*fail_after=0\.3.*SERVFAIL") as caught:
        watch.next_event()

    assert (first.service, first.current) == ("web", web.task_ips)
    assert isinstance(caught.value.last_error, ResolutionError)
    assert watch.next_or_end_soon().result(EVENT_TIMEOUT) is None  # the watch is over


def test_outages_reach_on_health_as_they_begin_and_as_they_end(
    swarm_dns: FakeSwarm, fleet: Open
) -> None:
    swarm_dns.create_service("web", replicas=1)
    swarm_dns.create_service("api", replicas=1)
    swarm_dns.inject([Fault.SERVFAIL] * 2, name="tasks.api")
    told: queue.Queue[HealthEvent] = queue.Queue()
    watch = fleet(["web", "api"], on_health=told.put)

    firsts = initial_sets(watch, 2)  # api's comes with the lookup that ended its outage

    failing = told.get(timeout=EVENT_TIMEOUT)
    recovered = told.get(timeout=EVENT_TIMEOUT)
    assert isinstance(failing, LookupsFailing)
    assert isinstance(recovered, LookupsRecovered)
    assert (failing.service, recovered.service, recovered.failures) == ("api", "api", 2)
    assert recovered.failed_for == recovered.at - failing.since > 0
    assert recovered.observed_at <= firsts["api"].observed_at
    assert told.empty()  # web's lookups worked all along


def test_a_fleet_watcher_ends_after_fail_after_and_says_why(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=1)
    swarm_dns.inject(Fault.SERVFAIL, name="tasks.web")
    told: queue.Queue[HealthEvent] = queue.Queue()
    watcher = swarmdns.FleetWatcher(["web"], fail_after=0.2, on_health=told.put, **FAST)

    with watcher:
        assert not watcher.wait_for_change(EVENT_TIMEOUT)  # no change: the watch ended
        assert not watcher.running

    assert isinstance(watcher.error, WatchTimeout)
    assert "tasks.web." in str(watcher.error)
    failing = told.get(timeout=EVENT_TIMEOUT)
    assert isinstance(failing, LookupsFailing)
    assert failing.service == "web"
    assert told.empty()


def test_a_fleet_watcher_tells_on_health_in_its_thread(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=1)
    swarm_dns.inject([Fault.SERVFAIL], name="tasks.web")
    told: queue.Queue[tuple[str, str]] = queue.Queue()

    def tell(event: HealthEvent) -> None:
        told.put((type(event).__name__, threading.current_thread().name))

    with swarmdns.FleetWatcher(["web"], on_health=tell, **FAST) as watcher:
        watcher.wait_for_tasks("web", 1, timeout=EVENT_TIMEOUT)
        events = [told.get(timeout=EVENT_TIMEOUT) for _ in range(2)]

    assert events == [
        ("LookupsFailing", "swarmdns-watch-fleet"),
        ("LookupsRecovered", "swarmdns-watch-fleet"),
    ]


def test_removal_debounce_waits_for_successive_lookups(swarm_dns: FakeSwarm, fleet: Open) -> None:
    a = swarm_dns.create_service("a", replicas=3)
    swarm_dns.create_service("b", replicas=1)
    watch = fleet(["a", "b"], removal_debounce=3)
    initial_sets(watch, 2)
    victim = a.tasks[0]

    pending = watch.next_or_end_soon()
    killed_at = swarm_dns.count_queries("tasks.a")
    swarm_dns.kill_task(victim)
    change = pending.result(EVENT_TIMEOUT)

    assert change is not None
    assert (change.service, change.added, change.removed) == ("a", ips(), ips(victim.ip))
    # Every lookup that saw it missing was asked after the kill.
    assert swarm_dns.count_queries("tasks.a") - killed_at >= 3

    # An addition is not debounced.
    added = swarm_dns.scale("a", 3)
    back = watch.next_event()
    assert (back.service, back.current) == ("a", added.task_ips)


def test_a_false_nxdomain_is_held_for_its_service_alone(swarm_dns: FakeSwarm, fleet: Open) -> None:
    # Docker 29.x, after a node came back: NXDOMAIN for the services of its
    # tasks, while they run on (moby/moby#53141). Here the asking container
    # leaves a's network, which makes the engine answer a's names the same way.
    a = swarm_dns.create_service("a", replicas=2, network="a-net")
    swarm_dns.create_service("b", replicas=2)
    told: queue.Queue[HealthEvent] = queue.Queue()
    watch = fleet(["a", "b"], max_drop=0.5, on_health=told.put)
    initial_sets(watch, 2)

    pending = watch.next_or_end_soon()
    swarm_dns.client_networks = ["default"]
    held = told.get(timeout=EVENT_TIMEOUT)
    looked_up(swarm_dns, ["a", "b"])
    health = watch.watch.health["a"]
    current = dict(watch.watch.current)
    swarm_dns.client_networks = None
    released = told.get(timeout=EVENT_TIMEOUT)
    b = swarm_dns.scale("b", 3)
    change = pending.result(EVENT_TIMEOUT)  # b's: a was never emptied
    assert change is not None

    assert isinstance(held, ChangeHeld)
    assert (held.service, held.tasks, held.removed) == ("a", (), ips(*a.task_ips))
    assert held.reason == "drop of 2 of 2 exceeds max_drop 0.5"
    assert current["a"] == a.task_ips
    assert health.held is not None
    assert health.held.since == held.since
    assert watch.watch.health["b"].held is None
    assert isinstance(released, HoldReleased)
    assert (released.service, released.expired) == ("a", False)
    assert (change.service, change.current) == ("b", b.task_ips)
    assert watch.watch.health["a"].held is None
    assert told.empty()


def test_a_fleet_reports_a_drop_held_past_hold_for(swarm_dns: FakeSwarm, fleet: Open) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    told: queue.Queue[HealthEvent] = queue.Queue()
    watch = fleet(["web"], min_tasks=1, hold_for=0.2, on_health=told.put)
    watch.next_event()

    swarm_dns.scale("web", 0)  # a real scale to zero: believed once held for 0.2 s
    change = watch.next_event()

    held, released = told.get(timeout=EVENT_TIMEOUT), told.get(timeout=EVENT_TIMEOUT)
    assert isinstance(held, ChangeHeld)
    assert isinstance(released, HoldReleased)
    assert released.expired is True
    assert released.held_for >= 0.2
    assert (change.service, change.removed, change.current) == ("web", ips(*web.task_ips), ())


def test_a_fleet_watcher_holds_too(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    told: queue.Queue[HealthEvent] = queue.Queue()
    changes: queue.Queue[TaskSetChange] = queue.Queue()
    watcher = swarmdns.FleetWatcher(
        ["web"], min_tasks=2, on_health=told.put, on_change=changes.put, **FAST
    )

    with watcher:
        changes.get(timeout=EVENT_TIMEOUT)
        swarm_dns.kill_task(web.tasks[0])  # would leave 1 of 2: held
        held = told.get(timeout=EVENT_TIMEOUT)
        kept = watcher.current["web"]
        health = watcher.health["web"]
        grown = swarm_dns.scale("web", 3)  # back to 3 tasks: believed again
        released = told.get(timeout=EVENT_TIMEOUT)
        change = changes.get(timeout=EVENT_TIMEOUT)

    assert isinstance(held, ChangeHeld)
    assert held.reason == "below min_tasks 2"
    assert kept == web.task_ips
    assert health.held is not None
    assert isinstance(released, HoldReleased)
    assert change.current == grown.task_ips
    assert ips(web.tasks[0].ip) == change.removed
    assert changes.empty()


def test_excluded_addresses_never_appear(swarm_dns: FakeSwarm, fleet: Open) -> None:
    web = swarm_dns.create_service("web", replicas=3)
    api = swarm_dns.create_service("api", replicas=2)
    me, also = web.tasks[0].ip, api.tasks[1].ip
    watch = fleet(["web", "api"], exclude=[str(me), also])

    firsts = initial_sets(watch, 2)
    new = swarm_dns.replace_task(web.tasks[1])
    change = watch.next_event()

    assert firsts["web"].current == tuple(ip for ip in web.task_ips if ip != me)
    assert firsts["api"].current == tuple(ip for ip in api.task_ips if ip != also)
    assert (change.service, change.added) == ("web", ips(new.ip))
    assert me not in change.current
    assert me not in change.removed


def test_exclude_self_leaves_out_this_machines_addresses(
    swarm_dns: FakeSwarm, fleet: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = swarm_dns.create_service("web", replicas=3)
    me = web.tasks[2].ip
    monkeypatch.setattr("swarmdns._own_addresses.local_addresses", lambda: frozenset({me}))
    watch = fleet(["web"], exclude_self=True)

    first = watch.next_event()

    assert first.current == tuple(ip for ip in web.task_ips if ip != me)


# -- truncation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("network", [None, "wide"])
def test_more_tasks_than_fit_in_a_datagram_come_back_whole_over_tcp(
    swarm_dns: FakeSwarm, fleet: Open, network: str | None
) -> None:
    swarm_dns.create_network("wide", subnet="10.9.0.0/22")
    big = swarm_dns.create_service("big", replicas=300, network="wide")
    small = swarm_dns.create_service("small", replicas=2, network="wide")
    watch = fleet(["big", "small"], network=network, timeout=2.0)

    firsts = initial_sets(watch, 2)

    assert firsts["big"].current == big.task_ips
    assert len(firsts["big"].current) == 300
    assert firsts["small"].current == small.task_ips
    name = tasks_of("big", network)
    asked = [(q.transport, q.truncated) for q in swarm_dns.queries if q.name == name]
    assert asked[:2] == [("udp", True), ("tcp", False)]
    assert {q.transport for q in swarm_dns.queries if q.name == tasks_of("small", network)} == {
        "udp"
    }

    before = big.task_ips
    big = swarm_dns.scale("big", 301)
    change = watch.next_event()
    assert (change.service, change.added, change.removed) == (
        "big",
        ips(*big.task_ips) - ips(*before),
        ips(),
    )
    assert change.current == big.task_ips


# -- add and discard ------------------------------------------------------------------------------


def test_a_service_added_while_iterating_gets_its_initial_set(
    swarm_dns: FakeSwarm, fleet: Open
) -> None:
    swarm_dns.create_service("a", replicas=2)
    c = swarm_dns.create_service("c", replicas=3)
    watch = fleet(["a"], interval=0.2)
    watch.next_event()

    pending = watch.next_or_end_soon()
    looked_up(swarm_dns, ["a"], times=1)  # the watch is running, and has nothing to say
    assert watch.add("c") is True
    added = pending.result(EVENT_TIMEOUT)

    assert added is not None
    assert (added.service, added.added, added.removed) == ("c", ips(*c.task_ips), ips())
    assert watch.add("c") is False
    assert watch.add("a") is False
    assert watch.watch.services == ("a", "c")
    assert watch.watch.current["c"] == c.task_ips

    assert watch.add("ghost") is True
    ghost = watch.next_event()
    assert (ghost.service, ghost.current) == ("ghost", ())

    c = swarm_dns.scale("c", 4)
    grown = watch.next_event()
    assert (grown.service, grown.current) == ("c", c.task_ips)


def test_adding_a_bad_name_is_refused_and_changes_nothing(
    swarm_dns: FakeSwarm, fleet: Open
) -> None:
    swarm_dns.create_service("a")
    watch = fleet(["a"])
    watch.next_event()

    with pytest.raises(InvalidName):
        watch.add("tasks.b")
    with pytest.raises(InvalidName):
        watch.add("b!")

    assert watch.watch.services == ("a",)
    assert all(q.name == "tasks.a" for q in swarm_dns.queries)


def test_a_discarded_service_is_no_longer_looked_up_or_reported(
    swarm_dns: FakeSwarm, fleet: Open
) -> None:
    swarm_dns.create_service("a", replicas=1)
    swarm_dns.create_service("b", replicas=1)
    watch = fleet(["a", "b"])
    initial_sets(watch, 2)

    assert watch.discard("b") is True
    discarded_at = swarm_dns.count_queries("tasks.b")
    assert watch.discard("b") is False
    assert watch.discard("never") is False
    assert watch.watch.services == ("a",)
    assert set(watch.watch.current) == {"a"}
    assert set(watch.watch.health) == {"a"}
    with pytest.raises(KeyError):
        watch.wait_for_tasks("b", 1, timeout=1.0)

    swarm_dns.scale("b", 3)
    # While a is looked up three more times, b would be too, if it still were.
    next_is_only(watch, swarm_dns, ["a"], lambda: swarm_dns.scale("a", 2), "a")
    # At most the lookup already on its way when it was discarded.
    assert swarm_dns.count_queries("tasks.b") <= discarded_at + 1

    # Added again, it starts over: its first change is its whole set.
    assert watch.add("b") is True
    again = watch.next_event()
    assert (again.service, again.added, again.removed) == (
        "b",
        ips(*swarm_dns.service("b").task_ips),
        ips(),
    )


# -- wait_for_tasks -------------------------------------------------------------------------------


def test_wait_for_tasks_returns_once_the_first_lookup_shows_enough(
    swarm_dns: FakeSwarm, fleet: Open
) -> None:
    a = swarm_dns.create_service("a", replicas=2)
    b = swarm_dns.create_service("b", replicas=2)
    c = swarm_dns.create_service("c", replicas=2)
    watch = fleet(["a", "b", "c"])

    found = {name: watch.wait_for_tasks(name, 2, timeout=WAIT_TIMEOUT) for name in "cab"}

    assert found == {"a": a.task_ips, "b": b.task_ips, "c": c.task_ips}
    firsts = initial_sets(watch, 3)  # the changes seen while waiting are all still there
    assert {name: change.current for name, change in firsts.items()} == found


def test_wait_for_tasks_waits_for_enough_and_keeps_the_changes_it_saw(
    swarm_dns: FakeSwarm, fleet: Open
) -> None:
    a = swarm_dns.create_service("a", replicas=1)
    b = swarm_dns.create_service("b", replicas=1)
    watch = fleet(["a", "b"])

    waiting = watch.wait_for_tasks_soon("a", 3, timeout=WAIT_TIMEOUT)
    looked_up(swarm_dns, ["a", "b"], times=2)  # both initial sets are in, not enough yet
    b_before = b.task_ips
    b = swarm_dns.scale("b", 2)
    looked_up(swarm_dns, ["b"], times=2)  # b's change was seen while waiting
    assert not waiting.done()
    a_before = a.task_ips
    a = swarm_dns.scale("a", 3)

    assert waiting.result(EVENT_TIMEOUT) == a.task_ips
    seen = [watch.next_event() for _ in range(4)]
    by_service = {
        name: [(c.added, c.removed) for c in seen if c.service == name] for name in ("a", "b")
    }
    assert by_service == {
        "a": [(ips(*a_before), ips()), (ips(*a.task_ips) - ips(*a_before), ips())],
        "b": [(ips(*b_before), ips()), (ips(*b.task_ips) - ips(*b_before), ips())],
    }


def test_wait_for_tasks_gives_up_with_what_it_saw(swarm_dns: FakeSwarm, fleet: Open) -> None:
    a = swarm_dns.create_service("a", replicas=2)
    watch = fleet(["a"])

    started = time.monotonic()
    with pytest.raises(NotEnoughTasks) as caught:
        watch.wait_for_tasks("a", 3, timeout=0.3)

    assert time.monotonic() - started >= 0.3
    assert caught.value.current == a.task_ips
    assert isinstance(caught.value, TimeoutError)
    first = watch.next_event()  # the initial set it saw is still handed out
    assert (first.service, first.current) == ("a", a.task_ips)


def test_wait_for_tasks_through_a_failure_says_so(swarm_dns: FakeSwarm, fleet: Open) -> None:
    swarm_dns.create_service("a", replicas=2)
    swarm_dns.inject(Fault.SERVFAIL, name="tasks.a")
    watch = fleet(["a"])

    with pytest.raises(NotEnoughTasks, match="SERVFAIL") as caught:
        watch.wait_for_tasks("a", 1, timeout=0.3)

    assert caught.value.current == ()


def test_wait_for_tasks_of_a_service_not_watched_is_a_key_error(
    swarm_dns: FakeSwarm, fleet: Open
) -> None:
    swarm_dns.create_service("a")
    watch = fleet(["a"])

    with pytest.raises(KeyError, match="add"):
        watch.wait_for_tasks("b", 1, timeout=EVENT_TIMEOUT)
    assert swarm_dns.count_queries("tasks.b") == 0


# -- other backends: one lookup at a time ---------------------------------------------------------


def test_a_static_backend_goes_through_its_own_lookups(fleet: Open) -> None:
    backend = StaticBackend(
        {"tasks.s1": ["10.0.1.3", "10.0.1.4"], "tasks.s2": ["10.0.1.9"], "tasks.s4.net": []}
    )
    watch = fleet(["s1", "s2", "s3"], backend=backend)

    firsts = initial_sets(watch, 3)
    assert firsts["s1"].current == (IPv4Address("10.0.1.3"), IPv4Address("10.0.1.4"))
    assert firsts["s2"].current == (IPv4Address("10.0.1.9"),)
    assert firsts["s3"].current == ()  # not in the table: NXDOMAIN

    backend.set("tasks.s1", ["10.0.1.3", "10.0.1.4", "10.0.1.5"])
    grown = watch.next_event()
    assert (grown.service, grown.added) == ("s1", ips(IPv4Address("10.0.1.5")))

    backend.remove("tasks.s2")
    gone = watch.next_event()
    assert (gone.service, gone.removed, gone.current) == ("s2", ips(IPv4Address("10.0.1.9")), ())


def test_a_static_backend_on_a_network(fleet: Open) -> None:
    backend = StaticBackend({"tasks.s1.net": ["10.0.1.3"], "tasks.s1": ["10.0.1.4"]})
    watch = fleet(["s1"], network="net", backend=backend)

    assert watch.next_event().current == (IPv4Address("10.0.1.3"),)


Reply = tuple[str, ...] | BaseException | None


class ScriptedBackend:
    """A user's backend: each name answers from its script, one reply per lookup.

    A reply is the addresses, an exception to raise, or None for NXDOMAIN;
    the last reply of a script is repeated. Names without a script do not
    exist.
    """

    def __init__(self, scripts: dict[str, list[Reply]]) -> None:
        self._scripts = {name: list(script) for name, script in scripts.items()}
        self._calls: dict[str, int] = {}
        self._changed = threading.Condition()

    def script(self, name: str, replies: list[Reply]) -> None:
        with self._changed:
            self._scripts[name] = list(replies)

    def calls(self, name: str) -> int:
        with self._changed:
            return self._calls.get(name, 0)

    def wait_for_calls(self, name: str, count: int) -> None:
        with self._changed:
            if not self._changed.wait_for(
                lambda: self._calls.get(name, 0) >= count, EVENT_TIMEOUT
            ):
                raise AssertionError(f"{name} was looked up {self._calls.get(name, 0)} times")

    def resolve(self, question: Question, timeout: float) -> Answer:
        name = question.name.rstrip(".")
        with self._changed:
            self._calls[name] = self._calls.get(name, 0) + 1
            self._changed.notify_all()
            script = self._scripts.get(name, [None])
            reply = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(reply, BaseException):
            raise reply
        return Answer(
            question=question,
            records=reply or (),
            nxdomain=reply is None,
            nameserver="scripted",
        )

    async def resolve_async(self, question: Question, timeout: float) -> Answer:
        return self.resolve(question, timeout)


X = ("10.0.1.2", "10.0.1.3")
Y = ("10.0.1.2",)


def test_a_users_backend_debounces_a_flapping_task(fleet: Open) -> None:
    # Missing twice, back, then missing three times in a row: one removal, at
    # the seventh lookup; never a removal and a re-addition.
    backend = ScriptedBackend({"tasks.a": [X, Y, Y, X, Y, Y, Y]})
    watch = fleet(["a"], backend=backend, removal_debounce=3)

    first = watch.next_event()
    assert first.current == tuple(IPv4Address(ip) for ip in X)
    change = watch.next_event()

    assert (change.service, change.added, change.removed) == ("a", ips(), ips(IPv4Address(X[1])))
    assert backend.calls("tasks.a") == 7


def test_a_users_backend_that_fails_keeps_the_set(fleet: Open) -> None:
    backend = ScriptedBackend({"tasks.a": [X], "tasks.b": [Y]})
    watch = fleet(["a", "b"], backend=backend)
    initial_sets(watch, 2)

    pending = watch.next_or_end_soon()
    backend.script("tasks.b", [RuntimeError("the backend's own bug")])
    backend.wait_for_calls("tasks.b", backend.calls("tasks.b") + 3)
    failing = watch.watch.health["b"]
    assert failing.consecutive_failures >= 2
    assert isinstance(failing.last_error, ResolutionError)
    assert "the backend's own bug" in str(failing.last_error)
    assert watch.watch.current["b"] == (IPv4Address(Y[0]),)

    backend.script("tasks.b", [ResolutionError("SERVFAIL from somewhere", name="tasks.b.")])
    backend.wait_for_calls("tasks.b", backend.calls("tasks.b") + 2)
    assert "SERVFAIL from somewhere" in str(watch.watch.health["b"].last_error)

    backend.script("tasks.b", [Y])
    backend.wait_for_calls("tasks.b", backend.calls("tasks.b") + 2)
    assert watch.watch.health["b"].consecutive_failures == 0

    backend.wait_for_calls("tasks.a", backend.calls("tasks.a") + 2)
    backend.script("tasks.a", [Y])
    change = pending.result(EVENT_TIMEOUT)
    assert change is not None
    assert (change.service, change.removed) == ("a", ips(IPv4Address(X[1])))


# -- the socket: one port, and only the answers it asked for --------------------------------------


REAL = {"tasks.web.": addresses(3), "tasks.api.": addresses(2, "10.0.2.2")}
FORGED = addresses(2, "10.6.6.6")


class SpoofedServer(HostileServer):
    """A server that answers truthfully, but has each true answer preceded by forgeries.

    It records every client address it answers over UDP. With ``forge``, each
    answer is preceded by datagrams that must all be dropped: one under
    another ID, one answering another question, one that is a query, one that
    cannot be parsed, and two copies of the true answer with forged addresses
    from other sources (another port, another address).
    """

    def __init__(self, *, forge: bool) -> None:
        super().__init__(self._answer_truly)
        self.forge = forge
        self.clients: list[tuple[str, int]] = []
        self.forgeries = 0
        self.real = dict(REAL)
        self._intruders = [_udp_socket("127.0.0.1"), _udp_socket("127.0.0.2")]

    def _answer_truly(self, query: Query) -> Script:
        found = self.real.get(query.name)
        if found is None:
            return [response(query, rcode=dns.rcode.NXDOMAIN)]
        return [add_a(response(query), query.name, found)]

    def _send_udp(self, data: bytes, client: tuple[str, int]) -> None:
        self.clients.append(client)
        if self.forge:
            self._send_forgeries(data, client)
        super()._send_udp(data, client)

    def _send_forgeries(self, data: bytes, client: tuple[str, int]) -> None:
        real = dns.message.from_wire(data)
        if not real.answer:
            return
        name = real.question[0].name

        def forged(query_id: int, owner: str) -> dns.message.Message:
            message = dns.message.make_response(dns.message.make_query(owner, "A"))
            message.id = query_id
            return add_a(message, owner, FORGED)

        other = next(n for n in REAL if n != name.to_text())
        wrong_id = to_wire(forged((real.id + 1) % 65536, name.to_text()))
        wrong_question = to_wire(forged(real.id, other))
        query = forged(real.id, name.to_text())
        query.flags &= ~dns.flags.QR
        same = to_wire(forged(real.id, name.to_text()))
        for datagram in (wrong_id, wrong_question, to_wire(query), data[:7]):
            self._udp.sendto(datagram, client)
        for intruder in self._intruders:
            intruder.sendto(same, client)
        self.forgeries += 6

    def _close_sockets(self) -> None:
        super()._close_sockets()
        for intruder in self._intruders:
            intruder.close()


def _not_the_engine(server: SpoofedServer) -> DirectBackend:
    """The spoofing server's backend: it writes answers as no engine does, and is no engine."""
    return DirectBackend([server.nameserver], provenance=Provenance(mode="off"))


def _udp_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


def test_every_query_of_a_watch_leaves_from_one_udp_port(fleet: Open) -> None:
    server = SpoofedServer(forge=False)
    with server:
        watch = fleet(["web", "api", "ghost"], backend=_not_the_engine(server))
        initial_sets(watch, 3)
        pending = watch.next_or_end_soon()
        server.wait_for_queries(30, timeout=EVENT_TIMEOUT)
        watch.close()
        assert pending.result(EVENT_TIMEOUT) is None

    assert len(server.clients) >= 30
    assert {q.name for q in server.queries} == {
        "tasks.web.",
        "tasks.api.",
        "tasks.ghost.",
    }
    assert len(set(server.clients)) == 1, set(server.clients)
    assert server.clients[0][0] == "127.0.0.1"


def test_forged_and_stray_datagrams_are_dropped(fleet: Open) -> None:
    server = SpoofedServer(forge=True)
    with server:
        watch = fleet(["web", "api"], backend=_not_the_engine(server))

        firsts = initial_sets(watch, 2)
        assert firsts["web"].current == REAL["tasks.web."]
        assert firsts["api"].current == REAL["tasks.api."]

        pending = watch.next_or_end_soon()
        server.wait_for_queries(len(server.queries) + 10, timeout=EVENT_TIMEOUT)
        server.real["tasks.api."] = addresses(3, "10.0.2.2")
        change = pending.result(EVENT_TIMEOUT)
        assert change is not None
        assert (change.service, change.added) == ("api", ips(IPv4Address("10.0.2.4")))
        assert change.current == addresses(3, "10.0.2.2")
        assert watch.watch.health["web"].consecutive_failures == 0
        assert watch.watch.current["web"] == REAL["tasks.web."]
        watch.close()

    assert server.forgeries >= 6 * 12
    assert all(q.transport == "udp" for q in server.queries)


# -- closing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_flight", [False, True], ids=["idle", "lookup-in-flight"])
def test_close_ends_a_pending_next_promptly(
    swarm_dns: FakeSwarm, fleet: Open, in_flight: bool
) -> None:
    swarm_dns.create_service("a", replicas=2)
    if in_flight:
        swarm_dns.inject(Delay(3600), name="tasks.a")
    watch = fleet(["a"], timeout=3000.0 if in_flight else 0.25)
    if not in_flight:
        watch.next_event()

    pending = watch.next_or_end_soon()
    if in_flight:  # its one query, which will never be answered
        swarm_dns.wait_for_queries(1, name="tasks.a", timeout=EVENT_TIMEOUT)
    else:
        looked_up(swarm_dns, ["a"], times=1)
    started = time.monotonic()
    watch.close()

    assert pending.result(EVENT_TIMEOUT) is None
    assert time.monotonic() - started < EVENT_TIMEOUT


@pytest.mark.parametrize("kind", ["socket", "static"])
def test_close_from_another_thread_ends_a_blocked_next(swarm_dns: FakeSwarm, kind: str) -> None:
    swarm_dns.create_service("a", replicas=2)
    backend = StaticBackend({"tasks.a": ["10.0.1.3"]}) if kind == "static" else None
    watch = swarmdns.watch_services(["a"], backend=backend, **FAST)
    next(watch)
    entered = threading.Event()
    outcome: list[object] = []

    def consume() -> None:
        entered.set()
        try:
            outcome.append(next(watch))
        except StopIteration:
            outcome.append(StopIteration)
        except BaseException as error:  # reported by the assertion below
            outcome.append(error)

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert entered.wait(EVENT_TIMEOUT)
    if kind == "socket":
        looked_up(swarm_dns, ["a"], times=2)  # it is in next(), looking up
    watch.close()
    consumer.join(EVENT_TIMEOUT)

    assert not consumer.is_alive(), "next() went on after close()"
    assert outcome == [StopIteration]
    watch.close()


def test_one_consumer_at_a_time(swarm_dns: FakeSwarm, fleet: Open) -> None:
    swarm_dns.create_service("a")
    watch = fleet(["a"])
    watch.next_event()

    pending = watch.next_or_end_soon()
    looked_up(swarm_dns, ["a"], times=1)  # the first is inside next()
    with pytest.raises(RuntimeError, match="already being taken"):
        watch.next_or_end_soon().result(EVENT_TIMEOUT)

    a = swarm_dns.scale("a", 2)
    change = pending.result(EVENT_TIMEOUT)  # the first goes on undisturbed
    assert change is not None
    assert change.current == a.task_ips


def test_wait_for_tasks_while_another_consumer_iterates(swarm_dns: FakeSwarm, fleet: Open) -> None:
    a = swarm_dns.create_service("a", replicas=1)
    watch = fleet(["a"])
    watch.next_event()

    pending = watch.next_or_end_soon()
    looked_up(swarm_dns, ["a"], times=1)  # the iterator is inside next()
    waiting = watch.wait_for_tasks_soon("a", 3, timeout=WAIT_TIMEOUT)
    looked_up(swarm_dns, ["a"], times=2)  # both wait, and the lookups go on
    assert not waiting.done()
    assert not pending.done()
    before = a.task_ips
    a = swarm_dns.scale("a", 3)

    assert waiting.result(EVENT_TIMEOUT) == a.task_ips
    change = pending.result(EVENT_TIMEOUT)  # the iterator gets the change, as alone
    assert change is not None
    assert (change.added, change.removed) == (ips(*a.task_ips) - ips(*before), ips())


def test_wait_for_tasks_while_another_iterates_gives_up_alone(
    swarm_dns: FakeSwarm, fleet: Open
) -> None:
    a = swarm_dns.create_service("a", replicas=1)
    b = swarm_dns.create_service("b", replicas=1)
    watch = fleet(["a", "b"])
    initial_sets(watch, 2)

    pending = watch.next_or_end_soon()
    looked_up(swarm_dns, ["a"], times=1)
    with pytest.raises(NotEnoughTasks) as caught:
        watch.wait_for_tasks("a", 2, timeout=0.3)
    assert caught.value.current == a.task_ips
    assert not pending.done()  # the iteration goes on, its lookups too
    b = swarm_dns.scale("b", 2)

    change = pending.result(EVENT_TIMEOUT)
    assert change is not None
    assert (change.service, change.current) == ("b", b.task_ips)


def test_wait_for_tasks_while_another_iterates_ends_with_the_watch(
    swarm_dns: FakeSwarm, fleet: Open
) -> None:
    swarm_dns.create_service("a", replicas=1)
    watch = fleet(["a"])
    watch.next_event()

    pending = watch.next_or_end_soon()
    waiting = watch.wait_for_tasks_soon("a", 3, timeout=EVENT_TIMEOUT)
    looked_up(swarm_dns, ["a"], times=2)
    watch.close()

    with pytest.raises(RuntimeError, match="closed before it showed 3 tasks"):
        waiting.result(EVENT_TIMEOUT)
    assert pending.result(EVENT_TIMEOUT) is None


def test_after_close_the_iteration_is_over(swarm_dns: FakeSwarm, fleet: Open) -> None:
    swarm_dns.create_service("a")
    watch = fleet(["a"])
    watch.next_event()

    watch.close()

    assert watch.next_or_end_soon().result(EVENT_TIMEOUT) is None
    assert watch.next_or_end_soon().result(EVENT_TIMEOUT) is None
    with pytest.raises(RuntimeError, match="closed"):
        watch.wait_for_tasks("a", 5, timeout=EVENT_TIMEOUT)


def test_after_close_even_changes_not_taken_are_not_handed_out(
    swarm_dns: FakeSwarm, fleet: Open
) -> None:
    # close() ends the watch, as closing watch_tasks()' iterator does: a loop
    # over it in another thread ends rather than working through stale changes.
    swarm_dns.create_service("a")
    watch = fleet(["a"])
    watch.wait_for_tasks("a", 1, timeout=EVENT_TIMEOUT)  # its initial set is seen, not taken

    watch.close()

    assert watch.next_or_end_soon().result(EVENT_TIMEOUT) is None


def test_closing_twice_and_context_managers(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("a")
    with swarmdns.watch_services(["a"], **FAST) as watch:
        assert isinstance(watch, FleetWatch)
        next(watch)
    watch.close()
    with pytest.raises(StopIteration):
        next(watch)

    async def main() -> None:
        async with swarmdns.aio.watch_services(["a"], **FAST) as watch:
            assert isinstance(watch, AsyncFleetWatch)
            await anext(watch)
        await watch.aclose()
        with pytest.raises(StopAsyncIteration):
            await anext(watch)

    asyncio.run(main())


def test_a_watch_never_iterated_closes_cleanly(swarm_dns: FakeSwarm) -> None:
    swarmdns.watch_services(["a"], **FAST).close()

    async def main() -> None:
        await swarmdns.aio.watch_services(["a"], **FAST).aclose()

    asyncio.run(main())
    assert swarm_dns.count_queries() == 0


def _open_files() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_closing_releases_every_socket(swarm_dns: FakeSwarm, fleet: Open) -> None:
    swarm_dns.create_service("a", replicas=2)
    swarm_dns.create_service("b", replicas=1)
    before = _open_files()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        watch = fleet(["a", "b", "ghost"])
        initial_sets(watch, 3)
        swarm_dns.scale("a", 3)
        watch.next_event()
        watch.close()
        if isinstance(watch, AsyncFleet):
            watch.shut_down()  # the test's own loop holds files too
        del watch
        gc.collect()

    assert _open_files() == before
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


# -- bad arguments --------------------------------------------------------------------------------


@pytest.fixture(params=["sync", "async"])
def opener(request: pytest.FixtureRequest) -> Callable[..., object]:
    """The bare ``watch_services`` of one front end (for arguments refused at once)."""
    if request.param == "sync":
        return swarmdns.watch_services
    return swarmdns.aio.watch_services


@pytest.mark.parametrize(
    ("services", "network"),
    [
        (["web", "tasks.api"], None),
        (["web", "api!"], None),
        (["-web"], None),
        ([""], None),
        (["web"], "bad network!"),
    ],
)
def test_invalid_names_are_refused_at_once(
    swarm_dns: FakeSwarm, opener: Callable[..., object], services: list[str], network: str | None
) -> None:
    with pytest.raises(InvalidName):
        opener(services, network=network, **FAST)
    assert swarm_dns.count_queries() == 0


def test_one_string_is_not_a_list_of_services(
    swarm_dns: FakeSwarm, opener: Callable[..., object]
) -> None:
    with pytest.raises(TypeError, match=r"not one: \['web'\]"):
        opener("web", **FAST)
    assert swarm_dns.count_queries() == 0


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"exclude": "10.0.0.5"}, TypeError),
        ({"interval": 0}, ValueError),
        ({"timeout": -1}, ValueError),
        ({"jitter": 1.0}, ValueError),
        ({"removal_debounce": 0}, ValueError),
        ({"min_tasks": -1}, ValueError),
        ({"max_drop": 1.5}, ValueError),
        ({"max_drop": "half"}, TypeError),
        ({"hold_for": float("nan")}, ValueError),
    ],
)
def test_bad_options_are_refused_at_once(
    swarm_dns: FakeSwarm,
    opener: Callable[..., object],
    options: dict[str, Any],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        opener(["web"], **{**FAST, **options})
    assert swarm_dns.count_queries() == 0
