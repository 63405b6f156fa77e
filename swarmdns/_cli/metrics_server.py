"""The HTTP server of ``watch --metrics``, which slow or idle clients cannot starve.

prometheus_client's own server (``start_http_server``) takes a thread and a
descriptor for each connection and waits on it with no deadline: a thousand
idle connections trickling a byte now and then took every descriptor of a
watch, so that scrapes timed out and ``--exec`` could not start. A bounded
thread pool with socket timeouts would not be enough either: a timeout bounds
one ``recv``, and a byte every few seconds renews it forever. So this server
is one thread around a selector, where each connection is a few bytes of
state with a deadline for its whole exchange: at most ``max_connections`` are
open at once (one more closes the oldest), none lasts past ``request_seconds``
however slowly its bytes come, and a request whole on arrival, as a scraper's
is, is answered before the next connection is accepted. prometheus_client
still makes the exposition itself (``choose_encoder``).

``answer()`` decides the response to a request's head, without I/O.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import attrs

if TYPE_CHECKING:
    from types import TracebackType

    from prometheus_client.registry import CollectorRegistry

#: Connections open at once; one more closes the oldest.
MAX_CONNECTIONS = 16
#: How long a connection may take to send its request and read the answer.
REQUEST_SECONDS = 5.0
#: The longest request head read; a longer one is refused.
MAX_HEAD = 8192
#: How long accepting pauses when the process is out of descriptors.
_PAUSE_SECONDS = 0.5

#: The exposition of a scrape for an ``Accept`` header: its bytes and content type.
Exposition = Callable[[str], tuple[bytes, str]]


def answer(head: bytes, exposition: Exposition) -> bytes:
    """The whole HTTP response to the request whose head (up to its blank line) is ``head``.

    ``GET /metrics`` (and ``HEAD``) gets the exposition; every response closes
    the connection, so a client holds it for one request at most.
    """
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    words = lines[0].split()
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        return _response(HTTPStatus.BAD_REQUEST, b"not an HTTP request\n")
    method, target, _ = words
    if method not in ("GET", "HEAD"):
        return _response(
            HTTPStatus.METHOD_NOT_ALLOWED, b"only GET and HEAD\n", extra={"Allow": "GET, HEAD"}
        )
    if urlsplit(target).path != "/metrics":
        return _response(HTTPStatus.NOT_FOUND, b"the metrics are at /metrics\n")
    accept = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "accept":
            accept = value.strip()
    try:
        body, content_type = exposition(accept)
    except Exception as error:
        message = f"collecting the metrics failed: {error!r}\n".encode(errors="replace")
        return _response(HTTPStatus.INTERNAL_SERVER_ERROR, message)
    return _response(HTTPStatus.OK, body, content_type=content_type, send_body=method == "GET")


def _response(
    status: HTTPStatus,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    extra: dict[str, str] | None = None,
    send_body: bool = True,
) -> bytes:
    headers = {
        "Content-Type": content_type,
        "Content-Length": str(len(body)),
        "Connection": "close",
        **(extra or {}),
    }
    head = f"HTTP/1.1 {status.value} {status.phrase}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    return (head + "\r\n").encode("latin-1") + (body if send_body else b"")


def registry_exposition(registry: CollectorRegistry) -> Exposition:
    """``registry``'s metrics in the format an ``Accept`` header asks for (prometheus_client's)."""
    from prometheus_client.exposition import choose_encoder  # noqa: PLC0415 - optional extra

    def exposition(accept: str) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        return encoder(registry), content_type

    return exposition


@attrs.define
class _Connection:
    sock: socket.socket
    deadline: float
    received: bytearray = attrs.field(factory=bytearray)
    outgoing: bytes = b""


class MetricsServer:
    """Serve ``exposition`` at ``http://HOST:PORT/metrics`` from a thread, until closed.

    Args:
        address: ``(host, port)`` to listen on; port 0 takes a free one (see ``port``).
        exposition: What a scrape answers (``registry_exposition()``).
        max_connections: Connections open at once; one more closes the oldest.
        request_seconds: How long each connection may last.

    Raises:
        OSError, UnicodeError: The address cannot be listened on.
    """

    def __init__(
        self,
        address: tuple[str, int],
        exposition: Exposition,
        *,
        max_connections: int = MAX_CONNECTIONS,
        request_seconds: float = REQUEST_SECONDS,
    ) -> None:
        host, port = address
        family, _, _, _, where = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        self._listener = socket.create_server(where[:2], family=family, backlog=128)
        self._listener.setblocking(False)
        self._exposition = exposition
        self._max = max_connections
        self._seconds = request_seconds
        self._connections: dict[socket.socket, _Connection] = {}  # oldest first
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        self._resume_at: float | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="swarmdns-metrics", daemon=True)

    @property
    def port(self) -> int:
        """The port listened on."""
        port: int = self._listener.getsockname()[1]
        return port

    def __enter__(self) -> MetricsServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving, close every connection and the listening socket."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"x")
        if self._thread.is_alive():
            self._thread.join()
        for connection in list(self._connections.values()):
            self._close(connection)
        self._selector.close()
        for sock in (self._listener, self._wake_reader, self._wake_writer):
            sock.close()

    def _serve(self) -> None:
        while not self._stopping:
            for key, events in self._selector.select(self._timeout()):
                if key.fileobj is self._listener:
                    self._accept()
                elif key.fileobj is not self._wake_reader:
                    connection = self._connections.get(key.fileobj)  # type: ignore[call-overload]
                    if connection is None:  # closed by an earlier event of this round
                        continue
                    if events & selectors.EVENT_READ:
                        self._read(connection)
                    elif events & selectors.EVENT_WRITE:
                        self._write(connection)
            self._expire(time.monotonic())

    def _timeout(self) -> float | None:
        """How long the selector may wait: until the first deadline, or the end of a pause."""
        soonest = [connection.deadline for connection in self._connections.values()]
        if self._resume_at is not None:
            soonest.append(self._resume_at)
        return max(0.0, min(soonest) - time.monotonic()) if soonest else None

    def _expire(self, now: float) -> None:
        for connection in list(self._connections.values()):
            if connection.deadline <= now:
                self._close(connection)
        if self._resume_at is not None and self._resume_at <= now:
            self._resume_at = None
            self._selector.register(self._listener, selectors.EVENT_READ)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: the listener stays readable, so pause it, not spin.
                    self._selector.unregister(self._listener)
                    self._resume_at = time.monotonic() + _PAUSE_SECONDS
                return  # ECONNABORTED and the like: a client gone before it was accepted
            sock.setblocking(False)
            if len(self._connections) >= self._max:
                self._close(next(iter(self._connections.values())))
            connection = _Connection(sock=sock, deadline=time.monotonic() + self._seconds)
            self._connections[sock] = connection
            self._selector.register(sock, selectors.EVENT_READ)
            self._read(connection)  # a scraper's request is usually there already

    def _read(self, connection: _Connection) -> None:
        try:
            data = connection.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(connection)
            return
        if not data:
            self._close(connection)
            return
        connection.received += data
        received = bytes(connection.received)
        end = min(
            (at for at in (received.find(b"\r\n\r\n"), received.find(b"\n\n")) if at >= 0),
            default=-1,
        )
        if end >= 0:
            response = answer(received[:end], self._exposition)
        elif len(received) > MAX_HEAD:
            response = _response(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, b"the request head is too long\n"
            )
        else:
            return
        connection.outgoing = response
        self._selector.modify(connection.sock, selectors.EVENT_WRITE)
        self._write(connection)

    def _write(self, connection: _Connection) -> None:
        try:
            sent = connection.sock.send(connection.outgoing)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(connection)
            return
        connection.outgoing = connection.outgoing[sent:]
        if not connection.outgoing:
            self._close(connection)

    def _close(self, connection: _Connection) -> None:
        self._connections.pop(connection.sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(connection.sock)
        connection.sock.close()
