"""The watching side of the watch-scale benchmark (runs in its own process).

Follows services s0..s<N-1> in one asyncio loop (the watches start spread over
one interval, as replicas started together would drift apart), prints one
JSON line per change with the moment it arrived (CLOCK_MONOTONIC, which every
process on Linux shares), and, once every initial set is in, its own CPU time
over a window.

With ``floor`` as the last argument it runs the baseline instead: the same
coroutines on the same schedule, each exchanging prebuilt query bytes over a
socket of its own (``loop.sock_recv``), with no parsing and no watch logic.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sys
import time

import swarmdns
import swarmdns.aio
from swarmdns._backends import wire as _wire
from swarmdns._deadlines import within


async def main(
    nameserver: str, count: int, interval: float, window: float, *, floor: bool
) -> None:
    backend = swarmdns.DNSPythonBackend([nameserver])
    started = asyncio.Event()
    unsettled = set(range(count))

    def settled(index: int) -> None:
        """A watch has its first answer: once every one has, the window can start."""
        unsettled.discard(index)
        if not unsettled:
            started.set()

    async def follow(index: int) -> None:
        await asyncio.sleep(random.uniform(0, interval))
        async with swarmdns.aio.watch_tasks(
            f"s{index}", backend=backend, interval=interval
        ) as changes:
            await anext(changes)  # the initial set
            settled(index)
            async for change in changes:
                line = {"service": change.service, "at": time.monotonic()}
                print(json.dumps(line), flush=True)

    async def exchange_only(index: int) -> None:
        loop = asyncio.get_running_loop()
        host, port = nameserver.rsplit(":", 1)
        query = _wire.build_query(f"tasks.s{index}.", _wire.TYPE_A, index)
        await asyncio.sleep(random.uniform(0, interval))
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.connect((host, int(port)))
                sock.send(query)
                await within(loop.sock_recv(sock, 65535), 2)
            settled(index)
            await asyncio.sleep(interval * random.uniform(0.9, 1.1))

    each = exchange_only if floor else follow
    watches = [asyncio.create_task(each(i)) for i in range(count)]
    await started.wait()
    print(json.dumps({"ready": time.monotonic()}), flush=True)
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.sleep(window)
    usage = {"cpu": time.process_time() - cpu, "wall": time.monotonic() - wall}
    print(json.dumps(usage), flush=True)
    for watch in watches:
        watch.cancel()
    await asyncio.gather(*watches, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(
        main(
            sys.argv[1],
            int(sys.argv[2]),
            float(sys.argv[3]),
            float(sys.argv[4]),
            floor=sys.argv[5:] == ["floor"],
        )
    )
