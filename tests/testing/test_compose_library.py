"""swarmdns itself against the fakes: Compose lookups, whoami() and exclude_self through inside().

Each test asks through ``SWARMDNS_NAMESERVER`` (the fixtures set it) or a
``DirectBackend`` at the fake, as an application in a container would.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import swarmdns
from swarmdns._memo import clear_caches
from swarmdns.testing import FakeCompose, FakeSwarm


def test_tasks_under_compose_are_the_containers_with_their_identity(
    compose_dns: FakeCompose,
) -> None:
    web = compose_dns.create_service("web", scale=3)

    found = swarmdns.tasks("web")

    assert sorted(found, key=lambda t: t.ip) == sorted(
        (c.as_dns() for c in web.containers), key=lambda t: t.ip
    )
    assert {(t.project, t.service) for t in found} == {("proj", "web")}
    assert sorted(t.slot or 0 for t in found) == [1, 2, 3]


def test_task_ips_under_compose_follow_scale_kill_and_start(compose_dns: FakeCompose) -> None:
    compose_dns.create_service("web", scale=3)
    first = compose_dns.containers("web")[0]

    compose_dns.scale("web", 2)
    scaled = swarmdns.task_ips("web")
    compose_dns.kill_container(first)
    killed = swarmdns.task_ips("web")
    compose_dns.start_container(first)
    started = swarmdns.task_ips("web")

    assert scaled == compose_dns.service("web").ips
    assert first.ip not in killed
    assert len(killed) == 1
    assert started == scaled


def test_a_compose_service_scaled_to_zero_has_no_containers(compose_dns: FakeCompose) -> None:
    compose_dns.create_service("web")
    compose_dns.scale("web", 0)

    assert swarmdns.task_ips("web") == ()


def test_compose_has_no_virtual_ip(compose_dns: FakeCompose) -> None:
    compose_dns.create_service("web")

    with pytest.raises(swarmdns.NoVirtualIP, match="Compose"):
        swarmdns.service_vip("web")


def test_whoami_inside_a_compose_container(compose_dns: FakeCompose) -> None:
    compose_dns.create_service("web", scale=2)

    with compose_dns.inside("proj-web-2") as me:
        told = swarmdns.whoami()

    assert told == me.as_dns()
    assert (told.name, told.slot, told.project) == ("proj-web-2", 2, "proj")


def test_exclude_self_inside_a_compose_container(compose_dns: FakeCompose) -> None:
    web = compose_dns.create_service("web", scale=3)

    with (
        compose_dns.inside("proj-web-1") as me,
        swarmdns.watch_tasks("web", exclude_self=True) as watch,
    ):
        first = next(watch)

    assert first.current == tuple(ip for ip in web.ips if ip != me.ip)


def test_whoami_inside_a_swarm_task(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=3)

    with swarm_dns.inside(web.tasks[2]) as me:
        told = swarmdns.whoami()
        with swarmdns.watch_tasks("web", exclude_self=True) as watch:
            first = next(watch)

    assert told == me.as_dns()
    assert (told.slot, told.task_id, told.project) == (3, me.id, None)
    assert first.current == tuple(ip for ip in web.task_ips if ip != me.ip)


@pytest.fixture
def nothing_learnt() -> Iterator[None]:
    """No runtime told before the test, and none kept after it."""
    clear_caches()
    yield
    clear_caches()


@pytest.mark.usefixtures("nothing_learnt")
def test_auto_tells_compose_from_the_containers_own_ptr(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeCompose() as compose:  # a port of its own: nothing learnt of it before
        compose.create_service("web", scale=2)
        backend = swarmdns.DirectBackend([compose.nameserver])
        with compose.inside("proj-web-1"):
            monkeypatch.setenv(swarmdns.RUNTIME_VARIABLE, "auto")
            networks = ",".join(str(n) for n in compose.engine_networks)
            monkeypatch.setenv(swarmdns.PROVENANCE_VARIABLE, networks)  # the engine
            found = swarmdns.task_ips("web", backend=backend)

    assert found == compose.service("web").ips
