"""The fake answers as ../shared/docker-embedded-dns.md records the engine does.

One test (or a few) per row of that document, each asked through dig and
through dnspython (the ``ask`` fixture).
"""

from __future__ import annotations

from ipaddress import IPv4Address

import dns.flags
import dns.message
import pytest

from swarmdns.testing import ENGINES, EndpointMode, EngineVersion, FakeSwarm, Fault, Upstream

from .dns_clients import Ask, NoReply, ask_dnspython, exchange


def addresses(values: list[str]) -> list[IPv4Address]:
    return sorted(IPv4Address(v) for v in values)


# -- names ---------------------------------------------------------------------------


def test_service_name_is_the_virtual_ip(swarm_dns: FakeSwarm, ask: Ask) -> None:
    web = swarm_dns.create_service("web", replicas=3)

    answer = ask(swarm_dns, "web")

    assert answer.rcode == "NOERROR"
    assert addresses(answer.values) == [web.vip]
    assert web.vip not in web.task_ips


def test_service_name_lists_the_tasks_in_dnsrr_mode(swarm_dns: FakeSwarm, ask: Ask) -> None:
    db = swarm_dns.create_service("db", replicas=3, endpoint_mode="dnsrr")

    answer = ask(swarm_dns, "db")

    assert db.vip is None
    assert addresses(answer.values) == list(db.task_ips)
    assert len(answer.values) == 3


@pytest.mark.parametrize("endpoint_mode", ["vip", "dnsrr"])
def test_tasks_name_lists_every_running_task(
    swarm_dns: FakeSwarm, ask: Ask, endpoint_mode: EndpointMode
) -> None:
    web = swarm_dns.create_service("web", replicas=4, endpoint_mode=endpoint_mode)

    assert addresses(ask(swarm_dns, "tasks.web").values) == list(web.task_ips)


def test_network_suffix_limits_the_answer_to_that_network(swarm_dns: FakeSwarm, ask: Ask) -> None:
    web = swarm_dns.create_service("web", replicas=2, network=["front", "back"])

    assert addresses(ask(swarm_dns, "web.back").values) == [web.vips["back"]]
    assert addresses(ask(swarm_dns, "web.front").values) == [web.vips["front"]]
    assert addresses(ask(swarm_dns, "tasks.web.back").values) == list(web.task_ips_on("back"))
    assert addresses(ask(swarm_dns, "tasks.web.front").values) == list(web.task_ips_on("front"))
    assert ask(swarm_dns, "tasks.web.elsewhere").rcode == "NXDOMAIN"


def test_unqualified_name_answers_from_the_first_network_by_name(
    swarm_dns: FakeSwarm, ask: Ask
) -> None:
    web = swarm_dns.create_service("web", replicas=2, network=["front", "back"])

    assert addresses(ask(swarm_dns, "tasks.web").values) == list(web.task_ips_on("back"))


def test_stack_service_answers_to_long_and_short_names(swarm_dns: FakeSwarm, ask: Ask) -> None:
    web = swarm_dns.create_service("web", replicas=2, stack="shop")

    assert web.name == "shop_web"
    assert web.networks == ("shop_default",)
    for name in ("shop_web", "web"):
        assert addresses(ask(swarm_dns, name).values) == [web.vip]
        assert addresses(ask(swarm_dns, f"tasks.{name}").values) == list(web.task_ips)


def test_alias_answers_like_the_service(swarm_dns: FakeSwarm, ask: Ask) -> None:
    web = swarm_dns.create_service("web", replicas=2, aliases=["www"])

    assert addresses(ask(swarm_dns, "www").values) == [web.vip]
    assert addresses(ask(swarm_dns, "tasks.www").values) == list(web.task_ips)


def test_task_names_short_ids_and_hostnames_give_the_task(swarm_dns: FakeSwarm, ask: Ask) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    task = web.tasks[1]

    for name in (task.name, task.container_id[:12], task.hostname):
        assert ask(swarm_dns, name).values == [str(task.ip)]


def test_global_task_names_carry_the_node_id(swarm_dns: FakeSwarm, ask: Ask) -> None:
    agent = swarm_dns.create_service("agent", mode="global")
    (task,) = agent.tasks

    assert task.slot is None
    assert task.name == f"agent.{swarm_dns.nodes[0].id}.{task.id}"
    assert ask(swarm_dns, task.name).values == [str(task.ip)]


def test_service_on_no_shared_network_is_unknown(swarm_dns: FakeSwarm, ask: Ask) -> None:
    swarm_dns.create_service("web", network="front")
    swarm_dns.create_service("db", network="back")
    swarm_dns.client_networks = ["front"]

    assert ask(swarm_dns, "web").rcode == "NOERROR"
    assert ask(swarm_dns, "db").rcode == "NXDOMAIN"
    assert ask(swarm_dns, "tasks.db").rcode == "NXDOMAIN"


def test_names_match_in_any_case_and_echo_the_spelling(swarm_dns: FakeSwarm, ask: Ask) -> None:
    web = swarm_dns.create_service("web", replicas=2)

    answer = ask(swarm_dns, "TASKS.Web")

    assert addresses(answer.values) == list(web.task_ips)
    assert {owner for owner, *_ in answer.records} == {"TASKS.Web."}


# -- records -------------------------------------------------------------------------


def test_ttl_is_always_600(swarm_dns: FakeSwarm, ask: Ask) -> None:
    web = swarm_dns.create_service("web", replicas=3)
    reverse = ".".join(reversed(str(web.tasks[0].ip).split("."))) + ".in-addr.arpa"

    for name, rdtype in (("web", "A"), ("tasks.web", "A"), (reverse, "PTR")):
        ttls = {ttl for _, ttl, _, _ in ask(swarm_dns, name, rdtype).records}
        assert ttls == {600}


def test_order_is_shuffled_on_every_query(swarm_dns: FakeSwarm, ask: Ask) -> None:
    swarm_dns.create_service("web", replicas=8)

    orders = {tuple(ask(swarm_dns, "tasks.web").values) for _ in range(6)}

    # 8! orders: six identical answers in a row would mean no shuffling.
    assert len(orders) > 1


def test_seed_makes_the_order_repeatable(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=8)

    def orders() -> list[list[str]]:
        swarm_dns.seed(7)
        return [ask_dnspython(swarm_dns, "tasks.web").values for _ in range(3)]

    assert orders() == orders()


def test_flags_are_qr_rd_ra_without_aa_or_opt(swarm_dns: FakeSwarm, ask: Ask) -> None:
    swarm_dns.create_service("web")

    for edns in (4096, None):
        answer = ask(swarm_dns, "web", edns=edns)
        assert answer.flags == {"qr", "rd", "ra"}
        assert not answer.has_opt


def test_rd_is_copied_from_the_query(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web")
    query = dns.message.make_query("web", "A")
    query.flags &= ~dns.flags.RD

    reply = dns.message.from_wire(exchange(swarm_dns, query.to_wire()))

    assert reply.flags & (dns.flags.QR | dns.flags.RA | dns.flags.RD | dns.flags.AA) == (
        dns.flags.QR | dns.flags.RA
    )


def test_aaaa_for_a_swarm_name_is_empty_noerror(swarm_dns: FakeSwarm, ask: Ask) -> None:
    swarm_dns.create_service("web", replicas=2)

    for name in ("web", "tasks.web"):
        answer = ask(swarm_dns, name, "AAAA")
        assert (answer.rcode, answer.records) == ("NOERROR", ())
    assert ask(swarm_dns, "nosuchservice", "AAAA").rcode == "NXDOMAIN"


def test_ptr_for_a_task_gives_its_identity(swarm_dns: FakeSwarm, ask: Ask) -> None:
    web = swarm_dns.create_service("web", replicas=2, network=["proxy", "back"])
    task = web.tasks[0]

    for network in ("proxy", "back"):
        reverse = ".".join(reversed(str(task.addresses[network]).split("."))) + ".in-addr.arpa"
        answer = ask(swarm_dns, reverse, "PTR")
        assert answer.values == [f"web.1.{task.id}.{network}."]
        assert answer.records[0][2] == "PTR"


def test_ptr_for_a_vip_is_forwarded(swarm_dns: FakeSwarm, ask: Ask) -> None:
    web = swarm_dns.create_service("web")
    reverse = ".".join(reversed(str(web.vip).split("."))) + ".in-addr.arpa"

    assert ask(swarm_dns, reverse, "PTR").rcode == "NXDOMAIN"


@pytest.mark.parametrize(
    ("name", "rdtype"), [("tasks.web", "SRV"), ("_x._tcp.web", "SRV"), ("web", "TXT")]
)
def test_other_types_are_forwarded(swarm_dns: FakeSwarm, ask: Ask, name: str, rdtype: str) -> None:
    swarm_dns.create_service("web")

    assert ask(swarm_dns, name, rdtype).rcode == "NXDOMAIN"


def test_mx_for_a_swarm_name_is_empty_noerror(swarm_dns: FakeSwarm, ask: Ask) -> None:
    swarm_dns.create_service("web")

    answer = ask(swarm_dns, "web", "MX")

    assert (answer.rcode, answer.records) == ("NOERROR", ())


# -- unknown names, empty services, failures -----------------------------------------


def test_service_without_tasks_vanishes_like_a_missing_one(swarm_dns: FakeSwarm, ask: Ask) -> None:
    swarm_dns.create_service("web", replicas=2)
    swarm_dns.create_service("idle", replicas=0)
    swarm_dns.scale("web", 0)

    for name in ("web", "tasks.web", "idle", "tasks.idle", "missing", "tasks.missing"):
        answer = ask(swarm_dns, name)
        assert (answer.rcode, answer.records) == ("NXDOMAIN", ()), name


@pytest.mark.parametrize(
    ("upstream", "rcode"), [(Upstream.NXDOMAIN, "NXDOMAIN"), (Upstream.SERVFAIL, "SERVFAIL")]
)
def test_unknown_names_get_what_the_upstream_gives(
    swarm_dns: FakeSwarm, ask: Ask, upstream: Upstream, rcode: str
) -> None:
    swarm_dns.create_service("idle", replicas=0)
    swarm_dns.upstream = upstream

    assert ask(swarm_dns, "example.org").rcode == rcode
    assert ask(swarm_dns, "idle").rcode == rcode


@pytest.mark.swarm_dns(engine="20.10")
@pytest.mark.parametrize("upstream", [Upstream.NO_REPLY, Upstream.UNREACHABLE])
def test_unknown_names_get_no_reply_from_old_engines_without_upstream(
    swarm_dns: FakeSwarm, ask: Ask, upstream: Upstream
) -> None:
    swarm_dns.create_service("web")
    swarm_dns.upstream = upstream

    with pytest.raises(NoReply):
        ask(swarm_dns, "example.org", timeout=0.3)
    assert ask(swarm_dns, "web").rcode == "NOERROR"


def test_overload_answers_refused(swarm_dns: FakeSwarm, ask: Ask) -> None:
    swarm_dns.create_service("web")
    swarm_dns.inject(Fault.REFUSED)

    assert ask(swarm_dns, "web").rcode == "REFUSED"


def test_task_appears_only_once_healthy(swarm_dns: FakeSwarm, ask: Ask) -> None:
    web = swarm_dns.create_service("web", replicas=2, healthcheck=True)
    first, second = web.tasks

    assert ask(swarm_dns, "tasks.web").rcode == "NXDOMAIN"
    assert ask(swarm_dns, "web").rcode == "NXDOMAIN"
    swarm_dns.mark_healthy(first)
    assert ask(swarm_dns, "tasks.web").values == [str(first.ip)]
    swarm_dns.mark_healthy(second)
    swarm_dns.mark_unhealthy(first)
    assert ask(swarm_dns, "tasks.web").values == [str(second.ip)]


def test_killed_task_leaves_at_once_and_its_replacement_has_a_new_address(
    swarm_dns: FakeSwarm, ask: Ask
) -> None:
    web = swarm_dns.create_service("web", replicas=3)
    victim = web.tasks[1]

    swarm_dns.kill_task(victim)
    after_kill = addresses(ask(swarm_dns, "tasks.web").values)
    (replacement,) = swarm_dns.reschedule("web")
    after_restart = addresses(ask(swarm_dns, "tasks.web").values)

    assert victim.ip not in after_kill
    assert len(after_kill) == 2
    assert replacement.slot == victim.slot
    assert replacement.ip != victim.ip
    assert after_restart == sorted([*after_kill, replacement.ip])


# -- message size ----------------------------------------------------------------------


@pytest.mark.swarm_dns(engine="20.10")  # the engine seen; see test_engine_versions.py
def test_udp_without_edns_is_cut_to_512_bytes_with_tc(swarm_dns: FakeSwarm, ask: Ask) -> None:
    web = swarm_dns.create_service("web", replicas=25)

    answer = ask(swarm_dns, "tasks.web", edns=None)

    assert "tc" in answer.flags
    assert len(answer.values) == 19  # 20.10 writes names out in full: 19 fit
    assert answer.size == 502
    assert set(addresses(answer.values)) < set(web.task_ips)


def test_udp_with_edns_honours_the_buffer_size(swarm_dns: FakeSwarm, ask: Ask) -> None:
    web = swarm_dns.create_service("web", replicas=70)

    answer = ask(swarm_dns, "tasks.web", edns=4096)

    assert "tc" not in answer.flags
    assert addresses(answer.values) == list(web.task_ips)
    assert not answer.has_opt


@pytest.mark.parametrize("engine", ENGINES)
def test_small_edns_buffer_still_gets_512_bytes(
    swarm_dns: FakeSwarm, ask: Ask, engine: EngineVersion
) -> None:
    swarm_dns.use_engine(engine)
    swarm_dns.create_service("web", replicas=45)

    small = ask(swarm_dns, "tasks.web", edns=256)
    plain = ask(swarm_dns, "tasks.web", edns=None)

    assert "tc" in small.flags
    assert (len(small.values), small.size) == (len(plain.values), plain.size)
    assert small.size in (502, 507)


def test_tcp_returns_everything(swarm_dns: FakeSwarm, ask: Ask) -> None:
    swarm_dns.create_network("big", subnet="10.8.0.0/21")
    web = swarm_dns.create_service("web", replicas=300, network="big")

    answer = ask(swarm_dns, "tasks.web", transport="tcp", edns=None)

    assert "tc" not in answer.flags
    assert addresses(answer.values) == list(web.task_ips)
    assert len(answer.values) == 300
