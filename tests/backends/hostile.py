"""A scriptable DNS server for tests: it answers each query as the test tells it to.

``HostileServer`` listens on 127.0.0.1 (or another loopback address, such as
the engine's 127.0.0.11), UDP and TCP on one port, in one
thread. For every query it calls the test's handler, which returns what to
send back: any number of messages (well formed or not), each after its own
delay, over the transport the query came in on. It can also hold its TCP
answers until the test releases them. ``stop()`` closes every socket and
joins the thread, and re-raises what the handler raised.

The builders below (``response``, ``add``...) write answers with dnspython.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from types import TracebackType
from typing import Literal

import attrs
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype

Transport = Literal["udp", "tcp"]
_LENGTH = struct.Struct("!H")
_STOP_TIMEOUT = 10.0
_RECV_SIZE = 65536
_BIND_ATTEMPTS = 20


@attrs.frozen
class Query:
    """A query the server received.

    Attributes:
        message: The query, as dnspython reads it.
        transport: ``udp`` or ``tcp``.
        number: How many queries had come over this transport before, plus one.
    """

    message: dns.message.Message
    transport: Transport
    number: int

    @property
    def name(self) -> str:
        """The name asked about, in text, lower case, with the root dot."""
        return self.message.question[0].name.to_text().lower()


@attrs.frozen
class Send:
    """Bytes to send back, ``delay`` seconds after the query arrived."""

    data: bytes
    delay: float = 0.0


#: What a handler returns: each item is sent back (``bytes`` at once).
Script = Sequence[bytes | Send | dns.message.Message]
Handler = Callable[[Query], Script]


def to_wire(message: dns.message.Message) -> bytes:
    """``message`` in wire form, however big (dnspython would stop at the query's EDNS size)."""
    return message.to_wire(max_size=65535)


def _as_send(item: bytes | Send | dns.message.Message) -> Send:
    if isinstance(item, Send):
        return item
    if isinstance(item, dns.message.Message):
        return Send(to_wire(item))
    return Send(item)


def _bind_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same free port of ``host``."""
    for _ in range(_BIND_ATTEMPTS):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.bind((host, 0))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, udp.getsockname()[1]))
            tcp.listen(64)
        except OSError:
            udp.close()
            tcp.close()
            continue
        return udp, tcp
    raise OSError(f"found no port of {host} free for both UDP and TCP")


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = bytearray()

    def messages(self) -> list[bytes]:
        found = []
        while len(self.received) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self.received)
            if len(self.received) < _LENGTH.size + length:
                break
            found.append(bytes(self.received[_LENGTH.size : _LENGTH.size + length]))
            del self.received[: _LENGTH.size + length]
        return found


class HostileServer:
    """A DNS server on a loopback address that answers as ``handler`` says; a context manager.

    Args:
        handler: Called in the server's thread with each ``Query``; what it
            returns is sent back. An empty list sends nothing (a silent server).
        host: The loopback address to listen on (127.0.0.11: where the
            client takes an answer for the engine's).
    """

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1") -> None:
        self.handler = handler
        self.host = host
        self._udp, self._tcp = _bind_pair(host)
        self.port: int = self._udp.getsockname()[1]
        self._wake_reader, self._wake_writer = socket.socketpair()
        for sock in (self._udp, self._tcp, self._wake_reader):
            sock.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._connections: dict[socket.socket, _Connection] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_ids = itertools.count()
        self._lock = threading.Condition()
        self._queries: list[Query] = []
        self._counts: dict[Transport, int] = {"udp": 0, "tcp": 0}
        self._holding = False
        self._held: list[tuple[_Connection, bytes]] = []
        self._held_total = 0
        self._errors: list[BaseException] = []
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def nameserver(self) -> str:
        """``<host>:<port>``, for ``DirectBackend``."""
        return f"{self.host}:{self.port}"

    # -- what the test sees and controls --------------------------------------------

    @property
    def queries(self) -> list[Query]:
        """Every query received so far, in order."""
        with self._lock:
            return list(self._queries)

    def count(self, transport: Transport) -> int:
        """How many queries came over ``transport``."""
        with self._lock:
            return self._counts[transport]

    @property
    def held_total(self) -> int:
        """How many TCP answers have been held back so far, in all."""
        with self._lock:
            return self._held_total

    def hold_tcp(self) -> None:
        """Keep every TCP answer from now on until ``release_tcp()``."""
        with self._lock:
            self._holding = True

    def release_tcp(self) -> None:
        """Send the TCP answers held back, and stop holding them."""
        with self._lock:
            self._holding = False
        self._wake()

    def wait_for_held(self, total: int, timeout: float = 10.0) -> None:
        """Block until ``held_total`` reaches ``total``; fail after ``timeout``."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._held_total >= total, timeout):
                raise AssertionError(
                    f"the server held {self._held_total} TCP answers, not {total}"
                )

    def wait_for_queries(self, count: int, timeout: float = 10.0) -> None:
        """Block until ``count`` queries have arrived; fail after ``timeout``."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._queries) >= count, timeout):
                raise AssertionError(
                    f"the server received {len(self._queries)} queries, not {count}"
                )

    # -- life cycle -----------------------------------------------------------------

    def start(self) -> HostileServer:
        """Serve in a background thread; returns the server itself."""
        self._selector.register(self._udp, selectors.EVENT_READ, self._on_udp)
        self._selector.register(self._tcp, selectors.EVENT_READ, self._on_accept)
        self._selector.register(self._wake_reader, selectors.EVENT_READ, self._on_wake)
        self._thread = threading.Thread(
            target=self._run, name=f"hostile-dns-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every socket and join the thread; raise what the handler raised."""
        self._stopping = True
        thread = self._thread
        if thread is not None:
            self._wake()
            thread.join(_STOP_TIMEOUT)
            if thread.is_alive():  # pragma: no cover - only a bug in this file gets here
                raise RuntimeError("the hostile DNS server did not stop")
        for connection in list(self._connections.values()):
            self._drop(connection)
        self._selector.close()
        self._close_sockets()
        if self._errors:
            raise RuntimeError("the test's DNS handler failed") from self._errors[0]

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _close_sockets(self) -> None:
        for sock in (self._udp, self._tcp, self._wake_reader, self._wake_writer):
            sock.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    # -- the loop ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            timeout = max(0.0, self._timers[0][0] - time.monotonic()) if self._timers else None
            for key, _ in self._selector.select(timeout):
                handler: Callable[[socket.socket], None] = key.data
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    handler(sock)
                except Exception as error:  # reported by stop()
                    self._errors.append(error)
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, callback = heapq.heappop(self._timers)
                try:
                    callback()
                except Exception as error:  # reported by stop()
                    self._errors.append(error)
            self._send_released()

    def _on_wake(self, sock: socket.socket) -> None:
        with contextlib.suppress(BlockingIOError):
            sock.recv(64)

    def _answer(self, data: bytes, transport: Transport) -> list[Send]:
        message = dns.message.from_wire(data)
        with self._lock:
            self._counts[transport] += 1
            query = Query(message, transport, self._counts[transport])
            self._queries.append(query)
            self._lock.notify_all()
        return [_as_send(item) for item in self.handler(query)]

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        if delay <= 0:
            callback()
            return
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_ids), callback))

    # -- UDP ------------------------------------------------------------------------------

    def _on_udp(self, sock: socket.socket) -> None:
        try:
            data, client = sock.recvfrom(_RECV_SIZE)
        except OSError:
            return
        for send in self._answer(data, "udp"):
            self._later(send.delay, functools.partial(self._send_udp, send.data, client))

    def _send_udp(self, data: bytes, client: tuple[str, int]) -> None:
        with contextlib.suppress(OSError):  # the client went away
            self._udp.sendto(data, client)

    # -- TCP --------------------------------------------------------------------------------

    def _on_accept(self, listener: socket.socket) -> None:
        try:
            sock, _ = listener.accept()
        except OSError:
            return
        sock.settimeout(1.0)  # sends block, briefly at most; reads follow the selector
        self._connections[sock] = _Connection(sock)
        self._selector.register(sock, selectors.EVENT_READ, self._on_readable)

    def _on_readable(self, sock: socket.socket) -> None:
        connection = self._connections[sock]
        try:
            data = sock.recv(_RECV_SIZE)
        except OSError:
            data = b""
        if not data:
            self._drop(connection)
            return
        connection.received += data
        for message in connection.messages():
            for send in self._answer(message, "tcp"):
                framed = _LENGTH.pack(len(send.data)) + send.data
                self._later(send.delay, functools.partial(self._send_tcp, connection, framed))

    def _send_tcp(self, connection: _Connection, framed: bytes) -> None:
        with self._lock:
            if self._holding:
                self._held.append((connection, framed))
                self._held_total += 1
                self._lock.notify_all()
                return
        self._write(connection, framed)

    def _send_released(self) -> None:
        with self._lock:
            if self._holding or not self._held:
                return
            released, self._held = self._held, []
        for connection, framed in released:
            self._write(connection, framed)

    def _write(self, connection: _Connection, framed: bytes) -> None:
        if connection.sock not in self._connections:
            return  # the client hung up meanwhile
        try:
            connection.sock.sendall(framed)
        except OSError:
            self._drop(connection)

    def _drop(self, connection: _Connection) -> None:
        self._connections.pop(connection.sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(connection.sock)
        connection.sock.close()


# -- building answers ---------------------------------------------------------------------------


def response(
    query: Query,
    *,
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR,
    truncated: bool = False,
    edns: bool = True,
) -> dns.message.Message:
    """A reply to ``query`` with no records yet: RA set, EDNS as asked (or none)."""
    message = dns.message.make_response(query.message, recursion_available=True)
    message.set_rcode(rcode)
    if truncated:
        message.flags |= dns.flags.TC
    if not edns:
        message.use_edns(False)
    return message


def add(
    message: dns.message.Message, name: str | dns.name.Name, rdtype: str, *values: str
) -> dns.message.Message:
    """Add records of ``rdtype`` for ``name`` to the answer section; returns ``message``."""
    owner = dns.name.from_text(name) if isinstance(name, str) else name
    rrset = message.find_rrset(
        message.answer,
        owner,
        dns.rdataclass.IN,
        dns.rdatatype.RdataType.make(dns.rdatatype.from_text(rdtype)),
        create=True,
    )
    for value in values:
        rrset.add(dns.rdata.from_text(dns.rdataclass.IN, rdtype, value), 600)
    return message


def add_a(
    message: dns.message.Message, name: str | dns.name.Name, addresses: Sequence[IPv4Address]
) -> dns.message.Message:
    """Add A records for ``name``; returns ``message``."""
    return add(message, name, "A", *(str(ip) for ip in addresses))


def addresses(count: int, first: str = "10.0.1.2") -> tuple[IPv4Address, ...]:
    """``count`` consecutive addresses from ``first``, sorted."""
    start = IPv4Address(first)
    return tuple(start + i for i in range(count))


def cached(build: Callable[[Query], dns.message.Message]) -> Handler:
    """A handler that builds its answer once per transport and name, then sends it again.

    Each copy carries the query's ID. For big answers: building 300 records with
    dnspython takes the server's thread milliseconds, and the client's the GIL.
    """
    answers: dict[tuple[Transport, str], bytes] = {}

    def handle(query: Query) -> Script:
        key = (query.transport, query.name)
        if key not in answers:
            answers[key] = to_wire(build(query))
        return [struct.pack("!H", query.message.id) + answers[key][2:]]

    return handle


def other_id(query: Query) -> int:
    """An ID that is not the query's."""
    return (query.message.id + 1) % 65536


def with_id(message: dns.message.Message, query_id: int) -> dns.message.Message:
    """``message`` sent under another ID."""
    message.id = query_id
    return message
