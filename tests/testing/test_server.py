"""The fake's sockets: life cycle, transports, faults on the wire, robustness."""

from __future__ import annotations

import json
import os
import pathlib
import select
import selectors
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from swarmdns.testing import Delay, FakeSwarm, Fault, Outcome, _server
from swarmdns.testing._responder import Reply, Responder, Transport
from swarmdns.testing._server import TCP_UNREAD_LIMIT, DNSServer, _Connection
from swarmdns.testing._swarm import Swarm
from swarmdns.testing._zone import ZoneBuilder

from .dns_clients import NoReply, ask_dnspython, exchange


def a_query(name: str = "tasks.web") -> bytes:
    return dns.message.make_query(name, "A").to_wire()


def test_start_and_stop_release_the_port_and_the_thread() -> None:
    threads_before = set(threading.enumerate())
    swarm = FakeSwarm().start()
    port = swarm.port
    swarm.create_service("web")
    assert ask_dnspython(swarm, "web").rcode == "NOERROR"

    swarm.stop()
    swarm.stop()  # idempotent

    assert set(threading.enumerate()) == threads_before
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", port))  # free again


def test_serves_udp_and_tcp_on_the_given_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with FakeSwarm(port=port) as swarm:
        swarm.create_service("web", replicas=2)
        assert (swarm.host, swarm.port, swarm.nameserver) == (
            "127.0.0.1",
            port,
            f"127.0.0.1:{port}",
        )
        for transport in ("udp", "tcp"):
            assert len(ask_dnspython(swarm, "tasks.web", transport=transport).values) == 2


def test_port_in_use_is_a_clear_error() -> None:
    with FakeSwarm() as running, pytest.raises(OSError, match="in use"):
        FakeSwarm(port=running.port).start()


def test_address_needs_a_running_server() -> None:
    swarm = FakeSwarm()
    with pytest.raises(RuntimeError, match=r"not running: call start\(\) first"):
        _ = swarm.nameserver
    assert "stopped" in repr(swarm)


def test_start_twice_is_refused(swarm_dns: FakeSwarm) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        swarm_dns.start()


def test_stop_does_not_wait_for_connections_or_pending_replies() -> None:
    swarm = FakeSwarm().start()
    swarm.create_service("web")
    swarm.inject(Delay(3600))  # were stop to wait for it, pytest-timeout would fail this
    idle = socket.create_connection((swarm.host, swarm.port))
    delayed = socket.create_connection((swarm.host, swarm.port))
    delayed.sendall(struct.pack("!H", len(a_query("web"))) + a_query("web"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(a_query("web"), (swarm.host, swarm.port))
        swarm.wait_for_queries(2)

        swarm.stop()

    for sock in (idle, delayed):
        assert sock.recv(1) == b""  # the server closed the connection
        sock.close()


def test_stop_under_tcp_load_ends_every_connection() -> None:
    swarm = FakeSwarm().start()
    swarm.create_service("web")
    framed = struct.pack("!H", len(a_query("web"))) + a_query("web")
    ended = threading.Event()

    def hammer(sock: socket.socket) -> None:
        try:
            while sock.recv(2):  # b"" once the server closes the connection
                sock.recv(512)
                sock.sendall(framed)
        except OSError:
            pass
        ended.set()

    sock = socket.create_connection((swarm.host, swarm.port), timeout=30)
    sock.sendall(framed)
    client = threading.Thread(target=hammer, args=(sock,))
    client.start()
    swarm.wait_for_queries(50)

    swarm.stop()

    client.join()
    sock.close()
    assert ended.is_set()


def test_shutdown_leaves_no_warning_behind(tmp_path: pathlib.Path) -> None:
    script = tmp_path / "churn.py"
    script.write_text(
        textwrap.dedent(
            """
            import socket, struct
            import dns.message
            from swarmdns.testing import Delay, FakeSwarm

            query = dns.message.make_query("web", "A").to_wire()
            framed = struct.pack("!H", len(query)) + query
            for _ in range(20):
                swarm = FakeSwarm().start()
                swarm.create_service("web")
                swarm.inject([Delay(0.5)])
                busy = socket.create_connection((swarm.host, swarm.port))
                busy.sendall(framed)
                idle = socket.create_connection((swarm.host, swarm.port))
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                udp.sendto(query, (swarm.host, swarm.port))
                swarm.wait_for_queries(2)
                swarm.stop()
                for sock in (busy, idle, udp):
                    sock.close()
            print("done")
            """
        )
    )

    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert (result.returncode, result.stdout, result.stderr) == (0, "done\n", "")


class Reports:
    """The JSON lines a child process prints, each awaited with a deadline."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        assert child.stdout is not None
        self._fd = child.stdout.fileno()
        self._buffer = b""

    def next(self, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._fd], [], [], left)[0]:
                raise TimeoutError(f"the child printed nothing more within {timeout} s")
            chunk = os.read(self._fd, 65536)
            if not chunk:
                raise EOFError(f"the child exited; it printed {self._buffer!r}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)


def test_at_the_descriptor_limit_the_fake_pauses_accepting_instead_of_spinning(
    tmp_path: pathlib.Path,
) -> None:
    # The fake runs in a child whose descriptor limit is 64; this process
    # holds 100 connections to it, more than it can accept.
    script = tmp_path / "limit.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, logging, resource, sys, threading, time
            from swarmdns.testing import FakeSwarm

            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
            records, first = [], threading.Event()

            class Keep(logging.Handler):
                def emit(self, record):
                    records.append(f"{record.levelname} {record.getMessage()}")
                    first.set()

            logger = logging.getLogger("swarmdns")
            logger.addHandler(Keep())
            logger.setLevel(logging.DEBUG)

            def report(**values):
                print(json.dumps(values), flush=True)

            with FakeSwarm() as swarm:
                swarm.create_service("web")
                report(port=swarm.port)
                report(limit=first.wait(60))  # the first record: out of descriptors
                # The measurement window, while the parent holds its connections.
                wall, cpu = time.monotonic(), time.process_time()
                threading.Event().wait(1.0)
                report(cpu=(time.process_time() - cpu) / (time.monotonic() - wall))
                sys.stdin.readline()  # the parent has let go and asked again
                report(records=records, errors=len(swarm.internal_errors))
            """
        )
    )
    framed = struct.pack("!H", len(a_query("web"))) + a_query("web")
    child = subprocess.Popen(
        [sys.executable, "-W", "error", str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    clients: list[socket.socket] = []
    try:
        reports = Reports(child)
        port = reports.next()["port"]
        for _ in range(100):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=60))
            clients[-1].sendall(framed)
        limit = reports.next()
        # Meanwhile, it answers over the connections it holds, and over UDP.
        held = [dns.query.receive_tcp(clients[0], time.time() + 60)[0]]
        dns.query.send_tcp(clients[0], dns.message.make_query("web", "A"))
        held.append(dns.query.receive_tcp(clients[0], time.time() + 60)[0])
        udp = dns.query.udp(dns.message.make_query("web", "A"), "127.0.0.1", port=port, timeout=60)
        cpu = reports.next()["cpu"]
        for client in clients:
            client.close()
        again = dns.query.tcp(
            dns.message.make_query("web", "A"), "127.0.0.1", port=port, timeout=60
        )
        assert child.stdin is not None
        child.stdin.write(b"\n")
        child.stdin.flush()
        final = reports.next()
        _, err = child.communicate(timeout=60)
    finally:
        for client in clients:
            client.close()
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=60)

    assert limit == {"limit": True}
    assert cpu < 0.5, f"the fake used {cpu:.0%} of a core while out of descriptors"
    assert final["errors"] == 0
    assert len(final["records"]) <= 3, final["records"][:5]
    assert [r.split()[0] for r in final["records"]] == ["WARNING"]
    assert "Too many open files" in final["records"][0]
    answers = [*held, udp, again]
    assert [m.rcode() for m in answers] == [dns.rcode.NOERROR] * 4
    assert (child.returncode, err) == (0, b"")


def test_tcp_connection_closes_after_128_queries(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web")
    framed = struct.pack("!H", len(a_query("web"))) + a_query("web")
    with socket.create_connection((swarm_dns.host, swarm_dns.port), timeout=10) as sock:
        sock.sendall(framed * 130)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk

    replies = []
    while received:
        (length,) = struct.unpack("!H", received[:2])
        replies.append(dns.message.from_wire(received[2 : 2 + length]))
        received = received[2 + length :]
    assert len(replies) == 128
    assert len(swarm_dns.queries) == 128


def test_silent_tcp_connection_is_closed_by_the_server(swarm_dns: FakeSwarm) -> None:
    # The engine waits 2 s for a connection's first query; the test waits for
    # the server to hang up (recv returns b""), with a generous socket timeout.
    with socket.create_connection((swarm_dns.host, swarm_dns.port), timeout=30) as sock:
        assert sock.recv(1) == b""


def test_no_reply_makes_the_client_time_out(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web")
    swarm_dns.inject(Fault.NO_REPLY, name="web")

    for transport in ("udp", "tcp"):
        with pytest.raises(NoReply):
            exchange(swarm_dns, a_query("web"), transport=transport, timeout=0.2)
    seen = swarm_dns.wait_for_queries(2)
    assert [q.outcome for q in seen] == [Outcome.NO_REPLY] * 2


def test_a_delayed_answer_arrives_later_without_holding_up_others(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web")
    swarm_dns.create_service("db")
    swarm_dns.inject(Delay(3600), name="web")
    swarm_dns.inject([Delay(0.05)], name="db")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as slow:
        slow.sendto(a_query("web"), (swarm_dns.host, swarm_dns.port))
        swarm_dns.wait_for_queries(1, name="web")

        delayed = ask_dnspython(swarm_dns, "db", timeout=5)
        prompt = ask_dnspython(swarm_dns, "db", timeout=5)

        slow.setblocking(False)
        with pytest.raises(BlockingIOError):
            slow.recv(512)  # still held back
    assert (delayed.rcode, prompt.rcode) == ("NOERROR", "NOERROR")
    assert [q.delay for q in swarm_dns.queries] == [3600, 0.05, 0.0]


def test_sequence_of_outcomes_over_the_wire(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=2)
    swarm_dns.inject([Fault.SERVFAIL, Fault.SERVFAIL], name="tasks.web")

    rcodes = [ask_dnspython(swarm_dns, "tasks.web").rcode for _ in range(3)]

    assert rcodes == ["SERVFAIL", "SERVFAIL", "NOERROR"]


def test_several_queries_share_one_tcp_connection(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=3)
    with socket.create_connection((swarm_dns.host, swarm_dns.port), timeout=2) as sock:
        for _ in range(3):
            query = dns.message.make_query("tasks.web", "A")
            dns.query.send_tcp(sock, query)
            reply, _ = dns.query.receive_tcp(sock)
            assert reply.id == query.id
            assert len(reply.answer[0]) == 3


@pytest.mark.parametrize(
    "junk",
    [b"", b"\x00", b"\xff" * 11, b"\x00\x01" + b"\xff" * 40, b"\x12\x34\x81\x80" + b"\x00" * 8],
)
def test_malformed_datagrams_do_not_stop_the_server(swarm_dns: FakeSwarm, junk: bytes) -> None:
    swarm_dns.create_service("web")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(junk, (swarm_dns.host, swarm_dns.port))
    swarm_dns.wait_for_queries(1)

    assert ask_dnspython(swarm_dns, "web").rcode == "NOERROR"


def test_formerr_comes_back_over_udp(swarm_dns: FakeSwarm) -> None:
    no_question = struct.pack("!HHHHHH", 0xABCD, 0x0100, 0, 0, 0, 0)

    reply = dns.message.from_wire(exchange(swarm_dns, no_question))

    assert (reply.id, dns.rcode.to_text(reply.rcode())) == (0xABCD, "FORMERR")


@pytest.mark.parametrize(
    "stream",
    [
        b"\x00",  # half a length prefix
        b"\x00\x40tasks",  # a message cut short
        b"\x00\x00",  # an empty message
        b"\x00\x05\xff\xff\xff\xff\xff",  # five bytes of nonsense
        b"\xff\xff" + b"\x00" * 100,  # a length the client never sends
    ],
)
def test_broken_tcp_streams_only_lose_their_own_connection(
    swarm_dns: FakeSwarm, stream: bytes
) -> None:
    swarm_dns.create_service("web")
    with socket.create_connection((swarm_dns.host, swarm_dns.port), timeout=2) as broken:
        broken.sendall(stream)
        broken.shutdown(socket.SHUT_WR)
        assert broken.recv(100) == b""  # the server hangs up

    assert ask_dnspython(swarm_dns, "web", transport="tcp").rcode == "NOERROR"
    assert ask_dnspython(swarm_dns, "web").rcode == "NOERROR"


def test_concurrent_clients_all_get_their_answers(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=5)
    results: list[list[str]] = []

    def client() -> None:
        for _ in range(20):
            results.append(sorted(ask_dnspython(swarm_dns, "tasks.web", timeout=5).values))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [sorted(str(ip) for ip in web.task_ips)] * 160
    assert len(swarm_dns.wait_for_queries(160, name="tasks.web")) == 160


def test_wait_for_queries_names_what_is_missing(swarm_dns: FakeSwarm) -> None:
    with pytest.raises(TimeoutError, match=r"received 0 of 2 queries for 'tasks\.web'"):
        swarm_dns.wait_for_queries(2, name="tasks.web", timeout=0.05)


def test_the_log_keeps_the_newest_queries_and_counts_every_one() -> None:
    with FakeSwarm(query_log=10) as swarm:
        swarm.create_service("web")
        for name in ["web", "db"] * 15:
            exchange(swarm, a_query(name), timeout=60)  # answered, so logged

        assert [q.name for q in swarm.queries] == ["web", "db"] * 5
        assert [swarm.count_queries(n) for n in (None, "WEB", "db.")] == [30, 15, 15]
        assert len(swarm.wait_for_queries(30)) == 10
        assert len(swarm.wait_for_queries(15, name="db", timeout=0)) == 5
        with pytest.raises(TimeoutError, match="received 30 of 31 queries"):
            swarm.wait_for_queries(31, timeout=0.01)

        swarm.reset()

        assert (swarm.queries, swarm.count_queries(), swarm.count_queries("web")) == ((), 0, 0)


def test_reset_empties_everything_but_keeps_the_port(swarm_dns: FakeSwarm) -> None:
    port = swarm_dns.port
    swarm_dns.create_service("web")
    swarm_dns.inject(Fault.SERVFAIL)
    ask_dnspython(swarm_dns, "web")

    swarm_dns.reset()

    assert (swarm_dns.port, swarm_dns.services, swarm_dns.queries) == (port, (), ())
    assert ask_dnspython(swarm_dns, "web").rcode == "NXDOMAIN"


class HeldResponder:
    """Answers nothing; the first query holds the server's loop until released."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.waited: list[tuple[float, float]] = []  # each message's waited, and when it came
        self.holding = threading.Event()
        self.release = threading.Event()

    def respond(self, data: bytes, transport: Transport, *, waited: float = 0.0) -> Reply:
        self.seen.append(data)
        self.waited.append((waited, time.monotonic()))
        if len(self.seen) == 1:
            self.holding.set()
            assert self.release.wait(30)
        return Reply(data=None)

    def wait_for(self, count: int) -> None:
        """Wait (up to 30 s) until ``count`` messages were read."""
        deadline = time.monotonic() + 30
        while len(self.seen) < count and time.monotonic() < deadline:
            time.sleep(0.01)


def test_drop_pending_drops_what_was_sent_before_and_not_read() -> None:
    responder = HeldResponder()
    server = DNSServer(responder, host="127.0.0.1", port=0)
    server.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(a_query("tasks.first"), ("127.0.0.1", server.port))
            assert responder.holding.wait(30)
            client.sendto(a_query("tasks.late"), ("127.0.0.1", server.port))  # queued, unread
            dropping = threading.Thread(target=server.drop_pending)
            dropping.start()
            responder.release.set()
            dropping.join(30)
            assert not dropping.is_alive()
            client.sendto(a_query("tasks.after"), ("127.0.0.1", server.port))
            responder.wait_for(2)
    finally:
        server.stop()

    assert [dns.message.from_wire(q).question[0].name.to_text() for q in responder.seen] == [
        "tasks.first.",
        "tasks.after.",
    ]


def test_a_datagram_read_late_is_answered_as_of_its_arrival() -> None:
    """The kernel stamp says how long it waited: the engine decides on arrival, not on reading."""
    responder = HeldResponder()
    server = DNSServer(responder, host="127.0.0.1", port=0)
    server.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(a_query("tasks.first"), ("127.0.0.1", server.port))
            assert responder.holding.wait(30)
            sent = time.monotonic()
            client.sendto(a_query("tasks.late"), ("127.0.0.1", server.port))
            time.sleep(0.3)  # the server is held: the datagram waits, unread, this long at least
            responder.release.set()
            responder.wait_for(2)
    finally:
        server.stop()

    (first, _), (waited, read) = responder.waited
    assert first < 0.3  # read at once
    assert 0.29 <= waited <= read - sent + 0.01


# -- bounds: what clients can make the server hold -------------------------------------
#
# Each test drives the server's handlers itself, in the test's thread, with the
# server's loop not running: what the server holds after each step is then
# exactly what the step left, whatever the machine's speed.


def framed(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message


def big_answer_responder(tasks: int = 2000) -> Responder:
    """A responder whose ``tasks.web`` answer over TCP is about 50 KB."""
    swarm = Swarm(seed=1)
    swarm.create_network("big", subnet="10.8.0.0/20")
    swarm.create_service(
        "web",
        tasks,
        networks=["big"],
        endpoint_mode="dnsrr",
        aliases=(),
        healthcheck=False,
        stack=None,
    )
    responder = Responder(seed=1)
    responder.zone = ZoneBuilder().build(swarm)
    return responder


def attach(server: DNSServer, sock: socket.socket) -> None:
    """Hand the server one end of a connection, as accepting it would."""
    sock.setblocking(False)
    server._connections[sock] = _Connection(sock, time.monotonic())
    server._selector.register(sock, selectors.EVENT_READ, server._on_tcp)


def test_a_tcp_client_that_never_reads_makes_the_server_hold_one_answer_at_most() -> None:
    responder = big_answer_responder()
    server = DNSServer(responder, host="127.0.0.1", port=0)
    client, end = socket.socketpair()
    try:
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        attach(server, end)
        client.sendall(b"".join(framed(a_query()) for _ in range(100)))

        for _ in range(5):  # the client reads nothing meanwhile
            server._on_tcp(end, selectors.EVENT_READ)
            server._on_tcp(end, selectors.EVENT_WRITE)
        answered, unread = responder.log.count(), server.unread

        answer_size = len(responder.respond(a_query(), "tcp").data or b"") + 2
        assert answer_size > 40_000
        # Without the limit: every query answered at once, 100 answers (5 MB) held.
        assert answered < 5
        assert unread <= TCP_UNREAD_LIMIT + answer_size + 100 * len(framed(a_query()))

        client.settimeout(30)
        received = b""
        while len(received) < 100 * answer_size:  # the client reads: every answer comes
            server._on_tcp(end, selectors.EVENT_WRITE)
            received += client.recv(1 << 20)
            assert server.unread <= TCP_UNREAD_LIMIT + answer_size + 100 * len(framed(a_query()))
        assert len(received) == 100 * answer_size
        assert responder.log.count() == 101
    finally:
        client.close()
        server.stop()


def test_tcp_connections_beyond_the_limit_wait_in_the_backlog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_server, "MAX_TCP_CONNECTIONS", 3)
    server = DNSServer(big_answer_responder(1), host="127.0.0.1", port=0)
    server._listen(True)
    clients = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
    try:
        for _ in range(3):
            server._on_accept(server._tcp, selectors.EVENT_READ)

        assert len(server._connections) == 3
        assert server._tcp not in server._selector.get_map()  # the fourth waits
        server._drop(next(iter(server._connections.values())))
        assert server._tcp in server._selector.get_map()  # a place is free again
        server._on_accept(server._tcp, selectors.EVENT_READ)
        assert len(server._connections) == 3
    finally:
        for client in clients:
            client.close()
        server.stop()


class Datagrams:
    """Stands in for the UDP socket: each read is the same query from another client."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads = 0

    def recvmsg(
        self, _size: int, _ancillary: int
    ) -> tuple[bytes, list[tuple[int, int, bytes]], int, tuple[str, int]]:
        self.reads += 1
        return self.data, [], 0, ("127.0.0.1", 1024 + self.reads % 60000)


@pytest.mark.parametrize(("count", "limit"), [("MAX_HELD_REPLIES", 50), ("MAX_HELD_BYTES", 4000)])
def test_replies_held_by_a_delay_are_bounded_in_number_and_bytes(
    monkeypatch: pytest.MonkeyPatch, count: str, limit: int
) -> None:
    monkeypatch.setattr(_server, count, limit)
    responder = big_answer_responder(1)
    responder.faults.inject(Delay(3600), None)
    server = DNSServer(responder, host="127.0.0.1", port=0)
    datagrams = Datagrams(a_query())
    try:
        for _ in range(200):
            server._on_udp(datagrams, selectors.EVENT_READ)  # type: ignore[arg-type]
        held, held_bytes = server.held

        # Without the bound, all 200 were held (a 3,600 s delay and 100,000 queries: 39 MB).
        assert responder.log.count() == 200
        assert 0 < held < 200
        assert held <= _server.MAX_HELD_REPLIES
        assert held_bytes <= _server.MAX_HELD_BYTES
        assert len(server._timers) == held
    finally:
        server.stop()
