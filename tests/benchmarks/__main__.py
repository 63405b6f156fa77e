"""Benchmarks: ``python -m tests.benchmarks`` prints tables of ratios.

Every figure is a ratio against a baseline measured in the same run on the
same machine. Outside the default test run (pytest does not collect this
package's files).

1. ``task_ips()`` at 1, 70 and 1,000 tasks against a server that answers from
   ready-made bytes, against dnspython's ``Resolver.resolve`` (no cache, EDNS
   4096), aiodns/pycares, and two floors: the same exchange of prebuilt bytes,
   unparsed, on a new socket per call (the raw round trip); and the plainest
   one, the prebuilt query sent and its answer received on one socket kept
   connected (the plain round trip; issue #21's goal: ``task_ips()`` at 70
   tasks within 2x of it).
2. The fake server's queries per second against dnslib's ``DNSServer``
   serving the same records, with several concurrent clients.
3. Watching a fleet (issue #12): scenario A, 1,000 services of 50 tasks every
   1 s, and B, 10,000 services of 10 tasks every 10 s, one service changing
   every 0.1 s. ``swarmdns.watch_services``, ``swarmdns.aio.watch_services``
   and one ``aio.watch_tasks`` per service (the old design) each watch from a
   process of their own (``watcher.py``): their CPU share against a floor (one
   socket, prebuilt queries on the same schedule, each answer read into a set
   of addresses, no watch logic; one sync, one asyncio), against the plainest
   floor (one thread, one connected non-blocking socket, each answer's records
   compared as a frozenset of their bytes with the last; issue #21's goal:
   ``watch_services()`` within 1.5x of it), and how late the changes arrive.
4. ``import swarmdns`` against ``import dns.resolver``.

``python -m tests.benchmarks lookups`` runs only section 1,
``python -m tests.benchmarks fleet`` only section 3, and
``python -m tests.benchmarks fleet A`` (or ``B``) only that scenario; the
whole section takes about ten minutes.
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
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import dns.message
import dns.resolver

import swarmdns
import swarmdns.aio
from swarmdns.testing import FakeSwarm

from .watcher import startup_limit, udp_sockets

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
    (best,) = side_by_side([function], budget=budget)
    return best


def side_by_side(functions: list[Callable[[], object]], *, budget: float = 0.5) -> list[float]:
    """Seconds per call of each function: the best of ROUNDS rounds, the functions in turn.

    Taking turns within each round exposes them all to the same load of a
    shared machine, so their ratios hold even when the absolute times move.
    """
    sizes = []
    for function in functions:
        function()  # warm up
        calls = 1
        while True:
            started = time.perf_counter()
            for _ in range(calls):
                function()
            if time.perf_counter() - started > budget / 10:
                break
            calls *= 4
        sizes.append(calls)
    best = [float("inf")] * len(functions)
    for _ in range(ROUNDS):
        for index, (function, calls) in enumerate(zip(functions, sizes, strict=True)):
            started = time.perf_counter()
            for _ in range(calls):
                function()
            best[index] = min(best[index], (time.perf_counter() - started) / calls)
    return best


def plain_round_trip(port: int, name: str) -> tuple[Callable[[], object], socket.socket]:
    """The plainest floor: the prebuilt query out and its answer in, on one connected socket.

    Returns the exchange and the socket, for the caller to close.
    """
    query = dns.message.make_query(name, "A", use_edns=0, payload=4096).to_wire()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.connect(("127.0.0.1", port))

    def exchange() -> bytes:
        udp.send(query)
        return udp.recv(65535)

    return exchange, udp


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


#: Issue #21: ``task_ips()`` at 70 tasks within this many times the plain round trip.
PLAIN_GOAL = 2.0


def lookups_table() -> list[str]:
    rows = [
        "| tasks | raw round trip | swarmdns task_ips() | dnspython Resolver.resolve | aiodns |"
        " plain round trip | task_ips() to plain |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    goals = []
    with ready_made_server() as port:
        for count in (1, 70, 1000):
            name = f"tasks.n{count}-bench."
            plain_exchange, plain_socket = plain_round_trip(port, name)
            with plain_socket:
                # Past 4,096 bytes the answer comes over TCP: no plain floor.
                measured = [raw_exchange(port, name), swarmdns_task_ips(port, name)]
                if count <= 70:
                    measured.append(plain_exchange)
                floor, ours, *plain = side_by_side(measured)
            theirs = per_call(dnspython_resolve(port, name))
            aio = aiodns_query(port, name)
            if isinstance(aio, str):
                aio_text = aio
            else:
                aio_text = f"{per_call(aio) / floor:.2f}x"
                aio.close()  # type: ignore[attr-defined]
            plain_text = "| | |"
            if plain:
                plain_text = f"| {plain[0] * 1e6:.0f} us | {ours / plain[0]:.2f}x |"
            rows.append(
                f"| {count} | 1.00x ({floor * 1e6:.0f} us) | {ours / floor:.2f}x"
                f" ({ours * 1e6:.0f} us) | {theirs / floor:.2f}x | {aio_text} {plain_text}"
            )
            rows.append(f"|  | | swarmdns is {theirs / ours:.1f}x faster than dnspython | | | | |")
            if count == 70:
                verdict = "met" if ours / plain[0] <= PLAIN_GOAL else "NOT met"
                goals.append(
                    f"- task_ips() at 70 tasks: {ours / plain[0]:.2f}x the plain round trip"
                    f" (goal: at most {PLAIN_GOAL:g}x): {verdict}"
                )
    return [*rows, "", *goals]


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
#: The harness changes one service this often, in every scenario.
CHANGE_EVERY = 0.1
#: Changes start this long after every initial set is in.
SETTLE = 1.0


@dataclass(frozen=True)
class Scenario:
    """A fleet to watch, and how its services are spread over networks.

    Attributes:
        label: The scenario's name in issue #12.
        services: How many services (s0, s1, ...).
        tasks: Tasks of each service at the start.
        interval: Seconds between a watch's lookups.
        window: Seconds of CPU measured, from the moment every initial set is in.
        per_network: Services on each network.
        prefix: Each network's prefix length (room for every change of every row).
    """

    label: str
    services: int
    tasks: int
    interval: float
    window: float
    per_network: int
    prefix: int

    @property
    def target(self) -> float:
        """Issue #12's p99 target for a change's delay."""
        return self.interval * (1 + 0.1) + 0.020

    @property
    def changes_end(self) -> float:
        """Seconds after ready when changes stop: each has a p99 target's time to show."""
        return self.window - self.target - 1.0


SCENARIOS = {
    "A": Scenario("A", 1000, 50, 1.0, 15.0, per_network=16, prefix=22),
    "B": Scenario("B", 10000, 10, 10.0, 35.0, per_network=250, prefix=20),
}


@dataclass(frozen=True)
class Design:
    """One row: how the watching side watches, and which floor it is measured against."""

    label: str
    mode: str
    floor: str | None = None


#: Issue #21: ``watch_services()`` within this many times the plain floor's CPU.
PLAIN_FLOOR_GOAL = 1.5

DESIGNS = (
    Design("plain floor", "plain-floor"),
    Design("sync floor", "sync-floor"),
    Design("swarmdns.watch_services", "sync", "sync-floor"),
    Design("aio floor", "aio-floor"),
    Design("swarmdns.aio.watch_services", "aio", "aio-floor"),
    Design("old: aio.watch_tasks per service", "per-service", "aio-floor"),
)


@dataclass
class Run:
    """What one row measured (``error`` says why there is nothing else)."""

    error: str | None = None
    share: float = 0.0
    made: int = 0
    delays: list[float] = field(default_factory=list)
    spurious: int = 0
    answered: int = 0
    failed: int = 0
    usage: dict[str, Any] = field(default_factory=dict)
    ready_drops: int = 0
    fake_drops: int = 0
    udp_errors: int = 0
    scale_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0
    stderr: list[str] = field(default_factory=list)

    def percentile(self, fraction: float) -> float:
        """The delay at ``fraction`` (nearest rank) of those seen."""
        ordered = sorted(self.delays)
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def build_fleet(swarm: FakeSwarm, scenario: Scenario) -> None:
    """The scenario's dnsrr services on networks sized to fit, created in one batch."""
    size = 1 << (32 - scenario.prefix)
    base = int(IPv4Address("10.64.0.0"))
    with swarm.batch():
        for index in range(scenario.services):
            group, first = divmod(index, scenario.per_network)
            if not first:
                subnet = IPv4Network((base + group * size, scenario.prefix))
                swarm.create_network(f"net{group}", subnet=str(subnet))
            swarm.create_service(
                f"s{index}", scenario.tasks, network=f"net{group}", endpoint_mode="dnsrr"
            )


def udp_errors() -> int:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (all sockets)."""
    rows = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    names, values = (row for row in rows if row[0] == "Udp:")
    return int(values[names.index("RcvbufErrors")])


def make_changes(
    swarm: FakeSwarm,
    scenario: Scenario,
    ready: float,
    *,
    picks: Iterator[str],
    replicas: dict[str, int],
    run: Run,
) -> dict[str, float]:
    """Scale one service up by one every ``CHANGE_EVERY`` s; when each scale() was called."""
    changed: dict[str, float] = {}
    time.sleep(max(0.0, ready + SETTLE - time.monotonic()))
    stop = ready + scenario.changes_end
    due = time.monotonic()
    while due < stop:
        name = next(picks)
        replicas[name] = replicas.get(name, scenario.tasks) + 1
        called = time.monotonic()
        swarm.scale(name, replicas[name])
        changed[name] = called
        run.scale_seconds.append(time.monotonic() - called)
        due += CHANGE_EVERY
        time.sleep(max(0.0, due - time.monotonic()))
    return changed


def fleet_run(
    swarm: FakeSwarm,
    scenario: Scenario,
    design: Design,
    picks: Iterator[str],
    replicas: dict[str, int],
) -> Run:
    """One row: the watcher in its own process, the changes made here, what the fake saw."""
    run = Run()
    swarm.clear_queries()
    errors, fake_drops = udp_errors(), udp_sockets()["drops"]
    started = time.monotonic()
    arguments = [sys.executable, str(WATCHER), swarm.nameserver, str(scenario.services),
                 str(scenario.interval), str(scenario.window), design.mode]  # fmt: skip
    with tempfile.TemporaryFile("w+") as stderr:
        watcher = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            assert watcher.stdout is not None
            lines = iter(watcher.stdout)
            first = json.loads(next(lines, '{"error": "the watcher ended without a word"}'))
            if "error" in first:
                run.error = f"{first['error']} after {time.monotonic() - started:.0f} s"
                return run
            run.ready_drops = first["drops"]
            changed = make_changes(
                swarm, scenario, first["ready"], picks=picks, replicas=replicas, run=run
            )
            run.made = len(changed)
            for line in lines:
                record = json.loads(line)
                if "cpu" in record:
                    run.usage = record
                elif "error" in record:
                    run.error = f"{record['error']} after {time.monotonic() - started:.0f} s"
                elif record["service"] in changed and record["at"] >= changed[record["service"]]:
                    run.delays.append(record["at"] - changed.pop(record["service"]))
                else:
                    run.spurious += 1
            watcher.wait(60)
        finally:
            if watcher.poll() is None:
                watcher.terminate()  # the process this benchmark started, by its id
                watcher.wait(30)
            if watcher.stdout is not None:
                watcher.stdout.close()
            stderr.seek(0)
            run.stderr = stderr.read().splitlines()
    run.seconds = time.monotonic() - started
    if not run.usage:
        run.error = run.error or f"the watcher ended (status {watcher.returncode}) without its CPU"
        return run
    run.share = run.usage["cpu"] / run.usage["wall"]
    run.answered = swarm.count_queries()
    run.failed = sum(1 for query in swarm.queries if query.outcome.name != "NOERROR")
    run.fake_drops = udp_sockets()["drops"] - fake_drops
    run.udp_errors = udp_errors() - errors
    return run


def fleet_table(scenario: Scenario) -> list[str]:
    """Every design watching one scenario's fleet, against the same fake, one after another."""
    queries = int(scenario.services / scenario.interval * 1.2
                  * (startup_limit(scenario.interval) + scenario.window + 10))  # fmt: skip
    picks = (f"s{step * 7 % scenario.services}" for step in itertools.count())
    replicas: dict[str, int] = {}
    runs: dict[str, Run] = {}
    with FakeSwarm(query_log=queries) as swarm:
        built = time.monotonic()
        build_fleet(swarm, scenario)
        built = time.monotonic() - built
        for design in DESIGNS:
            module = {"sync": swarmdns, "aio": swarmdns.aio}.get(design.mode)
            if module is not None and not hasattr(module, "watch_services"):
                runs[design.mode] = Run(error=f"{module.__name__}.watch_services does not exist")
                continue
            runs[design.mode] = fleet_run(swarm, scenario, design, picks, replicas)
    rows = [
        f"### Scenario {scenario.label}: {scenario.services:,} services x {scenario.tasks} tasks,"
        f" interval {scenario.interval:g} s, a change every {CHANGE_EVERY:g} s,"
        f" window {scenario.window:g} s",
        "",
        "| design | CPU, share of one core | ratio to its floor | ratio to the plain floor |"
        " changes seen of made | p50 delay | p99 delay | p99 target | queries answered |"
        " not NOERROR |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    goals = []
    notes = [f"- fleet built in {built:.1f} s"]
    for design in DESIGNS:
        run = runs[design.mode]
        said = ""
        if run.stderr:
            said = (
                f"; it wrote {len(run.stderr)} lines on stderr, the last: {run.stderr[-1][:300]}"
            )
        if run.error is not None:
            notes.append(f"- {design.label}: left out{said}")
            rows.append(f"| {design.label} | left out: {run.error} | | | | | | | | |")
            continue
        floor = runs.get(design.floor or design.mode)
        ratio = "" if floor is None or floor.error else f"{run.share / floor.share:.2f}x"
        plain_floor = runs.get("plain-floor")
        to_plain = ""
        if plain_floor is not None and not plain_floor.error:
            to_plain = f"{run.share / plain_floor.share:.2f}x"
            if design.mode == "sync":
                share = run.share / plain_floor.share
                verdict = "met" if share <= PLAIN_FLOOR_GOAL else "NOT met"
                goals.append(
                    f"- {design.label}: {share:.2f}x the plain floor's CPU"
                    f" (goal: at most {PLAIN_FLOOR_GOAL:g}x): {verdict}"
                )
        seen = f"{len(run.delays)} of {run.made}"
        delays = "| |"
        if run.delays:
            delays = f"{run.percentile(0.5):.3f} s | {run.percentile(0.99):.3f} s"
        rows.append(
            f"| {design.label} | {run.share:.1%} | {ratio} | {to_plain} | {seen} | {delays} |"
            f" {scenario.target:.3f} s | {run.answered:,} | {run.failed} |"
        )
        sockets = run.usage["sockets"]
        counts = {key: run.usage[key] for key in ("sent", "timeouts", "late", "unusual")
                  if key in run.usage}  # fmt: skip
        scales = run.scale_seconds or [0.0]
        notes.append(
            f"- {design.label}: {run.seconds:.0f} s in all; the watcher's"
            f" {sockets['count']} open UDP socket(s) (SO_RCVBUF {sockets['rcvbuf']})"
            f" dropped {sockets['drops']} ({run.ready_drops} before ready), the fake's"
            f" {run.fake_drops}, UDP receive-buffer errors machine-wide {run.udp_errors}"
            + (f"; floor counts {counts}" if counts else "")
            + (f"; {run.spurious} change lines for services not changed" if run.spurious else "")
            + f"; scale() took {sum(scales) / len(scales) * 1e3:.1f} ms on average,"
            f" {max(scales) * 1e3:.1f} ms at most{said}"
        )
    return [*rows, "", *goals, *notes]


def fleet_section(labels: list[str]) -> None:
    """Print the fleet tables of the scenarios named (all by default)."""
    limits = [Path(f"/proc/sys/net/core/{name}").read_text().strip()
              for name in ("rmem_default", "rmem_max")]  # fmt: skip
    print("\n## Watching a fleet (issue #12)\n")
    print(
        "Each design watches from a process of its own, against the fake in this one."
        " CPU is the watcher's own (time.process_time) over the window, from the moment"
        " every initial set is in; delays run from the scale() call to the watcher's"
        f" line (CLOCK_MONOTONIC). Kernel rmem_default {limits[0]}, rmem_max {limits[1]}.\n"
    )
    for label in labels or list(SCENARIOS):
        print("\n".join(fleet_table(SCENARIOS[label])))
        print()


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


def main(arguments: list[str]) -> None:
    """Print every table; with ``lookups`` only the first, with ``fleet [A|B ...]`` the fleet's."""
    if arguments[:1] == ["fleet"]:
        unknown = [label for label in arguments[1:] if label not in SCENARIOS]
        if unknown:
            raise SystemExit(f"unknown scenario {unknown[0]!r}; one of {', '.join(SCENARIOS)}")
    elif arguments not in ([], ["lookups"]):
        raise SystemExit("usage: python -m tests.benchmarks [lookups | fleet [A|B ...]]")
    print(f"# swarmdns {swarmdns.__version__} benchmarks")
    print(f"Python {platform.python_version()} on {platform.machine()}, {platform.platform()}")
    if arguments[:1] == ["fleet"]:
        fleet_section(arguments[1:])
        return
    print(
        "\n## task_ips() against the alternatives"
        " (time per call, as a ratio to the raw round trip)\n"
    )
    print("\n".join(lookups_table()))
    if arguments:
        return
    print("\n## The fake server's throughput against dnslib's DNSServer\n")
    print("\n".join(fake_throughput_table()))
    fleet_section([])
    print("\n## Import time\n")
    print("\n".join(import_table()))


if __name__ == "__main__":
    main(sys.argv[1:])
