"""Scenarios that run unchanged on the fake and on real single-node Swarms.

Every expectation comes from the Swarm itself (the driver's list of tasks and
their addresses), never from the fake's model, so a scenario that passes on
both shows swarmdns right on the engine and the fake faithful to it.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from swarmdns._backends.nameserver import Nameserver, nameservers_from_resolv_conf

from .drivers import NETWORKS, Driver, Watch, since, wait_until


def ok(response: dict[str, Any]) -> Any:
    assert "ok" in response, response
    return response["ok"]


def call(driver: Driver, op: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    (response,) = driver.call({"op": op, "args": list(args), "kwargs": kwargs})
    return response


def engine_ips(driver: Driver, service: str, network: str = NETWORKS[0]) -> list[str]:
    return sorted((str(t.addresses[network]) for t in driver.tasks(service)), key=IPv4Address)


def test_vip(driver: Driver) -> None:
    driver.create_service("vip", 3)

    assert ok(call(driver, "service_vip", "vip")) == str(driver.vip("vip"))
    assert ok(call(driver, "task_ips", "vip")) == engine_ips(driver, "vip")
    answer = ok(call(driver, "query", "vip"))
    assert [r[3] for r in answer["records"]] == [str(driver.vip("vip"))]


def test_dnsrr(driver: Driver) -> None:
    driver.create_service("rr", 3, endpoint_mode="dnsrr")

    response = call(driver, "service_vip", "rr")

    assert response["error"] == "NoVirtualIP"
    assert response["addresses"] == engine_ips(driver, "rr")
    assert ok(call(driver, "task_ips", "rr")) == engine_ips(driver, "rr")


def test_dnsrr_with_a_single_task(driver: Driver) -> None:
    driver.create_service("rr1", 1, endpoint_mode="dnsrr")

    assert call(driver, "service_vip", "rr1")["error"] == "NoVirtualIP"


def test_tasks_and_network_scoped_names_on_two_networks(driver: Driver) -> None:
    driver.create_service("two", 2, networks=NETWORKS)
    first, second = NETWORKS

    responses = driver.call(
        {"op": "task_ips", "args": ["two"]},
        {"op": "task_ips", "args": ["two"], "kwargs": {"network": first}},
        {"op": "task_ips", "args": ["two"], "kwargs": {"network": second}},
        {"op": "service_vip", "args": ["two"], "kwargs": {"network": second}},
    )

    assert ok(responses[0]) == engine_ips(driver, "two", first)  # the first network by name
    assert ok(responses[1]) == engine_ips(driver, "two", first)
    assert ok(responses[2]) == engine_ips(driver, "two", second)
    assert ok(responses[3]) == str(driver.vip("two", second))


def test_stack_long_and_short_names(driver: Driver) -> None:
    driver.deploy_stack("shop", {"front": 2})
    expected = engine_ips(driver, "shop_front")

    responses = driver.call(
        {"op": "task_ips", "args": ["shop_front"]},
        {"op": "task_ips", "args": ["front"]},
        {"op": "service_vip", "args": ["front"]},
    )

    assert ok(responses[0]) == expected
    assert ok(responses[1]) == expected
    assert ok(responses[2]) == str(driver.vip("shop_front"))


def test_scaled_to_zero(driver: Driver) -> None:
    driver.create_service("zero", 2)
    driver.scale("zero", 0)

    responses = driver.call(
        {"op": "task_ips", "args": ["zero"]},
        {"op": "service_vip", "args": ["zero"]},
        {"op": "query", "args": ["tasks.zero"]},
        {"op": "query", "args": ["zero"]},
        {"op": "query", "args": ["no-such-service"]},
    )

    assert ok(responses[0]) == []
    assert responses[1]["error"] == "ServiceNotFound"
    assert [ok(r)["rcode"] for r in responses[2:]] == ["NXDOMAIN"] * 3


def test_more_tasks_than_fit_in_512_bytes(driver: Driver) -> None:
    driver.create_service("many", 45)
    expected = engine_ips(driver, "many")

    ips, plain = driver.call(
        {"op": "task_ips", "args": ["many"]},
        {"op": "query", "args": ["tasks.many"], "kwargs": {"edns": False}},
    )

    assert ok(ips) == expected
    assert len(expected) == 45
    answer = ok(plain)
    assert "tc" in answer["flags"]
    # As many whole records as fit after the header and the question. 20.10
    # writes each record's name out in full; 24 and newer compress it to a
    # pointer to the question before dropping records.
    name = len("tasks.many") + 2  # in wire form
    owner = 2 if since(driver, "24.0") else name
    assert len(answer["records"]) == (512 - 12 - (name + 4)) // (owner + 14)


def test_an_unreachable_upstream(driver: Driver) -> None:
    """Names the engine does not own, while its upstream nameserver cannot be reached.

    A service with no task is such a name. 20.10 sends no reply at all; 24 and
    newer answer SERVFAIL without RA, which swarmdns reads from 127.0.0.11 as
    the engine saying that the name is not one of its own. Names it owns are
    answered as ever, with RA.
    """
    driver.create_service("kept", 2)
    driver.create_service("gone", 1)
    kept = engine_ips(driver, "kept")
    driver.scale("gone", 0)
    wait_until(
        lambda: ok(driver.call({"op": "task_ips", "args": ["gone"]})[0]) == [],
        "the names of a service scaled to zero to go",
    )

    with driver.upstream_unreachable():
        own, raw, ips, vip = driver.call(
            {"op": "query", "args": ["tasks.kept"]},
            {"op": "query", "args": ["tasks.gone"]},
            {"op": "task_ips", "args": ["gone"], "kwargs": {"timeout": 1.0}},
            {"op": "service_vip", "args": ["gone"], "kwargs": {"timeout": 1.0}},
        )

    assert sorted((r[3] for r in ok(own)["records"]), key=IPv4Address) == kept
    assert "ra" in ok(own)["flags"]
    if since(driver, "24.0"):
        assert (ok(raw)["rcode"], "ra" in ok(raw)["flags"]) == ("SERVFAIL", False)
        assert ok(ips) == []
        assert vip["error"] == "ServiceNotFound"
    else:
        assert ok(raw) == {"rcode": "no reply"}
        assert (ips["error"], vip["error"]) == ("ResolutionTimeout", "ResolutionTimeout")


def test_an_upstream_that_drops_queries(driver: Driver) -> None:
    """20.10 sends no reply; 24 and newer answer SERVFAIL without RA after 4 s."""
    driver.create_service("silent", 1)
    driver.scale("silent", 0)
    wait_until(
        lambda: ok(driver.call({"op": "task_ips", "args": ["silent"]})[0]) == [],
        "the names of a service scaled to zero to go",
    )
    newer = since(driver, "24.0")
    timeout = 6.0 if newer else 1.0  # past the engine's 4 s, or not worth waiting

    with driver.upstream_silent():
        raw, ips = driver.call(
            {"op": "query", "args": ["tasks.silent"], "kwargs": {"timeout": timeout}},
            {"op": "task_ips", "args": ["silent"], "kwargs": {"timeout": timeout}},
        )

    if newer:
        assert (ok(raw)["rcode"], "ra" in ok(raw)["flags"]) == ("SERVFAIL", False)
        assert ok(ips) == []
    else:
        assert ok(raw) == {"rcode": "no reply"}
        assert ips["error"] == "ResolutionTimeout"


#: Bursts sent at most, until one arrives nearly whole (see below).
BURST_ATTEMPTS = 3


def test_more_forwards_than_the_engine_holds(driver: Driver) -> None:
    """24 and newer hold 1,024 forwards in flight, and refuse a query that waits 4 s for one.

    With an upstream that drops every query, each forward holds its slot for
    the engine's 4 s upstream timeout. Of a burst sent within 1 s, the first
    1,024 take the slots, the next 1,024 take them over as they free (each
    within the 4 s it may wait), and the rest find none in time: REFUSED,
    without RA, 4 s after they were asked. 20.10 drops a query it has no
    slot for, and every failed forward too: no reply at all.
    """
    newer = since(driver, "24.0")
    count = 2300
    with driver.upstream_silent():
        for _attempt in range(BURST_ATTEMPTS):
            (response,) = driver.call(
                {"op": "burst", "args": [count], "kwargs": {"wait": 10.0 if newer else 2.0}}
            )
            result = ok(response)
            # A burst of which more than a tenth was lost on its way in (the
            # engine's socket, on a machine busy with the rest of the suite:
            # 576 of 2,300 once in CI), or whose sending took so long that the
            # first slots freed meanwhile (the probe, on such a machine: all
            # 2,300 served once in CI), may not reach the slots' limit at all,
            # and tells nothing; the next starts once its forwards have timed out.
            if not newer or (result["no reply"] <= count // 10 and result["sent_in"] < 2.0):
                break
    if newer:
        # A datagram lost on its way in gets no reply and takes no slot: every
        # other query past the first 2,048 is refused. Losses come from the
        # receiving socket's buffer when its reader falls behind the burst (the
        # fake, a Python server; or an engine on a machine busy with the rest of
        # the suite: 73 of 2,300 in CI), so they are bounded loosely, and the
        # refusals must outnumber them: an engine that dropped instead (20.10)
        # would refuse none.
        counts, lost = result["counts"], result["no reply"]
        served, refused = counts.get("SERVFAIL -ra", 0), counts.get("REFUSED -ra", 0)
        assert counts.keys() <= {"REFUSED -ra", "SERVFAIL -ra"}, counts
        assert served + refused + lost == count, result
        if driver.kind == "fake":
            assert served == 2 * 1024, result
        else:
            # A real engine on a machine busy with the rest of the suite can
            # stretch the burst past the first slots' 4 s: some of the second
            # 1,024 then wait too long and are refused (1,918 served, 382
            # refused in CI). Never more than the slots, taken twice over.
            assert 1024 <= served <= 2 * 1024, result
        assert refused + lost >= count - 2 * 1024, result
        assert lost <= count // 10, result
        assert refused > lost, result
        assert 3.5 < result["delays"]["REFUSED -ra"] < 5.0
    else:
        assert (result["counts"], result["no reply"]) == ({}, count)


def test_ptr_outside_the_reverse_zones(driver: Driver) -> None:
    """24 and newer forward a PTR query for any other name; 20.10's handler fails, unanswered."""
    (response,) = driver.call(
        {"op": "query", "args": ["web.example", "PTR"], "kwargs": {"timeout": 2.0}}
    )

    answer = ok(response)
    if since(driver, "24.0"):
        # What the upstream (an empty fake, like a host's resolver) says, relayed.
        assert (answer["rcode"], "ra" in answer["flags"]) == ("NXDOMAIN", True)
    else:
        assert answer == {"rcode": "no reply"}


def test_a_tasks_resolv_conf(driver: Driver) -> None:
    """127.0.0.11 and ndots:0 on every engine; 26.1 and newer add a comment block."""
    text = driver.resolv_conf()
    lines = text.splitlines()

    assert nameservers_from_resolv_conf(text) == (Nameserver("127.0.0.11"),)
    assert "options ndots:0" in lines
    commented = any(line.startswith("# Generated by Docker Engine") for line in lines)
    assert commented == since(driver, "26.1")
    assert any(line.startswith("# ExtServers: [") for line in lines) == commented


def test_edns_and_tcp_carry_everything(driver: Driver) -> None:
    driver.create_service("many2", 45)
    expected = engine_ips(driver, "many2")

    edns, tcp = driver.call(
        {"op": "query", "args": ["tasks.many2"], "kwargs": {"edns": True}},
        {"op": "query", "args": ["tasks.many2"], "kwargs": {"edns": False, "tcp": True}},
    )

    for answer in (ok(edns), ok(tcp)):
        assert "tc" not in answer["flags"]
        assert sorted((r[3] for r in answer["records"]), key=IPv4Address) == expected
        assert not answer["opt"]


def test_records_flags_ttl_and_aaaa(driver: Driver) -> None:
    driver.create_service("flags", 2)

    a, aaaa, mx = driver.call(
        {"op": "query", "args": ["tasks.flags"]},
        {"op": "query", "args": ["tasks.flags", "AAAA"]},
        {"op": "query", "args": ["flags", "MX"]},
    )

    assert ok(a)["flags"] == ["qr", "ra", "rd"]
    assert {r[1] for r in ok(a)["records"]} == {600}
    assert (ok(aaaa)["rcode"], ok(aaaa)["records"]) == ("NOERROR", [])
    assert (ok(mx)["rcode"], ok(mx)["records"]) == ("NOERROR", [])


def test_ptr_task_identity(driver: Driver) -> None:
    driver.create_service("ptr", 3)
    driver.create_service("agent", mode="global")

    web, agent = driver.call({"op": "tasks", "args": ["ptr"]}, {"op": "tasks", "args": ["agent"]})

    expected = sorted((str(t.addresses[NETWORKS[0]]), t.slot, t.id) for t in driver.tasks("ptr"))
    assert sorted((t["ip"], t["slot"], t["task_id"]) for t in ok(web)) == expected
    assert {t["network"] for t in ok(web)} == {NETWORKS[0]}
    (global_task,) = ok(agent)
    (engine_task,) = driver.tasks("agent")
    assert (global_task["slot"], global_task["node_id"], global_task["task_id"]) == (
        None,
        engine_task.node_id,
        engine_task.id,
    )


def test_case(driver: Driver) -> None:
    driver.create_service("case", 2)

    ips, raw, suffix = driver.call(
        {"op": "task_ips", "args": ["CASE"]},
        {"op": "query", "args": ["TASKS.Case"]},
        {"op": "query", "args": [f"tasks.case.{NETWORKS[0].upper()}"]},
    )

    assert ok(ips) == engine_ips(driver, "case")
    assert {r[0] for r in ok(raw)["records"]} == {"TASKS.Case."}
    # The network suffix is compared as spelled: not a Swarm name, so forwarded.
    assert ok(suffix)["rcode"] == "NXDOMAIN"


def test_healthcheck_gates_dns(driver: Driver) -> None:
    driver.create_service("health", 2, healthcheck=True)
    first, _ = driver.tasks("health", starting=True)

    assert ok(call(driver, "task_ips", "health")) == []
    driver.make_healthy(first)
    wait_until(
        lambda: ok(call(driver, "task_ips", "health")) == [str(first.addresses[NETWORKS[0]])],
        "the healthy task appearing in DNS",
    )


# -- watching --------------------------------------------------------------------------


class Follower:
    """Reads a watch's events, checking that each follows from the one before."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.current: set[str] = set()

    def until(self, expected: Callable[[], list[str]]) -> list[dict[str, Any]]:
        """Events until the watch's set is the engine's."""
        events: list[dict[str, Any]] = []
        while True:
            event = self.watch.next_event()
            added, removed = set(event["added"]), set(event["removed"])
            assert not added & removed
            assert set(event["current"]) == (self.current | added) - removed
            self.current = set(event["current"])
            events.append(event)
            if event["current"] == expected():
                return events


def test_watching_scale_kill_and_rolling_update(driver: Driver) -> None:
    driver.create_service("watched", 2)
    watch = driver.watch(service="watched", interval=0.2, jitter=0.0)

    def now() -> list[str]:
        return engine_ips(driver, "watched")

    follow = Follower(watch)
    (initial,) = follow.until(now)
    assert (initial["added"], initial["removed"], initial["current"]) == (now(), [], now())

    driver.scale("watched", 4)
    events = follow.until(now)
    assert all(not e["removed"] for e in events), "\n".join(map(str, [initial, *events]))

    driver.scale("watched", 3)
    events = follow.until(now)
    assert all(not e["added"] for e in events)

    victim = driver.kill_task("watched")
    gone = str(victim.addresses[NETWORKS[0]])
    events = follow.until(now)
    assert gone in events[-1]["removed"] or any(gone in e["removed"] for e in events)
    driver.converge("watched", 3)
    events = follow.until(now)
    replacement = {str(t.addresses[NETWORKS[0]]) for t in driver.tasks("watched")} - {
        ip for e in events for ip in e["removed"]
    }
    assert any(set(e["added"]) & replacement for e in events)

    before = set(now())
    driver.rolling_update("watched")
    events = follow.until(now)
    assert before <= {ip for e in events for ip in e["removed"]}
    assert set(now()) <= {ip for e in events for ip in e["added"]}
    watch.close()


def test_watching_several_services_through_one_socket(driver: Driver) -> None:
    driver.create_service("fleet-a", 2)
    driver.create_service("fleet-b", 1)
    names = ["fleet-a", "fleet-b", "fleet-none"]
    watch = driver.watch(services=names, interval=0.2, jitter=0.0)

    initial: dict[str, list[str]] = {}
    while len(initial) < len(names):
        event = watch.next_event()
        assert event["service"] not in initial, event  # one initial set each
        initial[event["service"]] = event["current"]
    assert initial == {
        "fleet-a": engine_ips(driver, "fleet-a"),
        "fleet-b": engine_ips(driver, "fleet-b"),
        "fleet-none": [],  # the engine's NXDOMAIN: no tasks
    }

    driver.scale("fleet-b", 3)
    current = initial["fleet-b"]
    while current != engine_ips(driver, "fleet-b"):
        event = watch.next_event()
        assert event["service"] == "fleet-b", event  # nothing else changed
        assert not event["removed"], event
        current = event["current"]
    watch.close()
