"""Fuzzed datagrams never crash the fake or stop it answering."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import get_args

import dns.message
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmdns.testing import FakeSwarm, Transport, _wire
from swarmdns.testing._responder import Responder
from swarmdns.testing._swarm import Swarm
from swarmdns.testing._zone import ZoneBuilder

from .dns_clients import ask_dnspython

#: How long the fake may take to read what it was sent, or to answer, on a
#: machine as loaded as a full test run makes it: a deadline for a fake that
#: stopped answering, not a measure of speed (loopback loses no datagram).
LIVENESS_DEADLINE = 60.0

VALID = [
    dns.message.make_query(name, rdtype, use_edns=edns).to_wire()
    for name, rdtype, edns in [
        ("tasks.web", "A", 0),
        ("web", "AAAA", False),
        ("3.1.0.10.in-addr.arpa", "PTR", 0),
        ("tasks.web.proxy", "A", False),
    ]
]


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    buffer = bytearray(data)
    for position, value in edits:
        buffer[position % len(buffer)] = value
    return bytes(buffer[: max(0, len(buffer) - cut)])


datagrams = st.one_of(
    st.binary(max_size=600),
    st.builds(
        mutate,
        st.sampled_from(VALID),
        st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
        st.integers(0, 12),
    ),
)


@pytest.fixture(scope="module")
def responder() -> Responder:
    swarm = Swarm(seed=1)
    swarm.create_service(
        "web",
        25,
        networks=["proxy"],
        endpoint_mode="vip",
        aliases=(),
        healthcheck=False,
        stack=None,
    )
    responder = Responder(seed=1)
    responder.zone = ZoneBuilder().build(swarm)
    return responder


@settings(max_examples=1500, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=datagrams, transport=st.sampled_from(get_args(Transport)))
def test_every_reply_is_well_formed(
    responder: Responder, data: bytes, transport: Transport
) -> None:
    reply = responder.respond(data, transport)

    if reply.data is not None:
        message = dns.message.from_wire(reply.data)
        assert message.id == int.from_bytes(data[:2], "big")
        assert message.flags & dns.flags.QR
        if transport == "udp":
            try:
                payload = _wire.parse_query(data).udp_payload or 0
            except _wire.QueryFormatError:
                payload = 0  # an error reply: a bare header
            assert len(reply.data) <= max(512, payload)


@pytest.fixture(scope="module")
def live() -> Iterator[FakeSwarm]:
    with FakeSwarm(seed=1) as swarm:
        swarm.create_service("web", replicas=3)
        yield swarm


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(datagrams, min_size=1, max_size=5))
def test_the_server_keeps_answering(live: FakeSwarm, batch: list[bytes]) -> None:
    seen = live.count_queries()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for data in batch:
            sock.sendto(data, (live.host, live.port))
    # Every datagram is read and logged before the probe is sent: datagrams
    # from two sockets may reach the fake in either order on a loaded machine.
    live.wait_for_queries(seen + len(batch), timeout=LIVENESS_DEADLINE)

    answer = ask_dnspython(live, "tasks.web", timeout=LIVENESS_DEADLINE)

    assert len(answer.values) == 3
    assert live.count_queries() == seen + len(batch) + 1  # each logged once
    assert live.internal_errors == ()


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    stream=st.one_of(
        st.binary(max_size=300), st.builds(lambda d: len(d).to_bytes(2, "big") + d, datagrams)
    )
)
def test_tcp_streams_never_stop_the_server(live: FakeSwarm, stream: bytes) -> None:
    with socket.create_connection((live.host, live.port), timeout=LIVENESS_DEADLINE) as sock:
        sock.sendall(stream)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):
            pass  # read whatever comes until the server hangs up

    answer = ask_dnspython(live, "tasks.web", transport="tcp", timeout=LIVENESS_DEADLINE)

    assert len(answer.values) == 3
    assert live.internal_errors == ()
