"""FakeSwarm's own checks on what it is asked to do."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network
from typing import get_args

import pytest

import swarmdns
from swarmdns.testing import (
    EndpointMode,
    FakeSwarm,
    FakeTask,
    NodeDelays,
    ServiceMode,
    SwarmError,
    Task,
)

from .dns_clients import ask_dnspython


def test_aliases_must_be_a_list(swarm_dns: FakeSwarm) -> None:
    with pytest.raises(TypeError, match=r"not one string: \['www'\]"):
        swarm_dns.create_service("web", aliases="www")


def test_client_networks_must_exist(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", network="front")

    with pytest.raises(SwarmError, match=r"no network named 'fornt' \(networks: front\)"):
        swarm_dns.client_networks = ["fornt"]
    with pytest.raises(TypeError, match="not one string"):
        swarm_dns.client_networks = "front"
    assert swarm_dns.client_networks is None


@pytest.mark.parametrize("mode", get_args(ServiceMode))
def test_every_service_mode_is_taken(swarm_dns: FakeSwarm, mode: ServiceMode) -> None:
    web = swarm_dns.create_service("web", replicas=2, mode=mode)

    assert web.mode == mode
    assert web.replicas == (2 if mode == "replicated" else None)


@pytest.mark.parametrize("mode", ["daemon", "Global", "", None, 1])
def test_mode_is_checked(swarm_dns: FakeSwarm, mode: object) -> None:
    expected = f"^mode must be 'replicated' or 'global', not {re.escape(repr(mode))}$"
    with pytest.raises(SwarmError, match=expected):
        swarm_dns.create_service("web", mode=mode)  # type: ignore[arg-type]
    assert swarm_dns.services == ()


@pytest.mark.parametrize("endpoint_mode", get_args(EndpointMode))
def test_every_endpoint_mode_is_taken(swarm_dns: FakeSwarm, endpoint_mode: EndpointMode) -> None:
    web = swarm_dns.create_service("web", endpoint_mode=endpoint_mode)

    assert web.endpoint_mode == endpoint_mode
    assert (web.vip is None) == (endpoint_mode == "dnsrr")


@pytest.mark.parametrize("endpoint_mode", ["round-robin", "VIP", "", None, 0])
def test_endpoint_mode_is_checked(swarm_dns: FakeSwarm, endpoint_mode: object) -> None:
    shown = re.escape(repr(endpoint_mode))
    with pytest.raises(SwarmError, match=f"^endpoint mode must be 'vip' or 'dnsrr', not {shown}$"):
        swarm_dns.create_service("web", endpoint_mode=endpoint_mode)  # type: ignore[arg-type]
    assert swarm_dns.services == ()


@pytest.mark.parametrize("port", [-1, 65536, "53", True])
def test_port_is_checked(port: object) -> None:
    with pytest.raises(ValueError, match="port must be a whole number"):
        FakeSwarm(port=port).start()  # type: ignore[arg-type]


@pytest.mark.parametrize("host", ["256.1.1.1", "example.invalid", "", "127.0.0.1:53", 5])
def test_a_host_that_is_not_an_address_is_named_as_such(host: object) -> None:
    with pytest.raises(ValueError, match="host must be an IP address") as refused:
        FakeSwarm(host=host)  # type: ignore[arg-type]
    assert f"{host!r} is not an IP address" in str(refused.value)
    assert "port" not in str(refused.value)


def test_an_address_of_another_machine_is_named_as_such() -> None:
    fake = FakeSwarm(host="192.0.2.1")  # TEST-NET-1: on no interface of this machine

    with pytest.raises(OSError, match=r"cannot listen on 192\.0\.2\.1: .*an address of this"):
        fake.start()
    assert not fake.running


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1"])
def test_loopback_hosts_are_taken(host: str) -> None:
    with FakeSwarm(host=host) as fake:
        fake.create_service("web")
        assert fake.host == host
        assert ask_dnspython(fake, "web").rcode == "NOERROR"


@pytest.mark.parametrize("size", [-1, True, 1.5, "100"])
def test_query_log_is_checked(size: object) -> None:
    with pytest.raises(ValueError, match="query_log is how many queries to keep"):
        FakeSwarm(query_log=size)  # type: ignore[arg-type]


def test_upstream_is_checked() -> None:
    with pytest.raises(TypeError, match="Upstream member"):
        FakeSwarm(upstream="nxdomain")  # type: ignore[arg-type]


def test_a_batch_shows_its_changes_together_at_its_end(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=1)

    with swarm_dns.batch():
        swarm_dns.scale("web", 3)
        swarm_dns.create_service("db", replicas=2)
        during = (
            ask_dnspython(swarm_dns, "tasks.web").values,
            ask_dnspython(swarm_dns, "db").rcode,
        )

    assert (len(during[0]), during[1]) == (1, "NXDOMAIN")
    assert len(ask_dnspython(swarm_dns, "tasks.web").values) == 3
    assert len(ask_dnspython(swarm_dns, "tasks.db").values) == 2


# -- tasks: the fake's, and what DNS tells ------------------------------------------


def test_the_fake_task_is_also_named_fake_task() -> None:
    assert FakeTask is Task


@pytest.mark.parametrize("form", ["IPv4Address", "str", "swarmdns.Task", "other network"])
def test_kill_task_takes_an_address_or_what_dns_told(swarm_dns: FakeSwarm, form: str) -> None:
    web = swarm_dns.create_service("web", replicas=3, network=["front", "back"])
    victim = web.tasks[1]
    key: object = {
        "IPv4Address": victim.ip,
        "str": str(victim.ip),
        # DNS answers from the "back" network, by name the first
        "swarmdns.Task": next(t for t in swarmdns.tasks("web") if t.task_id == victim.id),
        "other network": str(victim.addresses["back"]),
    }[form]

    after = swarm_dns.kill_task(key)  # type: ignore[arg-type]

    assert victim not in after.tasks
    assert len(after.tasks) == 2
    assert victim.ip not in swarmdns.task_ips("web", network="front")


def test_every_task_operation_takes_an_address(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=2, healthcheck=True)
    first, second = (str(task.ip) for task in web.tasks)

    assert swarm_dns.mark_healthy(first).visible
    assert not swarm_dns.mark_unhealthy(IPv4Address(first)).visible
    replacement = swarm_dns.replace_task(second)
    assert swarm_dns.task(replacement.ip) == replacement


def test_killing_an_address_no_task_has_says_why(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    seen = swarmdns.tasks("web")
    swarm_dns.kill_task(seen[0])

    with pytest.raises(SwarmError, match=r"no task has address 10\.0\.1\.3 \(swarmdns\.Task web"):
        swarm_dns.kill_task(seen[0])  # killed already
    with pytest.raises(
        SwarmError, match=r"no task has address 10\.0\.9\.9: .* killed or replaced"
    ):
        swarm_dns.kill_task("10.0.9.9")
    with pytest.raises(SwarmError, match=r"10\.0\.1\.2 is the virtual IP of service 'web'"):
        swarm_dns.kill_task(web.vip)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"a swarmdns\.Task, its address"):
        swarm_dns.kill_task(3)  # type: ignore[arg-type]


@pytest.mark.swarm_dns(nodes=2, delays=NodeDelays.INSTANT)
def test_a_fake_task_and_what_dns_tells_of_it_go_both_ways(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=3, network=["front", "back"], stack="shop")
    swarm_dns.create_service("agent", mode="global")

    for service, network in (("shop_web", "front"), ("shop_web", "back"), ("agent", None)):
        fake_tasks = swarm_dns.service(service).tasks
        seen = swarmdns.tasks(service, network=network)

        assert seen == tuple(sorted((t.as_dns(network) for t in fake_tasks), key=lambda t: t.ip))
        assert tuple(swarm_dns.task(t) for t in seen) == tuple(
            sorted(fake_tasks, key=lambda t: t.addresses[network or "default"])
        )
    agent = swarmdns.tasks("agent")[1]
    assert agent.node_id is not None
    assert swarm_dns.node(agent).id == agent.node_id


def test_a_fake_task_has_no_dns_view_on_a_network_it_is_not_on(swarm_dns: FakeSwarm) -> None:
    (task,) = swarm_dns.create_service("web").tasks

    with pytest.raises(SwarmError, match=r"no address on network 'back' \(its networks: default"):
        task.as_dns("back")


def test_engine_networks_cover_every_address_handed_out(swarm_dns: FakeSwarm) -> None:
    pool = IPv4Network("10.0.0.0/8")
    assert list(swarm_dns.engine_networks) == [pool]
    swarm_dns.create_network("wide", subnet="10.9.0.0/21")  # inside the pool
    swarm_dns.create_network("lab", subnet="192.168.50.0/24")
    swarm_dns.create_network("loop", subnet="127.77.0.0/24")
    web = swarm_dns.create_service("web", replicas=3, network=["default", "wide", "lab"])
    db = swarm_dns.create_service("db", replicas=2, network="loop")

    assert swarm_dns.engine_networks == (
        pool,
        IPv4Network("192.168.50.0/24"),
        IPv4Network("127.77.0.0/24"),
    )
    handed_out = [
        *web.vips.values(),
        *db.vips.values(),
        *(ip for s in (web, db) for t in s.tasks for ip in t.addresses.values()),
    ]
    assert len(handed_out) == 3 + 1 + 3 * 3 + 2
    assert all(any(ip in n for n in swarm_dns.engine_networks) for ip in handed_out)
    swarm_dns.remove_service("db")
    swarm_dns.remove_network("loop")
    assert list(swarm_dns.engine_networks) == [pool, IPv4Network("192.168.50.0/24")]
    with pytest.raises(AttributeError):
        swarm_dns.engine_networks = ()  # type: ignore[misc]
