"""The watch's decisions, on an injected clock: diffs, debounce, errors, pacing."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from ipaddress import IPv4Address

import pytest

import swarmdns
from swarmdns import (
    ChangeHeld,
    ConfigurationError,
    LookupsFailing,
    LookupsRecovered,
    NotEnoughTasks,
    ResolutionError,
    ResolutionTimeout,
    TaskSetChange,
    WatchTimeout,
)
from swarmdns._deadlines import Deadline
from swarmdns._values import ChangeQueue, HealthEvent, net_change
from swarmdns._watch import (
    Lookup,
    Sleep,
    Stepper,
    WaitCore,
    WatchCore,
    wait_steps,
    watch_steps,
)
from swarmdns.testing import FakeSwarm

from .changes import replay


def ips(*last_octets: int) -> frozenset[IPv4Address]:
    return frozenset(IPv4Address(f"10.0.1.{n}") for n in last_octets)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


WALL = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
EVENT_TIMEOUT = 30.0  # a bound for a broken test, not a timing expectation


def core(clock: Clock | None = None, **options: object) -> WatchCore:
    settings: dict[str, object] = {"query_name": "tasks.web.", "jitter": 0.0}
    settings.update(options)
    return WatchCore(
        "web",
        clock=clock or Clock(),
        wall_clock=lambda: WALL,
        rng=random.Random(1),
        **settings,  # type: ignore[arg-type]
    )


def failure() -> ResolutionError:
    return ResolutionError("SERVFAIL", name="tasks.web.", nameserver="127.0.0.11:53")


def test_first_change_is_the_whole_initial_set() -> None:
    watch = core()

    change = watch.succeeded(ips(3, 4))

    assert change == TaskSetChange(
        service="web",
        added=ips(3, 4),
        removed=frozenset(),
        current=tuple(sorted(ips(3, 4))),
        observed_at=WALL,
    )


def test_an_empty_initial_set_is_reported_too() -> None:
    change = core().succeeded(())

    assert change is not None
    assert (change.added, change.removed, change.current) == (frozenset(), frozenset(), ())


def test_later_changes_carry_the_difference_and_no_change_reports_nothing() -> None:
    watch = core()
    watch.succeeded(ips(3, 4))

    assert watch.succeeded(ips(4, 3)) is None
    change = watch.succeeded(ips(4, 5))

    assert change is not None
    assert (change.added, change.removed, change.current) == (
        ips(5),
        ips(3),
        tuple(sorted(ips(4, 5))),
    )


def test_nxdomain_empties_the_set() -> None:
    watch = core()
    watch.succeeded(ips(3, 4))

    change = watch.succeeded(())

    assert change is not None
    assert (change.removed, change.current) == (ips(3, 4), ())


@pytest.mark.parametrize(
    "error",
    [
        ResolutionError("SERVFAIL", name="tasks.web."),
        ResolutionTimeout("timeout", name="tasks.web."),
    ],
)
def test_a_transient_failure_keeps_the_set(error: Exception) -> None:
    clock = Clock()
    watch = core(clock)
    watch.succeeded(ips(3, 4))

    clock.now += 5
    watch.failed(error)  # type: ignore[arg-type]
    watch.failed(error)  # type: ignore[arg-type]

    assert watch.current == tuple(sorted(ips(3, 4)))
    assert watch.health.consecutive_failures == 2
    assert watch.health.last_error is error
    assert watch.health.last_success == WALL
    assert watch.succeeded(ips(3, 4)) is None  # nothing changed, so nothing to report
    assert watch.health.consecutive_failures == 0


def test_an_error_that_retrying_cannot_fix_ends_the_watch() -> None:
    error = ConfigurationError("bad SWARMDNS_NAMESERVER", source="SWARMDNS_NAMESERVER")

    with pytest.raises(ConfigurationError):
        core().failed(error)


def test_an_outage_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    watch = core()
    watch.succeeded(ips(3))
    caplog.set_level(logging.INFO, logger="swarmdns")

    for _ in range(5):
        watch.failed(failure())
    watch.succeeded(ips(3))
    watch.failed(failure())

    assert [(r.levelname, r.getMessage()[:32]) for r in caplog.records] == [
        ("WARNING", "looking up tasks.web. failed; ke"),
        ("INFO", "looking up tasks.web. works agai"),
        ("WARNING", "looking up tasks.web. failed; ke"),
    ]
    assert "keeping the last 1 known tasks" in caplog.records[0].getMessage()


def health_events(
    clock: Clock | None = None, **options: object
) -> tuple[WatchCore, list[HealthEvent]]:
    """A watch whose health events land in the list returned with it."""
    events: list[HealthEvent] = []
    return core(clock, on_health=events.append, **options), events


def test_an_outage_is_told_when_it_begins_and_when_it_ends() -> None:
    clock = Clock()
    watch, events = health_events(clock)
    watch.succeeded(ips(3))
    clock.now = 1010.0
    first = failure()

    watch.failed(first)
    clock.now = 1012.5
    watch.failed(ResolutionTimeout("no answer", name="tasks.web."))
    clock.now = 1013.0
    assert watch.succeeded(ips(3)) is None  # the set did not change: no TaskSetChange

    assert events == [
        LookupsFailing(service="web", since=1010.0, error=first, observed_at=WALL),
        LookupsRecovered(service="web", at=1013.0, failed_for=3.0, failures=2, observed_at=WALL),
    ]
    assert isinstance(events[0], LookupsFailing)
    assert events[0].error is first


def test_nothing_is_told_while_lookups_work() -> None:
    watch, events = health_events()

    watch.succeeded(ips(3))
    watch.succeeded(ips(3, 4))
    watch.succeeded(ips(3, 4))
    assert watch.repeated() is True

    assert events == []


def test_every_outage_is_told_once() -> None:
    clock = Clock()
    watch, events = health_events(clock)

    for start in (1001.0, 1020.0):
        clock.now = start
        watch.failed(failure())
        clock.now = start + 1
        watch.failed(failure())
        clock.now = start + 5
        watch.succeeded(ips(3))

    assert [
        (type(e).__name__, e.since if isinstance(e, LookupsFailing | ChangeHeld) else e.at)
        for e in events
    ] == [
        ("LookupsFailing", 1001.0),
        ("LookupsRecovered", 1006.0),
        ("LookupsFailing", 1020.0),
        ("LookupsRecovered", 1025.0),
    ]


def test_an_outage_before_the_first_success_ends_with_the_initial_set() -> None:
    clock = Clock()
    watch, events = health_events(clock)
    watch.failed(failure())
    clock.now += 4.0

    change = watch.succeeded(ips(3))

    assert change is not None
    assert change.added == ips(3)
    assert [type(e) for e in events] == [LookupsFailing, LookupsRecovered]
    assert events[1] == LookupsRecovered(
        service="web", at=1004.0, failed_for=4.0, failures=1, observed_at=WALL
    )


def test_an_error_that_ends_the_watch_is_not_a_health_event() -> None:
    watch, events = health_events()

    with pytest.raises(ConfigurationError):
        watch.failed(ConfigurationError("bad", source="SWARMDNS_NAMESERVER"))
    assert events == []


def test_the_outage_is_told_before_fail_after_ends_the_watch() -> None:
    clock = Clock()
    watch, events = health_events(clock, fail_after=1.0)
    clock.now += 2.0  # the first lookup took longer than fail_after

    with pytest.raises(WatchTimeout):
        watch.failed(failure())
    assert [type(e) for e in events] == [LookupsFailing]


def test_a_health_callback_sees_the_state_it_tells_of() -> None:
    seen: list[tuple[str, int]] = []

    def look(event: HealthEvent) -> None:
        # Read from another thread: the watch's lock is not held during the call.
        reader = threading.Thread(
            target=lambda: seen.append((type(event).__name__, watch.health.consecutive_failures))
        )
        reader.start()
        reader.join(EVENT_TIMEOUT)

    watch = core(on_health=look)
    watch.failed(failure())
    watch.succeeded(ips(3))

    assert seen == [("LookupsFailing", 1), ("LookupsRecovered", 0)]


def test_a_health_callback_that_raises_is_logged_and_the_watch_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: HealthEvent) -> None:
        raise RuntimeError("boom")

    watch = core(on_health=broken)
    watch.failed(failure())
    change = watch.succeeded(ips(3))

    assert change is not None
    assert watch.health.consecutive_failures == 0
    failures = [r for r in caplog.records if "on_health callback failed" in r.getMessage()]
    assert len(failures) == 2
    assert failures[0].exc_info is not None


def test_health_events_are_frozen_keyword_only_values() -> None:
    event = LookupsRecovered(service="web", at=2.0, failed_for=1.0, failures=1, observed_at=WALL)

    assert repr(event) == "LookupsRecovered(service='web', at=2.0, failed_for=1.0, failures=1)"
    with pytest.raises(AttributeError):
        event.at = 3.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        LookupsFailing("web", 1.0, failure(), WALL)  # type: ignore[call-arg]


def test_backoff_doubles_from_a_sixteenth_up_to_the_interval() -> None:
    watch = core(interval=2.0)
    watch.succeeded(ips(3))
    delays = [watch.next_delay()]

    for _ in range(7):
        watch.failed(failure())
        delays.append(watch.next_delay())

    assert delays == [2.0, 0.125, 0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


def test_jitter_stays_within_its_fraction_and_varies() -> None:
    watch = core(interval=1.0, jitter=0.1)

    delays = [watch.next_delay() for _ in range(200)]

    assert all(0.9 <= d <= 1.1 for d in delays)
    assert len(set(delays)) > 100


def test_removal_debounce_waits_for_several_lookups_without_the_address() -> None:
    watch = core(removal_debounce=3)
    watch.succeeded(ips(3, 4))

    assert watch.succeeded(ips(3)) is None
    assert watch.succeeded(ips(3)) is None
    change = watch.succeeded(ips(3))

    assert change is not None
    assert change.removed == ips(4)


def test_an_address_back_before_the_debounce_is_never_reported() -> None:
    watch = core(removal_debounce=2)
    watch.succeeded(ips(3, 4))

    assert watch.succeeded(ips(3)) is None
    assert watch.succeeded(ips(3, 4)) is None
    assert watch.succeeded(ips(3)) is None  # the count starts over
    change = watch.succeeded(ips(3))
    assert change is not None
    assert change.removed == ips(4)


def test_failures_do_not_count_towards_the_debounce() -> None:
    watch = core(removal_debounce=2)
    watch.succeeded(ips(3, 4))

    watch.succeeded(ips(3))  # missing once
    watch.failed(failure())
    watch.failed(failure())  # failures neither add to the count nor reset it
    assert watch.current == tuple(sorted(ips(3, 4)))

    change = watch.succeeded(ips(3))  # missing twice: removed

    assert change is not None
    assert change.removed == ips(4)


def test_additions_are_reported_at_once_even_with_debounce() -> None:
    watch = core(removal_debounce=5)
    watch.succeeded(ips(3))

    change = watch.succeeded(ips(3, 9))

    assert change is not None
    assert change.added == ips(9)


def test_excluded_addresses_are_never_reported() -> None:
    watch = core(exclude=[IPv4Address("10.0.1.3")])

    first = watch.succeeded(ips(3, 4))
    assert first is not None
    assert first.added == ips(4)
    assert watch.succeeded(ips(4)) is None


def test_fail_after_ends_the_watch_after_that_long_without_success() -> None:
    clock = Clock()
    watch = core(clock, fail_after=10.0)
    watch.succeeded(ips(3))

    clock.now += 9.9
    watch.failed(failure())
    clock.now += 0.1

    with pytest.raises(
        WatchTimeout, match=r"no successful lookup of 'tasks\.web\.' for 10 s"
    ) as caught:
        watch.failed(failure())
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.last_error is not None
    assert caught.value.service == "web"
    assert caught.value.failed_for == pytest.approx(10.0)


def test_fail_after_counts_from_the_start_before_any_success() -> None:
    clock = Clock()
    watch = core(clock, fail_after=1.0)
    clock.now += 1.0

    with pytest.raises(WatchTimeout):
        watch.failed(failure())


def test_watch_steps_look_up_report_and_wait() -> None:
    watch = core(interval=2.0)
    steps = watch_steps(watch, 0.5)

    assert next(steps) == Lookup(0.5)
    change = steps.send((IPv4Address("10.0.1.3"),))
    assert isinstance(change, TaskSetChange)
    assert steps.send(None) == Sleep(2.0)
    assert steps.send(None) == Lookup(0.5)
    assert steps.send(failure()) == Sleep(0.125)  # no change to report: straight to the wait


def test_wait_steps_end_with_enough_tasks() -> None:
    clock = Clock()
    wait = WaitCore(core(clock, interval=0.5), 2, 10.0, clock=clock)
    steps = wait_steps(wait, 2.0)

    assert next(steps) == Lookup(2.0)
    assert steps.send((IPv4Address("10.0.1.3"),)) == Sleep(0.5)
    assert steps.send(None) == Lookup(2.0)
    with pytest.raises(StopIteration) as done:
        steps.send(tuple(sorted(ips(3, 4))))
    assert done.value.value == tuple(sorted(ips(3, 4)))


def test_wait_steps_never_look_or_wait_past_the_end() -> None:
    clock = Clock()
    wait = WaitCore(core(clock, interval=5.0), 3, 1.0, clock=clock)
    steps = wait_steps(wait, 2.0)

    assert next(steps) == Lookup(1.0)  # the lookup's time is cut to what is left
    clock.now += 0.5
    assert steps.send(failure()) == Sleep(5.0 / 16)  # the first retry, within the time left
    clock.now += 0.5
    with pytest.raises(
        NotEnoughTasks,
        match=r"waited 1 s for 3 tasks of 'web'.*showed 0 \(none\); the last lookup failed",
    ) as caught:
        steps.send(None)
    assert caught.value.current == ()
    assert caught.value.wanted == 3


def test_fail_after_counts_from_the_first_step_not_from_set_up() -> None:
    clock = Clock()
    watch = core(clock, fail_after=1.0)
    clock.now += 60  # built long before it was used
    steps = watch_steps(watch, 0.5)

    next(steps)
    steps.send(failure())  # a first failure, right after starting, is no reason to give up

    assert watch.health.consecutive_failures == 1


def test_change_repr_reads_well() -> None:
    watch = core()

    assert repr(watch.succeeded(ips(4, 3))) == (
        "TaskSetChange(service='web', added={10.0.1.3, 10.0.1.4}, removed={},"
        " current=(10.0.1.3, 10.0.1.4))"
    )


def test_a_stepper_takes_up_a_wait_cut_short_where_it_stopped() -> None:
    clock = Clock()
    steps = Stepper(watch_steps(core(clock, interval=2.0), 1.0), clock=clock)
    deadline = Deadline(0.5, clock=clock)

    assert steps.next_action(lambda: False) == Lookup(1.0)
    steps.took((IPv4Address("10.0.1.3"),))
    assert steps.next_action(lambda: False, deadline) == Sleep(0.5)  # cut to the deadline
    clock.now += 0.5
    assert steps.next_action(lambda: False, deadline) is None  # the deadline passed
    assert steps.next_action(lambda: False) == Sleep(1.5)  # the rest of the interval
    clock.now += 1.5
    assert steps.next_action(lambda: False) == Lookup(1.0)
    assert [change.current for change in steps.pending] == [(IPv4Address("10.0.1.3"),)]


def test_a_stepper_stops_as_soon_as_what_it_waits_for_holds() -> None:
    steps = Stepper(watch_steps(core(), 1.0))

    assert steps.next_action(lambda: False) == Lookup(1.0)
    steps.took((IPv4Address("10.0.1.3"),))
    assert steps.next_action(lambda: bool(steps.pending)) is None
    steps.close()
    assert steps.ended
    assert steps.next_action(lambda: False) is None


def test_health_says_when_the_failures_under_way_began() -> None:
    wall = {"now": WALL}

    def at(minute: int) -> datetime:
        wall["now"] = WALL.replace(minute=minute)
        return wall["now"]

    watch = WatchCore(
        "web", query_name="tasks.web.", clock=Clock(), wall_clock=lambda: wall["now"]
    )
    watch.succeeded(ips(3))
    before = watch.health.failing_since
    began = at(1)
    watch.failed(failure())
    at(2)
    watch.failed(failure())
    during = watch.health.failing_since
    at(3)
    watch.succeeded(ips(3))
    after = watch.health.failing_since
    again = at(4)
    watch.failed(failure())

    assert before is None
    assert during == began
    assert after is None
    assert watch.health.failing_since == again


def test_a_wait_that_stopped_gives_the_tasks_or_says_why_not() -> None:
    clock = Clock()
    enough = WaitCore(core(clock), 2, timeout=5, clock=clock)
    enough.watch.succeeded(ips(3, 4))
    short = WaitCore(core(clock), 3, timeout=5, clock=clock)
    short.watch.succeeded(ips(3))
    cause = OSError("the socket broke")

    with pytest.raises(
        RuntimeError, match=r"'web' was closed before it showed 3 tasks \(it showed 1\)"
    ) as ended:
        short.result(ended=True, what="the watch", cause=cause)
    clock.now += 5
    with pytest.raises(NotEnoughTasks):
        short.result(ended=False)
    assert enough.result(ended=True) == tuple(sorted(ips(3, 4)))
    assert ended.value.__cause__ is cause


# -- changes kept for the iterator: merged past a bound ------------------------


def change(
    added: Iterable[int] = (),
    removed: Iterable[int] = (),
    current: Iterable[int] = (),
    *,
    service: str = "web",
    minute: int = 0,
) -> TaskSetChange:
    """A change, in the last octets of its addresses."""
    return TaskSetChange(
        service=service,
        added=ips(*added),
        removed=ips(*removed),
        current=tuple(sorted(ips(*current))),
        observed_at=WALL.replace(minute=minute),
    )


def test_net_change_goes_from_before_the_older_to_after_the_newer() -> None:
    older = change(added=[4], current=[3, 4], minute=1)
    newer = change(removed=[3], added=[5], current=[4, 5], minute=2)

    assert net_change(older, newer) == change(added=[4, 5], removed=[3], current=[4, 5], minute=2)


def test_an_address_added_then_removed_is_no_change() -> None:
    older = change(added=[4], current=[3, 4])
    newer = change(removed=[4], current=[3])

    assert net_change(older, newer) is None


def test_a_task_that_left_and_came_back_is_no_change() -> None:
    older = change(removed=[4], current=[3])
    newer = change(added=[4], current=[3, 4])

    assert net_change(older, newer) is None


def test_an_initial_set_merged_with_a_later_change_stays_the_initial_set() -> None:
    initial = change(added=[3, 4], current=[3, 4], minute=1)
    later = change(removed=[3], added=[5], current=[4, 5], minute=2)

    assert net_change(initial, later, initial=True) == change(
        added=[4, 5], current=[4, 5], minute=2
    )


def test_an_initial_set_that_ends_empty_is_kept() -> None:
    initial = change(added=[3], current=[3])
    emptied = change(removed=[3], current=[])

    assert net_change(initial, emptied, initial=True) == change(current=[])
    # The very same changes, not known to begin the watch, cancel out: the
    # merge is told what is a first event, it does not guess from the sets.
    assert net_change(initial, emptied) is None


def test_net_change_refuses_changes_that_do_not_follow_each_other() -> None:
    older = change(added=[4], current=[3, 4])

    with pytest.raises(ValueError, match="one service"):
        net_change(older, change(removed=[4], current=[3], service="db"))
    with pytest.raises(ValueError, match="does not follow"):
        net_change(older, change(removed=[5], current=[3, 4]))
    with pytest.raises(ValueError, match="does not follow"):
        net_change(older, change(added=[6], current=[3, 6]))
    with pytest.raises(ValueError, match="not an initial set"):
        net_change(older, change(removed=[4], current=[3]), initial=True)


@pytest.fixture
def small_bound(monkeypatch: pytest.MonkeyPatch) -> int:
    """Queues made from now on merge past 3 changes."""
    monkeypatch.setattr("swarmdns._values.MAX_PENDING_CHANGES", 3)
    return 3


def walk(watch: WatchCore, seed: int, lookups: int) -> list[TaskSetChange]:
    """The changes of ``watch`` over a random walk of lookups among five addresses."""
    rng = random.Random(seed)
    found = []
    for _ in range(lookups):
        reported = watch.succeeded(
            IPv4Address(f"10.0.1.{n}") for n in range(1, 6) if rng.random() < 0.5
        )
        if reported is not None:
            found.append(reported)
    return found


def test_a_change_queue_is_used_as_the_deque_it_replaces() -> None:
    queue = ChangeQueue()
    first, second = change(added=[3], current=[3]), change(added=[4], current=[3, 4])

    assert not queue
    queue.append(first, first=True)
    queue.append(second)

    assert (len(queue), bool(queue), list(queue)) == (2, True, [first, second])
    assert queue.popleft() == first
    queue.clear()
    assert (len(queue), list(queue)) == (0, [])
    with pytest.raises(IndexError):
        queue.popleft()


def test_up_to_its_bound_a_change_queue_keeps_changes_as_they_come(small_bound: int) -> None:
    changes = walk(core(), seed=1, lookups=40)[:small_bound]
    queue = ChangeQueue()

    for index, each in enumerate(changes):
        queue.append(each, first=index == 0)

    assert list(queue) == changes


def test_past_its_bound_a_change_queue_merges_into_its_last_change(small_bound: int) -> None:
    changes = walk(core(), seed=2, lookups=60)
    queue = ChangeQueue()
    lengths = []

    for index, each in enumerate(changes):
        queue.append(each, first=index == 0)
        lengths.append(len(queue))

    kept = list(queue)
    assert len(changes) > 10
    assert max(lengths) == small_bound
    assert kept[: small_bound - 1] == changes[: small_bound - 1]  # the older ones stay
    assert kept[-1].current == changes[-1].current
    assert kept[-1].observed_at == changes[-1].observed_at
    assert replay(kept) == replay(changes)


def test_a_merge_that_changes_nothing_takes_the_last_change_away(small_bound: int) -> None:
    queue = ChangeQueue()
    queue.append(change(added=[3], current=[3]), first=True)
    queue.append(change(added=[4], current=[3, 4]))
    queue.append(change(added=[5], current=[3, 4, 5]))
    queue.append(change(removed=[5], current=[3, 4]))  # undoes the last one: both go

    assert list(queue) == [change(added=[3], current=[3]), change(added=[4], current=[3, 4])]
    queue.append(change(removed=[3], current=[4]))  # under the bound again: kept as it is
    assert list(queue)[-1] == change(removed=[3], current=[4])


def test_a_first_event_is_never_merged_away(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("swarmdns._values.MAX_PENDING_CHANGES", 1)
    queue = ChangeQueue()

    queue.append(change(added=[3], current=[3]), first=True)
    queue.append(change(removed=[3], current=[]))
    queue.append(change(added=[4], current=[4], minute=5))

    assert list(queue) == [change(added=[4], current=[4], minute=5)]  # still the initial set


@pytest.mark.parametrize("seed", range(20))
def test_taking_changes_while_they_are_merged_loses_nothing(small_bound: int, seed: int) -> None:
    rng = random.Random(seed)
    changes = walk(core(), seed=seed, lookups=80)
    queue = ChangeQueue()
    taken: list[TaskSetChange] = []

    for index, each in enumerate(changes):
        queue.append(each, first=index == 0)
        assert len(queue) <= small_bound
        for _ in range(rng.choice([0, 0, 0, 1, 2])):  # the user takes some, now and then
            if queue:
                taken.append(queue.popleft())
    while queue:
        taken.append(queue.popleft())

    assert replay(taken) == replay(changes)
    assert taken[-1].current == changes[-1].current


def test_a_stepper_keeps_at_most_the_bound_of_changes_nobody_takes(small_bound: int) -> None:
    clock = Clock()
    steps = Stepper(watch_steps(core(clock, interval=1.0), 1.0), clock=clock)
    rng = random.Random(3)
    seen = []

    for _ in range(50):
        action = steps.next_action(lambda: False)
        if isinstance(action, Lookup):
            answer = tuple(IPv4Address(f"10.0.1.{n}") for n in range(1, 6) if rng.random() < 0.5)
            seen.append(frozenset(answer))
            steps.took(answer)
        elif isinstance(action, Sleep):
            clock.now += action.seconds
        assert len(steps.pending) <= small_bound

    kept = []
    while steps.pending:
        kept.append(steps.pending.popleft())
    assert len(kept) == small_bound
    assert replay(kept) == {"web": seen[-1]}


def test_a_watch_only_waited_on_keeps_a_bounded_queue(
    swarm_dns: FakeSwarm, small_bound: int
) -> None:
    web = swarm_dns.create_service("web", replicas=1)
    (first,) = web.task_ips
    with swarmdns.watch_tasks("web", interval=0.01, jitter=0.0, timeout=0.25) as watch:
        pending = watch._steps.pending
        watch.wait_for_tasks(1, timeout=EVENT_TIMEOUT)  # the initial set
        lengths = [len(pending)]
        for replicas in range(2, 10):
            web = swarm_dns.scale("web", replicas)
            watch.wait_for_tasks(replicas, timeout=EVENT_TIMEOUT)
            lengths.append(len(pending))
        swarm_dns.replace_task(first)
        web = swarm_dns.scale("web", 10)
        watch.wait_for_tasks(10, timeout=EVENT_TIMEOUT)
        lengths.append(len(pending))

        changes = [next(watch) for _ in range(len(pending))]

        assert not pending
        assert watch.current == web.task_ips
    second = changes[1].current
    assert max(lengths) == small_bound
    assert [len(each.current) for each in changes] == [1, 2, 10]
    assert changes[0].added == {first}
    assert changes[2].removed == {first}  # the replaced task, reported at the initial set
    assert changes[2].added == frozenset(web.task_ips) - frozenset(second)
    assert replay(changes) == {"web": frozenset(web.task_ips)}
