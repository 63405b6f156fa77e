"""UDP and TCP transport for the fake: an asyncio loop in one background thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Callable
from typing import cast

from ._responder import Reply, Responder

logger = logging.getLogger("swarmdns.testing")

_LENGTH = struct.Struct("!H")
#: The engine's DNS library waits this long for a TCP connection's first
#: query, then ``_TCP_IDLE`` for each later one, and serves at most
#: ``_TCP_MAX_QUERIES`` queries per connection.
_TCP_FIRST_READ = 2.0
_TCP_IDLE = 8.0
_TCP_MAX_QUERIES = 128
_START_TIMEOUT = 10.0
_BIND_ATTEMPTS = 20


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """Bind a UDP and a TCP socket to the same port (any free one when 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(_BIND_ATTEMPTS if port == 0 else 1):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            udp.bind((host, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, udp.getsockname()[1]))
            tcp.listen(128)
        except OSError:
            udp.close()
            tcp.close()
            if port != 0:
                raise
            continue
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    raise OSError(f"found no port on {host} free for both UDP and TCP")  # pragma: no cover


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self._server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self._server.respond(data, "udp")
        if reply.data is None or self.transport is None:
            return
        if reply.delay:
            self._server.call_later(reply.delay, self._send, reply.data, addr)
        else:
            self._send(reply.data, addr)

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        """Ignore ICMP errors: a client that went away is not the server's problem."""


class DNSServer:
    """Serves a ``Responder`` over UDP and TCP on one port until stopped."""

    def __init__(self, responder: Responder, *, host: str, port: int) -> None:
        self._responder = responder
        self._udp_sock, self._tcp_sock = _bind_pair(host, port)
        self.host = host
        self.port: int = self._udp_sock.getsockname()[1]
        self.internal_errors: list[BaseException] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()

    def start(self) -> None:
        """Start serving; returns once both sockets are being served."""
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run,
            args=(ready, failure),
            name=f"swarmdns-fake-{self.port}",
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(_START_TIMEOUT):  # pragma: no cover - a wedged machine
            raise RuntimeError("the fake Swarm DNS server did not start within 10 s")
        if failure:
            self._thread.join()
            raise failure[0]

    def stop(self) -> None:
        """Stop serving, close every socket and connection, and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(self._request_stop)
            thread.join()
        self._udp_sock.close()
        self._tcp_sock.close()

    def respond(self, data: bytes, transport: str) -> Reply:
        """Ask the responder; a bug there is recorded, never fatal to the server."""
        try:
            return self._responder.respond(data, transport)
        except Exception as error:  # pragma: no cover - only a bug gets here
            logger.exception("the fake Swarm DNS server failed to answer %r", data)
            self.internal_errors.append(error)
            return Reply(data=None)

    def call_later(self, delay: float, callback: Callable[..., None], *args: object) -> None:
        """Run ``callback`` after ``delay`` seconds unless the server stops first."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the fake Swarm DNS server is not running")

        def fire() -> None:
            self._timers.discard(handle)
            callback(*args)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def _request_stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as error:  # pragma: no cover - start-up failure
            failure.append(error)
            ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        udp_transport, _ = await loop.create_datagram_endpoint(
            lambda: _UDPProtocol(self), sock=self._udp_sock
        )
        tcp_server = await asyncio.start_server(self._accept, sock=self._tcp_sock)
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            tcp_server.close()
            udp_transport.close()
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            for task in self._connections:
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await tcp_server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = cast("asyncio.Task[None]", asyncio.current_task())
        self._connections.add(task)
        try:
            await self._serve_connection(reader, writer)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass  # a client that hangs up or stalls only loses its own connection
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        timeout = _TCP_FIRST_READ
        for _ in range(_TCP_MAX_QUERIES):
            prefix = await asyncio.wait_for(reader.readexactly(_LENGTH.size), timeout)
            (length,) = _LENGTH.unpack(prefix)
            message = await asyncio.wait_for(reader.readexactly(length), timeout)
            timeout = _TCP_IDLE
            reply = self.respond(message, "tcp")
            if reply.data is None:
                continue
            if reply.delay:
                await asyncio.sleep(reply.delay)
            writer.write(_LENGTH.pack(len(reply.data)) + reply.data)
            await writer.drain()
