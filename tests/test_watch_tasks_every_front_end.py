"""Watching against the fake: scripted timelines through every driver.

Each timeline runs through the synchronous iterator, the asynchronous
iterator and ``TaskWatcher``. Nothing here sleeps: a test changes the Swarm,
then waits for the watch's next event, or for the fake's log to show that the
watch's lookups went through an injected burst of faults.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from ipaddress import IPv4Address
from typing import Any, Protocol, TypeVar

import pytest

import swarmdns
import swarmdns.aio
from swarmdns import (
    ChangeHeld,
    HealthEvent,
    HoldReleased,
    LookupsFailing,
    LookupsRecovered,
    TaskSetChange,
    TaskWatcher,
)
from swarmdns._watch import WatchView
from swarmdns.testing import Delay, FakeSwarm, Fault, Outcome, Upstream

EVENT_TIMEOUT = 30.0  # a bound for a broken test, not a timing expectation
FAST = {"interval": 0.01, "jitter": 0.0, "timeout": 0.25}
T = TypeVar("T")


class Source(Protocol):
    view: WatchView  # the watch's current set and health

    def next_event(self) -> TaskSetChange: ...

    def wait_for_tasks(self, count: int, *, timeout: float) -> tuple[IPv4Address, ...]: ...

    def close(self) -> None: ...


class SyncSource:
    def __init__(self, service: str, **options: Any) -> None:
        self._iterator = swarmdns.watch_tasks(service, **options)
        self.view = self._iterator

    def next_event(self) -> TaskSetChange:
        return next(self._iterator)

    def wait_for_tasks(self, count: int, *, timeout: float) -> tuple[IPv4Address, ...]:
        return self._iterator.wait_for_tasks(count, timeout=timeout)

    def close(self) -> None:
        self._iterator.close()


class AsyncSource:
    def __init__(self, service: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever)
        self._thread.start()
        self._iterator = swarmdns.aio.watch_tasks(service, **options)
        self.view = self._iterator

    def next_event(self) -> TaskSetChange:
        async def step() -> TaskSetChange:
            return await anext(self._iterator)

        return asyncio.run_coroutine_threadsafe(step(), self._loop).result(EVENT_TIMEOUT)

    def wait_for_tasks(self, count: int, *, timeout: float) -> tuple[IPv4Address, ...]:
        waiting = self._iterator.wait_for_tasks(count, timeout=timeout)
        return asyncio.run_coroutine_threadsafe(waiting, self._loop).result(EVENT_TIMEOUT)

    def close(self) -> None:
        closing = self._iterator.aclose()
        asyncio.run_coroutine_threadsafe(closing, self._loop).result(EVENT_TIMEOUT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


class ThreadSource:
    def __init__(self, service: str, **options: Any) -> None:
        self._events: queue.Queue[TaskSetChange] = queue.Queue()
        self.watcher = TaskWatcher(service, on_change=self._events.put, **options)
        self.view = self.watcher
        self.watcher.start()

    def next_event(self) -> TaskSetChange:
        return self._events.get(timeout=EVENT_TIMEOUT)

    def wait_for_tasks(self, count: int, *, timeout: float) -> tuple[IPv4Address, ...]:
        return self.watcher.wait_for_tasks(count, timeout=timeout)

    def close(self) -> None:
        self.watcher.stop()


Open = Callable[..., Source]


@pytest.fixture(params=[SyncSource, AsyncSource, ThreadSource], ids=["sync", "async", "thread"])
def watch(request: pytest.FixtureRequest, swarm_dns: FakeSwarm) -> Iterator[Open]:
    """Open a watch through one driver; every watch is closed after the test."""
    opened: list[Source] = []
    threads_before = set(threading.enumerate())

    def open_watch(service: str, **options: Any) -> Source:
        source: Source = request.param(service, **{**FAST, **options})
        opened.append(source)
        return source

    yield open_watch
    for source in opened:
        source.close()
    assert set(threading.enumerate()) <= threads_before  # no thread left behind


def ips(*addresses: IPv4Address) -> frozenset[IPv4Address]:
    return frozenset(addresses)


def through_faults(swarm: FakeSwarm, fault: Fault | Delay, count: int = 2) -> Callable[[], None]:
    """Make the next ``count`` lookups of tasks.web fail; return a check they did."""
    already = len([q for q in swarm.queries if q.name == "tasks.web"])
    swarm.inject([fault] * count, name="tasks.web")

    def check() -> None:
        seen = swarm.wait_for_queries(already + count + 1, name="tasks.web")
        burst = seen[already : already + count]
        assert all(q.outcome is not Outcome.NOERROR or q.delay for q in burst), burst

    return check


FAULTS: list[Fault | Delay] = [
    Fault.SERVFAIL,
    Fault.REFUSED,
    Fault.NO_REPLY,
    Fault.GARBAGE,
    Fault.WRONG_ID,
    Delay(1.0),  # longer than the lookup's 0.25 s: a timeout
]


def test_scale_up_and_down_through_bursts_of_every_fault(
    swarm_dns: FakeSwarm, watch: Open
) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    events = watch("web")
    first = events.next_event()
    assert (first.added, first.removed) == (ips(*web.task_ips), frozenset())

    for fault in FAULTS:
        before = web.task_ips
        check = through_faults(swarm_dns, fault)
        web = swarm_dns.scale("web", len(before) + 1)
        change = events.next_event()
        check()
        assert (change.added, change.removed) == (ips(*web.task_ips) - ips(*before), frozenset())
        assert change.current == web.task_ips

    for fault in FAULTS:
        before = web.task_ips
        check = through_faults(swarm_dns, fault)
        web = swarm_dns.scale("web", len(before) - 1)
        change = events.next_event()
        check()
        assert (change.added, change.removed) == (frozenset(), ips(*before) - ips(*web.task_ips))


def test_a_killed_task_and_its_replacement(swarm_dns: FakeSwarm, watch: Open) -> None:
    web = swarm_dns.create_service("web", replicas=3)
    events = watch("web")
    events.next_event()
    victim = web.tasks[1]

    check = through_faults(swarm_dns, Fault.SERVFAIL, 3)
    swarm_dns.kill_task(victim)
    gone = events.next_event()
    check()
    (replacement,) = swarm_dns.reschedule("web")
    back = events.next_event()

    assert (gone.added, gone.removed) == (frozenset(), ips(victim.ip))
    assert (back.added, back.removed) == (ips(replacement.ip), frozenset())
    assert back.current == swarm_dns.service("web").task_ips


def test_scale_to_zero_and_back(swarm_dns: FakeSwarm, watch: Open) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    events = watch("web")
    events.next_event()

    swarm_dns.scale("web", 0)
    empty = events.next_event()
    check = through_faults(swarm_dns, Fault.REFUSED)
    web_again = swarm_dns.scale("web", 2)
    full = events.next_event()
    check()

    assert (empty.removed, empty.current) == (ips(*web.task_ips), ())
    assert (full.added, full.current) == (ips(*web_again.task_ips), web_again.task_ips)


def test_rolling_replacement(swarm_dns: FakeSwarm, watch: Open) -> None:
    web = swarm_dns.create_service("web", replicas=3)
    events = watch("web")
    events.next_event()

    for old in web.tasks:
        check = through_faults(swarm_dns, Fault.GARBAGE)
        new = swarm_dns.replace_task(old)
        change = events.next_event()
        check()
        assert (change.added, change.removed) == (ips(new.ip), ips(old.ip))

    final = swarm_dns.service("web")
    assert change.current == final.task_ips
    assert not set(final.task_ips) & set(web.task_ips)


def test_removal_debounce_needs_successive_lookups(swarm_dns: FakeSwarm, watch: Open) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    events = watch("web", removal_debounce=3)
    events.next_event()
    victim = web.tasks[0]

    swarm_dns.kill_task(victim)
    change = events.next_event()

    assert change.removed == ips(victim.ip)


def test_removal_debounce_counts_lookups_exactly(swarm_dns: FakeSwarm) -> None:
    # The synchronous iterator looks up only inside next(): the queries it
    # sends while waiting for the removal can be counted exactly.
    web = swarm_dns.create_service("web", replicas=2)
    with swarmdns.watch_tasks("web", removal_debounce=3, **FAST) as changes:  # type: ignore[arg-type]
        next(changes)
        swarm_dns.kill_task(web.tasks[0])
        before = len(swarm_dns.queries)
        change = next(changes)

    assert change.removed == {web.tasks[0].ip}
    assert len(swarm_dns.queries) - before == 3


def test_excluded_addresses_never_appear(swarm_dns: FakeSwarm, watch: Open) -> None:
    web = swarm_dns.create_service("web", replicas=3)
    me = web.tasks[0].ip
    events = watch("web", exclude=[str(me)])

    first = events.next_event()
    swarm_dns.replace_task(web.tasks[1])
    second = events.next_event()

    assert me not in first.current
    assert me not in second.current
    assert len(first.current) == 2


def test_exclude_self_uses_this_machines_addresses(
    swarm_dns: FakeSwarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = swarm_dns.create_service("web", replicas=3)
    me = web.tasks[2].ip
    monkeypatch.setattr("swarmdns._own_addresses.local_addresses", lambda: frozenset({me}))
    iterator = swarmdns.watch_tasks("web", exclude_self=True, **FAST)  # type: ignore[arg-type]

    first = next(iterator)
    iterator.close()

    assert first.current == tuple(ip for ip in web.task_ips if ip != me)


@pytest.mark.swarm_dns(engine="20.10")
def test_an_old_engine_relaying_a_failing_upstream_keeps_the_set(swarm_dns: FakeSwarm) -> None:
    # 20.10 relays its upstream's SERVFAIL for a zero-task service, RA set: a
    # failure, so the watcher keeps the set and reports the trouble in its health.
    web = swarm_dns.create_service("web", replicas=2)
    swarm_dns.upstream = Upstream.SERVFAIL
    with TaskWatcher("web", **FAST) as watcher:  # type: ignore[arg-type]
        assert watcher.wait_until_started(EVENT_TIMEOUT)
        seen = len(swarm_dns.queries)
        swarm_dns.scale("web", 0)
        swarm_dns.wait_for_queries(seen + 3)

        assert watcher.current == web.task_ips
        assert watcher.health.consecutive_failures >= 2
        assert isinstance(watcher.health.last_error, swarmdns.ResolutionError)


def test_a_new_engine_without_upstream_empties_the_watch_as_in_production(
    swarm_dns: FakeSwarm,
) -> None:
    # 24+ answer a zero-task service's name with their own SERVFAIL without RA:
    # the name was forwarded, so the service has no task, as on 127.0.0.11.
    web = swarm_dns.create_service("web", replicas=2)
    swarm_dns.upstream = Upstream.UNREACHABLE
    with swarmdns.watch_tasks("web", **FAST) as watch:  # type: ignore[arg-type]
        first = next(watch)
        swarm_dns.scale("web", 0)
        gone = next(watch)  # the iterator keeps each change: none can pass unseen

        assert first.current == web.task_ips
        assert (gone.removed, gone.current) == (frozenset(web.task_ips), ())
        assert watch.health.consecutive_failures == 0


def test_fail_after_ends_the_watch(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web")
    swarm_dns.inject(Fault.SERVFAIL)
    iterator = swarmdns.watch_tasks("web", fail_after=0.1, **FAST)  # type: ignore[arg-type]

    with pytest.raises(swarmdns.WatchTimeout, match="SERVFAIL"):
        next(iterator)


def test_an_outage_reaches_on_health_as_it_begins_and_as_it_ends(
    swarm_dns: FakeSwarm, watch: Open
) -> None:
    swarm_dns.create_service("web", replicas=2)
    told: queue.Queue[HealthEvent] = queue.Queue()
    events = watch("web", on_health=told.put)
    events.next_event()
    assert told.empty()

    check = through_faults(swarm_dns, Fault.SERVFAIL, 3)
    web = swarm_dns.scale("web", 3)
    change = events.next_event()  # the lookup that ended the outage showed it
    check()

    failing = told.get(timeout=EVENT_TIMEOUT)
    recovered = told.get(timeout=EVENT_TIMEOUT)
    assert isinstance(failing, LookupsFailing)
    assert (failing.service, type(failing.error)) == ("web", swarmdns.ResolutionError)
    assert isinstance(recovered, LookupsRecovered)
    assert (recovered.service, recovered.failures) == ("web", 3)
    assert recovered.failed_for == recovered.at - failing.since > 0
    assert failing.observed_at <= recovered.observed_at <= change.observed_at
    assert change.current == web.task_ips
    assert told.empty()


def test_cancelling_the_async_watch_ends_a_lookup_in_flight(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web")
    swarm_dns.inject(Delay(3600))

    async def main() -> None:
        async def consume() -> None:
            async for _ in swarmdns.aio.watch_tasks("web", timeout=3000):
                pass

        task = asyncio.create_task(consume())
        await asyncio.to_thread(swarm_dns.wait_for_queries, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_wait_for_tasks_returns_once_enough_are_up(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=1, healthcheck=True)
    result: list[tuple[IPv4Address, ...]] = []
    waiter = threading.Thread(
        target=lambda: result.append(
            swarmdns.wait_for_tasks("web", 2, timeout=EVENT_TIMEOUT, interval=0.01)
        )
    )
    waiter.start()
    swarm_dns.wait_for_queries(2)  # it is polling and sees nothing yet
    web = swarm_dns.scale("web", 2)
    for task in web.tasks:
        swarm_dns.mark_healthy(task)
    waiter.join()

    assert result == [swarm_dns.service("web").task_ips]
    assert len(result[0]) == 2


def wait_for_tasks(api: str, count: int, **options: Any) -> tuple[IPv4Address, ...]:
    """``wait_for_tasks("web", count)`` of the sync or the async API."""
    if api == "sync":
        return swarmdns.wait_for_tasks("web", count, **options)
    return asyncio.run(swarmdns.aio.wait_for_tasks("web", count, **options))


@pytest.mark.parametrize("api", ["sync", "async"])
def test_wait_for_tasks_gives_up_with_what_it_saw(swarm_dns: FakeSwarm, api: str) -> None:
    web = swarm_dns.create_service("web", replicas=2)

    with pytest.raises(swarmdns.NotEnoughTasks) as caught:
        wait_for_tasks(api, 3, timeout=0.2, interval=0.01)

    assert caught.value.current == web.task_ips
    assert isinstance(caught.value, TimeoutError)


@pytest.mark.parametrize("api", ["sync", "async"])
def test_wait_for_tasks_cuts_a_lookup_short_at_its_timeout(swarm_dns: FakeSwarm, api: str) -> None:
    swarm_dns.create_service("web", replicas=2)
    swarm_dns.inject(Delay(3600), name="tasks.web")
    began = time.monotonic()

    with pytest.raises(swarmdns.NotEnoughTasks, match="the last lookup failed") as caught:
        wait_for_tasks(api, 2, timeout=0.2, interval=0.01)

    assert time.monotonic() - began < swarmdns.DEFAULT_TIMEOUT  # not a whole lookup's timeout
    assert caught.value.current == ()


@pytest.mark.parametrize("api", ["sync", "async"])
def test_wait_for_tasks_raises_what_retrying_will_not_mend(
    api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWARMDNS_NAMESERVER", "not an address")

    with pytest.raises(swarmdns.ConfigurationError):
        wait_for_tasks(api, 1, timeout=EVENT_TIMEOUT)


@pytest.mark.parametrize("api", ["sync", "async"])
def test_wait_for_tasks_rides_out_failures(swarm_dns: FakeSwarm, api: str) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    swarm_dns.inject([Fault.SERVFAIL, Fault.NO_REPLY, Fault.GARBAGE], name="tasks.web")

    found = wait_for_tasks(api, 2, timeout=EVENT_TIMEOUT, interval=0.01)

    assert found == web.task_ips
    assert [q.outcome for q in swarm_dns.queries][:3] == [
        Outcome.SERVFAIL,
        Outcome.NO_REPLY,
        Outcome.GARBAGE,
    ]


def test_invalid_names_are_refused_at_once() -> None:
    with pytest.raises(swarmdns.InvalidName):
        swarmdns.watch_tasks("tasks.web")
    with pytest.raises(swarmdns.InvalidName):
        swarmdns.aio.watch_tasks("-web")
    with pytest.raises(swarmdns.InvalidName):
        TaskWatcher("web!")
    with pytest.raises(ValueError, match="interval"):
        swarmdns.watch_tasks("web", interval=0)


# -- TaskWatcher's life cycle ------------------------------------------------------------


def test_iterators_show_their_health(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web")
    swarm_dns.inject([Fault.SERVFAIL], name="tasks.web")
    with swarmdns.watch_tasks("web", **FAST) as changes:  # type: ignore[arg-type]
        first = next(changes)
        assert changes.current == first.current
        assert changes.health.consecutive_failures == 0
        assert changes.health.last_success is not None

    async def main() -> tuple[bool, bool]:
        swarm_dns.inject([Fault.SERVFAIL], name="tasks.web")
        async with swarmdns.aio.watch_tasks("web", **FAST) as watch:  # type: ignore[arg-type]
            first = await anext(watch)
            return watch.current == first.current, watch.health.last_success is not None

    assert asyncio.run(main()) == (True, True)


def test_exclude_must_be_a_list() -> None:
    with pytest.raises(TypeError, match=r"not one: \['10.0.0.5'\]"):
        swarmdns.watch_tasks("web", exclude="10.0.0.5")


def test_waiting_on_a_watch_keeps_the_changes_it_saw(swarm_dns: FakeSwarm, watch: Open) -> None:
    web = swarm_dns.create_service("web", replicas=1)
    events = watch("web")
    assert events.next_event().current == web.task_ips

    web = swarm_dns.scale("web", 3)
    found = events.wait_for_tasks(3, timeout=EVENT_TIMEOUT)
    change = events.next_event()  # seen while waiting, still delivered

    assert found == web.task_ips
    assert (change.added, change.current) == (ips(*web.task_ips[1:]), web.task_ips)


def test_a_wait_that_times_out_leaves_the_watch_going(swarm_dns: FakeSwarm, watch: Open) -> None:
    web = swarm_dns.create_service("web", replicas=1)
    events = watch("web")
    events.next_event()
    check = through_faults(swarm_dns, Delay(1.0), count=3)  # lookups in flight at the deadline

    with pytest.raises(swarmdns.NotEnoughTasks) as raised:
        events.wait_for_tasks(2, timeout=0.1)
    web = swarm_dns.scale("web", 2)
    change = events.next_event()
    check()

    assert raised.value.current == web.task_ips[:1]
    assert change.added == ips(web.task_ips[1])


# -- holds: a drop the watch does not believe -----------------------------------------------


def soon(call: Callable[[], T]) -> tuple[Future[T], threading.Thread]:
    """Run ``call`` in a thread of its own: its future, and the thread to join."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(call())
        except BaseException as error:  # handed to the test through the future
            future.set_exception(error)

    thread = threading.Thread(target=run, name="hold-test-call")
    thread.start()
    return future, thread


def false_nxdomain(swarm: FakeSwarm) -> None:
    """Make web's names answer NXDOMAIN while its tasks run on, as Docker 29.x does.

    After a node dropped out for a while and came back, 29.x's other nodes
    answer NXDOMAIN for the services of its tasks, for hours (moby/moby#53141).
    Here the asking container leaves web's network: the engine answers the
    same NXDOMAIN, and the same tasks come back when it joins again.
    """
    if "elsewhere" not in {network.name for network in swarm.networks}:
        swarm.create_network("elsewhere")
    swarm.client_networks = ["elsewhere"]


def test_a_false_nxdomain_is_held_until_the_tasks_come_back(
    swarm_dns: FakeSwarm, watch: Open
) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    told: queue.Queue[HealthEvent] = queue.Queue()
    events = watch("web", min_tasks=1, on_health=told.put)
    events.next_event()

    pending, thread = soon(events.next_event)
    false_nxdomain(swarm_dns)
    held = told.get(timeout=EVENT_TIMEOUT)
    asked = swarm_dns.count_queries("tasks.web")
    swarm_dns.wait_for_queries(asked + 3, name="tasks.web", timeout=EVENT_TIMEOUT)
    health = events.view.health
    current = events.view.current
    swarm_dns.client_networks = None  # the tasks are back, as they were
    released = told.get(timeout=EVENT_TIMEOUT)
    grown = swarm_dns.scale("web", 3)
    change = pending.result(EVENT_TIMEOUT)  # the next change: the scale-up, not an empty set
    thread.join(EVENT_TIMEOUT)

    assert isinstance(held, ChangeHeld)
    assert (held.service, held.tasks, held.removed) == ("web", (), ips(*web.task_ips))
    assert held.reason == "below min_tasks 1"
    assert current == web.task_ips
    assert health.held is not None
    assert health.held.since == held.since
    assert health.holds == 1
    assert isinstance(released, HoldReleased)
    assert released.expired is False
    assert released.held_for == released.at - held.since > 0
    assert (change.added, change.removed) == (ips(*grown.task_ips) - ips(*web.task_ips), ips())
    assert events.view.health.held is None
    assert told.empty()


def test_a_drop_held_past_hold_for_is_reported(swarm_dns: FakeSwarm, watch: Open) -> None:
    web = swarm_dns.create_service("web", replicas=4)
    told: queue.Queue[HealthEvent] = queue.Queue()
    events = watch("web", max_drop=0.5, hold_for=0.2, on_health=told.put)
    events.next_event()

    swarm_dns.scale("web", 1)  # 3 of 4 at once: held, then believed after 0.2 s
    change = events.next_event()

    held, released = told.get(timeout=EVENT_TIMEOUT), told.get(timeout=EVENT_TIMEOUT)
    assert isinstance(held, ChangeHeld)
    assert held.reason == "drop of 3 of 4 exceeds max_drop 0.5"
    assert isinstance(released, HoldReleased)
    assert released.expired is True
    assert released.held_for >= 0.2
    assert change.removed == ips(*web.task_ips[1:])
    assert change.current == web.task_ips[:1]
    assert change.observed_at >= released.observed_at


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("min_tasks", -1, ValueError),
        ("max_drop", 0, ValueError),
        ("max_drop", True, TypeError),
        ("hold_for", 0, ValueError),
    ],
)
@pytest.mark.parametrize(
    "opener",
    [swarmdns.watch_tasks, swarmdns.aio.watch_tasks, TaskWatcher],
    ids=lambda o: o.__name__,
)
def test_bad_hold_options_are_refused_by_every_front_end(
    swarm_dns: FakeSwarm,
    opener: Callable[..., object],
    option: str,
    value: object,
    error: type[Exception],
) -> None:
    with pytest.raises(error, match=option):
        opener("web", **{option: value})
    assert swarm_dns.count_queries() == 0
