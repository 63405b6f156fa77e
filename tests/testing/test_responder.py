"""The decisions behind each reply, and injected faults, without sockets."""

from __future__ import annotations

import struct
import threading
import tracemalloc

import dns.message
import dns.rcode
import pytest

from swarmdns.testing import ENGINES, Delay, EngineVersion, Fault, Outcome, Transport, Upstream
from swarmdns.testing._engines import engine_profile
from swarmdns.testing._responder import FaultTable, QueryLog, QueryRecord, Responder
from swarmdns.testing._swarm import Swarm
from swarmdns.testing._zone import ZoneBuilder


@pytest.fixture
def responder() -> Responder:
    swarm = Swarm(seed=1)
    swarm.create_service(
        "web",
        3,
        networks=["proxy"],
        endpoint_mode="vip",
        aliases=(),
        healthcheck=False,
        stack=None,
    )
    responder = Responder(seed=1, clock=lambda: 42.0)
    responder.zone = ZoneBuilder().build(swarm)
    return responder


def ask(
    responder: Responder, name: str, rdtype: str = "A", transport: Transport = "udp"
) -> dns.message.Message | None:
    query = dns.message.make_query(name, rdtype)
    reply = responder.respond(query.to_wire(), transport)
    if reply.data is None:
        return None
    return dns.message.from_wire(reply.data, ignore_trailing=False)


def rcode(message: dns.message.Message | None) -> str | None:
    return None if message is None else dns.rcode.to_text(message.rcode())


def test_logs_each_query_with_its_outcome(responder: Responder) -> None:
    ask(responder, "Tasks.Web")
    ask(responder, "nope", "AAAA", transport="tcp")
    responder.respond(b"\x00", "udp")

    assert responder.log.snapshot() == (
        QueryRecord(
            name="Tasks.Web",
            qtype="A",
            transport="udp",
            outcome=Outcome.NOERROR,
            answers=3,
            received=42.0,
        ),
        QueryRecord(
            name="nope", qtype="AAAA", transport="tcp", outcome=Outcome.NXDOMAIN, received=42.0
        ),
        QueryRecord(
            name=None, qtype=None, transport="udp", outcome=Outcome.NO_REPLY, received=42.0
        ),
    )


def test_global_fault_applies_to_every_name(responder: Responder) -> None:
    responder.faults.inject(Fault.SERVFAIL, None)

    assert rcode(ask(responder, "web")) == "SERVFAIL"
    assert rcode(ask(responder, "unknown")) == "SERVFAIL"
    assert [r.outcome for r in responder.log.snapshot()] == [Outcome.SERVFAIL] * 2


def test_name_fault_applies_to_that_name_in_any_case(responder: Responder) -> None:
    responder.faults.inject(Fault.REFUSED, "Tasks.Web.")

    assert rcode(ask(responder, "TASKS.web")) == "REFUSED"
    assert rcode(ask(responder, "web")) == "NOERROR"


def test_sequence_is_used_up_then_answers_resume(responder: Responder) -> None:
    responder.faults.inject([Fault.SERVFAIL, Fault.NO_REPLY], "tasks.web")

    outcomes = [rcode(ask(responder, "tasks.web")) for _ in range(3)]

    assert outcomes == ["SERVFAIL", None, "NOERROR"]


def test_name_fault_comes_before_the_global_one(responder: Responder) -> None:
    responder.faults.inject(Fault.SERVFAIL, None)
    responder.faults.inject([Fault.REFUSED], "web")

    assert [rcode(ask(responder, "web")) for _ in range(2)] == ["REFUSED", "SERVFAIL"]


def test_clearing_one_name_keeps_the_others(responder: Responder) -> None:
    responder.faults.inject(Fault.SERVFAIL, "web")
    responder.faults.inject(Fault.SERVFAIL, "tasks.web")
    responder.faults.clear("WEB")

    assert rcode(ask(responder, "web")) == "NOERROR"
    assert rcode(ask(responder, "tasks.web")) == "SERVFAIL"


def test_delay_answers_normally_later(responder: Responder) -> None:
    responder.faults.inject(Delay(0.25), "web")
    query = dns.message.make_query("web", "A")

    reply = responder.respond(query.to_wire(), "udp")

    assert reply.delay == 0.25
    assert reply.data is not None
    assert dns.message.from_wire(reply.data).answer
    assert responder.log.snapshot()[-1].delay == 0.25


def test_garbage_cannot_be_parsed(responder: Responder) -> None:
    responder.faults.inject(Fault.GARBAGE, None)
    query = dns.message.make_query("tasks.web", "A")

    reply = responder.respond(query.to_wire(), "udp")

    assert reply.data is not None
    assert reply.data[:2] == query.to_wire()[:2]
    with pytest.raises(dns.exception.FormError):
        dns.message.from_wire(reply.data)
    assert responder.log.snapshot()[-1].outcome is Outcome.GARBAGE


def test_wrong_id_is_a_correct_answer_under_another_id(responder: Responder) -> None:
    responder.faults.inject(Fault.WRONG_ID, None)
    query = dns.message.make_query("tasks.web", "A")

    reply = responder.respond(query.to_wire(), "udp")

    assert reply.data is not None
    message = dns.message.from_wire(reply.data)
    assert message.id != query.id
    assert len(message.answer[0]) == 3
    assert not query.is_response(message)


@pytest.mark.parametrize(
    "bad",
    [[], [Fault.SERVFAIL, "servfail"], "servfail", None],
    ids=["empty", "mixed", "str", "none"],
)
def test_inject_rejects_what_is_not_a_fault(bad: object) -> None:
    with pytest.raises(TypeError, match="Fault, a Delay"):
        FaultTable().inject(bad, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", ".", 5])
def test_inject_rejects_an_empty_name(name: object) -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        FaultTable().inject(Fault.SERVFAIL, name)  # type: ignore[arg-type]


@pytest.mark.parametrize("seconds", [-1, 3601, float("nan")])
def test_delay_must_be_sensible(seconds: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 3600"):
        Delay(seconds)


@pytest.mark.parametrize("upstream", [Upstream.NO_REPLY, Upstream.UNREACHABLE])
def test_an_engine_without_upstream_still_answers_swarm_names(
    responder: Responder, upstream: Upstream
) -> None:
    responder.engine = engine_profile("20.10")
    responder.upstream = upstream

    assert ask(responder, "example.org") is None
    assert rcode(ask(responder, "web")) == "NOERROR"
    assert responder.log.snapshot()[0].outcome is Outcome.NO_REPLY


@pytest.mark.parametrize("name", ["web", "3.0.0.10.IN-ADDR.ARPA"])
def test_ptr_for_a_name_outside_the_reverse_zones_gets_no_reply_from_20_10(
    responder: Responder, name: str
) -> None:
    # The PTR handler of 20.10 fails on these (its suffix test is case-sensitive).
    responder.engine = engine_profile("20.10")

    assert ask(responder, name, "PTR") is None


def test_ptr_under_ip6_arpa_is_forwarded(responder: Responder) -> None:
    assert rcode(ask(responder, "1.0.0.0.ip6.arpa", "PTR")) == "NXDOMAIN"


def test_network_suffix_must_be_spelled_like_the_network(responder: Responder) -> None:
    assert rcode(ask(responder, "TASKS.WEB.proxy")) == "NOERROR"
    assert rcode(ask(responder, "tasks.web.PROXY")) == "NXDOMAIN"


def test_class_is_not_checked(responder: Responder) -> None:
    query = dns.message.make_query("web", "A", rdclass="CH")

    reply = responder.respond(query.to_wire(), "udp")

    assert reply.data is not None
    message = dns.message.from_wire(reply.data)
    assert message.answer[0].rdclass == dns.rdataclass.IN


@pytest.mark.parametrize(
    ("data", "outcome"),
    [
        (struct.pack("!HHHHHH", 9, 0x0100, 0, 0, 0, 0), Outcome.FORMERR),
        (struct.pack("!HHHHHH", 9, 0x2900, 1, 0, 0, 0), Outcome.NOTIMP),
        (struct.pack("!HHHHHH", 9, 0x8100, 1, 0, 0, 0), Outcome.NO_REPLY),
    ],
)
def test_malformed_queries_are_answered_or_dropped(
    responder: Responder, data: bytes, outcome: Outcome
) -> None:
    reply = responder.respond(data, "udp")

    assert responder.log.snapshot()[-1].outcome is outcome
    if outcome is Outcome.NO_REPLY:
        assert reply.data is None
    else:
        assert reply.data is not None
        assert reply.data[:2] == b"\x00\x09"


def test_log_wait_returns_once_enough_arrived() -> None:
    log = QueryLog()
    record = QueryRecord(
        name="web", qtype="A", transport="udp", outcome=Outcome.NOERROR, received=0.0
    )

    def write() -> None:
        for _ in range(3):
            log.append(record)

    writer = threading.Thread(target=write)
    writer.start()

    got = log.wait(3, name="WEB.", timeout=5.0)
    writer.join()

    assert got == (record,) * 3


def test_log_wait_times_out_with_a_useful_message() -> None:
    log = QueryLog()
    log.append(
        QueryRecord(name="db", qtype="A", transport="udp", outcome=Outcome.NOERROR, received=0.0)
    )

    with pytest.raises(TimeoutError, match=r"received 0 of 1 queries for 'web' within 0.01 s"):
        log.wait(1, name="web", timeout=0.01)


def a_record(number: int, name: str | None = None) -> QueryRecord:
    return QueryRecord(
        name=f"n{number}.example" if name is None else name,
        qtype="A",
        transport="udp",
        outcome=Outcome.NXDOMAIN,
        received=float(number),
    )


def test_the_query_log_stays_bounded_however_many_queries_arrive() -> None:
    # A fake that runs for hours (swarmdns serve, a long session) receives
    # millions of messages: the log keeps the newest ones, in constant memory.
    log = Responder().log

    def fill(start: int, stop: int) -> None:
        for number in range(start, stop):  # every name different, as from a fuzzer
            log.append(a_record(number))

    tracemalloc.start()
    try:
        fill(0, 20_000)  # more than the log holds: from here on it is full
        before, _ = tracemalloc.get_traced_memory()
        fill(20_000, 220_000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    kept = log.snapshot()
    assert grown < 1_000_000, f"the log grew by {grown:,} bytes over 200,000 queries"
    assert len(kept) == 10_000  # the documented default
    assert [r.received for r in kept[::9_999]] == [210_000.0, 219_999.0]


def test_waiting_counts_every_query_even_those_the_log_no_longer_holds() -> None:
    log = QueryLog(size=100)

    def write() -> None:
        for number in range(1_000):
            log.append(a_record(number, "web" if number % 2 else "db"))

    writer = threading.Thread(target=write)
    writer.start()
    got = log.wait(1_000, name=None, timeout=30.0)
    writer.join()

    assert [r.received for r in got] == [float(n) for n in range(900, 1_000)]
    assert log.count() == 1_000
    assert log.count("WEB.") == 500
    assert len(log.wait(500, name="web", timeout=0.0)) == 50
    with pytest.raises(TimeoutError, match=r"received 500 of 501 queries for 'db'"):
        log.wait(501, name="db", timeout=0.01)

    log.clear()

    assert (log.snapshot(), log.count(), log.count("web")) == ((), 0, 0)


def test_a_fault_can_target_one_query_type(responder: Responder) -> None:
    responder.faults.inject([Fault.SERVFAIL], "tasks.web", "a")

    assert rcode(ask(responder, "tasks.web", "AAAA")) == "NOERROR"  # not used up by AAAA
    assert rcode(ask(responder, "tasks.web", "A")) == "SERVFAIL"
    assert rcode(ask(responder, "tasks.web", "A")) == "NOERROR"


def test_a_type_fault_applies_to_every_name(responder: Responder) -> None:
    responder.faults.inject(Fault.REFUSED, None, "PTR")

    assert rcode(ask(responder, "3.1.0.10.in-addr.arpa", "PTR")) == "REFUSED"
    assert rcode(ask(responder, "web")) == "NOERROR"


@pytest.mark.parametrize(
    ("qtype", "error"), [("BOGUS", ValueError), ("", TypeError), (1, TypeError)]
)
def test_an_unknown_type_is_refused(qtype: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        FaultTable().inject(Fault.SERVFAIL, None, qtype)  # type: ignore[arg-type]


def test_delay_must_be_a_number() -> None:
    with pytest.raises(TypeError, match="number of seconds"):
        Delay("1")  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ENGINES)
def test_udp_answers_never_exceed_the_largest_datagram(engine: EngineVersion) -> None:
    # 5,000 records: over 65,507 bytes even with every owner compressed.
    swarm = Swarm(seed=1)
    swarm.create_network("huge", subnet="10.64.0.0/18")
    swarm.create_service(
        "web",
        5000,
        networks=["huge"],
        endpoint_mode="dnsrr",
        aliases=(),
        healthcheck=False,
        stack=None,
    )
    responder = Responder(seed=1, engine=engine)
    responder.zone = ZoneBuilder().build(swarm)
    query = dns.message.make_query("tasks.web", "A", use_edns=0, payload=65535)

    reply = responder.respond(query.to_wire(), "udp")

    assert reply.data is not None
    assert len(reply.data) <= 65507
    assert dns.message.from_wire(reply.data).flags & dns.flags.TC


@pytest.mark.parametrize("engine", ["26.1", "28.5"])
def test_engines_24_and_newer_forward_ptr_they_cannot_handle(
    responder: Responder, engine: str
) -> None:
    responder.engine = engine_profile(engine)

    assert rcode(ask(responder, "web", "PTR")) == "NXDOMAIN"


def test_reverse_names_with_leading_zeros_are_forwarded(responder: Responder) -> None:
    assert rcode(ask(responder, "3.1.0.10.in-addr.arpa", "PTR")) == "NOERROR"
    assert rcode(ask(responder, "003.001.000.010.in-addr.arpa", "PTR")) == "NXDOMAIN"


def test_the_same_question_under_another_id_gets_its_own_id(responder: Responder) -> None:
    query = dns.message.make_query("tasks.WEB", "A")
    for query_id in (1, 2, 0xFFFF):
        query.id = query_id
        data = responder.respond(query.to_wire(), "udp").data
        assert data is not None

        reply = dns.message.from_wire(data)

        assert query.is_response(reply)
        assert str(reply.question[0].name) == "tasks.WEB."  # the case as sent, each time
        assert len(reply.answer[0]) == 3


def test_a_new_zone_is_answered_from_at_once(responder: Responder) -> None:
    swarm = Swarm(seed=2)
    first = ask(responder, "tasks.web")
    swarm.create_service(
        "web", 5, networks=["proxy"], endpoint_mode="vip", aliases=(), healthcheck=False,
        stack=None,
    )  # fmt: skip

    responder.zone = ZoneBuilder().build(swarm)
    second = ask(responder, "tasks.web")

    assert first is not None
    assert second is not None
    assert len(first.answer[0]) == 3
    assert len(second.answer[0]) == 5


def test_answers_are_shuffled_each_time(responder: Responder) -> None:
    orders = set()
    for _ in range(30):
        reply = ask(responder, "tasks.web")
        assert reply is not None
        orders.add(tuple(rdata.to_text() for rdata in reply.answer[0]))

    assert len(orders) > 1
    assert len({frozenset(order) for order in orders}) == 1


def large_query(number: int, size: int = 60_000) -> bytes:
    """A query for ``web`` padded to ``size`` bytes with an EDNS option, different per number."""
    question = dns.message.make_query("web", "A").to_wire()[12:]
    option = number.to_bytes(4, "big") * ((size - 12 - len(question) - 11) // 4)
    opt = b"\x00" + struct.pack("!HHIH", 41, 4096, 0, len(option)) + option
    return struct.pack("!HHHHHH", number & 0xFFFF, 0x0100, 1, 0, 0, 1) + question + opt


def test_queries_padded_to_tens_of_kilobytes_are_answered_but_not_kept(
    responder: Responder,
) -> None:
    for number in range(3):  # parsed once, answered the same each time
        first, again = (responder.respond(large_query(number), "tcp") for _ in range(2))
        assert first.data is not None
        assert first.data[2:] == (again.data or b"")[2:]
        assert dns.rcode.to_text(dns.message.from_wire(first.data).rcode()) == "NOERROR"

    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for number in range(3, 303):  # distinct datagrams, each dropped once answered
            responder.respond(large_query(number), "udp")
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    # Kept whole, 300 such datagrams held 18 MB until 4,096 others came.
    assert kept < 1_000_000, f"the responder kept {kept:,} bytes of 300 answered queries"
    assert responder.log.count("web") == 306
