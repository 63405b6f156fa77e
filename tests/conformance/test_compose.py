"""Compose scenarios (issue #23), run unchanged on real Compose projects and on the fake.

On the lab's engines: a Compose project with Debian's Compose on 26.1 and 28.5,
and ``docker run --network-alias`` containers on 20.10 (compose.py); on the
fake, ``compose_fake.FakeComposeDriver`` as each engine. Every expectation
comes from the engine's own list of containers (``docker inspect``), never
from the fake's model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import Any

import pytest

from swarmdns.testing import ENGINES as FAKE_ENGINES

from . import upstream
from .compose import (
    COMPOSE_ENGINES,
    PLAIN_ENGINES,
    ComposeDriver,
    ComposeProject,
    Container,
    PlainContainers,
    check_output,
    listed_compose,
)
from .compose_fake import FakeComposeDriver
from .drivers import engine_available, listed_engines
from .test_scenarios import Follower

FAKES = [pytest.param(("fake", e), id=f"compose-fake-{e}") for e in FAKE_ENGINES]
REQUIRE_ENGINE = "SWARMDNS_REAL_SWARM"
# The IDs name the lab's engine: tests/conftest.py runs them in one worker
# with that engine's Swarm scenarios (they share its upstream resolver).
REAL = [pytest.param(("compose", v), id=f"compose-{v}") for v in COMPOSE_ENGINES] + [
    pytest.param(("plain", v), id=f"plain-{v}") for v in PLAIN_ENGINES
]
#: What ``swarmdns tasks --names --json`` and ``swarmdns self --json`` say of a container.
IDENTITY = ("ip", "name", "service", "slot", "node_id", "task_id", "network", "project")


def _real(kind: str, version: str) -> ComposeDriver:
    """The lab engine ``version``'s Compose project (or plain containers); skip if it is not up."""
    engine = next((e for e in listed_engines() if e.version == version), None)
    missing = f"no engine {version} is listed" if engine is None else engine_available(engine)
    binary = listed_compose().get(version)
    if missing is None and kind == "compose" and binary is None:
        missing = f"no Compose for {version} is listed (run .ci/compose-fetch)"
    if missing is not None:
        if os.environ.get(REQUIRE_ENGINE) == "1":
            pytest.fail(f"{REQUIRE_ENGINE}=1 but {missing}", pytrace=False)
        pytest.skip(f"real Compose tests skipped: {missing} (run .ci/swarm-setup as root)")
    assert engine is not None
    if kind == "compose":
        assert binary is not None
        return ComposeProject(engine, binary)
    return PlainContainers(engine)


@pytest.fixture(scope="module", params=[*FAKES, *REAL])
def session_compose(request: pytest.FixtureRequest) -> Iterator[ComposeDriver]:
    """The fake's Compose project as each engine, or a real one: made once for the module."""
    kind, version = request.param
    driver: ComposeDriver = FakeComposeDriver(version) if kind == "fake" else _real(kind, version)
    yield driver
    driver.stop()


@pytest.fixture
def compose(session_compose: ComposeDriver) -> Iterator[ComposeDriver]:
    """A project to run the scenario in; whatever the scenario scales up is removed after it."""
    try:
        yield session_compose
    finally:
        session_compose.cleanup()


def ok(response: dict[str, Any]) -> Any:
    assert "ok" in response, response
    return response["ok"]


def addresses(containers: list[Container]) -> list[str]:
    return sorted((str(c.address) for c in containers), key=IPv4Address)


def identity(driver: ComposeDriver, container: Container) -> dict[str, Any]:
    """What swarmdns should say of ``container``: what the engine says of it."""
    return {
        "ip": str(container.address),
        "name": container.name,
        "service": container.name.split("-")[-2],
        "slot": container.number,
        "node_id": None,
        "task_id": None,
        "network": driver.network,
        "project": driver.project,
    }


def test_compose_tasks_lists_every_container_with_its_number(compose: ComposeDriver) -> None:
    compose.up("web", 3)
    containers = compose.containers("web")
    assert [c.number for c in containers] == [1, 2, 3]

    for runtime in (["--runtime", "compose"], []):  # chosen, and detected
        done = compose.run_cli("tasks", "web", "--names", "--json", *runtime)
        listed = [{key: task[key] for key in IDENTITY} for task in json.loads(check_output(done))]

        assert sorted(listed, key=lambda t: t["slot"]) == [
            identity(compose, c) for c in containers
        ]


def test_compose_watch_follows_scaling_to_five_and_to_zero(compose: ComposeDriver) -> None:
    compose.up("web", 3)
    watch = compose.watch(service="web", interval=0.2, jitter=0.0)  # the runtime detected

    def now() -> list[str]:
        return addresses(compose.containers("web"))

    follow = Follower(watch)
    (initial,) = follow.until(now)
    assert (initial["added"], initial["removed"]) == (now(), [])

    compose.up("web", 5)
    events = follow.until(now)
    assert all(not e["removed"] for e in events), events
    assert len(now()) == 5

    victim = compose.containers("web")[-1]
    compose.kill(victim.name)
    events = follow.until(now)
    assert [e["removed"] for e in events if e["removed"]] == [[str(victim.address)]]

    compose.up("web", 0)
    events = follow.until(now)  # no containers: the engine forwards "web", NXDOMAIN
    assert events[-1]["current"] == []
    assert all(not e["added"] for e in events), events

    compose.up("web", 1)  # the NXDOMAIN did not end the watch
    events = follow.until(now)
    assert len(now()) == 1
    watch.close()


def test_compose_tasks_web_is_forwarded(compose: ComposeDriver) -> None:
    compose.up("web", 2)
    expected = addresses(compose.containers("web"))

    local, forwarded, as_swarm, as_compose, detected, vip = compose.call(
        {"op": "query", "args": ["web"]},
        {"op": "query", "args": ["tasks.web"]},
        {"op": "task_ips", "args": ["web"], "kwargs": {"runtime": "swarm"}},
        {"op": "task_ips", "args": ["web"], "kwargs": {"runtime": "compose"}},
        {"op": "task_ips", "args": ["web"]},
        {"op": "service_vip", "args": ["web"], "kwargs": {"runtime": "compose"}},
    )

    # "web" is the engine's own (TTL 600, no OPT record); tasks.web is not.
    assert sorted((r[3] for r in ok(local)["records"]), key=IPv4Address) == expected
    assert {r[1] for r in ok(local)["records"]} == {600}
    assert not ok(local)["opt"]
    assert (ok(forwarded)["rcode"], ok(forwarded)["records"]) == ("NXDOMAIN", [])
    assert ok(as_swarm) == []  # as a Swarm task would, it finds no task
    assert ok(as_compose) == expected
    assert ok(detected) == expected
    assert vip["error"] == "NoVirtualIP", vip

    # An upstream that answers every name: the forwarded tasks.web is its answer.
    with compose.upstream_hijacking():
        hijacked, as_swarm, detected = compose.call(
            {"op": "query", "args": ["tasks.web"]},
            {"op": "task_ips", "args": ["web"], "kwargs": {"runtime": "swarm"}},
            {"op": "task_ips", "args": ["web"]},
        )
    records = ok(hijacked)["records"]
    assert sorted(r[3] for r in records) == sorted(upstream.HIJACK_ADDRESSES)
    assert {r[1] for r in records} == {upstream.HIJACK_TTL}
    assert ok(hijacked)["opt"]  # the upstream's, for a query with EDNS
    assert ok(as_swarm) == []  # never the upstream's addresses
    assert ok(detected) == expected


def test_compose_self_in_a_container(compose: ComposeDriver) -> None:
    compose.up("web", 3)

    for container in compose.containers("web"):
        found = compose.self_in(container.name)

        assert {key: found[key] for key in (*IDENTITY, "runtime")} == {
            **identity(compose, container),
            "runtime": "compose",
        }
    (first, *_) = compose.containers("web")
    found = compose.self_in(first.name, "--network", compose.network, "--runtime", "compose")
    assert {key: found[key] for key in IDENTITY} == identity(compose, first)
