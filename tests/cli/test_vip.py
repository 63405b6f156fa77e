"""``swarmdns vip``, run as a subprocess against the fake."""

from __future__ import annotations

import json

from swarmdns.testing import FakeSwarm, Fault

from .helpers import (
    assert_one_line_error,
    run,
)


def test_vip(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=2)

    plain, as_json = run("vip", "web"), run("vip", "web", "--json")

    assert (plain.returncode, plain.stdout) == (0, f"{web.vip}\n")
    assert json.loads(as_json.stdout) == str(web.vip)


def test_vip_of_a_dnsrr_service_exits_1(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("db", replicas=2, endpoint_mode="dnsrr")

    assert_one_line_error(run("vip", "db"), 1, "no virtual IP")


def test_unknown_service_exits_1(swarm_dns: FakeSwarm) -> None:
    assert_one_line_error(run("vip", "ghost"), 1, "no service 'ghost'")


def test_timeout_exits_3(swarm_dns: FakeSwarm) -> None:
    swarm_dns.inject(Fault.NO_REPLY)

    assert_one_line_error(run("vip", "web", "--timeout", "0.2"), 3, "no answer")
