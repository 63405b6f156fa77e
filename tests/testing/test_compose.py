"""FakeCompose: a Compose project's DNS, as measured on the engine, through dig and dnspython.

The measured behaviour is in docs/fake-fidelity.md, "Compose"; every test
here asks the fake through a client nobody here wrote (the ``ask`` fixture:
dig, then dnspython) or through the fake's own API.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from swarmdns.testing import (
    ENGINES,
    HIJACK_ADDRESSES,
    TTL,
    UPSTREAM_TTL,
    ContainerState,
    EngineVersion,
    FakeCompose,
    FakeControl,
    FakeSwarm,
    SwarmError,
    Upstream,
)

from .dns_clients import Ask

OWN = "SWARMDNS_OWN_ADDRESSES"
RUNTIME = "SWARMDNS_RUNTIME"


@pytest.fixture
def compose() -> Iterator[FakeCompose]:
    with FakeCompose("proj", seed=7) as fake:
        yield fake
        assert fake.internal_errors == ()


def ips(values: list[str]) -> list[IPv4Address]:
    return sorted(IPv4Address(value) for value in values)


def test_a_service_answers_every_running_container(compose: FakeCompose, ask: Ask) -> None:
    web = compose.create_service("web", scale=3)

    answer = ask(compose, "web")  # with EDNS: the engine's own answers carry no OPT

    assert answer.rcode == "NOERROR"
    assert {"qr", "rd", "ra"} <= answer.flags
    assert not answer.has_opt
    assert ips(answer.values) == sorted(web.ips)
    assert {ttl for _, ttl, _, _ in answer.records} == {TTL}
    assert [c.name for c in web.containers] == ["proj-web-1", "proj-web-2", "proj-web-3"]
    assert [c.number for c in web.containers] == [1, 2, 3]


def test_every_name_of_a_container_resolves_also_on_its_network(
    compose: FakeCompose, ask: Ask
) -> None:
    compose.create_service("web", scale=2, aliases=["www"])
    first = compose.containers("web")[0]
    both = sorted(c.ip for c in compose.containers("web"))

    for name in ("web.proj_default", "www", "www.proj_default"):
        assert ips(ask(compose, name).values) == both, name
    for name in ("proj-web-1", "proj-web-1.proj_default", first.short_id):
        assert ips(ask(compose, name).values) == [first.ip], name


def test_tasks_of_a_service_is_forwarded_as_an_unknown_name(
    compose: FakeCompose, ask: Ask
) -> None:
    compose.create_service("web", scale=2)

    answer = ask(compose, "tasks.web")

    assert (answer.rcode, answer.records) == ("NXDOMAIN", ())
    assert answer.has_opt  # the upstream's own reply


def test_a_hijacking_upstream_answers_tasks_of_a_service(ask: Ask) -> None:
    with FakeCompose(upstream=Upstream.HIJACK) as compose:
        compose.create_service("web", scale=2)

        hijacked = ask(compose, "tasks.web")
        own = ask(compose, "web")

    assert ips(hijacked.values) == sorted(HIJACK_ADDRESSES)
    assert {ttl for _, ttl, _, _ in hijacked.records} == {UPSTREAM_TTL}
    assert len(own.values) == 2


def test_the_ptr_of_a_container_names_the_container_never_the_alias(
    compose: FakeCompose, ask: Ask
) -> None:
    compose.create_service("web", scale=2, aliases=["www"])
    second = compose.containers("web")[1]
    reverse = ".".join(reversed(str(second.ip).split("."))) + ".in-addr.arpa"

    answer = ask(compose, reverse, "PTR")

    assert answer.values == ["proj-web-2.proj_default."]
    assert second.ptr_target("proj_default") == "proj-web-2.proj_default."


def test_aaaa_of_a_service_is_an_empty_answer(compose: FakeCompose, ask: Ask) -> None:
    compose.create_service("web")

    answer = ask(compose, "web", "AAAA")

    assert (answer.rcode, answer.records) == ("NOERROR", ())


def test_the_order_is_shuffled_on_every_query(compose: FakeCompose, ask: Ask) -> None:
    compose.create_service("web", scale=6)

    orders = {tuple(ask(compose, "web").values) for _ in range(6)}

    assert len(orders) > 1  # 6! orders: six identical answers would mean no shuffling


@pytest.mark.parametrize(
    ("engine", "kept"),
    [("20.10", 25), ("26.1", 30), ("28.5", 30)],
)
def test_45_containers_over_udp_without_edns_truncate_as_measured(
    ask: Ask, engine: EngineVersion, kept: int
) -> None:
    with FakeCompose(engine=engine) as compose:
        compose.create_service("web", scale=45)

        cut = ask(compose, "web", edns=None)
        whole = ask(compose, "web", edns=1232)
        tcp = ask(compose, "web", transport="tcp", edns=None)

    assert ("tc" in cut.flags, len(cut.values)) == (True, kept)
    assert ("tc" in whole.flags, len(whole.values)) == (False, 45)
    assert len(tcp.values) == 45


def test_scale_numbers_containers_from_one_and_drops_the_highest(compose: FakeCompose) -> None:
    compose.create_service("web", scale=3)
    kept = compose.containers("web")[:2]

    down = compose.scale("web", 2)
    up = compose.scale("web", 4)

    assert down.containers == kept
    assert [c.number for c in up.containers] == [1, 2, 3, 4]
    assert up.containers[:2] == kept


def test_scale_to_zero_makes_the_service_a_forwarded_name(compose: FakeCompose, ask: Ask) -> None:
    compose.create_service("web", scale=2)

    compose.scale("web", 0)

    assert ask(compose, "web").rcode == "NXDOMAIN"
    assert compose.containers("web") == ()
    assert ips(ask(compose, "web").values) == []


def test_kill_leaves_dns_at_once_and_start_brings_the_same_address_back(
    compose: FakeCompose, ask: Ask
) -> None:
    compose.create_service("web", scale=2)
    first, second = compose.containers("web")

    killed = compose.kill_container("proj-web-1")
    after_kill = ips(ask(compose, "web").values)
    started = compose.start_container(first)

    assert killed.state is ContainerState.EXITED
    assert after_kill == [second.ip]
    assert started.ip == first.ip
    assert ips(ask(compose, "web").values) == sorted([first.ip, second.ip])


def test_stop_keeps_a_container_in_dns_for_its_grace_period(
    compose: FakeCompose, ask: Ask
) -> None:
    compose.create_service("web", scale=2)
    first, second = compose.containers("web")

    stopping = compose.stop_container(first, grace=0.2)
    during = ips(ask(compose, "web").values)
    compose.settle()
    after = ips(ask(compose, "web").values)

    assert stopping.state is ContainerState.STOPPING
    assert during == sorted([first.ip, second.ip])
    assert after == [second.ip]
    assert compose.container(first).state is ContainerState.EXITED


def test_start_within_the_grace_period_cancels_the_exit(compose: FakeCompose) -> None:
    compose.create_service("web")
    (first,) = compose.containers("web")

    compose.stop_container(first, grace=3600)
    compose.start_container(first)
    compose.settle(timeout=0)  # nothing pending: the exit was cancelled

    assert compose.container(first).state is ContainerState.RUNNING


def test_stop_without_grace_leaves_dns_at_once(compose: FakeCompose) -> None:
    compose.create_service("web")
    (first,) = compose.containers("web")

    assert compose.stop_container(first, grace=0).state is ContainerState.EXITED
    assert compose.service("web").ips == ()


def test_a_grace_period_pending_at_reset_is_void(compose: FakeCompose) -> None:
    compose.create_service("web")
    compose.stop_container("proj-web-1", grace=3600)

    compose.reset()
    compose.settle(timeout=0)

    assert compose.services == ()


def test_removing_a_service_drops_its_grace_periods(compose: FakeCompose) -> None:
    compose.create_service("web")
    compose.stop_container("proj-web-1", grace=3600)

    compose.remove_service("web")
    compose.settle(timeout=0)  # nothing pending

    assert compose.services == ()


def test_a_stopped_fake_ends_a_grace_period_in_settle(ask: Ask) -> None:
    compose = FakeCompose().start()
    try:
        compose.create_service("web", scale=2)
        compose.stop_container("proj-web-1", grace=0.1)
        compose.stop()
        compose.settle()  # no thread of the fake's: this one applies it, when due
        compose.start()

        assert len(ask(compose, "web").values) == 1
    finally:
        compose.stop()


@pytest.mark.parametrize("grace", [-1, 3601, float("nan")])
def test_grace_is_checked(compose: FakeCompose, grace: float) -> None:
    compose.create_service("web")

    with pytest.raises(ValueError, match="grace must be between 0 and 3600"):
        compose.stop_container("proj-web-1", grace=grace)


def test_a_container_on_two_networks_answers_the_askers_network(
    compose: FakeCompose, ask: Ask
) -> None:
    compose.create_service("web", networks=["default", "back"])
    (web,) = compose.containers("web")

    compose.client_networks = ["proj_default"]
    on_default = ask(compose, "web").values
    compose.client_networks = ["proj_back"]
    on_back = ask(compose, "web").values

    assert on_default == [str(web.addresses["proj_default"])]
    assert on_back == [str(web.addresses["proj_back"])]
    assert ask(compose, "web.proj_default").rcode == "NXDOMAIN"  # not the asker's network


def test_networks_are_the_projects_on_the_engines_local_pools(compose: FakeCompose) -> None:
    compose.create_service("web", networks=["default", "back"])

    names = [n.name for n in compose.networks]
    subnets = [n.subnet for n in compose.networks]

    assert names == ["proj_default", "proj_back"]
    assert all(any(s.subnet_of(pool) for pool in compose.engine_networks) for s in subnets)
    assert compose.containers("web")[0].ip in subnets[0]


def test_what_dns_tells_of_a_container_is_its_name_and_number(compose: FakeCompose) -> None:
    compose.create_service("web", scale=2)
    second = compose.containers("web")[1]

    told = second.as_dns()

    assert (told.ip, told.name, told.service, told.slot) == (
        second.ip,
        "proj-web-2",
        "web",
        2,
    )
    assert (told.task_id, told.node_id, told.network) == (None, None, "proj_default")
    assert compose.container(told) == second
    assert compose.container(str(second.ip)) == second
    assert compose.container(second.container_id[:8]) == second


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda c: c.create_service("web"), "already exists"),
        (lambda c: c.create_service("we b"), "invalid service name"),
        (lambda c: c.create_service("db", networks=["a", "a"]), "lists a network twice"),
        (lambda c: c.scale("db", 1), "no service named 'db' in project 'proj'"),
        (lambda c: c.scale("web", -1), "scale must be a whole number"),
        (lambda c: c.kill_container("proj-web-9"), "no container 'proj-web-9'"),
        (lambda c: c.start_container("10.9.9.9"), "no container has address 10.9.9.9"),
        (
            lambda c: setattr(c, "client_networks", ["back"]),
            "name them in full, such as 'proj_default'",
        ),
    ],
)
def test_what_compose_would_refuse_is_refused(
    compose: FakeCompose, call: object, words: str
) -> None:
    compose.create_service("web")

    with pytest.raises(SwarmError, match=words):
        call(compose)  # type: ignore[operator]


def test_a_project_name_compose_refuses_is_refused() -> None:
    with pytest.raises(SwarmError, match="invalid project name 'Shop'"):
        FakeCompose("Shop")


def test_networks_and_aliases_must_be_lists(compose: FakeCompose) -> None:
    with pytest.raises(TypeError, match="networks takes a sequence"):
        compose.create_service("web", networks="back")
    with pytest.raises(TypeError, match="aliases takes a sequence"):
        compose.create_service("web", aliases="www")


def test_reset_may_rename_the_project(compose: FakeCompose, ask: Ask) -> None:
    compose.create_service("web")

    compose.reset(project="shop")
    compose.create_service("web")

    assert compose.project == "shop"
    assert [c.name for c in compose.containers("web")] == ["shop-web-1"]
    assert len(ask(compose, "shop-web-1.shop_default").values) == 1


def test_a_restarted_fake_listens_where_it_did(compose: FakeCompose, ask: Ask) -> None:
    compose.create_service("web")
    before = compose.nameserver

    compose.stop()
    compose.start()

    assert compose.nameserver == before
    assert len(ask(compose, "web").values) == 1


def test_every_engine_is_served(ask: Ask) -> None:
    for engine in ENGINES:
        with FakeCompose(engine=engine) as compose:
            compose.create_service("web")
            assert compose.engine == engine
            assert len(ask(compose, "web").values) == 1


# -- inside() -------------------------------------------------------------------------


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OWN, raising=False)
    monkeypatch.setenv(RUNTIME, "auto")


@pytest.mark.usefixtures("clean_environment")
def test_inside_a_container_sets_its_addresses_and_the_runtime(compose: FakeCompose) -> None:
    compose.create_service("web", networks=["default", "back"])
    (web,) = compose.containers("web")

    with compose.inside("proj-web-1") as found:
        seen = (os.environ[OWN], os.environ[RUNTIME], compose.client_networks)

    assert found == web
    assert seen == (
        f"{web.addresses['proj_default']},{web.addresses['proj_back']}",
        "compose",
        ("proj_default", "proj_back"),
    )
    assert OWN not in os.environ
    assert os.environ[RUNTIME] == "auto"
    assert compose.client_networks is None


@pytest.mark.usefixtures("clean_environment")
def test_inside_a_container_dns_knows_only_its_networks(compose: FakeCompose, ask: Ask) -> None:
    compose.create_service("web")
    compose.create_service("admin", networks=["back"])

    with compose.inside("proj-web-1"):
        inside = ask(compose, "admin").rcode
    outside = ask(compose, "admin").rcode

    assert (inside, outside) == ("NXDOMAIN", "NOERROR")


@pytest.mark.usefixtures("clean_environment")
def test_inside_puts_everything_back_after_an_error(compose: FakeCompose) -> None:
    compose.create_service("web")
    compose.client_networks = ["proj_default"]

    with pytest.raises(RuntimeError, match="boom"), compose.inside("proj-web-1"):
        raise RuntimeError("boom")

    assert OWN not in os.environ
    assert os.environ[RUNTIME] == "auto"
    assert compose.client_networks == ("proj_default",)


@pytest.mark.usefixtures("clean_environment")
def test_inside_a_swarm_task_sets_its_addresses_and_the_runtime() -> None:
    with FakeSwarm(seed=3) as swarm:
        swarm.create_service("web", replicas=2, network=["front", "back"])
        task = swarm.service("web").tasks[1]

        with swarm.inside(task.as_dns()) as found:
            seen = (os.environ[OWN], os.environ[RUNTIME], swarm.client_networks)
        after = swarm.client_networks

    assert found == task
    assert seen == (
        f"{task.addresses['front']},{task.addresses['back']}",
        "swarm",
        ("front", "back"),
    )
    assert (OWN in os.environ, os.environ[RUNTIME], after) == (False, "auto", None)


def test_inside_an_unknown_container_is_refused(compose: FakeCompose) -> None:
    with pytest.raises(SwarmError, match="no container 'nope'"), compose.inside("nope"):
        pass  # pragma: no cover


# -- the control channel --------------------------------------------------------------


def test_the_control_channel_scales_kills_stops_and_starts(compose: FakeCompose) -> None:
    control = FakeControl(compose.serve_control())

    control.request("create_service", name="web", replicas=3, network=["default", "back"])
    scaled = control.request("scale", name="web", replicas=2)
    killed = control.request("kill_task", task="proj-web-1")
    stopped = control.request("stop_container", container="proj-web-2", grace=0)
    started = control.request("start_container", container="proj-web-1")
    state = control.request("state")

    assert [c["name"] for c in scaled["containers"]] == ["proj-web-1", "proj-web-2"]
    assert (killed["state"], killed["visible"]) == ("exited", False)
    assert stopped["state"] == "exited"
    assert started["state"] == "running"
    assert state["project"] == "proj"
    assert [n["name"] for n in state["networks"]] == ["proj_default", "proj_back"]
    assert compose.service("web").ips == (compose.containers("web")[0].ip,)


def test_the_control_channel_refuses_as_the_fake_does(compose: FakeCompose) -> None:
    control = FakeControl(compose.serve_control())

    with pytest.raises(SwarmError, match="scale: no service named 'web'"):
        control.request("scale", name="web", replicas=2)
    with pytest.raises(Exception, match="grace must be between 0 and 3600") as refused:
        control.request("stop_container", container="x", grace=-1)
    assert getattr(refused.value, "kind", None) == "BadRequest"
    with pytest.raises(Exception, match="unknown op") as unknown:
        control.request("replace_task", task="proj-web-1")
    assert getattr(unknown.value, "kind", None) == "BadRequest"


def test_a_snapshot_of_the_project_finds_its_services(compose: FakeCompose) -> None:
    compose.create_service("web", scale=2)

    state = compose.state()

    assert (state.project, state.engine, state.nameserver) == (
        "proj",
        compose.engine,
        compose.nameserver,
    )
    assert state.service("web").scale == 2
    assert [c.name for c in state.containers] == ["proj-web-1", "proj-web-2"]
    with pytest.raises(SwarmError, match=r"no service named 'db' \(services: web\)"):
        state.service("db")
