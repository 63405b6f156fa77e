"""The watching side of the fleet benchmark (runs in a process of its own).

``watcher.py NAMESERVER COUNT INTERVAL WINDOW MODE`` watches services
s0..s<COUNT-1> every INTERVAL seconds, one of six ways (MODE):

- ``plain-floor``: the plainest: one thread, one connected non-blocking UDP
  socket, prebuilt queries sent on schedule, each answer's records compared
  as a frozenset of their bytes with the last one. No watch logic, no
  addresses.
- ``sync-floor``: one thread, one unconnected non-blocking UDP socket, a
  selector loop that sends prebuilt queries on schedule and reads each reply's
  addresses into a set of ints. No watch logic.
- ``sync``: ``swarmdns.watch_services()``.
- ``aio-floor``: the sync floor's work on one asyncio datagram endpoint,
  scheduled with ``loop.call_at``/``call_later``.
- ``aio``: ``swarmdns.aio.watch_services()``.
- ``per-service``: one ``swarmdns.aio.watch_tasks()`` per service in one loop,
  each starting at a random moment within one interval (the old design).

The floors (and the per-service watches) start each service at a random
moment within one interval, and the floors send the next query
``interval * uniform(0.9, 1.1)`` after a reply. It prints JSON lines:
``{"ready": t, "drops": n}`` once every service's initial set is in (n: the
datagrams its sockets dropped so far), ``{"service": name, "at": t}`` per
change after that (t is CLOCK_MONOTONIC, which every process on Linux
shares), then its CPU time over ``WINDOW`` seconds from ready, with what it
knows of lost datagrams, and ends.
If the initial sets are not all in by ``startup_limit()``, it prints
``{"error": ...}`` and ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import os
import random
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Set
from pathlib import Path
from typing import Any

import swarmdns
import swarmdns.aio
from swarmdns._backends import wire

MODES = ("plain-floor", "sync-floor", "sync", "aio-floor", "aio", "per-service")
#: The floors send a query again when no reply came within this many seconds.
FLOOR_TIMEOUT = 2.0
#: How often the floors look for queries that timed out.
SWEEP = 0.25
_OPT_SIZE = 11  # the OPT record at the end of every query build_query() makes
_RCODE_OR_TC = 0x020F


def startup_limit(interval: float) -> float:
    """Seconds from start-up within which every initial set must be in."""
    return 3 * interval + 30


def udp_sockets() -> dict[str, Any]:
    """This process's open UDP sockets: datagrams the kernel dropped, and receive buffers.

    Linux only: sockets are matched by inode between ``/proc/self/fd`` and
    ``/proc/self/net/udp``; those already closed are not counted.
    """
    descriptors: dict[int, int] = {}
    for entry in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{entry}")
        except OSError:
            continue
        if link.startswith("socket:["):
            descriptors[int(link[8:-1])] = int(entry)
    drops, buffers = 0, []
    for table in ("/proc/self/net/udp", "/proc/self/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            descriptor = descriptors.get(int(fields[9]))
            if descriptor is None:
                continue
            drops += int(fields[-1])
            with socket.fromfd(descriptor, socket.AF_INET, socket.SOCK_DGRAM) as duplicate:
                buffers.append(duplicate.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    return {"drops": drops, "rcvbuf": sorted(set(buffers)), "count": len(buffers)}


class Output:
    """JSON lines on stdout, from any thread; the window's CPU and wall time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cpu = 0.0
        self._wall = 0.0

    def emit(self, record: dict[str, Any]) -> None:
        """Print one JSON line and flush it."""
        line = json.dumps(record) + "\n"
        with self._lock:
            sys.stdout.write(line)
            sys.stdout.flush()

    def ready(self) -> float:
        """Every initial set is in: say so and start the window; returns the moment."""
        now = time.monotonic()
        self.emit({"ready": now, "drops": udp_sockets()["drops"]})
        self._cpu, self._wall = time.process_time(), time.monotonic()
        return now

    def change(self, service: str) -> None:
        """A later change of ``service``, now."""
        self.emit({"service": service, "at": time.monotonic()})

    def usage(self, **extra: Any) -> None:
        """The window is over: its CPU and wall time, and what is known of lost datagrams."""
        cpu, wall = time.process_time() - self._cpu, time.monotonic() - self._wall
        self.emit({"cpu": cpu, "wall": wall, "sockets": udp_sockets(), **extra})

    def give_up(self, settled: int, count: int) -> None:
        """Not every initial set came in in time: say so and end the process at once."""
        self.fail(f"only {settled} of {count} initial sets in")

    def fail(self, error: str) -> None:
        """Say what went wrong and end the process at once."""
        self.emit({"error": error})
        os._exit(1)

    def watch_ended(self, watch: asyncio.Task[None]) -> None:
        """A watch's task ended: if by an exception, that ends the process."""
        if not watch.cancelled() and watch.exception() is not None:
            self.fail(f"{type(watch.exception()).__name__}: {watch.exception()}")


class FloorState:
    """What both floors keep: prebuilt queries, where each answer starts, the sets seen.

    Args:
        count: How many services (s0..s<count-1>); a service's query ID is its index.
        output: Where change lines go.
    """

    def __init__(self, count: int, output: Output) -> None:
        self.queries = [wire.build_query(f"tasks.s{i}.", wire.TYPE_A, i) for i in range(count)]
        self.names = [f"s{i}" for i in range(count)]
        self.known: list[Set[object] | None] = [None] * count
        self.waiting: dict[int, float] = {}  # index: when sent, oldest first
        self.unsettled = count
        self.output = output
        self.counts = {"sent": 0, "timeouts": 0, "late": 0, "unusual": 0}
        self._layouts: dict[tuple[int, int], tuple[int, struct.Struct]] = {}

    def sent(self, index: int, now: float) -> None:
        """A query went out (or was meant to: a lost one times out all the same)."""
        self.waiting[index] = now
        self.counts["sent"] += 1

    def timed_out(self, now: float) -> list[int]:
        """The services whose query went unanswered for ``FLOOR_TIMEOUT`` seconds."""
        expired = []
        for index, sent in self.waiting.items():
            if sent > now - FLOOR_TIMEOUT:
                break
            expired.append(index)
        for index in expired:
            del self.waiting[index]
        self.counts["timeouts"] += len(expired)
        return expired

    def received(self, data: bytes) -> tuple[int, bool] | None:
        """Read a reply: its service and whether that service's initial set just came in.

        None for a datagram that is no reply awaited (late, after a timeout).
        """
        index = data[0] << 8 | data[1]
        if self.waiting.pop(index, None) is None:
            self.counts["late"] += 1
            return None
        seen = self.read(index, data)
        if seen is None:
            self.counts["unusual"] += 1
            return index, False
        previous = self.known[index]
        self.known[index] = seen
        if previous is None:
            self.unsettled -= 1
            return index, True
        if seen != previous:
            self.output.change(self.names[index])
        return index, False

    def read(self, index: int, data: bytes) -> Set[object] | None:
        """The set of addresses the answer to service ``index`` holds; None if unusual."""
        start = len(self.queries[index]) - _OPT_SIZE
        count = data[6] << 8 | data[7]
        key = (start, count)
        layout = self._layouts.get(key)
        if layout is None:
            # The fake writes every owner out: the question's name, then 14 bytes.
            size = start - 12 - 4 + 14
            layout = (start + size * count, struct.Struct("!" + f"{size - 4}xI" * count))
            self._layouts[key] = layout
        if (data[2] << 8 | data[3]) & _RCODE_OR_TC or len(data) != layout[0]:
            return None
        return set(layout[1].unpack_from(data, start))


class PlainFloorState(FloorState):
    """The plain floor's reading: each answer's records as a frozenset of their bytes."""

    def read(self, index: int, data: bytes) -> Set[object] | None:
        """The records of the answer to service ``index``, as bytes, each once."""
        start = len(self.queries[index]) - _OPT_SIZE
        size = start - 12 - 4 + 14  # the fake writes every owner out
        ends = range(start, len(data), size)
        return frozenset(data[offset : offset + size] for offset in ends)


def sync_floor(
    host: str, port: int, count: int, interval: float, window: float, *, plain: bool = False
) -> None:
    """The sync floor: one thread, one socket, one selector loop.

    ``plain``: the plain floor, whose socket is connected and whose answers
    are compared as sets of records' bytes.
    """
    output = Output()
    state = (PlainFloorState if plain else FloorState)(count, output)
    server = (host, port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)

    def send_to_server(query: bytes) -> object:
        return sock.sendto(query, server)

    if plain:
        sock.connect(server)
    send: Callable[[bytes], object] = sock.send if plain else send_to_server
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    started = time.monotonic()
    due = [(started + random.uniform(0, interval), index) for index in range(count)]
    heapq.heapify(due)
    next_sweep = started + SWEEP
    end = started + startup_limit(interval)
    ready = False
    while True:
        now = time.monotonic()
        if now >= end:
            break
        while due and due[0][0] <= now:
            index = heapq.heappop(due)[1]
            with contextlib.suppress(BlockingIOError):  # then it times out
                send(state.queries[index])
            state.sent(index, now)
        if now >= next_sweep:
            next_sweep = now + SWEEP
            for index in state.timed_out(now):
                heapq.heappush(due, (now, index))
        wake = min(due[0][0] if due else end, next_sweep, end)
        if not selector.select(max(0.0, wake - now)):
            continue
        now = time.monotonic()
        while True:
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                break
            read = state.received(data)
            if read is None:
                continue
            index, settled = read
            heapq.heappush(due, (now + interval * random.uniform(0.9, 1.1), index))
            if settled and not state.unsettled:
                end = output.ready() + window
                ready = True
    if not ready:
        output.give_up(count - state.unsettled, count)
    output.usage(**state.counts)
    selector.close()
    sock.close()


def sync_watch(nameserver: str, count: int, interval: float, window: float) -> None:
    """``swarmdns.watch_services()``; a timer ends the window and interrupts the iteration."""
    output = Output()
    seen: set[str] = set()
    main = threading.main_thread().ident
    assert main is not None

    def finish() -> None:
        output.usage()
        signal.pthread_kill(main, signal.SIGINT)

    watchdog = threading.Timer(startup_limit(interval), lambda: output.give_up(len(seen), count))
    watchdog.daemon = True
    watchdog.start()
    names = [f"s{index}" for index in range(count)]
    backend = swarmdns.DirectBackend([nameserver])
    try:
        with swarmdns.watch_services(names, backend=backend, interval=interval) as watch:
            for event in watch:
                if event.service in seen:
                    output.change(event.service)
                    continue
                seen.add(event.service)
                if len(seen) == count:
                    watchdog.cancel()
                    output.ready()
                    timer = threading.Timer(window, finish)
                    timer.daemon = True
                    timer.start()
    except KeyboardInterrupt:
        pass  # the window is over
    except Exception as error:
        output.fail(f"{type(error).__name__}: {error}")


class FloorProtocol(asyncio.DatagramProtocol):
    """Hands every datagram on to a callback."""

    def __init__(self, received: Callable[[bytes], None]) -> None:
        self.received = received

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        """Pass the datagram on."""
        self.received(data)

    def error_received(self, exc: Exception) -> None:
        """Ignore it: the query times out."""


async def aio_floor(host: str, port: int, count: int, interval: float, window: float) -> None:
    """The asyncio floor: one datagram endpoint, a timer per service."""
    loop = asyncio.get_running_loop()
    output = Output()
    state = FloorState(count, output)
    server = (host, port)
    ready = asyncio.Event()

    def send(index: int) -> None:
        if transport.is_closing():
            return  # the window is over
        transport.sendto(state.queries[index], server)
        state.sent(index, loop.time())

    def received(data: bytes) -> None:
        read = state.received(data)
        if read is None:
            return
        index, settled = read
        loop.call_later(interval * random.uniform(0.9, 1.1), send, index)
        if settled and not state.unsettled:
            ready.set()

    def sweep() -> None:
        for index in state.timed_out(loop.time()):
            send(index)
        loop.call_later(SWEEP, sweep)

    transport, _ = await loop.create_datagram_endpoint(
        lambda: FloorProtocol(received), local_addr=("127.0.0.1", 0)
    )
    started = loop.time()
    for index in range(count):
        loop.call_at(started + random.uniform(0, interval), send, index)
    loop.call_later(SWEEP, sweep)
    try:
        await asyncio.wait_for(ready.wait(), startup_limit(interval))
    except asyncio.TimeoutError:
        output.give_up(count - state.unsettled, count)
    output.ready()
    await asyncio.sleep(window)
    output.usage(**state.counts)
    transport.close()


async def aio_watch(nameserver: str, count: int, interval: float, window: float) -> None:
    """``swarmdns.aio.watch_services()``."""
    output = Output()
    ready = asyncio.Event()
    seen: set[str] = set()

    async def follow() -> None:
        names = [f"s{index}" for index in range(count)]
        backend = swarmdns.DirectBackend([nameserver])
        async with swarmdns.aio.watch_services(names, backend=backend, interval=interval) as w:
            async for event in w:
                if event.service in seen:
                    output.change(event.service)
                    continue
                seen.add(event.service)
                if len(seen) == count:
                    ready.set()

    watches = [asyncio.create_task(follow())]
    await _run_window(
        output, watches, ready=ready, seen=seen, count=count, interval=interval, window=window
    )


async def per_service(nameserver: str, count: int, interval: float, window: float) -> None:
    """One ``swarmdns.aio.watch_tasks()`` per service, in one loop (the old design)."""
    output = Output()
    ready = asyncio.Event()
    seen: set[str] = set()
    backend = swarmdns.DirectBackend([nameserver])

    async def follow(index: int) -> None:
        await asyncio.sleep(random.uniform(0, interval))
        async with swarmdns.aio.watch_tasks(
            f"s{index}", backend=backend, interval=interval
        ) as changes:
            async for change in changes:
                if change.service in seen:
                    output.change(change.service)
                    continue
                seen.add(change.service)
                if len(seen) == count:
                    ready.set()

    watches = [asyncio.create_task(follow(index)) for index in range(count)]
    await _run_window(
        output, watches, ready=ready, seen=seen, count=count, interval=interval, window=window
    )


async def _run_window(
    output: Output,
    watches: list[asyncio.Task[None]],
    *,
    ready: asyncio.Event,
    seen: set[str],
    count: int,
    interval: float,
    window: float,
) -> None:
    """Wait for every initial set, then measure a window; then end the watches."""
    for watch in watches:
        watch.add_done_callback(output.watch_ended)
    try:
        await asyncio.wait_for(ready.wait(), startup_limit(interval))
    except asyncio.TimeoutError:
        output.give_up(len(seen), count)
    output.ready()
    await asyncio.sleep(window)
    output.usage()
    for watch in watches:
        watch.cancel()
    await asyncio.gather(*watches, return_exceptions=True)


def main(arguments: list[str]) -> None:
    """Run one mode: ``NAMESERVER COUNT INTERVAL WINDOW MODE``."""
    nameserver, count, interval, window, mode = arguments
    host, port = nameserver.rsplit(":", 1)
    numbers = (int(count), float(interval), float(window))
    if mode == "plain-floor":
        sync_floor(host, int(port), *numbers, plain=True)
    elif mode == "sync-floor":
        sync_floor(host, int(port), *numbers)
    elif mode == "sync":
        sync_watch(nameserver, *numbers)
    elif mode == "aio-floor":
        asyncio.run(aio_floor(host, int(port), *numbers))
    elif mode == "aio":
        asyncio.run(aio_watch(nameserver, *numbers))
    elif mode == "per-service":
        asyncio.run(per_service(nameserver, *numbers))
    else:
        raise SystemExit(f"unknown mode {mode!r}; one of {', '.join(MODES)}")


if __name__ == "__main__":
    main(sys.argv[1:])
