"""``watch --metrics``: its HTTP server, which slow, idle or too many clients cannot starve."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator

import pytest

from swarmdns._cli.metrics_server import MAX_CONNECTIONS, MAX_HEAD, MetricsServer, answer
from swarmdns.testing import FakeSwarm

from .helpers import DEADLINE, Spawn, free_port, scrape


def exposition(accept: str) -> tuple[bytes, str]:
    return f"up 1 # {accept}\n".encode(), "text/plain; version=0.0.4"


def failing(accept: str) -> tuple[bytes, str]:
    raise RuntimeError("the collector broke")


# -- the answers, without a server ---------------------------------------------------------


def test_a_scrape_gets_the_exposition_for_its_accept_header() -> None:
    response = answer(b"GET /metrics?x=1 HTTP/1.1\r\nHost: h\r\nAccept: text/plain", exposition)

    head, _, body = response.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    assert b"Content-Type: text/plain; version=0.0.4" in head
    assert b"Content-Length: %d" % len(body) in head
    assert b"Connection: close" in head
    assert body == b"up 1 # text/plain\n"


def test_head_gets_the_headers_only() -> None:
    response = answer(b"HEAD /metrics HTTP/1.1", exposition)

    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Content-Length: %d" % len(b"up 1 # \n") in head
    assert body == b""


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"POST /metrics HTTP/1.1", b"405 Method Not Allowed"),
        (b"GET / HTTP/1.1", b"404 Not Found"),
        (b"GET /metricsx HTTP/1.1", b"404 Not Found"),
        (b"\x16\x03\x01 TLS hello", b"400 Bad Request"),
        (b"", b"400 Bad Request"),
    ],
)
def test_other_requests_get_an_error_status(request_head: bytes, status: bytes) -> None:
    assert answer(request_head, exposition).startswith(b"HTTP/1.1 " + status + b"\r\n")


def test_a_collector_that_fails_is_one_scrape_failing() -> None:
    response = answer(b"GET /metrics HTTP/1.1", failing)

    assert response.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert b"the collector broke" in response


# -- the server, in this process -------------------------------------------------------------


@contextlib.contextmanager
def serving(**options: float) -> Iterator[MetricsServer]:
    with MetricsServer(("127.0.0.1", 0), exposition, **options) as server:  # type: ignore[arg-type]
        yield server


def connect(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    client.settimeout(DEADLINE)
    return client


def closed_by_server(client: socket.socket) -> bool:
    """Whether the server closed ``client``: it reads the end of the stream (or a reset)."""
    try:
        return client.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_connection_over_the_bound_closes_the_oldest() -> None:
    with serving(max_connections=4, request_seconds=DEADLINE * 2) as server:
        clients = [connect(server.port) for _ in range(5)]
        try:
            assert closed_by_server(clients[0])
            assert "up 1" in scrape(server.port)  # and one more, the second
            assert closed_by_server(clients[1])
        finally:
            for client in clients:
                client.close()


def trickled_into(client: socket.socket) -> bool:
    """One more byte of a header sent; whether the server has closed ``client`` since."""
    try:
        client.send(b"y")
        return client.recv(1) == b""
    except TimeoutError:  # open still
        return False
    except (BrokenPipeError, ConnectionResetError):
        return True


def test_a_connection_that_trickles_is_closed_at_its_deadline() -> None:
    with serving(request_seconds=0.2) as server, connect(server.port) as client:
        client.sendall(b"GET /metrics HTTP/1.1\r\nX: ")
        client.settimeout(0.01)  # a byte every hundredth of a second: each recv would wait less
        deadline = time.monotonic() + DEADLINE
        closed = False
        while not closed and time.monotonic() < deadline:
            closed = trickled_into(client)

        assert closed, "the trickling connection was still open at the test's deadline"


def test_a_request_head_longer_than_the_bound_is_refused() -> None:
    with serving() as server, connect(server.port) as client:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            client.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"y" * (MAX_HEAD + 1))
        reply = client.recv(100)

    assert reply.startswith(b"HTTP/1.1 431 ")


def test_an_idle_connection_is_closed_at_its_deadline() -> None:
    with serving(request_seconds=0.1) as server, connect(server.port) as client:
        assert closed_by_server(client)


def test_an_ipv6_address_is_listened_on() -> None:
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6")
    try:
        server = MetricsServer(("::1", 0), exposition)
    except OSError as error:  # a container without IPv6 on loopback
        pytest.skip(f"no IPv6 loopback here: {error}")
    with server, socket.create_connection(("::1", server.port), timeout=DEADLINE) as client:
        client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
        reply = client.recv(100)

    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")


# -- through the command line ------------------------------------------------------------------


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_port_alone_serves_on_loopback_only(swarm_dns: FakeSwarm, spawn: Spawn) -> None:
    swarm_dns.create_service("web", replicas=2)
    port = free_port()
    watch = spawn("watch", "web", "--interval", "0.05", "--metrics", str(port))

    watch.line()  # the initial set: the metrics server is up by now

    assert 'swarmdns_tasks{service="web"} 2.0' in scrape(port)
    # 127.0.0.2 is this machine too: a server on 0.0.0.0 would answer there.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=DEADLINE).close()


def test_many_idle_and_trickling_connections_neither_starve_scrapes_nor_take_descriptors(
    swarm_dns: FakeSwarm, spawn: Spawn
) -> None:
    swarm_dns.create_service("web", replicas=2)
    port = free_port()
    watch = spawn("watch", "web", "--interval", "0.05", "--metrics", f"127.0.0.1:{port}")
    watch.line()
    before = descriptors(watch.popen.pid)
    clients = [connect(port) for _ in range(1000)]  # as many as took a watch down before
    try:
        for client in clients:  # the start of a request that never ends
            with contextlib.suppress(OSError):
                client.send(b"G")
        first = scrape(port)  # accepted after the 1,000: all are counted by now
        during = descriptors(watch.popen.pid)
        for client in clients:  # one more byte each: a trickle
            with contextlib.suppress(OSError):
                client.send(b"E")
        second = scrape(port)
    finally:
        for client in clients:
            client.close()

    assert 'swarmdns_tasks{service="web"} 2.0' in first
    assert 'swarmdns_tasks{service="web"} 2.0' in second
    # At most the bound more than before (with two for what the watch's lookups may hold).
    assert during <= before + MAX_CONNECTIONS + 2, (before, during)
