"""Reading queries the way the engine's DNS library does, without sockets."""

from __future__ import annotations

import struct

import dns.message
import dns.name
import pytest

from swarmdns.testing import _wire


def header(
    *, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0, id: int = 0x1234
) -> bytes:
    return struct.pack("!HHHHHH", id, flags, qd, an, ns, ar)


QUESTION = b"\x05tasks\x03web\x00" + struct.pack("!HH", 1, 1)


def test_parses_a_dnspython_query_with_edns() -> None:
    wire = dns.message.make_query("Tasks.Web", "A", use_edns=0, payload=4096).to_wire()

    query = _wire.parse_query(wire)

    assert query.labels == (b"Tasks", b"Web")
    assert query.ascii_name == "Tasks.Web"
    assert query.qname_wire == b"\x05Tasks\x03Web\x00"
    assert (query.qtype, query.qclass, query.udp_payload) == (1, 1, 4096)


def test_query_without_edns_has_no_payload_size() -> None:
    query = _wire.parse_query(header() + QUESTION)

    assert query.udp_payload is None
    assert query.id == 0x1234


def test_follows_a_backward_pointer() -> None:
    # A question name that points back into... the question itself is impossible,
    # so put a name in an (allowed) answer record that points at the question.
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0, 4) + b"\x00\x00\x00\x00"

    query = _wire.parse_query(header(an=1) + QUESTION + answer)

    assert query.labels == (b"tasks", b"web")


@pytest.mark.parametrize(
    ("data", "rcode"),
    [
        (b"", None),
        (b"\x12\x34\x01", None),
        (header(flags=0x8000) + QUESTION, None),  # a response
        (header(flags=0x1000) + QUESTION, _wire.RCODE_NOTIMP),  # opcode 2 (STATUS)
        (header(flags=0x2800) + QUESTION, _wire.RCODE_NOTIMP),  # opcode 5 (UPDATE)
        (header(qd=0), _wire.RCODE_FORMERR),
        (header(qd=2) + QUESTION * 2, _wire.RCODE_FORMERR),
        (header(an=2) + QUESTION, _wire.RCODE_FORMERR),
        (header(ns=2) + QUESTION, _wire.RCODE_FORMERR),
        (header(ar=3) + QUESTION, _wire.RCODE_FORMERR),
        (header() + b"\x05tas", _wire.RCODE_FORMERR),  # label past the end
        (header() + b"\x03web\x00\x00", _wire.RCODE_FORMERR),  # no type and class
        (header() + b"\xc0\x0c" + struct.pack("!HH", 1, 1), _wire.RCODE_FORMERR),  # self loop
        (header() + b"\xc0\x20" + struct.pack("!HH", 1, 1), _wire.RCODE_FORMERR),  # forward
        (header() + b"\x40abc\x00" + struct.pack("!HH", 1, 1), _wire.RCODE_FORMERR),  # type 01
        (header() + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01", _wire.RCODE_FORMERR),
        (header(ar=1) + QUESTION + b"\x00\x00\x29", _wire.RCODE_FORMERR),  # OPT cut short
        (
            header(ar=1) + QUESTION + b"\x00" + struct.pack("!HHIH", 41, 4096, 0, 9),
            _wire.RCODE_FORMERR,
        ),
    ],
)
def test_rejects_what_the_engine_rejects(data: bytes, rcode: int | None) -> None:
    with pytest.raises(_wire.QueryFormatError) as caught:
        _wire.parse_query(data)
    assert caught.value.rcode == rcode


def test_accepts_labels_of_63_bytes_and_names_of_255() -> None:
    name = (b"\x3f" + b"a" * 63) * 3 + b"\x3d" + b"b" * 61 + b"\x00"

    query = _wire.parse_query(header() + name + struct.pack("!HH", 1, 1))

    assert len(query.qname_wire) == 255
    assert query.labels[-1] == b"b" * 61


def test_error_reply_keeps_id_and_rd_and_clears_opcode_for_formerr() -> None:
    reply = _wire.error_reply(0xBEEF, 0x0100 | 0x0400, _wire.RCODE_FORMERR)

    assert reply == struct.pack("!HHHHHH", 0xBEEF, 0x8101, 0, 0, 0, 0)


def test_error_reply_keeps_the_opcode_for_notimp() -> None:
    reply = _wire.error_reply(7, 0x2900, _wire.RCODE_NOTIMP)

    assert struct.unpack("!HH", reply[:4]) == (7, 0x8000 | 0x2900 | _wire.RCODE_NOTIMP)


def test_truncation_keeps_a_prefix_that_fits() -> None:
    query = _wire.parse_query(header() + QUESTION)
    records = [_wire.a_record(query.qname_wire, bytes([10, 0, 1, i]), 600) for i in range(30)]

    reply, kept, truncated = _wire.build_reply(query, 0, records, limit=512)

    assert (kept, truncated, len(reply)) == (19, True, 502)
    parsed = dns.message.from_wire(reply)
    assert [r.address for r in parsed.answer[0]] == [f"10.0.1.{i}" for i in range(19)]


def test_compression_keeps_a_longer_prefix_with_owners_pointing_at_the_question() -> None:
    query = _wire.parse_query(header() + QUESTION)
    records = [_wire.a_record(query.qname_wire, bytes([10, 0, 1, i]), 600) for i in range(40)]

    reply, kept, truncated = _wire.build_reply(query, 0, records, limit=512, compress=True)

    assert (kept, truncated, len(reply)) == (30, True, 507)
    start = _wire.HEADER.size + len(query.qname_wire) + 4
    assert reply[start:] == b"".join(
        b"\xc0\x0c" + r[len(query.qname_wire) :] for r in records[:30]
    )
    parsed = dns.message.from_wire(reply)
    assert [r.address for r in parsed.answer[0]] == [f"10.0.1.{i}" for i in range(30)]


def test_compression_is_used_only_when_the_records_do_not_fit() -> None:
    query = _wire.parse_query(header() + QUESTION)
    records = [_wire.a_record(query.qname_wire, bytes([10, 0, 1, i]), 600) for i in range(19)]

    compressed = _wire.build_reply(query, 0, records, limit=512, compress=True)
    plain = _wire.build_reply(query, 0, records, limit=512)

    assert compressed == plain
    assert compressed[1:] == (19, False)


@pytest.mark.parametrize(("recursion", "flag_truncation"), [(True, False), (False, True)])
def test_ra_and_tc_can_be_left_clear(recursion: bool, flag_truncation: bool) -> None:
    query = _wire.parse_query(header() + QUESTION)
    records = [_wire.a_record(query.qname_wire, bytes([10, 0, 1, i]), 600) for i in range(30)]

    reply, _, truncated = _wire.build_reply(
        query, 0, records, limit=512, recursion=recursion, flag_truncation=flag_truncation
    )

    (flags,) = struct.unpack_from("!H", reply, 2)
    assert truncated
    assert bool(flags & _wire.FLAG_RA) is recursion
    assert bool(flags & _wire.FLAG_TC) is flag_truncation


def test_name_to_text_escapes_like_dnspython() -> None:
    labels = (b"a.b", b"x y", b"\x00\xff", b'q"\\')

    text = _wire.name_to_text(labels)

    assert text == dns.name.Name((*labels, b"")).to_text()
