"""The few pieces of the DNS wire format that the fake server reads and writes.

The fake must reproduce the engine byte for byte where clients can tell (names
compressed only to fit, and then only as each version does, truncation to a
prefix of the answers, no OPT record), so it encodes answers itself instead of
going through ``dns.message``.
"""

from __future__ import annotations

import re
import struct

from attrs import frozen

HEADER = struct.Struct("!HHHHHH")
RR_FIXED = struct.Struct("!HHIH")
QUESTION_FIXED = struct.Struct("!HH")

FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
FLAG_Z = 0x0040
FLAG_CD = 0x0010
OPCODE_MASK = 0x7800
RCODE_MASK = 0x000F

OPCODE_QUERY = 0
OPCODE_NOTIFY = 4

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5

TYPE_A = 1
TYPE_PTR = 12
TYPE_MX = 15
TYPE_AAAA = 28
TYPE_OPT = 41
CLASS_IN = 1

CLASSIC_UDP_LIMIT = 512
MAX_NAME_LENGTH = 255
MAX_LABEL_LENGTH = 63
MAX_POINTER_HOPS = 32


class QueryFormatError(Exception):
    """A datagram the server cannot treat as a DNS query.

    Attributes:
        rcode: The error to answer with, or None to drop the datagram without
            a reply (what the engine does when there is no usable header).
        header: The datagram's header fields, when it had a whole header.
    """

    def __init__(
        self,
        reason: str,
        *,
        rcode: int | None,
        header: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(reason)
        self.rcode = rcode
        self.header = header


@frozen(kw_only=True)
class Query:
    """One parsed query: what the server needs to answer it.

    Attributes:
        id: The query's ID, echoed in the reply.
        flags: The query's header flags.
        labels: The question's labels, exactly as sent.
        qname_wire: The question name in uncompressed wire form, as sent; the
            engine echoes this spelling in the question and in every record.
        qtype: The question's type.
        qclass: The question's class.
        udp_payload: The EDNS buffer size the client offered, or None without EDNS.
    """

    id: int
    flags: int
    labels: tuple[bytes, ...]
    qname_wire: bytes
    qtype: int
    qclass: int
    udp_payload: int | None

    @property
    def opcode(self) -> int:
        """The query's opcode."""
        return (self.flags & OPCODE_MASK) >> 11

    @property
    def ascii_name(self) -> str | None:
        """The name as sent, without the root dot, if it can be a Swarm name.

        None when a label holds a dot or a byte outside ASCII: no Swarm name can.
        """
        try:
            text = [label.decode("ascii") for label in self.labels]
        except UnicodeDecodeError:
            return None
        if any("." in label for label in text):
            return None
        return ".".join(text)


_PLAIN_LABEL = re.compile(rb"[A-Za-z0-9_-]*")


def name_to_text(labels: tuple[bytes, ...]) -> str:
    """Render wire labels as presentation text, escaping bytes like dnspython."""
    if all(_PLAIN_LABEL.fullmatch(label) for label in labels):  # the usual case
        return b".".join(labels).decode("ascii") + "."
    return ".".join(_label_to_text(label) for label in labels) + "."


def _label_to_text(label: bytes) -> str:
    chars = []
    for byte in label:
        if chr(byte) in _ESCAPED:
            chars.append("\\" + chr(byte))
        elif 0x21 <= byte <= 0x7E:
            chars.append(chr(byte))
        else:
            chars.append(f"\\{byte:03d}")
    return "".join(chars)


_ESCAPED = frozenset('."\\();@$')


def read_name(data: bytes, offset: int) -> tuple[tuple[bytes, ...], int]:
    """Read a possibly compressed name.

    Returns:
        The labels and the offset just after the name where it started.

    Raises:
        QueryFormatError: A label runs past the end, a pointer loops or points
            forward, a reserved label type is used, or the name is too long.
    """
    labels: list[bytes] = []
    length = 1
    end: int | None = None
    hops = 0
    while True:
        if offset >= len(data):
            raise QueryFormatError("name runs past the end", rcode=RCODE_FORMERR)
        size = data[offset]
        kind = size & 0xC0
        if kind == 0xC0:
            if offset + 1 >= len(data):
                raise QueryFormatError("pointer runs past the end", rcode=RCODE_FORMERR)
            target = ((size & 0x3F) << 8) | data[offset + 1]
            hops += 1
            if target >= offset or hops > MAX_POINTER_HOPS:
                raise QueryFormatError("bad compression pointer", rcode=RCODE_FORMERR)
            if end is None:
                end = offset + 2
            offset = target
            continue
        if kind:
            raise QueryFormatError("reserved label type", rcode=RCODE_FORMERR)
        offset += 1
        if size == 0:
            break
        if offset + size > len(data):
            raise QueryFormatError("label runs past the end", rcode=RCODE_FORMERR)
        length += size + 1
        if length > MAX_NAME_LENGTH:
            raise QueryFormatError("name longer than 255 bytes", rcode=RCODE_FORMERR)
        labels.append(data[offset : offset + size])
        offset += size
    return tuple(labels), offset if end is None else end


def encode_name(labels: tuple[bytes, ...]) -> bytes:
    """Encode labels as an uncompressed wire name."""
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def encode_text_name(name: str) -> bytes:
    """Encode a dotted ASCII name (no escapes) as an uncompressed wire name."""
    labels = tuple(label.encode("ascii") for label in name.strip(".").split("."))
    return encode_name(labels if labels != (b"",) else ())


def _skip_records(data: bytes, offset: int, count: int) -> tuple[int, int | None]:
    """Skip ``count`` resource records; return the new offset and any EDNS size."""
    udp_payload = None
    for _ in range(count):
        _, offset = read_name(data, offset)
        if offset + RR_FIXED.size > len(data):
            raise QueryFormatError("record runs past the end", rcode=RCODE_FORMERR)
        rtype, rclass, _, rdlength = RR_FIXED.unpack_from(data, offset)
        offset += RR_FIXED.size + rdlength
        if offset > len(data):
            raise QueryFormatError("record data runs past the end", rcode=RCODE_FORMERR)
        if rtype == TYPE_OPT:
            udp_payload = rclass
    return offset, udp_payload


def parse_query(data: bytes) -> Query:
    """Parse a query the way the engine's DNS library accepts one.

    Raises:
        QueryFormatError: The datagram is to be dropped (no whole header, or it
            is itself a response) or answered with FORMERR or NOTIMP.
    """
    if len(data) < HEADER.size:
        raise QueryFormatError("shorter than a header", rcode=None)
    query_id, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    header = (query_id, flags)
    if flags & FLAG_QR:
        raise QueryFormatError("a response, not a query", rcode=None, header=header)
    opcode = (flags & OPCODE_MASK) >> 11
    if opcode not in (OPCODE_QUERY, OPCODE_NOTIFY):
        raise QueryFormatError("opcode not supported", rcode=RCODE_NOTIMP, header=header)
    if qdcount != 1 or ancount > 1 or nscount > 1 or arcount > 2:
        raise QueryFormatError("unexpected section counts", rcode=RCODE_FORMERR, header=header)
    try:
        labels, offset = read_name(data, HEADER.size)
        if offset + QUESTION_FIXED.size > len(data):
            raise QueryFormatError("question runs past the end", rcode=RCODE_FORMERR)
        qtype, qclass = QUESTION_FIXED.unpack_from(data, offset)
        offset += QUESTION_FIXED.size
        _, udp_payload = _skip_records(data, offset, ancount + nscount + arcount)
    except QueryFormatError as error:
        error.header = header
        raise
    return Query(
        id=query_id,
        flags=flags,
        labels=labels,
        qname_wire=encode_name(labels),
        qtype=qtype,
        qclass=qclass,
        udp_payload=udp_payload,
    )


def reply_flags(
    query_flags: int, rcode: int, *, truncated: bool = False, recursion: bool = True
) -> int:
    """Header flags of a reply: QR set, RD and CD copied, AA clear, RA if ``recursion``."""
    flags = FLAG_QR | (query_flags & (OPCODE_MASK | FLAG_RD | FLAG_CD))
    if recursion:
        flags |= FLAG_RA
    if truncated:
        flags |= FLAG_TC
    return flags | rcode


def error_reply(query_id: int, query_flags: int, rcode: int) -> bytes:
    """The header-only reply to a query that could not be parsed.

    Like the engine's DNS library, it keeps the query's flags, sets QR and the
    rcode, and clears AA and Z; the opcode is kept only for NOTIMP.
    """
    flags = query_flags & ~(FLAG_QR | FLAG_AA | FLAG_Z | RCODE_MASK)
    if rcode != RCODE_NOTIMP:
        flags &= ~OPCODE_MASK
    return HEADER.pack(query_id, flags | FLAG_QR | rcode, 0, 0, 0, 0)


def a_record(owner: bytes, address: bytes, ttl: int) -> bytes:
    """One A record, its owner name written out in full."""
    return owner + RR_FIXED.pack(TYPE_A, CLASS_IN, ttl, 4) + address


def opt_record(payload: int) -> bytes:
    """An OPT pseudo-record offering ``payload`` bytes over UDP (EDNS version 0, no flags)."""
    return b"\x00" + RR_FIXED.pack(TYPE_OPT, payload, 0, 0)


def ptr_record(owner: bytes, target: bytes, ttl: int) -> bytes:
    """One PTR record, both names written out in full."""
    return owner + RR_FIXED.pack(TYPE_PTR, CLASS_IN, ttl, len(target)) + target


#: A compressed owner name: a pointer to the question's name, just after the header.
QUESTION_POINTER = (0xC000 | HEADER.size).to_bytes(2, "big")


def compress_owners(records: list[bytes], owner: bytes) -> list[bytes]:
    """The same records with their owner, ``owner`` in full, as a pointer to the question."""
    skip = len(owner)
    return [QUESTION_POINTER + record[skip:] for record in records]


def _fitting(records: list[bytes], size: int, limit: int, shrink: int = 0) -> int:
    """How many leading records fit in ``limit`` bytes after ``size`` bytes.

    Each record counts ``shrink`` bytes shorter than it is (its owner, once
    compressed).
    """
    kept = 0
    for record in records:
        size += len(record) - shrink
        if size > limit:
            break
        kept += 1
    return kept


def build_reply(
    query: Query,
    rcode: int,
    records: list[bytes],
    *,
    limit: int | None = None,
    query_id: int | None = None,
    compress: bool = False,
    flag_truncation: bool = True,
    recursion: bool = True,
    additional: bytes = b"",
) -> tuple[bytes, int, bool]:
    """Assemble a reply, dropping trailing records until it fits ``limit``.

    Args:
        query: The query answered.
        rcode: The reply's response code.
        records: The answer records, each owned by the question's name in full.
        limit: The largest reply allowed, in bytes (None: no limit).
        query_id: The ID to answer under (default: the query's).
        compress: When the records do not all fit, write every owner as a
            pointer to the question first, and drop records only then (what
            engines 24 and newer do). A reply that fits is never compressed.
        flag_truncation: Set TC when records were dropped.
        recursion: Set RA.
        additional: One record for the additional section (an upstream's
            OPT), counted in ``limit`` and never dropped.

    Returns:
        The message, how many records it carries, and whether records were dropped.
    """
    question = query.qname_wire + QUESTION_FIXED.pack(query.qtype, query.qclass)
    start = HEADER.size + len(question) + len(additional)
    body = records
    if limit is not None and start + sum(map(len, records)) > limit:
        if compress:
            # Only the records kept are compressed: each owner becomes 2 bytes.
            kept = _fitting(records, start, limit, len(query.qname_wire) - 2)
            body = compress_owners(records[:kept], query.qname_wire)
        else:
            body = records[: _fitting(records, start, limit)]
    kept = len(body)
    truncated = kept < len(records)
    flags = reply_flags(
        query.flags, rcode, truncated=truncated and flag_truncation, recursion=recursion
    )
    header = HEADER.pack(
        query.id if query_id is None else query_id, flags, 1, kept, 0, 1 if additional else 0
    )
    return header + question + b"".join(body) + additional, kept, truncated
