"""Taking a port away from the fake, as another program would."""

from __future__ import annotations

import socket


def occupy(port: int, kind: socket.SocketKind) -> socket.socket:
    """Bind ``port`` on 127.0.0.1 (and listen, for TCP); the caller closes the socket."""
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", port))
    if kind == socket.SOCK_STREAM:
        sock.listen()
    return sock
