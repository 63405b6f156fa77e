"""A selector loop in a thread of its own, as the fake's DNS server and control channel run.

Also what the fake's servers share about their address: how it is written,
and what a restart that cannot bind it again says.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

logger = logging.getLogger("swarmdns.testing")

#: Seconds ``stop()`` waits for the loop's thread; only a bug makes it wait that long.
STOP_TIMEOUT = 10.0

#: What a socket is registered with: called with the socket and its ready events.
Handler = Callable[[socket.socket, int], None]


def check_host(host: object) -> str:
    """``host`` if it is an IP address (or ``localhost``), to listen on.

    Raises:
        ValueError: It is not: the fake listens on an address, not a name.
    """
    if host == "localhost":
        return host
    try:
        if isinstance(host, str):
            ipaddress.ip_address(host)
            return host
    except ValueError:
        pass
    raise ValueError(
        f"host must be an IP address of this machine to listen on, such as 127.0.0.1"
        f" (the default) or ::1; {host!r} is not an IP address"
    )


def endpoint(host: str, port: int) -> str:
    """``host:port``, or ``[host]:port`` for an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextlib.contextmanager
def binding_again(what: str, host: str, port: int) -> Iterator[None]:
    """Name the port, and what to do, when a restart cannot bind the one it had before.

    Args:
        what: The server, as the message names it.
        host: Where it listened.
        port: The port it listened on before ``stop()``; 0 when it has none
            to bind again, and an ``OSError`` passes unchanged.
    """
    try:
        yield
    except OSError as error:
        if not port:
            raise
        raise OSError(
            error.errno,
            f"cannot start {what} again on {endpoint(host, port)}, where it listened before"
            f" stop(): {error.strerror or error}; something else took the port meanwhile:"
            " free it, or call forget_ports() for the next start() to take free ports",
        ) from error


class Connection(Protocol):
    """What the loop needs of a subclass's connection: its socket, and what to send on it."""

    sock: socket.socket
    outgoing: bytearray


C = TypeVar("C", bound=Connection)


class SelectorThread(Generic[C]):
    """Calls the handlers of ready sockets in a background thread until ``stop()``.

    A subclass registers its sockets with ``self._selector`` (the data is a
    ``Handler``), keeps its connections in ``self._connections``, and says
    when to wake up (``_next_wakeup``), what to do after each round
    (``_after_round``) and what else to close at the end (``_close``). A
    handler that raises is a bug: it is logged and kept in
    ``internal_errors``, its connection is dropped, and the loop goes on.

    Args:
        what: What it is, for messages (``"the fake Swarm DNS server"``).
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self.internal_errors: list[BaseException] = []
        self._connections: dict[socket.socket, C] = {}
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    def _start_thread(self, name: str) -> None:
        self._selector.register(self._wake_reader, selectors.EVENT_READ, self._on_wake)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close every socket, and join the thread; idempotent."""
        self._stopping = True
        thread = self._thread
        if thread is not None and thread.is_alive():
            with contextlib.suppress(OSError):
                self._wake_writer.send(b"\0")
            thread.join(STOP_TIMEOUT)
            if thread.is_alive():  # pragma: no cover - only a bug gets here
                raise RuntimeError(f"{self._what} did not stop within {STOP_TIMEOUT:g} s")
        for connection in list(self._connections.values()):
            self._drop(connection)
        self._close()
        with contextlib.suppress(KeyError, ValueError):
            self._selector.close()
        for sock in (self._wake_reader, self._wake_writer):
            sock.close()

    def _run(self) -> None:
        while not self._stopping:
            for key, events in self._selector.select(self._next_wakeup()):
                handler: Handler = key.data
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    handler(sock, events)
                except Exception as error:  # pragma: no cover - only a bug gets here
                    self._record(error)
                    connection = self._connections.get(sock)
                    if connection is not None:
                        self._drop(connection)
            self._after_round()

    def _record(self, error: Exception) -> None:
        logger.error("%s failed", self._what, exc_info=error)
        self.internal_errors.append(error)

    def _on_wake(self, sock: socket.socket, _events: int) -> None:
        with contextlib.suppress(BlockingIOError):
            sock.recv(64)

    def _send_some(self, connection: C) -> bool:
        """Send what the kernel takes of ``connection.outgoing``; False if it broke (dropped)."""
        try:
            sent = connection.sock.send(connection.outgoing)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(connection)
            return False
        del connection.outgoing[:sent]
        return True

    def _drop(self, connection: C) -> None:
        """Close a connection and forget it."""
        self._connections.pop(connection.sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(connection.sock)
        connection.sock.close()

    # -- what a subclass says ------------------------------------------------------

    def _next_wakeup(self) -> float | None:
        """Seconds until the loop has something to do without a socket; None: nothing."""
        return None

    def _after_round(self) -> None:
        """What to do after the handlers of one round: timers, expiry."""

    def _close(self) -> None:
        """Close the subclass's own sockets (the thread has ended, the connections are closed)."""
