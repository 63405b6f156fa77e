"""The default backend: asks the configured nameservers directly, over its own sockets.

``Exchange`` decides everything about one question (EDNS, when to use TCP,
moving to the next nameserver, the deadline, how each failure reads); the
synchronous and asynchronous methods only carry its queries to a socket and
the replies back. The engine's usual answers are read by ``wire``; dnspython
reads the rest.
"""

from __future__ import annotations

import _socket
import contextlib
import os
import socket
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, NamedTuple, cast

import attrs

from .. import _memo
from .._deadlines import Deadline, Overrun, within
from .._errors import ResolutionError, ResolutionTimeout, SwarmDNSError
from .._log import logger
from .._model import Answer, Question
from .._own_addresses import container_networks
from .._provenance import ENGINE_TTL, Provenance
from . import wire
from .nameserver import (
    Nameserver,
    configured_nameservers,
    parse_nameservers,
    provenance_from_environment,
)

if TYPE_CHECKING:
    import asyncio

    import dns.message

# dnspython is imported only for answers the fast path hands over: most
# programs never pay for importing it.

_NOERROR, _SERVFAIL, _NXDOMAIN, _REFUSED = 0, 2, 3, 5
_RA = 0x0080
_RCODE_HINTS = {
    _SERVFAIL: "the nameserver failed to answer; this is usually transient",
    _REFUSED: "the engine refuses queries while more than 1024 are in flight",
}


#: CNAMEs followed inside one answer before giving up (a loop, or a chain too long).
_MAX_CNAMES = 8
_TRUNCATED_OVER_TCP = (
    "its answer was truncated even over TCP (more records than fit in 65,535 bytes),"
    " so it is not the whole list; check the nameserver"
)
_FULL_OVER_TCP = (
    "its answer over TCP fills the 65,535-byte limit, where Docker 20.10 drops"
    " records without saying so, so it may not be the whole list; on 20.10,"
    " shorter service and network names leave room for more tasks"
)


def _unusable(reply: dns.message.Message) -> str:
    """Why an answer with records answers nothing, naming what it holds."""
    import dns.rcode  # noqa: PLC0415 - see the module's imports
    import dns.rdatatype  # noqa: PLC0415 - the same reason

    held = ", ".join(
        f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}" for rrset in reply.answer[:3]
    )
    more = f" and {len(reply.answer) - 3} more" if len(reply.answer) > 3 else ""
    return (
        f"its {dns.rcode.to_text(reply.rcode())} answer holds no usable record for the"
        f" name asked ({held}{more}), so it is not read as a list of tasks; check the"
        " nameserver"
    )


class _Timeout(Exception):
    """No answer arrived in time (the sockets' own timeout)."""


#: What a query can fail with before any answer is read.
_QUERY_ERRORS = (OSError, EOFError, _Timeout)


class Request(NamedTuple):
    """A query to send: to whom, over which transport, and how long to wait."""

    server: Nameserver
    tcp: bool
    timeout: float


class Exchange:
    """One question's way through the nameservers, without I/O.

    The query goes over UDP with EDNS first; a reply with the TC bit set is
    asked again over TCP of the same server (``handle_wire``, the one place
    that decides it). A reply still truncated over TCP is a failure, never
    data. Each server gets an equal share of the time left for the servers
    not yet tried, and a failing or silent one passes the question to the
    next while time remains.
    """

    def __init__(
        self,
        question: Question,
        servers: Sequence[Nameserver],
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        query_id: int | None = None,
    ) -> None:
        self.question = question
        self._rdtype = wire.TYPE_A if question.rdtype == "A" else wire.TYPE_PTR
        if query_id is None:
            query_id = int.from_bytes(os.urandom(2), "big")
        self.wire = wire.build_query(question.name, self._rdtype, query_id)
        self._query: dns.message.Message | None = None
        self._servers = servers
        self._index = 0
        self._tcp = False
        self._deadline = Deadline(timeout, clock=clock)
        self._waited = timeout  # what the last request was given
        self._answer: Answer | None = None
        self._failure: SwarmDNSError | None = None
        self._final = False

    @property
    def query(self) -> dns.message.Message:
        """The query as a dnspython message, to judge unusual answers."""
        if self._query is None:
            import dns.message  # noqa: PLC0415 - see the module's imports

            self._query = dns.message.from_wire(self.wire)
        return self._query

    def next_request(self) -> Request | None:
        """The next query to send, or None when the exchange is over."""
        if self._final:
            return None
        remaining = self._deadline.remaining()
        if remaining <= 0:
            self._finish(self._timed_out())
            return None
        # A silent server must leave time for the others.
        self._waited = remaining / (len(self._servers) - self._index)
        return Request(self._server, self._tcp, self._waited)

    def usual_values(self, data: bytes) -> tuple[int, ...] | None:
        """The addresses of the usual reply to a first A query over UDP, as integers.

        A watch's fast path: when this returns the sorted, distinct address
        values (``()`` for NXDOMAIN or no records), that is the exchange's
        whole outcome, as ``handle_wire`` would have read it. None: pass
        ``data`` to ``handle_wire``.
        """
        if self._tcp or self._failure is not None or self._rdtype != wire.TYPE_A:
            return None
        values = wire.read_values(data, self.wire, ttl=self._engine_ttl())
        rules = self._server.engine
        if values is None or (rules is not None and not rules.values_inside(values)):
            return None  # not the usual shape; or the full reading says why it is not the engine's
        self._final = True
        return values

    def handle_wire(self, data: bytes) -> None:
        """Take the reply to the last request, as received."""
        if wire.is_truncated(data):
            if not self._tcp:
                self._tcp = True  # the one place that decides: ask the same server over TCP
                return
            self._next_server(self._failure_of(_TRUNCATED_OVER_TCP))
            return
        if self._tcp and wire.may_be_cut(data, self.wire):
            self._next_server(self._failure_of(_FULL_OVER_TCP))
            return
        fast = self._read_fast(data)
        if fast is not None:
            self._take(fast.records, nxdomain=fast.rcode == _NXDOMAIN)
            return
        import dns.message  # noqa: PLC0415 - see the module's imports

        try:
            reply = dns.message.from_wire(data)
        except Exception as error:  # dnspython found the answer malformed
            self.handle_error(error)
            return
        if not self.query.is_response(reply):
            self.handle_error(ValueError("the answer is not to the question asked"))
            return
        self._handle_reply(reply)

    def _engine_ttl(self) -> int | None:
        """The TTL every record must have to be read fast: the engine's, where it is checked."""
        rules = self._server.engine
        return ENGINE_TTL if rules is not None and rules.checked else None

    def _read_fast(self, data: bytes) -> wire.Reply | None:
        """The usual reply, read fast, if it is the engine's own where that matters; else None."""
        fast = wire.read_reply(data, self.wire, self._rdtype, ttl=self._engine_ttl())
        rules = self._server.engine
        if fast is None or rules is None or self._rdtype != wire.TYPE_A or not fast.records:
            return fast
        addresses = cast("tuple[IPv4Address, ...]", fast.records)  # sorted
        if rules.span_inside(int(addresses[0]), int(addresses[-1])):
            return fast
        return fast if rules.outside(addresses) is None else None

    def handle_error(self, error: Exception) -> None:
        """Take the exception that the last request raised."""
        if isinstance(error, _Timeout):
            self._next_server(self._timed_out())  # its share is spent; the last one ends it
            return
        if isinstance(error, OSError | EOFError):
            reason = f"the connection failed: {getattr(error, 'strerror', None) or error!r}"
        else:
            reason = f"its answer was unusable ({type(error).__name__}: {error})"
        failure = self._failure_of(reason)
        failure.__cause__ = error
        self._next_server(failure)

    def result(self) -> Answer:
        """The answer, once ``next_request()`` returned None.

        Raises:
            ResolutionTimeout: No answer came before the deadline.
            ResolutionError: Every nameserver failed.
        """
        if self._answer is not None:
            return self._answer
        if self._failure is None:
            raise RuntimeError("result() called before the exchange was over")
        raise self._failure

    @property
    def _server(self) -> Nameserver:
        return self._servers[self._index]

    def _what(self) -> str:
        return f"{self.question.rdtype} {self.question.name!r}"

    def _failure_of(self, reason: str) -> ResolutionError:
        return ResolutionError(
            f"cannot get {self._what()} from {self._server}: {reason}",
            name=self.question.name,
            nameserver=str(self._server),
        )

    def _handle_reply(self, reply: dns.message.Message) -> None:
        rcode = reply.rcode()
        if rcode in (_NOERROR, _NXDOMAIN):
            records = self._records(reply)
            if records is None:
                self._next_server(self._failure_of(_unusable(reply)))
                return
            reason = self._forwarded(reply, records)
            if reason is not None:
                self._take_forwarded(reason)
                return
            self._take(records, nxdomain=rcode == _NXDOMAIN)
            return
        if self._engine_disowns(reply):
            self._take((), nxdomain=True)
            return
        hint = _RCODE_HINTS.get(rcode, "the nameserver could not answer")
        self._next_server(
            ResolutionError(
                f"{self._server} answered {_rcode_text(rcode)} for {self._what()}: {hint}",
                name=self.question.name,
                nameserver=str(self._server),
            )
        )

    def _forwarded(self, reply: dns.message.Message, records: tuple[str, ...]) -> str | None:
        """Why the engine's answer with ``records`` is not its own, but forwarded; else None."""
        rules = self._server.engine
        if rules is None or not records:
            return None
        addresses: tuple[IPv4Address, ...] = ()
        if self._rdtype == wire.TYPE_A:
            with contextlib.suppress(ValueError):  # a malformed record fails the lookup later
                addresses = tuple(IPv4Address(record) for record in records)
        return rules.forwarded(
            opt=reply.edns >= 0,
            ttls=(rrset.ttl for rrset in reply.answer),
            addresses=addresses,
        )

    def _take_forwarded(self, reason: str) -> None:
        """The engine forwarded the name: no records of its own, so "no such name"; or raise."""
        server = _text(self._server)
        rules = self._server.engine
        assert rules is not None  # noqa: S101 - only the engine's answers are judged
        error = rules.forwarded_error(name=self.question.name, nameserver=server, reason=reason)
        if error is not None:
            self._finish(error)
            return
        logger("lookups").debug(
            "%s forwarded %s; read as no such name: %s", server, self._what(), reason
        )
        self._answer = Answer(
            question=self.question, nxdomain=True, nameserver=server, forwarded=reason
        )
        self._final = True

    def _engine_disowns(self, reply: dns.message.Message) -> bool:
        """Whether the engine said that the name is not one of its own.

        Docker 24 and newer answer every name they own themselves, with RA set
        (a service with no running task has no name). A name they do not own
        goes to the upstream nameservers, and when none of those answers, the
        engine says SERVFAIL (or REFUSED, past 1,024 forwards in flight)
        without RA, echoing the question: for a name of the Swarm, that is as
        good as NXDOMAIN. Only the engine is read so (127.0.0.11, or what
        ``Provenance`` names); elsewhere SERVFAIL is a failure, and so is one
        without the question (never the engine's: it says nothing of which
        name was disowned).
        """
        return (
            reply.rcode() in (_SERVFAIL, _REFUSED)
            and not reply.flags & _RA
            and bool(reply.question)
            and self._server.engine is not None
        )

    def _take(self, records: tuple[str, ...] | tuple[IPv4Address, ...], *, nxdomain: bool) -> None:
        if self._failure is not None and not records:
            # An earlier server failed. Another one's "no such name" may only
            # mean that it is not the engine: "no tasks" cannot be trusted.
            self._finish(self._failure)
            return
        self._answer = Answer(
            question=self.question,
            records=records,
            nxdomain=nxdomain,
            nameserver=_text(self._server),
        )
        self._final = True

    def _records(self, reply: dns.message.Message) -> tuple[str, ...] | None:
        """The records of the type asked for the name asked, or None if the answer has none.

        A CNAME chain inside the answer is followed, as resolvers do. An empty
        answer section (NODATA, or NXDOMAIN) means no records. An answer that
        holds records, none of them ours, does not answer the question: None.
        So does an NXDOMAIN that carries records.
        """
        import dns.rdatatype  # noqa: PLC0415 - see the module's imports

        if not reply.answer:
            return ()
        if reply.rcode() == _NXDOMAIN:
            return None
        name = self.query.question[0].name
        for _ in range(_MAX_CNAMES + 1):
            values = [
                rdata.to_text()
                for rrset in reply.answer
                if rrset.rdtype == self._rdtype and rrset.name == name
                for rdata in rrset
            ]
            if values:
                return tuple(values)
            aliases = [
                rrset[0].target
                for rrset in reply.answer
                if rrset.rdtype == dns.rdatatype.CNAME and rrset.name == name
            ]
            if not aliases:
                return None
            name = aliases[0]
        return None  # a chain too long, or a loop

    def _timed_out(self) -> ResolutionTimeout:
        transport = "TCP" if self._tcp else "UDP"
        return ResolutionTimeout(
            f"no answer from {self._server} for {self._what()} within"
            f" {self._waited:.3g} s (over {transport}); check that the nameserver is"
            " reachable (127.0.0.11 in a Swarm task) or pass a larger timeout",
            name=self.question.name,
            nameserver=str(self._server),
        )

    def _next_server(self, failure: SwarmDNSError) -> None:
        self._failure = failure
        self._index += 1
        self._tcp = False
        if self._index >= len(self._servers):
            self._final = True

    def _finish(self, failure: SwarmDNSError) -> None:
        self._failure = failure
        self._final = True


class DirectBackend:
    """Asks the nameservers directly, over its own sockets; the default backend.

    Queries carry EDNS with a 4096-byte buffer, truncated answers are asked
    again over TCP, names are absolute (no search domains) and nothing is
    cached. With several nameservers, each is tried in turn with an equal
    share of the time left. Datagrams that do not answer the query are ignored.
    The engine's usual answers are read by a fast reader of swarmdns's own;
    dnspython reads anything else. ``DNSPythonBackend`` is another name for it.

    An answer of the engine (127.0.0.11) that it forwarded to the host's
    resolvers is never read as tasks (``provenance``).

    Args:
        nameservers: ``host`` or ``host:port`` strings. By default, read on
            every call: ``SWARMDNS_NAMESERVER``, else ``/etc/resolv.conf``
            (127.0.0.11 inside a Swarm task).
        provenance: Which nameserver is the engine, and whether its answers
            are checked. By default, read on every call:
            ``SWARMDNS_PROVENANCE``, else ``Provenance()`` (127.0.0.11 is the
            engine, checked against this container's networks).

    Raises:
        ConfigurationError: A nameserver is not an IP address with an optional port.
        TypeError: ``nameservers`` is not a string or a list of strings.
        ValueError: ``nameservers`` is an empty list.
    """

    #: Every call ends by its timeout: the sockets' waits are bounded by it.
    keeps_deadline = True
    #: Its answers are its nameservers' own: a fleet may ask them over one socket.
    speaks_wire = True

    def __init__(
        self, nameservers: Sequence[str] | None = None, *, provenance: Provenance | None = None
    ) -> None:
        if provenance is not None and not isinstance(provenance, Provenance):
            raise TypeError(f"provenance must be a swarmdns.Provenance, not {provenance!r}")
        self._provenance = provenance
        self._fixed = (
            None if nameservers is None else parse_nameservers(nameservers, source="nameservers")
        )

    def __repr__(self) -> str:
        if self._fixed is None:
            return f"{type(self).__name__}()"
        return f"{type(self).__name__}({[str(n) for n in self._fixed]!r})"

    def nameservers(self) -> tuple[Nameserver, ...]:
        """The nameservers a question asked now goes to, in order.

        Raises:
            ConfigurationError: None is configured, or one is malformed.
        """
        servers = configured_nameservers() if self._fixed is None else self._fixed
        provenance = self._provenance
        if provenance is None:
            provenance = provenance_from_environment()
        return _ruled(servers, provenance)

    def _exchange(self, question: Question, timeout: float) -> Exchange:
        return Exchange(question, self.nameservers(), timeout)

    def resolve(self, question: Question, timeout: float) -> Answer:
        """Answer ``question`` within ``timeout`` seconds."""
        exchange = self._exchange(question, timeout)
        while (request := exchange.next_request()) is not None:
            send = _tcp_exchange if request.tcp else _udp_exchange
            try:
                data = send(exchange.wire, request.server, request.timeout)
            except _QUERY_ERRORS as error:
                exchange.handle_error(error)
            else:
                exchange.handle_wire(data)
        return exchange.result()

    async def resolve_async(self, question: Question, timeout: float) -> Answer:
        """Answer ``question`` within ``timeout`` seconds, without blocking the loop."""
        exchange = self._exchange(question, timeout)
        while (request := exchange.next_request()) is not None:
            send = tcp_exchange_async if request.tcp else _udp_exchange_async
            try:
                data = await send(exchange.wire, request.server, request.timeout)
            except _QUERY_ERRORS as error:
                exchange.handle_error(error)
            else:
                exchange.handle_wire(data)
        return exchange.result()


@_memo.memoize(maxsize=64)
def _ruled(servers: tuple[Nameserver, ...], provenance: Provenance) -> tuple[Nameserver, ...]:
    """``servers``, each with the rules for its answers that ``provenance`` gives."""
    return tuple(
        attrs.evolve(server, engine=provenance.engine_rules(server.host, container_networks))
        for server in servers
    )


#: The name the default backend had before it spoke over its own sockets.
DNSPythonBackend = DirectBackend


@_memo.memoize(maxsize=64)
def _text(server: Nameserver) -> str:
    """A nameserver as text, for answers and messages (the same few, again and again)."""
    return str(server)


def socket_family(server: Nameserver) -> socket.AddressFamily:
    """The address family of the sockets that reach ``server``."""
    return socket.AF_INET6 if ":" in server.host else socket.AF_INET


#: How a TCP exchange fails when the server hangs up before the whole answer is in.
CLOSED_MID_ANSWER = "the nameserver closed the connection mid-answer"


def framed(query: bytes) -> bytes:
    """``query`` as it goes over TCP: after its length, in two bytes (RFC 1035, 4.2.2)."""
    return len(query).to_bytes(2, "big") + query


def timed_out(timeout: float) -> _Timeout:
    """The exception a request without an answer within ``timeout`` seconds ends with."""
    return _Timeout(f"no answer within {timeout:.3g} s")


def _rcode_text(rcode: int) -> str:
    import dns.rcode  # noqa: PLC0415 - see the module's imports

    return dns.rcode.to_text(dns.rcode.Rcode.make(rcode))


def _udp_exchange(query: bytes, server: Nameserver, timeout: float) -> bytes:
    """Send ``query`` over UDP and return the first datagram that answers it.

    Datagrams that are not a reply to it (``wire.answers``) are dropped.
    """
    deadline = Deadline(timeout)
    # The socket module's C type: its Python subclass's set-up and close()
    # add work that an exchange this short has no use for.
    sock = _socket.socket(socket_family(server), socket.SOCK_DGRAM)
    try:
        sock.connect((server.host, server.port))
        sock.send(query)
        sock.settimeout(timeout)
        while not wire.answers(data := sock.recv(65535), query):
            sock.settimeout(max(deadline.remaining(), 1e-6))  # a stray datagram: wait on
        return data
    except TimeoutError:
        raise timed_out(timeout) from None
    finally:
        sock.close()


def _tcp_exchange(query: bytes, server: Nameserver, timeout: float) -> bytes:
    """Send ``query`` over TCP and return the answer, all within ``timeout``."""
    deadline = Deadline(timeout)
    try:
        with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
            sock.sendall(framed(query))
            length = int.from_bytes(_receive(sock, 2, deadline), "big")
            return _receive(sock, length, deadline)
    except TimeoutError:
        raise timed_out(timeout) from None


def _receive(sock: socket.socket, size: int, deadline: Deadline) -> bytes:
    data = b""
    while len(data) < size:
        sock.settimeout(max(deadline.remaining(), 1e-6))
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(CLOSED_MID_ANSWER)
        data += chunk
    return data


async def _udp_exchange_async(query: bytes, server: Nameserver, timeout: float) -> bytes:
    """``_udp_exchange`` for asyncio: the socket is closed even when cancelled.

    Waits for the socket itself (a reader and a timer on the loop), which
    costs a watch over many services less than ``loop.sock_recv()`` inside a
    timeout scope.
    """
    import asyncio  # noqa: PLC0415 - asyncio only for asyncio users: it is slow to import

    loop = asyncio.get_running_loop()
    sock = socket.socket(socket_family(server), socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect((server.host, server.port))  # UDP: no packet, no waiting
        sock.send(query)  # a datagram this small never blocks
        received: asyncio.Future[bytes] = loop.create_future()
        loop.add_reader(sock.fileno(), _deliver, sock, query, received)
        timer = loop.call_later(timeout, _expire, received, timeout)
        try:
            return await received
        finally:
            timer.cancel()
            loop.remove_reader(sock.fileno())
    finally:
        sock.close()


def _deliver(sock: socket.socket, query: bytes, received: asyncio.Future[bytes]) -> None:
    """The socket is readable: hand the reply (or the error) to whoever waits.

    A datagram that does not answer ``query`` is dropped, and the wait goes on.
    """
    if received.done():
        return
    try:
        data = sock.recv(65535)
    except (BlockingIOError, InterruptedError):
        return  # woken for nothing: wait on
    except OSError as error:  # such as an ICMP "port unreachable"
        received.set_exception(error)
        return
    if wire.answers(data, query):
        received.set_result(data)


def _expire(received: asyncio.Future[bytes], timeout: float) -> None:
    if not received.done():
        received.set_exception(timed_out(timeout))


async def tcp_exchange_async(query: bytes, server: Nameserver, timeout: float) -> bytes:
    """``_tcp_exchange`` for asyncio: the connection is closed even when cancelled."""
    import asyncio  # noqa: PLC0415 - asyncio only for asyncio users: it is slow to import

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(framed(query))
            await writer.drain()
            length = int.from_bytes(await reader.readexactly(2), "big")
            return await reader.readexactly(length)
        finally:
            writer.close()  # a cancel that lands in wait_closed() still propagates
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    try:
        return await within(exchange(), timeout)
    except Overrun:
        raise timed_out(timeout) from None
