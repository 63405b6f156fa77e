"""The watching side of the watch-scale benchmark (runs in its own process).

Follows services s0..s<N-1> in one asyncio loop (the watches start spread over
one interval, as replicas started together would drift apart), prints one
JSON line per change with the moment it arrived (CLOCK_MONOTONIC, which every
process on Linux shares), and, once every initial set is in, its own CPU time
over a window.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

import swarmdns
import swarmdns.aio


async def main(nameserver: str, count: int, interval: float, window: float) -> None:
    backend = swarmdns.DNSPythonBackend([nameserver])
    started = asyncio.Event()
    pending = count

    async def follow(index: int) -> None:
        nonlocal pending
        await asyncio.sleep(random.uniform(0, interval))
        first = True
        async with swarmdns.aio.watch_tasks(
            f"s{index}", backend=backend, interval=interval
        ) as changes:
            async for change in changes:
                if first:
                    first = False
                    pending -= 1
                    if not pending:
                        started.set()
                    continue
                line = {"service": change.service, "at": time.monotonic()}
                print(json.dumps(line), flush=True)

    watches = [asyncio.create_task(follow(i)) for i in range(count)]
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
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])))
