"""Where the fake listens, across stop() and start(): the ports it keeps, and forgets."""

from __future__ import annotations

import errno
import os
import socket
import threading

import pytest

import swarmdns
from swarmdns.testing import FakeSwarm, NodeDelays

from .dns_clients import ask_dnspython
from .ports import occupy


def test_a_stopped_fake_can_start_again() -> None:
    swarm = FakeSwarm()
    with swarm:
        swarm.create_service("web")
    with swarm:
        assert ask_dnspython(swarm, "web").rcode == "NOERROR"


def test_a_restart_keeps_the_port_so_the_nameserver_variable_stays_true(
    swarm_dns: FakeSwarm,
) -> None:
    port = swarm_dns.port
    variable = os.environ[swarmdns.NAMESERVER_VARIABLE]

    swarm_dns.stop()
    swarm_dns.start()
    web = swarm_dns.create_service("web", replicas=2)

    assert (swarm_dns.port, swarm_dns.nameserver) == (port, variable)
    assert swarmdns.task_ips("web", timeout=5) == web.task_ips  # through the variable
    for transport in ("udp", "tcp"):
        assert len(ask_dnspython(swarm_dns, "tasks.web", transport=transport).values) == 2


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM], ids=["udp", "tcp"])
def test_a_restart_on_a_port_taken_meanwhile_names_the_port(kind: socket.SocketKind) -> None:
    swarm = FakeSwarm().start()
    port = swarm.port
    swarm.stop()
    threads = set(threading.enumerate())

    with occupy(port, kind), pytest.raises(OSError, match="in use") as raised:
        swarm.start()

    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message
    assert "where it listened before stop()" in message
    assert "something else took the port meanwhile" in message
    assert raised.value.errno == errno.EADDRINUSE
    assert not swarm.running
    assert set(threading.enumerate()) == threads
    with swarm:  # the port is free again: the same one
        assert swarm.port == port


def test_forget_ports_lets_a_restart_take_free_ports_where_its_own_are_taken() -> None:
    swarm = FakeSwarm(nodes=2, delays=NodeDelays.INSTANT).start()
    web = swarm.create_service("web", replicas=2)
    control = swarm.serve_control()
    before = [node.port or 0 for node in swarm.nodes]
    swarm.stop()
    taken = [
        *(occupy(port, socket.SOCK_DGRAM) for port in before),
        occupy(int(control.rsplit(":", 1)[1]), socket.SOCK_STREAM),
    ]
    try:
        with pytest.raises(OSError, match="in use"):
            swarm.start()  # on the ports it had: taken

        swarm.forget_ports()

        with swarm:
            after = [node.port for node in swarm.nodes]
            assert not set(before) & set(after)
            assert swarm.control_address not in (None, control)  # reopened, elsewhere
            for node in swarm.nodes:  # the Swarm is kept
                backend = swarmdns.DirectBackend([node.nameserver])
                assert swarmdns.task_ips("web", backend=backend, timeout=5) == web.task_ips
    finally:
        for sock in taken:
            sock.close()


def test_forget_ports_leaves_a_running_fake_where_it_is(swarm_dns: FakeSwarm) -> None:
    nameserver = swarm_dns.nameserver

    with pytest.raises(RuntimeError, match=r"running at .*: stop\(\) it before forget_ports"):
        swarm_dns.forget_ports()

    assert swarm_dns.running
    assert swarm_dns.nameserver == nameserver
