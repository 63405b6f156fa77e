"""The fake Swarm with several nodes: each node's own DNS, gossip, and losing a node.

Every view is read over DNS, through swarmdns itself, from each node's own
server. Nothing here sleeps: zero delays make every effect happen within the
call, and non-zero ones are waited for with ``settle()``, so that a test
asserts the order of what happens, never how long it takes.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from ipaddress import IPv4Address

import dns.message
import dns.query
import dns.rcode
import pytest

import swarmdns
from swarmdns.testing import FakeSwarm, Fault, Node, NodeDelays, SwarmError

from .ports import occupy

#: Failure detection and propagation at once, but never marked Down.
NEVER_DOWN = NodeDelays(propagation=0, failure_detection=0, down=3600, rejoin=0)


def dns_ips(node: Node, service: str = "web") -> set[IPv4Address]:
    """``tasks.<service>`` as one node's embedded DNS answers it."""
    backend = swarmdns.DirectBackend([node.nameserver])
    return set(swarmdns.task_ips(service, backend=backend, timeout=2.0))


def ips_on(swarm: FakeSwarm, node: str, service: str = "web") -> set[IPv4Address]:
    """The model's addresses of a service's visible tasks placed on ``node``."""
    return {t.ip for t in swarm.tasks_on(node) if t.service == service and t.visible}


def port(node: Node) -> int:
    """The node's DNS port, the fake running."""
    assert node.port is not None
    return node.port


@pytest.fixture
def cluster() -> Iterator[FakeSwarm]:
    """Three nodes, every delay zero."""
    with FakeSwarm(nodes=3, delays=NodeDelays.INSTANT, seed=7) as swarm:
        yield swarm
        assert swarm.internal_errors == ()


# -- nodes and their DNS --------------------------------------------------------------


def test_one_node_by_default_whose_dns_is_the_fakes_own() -> None:
    with FakeSwarm() as swarm:
        (node,) = swarm.nodes

        assert (node.name, node.host, node.port) == ("node-1", swarm.host, swarm.port)
        assert node.nameserver == swarm.nameserver
        assert not node.isolated
        assert not node.down
        with pytest.raises(SwarmError, match="manager"):
            swarm.isolate("node-1")
    assert swarm.nodes[0].port is None
    with pytest.raises(RuntimeError, match="stopped"):
        _ = swarm.nodes[0].nameserver


def test_each_node_serves_its_own_dns(cluster: FakeSwarm) -> None:
    nodes = cluster.nodes

    assert [n.name for n in nodes] == ["node-1", "node-2", "node-3"]
    assert len({n.id for n in nodes}) == 3
    assert nodes[0].port == cluster.port
    assert len({n.port for n in nodes}) == 3
    assert cluster.node("node-2") == nodes[1] == cluster.node(nodes[1].id)


def test_replicas_go_round_robin_by_slot_and_global_tasks_one_per_node(
    cluster: FakeSwarm,
) -> None:
    web = cluster.create_service("web", replicas=5)
    agent = cluster.create_service("agent", mode="global")

    assert [(t.slot, cluster.node(t).name) for t in web.tasks] == [
        (1, "node-1"),
        (2, "node-2"),
        (3, "node-3"),
        (4, "node-1"),
        (5, "node-2"),
    ]
    assert sorted(cluster.node(t).name for t in agent.tasks) == ["node-1", "node-2", "node-3"]
    assert [t.slot for t in cluster.tasks_on("node-3")] == [3, None]
    scaled = cluster.scale("web", 7)
    assert [cluster.node(t).name for t in scaled.tasks[5:]] == ["node-3", "node-1"]


def test_every_node_sees_every_task_with_its_identity(cluster: FakeSwarm) -> None:
    web = cluster.create_service("web", replicas=3)

    for node in cluster.nodes:
        assert dns_ips(node) == set(web.task_ips)
    on_node_1 = web.tasks[0]
    backend = swarmdns.DirectBackend([cluster.nodes[2].nameserver])
    (seen,) = [t for t in swarmdns.tasks("web", backend=backend) if t.ip == on_node_1.ip]
    assert (seen.name, seen.task_id, seen.slot) == (on_node_1.name, on_node_1.id, 1)


def test_faults_and_the_query_log_are_shared_by_every_node(cluster: FakeSwarm) -> None:
    cluster.create_service("web", replicas=3)
    cluster.inject(Fault.SERVFAIL, name="tasks.web")

    for node in cluster.nodes:
        with pytest.raises(swarmdns.ResolutionError):
            dns_ips(node)
    assert len(cluster.queries) >= 3


# -- propagation ------------------------------------------------------------------------


def test_with_zero_delays_a_change_reaches_every_node_within_the_call(cluster: FakeSwarm) -> None:
    web = cluster.create_service("web", replicas=3)
    on_node_3 = cluster.tasks_on("node-3")[0]

    cluster.kill_task(on_node_3)

    for node in cluster.nodes:
        assert dns_ips(node) == set(web.task_ips) - {on_node_3.ip}


def test_other_nodes_learn_a_change_only_after_the_propagation_delay() -> None:
    delays = NodeDelays(propagation=0.5)
    with FakeSwarm(nodes=3, delays=delays) as swarm:
        web = swarm.create_service("web", replicas=3, healthcheck=True)
        swarm.settle()
        node_1, node_2, _ = swarm.nodes
        on_node_2 = swarm.tasks_on("node-2")[0]

        swarm.mark_healthy(on_node_2)
        own, other = dns_ips(node_2), dns_ips(node_1)
        with pytest.raises(TimeoutError, match="still pending"):
            swarm.settle(timeout=0)
        swarm.settle()
        other_after = dns_ips(node_1)

        assert own == {on_node_2.ip}  # its own node: at once
        assert other == set()  # another node: not yet...
        assert other_after == {on_node_2.ip}  # ...but once settled
        assert web.tasks[1] == on_node_2
        assert swarm.internal_errors == ()


# -- losing a node ----------------------------------------------------------------------


def test_an_isolated_node_is_silent_and_the_others_drop_its_tasks() -> None:
    with FakeSwarm(nodes=3, delays=NEVER_DOWN) as swarm:
        web = swarm.create_service("web", replicas=6)
        on_node_3 = ips_on(swarm, "node-3")

        node_3 = swarm.isolate("node-3")

        assert (node_3.isolated, node_3.paused, node_3.down) == (True, True, False)
        with pytest.raises(swarmdns.ResolutionTimeout):
            swarmdns.task_ips(
                "web", backend=swarmdns.DirectBackend([node_3.nameserver]), timeout=0.3
            )
        for node in swarm.nodes[:2]:
            assert dns_ips(node) == set(web.task_ips) - on_node_3
        assert swarm.service("web") == web  # the manager has changed nothing yet


def test_a_node_cut_off_answers_from_what_it_knew_until_it_gives_up_on_the_others() -> None:
    delays = NodeDelays(propagation=0, failure_detection=3600, down=3600, rejoin=0)
    with FakeSwarm(nodes=3, delays=delays) as swarm:
        web = swarm.create_service("web", replicas=6)
        on_node_3 = ips_on(swarm, "node-3")

        node_3 = swarm.isolate("node-3", paused=False)
        swarm.create_service("later", replicas=3)

        assert (node_3.isolated, node_3.paused) == (True, False)
        assert dns_ips(node_3) == set(web.task_ips)  # the others' tasks too, as they were
        assert dns_ips(node_3, "later") == set()  # news from the others never reaches it
        for node in swarm.nodes[:2]:
            assert dns_ips(node) == set(web.task_ips)  # not detected yet
        swarm.rejoin("node-3")
        assert dns_ips(node_3, "later") == set(swarm.service("later").task_ips)

    with FakeSwarm(nodes=3, delays=NEVER_DOWN) as swarm:
        web = swarm.create_service("web", replicas=6)
        on_node_3 = ips_on(swarm, "node-3")

        node_3 = swarm.isolate("node-3", paused=False)  # detected at once, both ways

        assert dns_ips(node_3) == on_node_3
        for node in swarm.nodes[:2]:
            assert dns_ips(node) == set(web.task_ips) - on_node_3
        node_3 = swarm.rejoin("node-3")
        assert (node_3.isolated, node_3.paused) == (False, False)
        for node in swarm.nodes:
            assert dns_ips(node) == set(web.task_ips)


def test_a_node_back_before_down_brings_the_same_tasks_back() -> None:
    with FakeSwarm(nodes=3, delays=NEVER_DOWN) as swarm:
        web = swarm.create_service("web", replicas=6)
        swarm.isolate("node-3")

        node_3 = swarm.rejoin("node-3")

        assert not node_3.isolated
        for node in swarm.nodes:
            assert dns_ips(node) == set(web.task_ips)
        assert swarm.service("web") == web
        swarm.settle(timeout=1)  # the pending Down was cancelled with the return


def test_failure_detection_then_down_happen_when_due() -> None:
    delays = NodeDelays(propagation=0.05, failure_detection=0.5, down=1.0, rejoin=0.05)
    with FakeSwarm(nodes=3, delays=delays) as swarm:
        web = swarm.create_service("web", replicas=6)
        swarm.settle()
        node_1 = swarm.nodes[0]
        on_node_3 = ips_on(swarm, "node-3")

        swarm.isolate("node-3")
        before_detection = dns_ips(node_1)
        swarm.settle()

        assert before_detection == set(web.task_ips)
        after = swarm.service("web")
        assert swarm.node("node-3").down
        assert dns_ips(node_1) == set(after.task_ips)
        assert len(after.task_ips) == 6
        assert not on_node_3 & set(after.task_ips)
        assert swarm.internal_errors == ()


def test_a_node_away_past_down_loses_its_replicas_to_the_other_nodes(cluster: FakeSwarm) -> None:
    web = cluster.create_service("web", replicas=6)
    agent = cluster.create_service("agent", mode="global")
    lost = [t for t in web.tasks if cluster.node(t).name == "node-3"]
    agent_on_3 = ips_on(cluster, "node-3", "agent")

    cluster.isolate("node-3")

    after = cluster.service("web")
    assert cluster.node("node-3").down
    assert sorted(t.slot or 0 for t in after.tasks) == [1, 2, 3, 4, 5, 6]
    assert cluster.tasks_on("node-3") == tuple(t for t in agent.tasks if t.ip in agent_on_3)
    replacements = [t for t in after.tasks if t.slot in {t.slot for t in lost}]
    assert {cluster.node(t).name for t in replacements} <= {"node-1", "node-2"}
    assert not {t.ip for t in replacements} & {t.ip for t in lost}
    assert not {t.id for t in replacements} & {t.id for t in lost}
    for node in cluster.nodes[:2]:
        assert dns_ips(node) == set(after.task_ips)
        assert dns_ips(node, "agent") == set(agent.task_ips) - agent_on_3

    node_3 = cluster.rejoin("node-3")

    assert not node_3.down
    assert not node_3.isolated
    assert ips_on(cluster, "node-3") == set()
    for node in cluster.nodes:
        assert dns_ips(node) == set(after.task_ips)
        assert dns_ips(node, "agent") == set(agent.task_ips)


def test_a_watch_on_node_1_sees_node_3_leave_and_come_back() -> None:
    delays = NodeDelays(propagation=0.02, failure_detection=0.1, down=3600, rejoin=0.1)
    with FakeSwarm(nodes=3, delays=delays) as swarm:
        web = swarm.create_service("web", replicas=6)
        swarm.settle()
        on_node_3 = ips_on(swarm, "node-3")
        backend = swarmdns.DirectBackend([swarm.nameserver])

        with swarmdns.watch_tasks("web", backend=backend, interval=0.01, jitter=0) as watch:
            first = next(watch)
            swarm.isolate("node-3")
            left = next(watch)
            swarm.rejoin("node-3")
            back = next(watch)

        assert set(first.current) == set(web.task_ips)
        assert (left.removed, left.added) == (frozenset(on_node_3), frozenset())
        assert (back.added, back.removed) == (frozenset(on_node_3), frozenset())
        assert back.current == web.task_ips
        assert len(on_node_3) == 2


# -- the life of a fake with nodes -------------------------------------------------------


def test_reset_restores_the_configured_nodes_with_none_isolated(cluster: FakeSwarm) -> None:
    cluster.isolate("node-2")

    cluster.reset(nodes=2)
    assert [(n.name, n.isolated) for n in cluster.nodes] == [("node-1", False), ("node-2", False)]
    cluster.reset()

    assert [(n.name, n.isolated, n.down) for n in cluster.nodes] == [
        ("node-1", False, False),
        ("node-2", False, False),
        ("node-3", False, False),
    ]
    web = cluster.create_service("web", replicas=3)
    for node in cluster.nodes:
        assert dns_ips(node) == set(web.task_ips)


def test_add_node_gives_a_one_node_fake_a_second_dns() -> None:
    with FakeSwarm(delays=NodeDelays.INSTANT) as swarm:
        swarm.create_service("agent", mode="global")

        node_2 = swarm.add_node()

        agent = swarm.service("agent")
        assert node_2.name == "node-2"
        assert node_2.port not in (None, swarm.port)
        assert dns_ips(swarm.nodes[0], "agent") == set(agent.task_ips) == dns_ips(node_2, "agent")
        assert len(agent.task_ips) == 2


def test_stop_joins_every_thread_even_with_effects_pending() -> None:
    threads_before = set(threading.enumerate())
    delays = NodeDelays(propagation=0.05, failure_detection=0.1, down=0.2, rejoin=0.05)
    swarm = FakeSwarm(nodes=3, delays=delays)
    with swarm:
        swarm.create_service("web", replicas=3)
        swarm.isolate("node-3")
    assert set(threading.enumerate()) == threads_before

    swarm.settle()  # stopped: the effects run in this thread, each when due
    assert swarm.node("node-3").down
    assert set(threading.enumerate()) == threads_before


def test_a_restart_keeps_every_nodes_port() -> None:
    swarm = FakeSwarm(nodes=3, delays=NodeDelays.INSTANT)
    with swarm:
        before = [node.port for node in swarm.nodes]
    assert [node.port for node in swarm.nodes] == [None, None, None]

    with swarm:
        assert [node.port for node in swarm.nodes] == before
        swarm.create_service("web", replicas=3)
        for node in swarm.nodes:
            backend = swarmdns.DirectBackend([node.nameserver])
            assert len(swarmdns.task_ips("web", backend=backend, timeout=5)) == 3


def test_a_restart_that_cannot_bind_a_nodes_port_starts_nothing() -> None:
    swarm = FakeSwarm(nodes=2, delays=NodeDelays.INSTANT).start()
    main_port, node_port = (node.port or 0 for node in swarm.nodes)
    swarm.stop()
    threads = set(threading.enumerate())

    with (
        occupy(node_port, socket.SOCK_DGRAM),
        pytest.raises(OSError, match=f"node-2's DNS server again on 127.0.0.1:{node_port}"),
    ):
        swarm.start()

    assert not swarm.running
    assert set(threading.enumerate()) == threads
    for port in (main_port, node_port):
        occupy(port, socket.SOCK_DGRAM).close()  # released: none left bound
    with swarm:
        assert [node.port for node in swarm.nodes] == [main_port, node_port]


def test_nodes_and_delays_are_checked(cluster: FakeSwarm) -> None:
    with pytest.raises(ValueError, match="nodes must be"):
        FakeSwarm(nodes=0)
    with pytest.raises(TypeError, match="NodeDelays"):
        FakeSwarm(delays=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="between 0 and 3600"):
        NodeDelays(propagation=-1)
    with pytest.raises(SwarmError, match="no node 'node-4'"):
        cluster.node("node-4")
    with pytest.raises(SwarmError, match="not isolated"):
        cluster.rejoin("node-2")
    cluster.isolate("node-2")
    with pytest.raises(SwarmError, match="already isolated"):
        cluster.isolate("node-2")
    with pytest.raises(RuntimeError, match="inside batch"), cluster.batch():
        cluster.settle()


def test_news_sent_before_a_node_was_cut_off_does_not_bring_its_tasks_back() -> None:
    delays = NodeDelays(propagation=0.3, failure_detection=0, down=0.6, rejoin=0)
    with FakeSwarm(nodes=3, delays=delays) as swarm:
        swarm.create_service("web", replicas=3)
        swarm.settle()
        swarm.scale("web", 6)  # slot 6 starts on node 3, which tells the others later
        old_on_node_3 = ips_on(swarm, "node-3")

        swarm.isolate("node-3")  # detected at once: its news is void
        swarm.settle()

        after = swarm.service("web")
        assert dns_ips(swarm.nodes[0]) == set(after.task_ips)
        assert len(after.task_ips) == 6
        assert not old_on_node_3 & set(after.task_ips)


def test_every_node_answers_like_the_same_engine() -> None:
    def udp_answers(swarm: FakeSwarm) -> list[int]:
        query = dns.message.make_query("tasks.web", "A")  # no EDNS: 512 bytes
        replies = [dns.query.udp(query, n.host, port=port(n), timeout=2) for n in swarm.nodes]
        return [len(reply.answer[0]) for reply in replies]

    with FakeSwarm(nodes=2, engine="20.10", delays=NodeDelays.INSTANT) as swarm:
        swarm.create_service("web", replicas=40)
        old = udp_answers(swarm)
        swarm.use_engine("28.5")
        new = udp_answers(swarm)

    assert old[0] == old[1]
    assert new[0] == new[1]
    assert old[0] < new[0]  # the newer engine compresses names to fit more


def test_the_fixture_takes_nodes_and_delays_from_its_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_downstream="""
        import pytest
        import swarmdns
        from swarmdns.testing import NodeDelays

        NEVER_DOWN = NodeDelays(propagation=0, failure_detection=0, down=3600, rejoin=0)

        @pytest.mark.swarm_dns(nodes=3, delays=NEVER_DOWN)
        def test_three_nodes(swarm_dns):
            assert [n.name for n in swarm_dns.nodes] == ["node-1", "node-2", "node-3"]
            swarm_dns.create_service("web", replicas=3)
            swarm_dns.isolate("node-3")
            assert len(swarmdns.task_ips("web")) == 2  # SWARMDNS_NAMESERVER: node 1

        def test_one_node_again(swarm_dns):
            assert len(swarm_dns.nodes) == 1
            assert swarm_dns.delays == NodeDelays()
        """
    )

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")

    result.assert_outcomes(passed=2)


# -- Docker 29.x: a returning node is not taken back (moby/moby#53141) ------------------


def ask_node(node: Node, name: str) -> tuple[str, set[IPv4Address]]:
    """The rcode and addresses of one node's DNS answer for ``name``."""
    reply = dns.query.udp(
        dns.message.make_query(name, "A"), node.host, port=port(node), timeout=2.0
    )
    found = {IPv4Address(r.address) for rrset in reply.answer for r in rrset}
    return dns.rcode.to_text(reply.rcode()), found


def only_on_node_3(swarm: FakeSwarm, name: str) -> frozenset[IPv4Address]:
    """A service of one task, on node-3 (slot 3 of three; the others killed)."""
    service = swarm.create_service(name, replicas=3, endpoint_mode="dnsrr")
    for task in service.tasks:
        if swarm.node(task).name != "node-3":
            swarm.kill_task(task)
    ips = frozenset(swarm.service(name).task_ips)
    assert len(ips) == 1
    return ips


def test_a_stale_rejoin_leaves_the_nodes_tasks_out_of_the_others_dns_until_force_update() -> None:
    with FakeSwarm(nodes=3, delays=NEVER_DOWN, seed=3) as swarm:
        web = swarm.create_service("web", replicas=6)
        solo = only_on_node_3(swarm, "solo")
        on_3 = ips_on(swarm, "node-3")
        assert len(on_3) == 2
        swarm.isolate("node-3")  # the others give up on it at once (failure_detection=0)

        node_3 = swarm.rejoin("node-3", stale=True)

        assert node_3.stale
        assert not node_3.isolated
        swarm.settle(timeout=5)
        node_1, node_2, _ = swarm.nodes
        for node in (node_1, node_2):
            assert ask_node(node, "tasks.web") == ("NOERROR", set(web.task_ips) - on_3)
            assert ask_node(node, "tasks.solo") == ("NXDOMAIN", set())
            assert ask_node(node, "solo") == ("NXDOMAIN", set())
        assert ask_node(node_3, "tasks.web") == ("NOERROR", set(web.task_ips))  # its own: all
        assert ask_node(node_3, "solo") == ("NOERROR", set(solo))

        swarm.scale("web", 7)  # other changes reach every node, node-3's tasks stay out
        web = swarm.service("web")
        assert ask_node(node_1, "tasks.web") == ("NOERROR", set(web.task_ips) - on_3)

        solo_after = swarm.force_update("solo")

        assert not set(solo_after.task_ips) & solo  # new tasks, new addresses
        assert [t.slot for t in solo_after.tasks] == [1, 2, 3]  # empty slots filled too
        assert len(ips_on(swarm, "node-3", "solo")) == 1
        for node in swarm.nodes:
            assert ask_node(node, "solo") == ("NOERROR", set(solo_after.task_ips))
        assert ask_node(node_1, "tasks.web") == ("NOERROR", set(web.task_ips) - on_3)

        web_after = swarm.force_update("web")

        assert len(web_after.task_ips) == 7
        assert not set(web_after.task_ips) & set(web.task_ips)
        for node in swarm.nodes:
            assert ask_node(node, "tasks.web") == ("NOERROR", set(web_after.task_ips))
        assert swarm.node("node-3").stale  # a new service on it would be left out too
        assert swarm.internal_errors == ()


def test_a_stale_rejoin_before_failure_detection_loses_nothing() -> None:
    delays = NodeDelays(propagation=0, failure_detection=3600, down=3600, rejoin=0)
    with FakeSwarm(nodes=3, delays=delays) as swarm:
        web = swarm.create_service("web", replicas=6)
        swarm.isolate("node-3", paused=False)

        node_3 = swarm.rejoin("node-3", stale=True)  # the others never gave up on it

        assert not node_3.stale
        for node in swarm.nodes:
            assert ask_node(node, "tasks.web") == ("NOERROR", set(web.task_ips))


def test_a_later_rejoin_that_is_not_stale_brings_the_tasks_back() -> None:
    with FakeSwarm(nodes=3, delays=NEVER_DOWN) as swarm:
        web = swarm.create_service("web", replicas=6)
        swarm.isolate("node-3")
        swarm.rejoin("node-3", stale=True)
        assert ask_node(swarm.nodes[0], "tasks.web")[1] < set(web.task_ips)
        swarm.isolate("node-3")

        node_3 = swarm.rejoin("node-3")

        assert not node_3.stale
        for node in swarm.nodes:
            assert ask_node(node, "tasks.web") == ("NOERROR", set(web.task_ips))


def test_stale_is_checked(cluster: FakeSwarm) -> None:
    cluster.isolate("node-2")
    with pytest.raises(TypeError, match="stale is True or False"):
        cluster.rejoin("node-2", stale="yes")  # type: ignore[arg-type]
    assert cluster.node("node-2").isolated


def test_force_update_with_delays_reaches_the_other_nodes_after_propagation() -> None:
    delays = NodeDelays(propagation=0.05, failure_detection=0, down=3600, rejoin=0)
    with FakeSwarm(nodes=3, delays=delays) as swarm:
        web = swarm.create_service("web", replicas=3)
        swarm.settle()

        updated = swarm.force_update("web")
        swarm.settle()

        assert {t.slot: swarm.node(t).name for t in updated.tasks} == {
            t.slot: swarm.node(t).name for t in web.tasks
        }
        for node in swarm.nodes:
            assert ask_node(node, "tasks.web") == ("NOERROR", set(updated.task_ips))
