"""The lab's upstream resolver: where a real engine forwards the names it does not own.

``SwarmDriver`` runs it in the engine's own network namespace, on the address
the engine's ``--dns`` names, port 53, UDP and TCP; nothing it sends can leave
the machine. It takes one command a line on stdin and prints the command back
on stdout once it is in effect (and ``nxdomain`` first, once it listens), so
that a test can switch it between two queries:

- ``nxdomain`` (the default): no name exists, as a host's resolver says of the
  names the engine forwards (NXDOMAIN, flags QR, RA and the query's RD, no
  OPT record), as the fake did when it was the lab's upstream.
- ``silent``: every query is read and none answered (packets dropped).
- ``hijack [ADDRESS...]``: an A query for any name is answered with public
  addresses (``HIJACK_ADDRESSES`` unless given) with TTL ``HIJACK_TTL``, as
  resolvers that rewrite NXDOMAIN do (moby issue 40435 quotes these
  addresses); other types are NXDOMAIN. Every answer carries an OPT record
  (UDP payload ``HIJACK_PAYLOAD``) when the query had one.

End of stdin or SIGTERM ends it. Run by hand (as root), in engine 28.5's
namespace, then type the modes::

    nsenter -t "$(cat /tmp/swarmdns-swarm/28.5/dockerd.pid)" -n \\
        .venv/bin/python tests/conformance/upstream.py 198.18.0.1
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

MODES = ("nxdomain", "silent", "hijack")
#: What a hijacking resolver answers for every name, and for how long.
HIJACK_ADDRESSES = ("23.202.231.167", "23.217.138.108")
HIJACK_TTL = 300
#: The UDP payload size its OPT record offers (what public resolvers offer).
HIJACK_PAYLOAD = 1232


class Upstream:
    """The resolver's state: the mode it answers in, switched by commands."""

    def __init__(self) -> None:
        self.mode = "nxdomain"
        self.addresses = HIJACK_ADDRESSES

    def reply(self, wire: bytes) -> bytes | None:
        """The reply to one query in the current mode, or None for none."""
        mode, addresses = self.mode, self.addresses
        if mode == "silent":
            return None
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if query.flags & dns.flags.QR or len(query.question) != 1:
            return None
        response = dns.message.make_response(
            query, recursion_available=True, our_payload=HIJACK_PAYLOAD
        )
        (question,) = query.question
        if mode == "hijack" and question.rdtype == dns.rdatatype.A:
            response.answer.append(
                dns.rrset.from_text(question.name, HIJACK_TTL, "IN", "A", *addresses)
            )
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        if mode == "nxdomain":
            response.use_edns(False)
        return response.to_wire()


def serve_udp(upstream: Upstream, sock: socket.socket) -> None:
    while True:
        wire, client = sock.recvfrom(65535)
        reply = upstream.reply(wire)
        if reply is not None:
            with contextlib.suppress(OSError):  # a client gone is no reason to stop
                sock.sendto(reply, client)


def serve_tcp(upstream: Upstream, listener: socket.socket) -> None:
    while True:
        connection, _ = listener.accept()
        threading.Thread(target=serve_connection, args=(upstream, connection), daemon=True).start()


def serve_connection(upstream: Upstream, connection: socket.socket) -> None:
    with connection, connection.makefile("rb") as stream, contextlib.suppress(OSError):
        while len(prefix := stream.read(2)) == 2:
            wire = stream.read(int.from_bytes(prefix, "big"))
            reply = upstream.reply(wire)
            if reply is not None:
                connection.sendall(len(reply).to_bytes(2, "big") + reply)


def main(address: str) -> None:
    """Serve on ``address``, port 53, switching modes as stdin says."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    upstream = Upstream()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    udp.bind((address, 53))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((address, 53))
    tcp.listen(64)
    for target, sock in ((serve_udp, udp), (serve_tcp, tcp)):
        threading.Thread(target=target, args=(upstream, sock), daemon=True).start()
    print(upstream.mode, flush=True)
    for line in sys.stdin:
        mode, *addresses = line.split()
        if mode not in MODES or (addresses and mode != "hijack"):
            print(f"not a command: {line.strip()!r} (modes: {', '.join(MODES)})", flush=True)
            continue
        # One assignment: a query sees the old mode or the new, whole.
        upstream.mode, upstream.addresses = mode, tuple(addresses) or HIJACK_ADDRESSES
        print(line.strip(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
