"""Operations on the fake Swarm over time: rolling updates, rollbacks, drains.

What DNS shows is read through swarmdns itself. Instant operations
(``OperationDelays.INSTANT``) end within the call; timed ones are waited for
with ``Operation.wait()``, and the tests assert the order of the steps and
lower bounds of their gaps (a step never comes before its delay), never how
long anything took.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import Any

import pytest

import swarmdns
from swarmdns.testing import (
    FakeSwarm,
    NodeDelays,
    Operation,
    OperationDelays,
    SwarmError,
    TimelineEvent,
    UpdateSettings,
)
from swarmdns.testing._operations import plan_batches

INSTANT = OperationDelays.INSTANT
NOT_AN_ORDER: Any = "rolling"
NOT_A_COUNT: Any = 1.5
#: Fast enough for a unit test, slow enough that every step has its own moment.
QUICK = OperationDelays().scaled(0.02)


@pytest.fixture
def swarm() -> Iterator[FakeSwarm]:
    with FakeSwarm(seed=7) as fake:
        yield fake


@pytest.fixture
def cluster() -> Iterator[FakeSwarm]:
    with FakeSwarm(seed=7, nodes=3, delays=NodeDelays.INSTANT) as fake:
        yield fake


def healthy_service(swarm: FakeSwarm, name: str = "web", replicas: int = 4) -> None:
    swarm.create_service(name, replicas=replicas, healthcheck=True)
    for task in swarm.service(name).tasks:
        swarm.mark_healthy(task)


def on(swarm: FakeSwarm) -> swarmdns.DirectBackend:
    return swarmdns.DirectBackend([swarm.nameserver])


def dns_ips(swarm: FakeSwarm, service: str = "web") -> set[IPv4Address]:
    return set(swarmdns.task_ips(service, backend=on(swarm), timeout=2.0))


def steps(operation: Operation) -> list[tuple[str, str]]:
    return [(event.step, event.task) for event in operation.timeline]


# -- the values ------------------------------------------------------------------


def test_the_default_delays_are_the_measured_ones_and_instant_is_all_zero() -> None:
    delays = OperationDelays()
    assert (delays.stop, delays.exit, delays.start, delays.healthy, delays.monitor) == (
        1.2,
        2.0,
        0.4,
        5.5,
        1.2,
    )
    assert OperationDelays(stop=0, exit=0, start=0, healthy=0, monitor=0) == INSTANT
    assert OperationDelays().scaled(0.5) == OperationDelays(
        stop=0.6, exit=1.0, start=0.2, healthy=2.75, monitor=0.6
    )


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: OperationDelays(stop=-1), ValueError, "stop must be between 0 and 3600"),
        (lambda: OperationDelays(healthy=True), TypeError, "healthy is a number of seconds"),
        (lambda: OperationDelays().scaled(-2), ValueError, "factor must be"),
        (lambda: OperationDelays().scaled(1e6), ValueError, "between 0 and 3600"),
        (lambda: UpdateSettings(order=NOT_AN_ORDER), ValueError, "'stop-first' or 'start-first'"),
        (lambda: UpdateSettings(parallelism=-1), ValueError, "0: every task at once"),
        (lambda: UpdateSettings(parallelism=NOT_A_COUNT), ValueError, "whole number"),
        (lambda: UpdateSettings(delay=float("nan")), ValueError, "delay must be"),
    ],
)
def test_bad_settings_are_refused_with_what_was_wrong(
    make: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make()  # type: ignore[operator]


def test_batches_go_by_slot_with_parallelism_tasks_each(swarm: FakeSwarm) -> None:
    tasks = swarm.create_service("web", replicas=5).tasks
    assert [[t.slot for t in batch] for batch in plan_batches(tasks, 2)] == [[1, 2], [3, 4], [5]]
    assert [[t.slot for t in batch] for batch in plan_batches(tasks, 0)] == [[1, 2, 3, 4, 5]]
    assert plan_batches((), 1) == []


# -- updates ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "parallelism", "fewest", "most"),
    [
        ("stop-first", 1, 3, 4),
        ("stop-first", 2, 2, 4),
        ("stop-first", 0, 0, 4),
        ("start-first", 1, 4, 5),
        ("start-first", 2, 4, 6),
    ],
)
def test_an_update_replaces_every_task_with_new_addresses_and_keeps_the_vip(
    swarm: FakeSwarm, order: str, parallelism: int, fewest: int, most: int
) -> None:
    healthy_service(swarm)
    before = swarm.service("web")
    operation = swarm.update_service(
        "web",
        order=order,  # type: ignore[arg-type]
        parallelism=parallelism,
        delays=INSTANT,
    )
    assert operation.done, "an instant operation ends within the call"
    after = swarm.service("web")
    assert (operation.fewest(), operation.most()) == (fewest, most)
    assert dns_ips(swarm) == set(after.task_ips)
    assert len(after.task_ips) == 4
    assert not set(after.task_ips) & set(before.task_ips), "every replacement has a new address"
    assert [t.slot for t in after.tasks] == [1, 2, 3, 4]
    assert {t.id for t in after.tasks}.isdisjoint(t.id for t in before.tasks)
    assert swarmdns.service_vip("web", backend=on(swarm)) == before.vip


def test_stop_first_takes_the_old_task_out_before_its_replacement_starts(
    swarm: FakeSwarm,
) -> None:
    healthy_service(swarm, replicas=2)
    old = [t.name for t in swarm.service("web").tasks]
    operation = swarm.update_service("web", delays=INSTANT)
    new = [t.name for t in swarm.service("web").tasks]
    assert steps(operation) == [
        ("left", old[0]),
        ("exited", old[0]),
        ("started", new[0]),
        ("entered", new[0]),
        ("left", old[1]),
        ("exited", old[1]),
        ("started", new[1]),
        ("entered", new[1]),
    ]


def test_start_first_puts_the_replacement_in_dns_before_the_old_task_leaves(
    swarm: FakeSwarm,
) -> None:
    healthy_service(swarm, replicas=2)
    old = [t.name for t in swarm.service("web").tasks]
    operation = swarm.update_service("web", order="start-first", delays=INSTANT)
    new = [t.name for t in swarm.service("web").tasks]
    order = steps(operation)
    for before, after in zip(old, new, strict=True):
        assert order.index(("started", after)) < order.index(("entered", after))
        assert order.index(("entered", after)) < order.index(("left", before))
        assert order.index(("left", before)) < order.index(("exited", before))
    assert order.index(("entered", new[0])) < order.index(("started", new[1])), "batch by batch"
    assert len(order) == 8


def at(operation: Operation, step: str, task: str) -> float:
    (event,) = (e for e in operation.timeline if (e.step, e.task) == (step, task))
    return event.at


def test_each_step_waits_its_delay_and_the_next_batch_the_monitor_and_the_delay(
    swarm: FakeSwarm,
) -> None:
    healthy_service(swarm, replicas=2)
    old = [t.name for t in swarm.service("web").tasks]
    operation = swarm.update_service("web", delay=0.05, delays=QUICK)
    assert not operation.done, "a timed operation runs in the background"
    operation.wait(10)
    new = [t.name for t in swarm.service("web").tasks]
    d = QUICK
    assert at(operation, "left", old[0]) >= d.stop
    assert at(operation, "exited", old[0]) - at(operation, "left", old[0]) >= d.exit
    assert at(operation, "started", new[0]) - at(operation, "exited", old[0]) >= d.start
    assert at(operation, "entered", new[0]) - at(operation, "started", new[0]) >= d.healthy
    next_batch = at(operation, "left", old[1]) - at(operation, "entered", new[0])
    assert next_batch >= d.monitor + 0.05 + d.stop
    below = operation.time_below(2)
    assert below >= 2 * (d.exit + d.start + d.healthy)
    assert operation.took is not None
    assert operation.took >= below


def test_a_service_without_a_health_check_is_listed_as_its_task_starts(swarm: FakeSwarm) -> None:
    swarm.create_service("web", replicas=1)
    operation = swarm.update_service("web", delays=QUICK).wait(10)
    started, entered = (e for e in operation.timeline if e.step in ("started", "entered"))
    assert entered.at == pytest.approx(started.at, abs=0.01)


def test_a_watch_sees_stop_first_as_removal_then_addition_and_start_first_the_reverse(
    swarm: FakeSwarm,
) -> None:
    # Each state lasts at least 0.4 s (the health check); the watch asks every 20 ms.
    slow = OperationDelays(stop=0.05, exit=0.4, start=0.05, healthy=0.4, monitor=0.4)
    healthy_service(swarm, replicas=2)
    with swarmdns.watch_tasks(
        "web", backend=on(swarm), interval=0.02, jitter=0.0, timeout=1.0
    ) as watch:
        changes = iter(watch)
        next(changes)  # the initial set
        for order, first, then in (
            ("stop-first", "removed", "added"),
            ("start-first", "added", "removed"),
        ):
            operation = swarm.update_service("web", order=order, delays=slow)  # type: ignore[arg-type]
            seen = [next(changes) for _ in range(4)]
            operation.wait(10)
            kinds = [
                ("added" if c.added else "removed", len(c.added) + len(c.removed)) for c in seen
            ]
            assert kinds == [(first, 1), (then, 1)] * 2, seen


def test_an_update_of_a_service_being_updated_is_refused_until_it_ends(swarm: FakeSwarm) -> None:
    healthy_service(swarm, replicas=1)
    running = swarm.update_service("web", delays=QUICK)
    with pytest.raises(SwarmError, match=r"being changed by <Operation update web.*wait\(\)"):
        swarm.update_service("web", delays=INSTANT)
    running.wait(10)
    assert swarm.update_service("web", delays=INSTANT).done


def test_rollback_needs_an_update_and_goes_stop_first_one_at_a_time(swarm: FakeSwarm) -> None:
    healthy_service(swarm)
    with pytest.raises(SwarmError, match="no previous spec to roll back to"):
        swarm.rollback("web", delays=INSTANT)
    swarm.update_service("web", order="start-first", parallelism=2, delays=INSTANT)
    before = set(swarm.service("web").task_ips)
    rollback = swarm.rollback("web", delays=INSTANT)
    assert rollback.kind == "rollback"
    assert rollback.settings == UpdateSettings()
    assert (rollback.fewest(), rollback.most()) == (3, 4)
    assert not dns_ips(swarm) & before
    assert swarm.rollback("web", delays=INSTANT).done, "a rollback can be rolled back"


def test_a_stopped_fake_runs_no_step_until_it_settles() -> None:
    swarm = FakeSwarm(seed=7)
    healthy_service(swarm, replicas=1)
    operation = swarm.update_service("web", delays=QUICK)
    with pytest.raises(TimeoutError, match=r"still running after 0.05 s.*\.INSTANT"):
        operation.wait(0.05)
    assert operation.timeline == ()
    swarm.settle(10)
    assert operation.wait(0).done


def test_a_reset_cancels_the_operations_under_way(swarm: FakeSwarm) -> None:
    healthy_service(swarm, replicas=1)
    operation = swarm.update_service("web", delays=OperationDelays())
    swarm.reset()
    with pytest.raises(SwarmError, match="cancelled by reset"):
        operation.wait(1)
    assert operation.cancelled
    assert not operation.done


def test_the_timeline_reads_well() -> None:
    event = TimelineEvent(
        at=1.25, step="left", service="web", task="web.1.abc", ip=IPv4Address("10.0.1.3")
    )
    assert str(event) == "  1.250 s  left     web.1.abc (10.0.1.3)"


def test_an_unknown_service_or_one_it_did_not_touch_is_named(swarm: FakeSwarm) -> None:
    with pytest.raises(SwarmError, match="no service named 'nope'"):
        swarm.update_service("nope")
    healthy_service(swarm, replicas=1)
    operation = swarm.update_service("web", delays=INSTANT)
    with pytest.raises(SwarmError, match=r"touched no service 'db'.*it touched: web"):
        operation.fewest("db")
    with pytest.raises(TypeError, match="delays must be an OperationDelays"):
        swarm.update_service("web", delays=NodeDelays.INSTANT)  # type: ignore[arg-type]


# -- drains and placement --------------------------------------------------------


def test_a_drain_moves_replicas_to_new_addresses_and_empties_a_service_pinned_there(
    cluster: FakeSwarm,
) -> None:
    healthy_service(cluster, replicas=6)
    cluster.create_service("pinned", replicas=1, placement=["node-3"])
    node3 = cluster.node("node-3")
    assert {t.node_id for t in cluster.service("pinned").tasks} == {node3.id}
    before = dns_ips(cluster)
    operation = cluster.drain("node-3", delays=INSTANT)
    assert cluster.node("node-3").drained
    assert (operation.fewest("web"), operation.fewest("pinned")) == (4, 0)
    after = dns_ips(cluster)
    assert len(after) == 6
    assert len(after - before) == 2, "the two moved tasks have new addresses"
    assert not cluster.tasks_on("node-3")
    assert dns_ips(cluster, "pinned") == set(), "its only task has nowhere to go"

    back = cluster.activate("node-3", delays=INSTANT)
    assert not cluster.node("node-3").drained
    assert dns_ips(cluster) == after, "nothing moves back"
    assert [t.name for t in cluster.tasks_on("node-3")] == [
        t.name for t in cluster.service("pinned").tasks
    ]
    assert [e.step for e in back.timeline] == ["started", "entered"]


def test_a_global_service_stops_on_a_drained_node_and_starts_again_when_active(
    cluster: FakeSwarm,
) -> None:
    cluster.create_service("agent", mode="global")
    cluster.drain("node-2", delays=INSTANT)
    assert len(cluster.service("agent").tasks) == 2
    cluster.activate("node-2", delays=INSTANT)
    assert {t.node_id for t in cluster.service("agent").tasks} == {n.id for n in cluster.nodes}


def test_a_drain_is_refused_twice_and_an_activation_of_an_active_node(cluster: FakeSwarm) -> None:
    cluster.drain("node-2", delays=INSTANT)
    with pytest.raises(SwarmError, match="already drained"):
        cluster.drain("node-2")
    with pytest.raises(SwarmError, match="is not drained"):
        cluster.activate("node-3")
    with pytest.raises(SwarmError, match="no node 'node-9'"):
        cluster.drain("node-9")


def test_a_replica_no_node_may_run_waits_out_of_dns(cluster: FakeSwarm) -> None:
    cluster.drain("node-3", delays=INSTANT)
    service = cluster.create_service("pinned", replicas=2, placement=["node-3"])
    assert service.tasks == ()
    cluster.scale("pinned", 1)
    cluster.activate("node-3", delays=INSTANT)
    assert [t.slot for t in cluster.service("pinned").tasks] == [1]


def test_placement_names_known_nodes(cluster: FakeSwarm) -> None:
    with pytest.raises(TypeError, match="sequence of nodes, not one string"):
        cluster.create_service("web", placement="node-2")
    with pytest.raises(SwarmError, match="no node 'node-7'"):
        cluster.create_service("web", placement=["node-7"])
    service = cluster.create_service("web", replicas=3, placement=[cluster.nodes[1]])
    assert service.placement == (cluster.nodes[1].id,)
    assert {t.node_id for t in service.tasks} == {cluster.nodes[1].id}


#: Docker 28.5.2, 4 replicas with a health check (docs/fake-fidelity.md): the
#: update's settings, then the fewest and most tasks in DNS and the seconds below 4.
MEASURED = [
    ({}, 3, 4, 31.5),
    ({"parallelism": 2}, 2, 4, 16.4),
    ({"order": "start-first"}, 4, 5, 0.0),
    ({"order": "start-first", "parallelism": 2}, 4, 6, 0.0),
    ({"delay": 2.0}, 3, 4, 32.4),
]
#: How much faster than the engine the fake runs here; times are scaled back.
SPEED = 0.02


@pytest.mark.parametrize(("settings", "fewest", "most", "below"), MEASURED)
def test_the_default_delays_give_the_engines_timeline(
    swarm: FakeSwarm, settings: dict[str, Any], fewest: int, most: int, below: float
) -> None:
    healthy_service(swarm)
    if "delay" in settings:
        settings = {**settings, "delay": settings["delay"] * SPEED}
    operation = swarm.update_service(
        "web", delays=OperationDelays().scaled(SPEED), **settings
    ).wait(30)
    took, below_4 = (operation.took or 0) / SPEED, operation.time_below(4) / SPEED
    print(f"{settings}: took {took:.1f} s, fewest {operation.fewest()}, below 4 {below_4:.1f} s")
    assert (operation.fewest(), operation.most()) == (fewest, most)
    # Steps never come early, so the time below is at least the delays' sum;
    # within 10 % of the engine's, from below.
    assert below_4 >= below * 0.9
