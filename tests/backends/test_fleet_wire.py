"""The fleet's fast path: address values read off the wire, and a repeat taken cheaply."""

from __future__ import annotations

import random
import struct
from datetime import datetime, timedelta, timezone
from ipaddress import IPv4Address

import dns.message
import dns.rcode
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmdns import Question, ResolutionError, WatchTimeout
from swarmdns._backends import wire
from swarmdns._backends.direct import Exchange
from swarmdns._backends.nameserver import Nameserver
from swarmdns._model import SortedAddresses
from swarmdns._watch import WatchCore

QUERY = wire.build_query("tasks.web.", wire.TYPE_A, 0x1234)
#: The OPT record that ends every query (EDNS0), which the engine does not echo.
OPT_SIZE = 11
QUESTION = QUERY[12 : len(QUERY) - OPT_SIZE]
OWNER = QUESTION[:-4]
QR, AA, TC, RA = 0x8000, 0x0400, 0x0200, 0x0080
WEB = Question(name="tasks.web.", rdtype="A")
SERVERS = (Nameserver("127.0.0.11"), Nameserver("127.0.0.12", 5353))


def record(address: str, *, owner: bytes = b"\xc0\x0c", rdtype: int = 1, ttl: int = 600) -> bytes:
    data = IPv4Address(address).packed if rdtype == 1 else bytes(16)
    return owner + struct.pack("!HHIH", rdtype, 1, ttl, len(data)) + data


def reply(
    *records: bytes,
    query: bytes = QUERY,
    rcode: int = 0,
    flags: int = QR | RA,
    question: bytes | None = None,
) -> bytes:
    echoed = query[12 : len(query) - OPT_SIZE] if question is None else question
    header = struct.pack("!HHHHHH", int.from_bytes(query[:2], "big"), flags | rcode, 1, 0, 0, 0)
    header = header[:6] + struct.pack("!H", len(records)) + header[8:]
    return header + echoed + b"".join(records)


def as_ints(data: bytes, query: bytes = QUERY) -> tuple[int, ...] | None:
    """What ``read_reply`` reads in ``data``, as ``read_values`` should give it."""
    fast = wire.read_reply(data, query, wire.TYPE_A)
    if fast is None:
        return None
    return tuple(int(address) for address in fast.records)


def values(*addresses: str) -> tuple[int, ...]:
    return tuple(sorted({int(IPv4Address(address)) for address in addresses}))


USUAL = {
    "pointers": reply(record("10.0.1.4"), record("10.0.1.3")),
    "names written out": reply(record("10.0.1.4", owner=OWNER), record("10.0.1.3", owner=OWNER)),
    "duplicates": reply(record("10.0.1.3"), record("10.0.1.3"), record("10.0.0.9")),
    "various TTLs": reply(record("10.0.1.3", ttl=0), record("10.0.1.4", ttl=2**31)),
    "question in capitals": reply(
        record("10.0.1.3", owner=OWNER.upper()), question=QUESTION.upper()
    ),
    "authoritative": reply(record("10.0.1.3"), flags=QR | AA),
    "one": reply(record("255.255.255.255")),
    "empty": reply(),
    "nxdomain": reply(rcode=3),
}


@pytest.mark.parametrize("shape", list(USUAL))
def test_read_values_are_read_replys_addresses_as_integers(shape: str) -> None:
    data = USUAL[shape]

    found = wire.read_values(data, QUERY)

    assert found is not None
    assert found == as_ints(data)
    assert list(found) == sorted(set(found))


def test_read_values_of_the_usual_answers() -> None:
    assert wire.read_values(USUAL["pointers"], QUERY) == values("10.0.1.3", "10.0.1.4")
    assert wire.read_values(USUAL["duplicates"], QUERY) == values("10.0.0.9", "10.0.1.3")
    assert wire.read_values(USUAL["one"], QUERY) == (2**32 - 1,)
    assert wire.read_values(USUAL["empty"], QUERY) == ()
    assert wire.read_values(USUAL["nxdomain"], QUERY) == ()


UNUSUAL = {
    "truncated": reply(record("10.0.1.3"), flags=QR | RA | TC),
    "truncated and empty": reply(flags=QR | RA | TC),
    "AAAA records": reply(record("10.0.1.3", rdtype=28)),
    "an A record among others": reply(record("10.0.1.3"), record("10.0.1.4", rdtype=28)),
    "nxdomain with records": reply(record("10.0.1.3"), rcode=3),
    "servfail": reply(rcode=2),
    "not a response": reply(record("10.0.1.3"), flags=RA),
    "another ID": b"\x43\x21" + reply(record("10.0.1.3"))[2:],
    "another question": reply(record("10.0.1.3"), question=b"\x02db\x00\x00\x01\x00\x01"),
    "owners written two ways": reply(record("10.0.1.3"), record("10.0.1.4", owner=OWNER)),
    "a record cut short": reply(record("10.0.1.3"))[:-1],
    "a byte too many": reply(record("10.0.1.3")) + b"\x00",
    "records under NOERROR counted short": reply(record("10.0.1.3"), record("10.0.1.4"))[:-16],
    "header only": reply()[:12],
}


@pytest.mark.parametrize("shape", list(UNUSUAL))
def test_read_values_hands_back_what_is_not_the_usual_shape(shape: str) -> None:
    data = UNUSUAL[shape]

    assert wire.read_values(data, QUERY) is None
    assert wire.read_reply(data, QUERY, wire.TYPE_A) is None


def test_read_values_hands_back_an_answer_carrying_edns() -> None:
    message = dns.message.make_response(dns.message.from_wire(QUERY))
    message.answer.append(
        dns.rrset.from_text_list(message.question[0].name, 600, "IN", "A", ["10.0.1.3"])
    )

    assert wire.read_values(message.to_wire(), QUERY) is None


@settings(max_examples=300)
@given(
    addresses=st.lists(st.integers(0, 2**32 - 1), max_size=40),
    pointed=st.booleans(),
    rcode=st.sampled_from([0, 3]),
)
def test_read_values_agree_with_read_reply(
    addresses: list[int], pointed: bool, rcode: int
) -> None:
    owner = b"\xc0\x0c" if pointed else OWNER
    written = [record(str(IPv4Address(a)), owner=owner) for a in addresses]
    data = reply(*written, rcode=rcode)

    found = wire.read_values(data, QUERY)

    assert found == as_ints(data)
    if rcode == 3 and addresses:
        assert found is None
    else:
        assert found == tuple(sorted(set(addresses)))


def test_addresses_of_gives_sorted_addresses_shared_between_calls() -> None:
    first = wire.addresses_of(values("10.0.1.3", "10.0.1.4"))
    second = wire.addresses_of(values("10.0.1.4", "10.0.1.3"))

    assert isinstance(first, SortedAddresses)
    assert first == (IPv4Address("10.0.1.3"), IPv4Address("10.0.1.4"))
    assert all(a is b for a, b in zip(first, second, strict=True))
    assert wire.addresses_of(()) == ()
    assert isinstance(wire.addresses_of(()), SortedAddresses)


# -- Exchange.usual_values ----------------------------------------------------------


def exchange(
    servers: tuple[Nameserver, ...] = SERVERS, question: Question = WEB, query_id: int = 0x1234
) -> Exchange:
    made = Exchange(question, servers, 2.0, query_id=query_id)
    assert made.next_request() is not None
    return made


def test_an_exchange_asks_with_the_id_given() -> None:
    assert exchange(query_id=0xBEEF).wire[:2] == b"\xbe\xef"
    assert exchange().wire == QUERY


@pytest.mark.parametrize("shape", list(USUAL))
def test_usual_values_are_what_handle_wire_reads(shape: str) -> None:
    data = USUAL[shape]
    fast, slow = exchange(), exchange()

    found = fast.usual_values(data)
    slow.handle_wire(data)

    assert found is not None
    assert found == tuple(int(a) for a in slow.result().records)
    assert fast.next_request() is None  # the exchange is over
    assert slow.next_request() is None


@pytest.mark.parametrize("shape", list(UNUSUAL))
def test_usual_values_hand_back_what_is_not_the_usual_shape(shape: str) -> None:
    fast = exchange()

    assert fast.usual_values(UNUSUAL[shape]) is None
    assert fast.next_request() is not None  # not over: handle_wire decides


def test_usual_values_hand_back_a_truncated_answer_so_that_tcp_is_next() -> None:
    fast = exchange()
    data = UNUSUAL["truncated"]

    assert fast.usual_values(data) is None
    fast.handle_wire(data)

    request = fast.next_request()
    assert request is not None
    assert (request.server, request.tcp) == (SERVERS[0], True)


def test_usual_values_hand_back_an_answer_over_tcp() -> None:
    fast = exchange()
    fast.handle_wire(UNUSUAL["truncated"])
    request = fast.next_request()
    assert request is not None
    assert request.tcp

    assert fast.usual_values(USUAL["pointers"]) is None

    fast.handle_wire(USUAL["pointers"])
    assert [str(a) for a in fast.result().records] == ["10.0.1.3", "10.0.1.4"]


@pytest.mark.parametrize("after", ["SERVFAIL", "a refused connection"])
@pytest.mark.parametrize("shape", ["pointers", "empty", "nxdomain"])
def test_usual_values_hand_back_an_answer_after_a_failure(after: str, shape: str) -> None:
    fast = exchange((SERVERS[1], SERVERS[0]))
    if after == "SERVFAIL":
        fast.handle_wire(UNUSUAL["servfail"])
    else:
        fast.handle_error(ConnectionRefusedError(111, "Connection refused"))
    request = fast.next_request()
    assert request is not None
    assert request.server == SERVERS[0]

    assert fast.usual_values(USUAL[shape]) is None

    fast.handle_wire(USUAL[shape])
    assert fast.next_request() is None
    if shape == "pointers":
        assert [str(a) for a in fast.result().records] == ["10.0.1.3", "10.0.1.4"]
    else:  # no tasks from another server after a failure proves nothing
        with pytest.raises(ResolutionError):
            fast.result()


def test_usual_values_are_for_a_questions_only() -> None:
    name = "3.1.0.10.in-addr.arpa."
    ptr = exchange(question=Question(name=name, rdtype="PTR"))
    data = reply(query=ptr.wire)  # an empty NOERROR: the usual shape, but PTR

    assert ptr.usual_values(data) is None


# -- WatchCore.repeated -----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class WallClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def watch(
    clock: Clock | None = None, wall: WallClock | None = None, **options: object
) -> WatchCore:
    settings: dict[str, object] = {"query_name": "tasks.web.", "jitter": 0.0}
    settings.update(options)
    return WatchCore(
        "web",
        clock=clock or Clock(),
        wall_clock=wall or WallClock(),
        rng=random.Random(1),
        **settings,  # type: ignore[arg-type]
    )


def ips(*last_octets: int) -> tuple[IPv4Address, ...]:
    return tuple(IPv4Address(f"10.0.1.{n}") for n in sorted(last_octets))


def failure() -> ResolutionError:
    return ResolutionError("SERVFAIL", name="tasks.web.", nameserver="127.0.0.11:53")


def test_nothing_repeats_before_the_first_success() -> None:
    core = watch()

    assert core.repeated() is False
    assert core.health.last_success is None
    assert core.started is False


def test_a_repeat_moves_the_last_success_and_changes_nothing_else() -> None:
    wall = WallClock()
    core = watch(wall=wall)
    core.succeeded(ips(3, 4))
    wall.now += timedelta(seconds=2)

    assert core.repeated() is True

    assert core.health.last_success == wall.now
    assert core.health.consecutive_failures == 0
    assert core.current == ips(3, 4)
    assert core.succeeded(ips(3, 4)) is None


def test_a_repeat_is_a_success_for_fail_after() -> None:
    clock = Clock()
    core = watch(clock, fail_after=10.0)
    core.succeeded(ips(3))
    clock.now += 8
    assert core.repeated() is True

    clock.now += 7  # 15 s since the first success, 7 since the repeat
    core.failed(failure())

    clock.now += 3.5  # 10.5 s since the repeat
    with pytest.raises(WatchTimeout):
        core.failed(failure())


def test_no_repeat_while_a_removal_is_pending() -> None:
    wall = WallClock()
    core = watch(wall=wall, removal_debounce=2)
    core.succeeded(ips(3, 4))
    core.succeeded(ips(3))  # 4 missing once
    before = core.health.last_success
    wall.now += timedelta(seconds=2)

    assert core.repeated() is False

    assert core.health.last_success == before
    change = core.succeeded(ips(3))  # the caller's part: missing twice
    assert change is not None
    assert change.removed == frozenset(ips(4))
    assert core.repeated() is True


def test_no_repeat_after_a_failure() -> None:
    wall = WallClock()
    core = watch(wall=wall)
    core.succeeded(ips(3))
    error = failure()
    core.failed(error)
    before = core.health.last_success
    wall.now += timedelta(seconds=2)

    assert core.repeated() is False

    health = core.health
    assert (health.consecutive_failures, health.last_success) == (1, before)
    assert health.last_error is error
    core.succeeded(ips(3))
    assert core.health.consecutive_failures == 0
    assert core.repeated() is True
