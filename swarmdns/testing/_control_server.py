"""The server of the fake's control channel: a loopback TCP port that answers requests.

One thread runs a ``selectors`` loop, like the DNS server's: each request
line gets its reply (``answer()``), in order, on the same connection; a bad
request gets an error reply and never ends the loop; a request longer than
``MAX_REQUEST_BYTES`` is refused; at most ``MAX_CONNECTIONS`` are served at
once (more wait to be accepted), one idle for ``IDLE_TIMEOUT`` is closed,
and so is one that takes longer than ``REQUEST_TIMEOUT`` to send a request
or to read a reply. A request that waits for an operation's end
(``"wait": true``) holds its connection's replies until then, or until its
``timeout``, while the loop serves the other connections.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import selectors
import socket
import time
from typing import Any

from ._control_requests import OPERATIONS, OperationBook, Operations, Waiting, answer, error_reply
from ._loop import SelectorThread, endpoint

#: The longest request line the server reads, in bytes.
MAX_REQUEST_BYTES = 64 * 1024
#: How many connections are served at once; more wait to be accepted.
MAX_CONNECTIONS = 16
#: A connection with nothing to do for this many seconds is closed.
IDLE_TIMEOUT = 60.0
#: A request must arrive whole, and its reply be read, within this many
#: seconds of its first byte (of the reply's): a client trickling bytes is
#: closed then, and cannot keep a place from the others for ever.
REQUEST_TIMEOUT = 10.0
#: How often the channel's loop looks at the operations requests wait for.
_WAIT_POLL = 0.01
_RECV_SIZE = 65536
_ACCEPT_PAUSE = 0.5
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def check_loopback(host: str) -> str:
    """``host`` if it is a loopback address (``localhost`` reads as 127.0.0.1).

    Raises:
        ValueError: It is not: the channel lets whoever reaches it change the fake.
    """
    if host == "localhost":
        return "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"the control channel listens on loopback only, since whoever reaches it can"
            f" change the fake: {host!r} is not a loopback address; use 127.0.0.1 or ::1"
        )
    return host


class _Connection:
    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.received = bytearray()
        self.outgoing = bytearray()
        self.deadline = now + IDLE_TIMEOUT
        self.skipping = False  # discarding the rest of an over-long line
        #: Since when a request has been coming in, or a reply going out; None: idle.
        self.busy_since: float | None = None
        #: The reply that waits for an operation's end; the next requests wait behind it.
        self.waiting: Waiting | None = None

    def settle_deadline(self, now: float) -> None:
        """Idle: ``IDLE_TIMEOUT`` from now; else ``REQUEST_TIMEOUT`` from when it got busy.

        While a reply waits for an operation, until its own deadline (and the
        time to send it).
        """
        if self.waiting is not None:
            self.busy_since = None
            self.deadline = self.waiting.until + REQUEST_TIMEOUT
        elif self.received or self.skipping or self.outgoing:
            if self.busy_since is None:
                self.busy_since = now
            self.deadline = self.busy_since + REQUEST_TIMEOUT
        else:
            self.busy_since = None
            self.deadline = now + IDLE_TIMEOUT


class ControlServer(SelectorThread[_Connection]):
    """Serves the control channel of a fake on a loopback TCP port until stopped.

    ``operations`` are those of a ``FakeSwarm`` unless told otherwise (a
    ``FakeCompose`` serves its own). The operations over time it starts are
    kept by ID while it serves (see ``OperationBook``).
    """

    def __init__(
        self, fake: object, *, host: str, port: int, operations: Operations = OPERATIONS
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be a whole number from 0 to 65535, not {port!r}")
        host = check_loopback(host)
        self._fake = fake
        self._operations = operations
        self._book = OperationBook()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((host, port))
            self._listener.listen(64)
        except OSError:
            self._listener.close()
            raise
        self._listener.setblocking(False)
        super().__init__("the fake's control channel")
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._accepting = False
        self._accept_paused_until = 0.0

    @property
    def address(self) -> str:
        """``host:port`` (``[host]:port`` for IPv6), as ``FakeControl`` takes it."""
        return endpoint(self.host, self.port)

    def start(self) -> None:
        """Start serving in a background thread."""
        self._accept(True)
        self._start_thread(f"swarmdns-fake-control-{self.port}")

    def _close(self) -> None:
        self._listener.close()

    # -- the loop ------------------------------------------------------------------

    def _next_wakeup(self) -> float | None:
        now = time.monotonic()
        deadlines = [c.deadline for c in self._connections.values()]
        if self._accept_paused_until:
            deadlines.append(self._accept_paused_until)
        if any(c.waiting is not None for c in self._connections.values()):
            # An operation ends on the fake's clock, which cannot wake this loop,
            # and waiting for it here would stall every other client: the loop
            # looks at the operations replies wait for, this often, meanwhile.
            deadlines.append(now + _WAIT_POLL)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _after_round(self) -> None:
        now = time.monotonic()
        if self._accept_paused_until and self._accept_paused_until <= now:
            self._accept_paused_until = 0.0
            self._accept(len(self._connections) < MAX_CONNECTIONS)
        for connection in list(self._connections.values()):
            if connection.waiting is not None and connection.waiting.ready(now):
                reply = connection.waiting.reply()
                connection.waiting = None
                self._send_reply(connection, reply)
                if connection.sock in self._connections:
                    self._serve(connection)  # the requests that came in meanwhile
                    connection.settle_deadline(now)
        for connection in list(self._connections.values()):
            if connection.deadline <= now:
                self._drop(connection)

    def _accept(self, accepting: bool) -> None:
        """Listen for new connections, or leave them waiting in the backlog."""
        accepting = accepting and not self._accept_paused_until
        if accepting != self._accepting:
            if accepting:
                self._selector.register(self._listener, selectors.EVENT_READ, self._on_accept)
            else:
                self._selector.unregister(self._listener)
            self._accepting = accepting

    def _on_accept(self, listener: socket.socket, _events: int) -> None:
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as error:
            if error.errno not in _OUT_OF_RESOURCES:
                raise
            self._accept(False)  # until descriptors free up, rather than spin
            self._accept_paused_until = time.monotonic() + _ACCEPT_PAUSE
            return
        sock.setblocking(False)
        self._connections[sock] = _Connection(sock, time.monotonic())
        self._selector.register(sock, selectors.EVENT_READ, self._on_event)
        self._accept(len(self._connections) < MAX_CONNECTIONS)

    def _on_event(self, sock: socket.socket, events: int) -> None:
        connection = self._connections[sock]
        if events & selectors.EVENT_WRITE:
            self._flush(connection)
        elif events & selectors.EVENT_READ:
            try:
                data = sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._drop(connection)  # the client is done
                return
            connection.received += data
            if connection.waiting is not None and len(connection.received) > MAX_REQUEST_BYTES:
                # Requests pile up behind a reply that waits: a client sends
                # one or two meanwhile, not a flood that this would have to hold.
                self._drop(connection)
                return
        if sock in self._connections:
            self._serve(connection)
            connection.settle_deadline(time.monotonic())

    def _serve(self, connection: _Connection) -> None:
        """Answer each whole line received, one at a time while the replies go out."""
        while not connection.outgoing and connection.waiting is None:
            received = connection.received
            end = received.find(b"\n")
            if connection.skipping:
                if end < 0:
                    received.clear()
                    break
                del received[: end + 1]
                connection.skipping = False
                continue
            if end < 0 and len(received) <= MAX_REQUEST_BYTES:
                break
            if end < 0 or end > MAX_REQUEST_BYTES:
                connection.skipping = end < 0
                del received[: len(received) if end < 0 else end + 1]
                reply = error_reply(
                    "RequestTooLarge",
                    f"a request is one line of at most {MAX_REQUEST_BYTES} bytes; this one is"
                    " longer, and was skipped",
                )
            else:
                line = bytes(received[:end])
                del received[: end + 1]
                if not line.strip():
                    continue
                answered = answer(self._fake, line, self._record, self._operations, self._book)
                if isinstance(answered, Waiting):
                    connection.waiting = answered  # _after_round() replies when it is ready
                    break
                reply = answered
            self._send_reply(connection, reply)
            if connection.sock not in self._connections:
                return
        self._want(connection)

    def _send_reply(self, connection: _Connection, reply: dict[str, Any]) -> None:
        connection.busy_since = None  # a request done: the reply gets its own time
        connection.outgoing += json.dumps(reply).encode() + b"\n"
        self._flush(connection)

    def _flush(self, connection: _Connection) -> None:
        if not self._send_some(connection):
            return
        if not connection.outgoing:
            connection.busy_since = None  # a reply read: the next request gets its own time
        self._want(connection)

    def _want(self, connection: _Connection) -> None:
        """Wait to write while a reply is going out, else to read the next request."""
        if connection.sock in self._connections:
            events = selectors.EVENT_WRITE if connection.outgoing else selectors.EVENT_READ
            self._selector.modify(connection.sock, events, self._on_event)

    def _drop(self, connection: _Connection) -> None:
        super()._drop(connection)
        if not self._stopping:
            self._accept(len(self._connections) < MAX_CONNECTIONS)
