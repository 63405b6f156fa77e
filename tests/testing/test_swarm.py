"""The Swarm model: names, addresses and task life cycles, without sockets."""

from __future__ import annotations

import contextlib
import re
import tracemalloc
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network

import pytest

from swarmdns.testing import Service, SwarmError, TaskState
from swarmdns.testing._swarm import MAX_REPLICAS, Swarm


def create(swarm: Swarm, name: str, replicas: object = 1, **options: object) -> object:
    settings: dict[str, object] = {
        "networks": ["proxy"],
        "endpoint_mode": "vip",
        "aliases": (),
        "healthcheck": False,
        "stack": None,
    }
    settings.update(options)
    return swarm.create_service(name, replicas, **settings)  # type: ignore[arg-type]


def test_addresses_come_serially_from_the_next_free_subnet() -> None:
    swarm = Swarm(seed=1)
    create(swarm, "web", 3)
    create(swarm, "db", 1, networks=["back"])

    web, db = swarm.services

    assert [n.subnet for n in swarm.networks] == [
        IPv4Network("10.0.1.0/24"),
        IPv4Network("10.0.2.0/24"),
    ]
    assert web.vip == IPv4Address("10.0.1.2")
    assert web.task_ips == tuple(IPv4Address(f"10.0.1.{i}") for i in (3, 4, 5))
    assert db.vip == IPv4Address("10.0.2.2")


def test_released_address_is_not_reused_at_once() -> None:
    swarm = Swarm(seed=1)
    create(swarm, "web", 2)
    victim = swarm.service("web").tasks[0]

    _, replacement = swarm.replace_task(victim)

    # .2 the VIP, .3 and .4 the tasks, .5 the node's load balancer
    assert replacement.ip == IPv4Address("10.0.1.6")
    assert victim.ip == IPv4Address("10.0.1.3")


def test_allocation_wraps_around_and_reports_exhaustion() -> None:
    swarm = Swarm(seed=1)
    swarm.create_network("tiny", subnet="10.9.0.0/29")  # .2 to .6 are free
    create(swarm, "web", 5, networks=["tiny"], endpoint_mode="dnsrr")
    first = swarm.service("web").tasks[0]

    _, replacement = swarm.replace_task(first)

    assert replacement.ip == first.ip  # the only free address, found by wrapping
    with pytest.raises(SwarmError, match=r"no address left in 10.9.0.0/29"):
        swarm.scale("web", 6)
    assert len(swarm.service("web").tasks) == 5


def test_ids_look_like_the_engines_and_repeat_with_a_seed() -> None:
    one, two = Swarm(seed=3), Swarm(seed=3)
    create(one, "web")
    create(two, "web")

    (task,) = one.service("web").tasks

    assert re.fullmatch(r"[a-z0-9]{25}", task.id)
    assert re.fullmatch(r"[0-9a-f]{64}", task.container_id)
    assert task.hostname == task.container_id[:12]
    assert one.service("web") == two.service("web")


@pytest.mark.parametrize(
    "name", ["", "-web", "web-", "web.1", "tasks.web", "we b", "wéb", "a" * 64, "web_"]
)
def test_invalid_service_names_are_refused(name: str) -> None:
    with pytest.raises(SwarmError, match="invalid service name"):
        create(Swarm(), name)


@pytest.mark.parametrize("name", ["", ".net", "ne t", "n" * 64])
def test_invalid_network_names_are_refused(name: str) -> None:
    with pytest.raises(SwarmError, match="invalid network name"):
        Swarm().create_network(name)


@pytest.mark.parametrize("replicas", [-1, 1.5, True, "3"])
def test_replicas_must_be_a_count(replicas: object) -> None:
    with pytest.raises(SwarmError, match="replicas must be a whole number"):
        create(Swarm(), "web", replicas)


def test_refusals_name_the_problem() -> None:
    swarm = Swarm()
    create(swarm, "web")

    with pytest.raises(SwarmError, match="service 'web' already exists"):
        create(swarm, "web")
    with pytest.raises(SwarmError, match=r"no service named 'db' \(services: web\)"):
        swarm.scale("db", 2)
    with pytest.raises(SwarmError, match="endpoint mode must be 'vip' or 'dnsrr'"):
        create(swarm, "db", endpoint_mode="round-robin")
    with pytest.raises(SwarmError, match="lists a network twice"):
        create(swarm, "db", networks=["a", "a"])
    with pytest.raises(SwarmError, match="network 'proxy' is in use by services web"):
        swarm.remove_network("proxy")
    with pytest.raises(SwarmError, match=r"overlaps 10\.0\.1\.0/24"):
        swarm.create_network("clash", subnet="10.0.1.128/25")
    with pytest.raises(SwarmError, match="invalid subnet 'nonsense'"):
        swarm.create_network("bad", subnet="nonsense")


def test_scale_down_removes_the_highest_slots_and_frees_their_addresses() -> None:
    swarm = Swarm(seed=1)
    create(swarm, "web", 4)
    before = swarm.service("web").tasks

    after = swarm.scale("web", 2)

    assert after.tasks == before[:2]
    assert after.replicas == 2
    assert [t.slot for t in swarm.scale("web", 3).tasks] == [1, 2, 3]


def test_kill_leaves_the_slot_empty_until_reschedule() -> None:
    swarm = Swarm(seed=1)
    create(swarm, "web", 3)
    victim = swarm.service("web").tasks[1]

    assert [t.slot for t in swarm.kill_task(victim.id).tasks] == [1, 3]
    (new,) = swarm.reschedule("web")
    assert new.slot == 2
    assert [t.slot for t in swarm.service("web").tasks] == [1, 2, 3]
    with pytest.raises(SwarmError, match="no running task"):
        swarm.kill_task(victim)


def test_tasks_can_be_found_by_name_container_id_or_id_prefix() -> None:
    swarm = Swarm(seed=1)
    create(swarm, "web", 2)
    task = swarm.service("web").tasks[0]

    for key in (task, task.id, task.name, task.container_id, task.id[:6]):
        assert swarm.find_task(key)[1] == task


def test_global_service_runs_one_task_per_node() -> None:
    swarm = Swarm(seed=1)
    create(swarm, "agent", None)

    node = swarm.add_node()

    agent = swarm.service("agent")
    assert agent.mode == "global"
    assert [t.node_id for t in agent.tasks] == swarm.nodes
    assert agent.tasks[1].node_id == node
    assert all(t.slot is None for t in agent.tasks)
    with pytest.raises(SwarmError, match="is global"):
        swarm.scale("agent", 3)


def test_health_gates_visibility() -> None:
    swarm = Swarm(seed=1)
    create(swarm, "web", 2, healthcheck=True)
    first = swarm.service("web").tasks[0]

    assert swarm.service("web").task_ips == ()
    swarm.set_state(first, TaskState.RUNNING)
    assert swarm.service("web").task_ips == (first.ip,)
    create(swarm, "db")
    with pytest.raises(SwarmError, match="has no healthcheck"):
        swarm.set_state(swarm.service("db").tasks[0], TaskState.UNHEALTHY)


def test_stacks_prefix_names_and_add_the_short_alias() -> None:
    swarm = Swarm(seed=1)
    create(swarm, "web", 1, stack="shop", networks=["shop_default"])
    create(swarm, "db", 1, stack="shop", networks=["shop_default"])

    assert [s.name for s in swarm.services] == ["shop_web", "shop_db"]
    assert swarm.service("shop_web").aliases == ("web",)
    swarm.remove_stack("shop")
    assert swarm.services == ()
    with pytest.raises(SwarmError, match="no stack named 'shop'"):
        swarm.remove_stack("shop")


def test_a_failed_create_leaves_nothing_behind() -> None:
    swarm = Swarm(seed=1)
    swarm.create_network("tiny", subnet="10.9.0.0/29")  # five addresses

    with pytest.raises(SwarmError, match="no address left"):
        create(swarm, "web", 5, networks=["tiny"])  # the VIP takes one
    created = create(swarm, "web", 4, networks=["tiny"])

    assert swarm.services == (created,)


def test_a_failed_scale_changes_nothing() -> None:
    swarm = Swarm(seed=1)
    swarm.create_network("tiny", subnet="10.9.0.0/29")
    before = create(swarm, "web", 2, networks=["tiny"])

    with pytest.raises(SwarmError, match="no address left"):
        swarm.scale("web", 5)

    assert swarm.service("web") == before
    assert len(swarm.scale("web", 3).tasks) == 3  # the one address left (.5 went to the LB)


def test_a_failed_node_addition_changes_nothing() -> None:
    swarm = Swarm(seed=1)
    swarm.create_network("tiny", subnet="10.9.0.0/29")
    create(swarm, "agent", None, networks=["tiny"], endpoint_mode="dnsrr")
    for _ in range(2):  # each node takes a task address and a load-balancer address
        swarm.add_node()

    with pytest.raises(SwarmError, match="no address left"):
        swarm.add_node()

    assert len(swarm.nodes) == 3
    assert len(swarm.service("agent").tasks) == 3


def test_snapshots_cannot_change_the_swarm() -> None:
    swarm = Swarm(seed=1)
    web = create(swarm, "web", 1)
    task = swarm.service("web").tasks[0]

    with pytest.raises(TypeError):
        task.addresses["proxy"] = IPv4Address("6.6.6.6")  # type: ignore[index]
    with pytest.raises(TypeError):
        swarm.service("web").vips["proxy"] = IPv4Address("6.6.6.6")  # type: ignore[index]
    assert swarm.service("web") == web


@pytest.mark.parametrize("task", [5, None, 1.5])
def test_a_task_is_named_by_value_address_or_string(task: object) -> None:
    swarm = Swarm(seed=1)
    create(swarm, "web")

    with pytest.raises(
        TypeError, match=r"a task is the fake's Task, a swarmdns\.Task, its address .* or its ID"
    ):
        swarm.kill_task(task)  # type: ignore[arg-type]


# -- room before allocation ------------------------------------------------------------


def peak_allocated(action: Callable[[], object]) -> int:
    """The most bytes ``action`` held at once (tracemalloc), whether it raised or not."""
    tracemalloc.start()
    try:
        with contextlib.suppress(SwarmError):
            action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_service_larger_than_its_network_is_refused_before_anything_is_allocated() -> None:
    swarm = Swarm(seed=1)

    peak = peak_allocated(lambda: create(swarm, "web", 1_000_000))

    # Before the check, one placement per requested replica: tens of megabytes.
    assert peak < 1 << 20
    with pytest.raises(SwarmError) as refused:
        create(swarm, "web", 1_000_000)
    message = str(refused.value)
    for part in ("'web'", "1000000 tasks", "'proxy'", "253 free", "no address left"):
        assert part in message
    assert swarm.services == ()
    assert swarm.networks == ()  # nothing created for a service that could not be


def test_scaling_past_the_networks_room_is_refused_before_anything_is_allocated() -> None:
    swarm = Swarm(seed=1)
    before = create(swarm, "web", 3)

    peak = peak_allocated(lambda: swarm.scale("web", 1_000_000))

    assert peak < 1 << 20
    with pytest.raises(SwarmError) as refused:
        swarm.scale("web", 1_000_000)
    message = str(refused.value)
    # 253 addresses: the VIP, 3 tasks and node-1's load balancer took 5.
    for part in ("'web'", "from 3 to 1000000", "999997 new addresses", "248 free", "10.0.1.0/24"):
        assert part in message
    assert swarm.service("web") == before


def test_a_network_with_room_to_spare_still_caps_replicas() -> None:
    swarm = Swarm(seed=1)
    swarm.create_network("huge", subnet="11.0.0.0/8")

    with pytest.raises(SwarmError, match=f"'web': 10001 replicas .* \\({MAX_REPLICAS}\\)"):
        create(swarm, "web", MAX_REPLICAS + 1, networks=["huge"])
    create(swarm, "web", 3, networks=["huge"])
    with pytest.raises(SwarmError, match="at most 10000"):
        swarm.scale("web", MAX_REPLICAS + 1)
    assert len(swarm.service("web").tasks) == 3


def test_the_room_is_exactly_what_the_network_has_left() -> None:
    swarm = Swarm(seed=1)
    swarm.create_network("tiny", subnet="10.9.0.0/29")  # five addresses

    create(swarm, "web", 4, networks=["tiny"])  # the VIP and four tasks: full
    with pytest.raises(SwarmError, match="'tiny', which has 0 free"):
        swarm.scale("web", 5)
    assert len(swarm.scale("web", 2).tasks) == 2
    assert len(swarm.scale("web", 4).tasks) == 4


def test_force_update_replaces_every_task_in_its_slot_and_fills_empty_ones() -> None:
    swarm = Swarm(seed=1)
    swarm.add_node()
    web = create(swarm, "web", 4)
    assert isinstance(web, Service)
    killed = swarm.kill_task(web.tasks[1])

    updated = swarm.force_update("web")

    assert [t.slot for t in updated.tasks] == [1, 2, 3, 4]
    assert [t.node_id for t in updated.tasks] == [t.node_id for t in web.tasks]
    assert not {t.id for t in updated.tasks} & {t.id for t in web.tasks}
    assert not set(updated.task_ips) & set(web.task_ips)
    assert updated.vip == web.vip
    assert len(killed.tasks) == 3


def test_force_update_without_room_changes_nothing() -> None:
    swarm = Swarm(seed=1)
    swarm.create_network("tiny", subnet="10.9.0.0/29")  # five addresses
    create(swarm, "web", 3, networks=["tiny"])  # VIP, three tasks, the load balancer
    before = swarm.service("web")
    swarm.kill_task(before.tasks[0])
    swarm.create_service(
        "db",
        1,
        networks=["tiny"],
        endpoint_mode="dnsrr",
        aliases=(),
        healthcheck=False,
        stack=None,
    )  # the last address

    killed = swarm.service("web")
    with pytest.raises(SwarmError, match="no address left"):
        swarm.force_update("web")  # three tasks for the two addresses released
    assert swarm.service("web") == killed
    with pytest.raises(SwarmError, match="no address left"):
        create(swarm, "more", 1, networks=["tiny"], endpoint_mode="dnsrr")  # all still taken
