"""FakeSwarm's own checks on what it is asked to do."""

from __future__ import annotations

import pytest

from swarmdns.testing import FakeSwarm, SwarmError

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


def test_mode_is_checked(swarm_dns: FakeSwarm) -> None:
    with pytest.raises(SwarmError, match="'replicated' or 'global'"):
        swarm_dns.create_service("web", mode="daemon")


@pytest.mark.parametrize("port", [-1, 65536, "53", True])
def test_port_is_checked(port: object) -> None:
    with pytest.raises(ValueError, match="port must be a whole number"):
        FakeSwarm(port=port).start()  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [-1, True, 1.5, "100"])
def test_query_log_is_checked(size: object) -> None:
    with pytest.raises(ValueError, match="query_log is how many queries to keep"):
        FakeSwarm(query_log=size)  # type: ignore[arg-type]


def test_upstream_is_checked() -> None:
    with pytest.raises(TypeError, match="Upstream member"):
        FakeSwarm(upstream="nxdomain")  # type: ignore[arg-type]


def test_a_stopped_fake_can_start_again() -> None:
    swarm = FakeSwarm()
    with swarm:
        swarm.create_service("web")
    with swarm:
        assert ask_dnspython(swarm, "web").rcode == "NOERROR"


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
