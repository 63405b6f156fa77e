"""A fleet with failing names: do the healthy ones keep their interval? (issue #22).

``python -m tests.benchmarks.starvation [SCENARIO ...] [--aio]`` watches a fleet
of ``FakeSwarm`` services (in this process) where some names misbehave, and
prints, over a window after start-up, from the fake's log of queries:

- the lookups a second of the healthy services, against what their interval asks;
- the longest any healthy service went without a lookup (its staleness);
- the lookups a second of the misbehaving names, and how long after the start
  the last healthy service was first asked;
- for names the engine does not own, the most forwards the engine held at once
  (each held until it answered: at once, or ``UPSTREAM_TIMEOUT`` for a silent
  upstream), and how late the watch saw one of them get tasks.

Scenarios: ``silent20`` and ``silent40`` (1,000 services at the defaults, 20 %
or 40 % of the names never answered), ``late30`` (200 services every 0.2 s,
30 % answered 3 s late, after the 2 s timeout), ``slow30`` (the same, answered
1 s late: within the timeout), ``disowned`` (400 services every 1 s, half of
them without tasks, behind an upstream that never answers, on engine 28.5),
``nxdomain`` (1,000 services every 1 s, half without tasks, behind an upstream
that answers NXDOMAIN at once).
Not collected by pytest; it takes about 40 s per scenario.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import swarmdns
import swarmdns.aio
from swarmdns.testing import Delay, FakeSwarm, Fault, Upstream
from swarmdns.testing._responder import UPSTREAM_TIMEOUT


@dataclass(frozen=True)
class Scenario:
    """A fleet and how some of its names misbehave."""

    services: int
    interval: float
    share: float  # of the names that misbehave
    fault: Fault | Delay | None  # None: the names have no tasks (forwarded)
    warm_up: float
    window: float = 20.0
    timeout: float = 2.0
    upstream: Upstream = Upstream.NO_REPLY  # for names without tasks


SCENARIOS = {
    "silent20": Scenario(1000, 2.0, 0.2, Fault.NO_REPLY, warm_up=15.0),
    "silent40": Scenario(1000, 2.0, 0.4, Fault.NO_REPLY, warm_up=35.0),
    "late30": Scenario(200, 0.2, 0.3, Delay(3.0), warm_up=10.0),
    "slow30": Scenario(200, 0.2, 0.3, Delay(1.0), warm_up=10.0),
    "disowned": Scenario(400, 1.0, 0.5, None, warm_up=20.0, window=40.0),
    "nxdomain": Scenario(
        1000, 1.0, 0.5, None, warm_up=10.0, window=20.0, upstream=Upstream.NXDOMAIN
    ),
}


def watch(
    nameserver: str, services: list[str], scenario: Scenario, aio: bool
) -> tuple[Callable[[], None], dict[str, float]]:
    """Watch ``services`` in a thread; returns how to stop, and when each first had tasks."""
    seen: dict[str, float] = {}
    stop = threading.Event()
    backend = swarmdns.DirectBackend([nameserver])
    options = {"interval": scenario.interval, "timeout": scenario.timeout, "backend": backend}

    def note(change: swarmdns.TaskSetChange) -> None:
        if change.current and change.service not in seen:
            seen[change.service] = time.monotonic()

    def run_sync() -> None:
        with swarmdns.FleetWatcher(services, on_change=note, **options):  # type: ignore[arg-type]
            stop.wait()

    async def run_aio() -> None:
        async with swarmdns.aio.watch_services(services, **options) as fleet:  # type: ignore[arg-type]
            while not stop.is_set():
                try:
                    change = await asyncio.wait_for(anext(fleet), 0.2)
                except TimeoutError:
                    continue
                note(change)

    thread = threading.Thread(
        target=(lambda: asyncio.run(run_aio())) if aio else run_sync, daemon=True
    )
    thread.start()

    def end() -> None:
        stop.set()
        thread.join(30)

    return end, seen


def measure(label: str, scenario: Scenario, aio: bool) -> list[str]:
    """Run one scenario; its lines of the report."""
    names = [f"s{n}" for n in range(scenario.services)]
    share = scenario.share
    bad = {name for n, name in enumerate(names) if int((n + 1) * share) > int(n * share)}
    kwargs = {}
    if scenario.fault is None:
        kwargs = {"engine": "28.5", "upstream": scenario.upstream}
    with FakeSwarm(query_log=2_000_000, **kwargs) as swarm:  # type: ignore[arg-type]
        with swarm.batch():
            swarm.create_network("fleet", subnet="10.64.0.0/16")
            for name in names:
                if scenario.fault is not None or name not in bad:
                    swarm.create_service(name, 1, network="fleet")
        if scenario.fault is not None:
            for name in bad:
                swarm.inject(scenario.fault, name=f"tasks.{name}")
        began = time.monotonic()
        end, seen = watch(swarm.nameserver, names, scenario, aio)
        try:
            time.sleep(scenario.warm_up)
            start = time.monotonic()
            comes_back = sorted(bad)[len(bad) // 2] if scenario.fault is None else None
            came_back_at = None
            if comes_back is not None:
                time.sleep(scenario.window / 4)
                came_back_at = time.monotonic()
                swarm.create_service(comes_back, 1, network="fleet")
            time.sleep(start + scenario.window - time.monotonic())
            stop = time.monotonic()
            log = swarm.queries
        finally:
            end()
    times: dict[str, list[float]] = defaultdict(list)
    for record in log:
        if record.name:
            times[record.name.lower().removeprefix("tasks.").rstrip(".")].append(record.received)
    healthy = [name for name in names if name not in bad]
    in_window = {n: [t for t in times[n] if start <= t < stop] for n in names}
    good_rate = sum(len(in_window[n]) for n in healthy) / (stop - start)
    bad_rate = sum(len(in_window[n]) for n in bad) / (stop - start)
    expected = len(healthy) / scenario.interval
    gaps = []
    for name in healthy:
        points = [start, *in_window[name], stop]
        gaps.append(max(b - a for a, b in itertools.pairwise(points)))
    gaps.sort()
    started = max(min(times[n], default=stop) for n in healthy) - began
    lines = [
        f"{label} ({'aio' if aio else 'sync'}): {scenario.services} services every"
        f" {scenario.interval} s, {len(bad)} misbehaving ({scenario.fault or 'no tasks'})",
        f"  healthy lookups: {good_rate:.0f}/s of {expected:.0f}/s asked;"
        f" longest without a lookup: {gaps[-1]:.2f} s (p99 {gaps[int(len(gaps) * 0.99)]:.2f} s)",
        f"  misbehaving names' lookups: {bad_rate:.0f}/s; every healthy service first"
        f" asked {started:.1f} s after the start",
    ]
    if scenario.fault is None:
        most = most_held(
            [t for n in bad if n != comes_back for t in times[n] if t < stop], start, stop
        )
        late = (
            f"{seen[comes_back] - came_back_at:.2f} s"
            if comes_back in seen and came_back_at is not None
            else "not seen"
        )
        held = f"forwards the engine held at once, at most: {most}; "
        if scenario.upstream is not Upstream.NO_REPLY:
            held = ""  # answered at once: held for no time
        lines.append(f"  {held}a service that got tasks was seen after {late}")
    return lines


def most_held(sent: list[float], start: float, stop: float) -> int:
    """The most forwards held at once between ``start`` and ``stop``, each held a silent
    upstream's ``UPSTREAM_TIMEOUT`` from when it was sent."""
    steps = sorted([(t, 1) for t in sent] + [(t + UPSTREAM_TIMEOUT, -1) for t in sent])
    held = most = 0
    for when, step in steps:
        held += step
        if start <= when < stop:
            most = max(most, held)
    return most


def main(arguments: list[str]) -> None:
    """Run the scenarios named (all by default); ``--aio`` for the asyncio twin."""
    logging.getLogger("swarmdns").setLevel(logging.ERROR)  # a warning per failing name
    aio = "--aio" in arguments
    labels = [a for a in arguments if a != "--aio"] or list(SCENARIOS)
    for label in labels:
        print("\n".join(measure(label, SCENARIOS[label], aio)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
