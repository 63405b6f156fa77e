"""Benchmarks: ``python -m tests.benchmarks`` prints a table of ratios.

Every figure is a ratio against a baseline measured in the same run on the
same machine. Outside the default test run (pytest does not collect this
package's files).

1. ``task_ips()`` at 1, 70 and 1,000 tasks against a server that answers from
   ready-made bytes, against dnspython's ``Resolver.resolve`` (no cache, EDNS
   4096), aiodns/pycares, and the floor: the same exchange of prebuilt bytes,
   unparsed.
2. The fake server's queries per second against dnslib's ``DNSServer``
   serving the same records, with several concurrent clients.
3. Watching 1,000 services of 50 tasks in one asyncio loop: the CPU share
   against the floor (the same exchanges of prebuilt bytes on the same
   schedule, unparsed), and how late changes arrive.
4. ``import swarmdns`` against ``import dns.resolver``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import platform
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import dns.message
import dns.resolver

import swarmdns
import swarmdns.aio
from swarmdns.testing import FakeSwarm

SERVER = Path(__file__).with_name("server.py")
ROUNDS = 5


@contextmanager
def ready_made_server() -> Iterator[int]:
    """The ready-made-bytes server in a process of its own; yields its port."""
    process = subprocess.Popen([sys.executable, str(SERVER)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        process.terminate()  # the process this benchmark started, by its id
        process.wait(30)
        if process.stdout is not None:
            process.stdout.close()


def per_call(function: Callable[[], object], *, budget: float = 0.5) -> float:
    """Seconds per call: the best of ROUNDS rounds of about ``budget`` seconds each."""
    function()  # warm up
    calls = 1
    while True:
        started = time.perf_counter()
        for _ in range(calls):
            function()
        if time.perf_counter() - started > budget / 10:
            break
        calls *= 4
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(calls):
            function()
        best = min(best, (time.perf_counter() - started) / calls)
    return best


def raw_exchange(port: int, name: str) -> Callable[[], object]:
    """The floor: prebuilt query bytes out, reply bytes in (TCP when truncated), no parsing."""
    query = dns.message.make_query(name, "A", use_edns=0, payload=4096).to_wire()
    framed = struct.pack("!H", len(query)) + query

    def exchange() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.connect(("127.0.0.1", port))
            udp.send(query)
            reply = udp.recv(65535)
        if not reply[2] & 0x02:
            return reply
        with socket.create_connection(("127.0.0.1", port)) as tcp:
            tcp.sendall(framed)
            (length,) = struct.unpack("!H", tcp.recv(2))
            data = b""
            while len(data) < length:
                data += tcp.recv(length - len(data))
            return data

    return exchange


def dnspython_resolve(port: int, name: str) -> Callable[[], object]:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    resolver.cache = None
    resolver.use_edns(0, 0, 4096)
    return lambda: resolver.resolve(name, "A", search=False)


def aiodns_query(port: int, name: str) -> Callable[[], object] | str:
    try:
        import aiodns  # noqa: PLC0415
    except ImportError:
        return "aiodns is not installed (pip install aiodns)"
    loop = asyncio.new_event_loop()
    resolver = aiodns.DNSResolver(nameservers=[f"127.0.0.1:{port}"], loop=loop, tries=1)
    counter = itertools.count()
    service = name.split(".")[1].split("-", maxsplit=1)[0]

    # pycares 5 offers no way to turn c-ares' query cache off, so each query
    # asks a name never asked before: the cache cannot answer it.
    def query() -> object:
        return loop.run_until_complete(resolver.query_dns(f"tasks.{service}-{next(counter)}", "A"))

    query.close = loop.close  # type: ignore[attr-defined]
    return query


def swarmdns_task_ips(port: int, name: str) -> Callable[[], object]:
    backend = swarmdns.DNSPythonBackend([f"127.0.0.1:{port}"])
    service = name.split(".", 1)[1].rstrip(".")
    return lambda: swarmdns.task_ips(service, backend=backend)


def lookups_table() -> list[str]:
    rows = [
        "| tasks | raw round trip | swarmdns task_ips() | dnspython Resolver.resolve | aiodns |",
        "|---:|---:|---:|---:|---:|",
    ]
    with ready_made_server() as port:
        for count in (1, 70, 1000):
            name = f"tasks.n{count}-bench."
            floor = per_call(raw_exchange(port, name))
            ours = per_call(swarmdns_task_ips(port, name))
            theirs = per_call(dnspython_resolve(port, name))
            aio = aiodns_query(port, name)
            if isinstance(aio, str):
                aio_text = aio
            else:
                aio_text = f"{per_call(aio) / floor:.2f}x"
                aio.close()  # type: ignore[attr-defined]
            rows.append(
                f"| {count} | 1.00x ({floor * 1e6:.0f} us) | {ours / floor:.2f}x |"
                f" {theirs / floor:.2f}x | {aio_text} |"
            )
            rows.append(f"|  | | swarmdns is {theirs / ours:.1f}x faster than dnspython | | |")
    return rows


def throughput(port: int, names: list[bytes], clients: int, seconds: float) -> float:
    """Queries per second answered by a server on ``port``, from ``clients`` threads."""
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.connect(("127.0.0.1", port))
            for query in itertools.cycle(names):
                if time.monotonic() > stop:
                    return
                sock.send(query)
                sock.recv(65535)
                counts[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


def dnslib_server(records: dict[str, list[str]]) -> tuple[Any, int] | str:
    try:
        from dnslib import QTYPE, RR, A  # noqa: PLC0415
        from dnslib.server import BaseResolver, DNSLogger, DNSServer  # noqa: PLC0415
    except ImportError:
        return "dnslib is not installed (pip install dnslib)"

    class Resolver(BaseResolver):  # type: ignore[misc]
        def resolve(self, request: Any, handler: Any) -> Any:
            reply = request.reply()
            name = str(request.q.qname).rstrip(".")
            for address in records.get(name, []):
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=600))
            return reply

    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data")
    server = DNSServer(Resolver(), port=0, address="127.0.0.1", logger=quiet)
    server.start_thread()
    return server, server.server.server_address[1]


def fake_throughput_table() -> list[str]:
    rows = [
        "| answer | clients | fake queries/s | dnslib queries/s | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    with FakeSwarm() as swarm:
        one = swarm.create_service("one", replicas=1)
        many = swarm.create_service("many", replicas=70)
        records = {
            "tasks.one": [str(ip) for ip in one.task_ips],
            "tasks.many": [str(ip) for ip in many.task_ips],
        }
        started = dnslib_server(records)
        for label, name in (("1 record", "tasks.one"), ("70 records", "tasks.many")):
            query = [dns.message.make_query(name, "A", use_edns=0, payload=4096).to_wire()]
            for clients in (1, 4):
                ours = throughput(swarm.port, query, clients, 1.0)
                if isinstance(started, str):
                    rows.append(f"| {label} | {clients} | {ours:.0f} | {started} | |")
                    continue
                theirs = throughput(started[1], query, clients, 1.0)
                rows.append(
                    f"| {label} | {clients} | {ours:.0f} | {theirs:.0f} | {ours / theirs:.2f}x |"
                )
        if not isinstance(started, str):
            started[0].stop()
    return rows


WATCHER = Path(__file__).with_name("watcher.py")


def watch_table(services: int = 1000, tasks_each: int = 50, interval: float = 1.0) -> list[str]:
    """One loop watching ``services`` services: its CPU share and how late changes arrive."""
    window = 15.0
    # Every query of both runs is kept, to count those that were not NOERROR.
    queries = int(2 * services * (window + 5) / interval * 1.5)
    with FakeSwarm(query_log=queries) as swarm:
        with swarm.batch():
            for index in range(services):
                network = f"net{index // 10}"  # 10 services of 50 tasks per /23
                if index % 10 == 0:
                    base = int(IPv4Address("10.64.0.0")) + (index // 10) * 512
                    swarm.create_network(network, subnet=str(IPv4Network((base, 23))))
                swarm.create_service(
                    f"s{index}", tasks_each, network=network, endpoint_mode="dnsrr"
                )
        arguments = [sys.executable, str(WATCHER), swarm.nameserver, str(services),
                     str(interval), str(window)]  # fmt: skip
        with subprocess.Popen([*arguments, "floor"], stdout=subprocess.PIPE, text=True) as floor:
            assert floor.stdout is not None
            floor_usage = [json.loads(line) for line in floor.stdout][-1]
        floor_share = floor_usage["cpu"] / floor_usage["wall"]
        watcher = subprocess.Popen(arguments, stdout=subprocess.PIPE, text=True)
        assert watcher.stdout is not None
        lines = iter(watcher.stdout)
        ready = json.loads(next(lines))["ready"]
        changed: dict[str, float] = {}
        time.sleep(interval)  # let the watches settle into their rhythm
        while time.monotonic() < ready + window - 2 * interval:
            name = f"s{len(changed) * 7 % services}"
            swarm.scale(name, tasks_each + 1)
            changed[name] = time.monotonic()
            time.sleep(0.1)
        delays, usage = [], None
        for line in lines:
            record = json.loads(line)
            if "cpu" in record:
                usage = record
            elif record["service"] in changed:
                delays.append(record["at"] - changed[record["service"]])
        watcher.wait(60)
        watcher.stdout.close()
        failed = [q for q in swarm.queries if q.outcome.name != "NOERROR"]
    assert usage is not None
    delays.sort()
    p50 = delays[len(delays) // 2]
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    share = usage["cpu"] / usage["wall"]
    return [
        "| services x tasks | interval | CPU, share of one core | ratio to the floor |"
        " changes seen | p50 delay | p99 delay |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| {services} x {tasks_each}, floor | {interval:g} s | {floor_share:.1%} | 1.00x | | | |",
        f"| {services} x {tasks_each}, swarmdns | {interval:g} s | {share:.1%} |"
        f" {share / floor_share:.2f}x | {len(delays)} of {len(changed)} | {p50:.3f} s |"
        f" {p99:.3f} s |",
        "",
        f"(the fake answered {swarm.count_queries()} queries; {len(failed)} not NOERROR)",
    ]


def import_seconds(statement: str) -> float:
    best = float("inf")
    for _ in range(7):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True)
        best = min(best, time.perf_counter() - started)
    return best


def import_table() -> list[str]:
    baseline = import_seconds("pass")
    ours = import_seconds("import swarmdns") - baseline
    theirs = import_seconds("import dns.resolver") - baseline
    return [
        "| import | time (interpreter start-up removed) | ratio to dns.resolver |",
        "|---|---:|---:|",
        f"| dns.resolver | {theirs * 1e3:.0f} ms | 1.00x |",
        f"| swarmdns | {ours * 1e3:.0f} ms | {ours / theirs:.2f}x |",
    ]


def main() -> None:
    print(f"# swarmdns {swarmdns.__version__} benchmarks")
    print(f"Python {platform.python_version()} on {platform.machine()}, {platform.platform()}")
    print(
        "\n## task_ips() against the alternatives"
        " (time per call, as a ratio to the raw round trip)\n"
    )
    print("\n".join(lookups_table()))
    print("\n## The fake server's throughput against dnslib's DNSServer\n")
    print("\n".join(fake_throughput_table()))
    print("\n## Watching many services in one asyncio loop\n")
    print("\n".join(watch_table()))
    print("\n## Import time\n")
    print("\n".join(import_table()))


if __name__ == "__main__":
    main()
