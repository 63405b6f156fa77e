"""Time limits: checked numbers of seconds, deadlines, and waiting within one."""

from __future__ import annotations

import asyncio
import math

import pytest

from swarmdns._deadlines import Deadline, Overrun, seconds, within


def test_deadline_counts_down_on_its_clock() -> None:
    now = [100.0]
    deadline = Deadline(2.0, clock=lambda: now[0])

    now[0] = 101.5
    assert (deadline.remaining(), deadline.passed()) == (0.5, False)
    now[0] = 103.0
    assert (deadline.remaining(), deadline.passed()) == (0.0, True)
    assert deadline.timeout == 2.0


@pytest.mark.parametrize("value", [0, -1, math.inf, math.nan])
def test_seconds_must_be_positive_and_finite(value: float) -> None:
    with pytest.raises(ValueError, match=r"interval must be a positive, finite number"):
        seconds("interval", value)


@pytest.mark.parametrize("value", ["1", None, True])
def test_seconds_must_be_a_number(value: object) -> None:
    with pytest.raises(TypeError, match="fail_after must be a number of seconds"):
        seconds("fail_after", value)


def test_a_deadline_names_its_bad_timeout() -> None:
    with pytest.raises(ValueError, match=r"^timeout must be"):
        Deadline(0)


def test_within_cuts_off_and_lets_own_timeouts_through() -> None:
    async def hang() -> None:
        await asyncio.sleep(3600)

    async def own_timeout() -> None:
        raise TimeoutError("its own")

    with pytest.raises(Overrun):
        asyncio.run(within(hang(), 0.01))
    with pytest.raises(TimeoutError, match="its own"):
        asyncio.run(within(own_timeout(), 1))
    assert asyncio.run(within(asyncio.sleep(0, "done"), 1)) == "done"
