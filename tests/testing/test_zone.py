"""The DNS tables projected from the Swarm model, and their reuse across changes."""

from __future__ import annotations

from swarmdns.testing._swarm import Service, Swarm
from swarmdns.testing._zone import ZoneBuilder


def create(swarm: Swarm, name: str, replicas: int, network: str) -> Service:
    return swarm.create_service(
        name,
        replicas,
        networks=[network],
        endpoint_mode="vip",
        aliases=(),
        healthcheck=False,
        stack=None,
    )


def test_zone_knows_only_visible_tasks_on_attached_networks() -> None:
    swarm = Swarm(seed=1)
    create(swarm, "web", 2, "front")
    create(swarm, "db", 1, "back")
    create(swarm, "idle", 0, "front")
    swarm.client_networks = ("front",)

    zone = ZoneBuilder().build(swarm)

    assert [n.name for n in zone.networks] == ["front"]
    assert zone.addresses("tasks.web") is not None
    assert zone.addresses("db") is None
    assert zone.addresses("idle") is None
    assert zone.addresses("tasks.idle") is None


def test_networks_are_tried_in_order_of_name_whatever_the_client_lists() -> None:
    swarm = Swarm(seed=1)
    for network in ("c", "a", "b"):
        create(swarm, f"web-{network}", 1, network)
    swarm.client_networks = ("c", "a", "gone")

    zone = ZoneBuilder().build(swarm)

    assert [n.name for n in zone.networks] == ["a", "c"]


def test_only_changed_networks_are_rebuilt() -> None:
    swarm = Swarm(seed=1)
    create(swarm, "web", 2, "front")
    create(swarm, "db", 1, "back")
    builder = ZoneBuilder()
    back, front = builder.build(swarm).networks

    swarm.scale("web", 3)
    rebuilt = builder.build(swarm)

    assert rebuilt.networks[0] is back
    assert rebuilt.networks[1] is not front
    assert len(rebuilt.addresses("tasks.web") or ()) == 3


def test_every_build_is_a_new_zone_even_when_nothing_changed() -> None:
    swarm = Swarm(seed=1)
    create(swarm, "web", 2, "front")
    builder = ZoneBuilder()

    first, second = builder.build(swarm), builder.build(swarm)

    assert first is not second
    assert first.networks[0] is second.networks[0]


def test_a_network_detached_and_attached_again_keeps_its_tables() -> None:
    swarm = Swarm(seed=1)
    create(swarm, "web", 2, "front")
    create(swarm, "db", 1, "back")
    builder = ZoneBuilder()
    (front,) = [n for n in builder.build(swarm).networks if n.name == "front"]

    swarm.client_networks = ("back",)
    builder.build(swarm)
    swarm.client_networks = None

    assert any(n is front for n in builder.build(swarm).networks)


def test_a_removed_service_is_noticed_even_with_the_same_count() -> None:
    swarm = Swarm(seed=1)
    create(swarm, "web", 1, "front")
    builder = ZoneBuilder()
    before = builder.build(swarm)

    swarm.remove_service("web")
    create(swarm, "api", 1, "front")
    after = builder.build(swarm)

    assert before.addresses("web") is not None
    assert after.addresses("web") is None
    assert after.addresses("api") is not None
