"""The default backend's exchange: EDNS, TCP fallback, nameservers, deadline."""

from __future__ import annotations

from collections.abc import Iterator

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import swarmdns
from swarmdns import (
    ConfigurationError,
    DNSPythonBackend,
    Question,
    ResolutionError,
    ResolutionTimeout,
    ServiceNotFound,
)
from swarmdns._backends.direct import Exchange, _Timeout, timed_out
from swarmdns._backends.nameserver import Nameserver
from swarmdns._provenance import EngineRules, Provenance
from swarmdns.testing import EngineVersion, FakeSwarm, Fault, Upstream

IN, A = dns.rdataclass.IN, dns.rdatatype.A
QUESTION = Question(name="tasks.web.", rdtype="A")
#: The engine, its answers taken as they come (tests/test_provenance.py checks them), and another.
SERVERS = (
    Nameserver("127.0.0.11", engine=EngineRules(checked=False)),
    Nameserver("127.0.0.12", 5353),
)


def reply(
    exchange: Exchange,
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR,
    *addresses: str,
    recursion_available: bool = True,
) -> dns.message.Message:
    """A reply as a recursive server (or the engine, for its own names) writes it: RA set."""
    message = dns.message.make_response(exchange.query, recursion_available)
    message.set_rcode(rcode)
    if addresses:
        rrset = message.find_rrset(
            message.answer, exchange.query.question[0].name, IN, A, create=True
        )
        for address in addresses:
            rrset.add(dns.rdata.from_text("IN", "A", address), 600)
    return message


def feed(exchange: Exchange, message: dns.message.Message) -> None:
    exchange.handle_wire(message.to_wire())


def test_query_is_absolute_with_edns_4096_and_recursion_desired() -> None:
    exchange = Exchange(QUESTION, SERVERS, 2.0)

    assert exchange.query.question[0].name.to_text() == "tasks.web."
    assert exchange.query.payload == 4096
    assert exchange.query.flags & dns.flags.RD


def test_truncated_answer_is_asked_again_over_tcp_of_the_same_server() -> None:
    exchange = Exchange(QUESTION, SERVERS, 2.0)
    first = exchange.next_request()
    truncated = reply(exchange, dns.rcode.NOERROR, "10.0.1.3")
    truncated.flags |= dns.flags.TC

    feed(exchange, truncated)
    second = exchange.next_request()
    feed(exchange, reply(exchange, dns.rcode.NOERROR, "10.0.1.3", "10.0.1.4"))

    assert first is not None
    assert second is not None
    assert (first.server, first.tcp, second.server, second.tcp) == (
        SERVERS[0],
        False,
        SERVERS[0],
        True,
    )
    assert exchange.next_request() is None
    assert sorted(exchange.result().records) == ["10.0.1.3", "10.0.1.4"]  # in any order


@pytest.mark.parametrize("rcode", [dns.rcode.SERVFAIL, dns.rcode.REFUSED, dns.rcode.NOTIMP])
def test_failure_moves_to_the_next_server_then_reports_the_last(rcode: dns.rcode.Rcode) -> None:
    exchange = Exchange(QUESTION, SERVERS, 2.0)
    exchange.next_request()
    feed(exchange, reply(exchange, rcode))
    request = exchange.next_request()
    assert request is not None
    assert request.server == SERVERS[1]
    exchange.handle_error(ConnectionRefusedError(111, "Connection refused"))

    assert exchange.next_request() is None
    with pytest.raises(ResolutionError, match=r"127\.0\.0\.12:5353.*Connection refused") as caught:
        exchange.result()
    assert caught.value.nameserver == "127.0.0.12:5353"


def test_second_server_can_still_answer() -> None:
    exchange = Exchange(QUESTION, SERVERS, 2.0)
    exchange.next_request()
    exchange.handle_wire(b"\x00")  # not even a header
    exchange.next_request()
    feed(exchange, reply(exchange, dns.rcode.NOERROR, "10.0.1.3"))

    answer = exchange.result()
    assert (answer.records, answer.nameserver) == (("10.0.1.3",), "127.0.0.12:5353")


@pytest.mark.parametrize("rcode", [dns.rcode.NXDOMAIN, dns.rcode.NOERROR])
def test_no_tasks_from_a_second_server_after_a_failure_is_the_failure(
    rcode: dns.rcode.Rcode,
) -> None:
    # The engine failed; another server not knowing the name proves nothing.
    exchange = Exchange(QUESTION, SERVERS, 2.0)
    exchange.next_request()
    feed(exchange, reply(exchange, dns.rcode.SERVFAIL))
    exchange.next_request()
    feed(exchange, reply(exchange, rcode))

    assert exchange.next_request() is None
    with pytest.raises(ResolutionError, match=r"127\.0\.0\.11:53 answered SERVFAIL"):
        exchange.result()


def test_a_truncated_datagram_cut_mid_record_moves_to_tcp() -> None:
    exchange = Exchange(QUESTION, SERVERS, 2.0)
    exchange.next_request()
    message = reply(exchange, dns.rcode.NOERROR, "10.0.1.3", "10.0.1.4")
    message.flags |= dns.flags.TC

    exchange.handle_wire(message.to_wire()[:-6])
    request = exchange.next_request()

    assert request is not None
    assert (request.server, request.tcp) == (SERVERS[0], True)


def test_each_server_gets_an_equal_share_of_the_time_left() -> None:
    now = [0.0]
    exchange = Exchange(QUESTION, SERVERS, 2.0, clock=lambda: now[0])
    first = exchange.next_request()
    now[0] = 0.5
    feed(exchange, reply(exchange, dns.rcode.SERVFAIL))
    second = exchange.next_request()

    assert first is not None
    assert second is not None
    assert (first.timeout, second.timeout) == (1.0, 1.5)  # the last server gets all that is left


def test_a_silent_server_passes_the_question_on_at_the_end_of_its_share() -> None:
    now = [0.0]
    exchange = Exchange(QUESTION, SERVERS, 2.0, clock=lambda: now[0])
    exchange.next_request()
    now[0] = 1.0
    exchange.handle_error(_Timeout("no answer within 1 s"))
    request = exchange.next_request()

    assert request is not None
    assert (request.server, request.tcp, request.timeout) == (SERVERS[1], False, 1.0)
    now[0] = 2.0
    exchange.handle_error(_Timeout("no answer within 1 s"))
    assert exchange.next_request() is None
    with pytest.raises(ResolutionTimeout, match=str(SERVERS[1])):
        exchange.result()


def test_timeout_ends_the_exchange_with_the_deadline() -> None:
    now = [0.0]
    exchange = Exchange(QUESTION, SERVERS[:1], 2.0, clock=lambda: now[0])
    request = exchange.next_request()
    assert request is not None
    assert request.timeout == 2.0
    now[0] = 2.0

    exchange.handle_error(timed_out(2.0))

    assert exchange.next_request() is None
    with pytest.raises(ResolutionTimeout, match=r"within 2 s \(over UDP\)"):
        exchange.result()


def test_no_request_once_the_deadline_passed() -> None:
    now = [0.0]
    exchange = Exchange(QUESTION, SERVERS, 1.0, clock=lambda: now[0])
    exchange.next_request()
    feed(exchange, reply(exchange, dns.rcode.SERVFAIL))
    now[0] = 1.5

    assert exchange.next_request() is None
    with pytest.raises(ResolutionTimeout):
        exchange.result()


def test_records_of_other_names_or_types_are_ignored() -> None:
    exchange = Exchange(QUESTION, SERVERS, 2.0)
    message = reply(exchange, dns.rcode.NOERROR, "10.0.1.3")
    other = message.find_rrset(message.answer, dns.name.from_text("evil."), IN, A, create=True)
    other.add(dns.rdata.from_text("IN", "A", "6.6.6.6"), 600)
    text = message.find_rrset(
        message.answer, exchange.query.question[0].name, IN, dns.rdatatype.TXT, create=True
    )
    text.add(dns.rdata.from_text("IN", "TXT", '"10.6.6.6"'), 600)

    feed(exchange, message)

    assert exchange.result().records == ("10.0.1.3",)


def test_nameservers_are_read_at_call_time(
    swarm_dns: FakeSwarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = DNSPythonBackend()
    swarm_dns.create_service("web")

    assert backend.resolve(Question(name="web.", rdtype="A"), 2.0).records
    monkeypatch.setenv("SWARMDNS_NAMESERVER", "not-an-address")
    with pytest.raises(ConfigurationError, match="SWARMDNS_NAMESERVER is 'not-an-address'"):
        backend.resolve(Question(name="web.", rdtype="A"), 2.0)


def test_fixed_nameservers_are_tried_in_order(swarm_dns: FakeSwarm) -> None:
    with FakeSwarm() as broken:
        broken.inject(Fault.SERVFAIL)
        swarm_dns.create_service("web", replicas=2)
        backend = DNSPythonBackend([broken.nameserver, swarm_dns.nameserver])

        answer = backend.resolve(Question(name="tasks.web.", rdtype="A"), 2.0)

        assert len(answer.records) == 2
        assert answer.nameserver == swarm_dns.nameserver
        assert [q.outcome.name for q in broken.queries] == ["SERVFAIL"]


def test_backend_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one"):
        DNSPythonBackend([])
    with pytest.raises(ConfigurationError, match="'localhost:53', which is not an IP"):
        DNSPythonBackend(["localhost:53"])
    assert repr(DNSPythonBackend("127.0.0.1:5300")) == "DirectBackend(['127.0.0.1:5300'])"


@pytest.mark.parametrize("rcode", [dns.rcode.SERVFAIL, dns.rcode.REFUSED])
def test_the_engine_failing_without_ra_disowns_the_name(rcode: dns.rcode.Rcode) -> None:
    # Docker 24+: a name it does not own went upstream, and the upstream failed.
    exchange = Exchange(QUESTION, SERVERS, 2.0)
    exchange.next_request()

    feed(exchange, reply(exchange, rcode, recursion_available=False))

    assert exchange.next_request() is None
    answer = exchange.result()
    assert (answer.records, answer.nxdomain, answer.nameserver) == ((), True, "127.0.0.11:53")


def test_the_engine_relaying_a_failure_with_ra_is_a_failure() -> None:
    # Docker 20.10 relays its upstream's SERVFAIL as it is, RA included.
    exchange = Exchange(QUESTION, SERVERS[:1], 2.0)
    exchange.next_request()

    feed(exchange, reply(exchange, dns.rcode.SERVFAIL))

    assert exchange.next_request() is None
    with pytest.raises(ResolutionError, match="answered SERVFAIL"):
        exchange.result()


def test_servfail_without_ra_from_another_nameserver_is_a_failure() -> None:
    exchange = Exchange(QUESTION, SERVERS[1:], 2.0)
    exchange.next_request()

    feed(exchange, reply(exchange, dns.rcode.SERVFAIL, recursion_available=False))

    with pytest.raises(ResolutionError, match=r"127\.0\.0\.12:5353 answered SERVFAIL"):
        exchange.result()


@pytest.fixture
def engine_address() -> Iterator[FakeSwarm]:
    """A fake engine where tasks find the real one: 127.0.0.11, with no upstream."""
    with FakeSwarm(host="127.0.0.11", engine="28.5", upstream=Upstream.UNREACHABLE) as swarm:
        yield swarm


def test_an_empty_service_on_an_engine_without_upstream_has_no_tasks(
    engine_address: FakeSwarm,
) -> None:
    # This machine's networks are not the fake's: name them, as a task's kernel would.
    backend = DNSPythonBackend(
        [engine_address.nameserver], provenance=Provenance.engine(["10.0.0.0/8"])
    )
    engine_address.create_service("web", replicas=2)

    assert len(swarmdns.task_ips("web", backend=backend)) == 2
    engine_address.scale("web", 0)

    assert swarmdns.task_ips("web", backend=backend) == ()
    with pytest.raises(ServiceNotFound, match=r"127\.0\.0\.11:\d+ does not know 'web\.'"):
        swarmdns.service_vip("web", backend=backend)


def test_an_old_engine_without_upstream_is_silent_so_that_is_a_timeout(
    engine_address: FakeSwarm,
) -> None:
    engine_address.use_engine("20.10")
    backend = DNSPythonBackend([engine_address.nameserver])

    with pytest.raises(ResolutionTimeout):
        swarmdns.task_ips("web", backend=backend, timeout=0.2)


def test_the_same_answer_from_a_nameserver_that_is_not_the_engine_is_a_failure() -> None:
    with (
        FakeSwarm(engine="28.5", upstream=Upstream.UNREACHABLE) as elsewhere,
        pytest.raises(ResolutionError, match="answered SERVFAIL"),
    ):
        swarmdns.task_ips("web", backend=DNSPythonBackend([elsewhere.nameserver]))


def rrset(name: str, rdtype: str, *values: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(name, 600, "IN", rdtype, *values)


def test_an_answer_truncated_even_over_tcp_is_a_failure_not_data() -> None:
    exchange = Exchange(QUESTION, SERVERS[:1], 2.0)
    exchange.next_request()
    for _ in ("udp", "tcp"):
        truncated = reply(exchange, dns.rcode.NOERROR, "10.0.1.3")
        truncated.flags |= dns.flags.TC
        feed(exchange, truncated)

    assert exchange.next_request() is None
    with pytest.raises(ResolutionError, match="truncated even over TCP"):
        exchange.result()


@pytest.mark.parametrize(
    "records",
    [
        [rrset("tasks.web.", "CNAME", "elsewhere.")],
        [rrset("tasks.web.", "CNAME", "loop."), rrset("loop.", "CNAME", "tasks.web.")],
        [rrset("tasks.api.", "A", "10.0.1.3")],
        [rrset("tasks.web.", "TXT", '"hello"')],
    ],
    ids=["cname-to-nowhere", "cname-loop", "another-name", "another-type"],
)
def test_an_answer_with_no_usable_record_is_a_failure(records: list[dns.rrset.RRset]) -> None:
    exchange = Exchange(QUESTION, SERVERS[:1], 2.0)
    exchange.next_request()
    message = reply(exchange)
    message.answer.extend(records)

    feed(exchange, message)

    assert exchange.next_request() is None
    with pytest.raises(ResolutionError, match="no usable record"):
        exchange.result()


def test_an_nxdomain_with_records_is_a_failure() -> None:
    exchange = Exchange(QUESTION, SERVERS[:1], 2.0)
    exchange.next_request()

    feed(exchange, reply(exchange, dns.rcode.NXDOMAIN, "10.0.1.3"))

    with pytest.raises(ResolutionError, match="NXDOMAIN answer holds no usable record"):
        exchange.result()


def test_a_cname_chain_inside_the_answer_is_followed() -> None:
    exchange = Exchange(QUESTION, SERVERS[:1], 2.0)
    exchange.next_request()
    message = reply(exchange)
    message.answer.extend(
        [
            rrset("tasks.web.", "CNAME", "a."),
            rrset("a.", "CNAME", "b."),
            rrset("b.", "A", "10.0.1.3", "10.0.1.4"),
        ]
    )

    feed(exchange, message)

    assert sorted(exchange.result().records) == ["10.0.1.3", "10.0.1.4"]


def test_an_empty_noerror_answer_still_means_no_records() -> None:
    exchange = Exchange(QUESTION, SERVERS[:1], 2.0)
    exchange.next_request()

    feed(exchange, reply(exchange))

    answer = exchange.result()
    assert (answer.records, answer.nxdomain) == ((), False)


@pytest.mark.parametrize("engine", ["20.10", "28.5"])
def test_an_answer_too_long_for_tcp_is_never_taken_as_the_whole_list(
    engine: EngineVersion,
) -> None:
    """600 tasks under names of 63 characters: 89 KB written out.

    20.10 drops records to fit 65,534 bytes without TC (seen on the real
    engine: 438 of 450 such tasks); 24 and newer compress, and all fit.
    """
    service, network = "s" * 63, "n" * 63
    with FakeSwarm(engine=engine) as swarm:
        swarm.create_network(network, subnet="10.8.0.0/22")
        created = swarm.create_service(service, replicas=600, network=network)
        backend = DNSPythonBackend([swarm.nameserver])

        if engine == "20.10":
            with pytest.raises(ResolutionError, match="fills the 65,535-byte limit"):
                swarmdns.task_ips(service, network=network, backend=backend)
        else:
            assert swarmdns.task_ips(service, network=network, backend=backend) == (
                created.task_ips
            )


# -- any answer: the exchange takes exactly what answers the question, or fails -----------

_NAMES = ["tasks.web.", "a.", "b.", "other."]
_RECORDS = st.tuples(
    st.sampled_from(_NAMES),
    st.sampled_from(["A", "CNAME", "TXT", "AAAA"]),
    st.integers(0, 3),
)


def _value(rdtype: str, index: int) -> str:
    return {
        "A": f"10.0.1.{index + 1}",
        "CNAME": _NAMES[index],
        "TXT": f'"t{index}"',
        "AAAA": f"fd00::{index + 1}",
    }[rdtype]


@settings(max_examples=400, deadline=None)
@given(
    rcode=st.sampled_from([dns.rcode.NOERROR, dns.rcode.NXDOMAIN]),
    truncated_over_udp=st.booleans(),
    truncated_over_tcp=st.booleans(),
    records=st.lists(_RECORDS, max_size=6),
)
def test_any_answer_is_taken_exactly_or_fails(
    rcode: dns.rcode.Rcode,
    truncated_over_udp: bool,
    truncated_over_tcp: bool,
    records: list[tuple[str, str, int]],
) -> None:
    """dnspython's own reading (``resolve_chaining``) is the reference."""
    exchange = Exchange(QUESTION, SERVERS[:1], 2.0)
    message = reply(exchange, rcode)
    for name, rdtype, index in records:
        found = message.find_rrset(
            message.answer,
            dns.name.from_text(name),
            IN,
            dns.rdatatype.from_text(rdtype),
            create=True,
        )
        found.add(dns.rdata.from_text("IN", rdtype, _value(rdtype, index)), 600)
    exchange.next_request()
    if truncated_over_udp:
        message.flags |= dns.flags.TC
        feed(exchange, message)
        request = exchange.next_request()
        assert request is not None
        assert request.tcp
        message.flags &= ~dns.flags.TC
    if truncated_over_tcp and truncated_over_udp:
        message.flags |= dns.flags.TC
    feed(exchange, message)

    assert exchange.next_request() is None
    expected: set[str] | None
    if message.flags & dns.flags.TC:
        expected = None
    elif not message.answer:
        expected = set()
    elif rcode == dns.rcode.NXDOMAIN:
        expected = None  # records under NXDOMAIN contradict it
    else:
        assert isinstance(message, dns.message.QueryMessage)
        try:
            chained = message.resolve_chaining().answer
        except dns.message.ChainTooLong:
            chained = None
        expected = None if chained is None else {rdata.to_text() for rdata in chained}
    if expected is None:
        with pytest.raises(ResolutionError):
            exchange.result()
    else:
        answer = exchange.result()
        assert {str(r) for r in answer.records} == expected
        assert answer.nxdomain == (rcode == dns.rcode.NXDOMAIN)
