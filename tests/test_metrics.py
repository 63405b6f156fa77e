"""swarmdns.metrics: what a scrape shows of running watches."""

from __future__ import annotations

import math
import queue
import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import swarmdns
from swarmdns.metrics import WatchCollector
from swarmdns.testing import FakeSwarm, Fault

DEADLINE = 30.0  # a bound for a broken test, not a timing expectation


def scrape(*watches: object) -> str:
    registry = CollectorRegistry()
    registry.register(WatchCollector(*watches))  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def value(text: str, sample: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(sample + " ")]
    return float(line.split()[-1])


def test_a_fleet_shows_tasks_lookups_failures_and_changes(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=2)
    swarm_dns.create_service("api", replicas=1)
    backend = swarmdns.DirectBackend([swarm_dns.nameserver])
    with swarmdns.FleetWatcher(["web", "api"], backend=backend, interval=0.05) as fleet:
        fleet.wait_for_tasks("web", 2, timeout=DEADLINE)
        fleet.wait_for_tasks("api", 1, timeout=DEADLINE)
        seen = len([query for query in swarm_dns.queries if query.name == "tasks.api"])
        swarm_dns.inject([Fault.SERVFAIL] * 2, name="tasks.api")
        swarm_dns.wait_for_queries(seen + 3, name="tasks.api")  # two failures, then one more
        swarm_dns.scale("web", 3)
        fleet.wait_for_tasks("web", 3, timeout=DEADLINE)
        text = scrape(fleet)

    assert value(text, 'swarmdns_tasks{service="web"}') == 3
    assert value(text, 'swarmdns_tasks{service="api"}') == 1
    assert value(text, 'swarmdns_changes_total{service="web"}') == 2  # initial set, then +1
    assert value(text, 'swarmdns_changes_total{service="api"}') == 1
    assert value(text, 'swarmdns_lookup_failures_total{kind="ResolutionError",service="api"}') == 2
    assert value(text, 'swarmdns_lookups_total{service="api"}') >= 3
    assert 'swarmdns_lookup_failures_total{kind="ResolutionError",service="web"}' not in text
    assert 0 <= value(text, 'swarmdns_seconds_since_success{service="web"}') < DEADLINE


def test_a_watch_of_one_service_shows_the_same(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=2)
    backend = swarmdns.DirectBackend([swarm_dns.nameserver])
    with swarmdns.watch_tasks("web", backend=backend, interval=0.05) as watch:
        next(watch)
        text = scrape(watch)

    assert value(text, 'swarmdns_tasks{service="web"}') == 2
    assert value(text, 'swarmdns_changes_total{service="web"}') == 1
    assert value(text, 'swarmdns_consecutive_failures{service="web"}') == 0


def test_a_held_change_shows_while_it_is_held(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=2, network="web-net")
    swarm_dns.create_service("api", replicas=1)
    backend = swarmdns.DirectBackend([swarm_dns.nameserver])
    told: queue.Queue[swarmdns.HealthEvent] = queue.Queue()
    with swarmdns.FleetWatcher(
        ["web", "api"], backend=backend, interval=0.05, min_tasks=1, on_health=told.put
    ) as fleet:
        fleet.wait_for_tasks("web", 2, timeout=DEADLINE)
        fleet.wait_for_tasks("api", 1, timeout=DEADLINE)
        before = scrape(fleet)
        swarm_dns.client_networks = ["default"]  # web's names answer NXDOMAIN, as on 29.x
        held = told.get(timeout=DEADLINE)
        during = scrape(fleet)
        swarm_dns.client_networks = None
        released = told.get(timeout=DEADLINE)
        after = scrape(fleet)

    assert isinstance(held, swarmdns.ChangeHeld)
    assert isinstance(released, swarmdns.HoldReleased)
    assert value(before, 'swarmdns_held{service="web"}') == 0
    assert value(before, 'swarmdns_held_seconds{service="web"}') == 0
    assert value(before, 'swarmdns_holds_total{service="web"}') == 0
    assert value(during, 'swarmdns_held{service="web"}') == 1
    assert value(during, 'swarmdns_held{service="api"}') == 0
    assert 0 <= value(during, 'swarmdns_held_seconds{service="web"}') < DEADLINE
    assert value(during, 'swarmdns_holds_total{service="web"}') == 1
    assert value(during, 'swarmdns_tasks{service="web"}') == len(web.tasks)  # the set held
    assert value(after, 'swarmdns_held{service="web"}') == 0
    assert value(after, 'swarmdns_held_seconds{service="web"}') == 0
    assert value(after, 'swarmdns_holds_total{service="web"}') == 1
    assert value(after, 'swarmdns_changes_total{service="web"}') == 1  # never emptied


def test_before_any_success_the_time_since_is_not_a_number(swarm_dns: FakeSwarm) -> None:
    backend = swarmdns.DirectBackend([swarm_dns.nameserver])
    watch = swarmdns.watch_services(["web"], backend=backend)
    try:
        text = scrape(watch)
    finally:
        watch.close()

    assert math.isnan(value(text, 'swarmdns_seconds_since_success{service="web"}'))


def test_without_prometheus_client_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)

    with pytest.raises(swarmdns.ConfigurationError, match=r"swarmdns\[metrics\]"):
        WatchCollector()


@pytest.mark.parametrize("watch", [None, "web", swarmdns.StaticBackend()], ids=repr)
def test_a_collector_takes_only_watches(watch: object) -> None:
    with pytest.raises(TypeError, match="WatchCollector takes watches"):
        WatchCollector(watch)  # type: ignore[arg-type]
