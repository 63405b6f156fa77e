"""UDP and TCP transport for the fake: one thread running a selector loop.

A plain ``selectors`` loop rather than asyncio: stopping closes every socket
the loop owns, at once and in this thread's own order, with no task left
pending and no transport half-closed.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import heapq
import itertools
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from ._loop import STOP_TIMEOUT, SelectorThread, logger
from ._responder import Reply, Transport

_LENGTH = struct.Struct("!H")
#: The engine's DNS library waits this long for a TCP connection's first
#: query, then ``_TCP_IDLE`` for each later one, and serves at most
#: ``_TCP_MAX_QUERIES`` queries per connection.
_TCP_FIRST_READ = 2.0
_TCP_IDLE = 8.0
_TCP_MAX_QUERIES = 128
_START_TIMEOUT = 10.0
_BIND_ATTEMPTS = 20
_RECV_SIZE = 65536
#: accept() failures that last until the process or the system frees memory
#: or descriptors: the server stops accepting for a pause, doubled up to a
#: limit while they last, instead of retrying at once for ever.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: The UDP receive buffer asked for, in bytes.
_UDP_BUFFER = 4 << 20
#: Linux's SO_TIMESTAMPNS (also its control message's type; the same on x86 and
#: ARM), which Python does not name: the kernel stamps each datagram on arrival.
_SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
#: The longest a datagram may have waited to be read, as its stamp says; more
#: is a clock that moved, and is taken as none.
_LONGEST_WAIT = 60.0
_ACCEPT_PAUSE_FIRST = 0.01
_ACCEPT_PAUSE_MAX = 0.5
#: TCP connections served at once; more wait in the listen backlog until one
#: ends (each has at most 2 s to send its first query, 8 s between queries).
MAX_TCP_CONNECTIONS = 128
#: Answers a TCP client has not read yet, in bytes, past which the server
#: reads no more of its queries until it reads: one connection holds at most
#: this plus one answer (64 KiB), so 128 of them at most 16 MiB.
TCP_UNREAD_LIMIT = 64 * 1024
#: Replies held back by a ``Delay`` at once, and their bytes: a reply past
#: either is dropped, and its client times out (a 3,600 s delay then 100,000
#: queries had held 39 MB).
MAX_HELD_REPLIES = 10_000
MAX_HELD_BYTES = 16 * 1024 * 1024


def _waited(stamps: list[tuple[int, int, bytes]]) -> float:
    """Seconds since a datagram arrived, from its kernel stamp (0 without one)."""
    for level, kind, data in stamps:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            waited = time.time() - (seconds + nanoseconds / 1e9)
            return waited if 0.0 < waited <= _LONGEST_WAIT else 0.0
    return 0.0


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """Bind a UDP and a TCP socket to the same port (any free one when 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(_BIND_ATTEMPTS if port == 0 else 1):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            # Room for a burst while the server's thread is busy (the kernel
            # caps it at net.core.rmem_max): a Python server reads slower than
            # the engine, and a test's burst should not be lost in its buffer.
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_BUFFER)
            with contextlib.suppress(OSError):  # not Linux: read times are the arrival times
                udp.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            udp.bind((host, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, udp.getsockname()[1]))
            tcp.listen(128)
        except OSError as error:
            udp.close()
            tcp.close()
            if port != 0:
                raise
            if error.errno != errno.EADDRINUSE:  # no port will do: the address itself
                raise OSError(
                    error.errno,
                    f"cannot listen on {host}: {error.strerror or error}; the host must be an"
                    " address of this machine, such as 127.0.0.1 (the default)",
                ) from error
            continue
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    raise OSError(f"found no port on {host} free for both UDP and TCP")  # pragma: no cover


class _Connection:
    """One TCP client: what it sent that is not yet a whole message, and what to send it."""

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.received = bytearray()
        self.outgoing = bytearray()
        self.deadline = now + _TCP_FIRST_READ
        self.queries = 0
        self.pending = 0  # replies held back by a Delay
        self.finishing = False  # close once everything owed is sent

    def next_message(self) -> bytes | None:
        """Take the next whole length-prefixed message received, if there is one."""
        if len(self.received) < _LENGTH.size:
            return None
        (length,) = _LENGTH.unpack_from(self.received)
        end = _LENGTH.size + length
        if len(self.received) < end:
            return None
        message = bytes(self.received[_LENGTH.size : end])
        del self.received[:end]
        return message


class Answering(Protocol):
    """What the server asks for each message: a ``Responder``, or a stand-in."""

    def respond(self, data: bytes, transport: Transport, *, waited: float = 0.0) -> Reply:
        """The reply to one message received over ``transport``, ``waited`` seconds ago."""
        ...


class DNSServer(SelectorThread[_Connection]):
    """Serves a ``Responder`` over UDP and TCP on one port until stopped.

    ``responder`` may be replaced while serving (a paused node's engine answers
    nothing); each message is answered by the one in place when it arrives.
    """

    def __init__(self, responder: Answering, *, host: str, port: int) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be a whole number from 0 to 65535, not {port!r}")
        self.responder = responder
        self._udp, self._tcp = _bind_pair(host, port)
        super().__init__("the fake Swarm DNS server")
        self.host = host
        self.port: int = self._udp.getsockname()[1]
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_ids = itertools.count()
        self._accept_pause = 0.0  # while accept() lacks resources: the next pause
        self._accept_paused = False  # waiting for resources to accept again
        self._listening = False  # the listener is registered with the selector
        #: Replies held back by a Delay, and their bytes.
        self._held = 0
        self._held_bytes = 0
        self._held_full = False  # warned that delayed replies are being dropped
        self._drop_requests: deque[threading.Event] = deque()

    def start(self) -> None:
        """Start serving in a background thread."""
        self._selector.register(self._udp, selectors.EVENT_READ, self._on_udp)
        self._listen(True)
        self._start_thread(f"swarmdns-fake-{self.port}")

    def _close(self) -> None:
        for sock in (self._udp, self._tcp):
            sock.close()
        self._timers.clear()
        self._held = self._held_bytes = 0

    @property
    def held(self) -> tuple[int, int]:
        """Replies held back by a ``Delay`` now, and their bytes."""
        return self._held, self._held_bytes

    @property
    def unread(self) -> int:
        """Bytes of TCP answers not read by their clients yet, and of queries not answered yet."""
        return sum(len(c.outgoing) + len(c.received) for c in list(self._connections.values()))

    # -- the loop ------------------------------------------------------------------

    def drop_pending(self) -> None:
        """Drop what clients sent that the server has not read yet: datagrams, connections.

        From any thread; returns once done, at once when not serving. The
        ``swarm_dns`` fixture resets the fake between tests: a query that a
        test's client sent and gave up on, still queued when the test ended,
        must not reach the next test's log. (Delayed replies are left to go
        out; their clients are gone.)

        Raises:
            RuntimeError: The server did not do it within ``STOP_TIMEOUT``.
        """
        if not self.running:
            return
        if threading.current_thread() is self._thread:
            self._drop_unread()
            return
        done = threading.Event()
        self._drop_requests.append(done)
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")
        if not done.wait(STOP_TIMEOUT):  # pragma: no cover - only a bug gets here
            raise RuntimeError(
                f"the fake's DNS server did not drop its pending queries within {STOP_TIMEOUT:g} s"
            )

    def _after_round(self) -> None:
        while self._drop_requests:
            self._drop_unread()
            self._drop_requests.popleft().set()
        self._run_timers()
        self._expire_idle()

    def _drop_unread(self) -> None:
        while True:
            try:
                self._udp.recvfrom(_RECV_SIZE)
            except BlockingIOError:
                break
            except OSError:
                continue  # an ICMP error for an earlier reply: there may be more behind it
        for connection in list(self._connections.values()):
            self._drop(connection)

    def _next_wakeup(self) -> float | None:
        deadlines = [c.deadline for c in self._connections.values() if not c.pending]
        if self._timers:
            deadlines.append(self._timers[0][0])
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _run_timers(self) -> None:
        if not self._timers:
            return
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, callback = heapq.heappop(self._timers)
            try:
                callback()
            except Exception as error:  # pragma: no cover - only a bug gets here
                self._record(error)

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_ids), callback))

    def respond(self, data: bytes, transport: Transport, *, waited: float = 0.0) -> Reply:
        """Ask the responder; a bug there is recorded, never fatal to the server."""
        try:
            return self.responder.respond(data, transport, waited=waited)
        except Exception as error:  # pragma: no cover - only a bug gets here
            self._record(error)
            return Reply(data=None)

    # -- UDP -----------------------------------------------------------------------

    def _on_udp(self, sock: socket.socket, _events: int) -> None:
        # One datagram per wakeup: the selector reports the socket again while
        # more are queued, and no wakeup ends in a failed read.
        try:
            data, stamps, _flags, client = sock.recvmsg(_RECV_SIZE, socket.CMSG_SPACE(16))
        except OSError:
            return  # nothing after all, or an ICMP error for an earlier reply
        # What the engine decides on arrival (a forward's slot) is decided on
        # arrival, even when this server, busy, reads a burst seconds late.
        waited = _waited(stamps)
        reply = self.respond(data, "udp", waited=waited)
        if reply.data is None:
            return
        delay = max(0.0, reply.delay - waited)
        if not delay:
            self._send_udp(reply.data, client)
        elif self._hold(reply.data):
            self._later(delay, functools.partial(self._send_held_udp, reply.data, client))

    def _hold(self, data: bytes) -> bool:
        """Count a reply held back by a delay; False (send nothing) when too many are."""
        if self._held >= MAX_HELD_REPLIES or self._held_bytes + len(data) > MAX_HELD_BYTES:
            if not self._held_full:
                logger.warning(
                    "the fake Swarm DNS server on port %d holds %d delayed replies (%d bytes),"
                    " the most it holds (%d, %d bytes): it drops the delayed replies that do"
                    " not fit, and their clients time out",
                    self.port,
                    self._held,
                    self._held_bytes,
                    MAX_HELD_REPLIES,
                    MAX_HELD_BYTES,
                )
                self._held_full = True
            return False
        self._held += 1
        self._held_bytes += len(data)
        return True

    def _release(self, data: bytes) -> None:
        self._held -= 1
        self._held_bytes -= len(data)
        if not self._held:
            self._held_full = False  # the episode is over: warn again at the next

    def _send_held_udp(self, data: bytes, client: tuple[str, int]) -> None:
        self._release(data)
        self._send_udp(data, client)

    def _send_udp(self, data: bytes, client: tuple[str, int]) -> None:
        try:  # noqa: SIM105 - suppress() would cost more than the send itself
            self._udp.sendto(data, client)
        except OSError:
            pass  # the client went away

    # -- TCP -----------------------------------------------------------------------

    def _on_accept(self, listener: socket.socket, _events: int) -> None:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            self._accept_pause = 0.0  # every pending connection taken: recovered
            return
        except (InterruptedError, ConnectionAbortedError):
            return
        except OSError as error:
            if error.errno not in _OUT_OF_RESOURCES:
                raise
            self._pause_accepting(listener, error)
            return
        sock.setblocking(False)
        self._connections[sock] = _Connection(sock, time.monotonic())
        self._selector.register(sock, selectors.EVENT_READ, self._on_tcp)
        self._listen(len(self._connections) < MAX_TCP_CONNECTIONS)

    def _listen(self, wanted: bool) -> None:
        """Accept new TCP connections, or leave them in the backlog (full, or out of resources)."""
        wanted = wanted and not self._accept_paused and not self._stopping
        if wanted != self._listening:
            if wanted:
                self._selector.register(self._tcp, selectors.EVENT_READ, self._on_accept)
            else:
                self._selector.unregister(self._tcp)
            self._listening = wanted

    def _drop(self, connection: _Connection) -> None:
        super()._drop(connection)
        self._listen(len(self._connections) < MAX_TCP_CONNECTIONS)

    def _pause_accepting(self, listener: socket.socket, error: OSError) -> None:
        """Stop accepting for a while, as retrying at once would spin until resources free."""
        if not self._accept_pause:
            logger.warning(
                "the fake Swarm DNS server on port %d cannot accept TCP connections: %s;"
                " it stops accepting for up to %g s at a time until descriptors or memory"
                " free up, and goes on serving UDP and its open connections. Raise the"
                " process's descriptor limit (ulimit -n) or hold fewer connections open.",
                self.port,
                error,
                _ACCEPT_PAUSE_MAX,
            )
        pause = self._accept_pause or _ACCEPT_PAUSE_FIRST
        self._accept_pause = min(pause * 2, _ACCEPT_PAUSE_MAX)
        self._accept_paused = True
        self._listen(False)
        self._later(pause, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._accept_paused = False
        self._listen(len(self._connections) < MAX_TCP_CONNECTIONS)

    def _on_tcp(self, sock: socket.socket, events: int) -> None:
        connection = self._connections[sock]
        if events & selectors.EVENT_WRITE:
            self._flush(connection)
            if sock in self._connections and not connection.outgoing:
                self._answer(connection)  # the client read: answer what it sent meanwhile
            return
        try:
            data = sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(connection)  # the client hung up, perhaps mid-message
            return
        if connection.finishing:
            return  # past its last query, until its delayed answers are out: ignored
        connection.received += data
        self._answer(connection)

    def _answer(self, connection: _Connection) -> None:
        """Answer the whole queries received, while the client's unread answers stay in bounds.

        Past ``TCP_UNREAD_LIMIT`` unread bytes, the rest waits in ``received``,
        and the connection is read no more (``_flush`` waits to write instead)
        until the client has read every answer.
        """
        while len(connection.outgoing) < TCP_UNREAD_LIMIT and not connection.finishing:
            message = connection.next_message()
            if message is None:
                break
            connection.queries += 1
            connection.deadline = time.monotonic() + _TCP_IDLE
            if connection.queries >= _TCP_MAX_QUERIES:
                connection.finishing = True
                connection.received.clear()  # anything after the last query is ignored
            reply = self.respond(message, "tcp")
            if reply.data is None:
                continue
            framed = _LENGTH.pack(len(reply.data)) + reply.data
            if not reply.delay:
                self._send_tcp(connection, framed)
                if connection.sock not in self._connections:
                    return
            elif self._hold(framed):
                connection.pending += 1
                self._later(reply.delay, functools.partial(self._send_late, connection, framed))
        self._finish_if_done(connection)

    def _send_late(self, connection: _Connection, framed: bytes) -> None:
        self._release(framed)
        if connection.sock not in self._connections:
            return  # closed meanwhile
        connection.pending -= 1
        connection.deadline = time.monotonic() + _TCP_IDLE
        self._send_tcp(connection, framed)
        self._finish_if_done(connection)

    def _send_tcp(self, connection: _Connection, framed: bytes) -> None:
        connection.outgoing += framed
        self._flush(connection)

    def _flush(self, connection: _Connection) -> None:
        """Send what the kernel takes; wait to write while answers are unread, else to read."""
        if connection.outgoing and not self._send_some(connection):
            return
        events = selectors.EVENT_WRITE if connection.outgoing else selectors.EVENT_READ
        self._selector.modify(connection.sock, events, self._on_tcp)

    def _finish_if_done(self, connection: _Connection) -> None:
        idle = not connection.outgoing and not connection.pending
        if connection.finishing and idle and connection.sock in self._connections:
            self._drop(connection)

    def _expire_idle(self) -> None:
        if not self._connections:
            return
        now = time.monotonic()
        for connection in list(self._connections.values()):
            if connection.deadline <= now and not connection.pending:
                self._drop(connection)
