"""Two DNS clients that nobody here wrote, behind one interface: dig and dnspython.

Every behaviour of the engine that the fake reproduces is checked through
both, so a bug in our own reading of the wire cannot hide a bug in the fake.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
from collections.abc import Callable

import attrs
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from swarmdns.testing._base import ServedFake


@attrs.frozen(kw_only=True)
class Answer:
    """What a client saw of one reply."""

    rcode: str
    flags: frozenset[str]
    records: tuple[tuple[str, int, str, str], ...]  # (owner, ttl, type, value)
    has_opt: bool
    size: int

    @property
    def values(self) -> list[str]:
        """The records' values in the order received."""
        return [value for _, _, _, value in self.records]


class NoReply(Exception):
    """The client gave up waiting."""


#: ask(swarm, name, rdtype="A", *, transport="udp", edns=4096 | None) -> Answer
Ask = Callable[..., Answer]


def ask_dnspython(
    swarm: ServedFake,
    name: str,
    rdtype: str = "A",
    *,
    transport: str = "udp",
    edns: int | None = 4096,
    timeout: float = 1.0,
) -> Answer:
    query = dns.message.make_query(
        name, rdtype, use_edns=0 if edns is not None else False, payload=edns or 512
    )
    wire = exchange(swarm, query.to_wire(), transport=transport, timeout=timeout)
    reply = dns.message.from_wire(wire)
    assert reply.id == query.id
    return Answer(
        rcode=dns.rcode.to_text(reply.rcode()),
        flags=frozenset(dns.flags.to_text(reply.flags).lower().split()),
        records=tuple(
            (rrset.name.to_text(), rrset.ttl, dns.rdatatype.to_text(rrset.rdtype), rdata.to_text())
            for rrset in reply.answer
            for rdata in rrset
        ),
        has_opt=reply.opt is not None,
        size=len(wire),
    )


def exchange(
    swarm: ServedFake, data: bytes, *, transport: str = "udp", timeout: float = 1.0
) -> bytes:
    """Send raw bytes to the fake and return the raw reply."""
    family = socket.AF_INET6 if ":" in swarm.host else socket.AF_INET
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    with socket.socket(family, kind) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((swarm.host, swarm.port))
            if transport == "tcp":
                sock.sendall(struct.pack("!H", len(data)) + data)
                (length,) = struct.unpack("!H", _recv_exactly(sock, 2))
                return _recv_exactly(sock, length)
            sock.send(data)
            return sock.recv(65535)
        except TimeoutError as error:
            raise NoReply(data) from error


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = b""
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("the fake closed the connection")
        chunks += chunk
    return chunks


_HEADER = re.compile(r"->>HEADER<<- opcode: (\w+), status: (\w+), id: \d+")
_FLAGS = re.compile(r";; flags:([\w ]*);")
_SIZE = re.compile(r";; MSG SIZE\s+rcvd: (\d+)")


def ask_dig(
    swarm: ServedFake,
    name: str,
    rdtype: str = "A",
    *,
    transport: str = "udp",
    edns: int | None = 4096,
    timeout: float = 1.0,
) -> Answer:
    dig = shutil.which("dig")
    if dig is None:
        if os.environ.get("CI"):
            pytest.fail("dig is missing: .ci/run installs Debian's bind9-dnsutils")
        pytest.skip("dig is not installed (apt-get install bind9-dnsutils)")
    command = [
        dig,
        f"@{swarm.host}",
        "-p",
        str(swarm.port),
        name,
        rdtype,
        "+noall",
        "+comments",
        "+answer",
        "+stats",
        f"+time={max(1, round(timeout))}",
        "+tries=1",
        "+ignore",  # report TC instead of retrying over TCP
        "+tcp" if transport == "tcp" else "+notcp",
        f"+bufsize={edns}" if edns is not None else "+noedns",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if result.returncode == 9 or "timed out" in result.stdout:
        raise NoReply(name)
    assert result.returncode == 0, result.stdout + result.stderr
    header = _HEADER.search(result.stdout)
    flags = _FLAGS.search(result.stdout)
    size = _SIZE.search(result.stdout)
    assert header, result.stdout
    assert flags, result.stdout
    assert size, result.stdout
    records = []
    for line in result.stdout.splitlines():
        if line and not line.startswith(";"):
            owner, ttl, _cls, rtype, value = line.split(maxsplit=4)
            records.append((owner, int(ttl), rtype, value))
    return Answer(
        rcode=header.group(2),
        flags=frozenset(flags.group(1).split()),
        records=tuple(records),
        has_opt="OPT PSEUDOSECTION" in result.stdout,
        size=int(size.group(1)),
    )
