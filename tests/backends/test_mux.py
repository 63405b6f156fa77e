"""Many questions through one socket, on an injected clock: IDs, matching, timeouts.

No sockets: the datagrams are built here and handed to the ``Multiplexer`` as
a driver would, with the address they came from.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable
from ipaddress import IPv4Address

import dns.message
import dns.rcode
import dns.rrset
import pytest

from swarmdns import Question, ResolutionError, ResolutionTimeout
from swarmdns._backends.mux import Flight, Multiplexer
from swarmdns._backends.nameserver import Nameserver
from swarmdns._model import Answer
from swarmdns._provenance import EngineRules

ENGINE = Nameserver("127.0.0.11", engine=EngineRules(checked=False))
OTHER = Nameserver("127.0.0.12", 5353)
WEB = Question(name="tasks.web.", rdtype="A")
DB = Question(name="tasks.db.", rdtype="A")
#: The OPT record that ends every query (EDNS0), which the engine does not echo.
OPT_SIZE = 11
NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3
QR, TC, RA = 0x8000, 0x0200, 0x0080


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Ids(random.Random):
    """Query IDs in the order given, to force collisions."""

    def __new__(cls, *ids: int) -> Ids:  # Python 3.10's Random.__new__ takes one seed
        return super().__new__(cls)

    def __init__(self, *ids: int) -> None:
        super().__init__(0)
        self.ids = list(ids)

    def getrandbits(self, k: int, /) -> int:
        assert k == 16
        return self.ids.pop(0)


def query_id(flight: Flight[str]) -> int:
    return int.from_bytes(flight.exchange.wire[:2], "big")


def reply(
    flight: Flight[str],
    *addresses: str,
    rcode: int = NOERROR,
    flags: int = QR | RA,
    question: bytes | None = None,
) -> bytes:
    """The engine's reply to the flight's query: its ID, the question echoed, A records."""
    query = flight.exchange.wire
    echoed = query[12 : len(query) - OPT_SIZE] if question is None else question
    records = b"".join(
        b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 600, 4) + IPv4Address(address).packed
        for address in addresses
    )
    header = struct.pack("!HHHHHH", query_id(flight), flags | rcode, 1, len(addresses), 0, 0)
    return header + echoed + records


def dnspython_reply(
    flight: Flight[str], rcode: dns.rcode.Rcode, *, recursion_available: bool
) -> bytes:
    message = dns.message.make_response(flight.exchange.query, recursion_available)
    message.set_rcode(rcode)
    return message.to_wire()


def values(*addresses: str) -> tuple[int, ...]:
    return tuple(sorted({int(IPv4Address(address)) for address in addresses}))


def over(flight: Flight[str]) -> bool:
    """Whether the flight is over (read through a call: mypy keeps no narrowing of it)."""
    return flight.request is None


def records(flight: Flight[str]) -> list[str]:
    """The records of the Answer a flight ended with (the way after a failure)."""
    outcome = flight.outcome()
    assert isinstance(outcome, Answer), outcome
    return [str(record) for record in outcome.records]


def source(server: Nameserver) -> tuple[str, int]:
    return (server.host, server.port)


def mux(clock: Clock | None = None, *ids: int) -> Multiplexer[str]:
    return Multiplexer(clock=clock or Clock(), rng=Ids(*ids) if ids else random.Random(7))


def start(
    multiplexer: Multiplexer[str],
    key: str = "web",
    question: Question = WEB,
    servers: Iterable[Nameserver] = (ENGINE,),
    timeout: float = 2.0,
) -> Flight[str]:
    return multiplexer.start(key, question, tuple(servers), timeout)


# -- query IDs -----------------------------------------------------------------


def test_the_first_request_goes_over_udp_to_the_first_server_with_its_share() -> None:
    multiplexer = mux()

    flight = start(multiplexer, servers=(ENGINE, OTHER), timeout=2.0)

    assert flight.key == "web"
    assert flight.request is not None
    assert (flight.request.server, flight.request.tcp, flight.request.timeout) == (
        ENGINE,
        False,
        1.0,
    )
    assert len(multiplexer) == 1
    assert multiplexer.next_expiry() == 1001.0


def test_a_query_carries_the_id_the_rng_gave() -> None:
    flight = start(mux(None, 0xBEEF))

    assert query_id(flight) == 0xBEEF
    assert dns.message.from_wire(flight.exchange.wire).id == 0xBEEF


def test_ids_are_unique_among_the_flights_waiting() -> None:
    multiplexer = mux(None, 7, 7, 7, 9, 9, 11)

    first = start(multiplexer, "web", WEB)
    second = start(multiplexer, "db", DB)
    third = start(multiplexer, "cache", Question(name="tasks.cache.", rdtype="A"))

    assert [query_id(f) for f in (first, second, third)] == [7, 9, 11]
    assert len(multiplexer) == 3
    assert multiplexer.received(reply(second, "10.0.2.1"), source(ENGINE)) is second
    assert multiplexer.received(reply(first, "10.0.1.1"), source(ENGINE)) is first
    assert (first.outcome(), second.outcome()) == (values("10.0.1.1"), values("10.0.2.1"))


def test_an_id_is_free_again_once_its_flight_is_over() -> None:
    multiplexer = mux(None, 7, 7)
    first = start(multiplexer, "web", WEB)
    multiplexer.received(reply(first), source(ENGINE))

    second = start(multiplexer, "db", DB)

    assert query_id(second) == 7
    assert multiplexer.received(reply(first), source(ENGINE)) is None  # web's, late
    assert multiplexer.received(reply(second, "10.0.2.1"), source(ENGINE)) is second


def test_a_flight_back_from_tcp_never_takes_the_id_of_another_waiting_flight() -> None:
    # web goes to TCP, which frees its ID for db; web's TCP fails, and web
    # asks the next server over UDP again: both must still be matched.
    clock = Clock()
    multiplexer = mux(clock, 7, 7, 8, 9, 10)
    web = start(multiplexer, "web", WEB, servers=(ENGINE, OTHER))
    multiplexer.received(reply(web, flags=QR | RA | TC), source(ENGINE))
    db = start(multiplexer, "db", DB, servers=(ENGINE, OTHER))

    multiplexer.answered(web, ConnectionRefusedError(111, "Connection refused"))

    assert web.request is not None
    assert (web.request.server, web.request.tcp) == (OTHER, False)
    assert len(multiplexer) == 2
    assert multiplexer.received(reply(db, "10.0.2.1"), source(ENGINE)) is db
    assert db.outcome() == values("10.0.2.1")
    assert multiplexer.received(reply(web, "10.0.1.1"), source(OTHER)) is web
    assert records(web) == ["10.0.1.1"]


def test_a_flight_back_from_tcp_leaves_every_other_flight_its_timer() -> None:
    clock = Clock()
    multiplexer = mux(clock, 7, 7, 8, 9, 10)
    web = start(multiplexer, "web", WEB, servers=(ENGINE, OTHER))
    multiplexer.received(reply(web, flags=QR | RA | TC), source(ENGINE))
    db = start(multiplexer, "db", DB, servers=(ENGINE,))
    multiplexer.answered(web, ConnectionRefusedError(111, "Connection refused"))

    clock.now += 10
    moved = multiplexer.expired(clock.now)

    assert db in moved
    assert db.request is None
    assert isinstance(db.outcome(), ResolutionTimeout)


# -- what is not an answer -------------------------------------------------------


def datagrams_that_are_no_answer(flight: Flight[str]) -> dict[str, tuple[bytes, tuple[str, int]]]:
    good = reply(flight, "10.0.1.3")
    other_id = struct.pack("!H", (query_id(flight) + 1) % 65536) + good[2:]
    query = flight.exchange.wire
    not_a_response = struct.pack("!H", 0x0100) + good[4:]
    return {
        "unknown ID": (other_id, source(ENGINE)),
        "another host": (good, ("127.0.0.12", 53)),
        "another port": (good, ("127.0.0.11", 5353)),
        "another question": (
            reply(flight, "10.0.1.3", question=b"\x05tasks\x02db\x00\x00\x01\x00\x01"),
            source(ENGINE),
        ),
        "another type": (
            reply(flight, question=query[12 : len(query) - OPT_SIZE - 4] + b"\x00\x1c\x00\x01"),
            source(ENGINE),
        ),
        "QR clear": (good[:2] + not_a_response, source(ENGINE)),
        # The engine's own SERVFAIL echoes the question; this one could be anyone's.
        "SERVFAIL without RA or question": (good[:2] + b"\x81\x02" + bytes(8), source(ENGINE)),
        "a header cut short": (good[:8], source(ENGINE)),
        "empty": (b"", source(ENGINE)),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unknown ID",
        "another host",
        "another port",
        "another question",
        "another type",
        "QR clear",
        "SERVFAIL without RA or question",
        "a header cut short",
        "empty",
    ],
)
def test_a_datagram_that_is_no_answer_is_dropped_and_the_flight_waits_on(case: str) -> None:
    multiplexer = mux(None, 0x0102)
    flight = start(multiplexer)
    request = flight.request
    data, sender = datagrams_that_are_no_answer(flight)[case]

    assert multiplexer.received(data, sender) is None

    assert flight.request is request
    assert len(multiplexer) == 1
    assert multiplexer.next_expiry() == 1002.0
    assert multiplexer.received(reply(flight, "10.0.1.3"), source(ENGINE)) is flight
    assert flight.outcome() == values("10.0.1.3")


def test_the_question_echoed_in_another_case_is_an_answer() -> None:
    multiplexer = mux()
    flight = start(multiplexer)
    query = flight.exchange.wire

    data = reply(flight, "10.0.1.3", question=query[12 : len(query) - OPT_SIZE].upper())

    assert multiplexer.received(data, source(ENGINE)) is flight
    assert flight.request is None


def test_an_answer_from_the_server_asked_before_is_dropped() -> None:
    clock = Clock()
    multiplexer = mux(clock)
    flight = start(multiplexer, servers=(ENGINE, OTHER))
    clock.now += 1.0
    multiplexer.expired(clock.now)  # on to OTHER

    assert multiplexer.received(reply(flight, "10.0.1.3"), source(ENGINE)) is None
    assert multiplexer.received(reply(flight, "10.0.1.4"), source(OTHER)) is flight
    assert records(flight) == ["10.0.1.4"]


def test_an_ipv6_source_is_matched_by_host_and_port() -> None:
    server = Nameserver("::1", 5353)
    multiplexer = mux()
    flight = start(multiplexer, servers=(server,))

    assert multiplexer.received(reply(flight), ("::1", 53, 0, 0)) is None
    assert multiplexer.received(reply(flight, "10.0.1.3"), ("::1", 5353, 0, 0)) is flight


# -- answers ---------------------------------------------------------------------


def test_the_usual_answer_ends_the_flight_with_sorted_distinct_values() -> None:
    multiplexer = mux()
    flight = start(multiplexer)

    moved = multiplexer.received(
        reply(flight, "10.0.1.9", "10.0.1.3", "10.0.1.9", "10.0.0.200"), source(ENGINE)
    )

    assert moved is flight
    assert flight.request is None
    assert flight.outcome() == values("10.0.0.200", "10.0.1.3", "10.0.1.9")
    assert len(multiplexer) == 0
    assert multiplexer.next_expiry() is None
    assert multiplexer.expired(5000.0) == []


@pytest.mark.parametrize("rcode", [NXDOMAIN, NOERROR])
def test_no_records_are_no_tasks(rcode: int) -> None:
    multiplexer = mux()
    flight = start(multiplexer)

    multiplexer.received(reply(flight, rcode=rcode), source(ENGINE))

    assert flight.request is None
    assert flight.outcome() == ()


def test_a_truncated_answer_is_asked_again_over_tcp_of_the_same_server() -> None:
    clock = Clock()
    multiplexer = mux(clock)
    flight = start(multiplexer, servers=(ENGINE, OTHER))
    clock.now += 0.25

    moved = multiplexer.received(reply(flight, "10.0.1.3", flags=QR | RA | TC), source(ENGINE))

    assert moved is flight
    assert flight.request is not None
    assert (flight.request.server, flight.request.tcp) == (ENGINE, True)
    assert flight.request.timeout == 1.75 / 2
    assert len(multiplexer) == 0
    assert multiplexer.next_expiry() is None  # the driver times TCP itself
    assert multiplexer.expired(clock.now + 100) == []
    # No datagram is the answer any more, not even the usual one.
    assert multiplexer.received(reply(flight, "10.0.1.3"), source(ENGINE)) is None

    multiplexer.answered(flight, reply(flight, "10.0.1.4", "10.0.1.3"))

    assert over(flight)
    outcome = flight.outcome()
    assert isinstance(outcome, Answer)
    assert outcome.records == (IPv4Address("10.0.1.3"), IPv4Address("10.0.1.4"))
    assert (outcome.nxdomain, outcome.nameserver) == (False, "127.0.0.11:53")


def test_a_tcp_answer_truncated_again_moves_on_to_the_next_server_over_udp() -> None:
    multiplexer = mux()
    flight = start(multiplexer, servers=(ENGINE, OTHER))
    multiplexer.received(reply(flight, flags=QR | RA | TC), source(ENGINE))

    multiplexer.answered(flight, reply(flight, "10.0.1.3", flags=QR | RA | TC))

    assert flight.request is not None
    assert (flight.request.server, flight.request.tcp) == (OTHER, False)
    assert len(multiplexer) == 1
    assert multiplexer.received(reply(flight, "10.0.1.3"), source(OTHER)) is flight
    assert records(flight) == ["10.0.1.3"]


def test_a_failed_connection_moves_on_to_the_next_server() -> None:
    multiplexer = mux()
    flight = start(multiplexer, servers=(ENGINE, OTHER))

    multiplexer.answered(flight, ConnectionRefusedError(111, "Connection refused"))

    assert flight.request is not None
    assert (flight.request.server, flight.request.tcp) == (OTHER, False)
    assert len(multiplexer) == 1
    assert multiplexer.received(reply(flight, "10.0.1.3"), source(ENGINE)) is None
    assert multiplexer.received(reply(flight, "10.0.1.3"), source(OTHER)) is flight


def test_a_failed_connection_to_the_last_server_is_the_outcome() -> None:
    multiplexer = mux()
    flight = start(multiplexer)

    multiplexer.answered(flight, ConnectionRefusedError(111, "Connection refused"))

    assert flight.request is None
    assert len(multiplexer) == 0
    assert multiplexer.next_expiry() is None
    outcome = flight.outcome()
    assert isinstance(outcome, ResolutionError)
    assert "Connection refused" in str(outcome)
    assert outcome.nameserver == "127.0.0.11:53"


def test_no_tasks_from_the_next_server_after_a_failure_is_the_failure() -> None:
    multiplexer = mux()
    flight = start(multiplexer, servers=(OTHER, ENGINE))
    multiplexer.received(
        dnspython_reply(flight, dns.rcode.SERVFAIL, recursion_available=True), source(OTHER)
    )

    multiplexer.received(reply(flight, rcode=NXDOMAIN), source(ENGINE))

    assert flight.request is None
    outcome = flight.outcome()
    assert isinstance(outcome, ResolutionError)
    assert "127.0.0.12:5353 answered SERVFAIL" in str(outcome)


def test_tasks_from_the_next_server_after_a_failure_are_the_answer() -> None:
    multiplexer = mux()
    flight = start(multiplexer, servers=(OTHER, ENGINE))
    multiplexer.received(
        dnspython_reply(flight, dns.rcode.SERVFAIL, recursion_available=True), source(OTHER)
    )

    multiplexer.received(reply(flight, "10.0.1.3"), source(ENGINE))

    assert records(flight) == ["10.0.1.3"]


@pytest.mark.parametrize("recursion_available", [True, False])
def test_servfail_from_a_nameserver_that_is_not_the_engine_is_a_failure(
    recursion_available: bool,
) -> None:
    multiplexer = mux()
    flight = start(multiplexer, servers=(OTHER,))

    moved = multiplexer.received(
        dnspython_reply(flight, dns.rcode.SERVFAIL, recursion_available=recursion_available),
        source(OTHER),
    )

    assert moved is flight
    assert flight.request is None
    outcome = flight.outcome()
    assert isinstance(outcome, ResolutionError)
    assert "SERVFAIL" in str(outcome)


@pytest.mark.parametrize("rcode", [dns.rcode.SERVFAIL, dns.rcode.REFUSED])
def test_the_engine_failing_without_ra_disowns_the_name(rcode: dns.rcode.Rcode) -> None:
    multiplexer = mux()
    flight = start(multiplexer, servers=(ENGINE, OTHER))

    multiplexer.received(dnspython_reply(flight, rcode, recursion_available=False), source(ENGINE))

    assert flight.request is None
    assert len(multiplexer) == 0
    outcome = flight.outcome()
    assert isinstance(outcome, Answer)
    assert (outcome.records, outcome.nxdomain) == ((), True)


def test_the_engine_failing_with_ra_is_a_failure() -> None:
    multiplexer = mux()
    flight = start(multiplexer, servers=(ENGINE, OTHER))

    multiplexer.received(
        dnspython_reply(flight, dns.rcode.SERVFAIL, recursion_available=True), source(ENGINE)
    )

    assert flight.request is not None
    assert flight.request.server == OTHER


def test_an_unusual_answer_goes_through_dnspython() -> None:
    multiplexer = mux()
    flight = start(multiplexer)
    message = dns.message.make_response(flight.exchange.query)  # with EDNS: unusual
    message.answer.append(
        dns.rrset.from_text_list(message.question[0].name, 600, "IN", "A", ["10.0.1.3"])
    )
    assert message.edns == 0

    assert multiplexer.received(message.to_wire(), source(ENGINE)) is flight

    assert flight.values is None
    assert records(flight) == ["10.0.1.3"]


# -- time --------------------------------------------------------------------------


def test_a_silent_server_passes_the_question_on_after_its_share() -> None:
    clock = Clock()
    multiplexer = mux(clock)
    flight = start(multiplexer, servers=(ENGINE, OTHER), timeout=2.0)

    assert multiplexer.expired(1000.999) == []
    assert multiplexer.next_expiry() == 1001.0
    clock.now = 1001.0
    assert multiplexer.expired(clock.now) == [flight]

    assert flight.request is not None
    assert (flight.request.server, flight.request.tcp, flight.request.timeout) == (
        OTHER,
        False,
        1.0,
    )
    assert len(multiplexer) == 1
    assert multiplexer.next_expiry() == 1002.0

    clock.now = 1002.0
    assert multiplexer.expired(clock.now) == [flight]

    assert over(flight)
    assert len(multiplexer) == 0
    assert multiplexer.next_expiry() is None
    outcome = flight.outcome()
    assert isinstance(outcome, ResolutionTimeout)
    assert outcome.nameserver == "127.0.0.12:5353"


def test_a_late_look_at_the_timers_ends_the_flight_at_once() -> None:
    clock = Clock()
    multiplexer = mux(clock)
    flight = start(multiplexer, servers=(ENGINE, OTHER), timeout=2.0)
    clock.now = 1010.0

    assert multiplexer.expired(clock.now) == [flight]

    assert flight.request is None
    assert isinstance(flight.outcome(), ResolutionTimeout)


def test_only_the_flights_timed_out_move_on() -> None:
    clock = Clock()
    multiplexer = mux(clock)
    web = start(multiplexer, "web", WEB)
    clock.now = 1000.5
    db = start(multiplexer, "db", DB)

    clock.now = 1002.0
    assert multiplexer.expired(clock.now) == [web]

    assert db.request is not None
    assert len(multiplexer) == 1
    assert multiplexer.next_expiry() == 1002.5


def test_the_timer_of_an_answered_flight_is_stale() -> None:
    clock = Clock()
    multiplexer = mux(clock)
    web = start(multiplexer, "web", WEB)
    clock.now = 1000.5
    db = start(multiplexer, "db", DB)
    multiplexer.received(reply(web, "10.0.1.3"), source(ENGINE))

    assert multiplexer.expired(1002.49) == []  # web's timer, at 1002.0, is stale
    assert multiplexer.expired(1002.5) == [db]
    assert web.outcome() == values("10.0.1.3")


def test_next_expiry_skips_the_timer_of_an_answered_flight() -> None:
    clock = Clock()
    multiplexer = mux(clock)
    web = start(multiplexer, "web", WEB)
    clock.now = 1000.5
    start(multiplexer, "db", DB)
    multiplexer.received(reply(web, "10.0.1.3"), source(ENGINE))

    assert multiplexer.next_expiry() == 1002.5  # not web's 1002.0


def test_the_timer_of_a_request_that_failed_is_stale() -> None:
    # The first server refused at once; the second one's share is timed anew.
    clock = Clock()
    multiplexer = mux(clock)
    flight = start(multiplexer, servers=(ENGINE, OTHER), timeout=2.0)
    clock.now = 1000.5
    multiplexer.answered(flight, ConnectionRefusedError(111, "Connection refused"))

    assert multiplexer.expired(1001.0) == []  # the first request's timer
    assert flight.request is not None
    assert flight.request.server == OTHER
    assert len(multiplexer) == 1
    assert multiplexer.next_expiry() == 1002.0
    assert multiplexer.expired(1002.0) == [flight]


def test_an_abandoned_flight_is_forgotten() -> None:
    clock = Clock()
    multiplexer = mux(clock)
    flight = start(multiplexer)

    multiplexer.abandon(flight)

    assert flight.request is None
    assert len(multiplexer) == 0
    assert multiplexer.next_expiry() is None
    assert multiplexer.expired(clock.now + 100) == []
    assert multiplexer.received(reply(flight, "10.0.1.3"), source(ENGINE)) is None


def test_abandoning_a_tcp_flight_leaves_the_waiting_ones() -> None:
    multiplexer = mux(None, 7, 7, 8)
    web = start(multiplexer, "web", WEB)
    multiplexer.received(reply(web, flags=QR | RA | TC), source(ENGINE))
    db = start(multiplexer, "db", DB)

    multiplexer.abandon(web)

    assert web.request is None
    assert len(multiplexer) == 1
    assert multiplexer.received(reply(db, "10.0.2.1"), source(ENGINE)) is db


def test_a_flight_shows_where_it_is() -> None:
    multiplexer = mux()
    flight = start(multiplexer)

    assert repr(flight) == "<Flight 'tasks.web.' asking 127.0.0.11:53>"
    multiplexer.received(reply(flight), source(ENGINE))
    assert repr(flight) == "<Flight 'tasks.web.' over>"
