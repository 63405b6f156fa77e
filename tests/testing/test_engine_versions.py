"""Each Docker Engine version's differences, as ../shared/docker-embedded-dns.md records them.

Engines 20.10.24, 26.1.5 and 28.5.2 were seen answering from inside a task;
what only moby's source says (the forward limit, the TCP limits) is checked
against that source's arithmetic. Where a client can tell, the fake is asked
through dig and dnspython (the ``ask`` fixture); where bytes or time matter,
the raw datagram or the responder alone.
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import get_args

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from swarmdns._backends.nameserver import Nameserver, nameservers_from_resolv_conf
from swarmdns.testing import (
    ENGINES,
    HIJACK_ADDRESSES,
    TTL,
    UPSTREAM_TTL,
    EngineVersion,
    FakeSwarm,
    Fault,
    Outcome,
    Upstream,
)
from swarmdns.testing._engines import _PROFILES, engine_profile
from swarmdns.testing._responder import UPSTREAM_TIMEOUT, Responder
from swarmdns.testing._zone import NetworkZone, Zone

from .dns_clients import Ask, NoReply, exchange

NEWER = ["26.1", "28.5"]
#: The longest service name Docker accepts.
LONG = "s" * 63
#: (engine, name, records that fit in 512 bytes, bytes): 20.10 as seen; a
#: name written out costs len(name) + 2 bytes, a pointer 2.
TRUNCATION = [
    ("20.10", "tasks.web", 19, 502),
    ("26.1", "tasks.web", 30, 507),
    ("28.5", "tasks.web", 30, 507),
    ("20.10", f"tasks.{LONG}", 5, 512),
    ("26.1", f"tasks.{LONG}", 26, 503),
    ("28.5", f"tasks.{LONG}", 26, 503),
]
A_FIXED = struct.pack("!HHIH", 1, 1, 600, 4)  # type A, class IN, TTL 600, 4 bytes
WITH_RA = frozenset({"qr", "rd", "ra"})
WITHOUT_RA = frozenset({"qr", "rd"})


def test_the_engines_are_the_three_seen_newest_last() -> None:
    assert ENGINES == ("20.10", "26.1", "28.5")


def test_the_engines_are_the_versions_of_their_type_each_with_a_profile() -> None:
    assert get_args(EngineVersion) == ENGINES
    assert [engine_profile(engine).version for engine in ENGINES] == list(ENGINES)
    assert sorted(_PROFILES) == sorted(ENGINES)


def owners(wire: bytes) -> list[bytes]:
    """Each answer record's owner field exactly as sent (a pointer stays a pointer)."""
    count = struct.unpack_from("!H", wire, 6)[0]
    offset = 12
    while wire[offset]:
        offset += 1 + wire[offset]
    offset += 5  # the root label, type and class
    found = []
    for _ in range(count):
        start = offset
        if wire[offset] & 0xC0 == 0xC0:
            offset += 2
        else:
            while wire[offset]:
                offset += 1 + wire[offset]
            offset += 1
        found.append(wire[start:offset])
        (length,) = struct.unpack_from("!H", wire, offset + 8)
        offset += 10 + length
    assert offset == len(wire)
    return found


def wire_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"


def ask_raw(
    swarm: FakeSwarm, name: str, *, edns: int | None = None, transport: str = "udp"
) -> tuple[bytes, dns.message.Message]:
    query = dns.message.make_query(
        name, "A", use_edns=0 if edns is not None else False, payload=edns or 512
    )
    wire = exchange(swarm, query.to_wire(), transport=transport)
    return wire, dns.message.from_wire(wire)


# -- choosing the engine ------------------------------------------------------------


def test_the_newest_engine_is_the_default() -> None:
    swarm = FakeSwarm()

    assert swarm.engine == "28.5"
    assert "engine 28.5" in repr(swarm)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_engine_is_chosen_at_creation_and_shown(engine: EngineVersion) -> None:
    swarm = FakeSwarm(engine=engine)

    assert swarm.engine == engine
    assert repr(swarm) == f"<FakeSwarm stopped, engine {engine}: 0 services>"


@pytest.mark.parametrize("engine", ["24.0", "28", "", None, 28.5])
def test_other_engines_are_refused_naming_the_choices(engine: object) -> None:
    expected = r"engine must be one of '20\.10', '26\.1', '28\.5'"
    with pytest.raises(ValueError, match=expected):
        FakeSwarm(engine=engine)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=expected):
        FakeSwarm().use_engine(engine)  # type: ignore[arg-type]


def test_the_engine_cannot_be_assigned() -> None:
    swarm = FakeSwarm()

    with pytest.raises(AttributeError):
        swarm.engine = "20.10"  # type: ignore[misc]


def test_use_engine_switches_at_once_and_reset_goes_back(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=45)

    counts = {}
    for engine in ENGINES:
        swarm_dns.use_engine(engine)
        counts[engine] = len(ask_raw(swarm_dns, "tasks.web")[1].answer[0])
    swarm_dns.reset()

    assert counts == {"20.10": 19, "26.1": 30, "28.5": 30}
    assert swarm_dns.engine == "28.5"


def test_reset_goes_back_to_the_engine_of_creation() -> None:
    swarm = FakeSwarm(engine="20.10")
    swarm.use_engine("26.1")

    swarm.reset()

    assert swarm.engine == "20.10"


# -- truncation and compression ------------------------------------------------------


@pytest.mark.parametrize("edns", [None, 512])
@pytest.mark.parametrize("case", TRUNCATION, ids=lambda case: f"{case[0]}-{len(case[1])}")
def test_udp_answers_are_cut_to_512_bytes_as_each_engine_does(
    swarm_dns: FakeSwarm, ask: Ask, case: tuple[EngineVersion, str, int, int], edns: int | None
) -> None:
    engine, name, count, size = case
    swarm_dns.use_engine(engine)
    service = swarm_dns.create_service(name.removeprefix("tasks."), replicas=45)

    answer = ask(swarm_dns, name, edns=edns)

    assert "tc" in answer.flags
    assert (len(answer.values), answer.size) == (count, size)
    assert {owner for owner, *_ in answer.records} == {f"{name}."}
    assert {IPv4Address(v) for v in answer.values} < set(service.task_ips)


@pytest.mark.parametrize(("engine", "name", "count", "size"), TRUNCATION)
def test_newer_engines_compress_every_owner_to_a_pointer_to_the_question(
    swarm_dns: FakeSwarm, engine: EngineVersion, name: str, count: int, size: int
) -> None:
    swarm_dns.use_engine(engine)
    swarm_dns.create_service(name.removeprefix("tasks."), replicas=45)

    wire, reply = ask_raw(swarm_dns, name)

    assert reply.flags & dns.flags.TC
    assert len(wire) == size
    assert [rrset.name.to_text() for rrset in reply.answer] == [f"{name}."]
    expected_owner = wire_name(name) if engine == "20.10" else b"\xc0\x0c"
    assert owners(wire) == [expected_owner] * count
    # Nothing else is compressed or added: the records are the owner, then A data.
    addresses = [IPv4Address(r.address).packed for r in reply.answer[0]]
    answer_start = 12 + len(wire_name(name)) + 4
    assert wire[answer_start:] == b"".join(expected_owner + A_FIXED + a for a in addresses)


@pytest.mark.parametrize("engine", ENGINES)
def test_an_answer_that_fits_is_never_compressed(
    swarm_dns: FakeSwarm, engine: EngineVersion
) -> None:
    swarm_dns.use_engine(engine)
    swarm_dns.create_service("web", replicas=45)

    for edns, transport in ((1232, "udp"), (4096, "udp"), (None, "tcp")):
        wire, reply = ask_raw(swarm_dns, "tasks.web", edns=edns, transport=transport)
        assert not reply.flags & dns.flags.TC
        assert len(reply.answer[0]) == 45
        assert owners(wire) == [wire_name("tasks.web")] * 45
        assert len(wire) == 12 + 15 + 45 * 25


@pytest.mark.parametrize("engine", ENGINES)
def test_newer_engines_compress_rather_than_truncate_when_that_is_enough(
    swarm_dns: FakeSwarm, engine: EngineVersion
) -> None:
    # 25 records: 652 bytes written out, 427 compressed.
    swarm_dns.use_engine(engine)
    swarm_dns.create_service("web", replicas=25)

    wire, reply = ask_raw(swarm_dns, "tasks.web")

    if engine == "20.10":
        assert (bool(reply.flags & dns.flags.TC), len(reply.answer[0]), len(wire)) == (
            True,
            19,
            502,
        )
    else:
        assert (bool(reply.flags & dns.flags.TC), len(reply.answer[0]), len(wire)) == (
            False,
            25,
            427,
        )
        assert owners(wire) == [b"\xc0\x0c"] * 25
    (record,) = [q for q in swarm_dns.queries if q.name == "tasks.web"]
    assert (record.answers, record.truncated) == (len(reply.answer[0]), engine == "20.10")


def zone_of(names: dict[str, int]) -> Zone:
    """A zone where each name has that many addresses, built without a Swarm."""
    hosts = IPv4Network("10.64.0.0/16").hosts()
    return Zone(
        networks=(
            NetworkZone.build(
                name="big",
                names={name: [next(hosts) for _ in range(count)] for name, count in names.items()},
                reverse={},
            ),
        )
    )


def udp_reply(responder: Responder, name: str) -> tuple[bytes, dns.message.Message]:
    query = dns.message.make_query(name, "A")  # no EDNS: 512 bytes
    data = responder.respond(query.to_wire(), "udp").data
    assert data is not None
    return data, dns.message.from_wire(data)


@pytest.mark.parametrize("engine", ENGINES)
def test_how_many_records_fit_in_512_bytes_follows_the_name_length(engine: EngineVersion) -> None:
    names = [f"tasks.{'w' * length}" for length in range(1, 64)]
    names += [f"tasks.{'w' * 63}.{'n' * length}" for length in (1, 40, 63)]
    responder = Responder(seed=1, engine=engine)
    responder.zone = zone_of(dict.fromkeys(names, 40))

    for name in names:
        data, reply = udp_reply(responder, name)
        question = len(name) + 2 + 4  # the name written out, type and class
        record = 2 + 14 if engine in NEWER else len(name) + 2 + 14
        fit = (512 - 12 - question) // record
        assert len(reply.answer[0]) == fit, name
        assert len(data) == 12 + question + fit * record, name
        assert reply.flags & dns.flags.TC


#: Names whose count of records differs between a 65,534- and a 65,535-byte limit.
TCP_EDGE = {"20.10": f"tasks.{'w' * 49}", "26.1": "tasks.website", "28.5": "tasks.website"}


@pytest.mark.parametrize("engine", ENGINES)
def test_tcp_carries_what_each_engine_fits_in_64_kib(engine: EngineVersion) -> None:
    name = TCP_EDGE[engine]
    responder = Responder(seed=1, engine=engine)
    responder.zone = zone_of({name: 5000})
    query = dns.message.make_query(name, "A")

    data = responder.respond(query.to_wire(), "tcp").data

    assert data is not None
    reply = dns.message.from_wire(data)
    if engine == "20.10":
        # libnetwork's own loop: names written out, at most 65,534 bytes, no TC.
        assert (len(reply.answer[0]), len(data)) == (921, 16 + 57 + 921 * 71)
        assert owners(data) == [wire_name(name)] * 921
        assert not reply.flags & dns.flags.TC
    else:
        # miekg/dns Truncate(65535): compressed, cut, and flagged TC even over TCP.
        assert (len(reply.answer[0]), len(data)) == (4094, 65535)
        assert owners(data) == [b"\xc0\x0c"] * 4094
        assert reply.flags & dns.flags.TC


@pytest.mark.parametrize("engine", ENGINES)
def test_tcp_answers_that_fit_only_compressed_are_whole_on_newer_engines(
    engine: EngineVersion,
) -> None:
    # 3,000 records: 75,027 bytes written out, 48,027 compressed.
    responder = Responder(seed=1, engine=engine)
    responder.zone = zone_of({"tasks.web": 3000})

    data = responder.respond(dns.message.make_query("tasks.web", "A").to_wire(), "tcp").data

    assert data is not None
    expected = (2620, 27 + 2620 * 25) if engine == "20.10" else (3000, 48027)
    assert (len(dns.message.from_wire(data).answer[0]), len(data)) == expected


# -- failures ------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_local_names_keep_ra_on_every_engine(
    swarm_dns: FakeSwarm, ask: Ask, engine: EngineVersion
) -> None:
    swarm_dns.use_engine(engine)
    swarm_dns.create_service("web", replicas=3)
    swarm_dns.upstream = Upstream.UNREACHABLE

    for name, rdtype in (("web", "A"), ("tasks.web", "A"), ("web", "AAAA"), ("web", "MX")):
        answer = ask(swarm_dns, name, rdtype, edns=None)
        assert (answer.rcode, answer.flags) == ("NOERROR", WITH_RA), (name, rdtype)


def test_unreachable_upstream_gets_no_reply_from_20_10(swarm_dns: FakeSwarm, ask: Ask) -> None:
    swarm_dns.use_engine("20.10")
    swarm_dns.create_service("idle", replicas=0)
    swarm_dns.upstream = Upstream.UNREACHABLE

    for name in ("example.org", "tasks.idle"):
        with pytest.raises(NoReply):
            ask(swarm_dns, name, timeout=0.3)
    assert {q.outcome for q in swarm_dns.queries} == {Outcome.NO_REPLY}


@pytest.mark.parametrize("engine", NEWER)
def test_unreachable_upstream_gets_servfail_without_ra_from_newer_engines(
    swarm_dns: FakeSwarm, ask: Ask, engine: EngineVersion
) -> None:
    swarm_dns.use_engine(engine)
    swarm_dns.create_service("idle", replicas=0)
    swarm_dns.upstream = Upstream.UNREACHABLE

    for name in ("example.org", "idle", "tasks.idle"):
        for edns in (None, 4096):
            answer = ask(swarm_dns, name, edns=edns)
            assert (answer.rcode, answer.flags, answer.records) == ("SERVFAIL", WITHOUT_RA, ())
            assert not answer.has_opt
    assert {(q.outcome, q.delay) for q in swarm_dns.queries} == {(Outcome.SERVFAIL, 0.0)}


@pytest.mark.parametrize(
    ("engine", "flags"), [("20.10", WITH_RA), ("26.1", WITHOUT_RA), ("28.5", WITHOUT_RA)]
)
def test_upstream_servfail_is_relayed_by_20_10_and_replaced_by_newer_engines(
    swarm_dns: FakeSwarm, ask: Ask, engine: EngineVersion, flags: frozenset[str]
) -> None:
    swarm_dns.use_engine(engine)
    swarm_dns.upstream = Upstream.SERVFAIL

    answer = ask(swarm_dns, "example.org")

    assert (answer.rcode, answer.flags) == ("SERVFAIL", flags)


@pytest.mark.parametrize("engine", ENGINES)
def test_upstream_nxdomain_is_relayed_by_every_engine(
    swarm_dns: FakeSwarm, ask: Ask, engine: EngineVersion
) -> None:
    swarm_dns.use_engine(engine)

    answer = ask(swarm_dns, "example.org")

    assert (answer.rcode, answer.flags) == ("NXDOMAIN", WITH_RA)


@pytest.mark.parametrize("engine", ["20.10", "26.1", "28.5"])
@pytest.mark.parametrize("fault", [Fault.SERVFAIL, Fault.REFUSED])
def test_injected_failures_keep_ra_on_every_engine_so_they_read_as_failures(
    swarm_dns: FakeSwarm, ask: Ask, engine: EngineVersion, fault: Fault
) -> None:
    swarm_dns.use_engine(engine)
    swarm_dns.create_service("web")
    swarm_dns.inject(fault, name="web")

    answer = ask(swarm_dns, "web")

    assert (answer.rcode, answer.flags) == (fault.name, WITH_RA)


def clocked(engine: EngineVersion, now: list[float]) -> Responder:
    responder = Responder(seed=1, clock=lambda: now[0], engine=engine)
    responder.upstream = Upstream.NO_REPLY
    return responder


def forward(responder: Responder, name: str = "example.org") -> tuple[str | None, float, bool]:
    """(rcode or None for no reply, delay, RA) of one forwarded query."""
    reply = responder.respond(dns.message.make_query(name, "A").to_wire(), "udp")
    if reply.data is None:
        return None, reply.delay, False
    message = dns.message.from_wire(reply.data)
    return dns.rcode.to_text(message.rcode()), reply.delay, bool(message.flags & dns.flags.RA)


@pytest.mark.parametrize("engine", NEWER)
def test_a_silent_upstream_gets_servfail_after_the_engines_timeout(engine: EngineVersion) -> None:
    now = [100.0]
    responder = clocked(engine, now)

    assert forward(responder) == ("SERVFAIL", UPSTREAM_TIMEOUT, False)
    assert responder.log.snapshot()[-1].outcome is Outcome.SERVFAIL
    assert responder.log.snapshot()[-1].delay == UPSTREAM_TIMEOUT


def test_a_silent_upstream_gets_no_reply_from_20_10() -> None:
    responder = clocked("20.10", [100.0])

    assert [forward(responder)[0] for _ in range(1100)] == [None] * 1100


@pytest.mark.parametrize("engine", NEWER)
def test_more_than_1024_forwards_in_flight_get_refused(engine: EngineVersion) -> None:
    now = [100.0]
    responder = clocked(engine, now)

    first = [forward(responder) for _ in range(1024)]
    refused = forward(responder)  # no slot frees within its 4 s
    now[0] = 101.0
    queued = forward(responder)  # the first slot frees at 104 s: answered at 108 s
    now[0] = 104.0
    later = [forward(responder) for _ in range(1023)]  # the other slots freed at 104 s
    one_more = forward(responder)  # every slot busy until 108 s or later

    assert first == [("SERVFAIL", 4.0, False)] * 1024
    assert refused == ("REFUSED", 4.0, False)
    assert queued == ("SERVFAIL", 7.0, False)
    assert later == [("SERVFAIL", 4.0, False)] * 1023
    assert one_more == ("REFUSED", 4.0, False)
    assert [r.outcome for r in responder.log.snapshot()].count(Outcome.REFUSED) == 2


@pytest.mark.parametrize("engine", NEWER)
def test_a_forward_read_late_is_decided_as_of_its_arrival(engine: EngineVersion) -> None:
    """A burst the server read 5 s late: its slots are those of the moment it arrived."""
    now = [100.0]
    responder = clocked(engine, now)
    query = dns.message.make_query("example.org", "A").to_wire()

    first = [responder.respond(query, "udp") for _ in range(1024)]
    now[0] = 105.0  # the server fell behind: the next came at 100 s, and is read now
    late = responder.respond(query, "udp", waited=5.0)
    on_time = responder.respond(query, "udp")  # came at 105 s: the first slots freed at 104 s

    assert {reply.delay for reply in first} == {4.0}
    assert dns.rcode.to_text(dns.message.from_wire(late.data or b"").rcode()) == "REFUSED"
    assert late.delay == 4.0  # after it arrived, as if read at once
    assert responder.log.snapshot()[1024].received == 100.0
    assert dns.rcode.to_text(dns.message.from_wire(on_time.data or b"").rcode()) == "SERVFAIL"
    assert on_time.delay == 4.0


@pytest.mark.parametrize("engine", NEWER)
def test_answers_from_a_live_upstream_never_pile_up(engine: EngineVersion) -> None:
    now = [100.0]
    responder = clocked(engine, now)
    responder.upstream = Upstream.NXDOMAIN

    assert {forward(responder) for _ in range(3000)} == {("NXDOMAIN", 0.0, True)}


@pytest.mark.parametrize("engine", NEWER)
def test_a_silent_upstream_times_out_a_client_through_the_server(
    swarm_dns: FakeSwarm, ask: Ask, engine: EngineVersion
) -> None:
    swarm_dns.use_engine(engine)
    swarm_dns.upstream = Upstream.NO_REPLY

    with pytest.raises(NoReply):
        ask(swarm_dns, "example.org", timeout=0.3)
    (record,) = swarm_dns.wait_for_queries(1, name="example.org")

    assert (record.outcome, record.delay) == (Outcome.SERVFAIL, UPSTREAM_TIMEOUT)


@pytest.mark.parametrize("name", ["web", "3.0.0.10.IN-ADDR.ARPA"])
def test_ptr_outside_the_reverse_zones_gets_no_reply_from_20_10(
    swarm_dns: FakeSwarm, ask: Ask, name: str
) -> None:
    swarm_dns.use_engine("20.10")
    swarm_dns.create_service("web")

    with pytest.raises(NoReply):
        ask(swarm_dns, name, "PTR", timeout=0.3)


@pytest.mark.parametrize("engine", NEWER)
@pytest.mark.parametrize("name", ["web", "3.0.0.10.IN-ADDR.ARPA"])
def test_ptr_outside_the_reverse_zones_is_forwarded_by_newer_engines(
    swarm_dns: FakeSwarm, ask: Ask, engine: EngineVersion, name: str
) -> None:
    swarm_dns.use_engine(engine)
    swarm_dns.create_service("web")

    assert ask(swarm_dns, name, "PTR").rcode == "NXDOMAIN"
    swarm_dns.upstream = Upstream.UNREACHABLE
    assert ask(swarm_dns, name, "PTR").flags == WITHOUT_RA


# -- a task's /etc/resolv.conf -------------------------------------------------------

RESOLV_CONF_20_10 = """\
nameserver 127.0.0.11
options ndots:0
"""
RESOLV_CONF_NEWER = """\
# Generated by Docker Engine.
# This file can be edited; Docker Engine will not make further changes once it
# has been modified.

nameserver 127.0.0.11
options ndots:0

# Based on host file: '/etc/resolv.conf' (internal resolver)
# ExtServers: [host(127.0.0.1)]
# Overrides: []
# Option ndots from: internal
"""


@pytest.mark.parametrize(
    ("engine", "text"),
    [("20.10", RESOLV_CONF_20_10), ("26.1", RESOLV_CONF_NEWER), ("28.5", RESOLV_CONF_NEWER)],
)
def test_resolv_conf_is_written_as_each_engine_writes_it(engine: EngineVersion, text: str) -> None:
    assert FakeSwarm(engine=engine).resolv_conf() == text


def test_resolv_conf_copies_the_hosts_search_and_options() -> None:
    old = FakeSwarm(engine="20.10").resolv_conf(
        search=["corp.example", "example"], options=["edns0"]
    )
    new = FakeSwarm(engine="28.5").resolv_conf(
        search=["corp.example", "example"], options=["edns0"]
    )

    assert old == ("search corp.example example\nnameserver 127.0.0.11\noptions edns0 ndots:0\n")
    assert new.splitlines()[4:8] == [
        "nameserver 127.0.0.11",
        "search corp.example example",
        "options edns0 ndots:0",
        "",
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_resolv_conf_keeps_the_hosts_ndots(engine: EngineVersion) -> None:
    text = FakeSwarm(engine=engine).resolv_conf(options=["ndots:2"])

    assert "options ndots:2\n" in text
    assert "ndots:0" not in text
    if engine in NEWER:
        assert text.endswith("# Option ndots from: host\n")


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"search": "example"}, TypeError),
        ({"options": "edns0"}, TypeError),
        ({"search": ["two words"]}, ValueError),
        ({"options": [""]}, ValueError),
        ({"options": ["ndots:many"]}, ValueError),
    ],
)
def test_resolv_conf_checks_its_arguments(
    arguments: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        FakeSwarm().resolv_conf(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("search", [(), ("corp.example",)])
def test_swarmdns_reads_the_embedded_dns_from_every_engines_resolv_conf(
    engine: EngineVersion, search: tuple[str, ...]
) -> None:
    text = FakeSwarm(engine=engine).resolv_conf(search=search)

    assert nameservers_from_resolv_conf(text) == (Nameserver("127.0.0.11"),)


# -- swarmdns serve --engine ---------------------------------------------------------


@pytest.fixture
def serving() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.kill()
        process.communicate(timeout=30)


@pytest.mark.parametrize(("engine", "count"), [("20.10", 19), ("26.1", 30), (None, 30)])
def test_serve_answers_like_the_engine_asked_for(
    serving: list[subprocess.Popen[str]], engine: str | None, count: int
) -> None:
    arguments = ["serve", "--service", "web=45"] + ([] if engine is None else ["--engine", engine])
    serve = subprocess.Popen(
        [sys.executable, "-m", "swarmdns", *arguments], stdout=subprocess.PIPE, text=True
    )
    serving.append(serve)
    assert serve.stdout is not None
    port = int(re.search(r"127\.0\.0\.1:(\d+)", serve.stdout.readline()).group(1))  # type: ignore[union-attr]

    reply = dns.query.udp(
        dns.message.make_query("tasks.web", "A"), "127.0.0.1", port=port, timeout=5
    )

    assert reply.flags & dns.flags.TC
    assert len(reply.answer[0]) == count


def test_serve_refuses_an_engine_it_does_not_model() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "swarmdns", "serve", "--engine", "24.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        "swarmdns: --engine '24.0' is not a Docker Engine version the fake models;"
        " give one of '20.10', '26.1'"
    )
    assert "'24.0'" in result.stderr


def test_serve_help_names_every_engine() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "swarmdns", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert all(engine in result.stdout for engine in ENGINES)
    assert f"(default: {ENGINES[-1]})" in " ".join(result.stdout.split())


# -- where an answer came from: an upstream that rewrites NXDOMAIN -------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_a_hijacking_upstream_answers_unknown_names_as_a_forwarded_answer(
    swarm_dns: FakeSwarm, ask: Ask, engine: EngineVersion
) -> None:
    swarm_dns.use_engine(engine)
    swarm_dns.create_service("idle", replicas=0)
    swarm_dns.upstream = Upstream.HIJACK

    for name in ("example.org", "tasks.idle", "idle", "tasks.missing"):
        for edns in (4096, None):
            answer = ask(swarm_dns, name, edns=edns)
            assert (answer.rcode, answer.flags) == ("NOERROR", WITH_RA), (name, edns)
            assert sorted(answer.values) == sorted(map(str, HIJACK_ADDRESSES))
            assert {ttl for _, ttl, _, _ in answer.records} == {UPSTREAM_TTL}
            assert answer.has_opt == (edns is not None), (name, edns)
    assert UPSTREAM_TTL != TTL
    assert all(not address.is_private for address in HIJACK_ADDRESSES)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_hijacking_upstream_leaves_the_engines_own_names_alone(
    swarm_dns: FakeSwarm, ask: Ask, engine: EngineVersion
) -> None:
    swarm_dns.use_engine(engine)
    web = swarm_dns.create_service("web", replicas=2)
    swarm_dns.upstream = Upstream.HIJACK

    for name, expected in (("web", [web.vip]), ("tasks.web", list(web.task_ips))):
        answer = ask(swarm_dns, name, edns=4096)
        assert sorted(IPv4Address(v) for v in answer.values) == expected
        assert {ttl for _, ttl, _, _ in answer.records} == {TTL}
        assert not answer.has_opt
    swarm_dns.scale("web", 0)  # tasks.web is now the upstream's
    answer = ask(swarm_dns, "tasks.web", edns=4096)
    assert sorted(answer.values) == sorted(map(str, HIJACK_ADDRESSES))
    assert answer.has_opt


def test_a_hijacking_upstream_rewrites_only_a_queries(swarm_dns: FakeSwarm, ask: Ask) -> None:
    swarm_dns.upstream = Upstream.HIJACK

    for rdtype in ("AAAA", "TXT", "MX"):
        answer = ask(swarm_dns, "example.org", rdtype)
        assert (answer.rcode, answer.records, answer.has_opt) == ("NXDOMAIN", (), True)


@pytest.mark.parametrize("engine", ENGINES)
def test_relayed_nxdomain_carries_the_upstreams_opt_to_edns_queries(
    swarm_dns: FakeSwarm, ask: Ask, engine: EngineVersion
) -> None:
    swarm_dns.use_engine(engine)
    swarm_dns.create_service("idle", replicas=0)

    for name in ("example.org", "tasks.idle"):
        assert ask(swarm_dns, name, edns=4096).has_opt
        assert not ask(swarm_dns, name, edns=None).has_opt


def test_the_engines_own_failures_carry_no_opt_and_relayed_ones_do(
    swarm_dns: FakeSwarm, ask: Ask
) -> None:
    swarm_dns.upstream = Upstream.SERVFAIL
    swarm_dns.use_engine("20.10")
    assert ask(swarm_dns, "example.org").has_opt  # 20.10 relays the upstream's
    swarm_dns.use_engine("28.5")
    assert not ask(swarm_dns, "example.org").has_opt  # 24+ answers its own
