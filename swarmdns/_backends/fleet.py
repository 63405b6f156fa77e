"""A fleet's queries through one UDP socket, TCP for truncated answers: the transport.

A watch over many services (``watch_services``) with a backend that speaks
the wire (``base.speaks_wire``) asks that backend's nameservers itself, every
query through one long-lived socket per address family. ``FleetTraffic`` is
what both front ends share: the sockets, sending what is due, reading
datagrams, and handing each outcome to the fleet's decisions (``_fleet``).
``SelectorTraffic`` carries it on a selector for the synchronous driver,
``LoopTraffic`` on an asyncio loop for the asynchronous one; the drivers in
``_sync`` and ``_async`` only decide when to run them. Matching answers to
queries is ``mux``'s, and each question's way through the nameservers is
``direct.Exchange``'s, as for a single lookup.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._errors import SwarmDNSError
from .._fleet import MAX_IN_FLIGHT, FleetCore, Slot
from .._watch import LookupResult
from .base import WireBackend
from .direct import (
    CLOSED_MID_ANSWER,
    Request,
    framed,
    socket_family,
    tcp_exchange_async,
    timed_out,
)
from .mux import Flight, Multiplexer
from .nameserver import Nameserver

if TYPE_CHECKING:
    import asyncio


class FleetTraffic:
    """A fleet's queries over UDP, for both drivers: the sockets, sending, reading, outcomes.

    The driver says how to listen to a new socket (``listen``) and how to
    carry a TCP request (``ask_over_tcp``, which hands its answer or error to
    ``answered()``); the rest is the same for the selector and for asyncio.
    """

    def __init__(
        self,
        core: FleetCore,
        backend: WireBackend,
        timeout: float,
        *,
        listen: Callable[[socket.socket], object],
        ask_over_tcp: Callable[[Flight[Slot], Request], None],
    ) -> None:
        self._core = core
        self._backend = backend
        self._timeout = timeout
        self._listen = listen
        self._ask_over_tcp = ask_over_tcp
        self.mux: Multiplexer[Slot] = Multiplexer()
        self.sockets: dict[socket.AddressFamily, socket.socket] = {}

    def send_due(self, now: float, room: int) -> bool:
        """Send the lookups due by ``now``, at most ``room``; whether there were any."""
        due = self._core.due(now, room) if room > 0 else []
        if not due:
            return False
        try:
            servers = self._backend.nameservers()
        except SwarmDNSError as error:
            for slot in due:
                self._core.finished(slot, error)
            return True
        for slot in due:
            self.carry_on(self.mux.start(slot, slot.question, servers, self._timeout))
        return True

    def expire(self, now: float) -> None:
        """Move on every request that timed out by ``now``."""
        for flight in self.mux.expired(now):
            self.carry_on(flight)

    def read(self, sock: socket.socket) -> None:
        """Take every datagram waiting on ``sock``."""
        mux = self.mux
        while True:
            try:
                data, source = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # an ICMP error from a server: its request times out
            flight = mux.received(data, source)
            if flight is not None:
                self.carry_on(flight)

    def answered(self, flight: Flight[Slot], reply: bytes | Exception) -> None:
        """Take what a TCP request (or a failed send) ended with, and carry on."""
        self.mux.answered(flight, reply)
        self.carry_on(flight)

    def carry_on(self, flight: Flight[Slot]) -> None:
        """Send the flight's next request, or hand its outcome to the fleet."""
        request = flight.request
        if request is None:
            settle(self._core, flight)
        elif request.tcp:
            self._ask_over_tcp(flight, request)
        else:
            server = request.server
            try:
                self._socket_for(server).sendto(flight.exchange.wire, (server.host, server.port))
            except OSError as error:
                self.answered(flight, error)

    def _socket_for(self, server: Nameserver) -> socket.socket:
        family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
        sock = self.sockets.get(family)
        if sock is None:
            sock = fleet_socket(family)
            self.sockets[family] = sock
            self._listen(sock)
        return sock

    def close(self) -> None:
        """Close the sockets."""
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()


class SelectorTraffic:
    """A fleet's traffic on a selector, for the synchronous driver: UDP, TCP and wake-ups.

    One thread calls ``catch_up()`` and ``step()`` at a time; ``wake()`` may
    come from any thread, to end the selector's wait early.
    """

    def __init__(self, core: FleetCore, backend: WireBackend, timeout: float) -> None:
        self._selector = selectors.DefaultSelector()
        self._traffic = FleetTraffic(
            core,
            backend,
            timeout,
            listen=lambda sock: self._selector.register(sock, selectors.EVENT_READ),
            ask_over_tcp=self._ask_over_tcp,
        )
        self._tcp: dict[socket.socket, TcpCall] = {}
        # A socket pair to wake the selector from another thread, made when
        # the watch first runs: a watch that never runs holds no socket.
        self._wake_reader: socket.socket | None = None
        self._wake_writer: socket.socket | None = None

    def wake(self) -> None:
        """End a wait of ``step()`` early (from any thread)."""
        writer = self._wake_writer
        if writer is not None:
            with contextlib.suppress(OSError):  # already woken (full), or closed
                writer.send(b"\0")

    def catch_up(self) -> None:
        """Take what came in while nobody ran the watch."""
        if self._wake_reader is None:
            self._wake_reader, self._wake_writer = socket.socketpair()
            self._wake_reader.setblocking(False)
            self._wake_writer.setblocking(False)
            self._selector.register(self._wake_reader, selectors.EVENT_READ)
        self._handle(self._selector.select(0))  # answers that came while nobody ran the watch

    def step(self, wait_time: Callable[..., float]) -> None:
        """Do what is due, or wait for it.

        Args:
            wait_time: Seconds to wait at most, given the times of the next
                UDP and TCP timeouts (or None) and ``room=`` (whether another
                query may be sent now).
        """
        traffic = self._traffic
        now = time.monotonic()
        traffic.expire(now)
        for call in [c for c in self._tcp.values() if c.deadline <= now]:
            self._end_tcp(call, timed_out(call.timeout))
        room = MAX_IN_FLIGHT - len(traffic.mux) - len(self._tcp)
        if traffic.send_due(now, room):
            return
        tcp_deadlines = min((c.deadline for c in self._tcp.values()), default=None)
        wait = wait_time(traffic.mux.next_expiry(), tcp_deadlines, room=room > 0)
        self._handle(self._selector.select(wait))

    def _handle(self, ready: list[tuple[selectors.SelectorKey, int]]) -> None:
        """Take what the selector says is ready: answers, TCP progress, a wake-up."""
        for key, events in ready:
            if key.fileobj is self._wake_reader:
                with contextlib.suppress(OSError):
                    key.fileobj.recv(4096)
            elif isinstance(key.data, TcpCall):
                self._on_tcp(key.data, events)
            else:
                self._traffic.read(key.fileobj)  # type: ignore[arg-type]

    def _ask_over_tcp(self, flight: Flight[Slot], request: Request) -> None:
        call = TcpCall(flight, request)
        if call.error is not None:
            self._traffic.answered(flight, call.error)
            return
        self._tcp[call.sock] = call
        self._selector.register(call.sock, selectors.EVENT_WRITE, call)

    def _on_tcp(self, call: TcpCall, events: int) -> None:
        try:
            reply = call.progress(events)
        except (OSError, EOFError) as error:
            self._end_tcp(call, error)
            return
        if reply is not None:
            self._end_tcp(call, reply)
        elif call.reading and events & selectors.EVENT_WRITE:
            self._selector.modify(call.sock, selectors.EVENT_READ, call)

    def _end_tcp(self, call: TcpCall, reply: bytes | Exception) -> None:
        del self._tcp[call.sock]
        self._selector.unregister(call.sock)
        call.sock.close()
        self._traffic.answered(call.flight, reply)

    def close(self) -> None:
        """Close every socket, the selector's and the wake-up's too."""
        for call in list(self._tcp.values()):
            call.sock.close()
        self._tcp.clear()
        self._traffic.close()
        self._selector.close()
        for end in (self._wake_reader, self._wake_writer):
            if end is not None:
                end.close()


class LoopTraffic:
    """A fleet's traffic on an asyncio loop, for the asynchronous driver: readers and TCP tasks.

    Args:
        core: The fleet's decisions.
        backend: Whose nameservers to ask.
        timeout: Seconds each lookup may take.
        moved: Called after answers were taken, for the driver to look at
            its schedule again.
        failed: Called with an error that ends the watch.
    """

    def __init__(
        self,
        core: FleetCore,
        backend: WireBackend,
        timeout: float,
        *,
        moved: Callable[[], None],
        failed: Callable[[Exception], None],
    ) -> None:
        self._traffic = FleetTraffic(
            core, backend, timeout, listen=self._listen, ask_over_tcp=self._ask_over_tcp
        )
        self._moved = moved
        self._failed = failed
        self._tcp: set[asyncio.Task[bytes]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listening = False
        self._closed = False

    def next_expiry(self) -> float | None:
        """When the next UDP request times out, if any is waiting."""
        return self._traffic.mux.next_expiry()

    def in_flight(self) -> int:
        """Requests under way, UDP and TCP."""
        return len(self._traffic.mux) + len(self._tcp)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Listen on ``loop``, taking first what came while nobody awaited the watch."""
        self._loop = loop
        self._listening = True
        for sock in self._traffic.sockets.values():
            self._traffic.read(sock)  # what came while nobody awaited the watch
            self._listen(sock)

    def pause(self) -> None:
        """Stop listening until the next ``start()``."""
        if self._listening and self._loop is not None:
            for sock in self._traffic.sockets.values():
                self._loop.remove_reader(sock.fileno())
        self._listening = False

    def send_due(self, now: float) -> None:
        """Move on what timed out by ``now``, and send what is due, as room allows."""
        self._traffic.expire(now)
        self._traffic.send_due(now, MAX_IN_FLIGHT - self.in_flight())

    def under_way(self) -> list[asyncio.Task[object]]:
        """The TCP requests that may still be ending."""
        return list(self._tcp)

    def close(self) -> None:
        """Cancel the TCP requests and close the sockets."""
        self._closed = True
        for task in self._tcp:
            task.cancel()
        self._traffic.close()

    def _listen(self, sock: socket.socket) -> None:
        if self._listening and self._loop is not None:
            self._loop.add_reader(sock.fileno(), self._on_readable, sock)

    def _on_readable(self, sock: socket.socket) -> None:
        try:
            self._traffic.read(sock)
        except Exception as error:  # ends the watch, for its awaiter to raise
            self._failed(error)
            return
        self._moved()

    def _ask_over_tcp(self, flight: Flight[Slot], request: Request) -> None:
        if self._loop is None:
            raise RuntimeError("the watch has not run on a loop yet")
        ask = tcp_exchange_async(flight.exchange.wire, request.server, request.timeout)
        task = self._loop.create_task(ask)
        self._tcp.add(task)
        task.add_done_callback(lambda done: self._tcp_done(flight, done))

    def _tcp_done(self, flight: Flight[Slot], task: asyncio.Task[bytes]) -> None:
        self._tcp.discard(task)
        if task.cancelled() or self._closed:
            return
        error = task.exception()
        if error is not None and not isinstance(error, Exception):
            raise error
        try:
            self._traffic.answered(flight, task.result() if error is None else error)
        except Exception as failure:  # ends the watch, for its awaiter to raise
            self._failed(failure)
            return
        self._moved()


#: The receive buffer a fleet's socket asks for: room for a burst of answers
#: while the watch is busy (Linux grants at most net.core.rmem_max).
FLEET_RECEIVE_BUFFER = 1 << 20


def fleet_socket(family: socket.AddressFamily) -> socket.socket:
    """A non-blocking UDP socket for a fleet's queries, with a larger receive buffer."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    with contextlib.suppress(OSError):  # the default buffer still works
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, FLEET_RECEIVE_BUFFER)
    return sock


def settle(core: FleetCore, flight: Flight[Slot]) -> None:
    """Hand a finished flight's outcome to the fleet: the usual answer's values, or else.

    Anything but the usual answer is read as every lookup of the service
    reads it (``InstancesQuery.addresses``).
    """
    outcome = flight.outcome()
    if isinstance(outcome, tuple):
        core.succeeded_with(flight.key, outcome)
        return
    try:
        result: LookupResult = flight.key.query.addresses(outcome)
    except SwarmDNSError as error:
        result = error
    core.finished(flight.key, result)


class TcpCall:
    """One TCP request of a fleet, carried out without blocking: connect, send, read.

    ``direct``'s TCP exchanges block (or need a loop); a selector's requests
    move on only when their socket is ready, so this one is driven by events.
    """

    def __init__(self, flight: Flight[Slot], request: Request) -> None:
        self.flight = flight
        self.timeout = request.timeout
        self.deadline = time.monotonic() + request.timeout
        self.reading = False
        self.error: OSError | None = None
        self._outgoing = framed(flight.exchange.wire)
        self._incoming = bytearray()
        server = request.server
        try:
            self.sock = socket.socket(socket_family(server), socket.SOCK_STREAM)
        except OSError as error:  # such as EMFILE: this request fails, the watch goes on
            self.error = error
            return
        self.sock.setblocking(False)
        code = self.sock.connect_ex((server.host, server.port))
        if code not in (0, errno.EINPROGRESS):
            self.sock.close()
            self.error = OSError(code, os.strerror(code))

    def progress(self, events: int) -> bytes | None:
        """Move on after ``events``; the answer once it is all in.

        Raises:
            OSError: The connection failed.
            EOFError: The server closed it mid-answer.
        """
        if not self.reading:
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
            sent = self.sock.send(self._outgoing)
            self._outgoing = self._outgoing[sent:]
            self.reading = not self._outgoing
            return None
        chunk = self.sock.recv(65537)
        if not chunk:
            raise EOFError(CLOSED_MID_ANSWER)
        self._incoming += chunk
        if len(self._incoming) >= 2:
            length = int.from_bytes(self._incoming[:2], "big")
            if len(self._incoming) >= 2 + length:
                return bytes(self._incoming[2 : 2 + length])
        return None
