"""The fleet drivers' loops: they wait when there is nothing they may do.

With every place for a query in flight taken (a silent nameserver: every
lookup is doubtful, and may take only ``DOUBTFUL_IN_FLIGHT`` places), lookups
that are due must wait for an answer or a timeout; a loop that woke for them
would spin at full speed until the timeouts. Counting the loop's turns
catches that without timing anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import swarmdns
import swarmdns.aio
from swarmdns import _async, _sync
from swarmdns._fleet import DOUBTFUL_IN_FLIGHT
from swarmdns.testing import FakeSwarm, Fault

SERVICES = [f"s{n}" for n in range(DOUBTFUL_IN_FLIGHT * 4)]
#: Each batch of queries times out together and frees room for the next, so a
#: loop that only wakes for what it can do turns a few times per timeout. One
#: that spun while waiting would turn tens of thousands of times.
MOST_TURNS = 200


def counting(owner: type, name: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the calls of ``owner.name`` (a method)."""
    calls = [0]
    original: Callable[..., Any] = getattr(owner, name)

    def counted(self: object, *args: Any) -> Any:
        calls[0] += 1
        return original(self, *args)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_the_sync_loop_waits_while_every_slot_is_taken(
    swarm_dns: FakeSwarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    swarm_dns.inject(Fault.NO_REPLY)
    turns = counting(_sync._SocketDriver, "_step", monkeypatch)
    backend = swarmdns.DirectBackend([swarm_dns.nameserver])

    fleet = swarmdns.watch_services(SERVICES, backend=backend, interval=0.05, timeout=0.3)
    with fleet, pytest.raises(swarmdns.NotEnoughTasks):
        fleet.wait_for_tasks("s0", 1, timeout=0.7)  # two rounds of timeouts

    assert swarm_dns.count_queries() >= 2 * DOUBTFUL_IN_FLIGHT
    assert turns[0] < MOST_TURNS


def test_the_async_loop_waits_while_every_slot_is_taken(
    swarm_dns: FakeSwarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    swarm_dns.inject(Fault.NO_REPLY)
    turns = counting(_async._AsyncFleetDriver, "_tick", monkeypatch)
    backend = swarmdns.DirectBackend([swarm_dns.nameserver])

    async def main() -> None:
        fleet = swarmdns.aio.watch_services(SERVICES, backend=backend, interval=0.05, timeout=0.3)
        async with fleet:
            with pytest.raises(swarmdns.NotEnoughTasks):
                await fleet.wait_for_tasks("s0", 1, timeout=0.7)

    asyncio.run(main())
    assert swarm_dns.count_queries() >= 2 * DOUBTFUL_IN_FLIGHT
    assert turns[0] < MOST_TURNS


def test_waking_the_async_loop_does_not_leave_timers_behind(
    swarm_dns: FakeSwarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    swarm_dns.create_service("s0", replicas=1)
    turns = counting(_async._AsyncFleetDriver, "_tick", monkeypatch)
    backend = swarmdns.DirectBackend([swarm_dns.nameserver])
    wakes = 100

    async def main() -> None:
        fleet = swarmdns.aio.watch_services(["s0"], backend=backend, interval=0.05)
        async with fleet:
            await anext(fleet)
            loop = asyncio.get_running_loop()
            for n in range(wakes):  # each add() of a service already watched only wakes it
                loop.call_later(0.001 * n, fleet.add, "s0")
            with pytest.raises(swarmdns.NotEnoughTasks):
                await fleet.wait_for_tasks("s0", 2, timeout=0.5)

    asyncio.run(main())
    # About one turn per lookup (ten in 0.5 s) and one per wake-up; a timer left
    # behind by each wake-up would make every later lookup turn once per wake-up.
    assert turns[0] < 3 * wakes
