"""A DNS server that answers from ready-made bytes, for benchmarks (runs in its own process).

A query for ``tasks.n<N>-<anything>.`` gets N A records (owner compressed to
the question), so every client pays the same server cost. Answers over 4096
bytes come back truncated over UDP and whole over TCP, as from the engine.
"""

from __future__ import annotations

import socket
import struct
import threading

UDP_LIMIT = 4096


def answer_for(query: bytes, limit: int | None = None) -> bytes:
    """The answer to ``query``; only a truncated header and question past ``limit``."""
    end = 12
    labels = []
    while query[end]:
        labels.append(query[end + 1 : end + 1 + query[end]])
        end += 1 + query[end]
    end += 5  # the root label, type and class
    count = int(labels[1].split(b"-")[0][1:]) if len(labels) > 1 and labels[0] == b"tasks" else 1
    records = b"".join(
        b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 600, 4) + struct.pack("!I", 0x0A000000 + i + 2)
        for i in range(count)
    )
    question = query[12:end]
    if limit is not None and 12 + len(question) + len(records) > limit:
        return query[:2] + struct.pack("!HHHHH", 0x8380, 1, 0, 0, 0) + question
    return query[:2] + struct.pack("!HHHHH", 0x8180, 1, count, 0, 0) + question + records


def serve_tcp(listener: socket.socket) -> None:
    while True:
        connection, _ = listener.accept()
        with connection:
            while True:
                prefix = connection.recv(2)
                if len(prefix) < 2:
                    break
                (length,) = struct.unpack("!H", prefix)
                query = b""
                while len(query) < length:
                    query += connection.recv(length - len(query))
                reply = answer_for(query)
                connection.sendall(struct.pack("!H", len(reply)) + reply)


def main() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", port))
    tcp.listen(64)
    threading.Thread(target=serve_tcp, args=(tcp,), daemon=True).start()
    print(port, flush=True)
    cache: dict[bytes, bytes] = {}
    while True:
        query, client = udp.recvfrom(4096)
        key = query[12:]
        reply = cache.get(key)
        if reply is None:
            reply = answer_for(query, UDP_LIMIT)
            if len(cache) < 10000:
                cache[key] = reply
        udp.sendto(query[:2] + reply[2:], client)


if __name__ == "__main__":
    main()
