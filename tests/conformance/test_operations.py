"""Rolling updates, rollbacks and drains, run unchanged on the fake and on the real engine.

Each scenario samples what the probe task's DNS answers for ``tasks.<svc>``
and ``<svc>`` every 50 ms, from just before the operation until DNS shows its
end, and checks the shape of that timeline: the fewest and most tasks, how
long fewer than the replica count, new addresses, the VIP unchanged. What it
measured is printed (``pytest -rA``: the lines that start with
``operations[``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from typing import Any

import pytest

from swarmdns.testing import OperationDelays, UpdateOrder

from .drivers import Driver, wait_until
from .nodes import NodesDriver
from .operations import (
    Analysis,
    Operations,
    Sample,
    analyse,
    expected_below,
    first_answer,
    operations_for,
    settle,
)
from .test_nodes import nodes, session_nodes  # noqa: F401 - the three-node fixtures

#: Few replicas and a short health check keep the real engine's part short
#: (each replacement there takes about 9 s, most of it waiting for DNS).
REPLICAS = 3
#: The measured time below N may be this many times the one the delays give,
#: either way, plus SLACK: the real engine's steps vary from run to run
#: (and engine to engine), and an answer stands until the next one (50 ms).
FACTOR = 2.0
SLACK = 1.0
#: At most this share of the answers may be missing (each waits 0.25 s), as
#: on a loaded machine a few do; a missing answer is never counted as empty.
MISSING = 0.05
#: A scenario takes up to about 50 s on 28.5 alone (the rollback: an update,
#: the engine's 5 s monitor, then the rollback), and may take twice as long
#: beside the rest of CI's workers on two cores: more room than
#: pytest-timeout's 120 s.
TIMEOUT = 300


@pytest.fixture
def ops(driver: Driver) -> Iterator[Operations]:
    """The operations of the scenario's Swarm; every node active again after it."""
    operations = operations_for(driver)
    try:
        yield operations
    finally:
        operations.cleanup()


@pytest.fixture
def node_ops(nodes: NodesDriver) -> Iterator[Operations]:  # noqa: F811 - the fixture imported
    """The operations of the three-node Swarm; every node active again after it."""
    operations = operations_for(nodes)
    try:
        yield operations
    finally:
        operations.cleanup()


def sampled(
    ops: Operations, names: list[str], operation: Callable[[], Any], service: str
) -> tuple[list[Sample], float]:
    """Run ``operation`` while sampling ``names``; the samples, and when it began.

    Sampling stops once ``tasks.<service>`` answers what the Swarm runs.
    """
    sampler = ops.sampler(names)
    try:
        sampler.wait_started()
        start = time.monotonic()
        operation()
        settle(sampler, f"tasks.{service}", ops.addresses(service))
    finally:
        samples = sampler.stop()
    return samples, start


def report(ops: Operations, line: str) -> None:
    print(f"operations[{ops.name}] {line}")


def within(measured: float, expected: float) -> bool:
    return expected / FACTOR - SLACK <= measured <= expected * FACTOR + SLACK


def check_replaced(ops: Operations, analysis: Analysis, before: frozenset[Any], name: str) -> None:
    """Every task replaced by one with a new address, none reused; the VIP kept."""
    assert analysis.initial == before
    assert analysis.final == ops.addresses(name)
    assert len(analysis.final) == REPLICAS
    assert analysis.all_new, analysis
    assert not analysis.returned, analysis
    assert analysis.vip_unchanged, analysis
    assert analysis.failed <= MISSING * (analysis.answers + analysis.failed), analysis


def check_rollout(
    ops: Operations,
    name: str,
    operation: Callable[[], Any],
    *,
    order: UpdateOrder,
    parallelism: int,
) -> None:
    """Sample ``operation``, which replaces every task of ``name``, and check what DNS showed.

    Stop-first, DNS lists ``parallelism`` tasks fewer at the worst, never
    more; start-first, never fewer, and one more at the most (a sample
    missing a task counts: the engine showed none at 50 ms).
    """
    before = ops.addresses(name)

    samples, start = sampled(ops, [f"tasks.{name}", name], operation, name)

    analysis = analyse(samples, service=name, replicas=REPLICAS, start=start)
    expected = expected_below(ops.delays, replicas=REPLICAS, parallelism=parallelism, order=order)
    report(
        ops,
        f"{name} ({order}, parallelism {parallelism}): {analysis.describe()};"
        f" the delays give {expected:.1f} s below N",
    )
    report_steps(ops, name, samples, start)
    check_replaced(ops, analysis, before, name)
    if order == "stop-first":
        assert analysis.fewest == REPLICAS - parallelism, analysis
        assert analysis.most == REPLICAS, analysis
    else:
        assert analysis.fewest == REPLICAS, analysis
        assert analysis.most in (REPLICAS, REPLICAS + 1), analysis
    assert within(analysis.below, expected), (analysis.below, expected)


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize(
    ("order", "parallelism"), [("stop-first", 1), ("stop-first", 2), ("start-first", 1)]
)
def test_rolling_update(ops: Operations, order: UpdateOrder, parallelism: int) -> None:
    """An update replaces every task; stop-first drops ``parallelism`` at a time."""
    name = f"roll-{order.partition('-')[0]}{parallelism}"
    ops.create(name, REPLICAS)

    check_rollout(
        ops,
        name,
        lambda: ops.update(name, order=order, parallelism=parallelism),
        order=order,
        parallelism=parallelism,
    )


@pytest.mark.timeout(TIMEOUT)
def test_rollback(ops: Operations) -> None:
    """A rollback uses the rollback configuration's defaults (stop-first, parallelism 1).

    Not the settings of the update it undoes: that one is start-first, all
    at once, and never drops a task.
    """
    name = "undo"
    ops.create(name, REPLICAS)
    ops.update(name, order="start-first", parallelism=REPLICAS)
    ops.completed(name)

    check_rollout(ops, name, lambda: ops.rollback(name), order="stop-first", parallelism=1)


def report_steps(ops: Operations, name: str, samples: list[Sample], start: float) -> None:
    """Each replacement's steps, where the Swarm tells when containers exited and started."""
    for step in ops.steps(name, samples):
        if step.started < start:
            continue  # a replacement of an earlier operation

        def at(moment: float | None) -> str:
            return "-" if moment is None else f"{moment - start:.2f}"

        report(
            ops,
            f"  {name}: dropped {at(step.dropped)}, exited {at(step.exited)},"
            f" started {at(step.started)}, entered {at(step.entered)} s",
        )


@pytest.mark.timeout(TIMEOUT)
def test_drain_and_activate(node_ops: Operations) -> None:
    """Draining node 3 moves its tasks to nodes 1 and 2; activating it moves nothing back.

    A service constrained to node 3 has nowhere to run while it drains
    (NXDOMAIN), and runs there again once it is active.
    """
    ops = node_ops
    ops.create("ops-spread", 6)
    ops.create("ops-pinned", 1, node=3)
    assert ops.nodes_of("ops-spread") == [1, 1, 2, 2, 3, 3]
    assert ops.nodes_of("ops-pinned") == [3]
    names = ["tasks.ops-spread", "ops-spread", "tasks.ops-pinned"]
    sampler = ops.sampler(names)
    try:
        sampler.wait_started()
        # Started on their nodes, the tasks reach node 1's DNS by gossip.
        settle(sampler, "tasks.ops-pinned", ops.addresses("ops-pinned"))
        settle(sampler, "tasks.ops-spread", ops.addresses("ops-spread"))
        before = ops.addresses("ops-spread")
        on_3 = {a for a, n in ops.addresses_by_node("ops-spread").items() if n == 3}

        start = time.monotonic()
        ops.drain(3)
        wait_drained(ops)
        settle(sampler, "tasks.ops-pinned", frozenset())
        settle(sampler, "tasks.ops-spread", ops.addresses("ops-spread"))
        drained = ops.addresses("ops-spread")

        activated = time.monotonic()
        ops.activate(3)
        ops.wait_running("ops-pinned", 1)
        settle(sampler, "tasks.ops-pinned", ops.addresses("ops-pinned"))
        assert ops.addresses("ops-spread") == drained
    finally:
        samples = sampler.stop()

    during = [s for s in samples if s.at < activated]
    analysis = analyse(during, service="ops-spread", replicas=6, start=start)
    after = analyse(
        [s for s in samples if s.at >= activated],
        service="ops-spread",
        replicas=6,
        start=activated,
    )
    gone = first_answer(samples, "tasks.ops-pinned", start, empty=True)
    back = first_answer(samples, "tasks.ops-pinned", activated, empty=False)
    assert gone is not None
    assert back is not None
    expected = ops.delays.exit + ops.delays.start + ops.delays.healthy
    report(
        ops,
        f"drain node 3: {analysis.describe()}; the delays give {expected:.1f} s below N;"
        f" the pinned service answered NXDOMAIN {gone - start:.2f} s after the drain;"
        f" node 3 active again: nothing moved ({after.fewest}-{after.most} tasks),"
        f" the pinned service back in DNS {back - activated:.2f} s after",
    )
    report_steps(ops, "ops-spread", during, start)
    assert analysis.initial == before
    assert analysis.final == drained
    assert analysis.fewest == 4, analysis
    assert analysis.most == 6, analysis
    assert before - drained == on_3
    assert len(drained - before) == 2, "node 3's tasks run on nodes 1 and 2 with new addresses"
    assert not analysis.returned, analysis
    assert analysis.vip_unchanged, analysis
    assert within(analysis.below, expected), (analysis.below, expected)
    assert (after.fewest, after.most, after.final) == (6, 6, drained)
    assert after.vips == analysis.vips
    assert 3 not in ops.nodes_of("ops-spread")
    assert ops.nodes_of("ops-pinned") == [3]


def wait_drained(ops: Operations) -> None:
    """Until the Swarm runs no task on node 3: six of spread elsewhere, none of pinned."""

    def drained() -> bool:
        spread = ops.nodes_of("ops-spread")
        return not ops.nodes_of("ops-pinned") and len(spread) == 6 and 3 not in spread

    wait_until(drained, "node 3 drained")


def sample(at: float, name: str, *addresses: str, rcode: str = "NOERROR") -> Sample:
    return Sample(at=at, name=name, rcode=rcode, addresses=frozenset(map(IPv4Address, addresses)))


def test_analysis_of_a_timeline() -> None:
    """Each answer stands until the next; a lone short one counts; missing ones do not."""
    samples = [
        sample(0.0, "tasks.web", "10.0.0.1", "10.0.0.2"),
        sample(0.0, "web", "10.0.0.9"),
        sample(0.5, "tasks.web", "10.0.0.2"),
        sample(0.6, "tasks.web", rcode="no reply"),
        sample(1.0, "tasks.web", "10.0.0.2", "10.0.0.3"),
        sample(1.0, "web", "10.0.0.9"),
        sample(1.5, "tasks.web", "10.0.0.2", "10.0.0.3", "10.0.0.4"),
        sample(1.6, "tasks.web", "10.0.0.3", "10.0.0.4"),
        sample(2.0, "tasks.web", rcode="NXDOMAIN"),
        sample(2.05, "tasks.web", "10.0.0.3", "10.0.0.2"),
        sample(3.0, "tasks.web", "10.0.0.3", "10.0.0.2"),
    ]

    found = analyse(samples, service="web", replicas=2, start=0.2)

    assert (found.fewest, found.most) == (0, 3)
    assert found.below == pytest.approx(0.5 + 0.05)
    assert found.above == pytest.approx(0.1)
    assert found.initial == {IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")}
    assert found.final == {IPv4Address("10.0.0.2"), IPv4Address("10.0.0.3")}
    assert not found.all_new
    assert found.returned == {IPv4Address("10.0.0.2"), IPv4Address("10.0.0.3")}
    assert found.vip_unchanged
    assert found.took == pytest.approx(2.05 - 0.2)
    assert (found.failed, found.answers) == (1, 8)
    assert first_answer(samples, "tasks.web", 1.0, empty=True) == 2.0
    assert first_answer(samples, "tasks.web", 2.0, empty=False) == 2.05
    assert expected_below(ops_delays(), replicas=3, parallelism=2, order="stop-first") == 2 * 6
    assert expected_below(ops_delays(), replicas=3, parallelism=1, order="start-first") == 0


def ops_delays() -> OperationDelays:
    return OperationDelays(stop=1, exit=2, start=1, healthy=3, monitor=4)
