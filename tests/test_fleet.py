"""The fleet's decisions, on an injected clock: the schedule, and each service's watch."""

from __future__ import annotations

import heapq
import itertools
import random
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from ipaddress import IPv4Address

import pytest

from swarmdns import (
    ConfigurationError,
    InvalidName,
    LookupsFailing,
    LookupsRecovered,
    ResolutionError,
    ResolutionTimeout,
    SwarmDNSError,
    TaskSetChange,
    WatchTimeout,
    _memo,
)
from swarmdns._fleet import (
    DOUBTFUL_IN_FLIGHT,
    FORWARD_HOLD,
    MAX_IN_FLIGHT,
    SLACK,
    FleetCore,
    Slot,
    backoff_cap,
)
from swarmdns._values import HealthEvent, WatchSettings

from .changes import replay

#: Long enough for add() to return on any machine; it only bounds a hang.
ADD_TIMEOUT = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fleet(
    services: Iterable[str] = ("web", "db"),
    clock: Clock | None = None,
    on_health: Callable[[HealthEvent], object] | None = None,
    **options: object,
) -> FleetCore:
    settings: dict[str, object] = {"jitter": 0.0}
    settings.update(options)
    checked = WatchSettings(**settings)  # type: ignore[arg-type]
    return FleetCore(
        services,
        checked,
        excluded=checked.exclude,
        clock=clock or Clock(),
        rng=random.Random(1),
        on_health=on_health,
    )


def value(last_octet: int) -> int:
    return int(IPv4Address(f"10.0.1.{last_octet}"))


def values(*last_octets: int) -> tuple[int, ...]:
    return tuple(sorted({value(n) for n in last_octets}))


def ips(*last_octets: int) -> tuple[IPv4Address, ...]:
    return tuple(sorted({IPv4Address(f"10.0.1.{n}") for n in last_octets}))


def failure(name: str = "tasks.web.") -> ResolutionError:
    return ResolutionError("SERVFAIL", name=name, nameserver="127.0.0.11:53")


def add(core: FleetCore, service: str) -> bool:
    """``core.add(service)``, failing (not hanging) if it never returns."""
    outcome: list[bool | BaseException] = []

    def run() -> None:
        try:
            outcome.append(core.add(service))
        except BaseException as error:  # handed to the test's thread
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(ADD_TIMEOUT)
    assert outcome, f"FleetCore.add({service!r}) did not return: it deadlocks"
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def at(when: float | list[float]) -> object:
    """``when``, give or take rounding (not the millisecond ``pytest.approx`` allows here)."""
    return pytest.approx(when, abs=1e-9)


def take(core: FleetCore, now: float) -> dict[str, Slot]:
    """The slots due by ``now``, by service."""
    return {slot.service: slot for slot in core.due(now)}


def names(slots: Sequence[Slot]) -> list[str]:
    return [slot.service for slot in slots]


def waits_between(
    core: FleetCore, clock: Clock, lookups: int, outcome: Callable[[Slot], None]
) -> list[float]:
    """Carry out a one-service fleet's next ``lookups``, each ending in ``outcome``; the waits."""
    waits = []
    for _ in range(lookups):
        when = core.next_due()
        assert when is not None
        clock.now = when
        (slot,) = core.due(clock.now)
        outcome(slot)
        after = core.next_due()
        assert after is not None
        waits.append(after - clock.now)
    return waits


def first_round(core: FleetCore, answer: Callable[[Slot], None]) -> None:
    """Take every service's first lookup (32 at a time: doubtful) and ``answer`` each.

    The clock stands still: the first lookups are all due now.
    """
    while ready := [slot for slot in core.due(1000.0, room=1000) if not slot.tried]:
        for slot in ready:
            answer(slot)


# -- arguments -----------------------------------------------------------------


def test_services_given_as_one_string_are_refused() -> None:
    with pytest.raises(TypeError, match=r"services takes a list of names, not one: \['web'\]"):
        fleet("web")


def test_exclude_given_as_one_address_is_refused() -> None:
    with pytest.raises(TypeError, match="exclude takes a list of addresses"):
        fleet(exclude="10.0.1.3")


@pytest.mark.parametrize("bad", ["bad name", "tasks.web", "-web", ""])
def test_an_invalid_service_name_is_refused_at_once(bad: str) -> None:
    with pytest.raises(InvalidName):
        fleet(["web", bad])


@pytest.mark.parametrize("services", [["web"], []])
def test_an_invalid_network_is_refused_at_once_even_without_services(
    services: list[str],
) -> None:
    with pytest.raises(InvalidName, match="network"):
        fleet(services, network="bad network!")


def test_duplicates_are_followed_once_in_the_order_first_given() -> None:
    clock = Clock()
    core = fleet(["web", "db", "web", "cache", "db"], clock)

    assert list(core.slots()) == ["web", "db", "cache"]
    assert names(core.due(clock.now)) == ["web", "db", "cache"]
    assert core.due(clock.now + 100) == []


def test_services_can_come_from_any_iterable() -> None:
    clock = Clock()
    core = fleet((name for name in ["web", "db"]), clock)

    assert names(core.due(clock.now)) == ["web", "db"]


def test_each_slot_asks_for_its_tasks_name() -> None:
    core = fleet(["web"], network="proxy")

    (slot,) = core.slots().values()
    assert (slot.question.name, slot.question.rdtype) == ("tasks.web.proxy.", "A")
    assert core.watch_of("web").query_name == "tasks.web.proxy."


# -- the schedule ----------------------------------------------------------------


def test_every_first_lookup_is_due_at_once() -> None:
    clock = Clock()
    core = fleet(["a", "b", "c"], clock, jitter=0.5)

    assert core.next_due() == clock.now
    assert names(core.due(clock.now)) == ["a", "b", "c"]


def test_due_gives_at_most_room_slots_and_keeps_the_rest() -> None:
    clock = Clock()
    core = fleet(["a", "b", "c"], clock)

    assert core.due(clock.now, room=0) == []
    assert names(core.due(clock.now, room=2)) == ["a", "b"]
    assert core.next_due() == clock.now
    assert names(core.due(clock.now, room=2)) == ["c"]
    assert core.next_due() is None


def test_due_takes_what_falls_within_the_slack_and_no_more() -> None:
    clock = Clock()
    core = fleet(["a", "b", "c"], clock)
    slots = take(core, clock.now)
    start = clock.now
    core.succeeded_with(slots["a"], ())
    clock.now = start + SLACK * 0.8
    core.succeeded_with(slots["b"], ())
    clock.now = start + SLACK * 1.2
    core.succeeded_with(slots["c"], ())
    due_at = start + 2.0

    assert core.due(due_at - SLACK * 1.1) == []
    assert names(core.due(due_at)) == ["a", "b"]
    assert core.next_due() == at(due_at + SLACK * 1.2)
    assert names(core.due(due_at + SLACK * 1.2)) == ["c"]


def test_a_slot_is_off_the_schedule_until_its_outcome_comes_back() -> None:
    clock = Clock()
    core = fleet(["web"], clock)
    (slot,) = core.due(clock.now)

    assert core.next_due() is None
    assert core.due(clock.now + 1000) == []

    clock.now += 0.3
    core.succeeded_with(slot, values(3))

    assert core.next_due() == at(clock.now + 2.0)
    assert core.due(clock.now + 1.9) == []
    assert core.due(clock.now + 2.0) == [slot]


def test_the_wait_is_the_interval_within_its_jitter() -> None:
    clock = Clock()
    core = fleet([f"s{n}" for n in range(50)], clock, jitter=0.1)
    first_round(core, lambda slot: core.succeeded_with(slot, values(3)))

    waits = []
    while (when := core.next_due()) is not None:
        waits.append(when - clock.now)
        core.due(when, room=1)

    assert len(waits) == 50
    assert all(1.8 <= wait <= 2.2 for wait in waits)
    assert len({round(wait, 9) for wait in waits}) > 40  # not in step


def test_next_due_skips_the_entries_of_discarded_services() -> None:
    clock = Clock()
    core = fleet(["a", "b"], clock)
    slots = take(core, clock.now)
    core.succeeded_with(slots["a"], ())
    clock.now += 0.5
    core.succeeded_with(slots["b"], ())

    assert core.next_due() == at(1002.0)
    core.discard("a")

    assert core.next_due() == at(1002.5)
    assert core.due(1002.0) == []
    assert core.due(1002.5) == [slots["b"]]


# -- outcomes --------------------------------------------------------------------


def test_the_first_outcome_is_the_initial_set() -> None:
    clock = Clock()
    core = fleet(["web"], clock)
    (slot,) = core.due(clock.now)

    core.succeeded_with(slot, values(4, 3))

    (change,) = core.changes
    assert change.service == "web"
    assert (change.added, change.removed, change.current) == (
        frozenset(ips(3, 4)),
        frozenset(),
        ips(3, 4),
    )
    assert core.current["web"] == ips(3, 4)
    assert core.health["web"].last_success is not None


def test_an_empty_first_outcome_is_reported_too() -> None:
    clock = Clock()
    core = fleet(["web"], clock)
    (slot,) = core.due(clock.now)

    core.succeeded_with(slot, ())

    (change,) = core.changes
    assert (change.service, change.added, change.removed, change.current) == (
        "web",
        frozenset(),
        frozenset(),
        (),
    )


def test_the_same_values_again_report_nothing_and_make_no_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    core = fleet(["web"], clock)
    (slot,) = core.due(clock.now)
    core.succeeded_with(slot, values(3, 4))
    core.changes.clear()
    watch = core.watch_of("web")
    later = datetime(2030, 1, 1, tzinfo=timezone.utc)
    monkeypatch.setattr(watch, "_wall_clock", lambda: later)
    made: list[tuple[int, ...]] = []
    original = _memo.addresses.addresses

    def spy(wanted: Sequence[int]) -> tuple[IPv4Address, ...]:
        made.append(tuple(wanted))
        return original(wanted)

    monkeypatch.setattr(_memo.addresses, "addresses", spy)
    (slot,) = core.due(clock.now + 2.0)
    clock.now += 2.0

    core.succeeded_with(slot, values(3, 4))

    assert list(core.changes) == []
    assert made == []
    assert core.health["web"].last_success == later
    assert core.current["web"] == ips(3, 4)
    assert core.next_due() == at(clock.now + 2.0)


def test_changed_values_report_one_change() -> None:
    clock = Clock()
    core = fleet(["web"], clock)
    (slot,) = core.due(clock.now)
    core.succeeded_with(slot, values(3, 4))
    core.changes.clear()
    (slot,) = core.due(clock.now + 2.0)

    core.succeeded_with(slot, values(4, 5))

    (change,) = core.changes
    assert (change.added, change.removed, change.current) == (
        frozenset(ips(5)),
        frozenset(ips(3)),
        ips(4, 5),
    )


def test_excluded_addresses_are_never_reported() -> None:
    clock = Clock()
    core = fleet(["web"], clock, exclude=["10.0.1.3"])
    (slot,) = core.due(clock.now)

    core.succeeded_with(slot, values(3, 4))

    assert core.current["web"] == ips(4)
    (change,) = core.changes
    assert change.added == frozenset(ips(4))


def test_finished_with_addresses_works_like_succeeded_with() -> None:
    clock = Clock()
    core = fleet(["web"], clock)
    (slot,) = core.due(clock.now)
    core.succeeded_with(slot, values(3))
    (slot,) = core.due(clock.now + 2.0)

    core.finished(slot, ips(3, 4))
    (slot,) = core.due(clock.now + 4.0)
    core.succeeded_with(slot, values(3, 4))  # the same set as the other path's

    assert [change.current for change in core.changes] == [ips(3), ips(3, 4)]
    assert core.current["web"] == ips(3, 4)


def test_the_values_before_a_finished_success_are_a_change_again() -> None:
    clock = Clock()
    core = fleet(["web"], clock)
    (slot,) = core.due(clock.now)
    core.succeeded_with(slot, values(3))
    (slot,) = core.due(clock.now + 2.0)
    core.finished(slot, ips(3, 4))
    (slot,) = core.due(clock.now + 4.0)

    core.succeeded_with(slot, values(3))  # what succeeded_with saw last, but not the set now

    assert [change.current for change in core.changes] == [ips(3), ips(3, 4), ips(3)]
    assert core.current["web"] == ips(3)


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        (0.5, [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]),  # up to 8 intervals
        (1.0, [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]),  # up to 5 s
        (16.0, [16.0] * 6),  # never sooner than the interval
    ],
)
def test_a_failure_keeps_the_set_and_backs_off_from_the_interval(
    interval: float, expected: list[float]
) -> None:
    clock = Clock()
    core = fleet(["web"], clock, interval=interval)
    (slot,) = core.due(clock.now)
    core.succeeded_with(slot, values(3, 4))
    core.changes.clear()
    error = failure()

    waits = waits_between(core, clock, 6, lambda slot: core.finished(slot, error))

    assert waits == at(expected)
    assert list(core.changes) == []
    assert core.current["web"] == ips(3, 4)
    health = core.health["web"]
    assert (health.consecutive_failures, health.last_error) == (6, error)
    assert health.last_error is error


@pytest.mark.parametrize(
    "error",
    [
        ResolutionTimeout("timeout", name="tasks.web."),
        ResolutionError("SERVFAIL", name="tasks.web."),
    ],
)
def test_a_failure_before_any_success_reports_nothing(error: SwarmDNSError) -> None:
    clock = Clock()
    core = fleet(["web"], clock)
    (slot,) = core.due(clock.now)

    core.finished(slot, error)

    assert list(core.changes) == []
    assert core.current["web"] == ()
    assert core.next_due() == at(clock.now + 2.0)  # not sooner than a service that answers


def test_the_same_values_after_a_failure_mend_the_health() -> None:
    clock = Clock()
    core = fleet(["web"], clock)
    (slot,) = core.due(clock.now)
    core.succeeded_with(slot, values(3))
    (slot,) = core.due(clock.now + 2.0)
    core.finished(slot, failure())
    (slot,) = core.due(clock.now + 2.0)

    core.succeeded_with(slot, values(3))

    health = core.health["web"]
    assert (health.consecutive_failures, health.last_error) == (0, None)
    assert core.next_due() == at(clock.now + 2.0)  # no longer backing off
    assert len(core.changes) == 1


@pytest.mark.parametrize(
    "error",
    [
        ConfigurationError("no nameserver", source="/etc/resolv.conf"),
        InvalidName("too long", name="tasks.web."),
    ],
)
def test_an_error_that_retrying_cannot_mend_is_raised(error: SwarmDNSError) -> None:
    clock = Clock()
    core = fleet(["web"], clock)
    (slot,) = core.due(clock.now)

    with pytest.raises(type(error)) as caught:
        core.finished(slot, error)

    assert caught.value is error


# -- fail_after and health events ------------------------------------------------------


def test_fail_after_ends_the_watch_once_one_service_fails_that_long() -> None:
    clock = Clock()
    core = fleet(["web", "db"], clock, fail_after=10.0)
    slots = take(core, clock.now)
    core.succeeded_with(slots["web"], values(3))
    core.succeeded_with(slots["db"], values(5))
    clock.now += 2.0
    slots = take(core, clock.now)
    core.finished(slots["web"], failure())
    core.succeeded_with(slots["db"], values(5))
    clock.now += 7.9  # web's last success was 9.9 s ago; db's lookups work
    slots = take(core, clock.now)
    core.finished(slots["web"], failure())
    core.succeeded_with(slots["db"], values(5))
    clock.now += 0.1
    web = take(core, clock.now + 4.0)["web"]  # its retry, backing off

    with pytest.raises(WatchTimeout, match=r"no successful lookup of 'tasks\.web\.' for 10 s"):
        core.finished(web, failure())


def test_without_fail_after_a_service_fails_for_ever() -> None:
    clock = Clock()
    core = fleet(["web"], clock)

    for _ in range(100):
        (slot,) = core.due(clock.now)
        core.finished(slot, failure())
        clock.now += 3600.0

    assert core.health["web"].consecutive_failures == 100


def test_fail_after_counts_from_when_a_service_is_added() -> None:
    clock = Clock()
    core = fleet(["web"], clock, fail_after=10.0)
    clock.now += 60.0
    add(core, "db")
    clock.now += 9.9
    (db,) = [slot for slot in core.due(clock.now) if slot.service == "db"]
    core.finished(db, failure("tasks.db."))  # 9.9 s since db was added
    clock.now += 0.1
    (db,) = [slot for slot in core.due(clock.now + 2.0) if slot.service == "db"]

    with pytest.raises(WatchTimeout, match=r"tasks\.db\."):
        core.finished(db, failure("tasks.db."))


def test_each_services_outage_is_told_with_its_monotonic_times() -> None:
    clock = Clock()
    events: list[HealthEvent] = []
    core = fleet(["web", "db"], clock, on_health=events.append)
    slots = take(core, clock.now)
    error = failure()
    core.finished(slots["web"], error)
    core.succeeded_with(slots["db"], values(5))
    clock.now = 1002.0
    web = take(core, clock.now)["web"]  # its retry, with db's lookup
    clock.now = 1002.5

    core.succeeded_with(web, values(3))

    assert [(type(e).__name__, e.service) for e in events] == [
        ("LookupsFailing", "web"),
        ("LookupsRecovered", "web"),
    ]
    failing, recovered = events
    assert isinstance(failing, LookupsFailing)
    assert (failing.since, failing.error) == (1000.0, error)
    assert isinstance(recovered, LookupsRecovered)
    assert (recovered.at, recovered.failed_for, recovered.failures) == (1002.5, 2.5, 1)
    assert core.current["web"] == ips(3)


def test_a_discarded_service_tells_nothing() -> None:
    clock = Clock()
    events: list[HealthEvent] = []
    core = fleet(["web"], clock, on_health=events.append)
    (slot,) = core.due(clock.now)

    core.discard("web")
    core.finished(slot, failure())

    assert events == []


def test_removal_debounce_counts_each_services_own_lookups() -> None:
    clock = Clock()
    core = fleet(["web", "db"], clock, removal_debounce=2)
    slots = take(core, clock.now)
    core.succeeded_with(slots["web"], values(3, 4))
    core.succeeded_with(slots["db"], values(7, 8))
    core.changes.clear()
    clock.now += 2.0
    slots = take(core, clock.now)
    web = slots["web"]  # in flight while db looks up again and again
    core.succeeded_with(slots["db"], values(7))  # db's 8 missing once
    for _ in range(3):
        clock.now += 2.0
        (db,) = core.due(clock.now)
        core.succeeded_with(db, values(7))  # the same values: the cheap path

    core.succeeded_with(web, values(3))  # web's 4 missing once

    (db_change,) = core.changes
    assert (db_change.service, db_change.removed) == ("db", frozenset(ips(8)))
    assert core.current["web"] == ips(3, 4)

    clock.now += 2.0
    slots = take(core, clock.now)
    core.succeeded_with(slots["web"], values(3))  # missing twice, the same values again
    core.succeeded_with(slots["db"], values(7))

    assert len(core.changes) == 2
    web_change = list(core.changes)[1]
    assert (web_change.service, web_change.removed, web_change.current) == (
        "web",
        frozenset(ips(4)),
        ips(3),
    )
    assert core.current == {"web": ips(3), "db": ips(7)}


# -- following more, or fewer -----------------------------------------------------


def test_a_discarded_services_lookup_in_flight_is_dropped() -> None:
    clock = Clock()
    core = fleet(["web", "db"], clock)
    slots = take(core, clock.now)

    assert core.discard("web") is True
    core.succeeded_with(slots["web"], values(3))
    core.finished(slots["web"], ConfigurationError("gone", source="x"))  # not even raised

    assert list(core.changes) == []
    assert core.next_due() is None  # db is in flight; nothing is left for web
    assert core.due(clock.now + 1000) == []
    assert list(core.current) == ["db"]
    assert list(core.health) == ["db"]
    assert "web" not in core.current
    with pytest.raises(KeyError):
        core.current["web"]
    with pytest.raises(KeyError):
        core.health["web"]
    assert core.discard("web") is False


def test_a_discarded_service_leaves_its_changes_not_yet_taken() -> None:
    clock = Clock()
    core = fleet(["web"], clock)
    (slot,) = core.due(clock.now)
    core.succeeded_with(slot, values(3))

    core.discard("web")

    assert [change.service for change in core.changes] == ["web"]
    assert core.next_due() is None


def test_discarding_an_unknown_service_is_false() -> None:
    assert fleet(["web"]).discard("db") is False


def test_a_service_added_during_the_watch_is_due_at_once() -> None:
    clock = Clock()
    core = fleet(["web"], clock)
    (web,) = core.due(clock.now)
    core.succeeded_with(web, values(3))
    clock.now += 0.7

    assert add(core, "db") is True

    assert core.next_due() == clock.now
    (db,) = core.due(clock.now)
    assert db.service == "db"
    core.succeeded_with(db, values(9))
    assert [change.service for change in core.changes] == ["web", "db"]
    assert list(core.current) == ["web", "db"]


def test_adding_a_service_already_followed_is_false() -> None:
    clock = Clock()
    core = fleet(["web"], clock)
    (slot,) = core.due(clock.now)

    assert core.add("web") is False
    assert core.next_due() is None  # still waiting for the outcome of its lookup
    assert core.slots()["web"] is slot


@pytest.mark.parametrize("bad", ["bad name", "tasks.web", ""])
def test_adding_an_invalid_name_is_refused(bad: str) -> None:
    core = fleet(["web"])

    with pytest.raises(InvalidName):
        core.add(bad)

    assert list(core.slots()) == ["web"]


def test_a_service_added_again_after_discard_starts_afresh() -> None:
    clock = Clock()
    core = fleet(["web"], clock)
    (old,) = core.due(clock.now)
    core.succeeded_with(old, values(3))
    (old,) = core.due(clock.now + 2.0)
    core.discard("web")

    assert add(core, "web") is True
    core.succeeded_with(old, values(4))  # the old lookup's outcome: dropped

    assert core.current["web"] == ()
    (new,) = core.due(clock.now)
    assert new is not old
    core.succeeded_with(new, values(5))
    assert [change.current for change in core.changes] == [ips(3), ips(5)]


# -- the views -----------------------------------------------------------------


def test_current_and_health_are_read_only_mappings_in_the_order_added() -> None:
    core = fleet(["web", "db", "cache"])
    current, health = core.current, core.health

    assert isinstance(current, Mapping)
    assert isinstance(health, Mapping)
    assert not hasattr(current, "__setitem__")
    assert not hasattr(health, "__delitem__")
    with pytest.raises(TypeError):
        current["web"] = ()  # type: ignore[index]
    assert list(current) == ["web", "db", "cache"]
    assert list(health) == ["web", "db", "cache"]
    assert dict(current) == {"web": (), "db": (), "cache": ()}
    assert len(health) == 3
    assert health["db"].consecutive_failures == 0


def test_current_and_health_are_live() -> None:
    clock = Clock()
    core = fleet(["web", "db"], clock)
    current, health = core.current, core.health
    slots = take(core, clock.now)

    core.succeeded_with(slots["web"], values(3))
    core.finished(slots["db"], failure("tasks.db."))
    core.discard("db")

    assert dict(current) == {"web": ips(3)}
    assert list(health) == ["web"]
    assert repr(current) == repr({"web": ips(3)})


def test_watch_of_an_unknown_service_names_the_services_watched() -> None:
    core = fleet(["web", "db"])

    with pytest.raises(KeyError) as caught:
        core.watch_of("cache")

    message = caught.value.args[0]
    assert "'cache'" in message
    assert "'web', 'db'" in message
    assert "add() it first" in message


def test_watch_of_names_at_most_five_services() -> None:
    core = fleet([f"s{n}" for n in range(7)])

    with pytest.raises(KeyError) as caught:
        core.watch_of("web")

    message = caught.value.args[0]
    assert "'s0', 's1', 's2', 's3', 's4'..." in message
    assert "'s5'" not in message


def test_watch_of_a_discarded_service_is_unknown() -> None:
    core = fleet(["web", "db"])
    watch = core.watch_of("web")
    core.discard("web")

    with pytest.raises(KeyError, match="'db'"):
        core.watch_of("web")
    assert watch.service == "web"


def test_watch_of_with_no_services_says_none() -> None:
    with pytest.raises(KeyError, match="none"):
        fleet([]).watch_of("web")


# -- changes kept for the user: merged, service by service, past a bound -------


@pytest.fixture
def small_bound(monkeypatch: pytest.MonkeyPatch) -> int:
    """Fleets made from now on keep 3 changes before they merge them."""
    monkeypatch.setattr("swarmdns._values.MAX_PENDING_CHANGES", 3)
    return 3


def octets(addresses: Iterable[IPv4Address]) -> list[int]:
    return sorted(int(str(ip).rsplit(".", 1)[1]) for ip in addresses)


def kept(core: FleetCore) -> list[tuple[str, list[int], list[int], list[int]]]:
    """The changes kept: service, added, removed, current (in last octets)."""
    return [
        (change.service, octets(change.added), octets(change.removed), octets(change.current))
        for change in core.changes
    ]


def lookups(core: FleetCore, clock: Clock, answers: Iterable[tuple[str, tuple[int, ...]]]) -> None:
    """One round: each service named gets the answer given (in last octets)."""
    clock.now += 2.0
    slots = take(core, clock.now)
    for service, answer in answers:
        core.succeeded_with(slots[service], values(*answer))


def test_past_the_bound_each_service_merges_into_its_own_newest_change(
    small_bound: int,
) -> None:
    clock = Clock()
    core = fleet(["web", "db"], clock)
    lookups(core, clock, [("web", (3,)), ("db", (7,))])
    lookups(core, clock, [("web", (3, 4)), ("db", (7,))])  # the bound is reached
    lookups(core, clock, [("web", (3, 4, 5)), ("db", (7, 8))])
    lookups(core, clock, [("web", (4, 5)), ("db", (8,))])

    assert len(core.changes) == small_bound
    assert kept(core) == [
        ("web", [3], [], [3]),
        ("db", [8], [], [8]),  # still db's initial set
        ("web", [4, 5], [3], [4, 5]),  # from after web's initial set to now
    ]


def test_past_the_bound_a_service_without_a_change_kept_gets_one(small_bound: int) -> None:
    clock = Clock()
    core = fleet(["web"], clock)
    for answer in [(3,), (3, 4), (3, 4, 5)]:
        lookups(core, clock, [("web", answer)])
    add(core, "db")
    add(core, "cache")
    lookups(core, clock, [("web", (3,)), ("db", (7,)), ("cache", ())])

    assert kept(core) == [
        ("web", [3], [], [3]),
        ("web", [4], [], [3, 4]),
        ("web", [], [4], [3]),
        ("db", [7], [], [7]),
        ("cache", [], [], []),
    ]
    assert len(core.changes) <= small_bound - 1 + 3  # fewer than the bound plus the services


def test_a_merge_that_changes_nothing_leaves_the_change_before_it_the_newest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("swarmdns._values.MAX_PENDING_CHANGES", 2)
    clock = Clock()
    core = fleet(["web"], clock)
    lookups(core, clock, [("web", (3,))])
    lookups(core, clock, [("web", (3, 4))])
    add(core, "db")
    lookups(core, clock, [("web", (3, 4)), ("db", (7,))])
    lookups(core, clock, [("web", (3,)), ("db", (7,))])  # undoes web's last change: both go

    assert kept(core) == [("web", [3], [], [3]), ("db", [7], [], [7])]
    lookups(core, clock, [("web", ()), ("db", (7,))])  # into web's initial set, which it stays
    assert kept(core) == [("web", [], [], []), ("db", [7], [], [7])]


def test_a_service_added_again_past_the_bound_starts_over_with_its_initial_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("swarmdns._values.MAX_PENDING_CHANGES", 2)
    clock = Clock()
    core = fleet(["web"], clock)
    lookups(core, clock, [("web", (3,))])
    lookups(core, clock, [("web", (3, 4))])
    core.discard("web")
    add(core, "web")
    lookups(core, clock, [("web", (5,))])  # a new watch of web: its initial set says it all
    lookups(core, clock, [("web", (5, 6))])

    assert kept(core) == [("web", [3], [], [3]), ("web", [5, 6], [], [5, 6])]


def is_subsequence(part: Sequence[str], whole: Sequence[str]) -> bool:
    rest = iter(whole)
    return all(item in rest for item in part)


@pytest.mark.parametrize("seed", range(20))
def test_taking_changes_while_they_are_merged_loses_nothing(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    services = ["web", "db", "cache", "api"]
    clock = Clock()
    unbounded = fleet(services, clock)  # keeps up to 1,000 changes: all of them here
    monkeypatch.setattr("swarmdns._values.MAX_PENDING_CHANGES", 3)
    bounded = fleet(services, clock)
    rng = random.Random(seed)
    taken: list[TaskSetChange] = []

    for _ in range(60):
        clock.now += 2.0
        slots = take(unbounded, clock.now), take(bounded, clock.now)
        assert slots[0].keys() == slots[1].keys()  # one schedule, without jitter
        for service in slots[0]:
            if rng.random() < 0.7:
                answer = values(*(n for n in range(1, 6) if rng.random() < 0.5))
                for core, due in zip((unbounded, bounded), slots, strict=True):
                    core.succeeded_with(due[service], answer)
            else:
                for core, due in zip((unbounded, bounded), slots, strict=True):
                    core.finished(due[service], failure())
        assert len(bounded.changes) < 3 + len(services)
        for _ in range(rng.choice([0, 0, 0, 1, 2])):  # the user takes some, now and then
            if bounded.changes:
                taken.append(bounded.changes.popleft())
    while bounded.changes:
        taken.append(bounded.changes.popleft())

    everything = list(unbounded.changes)
    assert len(everything) > 3 * len(taken) / 2
    assert (
        replay(taken)
        == replay(everything)
        == {service: frozenset(unbounded.current[service]) for service in services}
    )
    assert is_subsequence([c.service for c in taken], [c.service for c in everything])


# -- doubtful services: a bounded share of the places, backoff -------------------------


def timeout(name: str = "tasks.web.") -> ResolutionTimeout:
    return ResolutionTimeout("no answer", name=name, nameserver="127.0.0.11:53")


def test_doubtful_lookups_take_at_most_their_share_and_the_prompt_ones_the_rest() -> None:
    clock = Clock()
    doubtful = [f"d{n}" for n in range(50)]
    core = fleet([*doubtful, *(f"p{n}" for n in range(50))], clock)

    def answer(slot: Slot) -> None:
        if slot.service.startswith("d"):
            core.finished(slot, failure(f"tasks.{slot.service}."))
        else:
            core.succeeded_with(slot, values(3))

    first_round(core, answer)
    clock.now += 2.0

    first = core.due(clock.now, room=MAX_IN_FLIGHT)
    later = core.due(clock.now + 2.0, room=1000)

    assert sum(slot.service.startswith("d") for slot in first) == DOUBTFUL_IN_FLIGHT
    assert sum(slot.service.startswith("p") for slot in first) == MAX_IN_FLIGHT - 32
    # With room to spare, the prompt ones all go; the doubtful ones wait for a place.
    assert sorted(names(later)) == sorted(f"p{n}" for n in range(32, 50))


def test_a_doubtful_lookup_back_frees_its_place() -> None:
    clock = Clock()
    core = fleet([f"d{n}" for n in range(40)], clock)
    first_round(core, lambda slot: core.succeeded_with(slot, ()))  # no tasks: forwarded
    clock.now += 2.0
    out = core.due(clock.now, room=1000)
    assert len(out) == DOUBTFUL_IN_FLIGHT
    assert core.next_due() is None  # nothing may go until one is back

    core.succeeded_with(out[0], ())

    assert core.next_due() == at(clock.now - 2.0 + 2.0)  # the others, due since
    assert len(core.due(clock.now, room=1000)) == 1


def test_a_discarded_services_doubtful_lookup_frees_its_place() -> None:
    clock = Clock()
    core = fleet([f"d{n}" for n in range(40)], clock)
    first_round(core, lambda slot: core.succeeded_with(slot, ()))
    clock.now += 2.0
    out = core.due(clock.now, room=1000)
    core.discard(out[0].service)

    core.finished(out[0], failure())

    assert len(core.due(clock.now, room=1000)) == 1


def test_a_doubtful_lookup_that_timed_out_holds_its_place_as_long_as_the_engine_would() -> None:
    clock = Clock()
    services = [f"d{n}" for n in range(40)]
    core = fleet(services, clock, timeout=1.0)
    first_round(core, lambda slot: core.succeeded_with(slot, ()))
    clock.now += 2.0
    sent = clock.now
    out = core.due(clock.now, room=1000)
    clock.now += 1.0  # each times out; the engine holds its forward for 4 s

    for slot in out:
        core.finished(slot, timeout(f"tasks.{slot.service}."))

    assert core.due(clock.now + 2.0, room=1000) == []
    assert core.next_due() == at(sent + FORWARD_HOLD)
    assert len(core.due(sent + FORWARD_HOLD, room=1000)) == len(services) - DOUBTFUL_IN_FLIGHT


def test_a_service_without_tasks_is_asked_less_often_up_to_the_cap() -> None:
    clock = Clock()
    core = fleet(["gone"], clock, interval=0.25)

    waits = waits_between(core, clock, 7, lambda slot: core.succeeded_with(slot, ()))

    assert backoff_cap(0.25) == 2.0
    assert waits == at([0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0])


@pytest.mark.parametrize(
    ("interval", "cap"), [(0.05, 0.4), (0.5, 4.0), (1.0, 5.0), (2.0, 5.0), (10.0, 10.0)]
)
def test_the_backoff_cap_is_eight_intervals_or_five_seconds_never_below_the_interval(
    interval: float, cap: float
) -> None:
    assert backoff_cap(interval) == at(cap)


def test_a_service_that_gets_tasks_again_is_asked_at_the_interval_again() -> None:
    clock = Clock()
    core = fleet(["web"], clock)
    for _ in range(5):  # backing off to the cap
        clock.now = core.next_due() or clock.now
        (slot,) = core.due(clock.now)
        core.succeeded_with(slot, ())
    assert core.next_due() == at(clock.now + 5.0)
    clock.now += 5.0
    (slot,) = core.due(clock.now)

    core.succeeded_with(slot, values(3))

    assert core.current["web"] == ips(3)
    assert core.next_due() == at(clock.now + 2.0)
    (slot,) = core.due(clock.now + 2.0)
    assert slot.prompt


def test_a_slow_answer_with_tasks_keeps_the_service_prompt() -> None:
    clock = Clock()
    core = fleet(["web"], clock)
    (slot,) = core.due(clock.now)
    clock.now += 1.9  # within the timeout: an answer, late or not

    core.succeeded_with(slot, values(3))

    assert slot.prompt
    assert core.next_due() == at(clock.now + 2.0)


class Engine:
    """Answers a fleet's lookups on the test's clock, as the engine would.

    Prompt services answer in a millisecond; ``silent`` names never (the
    lookup times out), and the engine holds each such forward for
    ``FORWARD_HOLD`` seconds, whatever the client does.
    """

    def __init__(self, core: FleetCore, clock: Clock, silent: set[str], timeout: float) -> None:
        self.core = core
        self.clock = clock
        self.silent = silent
        self.timeout = timeout
        self.asked: dict[str, list[float]] = defaultdict(list)
        self.forwards: list[tuple[float, float]] = []  # when each forward was held
        self._out: list[tuple[float, int, Slot]] = []
        self._order = itertools.count()

    def run(self, seconds: float) -> None:
        """Drive the fleet as its driver would; fails if it would spin."""
        core, clock = self.core, self.clock
        end = clock.now + seconds
        while clock.now < end:
            sent = core.due(clock.now, MAX_IN_FLIGHT - len(self._out))
            for slot in sent:
                self.asked[slot.service].append(clock.now)
                took = 0.001
                if slot.service in self.silent:
                    took = self.timeout
                    self.forwards.append((clock.now, clock.now + FORWARD_HOLD))
                heapq.heappush(self._out, (clock.now + took, next(self._order), slot))
            times = [self._out[0][0]] if self._out else []
            if len(self._out) < MAX_IN_FLIGHT and (due := core.next_due()) is not None:
                times.append(due)
            then = min(times)
            assert sent or then > clock.now, "the driver would wake again and again for nothing"
            clock.now = max(clock.now, then)
            while self._out and self._out[0][0] <= clock.now:
                _, _, slot = heapq.heappop(self._out)
                if slot.service in self.silent:
                    core.finished(slot, timeout(f"tasks.{slot.service}."))
                else:
                    core.succeeded_with(slot, values(3))

    def longest_wait(self, services: Iterable[str], start: float | None = None) -> float:
        """The longest any of ``services`` went without a lookup, from ``start`` (by default
        from its own first lookup) to now."""
        longest = 0.0
        for service in services:
            asked = self.asked[service]
            since = asked[0] if start is None else start
            times = [since, *(t for t in asked if t >= since), self.clock.now]
            longest = max(longest, *(b - a for a, b in itertools.pairwise(times)))
        return longest

    def most_forwards_held(self, start: float) -> int:
        """The most forwards of silent names the engine held at once, from ``start`` on."""
        steps = sorted([(t, 1) for t, _ in self.forwards] + [(t, -1) for _, t in self.forwards])
        held = most = 0
        for when, step in steps:
            held += step
            if when >= start:
                most = max(most, held)
        return most


@pytest.mark.parametrize("share", [0.0, 0.2, 0.4, 0.9])
def test_prompt_services_keep_their_interval_whatever_silent_names_do(share: float) -> None:
    clock = Clock()
    services = [f"s{n}" for n in range(1000)]
    silent = {s for n, s in enumerate(services) if int((n + 1) * share) > int(n * share)}
    core = fleet(services, clock, jitter=0.1)  # the defaults: every 2 s, a 2 s timeout
    engine = Engine(core, clock, silent, timeout=2.0)
    start = clock.now
    # Every first lookup is doubtful: the silent ones time out 32 at a time.
    started = start + len(silent) * 2.0 / DOUBTFUL_IN_FLIGHT + 2.0

    engine.run(started - start + 40.0)

    prompt = [s for s in services if s not in silent]
    assert max(engine.asked[s][0] for s in prompt) <= started
    # From its first answer on, a service that answers is asked every interval.
    assert engine.longest_wait(prompt) <= 2.0 * 1.1 + SLACK + 0.002
    # Once each silent name has timed out once, the engine holds at most 32 of
    # their forwards at a time, and each is still asked now and then.
    assert engine.most_forwards_held(started + FORWARD_HOLD) <= DOUBTFUL_IN_FLIGHT
    if silent:
        assert engine.longest_wait(silent, started + FORWARD_HOLD) <= 2.0 + max(
            backoff_cap(2.0) * 1.1, len(silent) * FORWARD_HOLD / DOUBTFUL_IN_FLIGHT
        )
