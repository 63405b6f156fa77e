"""The fleet's transport: which backends get it, its TCP call, its socket, its outcomes.

Whole watches over it run in ``tests/test_watch_services_every_front_end.py``; here are its
parts, against a loopback listener or with datagrams built by the test.
"""

from __future__ import annotations

import asyncio
import random
import selectors
import socket
from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest

import swarmdns
import swarmdns.aio
from swarmdns import (
    Answer,
    ConfigurationError,
    DirectBackend,
    Question,
    StaticBackend,
    SystemBackend,
    TaskSetChange,
)
from swarmdns._backends.base import speaks_wire
from swarmdns._backends.direct import CLOSED_MID_ANSWER, Request, framed
from swarmdns._backends.fleet import FleetTraffic, TcpCall, fleet_socket, settle
from swarmdns._backends.mux import Flight, Multiplexer
from swarmdns._backends.nameserver import Nameserver
from swarmdns._fleet import FleetCore, Slot
from swarmdns._values import WatchSettings

from .hostile import HostileServer, Query, Script, add_a, addresses, response

#: Bounds a broken test's wait; never a timing expectation.
WAIT = 5.0
ENGINE = Nameserver("127.0.0.11")


# -- which backends get the one socket ----------------------------------------------


class Configured(DirectBackend):
    """A subclass that only chooses its nameservers: it still speaks the wire."""

    def nameservers(self) -> tuple[Nameserver, ...]:
        return super().nameservers()


class OwnAnswers(DirectBackend):
    """A subclass that answers in its own way, recording each question it is asked."""

    def __init__(self, nameservers: list[str]) -> None:
        super().__init__(nameservers)
        self.asked: list[str] = []

    def resolve(self, question: Question, timeout: float) -> Answer:
        self.asked.append(question.name)
        return super().resolve(question, timeout)

    async def resolve_async(self, question: Question, timeout: float) -> Answer:
        self.asked.append(question.name)
        return await super().resolve_async(question, timeout)


class Redeclared(OwnAnswers):
    """Answers in its own way, and says that its answers are still the nameservers'."""

    speaks_wire = True


class Declined(DirectBackend):
    """Keeps its base's answers, but declines the one socket."""

    speaks_wire = False


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        (DirectBackend(["127.0.0.1"]), True),
        (Configured(["127.0.0.1"]), True),
        (OwnAnswers(["127.0.0.1"]), False),
        (Redeclared(["127.0.0.1"]), True),
        (Declined(["127.0.0.1"]), False),
        (StaticBackend({}), False),
        (SystemBackend(), False),
        (object(), False),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, bool) else str(value),
)
def test_speaking_the_wire_is_declared_and_kept_by_subclasses_that_keep_the_answers(
    backend: object, expected: bool
) -> None:
    assert speaks_wire(backend) is expected


class PortServer(HostileServer):
    """Answers every name with one address; records the client of every UDP answer."""

    def __init__(self) -> None:
        super().__init__(self._answer_one)
        self.clients: list[tuple[str, int]] = []

    def _answer_one(self, query: Query) -> Script:
        return [add_a(response(query), query.name, addresses(1))]

    def _send_udp(self, data: bytes, client: tuple[str, int]) -> None:
        self.clients.append(client)
        super()._send_udp(data, client)


SERVICES = ["web", "api", "db"]


def initial_sets(backend: DirectBackend, front_end: str) -> list[TaskSetChange]:
    """Each service's first change, from a fleet watch of ``front_end`` over ``backend``."""
    options: dict[str, Any] = {"backend": backend, "interval": 60.0, "timeout": WAIT}
    if front_end == "sync":
        with swarmdns.watch_services(SERVICES, **options) as watch:
            return [next(watch) for _ in SERVICES]

    async def main() -> list[TaskSetChange]:
        async with swarmdns.aio.watch_services(SERVICES, **options) as watch:
            return [await anext(watch) for _ in SERVICES]

    return asyncio.run(main())


@pytest.fixture
def resolve_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names DirectBackend's own resolve() and resolve_async() are asked for."""
    calls: list[str] = []
    sync, asynchronous = DirectBackend.resolve, DirectBackend.resolve_async

    def resolve(self: DirectBackend, question: Question, timeout: float) -> Answer:
        calls.append(question.name)
        return sync(self, question, timeout)

    async def resolve_async(self: DirectBackend, question: Question, timeout: float) -> Answer:
        calls.append(question.name)
        return await asynchronous(self, question, timeout)

    monkeypatch.setattr(DirectBackend, "resolve", resolve)
    monkeypatch.setattr(DirectBackend, "resolve_async", resolve_async)
    return calls


@pytest.mark.parametrize("front_end", ["sync", "async"])
def test_a_subclass_of_direct_backend_gets_the_one_socket(
    front_end: str, resolve_calls: list[str]
) -> None:
    server = PortServer()
    with server:
        changes = initial_sets(Configured([server.nameserver]), front_end)

    assert sorted(change.service for change in changes) == sorted(SERVICES)
    assert len(server.clients) >= len(SERVICES)
    assert len(set(server.clients)) == 1  # every query from the one socket
    assert resolve_calls == []  # and none through resolve()


@pytest.mark.parametrize("front_end", ["sync", "async"])
def test_a_backend_that_answers_its_own_way_is_asked_each_lookup(front_end: str) -> None:
    with PortServer() as server:
        backend = OwnAnswers([server.nameserver])
        changes = initial_sets(backend, front_end)

    assert sorted(change.service for change in changes) == sorted(SERVICES)
    assert sorted(backend.asked) == sorted(f"tasks.{name}." for name in SERVICES)


# -- the TCP call ------------------------------------------------------------------


def core(*services: str) -> FleetCore:
    return FleetCore(
        services,
        WatchSettings(interval=2.0, jitter=0.0),
        excluded=frozenset(),
        clock=lambda: 1000.0,
        rng=random.Random(1),
    )


def flight_to(server: Nameserver) -> Flight[Slot]:
    (slot,) = core("web").due(1000.0)
    return Multiplexer[Slot]().start(slot, slot.question, [server], 2.0)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server


def wait_until(sock: socket.socket, events: int) -> int:
    with selectors.DefaultSelector() as selector:
        selector.register(sock, events)
        ready = selector.select(WAIT)
    assert ready, "the socket never became ready"
    return ready[0][1]


def answer_of(call: TcpCall) -> bytes:
    """Read until the call's answer is all in."""
    while (found := call.progress(wait_until(call.sock, selectors.EVENT_READ))) is None:
        pass
    return found


def connected_call(listener: socket.socket) -> tuple[TcpCall, socket.socket]:
    server = Nameserver("127.0.0.1", listener.getsockname()[1])
    call = TcpCall(flight_to(server), Request(server, True, 2.0))
    assert call.error is None
    connection, _ = listener.accept()
    connection.settimeout(WAIT)
    while not call.reading:
        call.progress(wait_until(call.sock, selectors.EVENT_WRITE))
    return call, connection


def test_a_tcp_call_sends_the_framed_query_and_reads_an_answer_in_pieces(
    listener: socket.socket,
) -> None:
    call, connection = connected_call(listener)
    with connection, call.sock:
        query = call.flight.exchange.wire
        assert connection.recv(65535) == framed(query)
        answer = b"\x12\x34" + bytes(40)
        reply = framed(answer)

        connection.sendall(reply[:3])
        assert call.progress(wait_until(call.sock, selectors.EVENT_READ)) is None
        connection.sendall(reply[3:])
        assert answer_of(call) == answer


def test_a_tcp_call_cut_off_mid_answer_fails(listener: socket.socket) -> None:
    call, connection = connected_call(listener)
    with call.sock:
        with connection:
            connection.recv(65535)
            connection.sendall(framed(bytes(40))[:10])
        with pytest.raises(EOFError, match=CLOSED_MID_ANSWER):
            answer_of(call)


def connect(call: TcpCall) -> None:
    """Carry the call up to its sending; raise how its connection failed, if it did."""
    if call.error is not None:
        raise call.error
    with call.sock:
        call.progress(wait_until(call.sock, selectors.EVENT_WRITE))


def test_a_tcp_call_to_a_closed_port_fails() -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    server = Nameserver("127.0.0.1", port)

    with pytest.raises(ConnectionRefusedError):
        connect(TcpCall(flight_to(server), Request(server, True, 2.0)))


# -- the socket and the outcomes ------------------------------------------------------


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_a_fleet_socket_is_non_blocking_udp(family: socket.AddressFamily) -> None:
    with fleet_socket(family) as sock:
        assert (sock.family, sock.type) == (family, socket.SOCK_DGRAM)
        assert sock.gettimeout() == 0.0


def reply_to(flight: Flight[Slot], *records: str, cname: bool = False) -> bytes:
    """The answer to the flight's query, with ``records`` (behind a CNAME, if asked)."""
    query = dns.message.from_wire(flight.exchange.wire)
    message = dns.message.make_response(query, recursion_available=True)
    message.use_edns(False)  # as the engine answers
    owner = query.question[0].name
    if cname:
        message.answer.append(dns.rrset.from_text(owner, 600, "IN", "CNAME", "elsewhere."))
        owner = dns.name.from_text("elsewhere.")
    if records:
        message.answer.append(dns.rrset.from_text_list(owner, 600, "IN", "A", list(records)))
    return message.to_wire()


@pytest.mark.parametrize("cname", [False, True], ids=["usual", "read-by-the-query"])
def test_settling_hands_the_addresses_to_the_fleet(cname: bool) -> None:
    fleet = core("web")
    mux = Multiplexer[Slot]()
    (slot,) = fleet.due(1000.0)
    flight = mux.start(slot, slot.question, [ENGINE], 2.0)

    data = reply_to(flight, "10.0.1.4", "10.0.1.3", cname=cname)
    assert mux.received(data, ("127.0.0.11", 53)) is flight
    assert (flight.values is not None) is not cname  # the fast path takes only the usual
    settle(fleet, flight)

    change = fleet.changes.popleft()
    assert change.service == "web"
    assert change.current == (IPv4Address("10.0.1.3"), IPv4Address("10.0.1.4"))


def test_settling_a_failure_keeps_the_set_and_counts_it() -> None:
    fleet = core("web")
    mux = Multiplexer[Slot]()
    (slot,) = fleet.due(1000.0)
    flight = mux.start(slot, slot.question, [ENGINE], 2.0)
    query = dns.message.from_wire(flight.exchange.wire)
    failed = dns.message.make_response(query, recursion_available=True)
    failed.set_rcode(dns.rcode.SERVFAIL)

    mux.received(failed.to_wire(), ("127.0.0.11", 53))
    settle(fleet, flight)

    assert not fleet.changes
    assert fleet.health["web"].consecutive_failures == 1


class Unconfigured:
    """A backend whose nameservers cannot be read."""

    speaks_wire = True

    def nameservers(self) -> tuple[Nameserver, ...]:
        raise ConfigurationError("no nameserver in /etc/resolv.conf", source="/etc/resolv.conf")


def test_nameservers_that_cannot_be_read_end_every_lookup_due() -> None:
    traffic = FleetTraffic(
        core("web", "db"),
        Unconfigured(),
        2.0,
        listen=lambda sock: None,
        ask_over_tcp=lambda flight, request: None,
    )
    try:
        with pytest.raises(ConfigurationError, match=r"resolv\.conf"):
            traffic.send_due(1000.0, 10)
        assert traffic.sockets == {}  # nothing was sent
    finally:
        traffic.close()
