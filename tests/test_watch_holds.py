"""Holds (min_tasks, max_drop, hold_for), on an injected clock: the rule, one watch, a fleet."""

from __future__ import annotations

import logging
import math
import queue
import random
from collections.abc import Iterable
from datetime import datetime, timezone
from ipaddress import IPv4Address
from typing import Any

import pytest

import swarmdns
from swarmdns import (
    ChangeHeld,
    HealthEvent,
    HoldReleased,
    LookupsFailing,
    LookupsRecovered,
    ResolutionError,
    TaskSetChange,
)
from swarmdns._fleet import FleetCore
from swarmdns._values import WatchSettings, hold_reason
from swarmdns._watch import WatchCore, prepare_watch
from swarmdns.testing import FakeSwarm, NodeDelays

WALL = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ips(*last_octets: int) -> frozenset[IPv4Address]:
    return frozenset(IPv4Address(f"10.0.1.{n}") for n in last_octets)


def ordered(addresses: Iterable[IPv4Address]) -> tuple[IPv4Address, ...]:
    return tuple(sorted(addresses))


def holding(core: WatchCore) -> bool:
    """Whether ``core`` holds a change now (read afresh each time)."""
    return core.health.held is not None


def failure() -> ResolutionError:
    return ResolutionError("SERVFAIL", name="tasks.web.", nameserver="127.0.0.11:53")


def watch(clock: Clock, **options: Any) -> tuple[WatchCore, list[HealthEvent]]:
    """A watch of ``web`` built from checked settings, as every front end builds one."""
    events: list[HealthEvent] = []
    core = prepare_watch(
        "web",
        WatchSettings(jitter=0.0, **options),
        excluded=frozenset(),
        clock=clock,
        rng=random.Random(1),
        on_health=events.append,
    )
    core._wall_clock = lambda: WALL
    return core, events


def held(
    since: float, tasks: Iterable[IPv4Address], removed: frozenset[IPv4Address], reason: str
) -> ChangeHeld:
    return ChangeHeld(
        service="web",
        since=since,
        tasks=ordered(tasks),
        removed=removed,
        reason=reason,
        observed_at=WALL,
    )


def released(at: float, held_for: float, *, expired: bool) -> HoldReleased:
    return HoldReleased(service="web", at=at, held_for=held_for, expired=expired, observed_at=WALL)


# -- the rule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "removed", "options", "reason"),
    [
        (4, 0, {"min_tasks": 5, "max_drop": 0.1}, None),  # nothing removed: never held
        (4, 4, {}, None),  # no rule: nothing is held
        (4, 4, {"min_tasks": 1}, "below min_tasks 1"),
        (4, 3, {"min_tasks": 1}, None),
        (4, 3, {"min_tasks": 2}, "below min_tasks 2"),
        (4, 2, {"max_drop": 0.5}, None),  # exactly the share allowed
        (4, 3, {"max_drop": 0.5}, "drop of 3 of 4 exceeds max_drop 0.5"),
        (3, 1, {"max_drop": 0.25}, "drop of 1 of 3 exceeds max_drop 0.25"),
        (4, 4, {"max_drop": 1.0}, None),  # 1: any share
        (4, 4, {"min_tasks": 1, "max_drop": 0.5}, "below min_tasks 1"),  # the minimum first
        (1, 1, {"max_drop": 0.5}, "drop of 1 of 1 exceeds max_drop 0.5"),
    ],
)
def test_the_rule_holds_a_drop_below_the_minimum_or_past_the_share(
    before: int, removed: int, options: dict[str, Any], reason: str | None
) -> None:
    assert hold_reason(before=before, removed=removed, **options) == reason


# -- one watch -----------------------------------------------------------------------


def test_by_default_nxdomain_empties_the_set_at_once() -> None:
    core, events = watch(Clock())
    core.succeeded(ips(3, 4))

    change = core.succeeded(())

    assert change is not None
    assert change.current == ()
    assert events == []
    assert not holding(core)
    assert core.health.holds == 0


def test_min_tasks_holds_the_set_against_a_false_nxdomain_until_the_tasks_come_back() -> None:
    clock = Clock()
    core, events = watch(clock, min_tasks=1)
    core.succeeded(ips(3, 4))

    clock.now = 1002.0
    assert core.succeeded(()) is None  # NXDOMAIN: held, nothing reported
    for _ in range(3):
        clock.now += 2.0
        assert core.succeeded(()) is None  # still held, however long (no hold_for)

    assert core.current == ordered(ips(3, 4))
    health = core.health
    assert health.held == held(1002.0, (), ips(3, 4), "below min_tasks 1")
    assert health.holds == 1
    assert events == [held(1002.0, (), ips(3, 4), "below min_tasks 1")]

    clock.now = 1010.0
    assert core.succeeded(ips(3, 4)) is None  # the same tasks back: no change at all

    assert events[1:] == [released(1010.0, 8.0, expired=False)]
    assert not holding(core)
    assert core.health.holds == 1
    assert core.current == ordered(ips(3, 4))


def test_max_drop_holds_a_change_that_removes_more_than_its_share() -> None:
    clock = Clock()
    core, events = watch(clock, max_drop=0.5)
    core.succeeded(ips(1, 2, 3, 4))

    assert core.succeeded(ips(1)) is None  # 3 of 4 gone at once: held
    assert events == [held(1000.0, ips(1), ips(2, 3, 4), "drop of 3 of 4 exceeds max_drop 0.5")]

    clock.now = 1003.0
    change = core.succeeded(ips(1, 2))  # 2 of 4: a drop the rule allows ends the hold

    assert change is not None
    assert (change.removed, change.current) == (ips(3, 4), ordered(ips(1, 2)))
    assert events[1:] == [released(1003.0, 3.0, expired=False)]
    assert not holding(core)


def test_a_drop_within_the_rule_is_reported_at_once() -> None:
    core, events = watch(Clock(), min_tasks=1, max_drop=0.5)
    core.succeeded(ips(1, 2, 3, 4))

    change = core.succeeded(ips(1, 2))

    assert change is not None
    assert change.removed == ips(3, 4)
    assert events == []


def test_the_initial_set_is_reported_as_it_is_even_below_the_minimum() -> None:
    core, events = watch(Clock(), min_tasks=3)

    change = core.succeeded(())

    assert change is not None
    assert change.current == ()
    assert events == []


def test_additions_pass_while_the_removals_of_the_same_answer_are_held() -> None:
    clock = Clock()
    core, events = watch(clock, min_tasks=3)
    core.succeeded(ips(1, 2, 3))

    change = core.succeeded(ips(9))  # 1, 2, 3 gone, 9 new: would leave 1 task

    assert change is not None
    assert (change.added, change.removed) == (ips(9), frozenset())
    assert core.current == ordered(ips(1, 2, 3, 9))
    assert events == [held(1000.0, ips(9), ips(1, 2, 3), "below min_tasks 3")]


def test_a_task_replaced_by_another_is_no_drop() -> None:
    core, events = watch(Clock(), max_drop=0.5)
    core.succeeded(ips(1, 2))

    change = core.succeeded(ips(3, 4))  # both replaced in one interval: 2 of 4, not 2 of 2

    assert change is not None
    assert (change.added, change.removed) == (ips(3, 4), ips(1, 2))
    assert events == []


def test_hold_for_reports_the_answer_held_once_the_hold_has_lasted_that_long() -> None:
    clock = Clock()
    core, events = watch(clock, min_tasks=2, hold_for=10.0)
    core.succeeded(ips(1, 2, 3))

    clock.now = 1001.0
    assert core.succeeded(ips(1)) is None
    clock.now = 1006.0
    assert core.succeeded(()) is None  # another answer held: the hold goes on, not restarts
    assert core.health.held == held(1001.0, (), ips(1, 2, 3), "below min_tasks 2")
    clock.now = 1010.5
    assert core.succeeded(()) is None  # 9.5 s: not yet

    clock.now = 1011.0
    change = core.succeeded(())

    assert change is not None
    assert (change.removed, change.current) == (ips(1, 2, 3), ())
    assert events == [
        held(1001.0, ips(1), ips(2, 3), "below min_tasks 2"),
        released(1011.0, 10.0, expired=True),
    ]
    assert not holding(core)
    # The set is now what DNS shows: nothing more is held, and a new drop starts a new hold.
    clock.now = 1012.0
    core.succeeded(ips(5, 6))
    assert core.succeeded(()) is None
    assert core.health.holds == 2


def test_hold_for_waits_for_a_successful_lookup_to_report() -> None:
    clock = Clock()
    core, events = watch(clock, min_tasks=1, hold_for=5.0)
    core.succeeded(ips(1, 2))
    core.succeeded(())

    clock.now = 1020.0
    core.failed(failure())  # past hold_for, but a failure changes nothing

    assert core.current == ordered(ips(1, 2))
    assert holding(core)
    clock.now = 1021.0
    change = core.succeeded(())
    assert change is not None
    assert change.current == ()
    assert [type(e) for e in events] == [
        ChangeHeld,
        LookupsFailing,
        LookupsRecovered,
        HoldReleased,
    ]
    assert events[-1] == released(1021.0, 21.0, expired=True)


def test_the_debounce_comes_first_and_a_held_removal_stays_due() -> None:
    clock = Clock()
    core, events = watch(clock, removal_debounce=2, min_tasks=1)
    core.succeeded(ips(1, 2))

    assert core.succeeded(()) is None  # missing once: the debounce waits, nothing held
    assert events == []
    clock.now = 1002.0
    assert core.succeeded(()) is None  # missing twice: due, and held
    assert events == [held(1002.0, (), ips(1, 2), "below min_tasks 1")]
    clock.now = 1004.0
    assert core.succeeded(()) is None  # still held, not back in the debounce

    assert len(events) == 1
    change = core.succeeded(ips(2))  # 1 still missing, long enough: due and allowed

    assert change is not None
    assert change.removed == ips(1)
    assert events[1:] == [released(1004.0, 2.0, expired=False)]


def test_an_address_back_during_a_hold_starts_its_debounce_over() -> None:
    clock = Clock()
    core, _ = watch(clock, removal_debounce=2, min_tasks=2)
    core.succeeded(ips(1, 2))
    core.succeeded(ips(1))
    assert core.succeeded(ips(1)) is None  # due, held
    assert holding(core)

    assert core.succeeded(ips(1, 2)) is None  # back: the hold ends

    assert not holding(core)
    assert core.succeeded(ips(1, 2, 3)) is not None
    assert core.succeeded(ips(1, 3)) is None  # missing once again: the debounce waits
    assert not holding(core)


def test_health_shows_the_latest_answer_held_since_the_start_of_the_hold() -> None:
    clock = Clock()
    core, events = watch(clock, max_drop=0.5)
    core.succeeded(ips(1, 2, 3, 4))
    core.succeeded(ips(1))
    clock.now = 1005.0

    core.succeeded(())

    assert core.health.held == held(
        1000.0, (), ips(1, 2, 3, 4), "drop of 4 of 4 exceeds max_drop 0.5"
    )
    assert len(events) == 1  # one event per hold


def test_a_hold_is_logged_when_it_begins_and_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="swarmdns")
    core, _ = watch(Clock(), min_tasks=1)
    core.succeeded(ips(1, 2))

    core.succeeded(())
    core.succeeded(())
    core.succeeded(ips(1, 2))

    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "holding the 2 known tasks of tasks.web. against an answer of 0 (below min_tasks 1)",
        "the hold of tasks.web. ends after 0 s: an answer not held",
    ]
    assert caplog.records[0].levelno == logging.WARNING


def test_the_events_are_frozen_keyword_only_values() -> None:
    event = held(1.0, ips(1), ips(2), "below min_tasks 2")

    assert repr(event) == (
        "ChangeHeld(service='web', since=1.0, tasks=(10.0.1.1), removed={10.0.1.2},"
        " reason='below min_tasks 2')"
    )
    with pytest.raises(AttributeError):
        event.since = 2.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        HoldReleased("web", 1.0, 1.0, False, WALL)  # type: ignore[call-arg]


# -- a fleet ---------------------------------------------------------------------------


def test_a_fleet_holds_each_service_on_its_own() -> None:
    clock = Clock()
    events: list[HealthEvent] = []
    settings = WatchSettings(jitter=0.0, max_drop=0.5, hold_for=30.0)
    core = FleetCore(
        ["web", "db"], settings, excluded=frozenset(), clock=clock, on_health=events.append
    )
    slots = {slot.service: slot for slot in core.due(clock.now)}
    core.finished(slots["web"], ordered(ips(1, 2)))
    core.finished(slots["db"], ordered(ips(5, 6)))
    core.changes.clear()

    clock.now = 1002.0
    slots = {slot.service: slot for slot in core.due(clock.now)}
    core.succeeded_with(slots["web"], ())  # web: NXDOMAIN, held
    core.succeeded_with(slots["db"], (int(IPv4Address("10.0.1.5")),))  # db: 1 of 2, allowed

    (change,) = list(core.changes)
    assert (change.service, change.removed) == ("db", ips(6))
    assert core.current["web"] == ordered(ips(1, 2))
    assert core.health["web"].held is not None
    assert core.health["db"].held is None
    assert events == [
        ChangeHeld(
            service="web",
            since=1002.0,
            tasks=(),
            removed=ips(1, 2),
            reason="drop of 2 of 2 exceeds max_drop 0.5",
            observed_at=events[0].observed_at,
        )
    ]

    # The same answer again: a hold never lets the fleet skip its lookup as a repeat.
    core.changes.clear()
    clock.now = 1040.0
    slots = {slot.service: slot for slot in core.due(clock.now)}
    core.succeeded_with(slots["web"], ())

    (change,) = list(core.changes)
    assert (change.service, change.current) == ("web", ())
    assert isinstance(events[-1], HoldReleased)
    assert (events[-1].service, events[-1].held_for, events[-1].expired) == ("web", 38.0, True)


# -- the options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"min_tasks": -1}, ValueError, "min_tasks must be at least 0"),
        ({"min_tasks": 1.0}, TypeError, "min_tasks must be a whole number"),
        ({"min_tasks": True}, TypeError, "min_tasks must be a whole number"),
        ({"max_drop": 0}, ValueError, "max_drop must be a fraction above 0 and at most 1"),
        ({"max_drop": 1.5}, ValueError, "max_drop must be a fraction"),
        ({"max_drop": -0.5}, ValueError, "max_drop must be a fraction"),
        ({"max_drop": math.nan}, ValueError, "max_drop must be a fraction"),
        ({"max_drop": True}, TypeError, "max_drop must be a fraction of the set or None"),
        ({"max_drop": "0.5"}, TypeError, "max_drop must be a fraction"),
        ({"hold_for": 0}, ValueError, "hold_for must be a positive, finite number"),
        ({"hold_for": -1}, ValueError, "hold_for must be a positive"),
        ({"hold_for": math.inf}, ValueError, "hold_for must be a positive"),
        ({"hold_for": math.nan}, ValueError, "hold_for must be a positive"),
        ({"hold_for": True}, TypeError, "hold_for must be a number of seconds"),
    ],
)
def test_bad_hold_options_are_refused_naming_the_option(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        WatchSettings(**options)


def test_the_options_are_off_by_default_and_kept_as_given() -> None:
    default = WatchSettings()
    given = WatchSettings(min_tasks=2, max_drop=1, hold_for=30)

    assert (default.min_tasks, default.max_drop, default.hold_for) == (0, None, None)
    assert (given.min_tasks, given.max_drop, given.hold_for) == (2, 1.0, 30.0)
    assert isinstance(given.max_drop, float)


def test_the_events_are_part_of_the_public_api() -> None:
    assert {"ChangeHeld", "HoldReleased"} <= set(swarmdns.__all__)
    assert swarmdns.HealthEvent == (LookupsFailing | LookupsRecovered | ChangeHeld | HoldReleased)


def test_a_change_held_never_reaches_the_changes() -> None:
    clock = Clock()
    core, _ = watch(clock, min_tasks=1)
    reported: list[TaskSetChange] = []
    for answer in (ips(1, 2), (), (), ips(2), ips(1, 2), ()):
        clock.now += 1.0
        change = core.succeeded(answer)
        if change is not None:
            reported.append(change)

    assert [c.current for c in reported] == [
        ordered(ips(1, 2)),
        ordered(ips(2)),
        ordered(ips(1, 2)),
    ]
    assert all(c.current for c in reported)


def test_a_watch_with_min_tasks_rides_out_the_29x_lost_rejoin_on_the_fake() -> None:
    """moby/moby#53141 as the fake plays it: node-1's DNS loses the service for good."""
    delays = NodeDelays(propagation=0, failure_detection=0, down=3600, rejoin=0)
    with FakeSwarm(nodes=3, delays=delays) as swarm:
        swarm.create_service("cache", replicas=3)  # slots 1, 2, 3 on nodes 1, 2, 3
        for task in swarm.service("cache").tasks[:2]:
            swarm.kill_task(task)  # one task left, on node-3
        (last,) = swarm.service("cache").task_ips
        node_1 = swarm.nodes[0]
        backend = swarmdns.DirectBackend(
            [f"{node_1.host}:{node_1.port}"],
            provenance=swarmdns.Provenance.engine(swarm.engine_networks),
        )
        events: queue.Queue[HealthEvent] = queue.Queue()
        with swarmdns.TaskWatcher(
            "cache", backend=backend, interval=0.01, min_tasks=1, on_health=events.put
        ) as watcher:
            assert watcher.wait_until_started(10)
            swarm.isolate("node-3")
            swarm.rejoin("node-3", stale=True)  # the other nodes answer NXDOMAIN from now on
            held = events.get(timeout=10)
            during = watcher.current
            updated = swarm.force_update("cache")  # the way out: new tasks, new addresses
            released = events.get(timeout=10)  # told once the watch's state is updated
            after = watcher.current

    assert isinstance(held, ChangeHeld)
    assert (held.tasks, held.reason) == ((), "below min_tasks 1")
    assert during == (last,)
    assert after == updated.task_ips
    assert last not in after
    assert isinstance(released, HoldReleased)
    assert not released.expired
