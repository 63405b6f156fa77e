"""``swarmdns tasks``, run as a subprocess against the fake."""

from __future__ import annotations

import json

import pytest

from swarmdns.testing import FakeSwarm, Fault

from .helpers import (
    assert_one_line_error,
    run,
)


def test_tasks(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=3, network="proxy")

    plain = run("tasks", "web")
    as_json = run("tasks", "web", "--json")
    names = run("tasks", "web", "--names")
    names_json = run("tasks", "web", "--names", "--json")

    assert plain.stdout.split() == [str(ip) for ip in web.task_ips]
    assert json.loads(as_json.stdout) == [str(ip) for ip in web.task_ips]
    assert [line.split("\t") for line in names.stdout.splitlines()] == [
        [str(t.ip), t.name, str(t.slot), "proxy"] for t in web.tasks
    ]
    assert [(t["ip"], t["task_id"], t["slot"]) for t in json.loads(names_json.stdout)] == [
        (str(t.ip), t.id, t.slot) for t in web.tasks
    ]


@pytest.mark.parametrize("options", [(), ("--json",), ("--names",), ("--names", "--json")])
@pytest.mark.parametrize("service", ["web", "ghost"])
def test_tasks_of_a_service_without_tasks_exits_1_and_prints_nothing(
    swarm_dns: FakeSwarm, options: tuple[str, ...], service: str
) -> None:
    swarm_dns.create_service("web", replicas=0)

    result = run("tasks", service, *options)

    assert_one_line_error(result, 1, f"no task of {service!r}")
    assert f"tasks.{service} is NXDOMAIN" in result.stderr
    assert "scaled to 0" in result.stderr
    assert "--min 0" in result.stderr
    assert result.stdout == ""


def test_tasks_min_0_accepts_none(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=0)

    plain = run("tasks", "web", "--min", "0")
    as_json = run("tasks", "web", "--min", "0", "--json")

    assert (plain.returncode, plain.stdout, plain.stderr) == (0, "", "")
    assert (as_json.returncode, json.loads(as_json.stdout)) == (0, [])


def test_tasks_min_n_wants_that_many(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    first, second = web.task_ips

    too_few = run("tasks", "web", "--min", "3")
    too_few_names = run("tasks", "web", "--min", "3", "--names", "--json")
    enough = run("tasks", "web", "--min", "2")

    for result in too_few, too_few_names:
        assert_one_line_error(result, 1, "wanted at least 3 tasks of 'web', found 2")
        assert f"{first}, {second}" in result.stderr
        assert result.stdout == ""
    assert (enough.returncode, enough.stdout.split()) == (0, [str(first), str(second)])


def test_tasks_min_of_an_unknown_service_says_how_many_were_wanted(swarm_dns: FakeSwarm) -> None:
    result = run("tasks", "ghost", "--min", "3", "--network", "back")

    assert_one_line_error(result, 1, "no task of 'ghost' (wanted at least 3)")
    assert "tasks.ghost.back is NXDOMAIN" in result.stderr


def test_network_option(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=2, network=["front", "back"])

    result = run("tasks", "web", "--network", "back")

    assert result.stdout.split() == [str(ip) for ip in web.task_ips_on("back")]


def test_nameserver_option_overrides_the_environment(swarm_dns: FakeSwarm) -> None:
    with FakeSwarm() as other:
        api = other.create_service("api", replicas=1)

        result = run("tasks", "api", "--nameserver", other.nameserver)

    assert result.stdout.split() == [str(api.task_ips[0])]
    assert swarm_dns.queries == ()


def test_dns_failure_exits_3(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web")
    swarm_dns.inject(Fault.SERVFAIL)

    assert_one_line_error(run("tasks", "web"), 3, "SERVFAIL")
