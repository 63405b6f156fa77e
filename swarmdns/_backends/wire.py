"""The client's fast path through DNS messages: building queries, reading the usual answers.

Reading an answer with ``dns.message.from_wire`` costs about 27 µs per
record, most of a watch's CPU. ``read_reply`` reads, much faster, only the
shapes the engine sends for the questions swarmdns asks: one question (ours,
echoed), no authority or additional records, and answer records of the type
asked, all written the same way (owner as a pointer to the question, or
written out). It returns None for anything else, which then goes to
dnspython; so it never accepts what dnspython would reject. No I/O.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address
from typing import NamedTuple

from .. import _memo
from .._model import SortedAddresses

_HEADER = struct.Struct("!HHHHHH")
_QUESTION_FIXED = struct.Struct("!HH")
#: The EDNS buffer size offered: the engine honours it, and 4096 bytes carry
#: about 160 task addresses in one datagram.
EDNS_PAYLOAD = 4096
_OPT = b"\x00" + struct.pack("!HHIH", 41, EDNS_PAYLOAD, 0, 0)  # an OPT record: EDNS0
_POINTER_TO_QUESTION = b"\xc0\x0c"
_FLAGS_QUERY = 0x0100  # RD
_QR = 0x8000
_OPCODE = 0x7800
_TC = 0x0200
_RCODE = 0x000F
#: A reply's QR, opcode, TC and rcode bits, when it is the usual shape: the rcode.
_USUAL_FLAGS = {_QR: 0, _QR | 3: 3}  # NOERROR, NXDOMAIN; opcode QUERY, not truncated
_FLAGS_AND_ANCOUNT = struct.Struct("!H2xH")
_ONE = b"\x00\x01"
_NONE_NONE = bytes(4)
TYPE_A = 1
TYPE_PTR = 12
_CLASS_IN = 1
_MAX_NAME = 255
_MAX_LABEL = 63


class Reply(NamedTuple):
    """An answer read by the fast path (a named tuple: made on every lookup).

    Attributes:
        rcode: 0 (NOERROR) or 3 (NXDOMAIN).
        records: The addresses (A), distinct and sorted, or the target names
            (PTR), in the answer's order.
    """

    rcode: int
    records: tuple[IPv4Address, ...] | tuple[str, ...]


def encode_name(name: str) -> bytes:
    """The wire form of an absolute ASCII name such as ``tasks.web.``."""
    labels = name.rstrip(".").split(".") if name.strip(".") else []
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in labels) + b"\x00"


def build_query(name: str, rdtype: int, query_id: int) -> bytes:
    """A recursive query for ``name`` with EDNS0 and an ``EDNS_PAYLOAD``-byte buffer."""
    header = _HEADER.pack(query_id, _FLAGS_QUERY, 1, 0, 0, 1)
    return header + _question_and_opt(name, rdtype)


@_memo.memoize(maxsize=1024)
def _question_and_opt(name: str, rdtype: int) -> bytes:
    return encode_name(name) + _QUESTION_FIXED.pack(rdtype, _CLASS_IN) + _OPT


@_memo.memoize(maxsize=64)
def _addresses_layout(record_size: int, count: int) -> struct.Struct:
    """Pick the address out of each of ``count`` records of ``record_size`` bytes."""
    return struct.Struct("!" + f"{record_size - 4}xI" * count)


#: Owner (a pointer to the question), type A and class IN.
_POINTED_PREFIX = _POINTER_TO_QUESTION + struct.pack("!HH", 1, 1)
_TYPE_AND_CLASS = struct.pack("!HH", 1, 1)


def addresses_of(values: tuple[int, ...]) -> SortedAddresses:
    """The addresses with these sorted, distinct 32-bit values."""
    return SortedAddresses(_memo.addresses.addresses(values)) if values else _NO_ADDRESSES


_NO_ADDRESSES = SortedAddresses()


def answers(data: bytes, query: bytes, *, echoed: bool = False) -> bool:
    """Whether the datagram ``data`` can be the reply to ``query`` (made by ``build_query``).

    It must carry the query's ID and the QR bit, and echo the question (the
    name in any case); an error reply may leave the question out, unless
    ``echoed``. Anything else (a stray or late datagram, another question's
    answer, garbage) is not a reply to this query at all, and the client
    waits on.

    Args:
        data: The datagram.
        query: The query it may answer.
        echoed: Whether the question must be echoed. On a socket that many
            queries share, an error reply without a question is tied to a
            query by its ID alone: anyone who sees or guesses one of the IDs
            in flight could end that query with it, so it is taken for
            nobody's. (Docker echoes the question in its own SERVFAIL and
            REFUSED.)
    """
    if len(data) < _HEADER.size or data[:2] != query[:2] or not data[2] & 0x80:
        return False
    if data[4:6] == _ONE:
        start, end = _HEADER.size, len(query) - len(_OPT)
        return data[start:end].lower() == query[start:end].lower()
    return not echoed and data[4:6] == b"\x00\x00" and bool(data[3] & _RCODE)


#: Docker 20.10 drops records from a TCP answer until it fits in this many
#: bytes, and does not set TC.
SILENT_TCP_LIMIT = 65534


def may_be_cut(data: bytes, query: bytes) -> bool:
    """Whether a TCP answer fills the limit so nearly that records may have been dropped unsaid.

    Docker 20.10 drops records from a TCP answer longer than
    ``SILENT_TCP_LIMIT`` bytes without setting TC; newer engines set TC. An
    answer with no room left for one more record written out (the question's
    name, then 14 bytes) may be such a cut answer, so it is not the whole list.
    """
    owner = len(query) - len(_OPT) - _HEADER.size - _QUESTION_FIXED.size
    return len(data) + owner + 14 > SILENT_TCP_LIMIT


def is_truncated(data: bytes) -> bool:
    """Whether the reply in ``data`` has its TC bit set (``data`` holds at least a header)."""
    return len(data) >= _HEADER.size and bool(data[2] << 8 & _TC)


def read_reply(data: bytes, query: bytes, rdtype: int, *, ttl: int | None = None) -> Reply | None:
    """Read ``data`` as the answer to ``query`` (made by ``build_query``), or return None.

    None means that the answer is not in the usual shape: dnspython reads it.
    With ``ttl``, a record with another TTL is not the usual shape either.
    """
    usual = _usual_body(data, query)
    if usual is None:
        return None
    rcode, ancount, owner, body = usual
    records: tuple[IPv4Address, ...] | tuple[str, ...] | None
    if rdtype == TYPE_A:
        values = _read_values(body, owner, ancount, ttl)
        records = None if values is None else addresses_of(values)
    else:
        records = _read_targets(body, owner, ancount, ttl)
    return None if records is None else Reply(rcode=rcode, records=records)


def read_values(data: bytes, query: bytes, *, ttl: int | None = None) -> tuple[int, ...] | None:
    """The sorted, distinct addresses of the usual answer to an A ``query``, as integers.

    What ``read_reply`` reads, before the addresses become objects: a watch
    that compares each answer with the last one needs no more. NXDOMAIN and
    NOERROR without records give ``()``. None: not the usual shape (with
    ``ttl``, a record with another TTL is not).
    """
    usual = _usual_body(data, query)
    return None if usual is None else _read_values(usual[3], usual[2], usual[1], ttl)


def _usual_body(data: bytes, query: bytes) -> tuple[int, int, bytes, bytes] | None:
    """The rcode, answer count, question's owner and answer records of a usual reply."""
    question_end = len(query) - len(_OPT)
    if (
        len(data) < question_end
        or data[:2] != query[:2]  # the ID
        or data[4:6] != _ONE  # one question
        or data[8:12] != _NONE_NONE  # no authority or additional records
        # The question, echoed; the name in any case. (Lowering changes only
        # letters, and none of the query's type and class bytes is one.)
        or data[_HEADER.size : question_end].lower() != query[_HEADER.size : question_end].lower()
    ):
        return None
    flags, ancount = _FLAGS_AND_ANCOUNT.unpack_from(data, 2)
    rcode = _USUAL_FLAGS.get(flags & (_QR | _OPCODE | _TC | _RCODE))
    if rcode is None or (rcode and ancount):  # records under NXDOMAIN: not the usual shape
        return None
    owner = data[_HEADER.size : question_end - _QUESTION_FIXED.size]
    return rcode, ancount, owner, data[question_end:]


def _read_values(body: bytes, owner: bytes, count: int, ttl: int | None) -> tuple[int, ...] | None:
    """Read ``count`` A records, all written alike (with ``ttl``, if given), that fill ``body``."""
    if not count:
        return () if not body else None
    # An owner written out in another case than the question's goes to dnspython.
    pointed = body.startswith(_POINTER_TO_QUESTION)
    prefix = _POINTED_PREFIX if pointed else owner + _TYPE_AND_CLASS
    size = len(prefix) + 10  # then the TTL, the data length and the address
    if len(body) != size * count:
        return None
    for column, expected in _fixed_columns(prefix, count, ttl):
        if body[column::size] != expected:
            return None
    return tuple(sorted(set(_addresses_layout(size, count).unpack(body))))


@_memo.memoize(maxsize=1024)  # by name and count: enough for a watch over many services
def _fixed_columns(prefix: bytes, count: int, ttl: int | None) -> tuple[tuple[int, bytes], ...]:
    """What each byte column of ``count`` A records must hold, by its offset in a record.

    Every record must have the same owner, type and class (``prefix``), and a
    data length of 4; the TTL too if given; the address can be anything.
    """
    columns = [*enumerate(prefix), (len(prefix) + 4, 0), (len(prefix) + 5, 4)]
    if ttl is not None:
        columns += [(len(prefix) + i, byte) for i, byte in enumerate(ttl.to_bytes(4, "big"))]
    return tuple((column, bytes((byte,)) * count) for column, byte in columns)


_RECORD_FIXED = struct.Struct("!HHIH")


def _read_targets(
    body: bytes, owner: bytes, count: int, ttl: int | None
) -> tuple[str, ...] | None:
    targets = []
    offset = 0
    for _ in range(count):
        if body.startswith(_POINTER_TO_QUESTION, offset):
            offset += 2
        elif body[offset : offset + len(owner)].lower() == owner.lower():
            offset += len(owner)
        else:
            return None
        if offset + _RECORD_FIXED.size > len(body):
            return None
        rtype, rclass, record_ttl, rdlength = _RECORD_FIXED.unpack_from(body, offset)
        offset += _RECORD_FIXED.size
        if (rtype, rclass) != (TYPE_PTR, _CLASS_IN) or offset + rdlength > len(body):
            return None
        if ttl is not None and record_ttl != ttl:
            return None
        target = _read_plain_name(body[offset : offset + rdlength])
        if target is None:
            return None
        targets.append(target)
        offset += rdlength
    return tuple(targets) if offset == len(body) else None


def _read_plain_name(data: bytes) -> str | None:
    """A name written out in full that fills ``data`` exactly, in text; else None."""
    labels = []
    offset = 0
    while offset < len(data):
        length = data[offset]
        if length == 0:
            break
        if length > _MAX_LABEL or offset + 1 + length > len(data):
            return None
        label = data[offset + 1 : offset + 1 + length]
        if not all(0x21 <= byte <= 0x7E and byte not in b'."\\();@$' for byte in label):
            return None  # text that needs escaping: leave it to dnspython
        labels.append(label.decode("ascii"))
        offset += 1 + length
    if offset + 1 != len(data) or len(data) > _MAX_NAME:
        return None
    return ".".join(labels) + "."
