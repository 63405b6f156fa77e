"""Scenarios with an upstream that answers every unknown name (issue #22, point 5).

Resolvers that rewrite NXDOMAIN answer names no one owns with public
addresses, and the engine forwards to them every name it does not own:
``tasks.<svc>`` and ``<svc>`` of a service with no running task, or of one
that was removed, among them. What the engine relays is the upstream's answer
(its TTL, its OPT record when the query had EDNS); swarmdns must read it as
"no tasks", never as tasks. Each scenario runs twice: with the lab's upstream
as a host's resolver (NXDOMAIN, the control) and hijacking; the VIP's also
with a hijacker that gives one address, as a VIP would. The fake's
hijacking upstream (``Upstream.HIJACK``) gives its two addresses only, so on
the fake the one-address hijacker is skipped.
"""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address
from typing import Any

import pytest

from .drivers import NETWORKS, Driver, wait_until
from .test_scenarios import call, engine_ips, ok
from .upstream import HIJACK_ADDRESSES, HIJACK_TTL

NXDOMAIN: tuple[str, ...] = ()
UPSTREAMS = [
    pytest.param(NXDOMAIN, id="upstream-nxdomain"),
    pytest.param(HIJACK_ADDRESSES, id="upstream-hijack"),
]
ONE_ADDRESS = pytest.param(HIJACK_ADDRESSES[:1], id="upstream-hijack-one")


@pytest.fixture(params=UPSTREAMS)
def hijack(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """The addresses the scenario's upstream answers unknown names with (none: NXDOMAIN)."""
    addresses: tuple[str, ...] = request.param
    return addresses


def switched(driver: Driver, hijack: tuple[str, ...]) -> contextlib.AbstractContextManager[None]:
    return driver.upstream_hijacking(hijack) if hijack else contextlib.nullcontext()


def check_forwarded(driver: Driver, hijack: tuple[str, ...], name: str) -> None:
    """``name`` is forwarded, and the upstream answered it as switched: the scenario is real."""
    answer = ok(call(driver, "query", name))
    if hijack:
        assert answer["rcode"] == "NOERROR", answer
        assert {r[3] for r in answer["records"]} == set(hijack), answer
    else:
        assert answer["rcode"] == "NXDOMAIN", answer


def mentions_upstream(response: dict[str, Any]) -> bool:
    """Whether any public address of the upstream's appears in a response."""
    return any(address in str(response) for address in HIJACK_ADDRESSES)


def test_what_the_engine_relays_from_a_hijacking_upstream(driver: Driver) -> None:
    """The upstream's answer as is: its TTL, its OPT only when the query had EDNS, RD echoed.

    Seen the same on 20.10, 26.1 and 28.5. The engine's own answers stay as
    ever (TTL 600, no OPT even to an EDNS query, a task's address).
    """
    driver.create_service("hjlocal", 1)
    driver.create_service("hjnone", 0)
    (task,) = driver.tasks("hjlocal")

    with driver.upstream_hijacking():
        edns, plain, tcp, local = driver.call(
            {"op": "query", "args": ["tasks.hjnone"], "kwargs": {"edns": True}},
            {"op": "query", "args": ["tasks.hjnone"], "kwargs": {"edns": False}},
            {"op": "query", "args": ["tasks.hjnone"], "kwargs": {"tcp": True}},
            {"op": "query", "args": ["tasks.hjlocal"], "kwargs": {"edns": True}},
        )

    for answer in (ok(edns), ok(plain), ok(tcp)):
        assert (answer["rcode"], answer["flags"]) == ("NOERROR", ["qr", "ra", "rd"])
        assert sorted(r[1:] for r in answer["records"]) == [
            [HIJACK_TTL, "A", address] for address in sorted(HIJACK_ADDRESSES)
        ]
    assert (ok(edns)["opt"], ok(plain)["opt"], ok(tcp)["opt"]) == (True, False, True)
    assert ok(local)["records"] == [["tasks.hjlocal.", 600, "A", str(task.addresses[NETWORKS[0]])]]
    assert not ok(local)["opt"]


def test_task_ips_of_a_service_without_tasks(driver: Driver, hijack: tuple[str, ...]) -> None:
    driver.create_service("hjzero", 0)

    with switched(driver, hijack):
        check_forwarded(driver, hijack, "tasks.hjzero")
        ips, tasks, vip = driver.call(
            {"op": "task_ips", "args": ["hjzero"]},
            {"op": "tasks", "args": ["hjzero"]},
            {"op": "service_vip", "args": ["hjzero"]},
        )

    assert ok(ips) == []
    assert ok(tasks) == []
    assert vip.get("error") == "ServiceNotFound", vip


@pytest.mark.parametrize("hijack", [*UPSTREAMS, ONE_ADDRESS], indirect=True)
def test_the_vip_of_a_removed_service(driver: Driver, hijack: tuple[str, ...]) -> None:
    driver.create_service("hjgone", 1)
    driver.remove("hjgone")
    wait_until(
        lambda: ok(call(driver, "query", "hjgone"))["rcode"] == "NXDOMAIN",
        "the names of a removed service to go",
    )

    with switched(driver, hijack):
        check_forwarded(driver, hijack, "hjgone")
        vip, ips, command = driver.call(
            {"op": "service_vip", "args": ["hjgone"]},
            {"op": "task_ips", "args": ["hjgone"]},
            {"op": "cli", "args": ["vip", "hjgone"]},
        )

    assert vip.get("error") == "ServiceNotFound", vip
    assert ok(ips) == []
    result = ok(command)
    assert (result["code"], result["stdout"]) == (1, ""), result
    # ServiceNotFound's line, not NoVirtualIP's (which exits 1 too).
    assert result["stderr"].startswith("swarmdns: no service 'hjgone'"), result
    assert not mentions_upstream(command)


def test_the_tasks_command_under_min(driver: Driver, hijack: tuple[str, ...]) -> None:
    """``--min 0`` accepts none and prints nothing; any other minimum fails, printing nothing."""
    driver.create_service("hjmin", 0)

    with switched(driver, hijack):
        check_forwarded(driver, hijack, "tasks.hjmin")
        responses = driver.call(
            {"op": "cli", "args": ["tasks", "hjmin", "--min", "0"]},
            {"op": "cli", "args": ["tasks", "hjmin", "--min", "0", "--json"]},
            {"op": "cli", "args": ["tasks", "hjmin", "--min", "0", "--names"]},
            {"op": "cli", "args": ["tasks", "hjmin"]},
            {"op": "cli", "args": ["tasks", "hjmin", "--min", "2"]},
        )

    none, as_json, names, default, two = (ok(r) for r in responses)
    assert (none["code"], none["stdout"]) == (0, ""), none
    assert (names["code"], names["stdout"]) == (0, ""), names
    assert (as_json["code"], as_json["stdout"].strip()) == (0, "[]"), as_json
    assert (default["code"], default["stdout"]) == (1, ""), default
    assert (two["code"], two["stdout"]) == (1, ""), two
    assert not any(mentions_upstream(r) for r in responses), responses


def test_watching_a_scale_to_zero(driver: Driver, hijack: tuple[str, ...]) -> None:
    """Every set the watch reports is the tasks' addresses, down to none."""
    driver.create_service("hjwatch", 2)
    addresses = engine_ips(driver, "hjwatch")

    with switched(driver, hijack):
        watch = driver.watch(service="hjwatch", interval=0.2, jitter=0.0)
        events: list[dict[str, Any]] = []
        while not events or events[-1]["current"] != addresses:
            events.append(watch.next_event())
            assert set(events[-1]["current"]) <= set(addresses), events
        driver.scale("hjwatch", 0)
        check_forwarded(driver, hijack, "tasks.hjwatch")
        events = []
        while not events or events[-1]["current"]:
            events.append(watch.next_event())
            assert set(events[-1]["current"]) <= set(addresses), events
        watch.close()

    removed = {IPv4Address(ip) for event in events for ip in event["removed"]}
    assert removed == {IPv4Address(ip) for ip in addresses}
    assert not any(event["added"] for event in events), events
