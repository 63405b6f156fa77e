"""Time limits: checking a number of seconds, the moment a limit runs out, and waiting within one.

One vocabulary for every limit: a *timeout* is a number of seconds given by
the caller (checked by ``seconds()``: more than zero, at most a day, the
bound of every duration swarmdns takes), a ``Deadline`` is the moment it runs
out, and ``within()`` awaits something no longer than that.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


#: The longest duration swarmdns takes, in seconds: a day. Every timeout, interval,
#: ``fail_after`` and wait is at most this long, so that none overflows what it is
#: handed to (an epoll wait in milliseconds in a C int stops at 24.8 days) or is
#: accepted only to fail later; nothing swarmdns waits for needs longer. Where
#: "no limit" makes sense, None says it (``fail_after``, a watcher's waits).
MAX_SECONDS = 86_400.0


def seconds(name: str, value: object, *, zero: bool = False) -> float:
    """Return ``value`` as a positive number of seconds, at most ``MAX_SECONDS`` (a day).

    Args:
        name: What the value is called, for the error.
        value: The number to check.
        zero: Take zero too (a wait that does not wait).

    Raises:
        TypeError: ``value`` is not a number.
        ValueError: It is zero (unless ``zero``), negative, NaN, or more than a day.
    """
    if type(value) is float and 0.0 < value <= MAX_SECONDS:
        return value  # the usual case, checked at the cost of a lookup's every deadline
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {shown(value)}")
    if not (value >= 0 if zero else value > 0) or not value <= MAX_SECONDS:  # NaN fails both
        what = (
            "zero or more seconds, and finite" if zero else "a positive, finite number of seconds"
        )
        raise ValueError(
            f"{name} must be {what}, at most a day ({MAX_SECONDS:.0f}), not {shown(value)}"
        )
    return float(value)


def shown(value: object) -> str:
    """``repr(value)`` for an error message, which a huge integer does not overflow.

    Python refuses to write out an integer of more than 4,300 digits; the
    message gives its size instead.
    """
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)


class Deadline:
    """The moment a timeout of ``timeout`` seconds, starting now, runs out.

    Args:
        timeout: The seconds allowed, checked with ``seconds()``.
        name: What the timeout is called, for the error a bad value raises.
        clock: Monotonic seconds.
    """

    __slots__ = ("_clock", "_end", "timeout")

    def __init__(
        self,
        timeout: float,
        *,
        name: str = "timeout",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = seconds(name, timeout)
        self._clock = clock
        self._end = clock() + self.timeout

    def __repr__(self) -> str:
        return f"<Deadline of {self.timeout:g} s, {self.remaining():.3g} s left>"

    def remaining(self) -> float:
        """Seconds left, never below zero."""
        return max(0.0, self._end - self._clock())

    def passed(self) -> bool:
        """Whether no time is left."""
        return self._clock() >= self._end

    def sooner(self, budget: float) -> Deadline:
        """This deadline, or one ``budget`` seconds from now if that comes first."""
        if self.remaining() <= budget:
            return self
        return Deadline(budget, clock=self._clock)


class Overrun(Exception):
    """The awaitable did not finish within its time (and was cancelled)."""


if sys.version_info >= (3, 11):

    async def within(awaitable: Awaitable[T], limit: float) -> T:
        """Await ``awaitable``, cancelling it after ``limit`` seconds: then raise ``Overrun``.

        A ``TimeoutError`` the awaitable raises itself passes through as it is.
        """
        import asyncio  # noqa: PLC0415 - asyncio only for asyncio users: it is slow to import

        scope = asyncio.timeout(limit)  # no extra task, unlike wait_for()
        try:
            async with scope:
                return await awaitable
        except TimeoutError:
            if scope.expired():
                raise Overrun from None
            raise

else:  # pragma: no cover - Python 3.10

    async def within(awaitable: Awaitable[T], limit: float) -> T:
        """Await ``awaitable``, cancelling it after ``limit`` seconds: then raise ``Overrun``."""
        import asyncio  # noqa: PLC0415 - asyncio only for asyncio users: it is slow to import

        task = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait({task}, timeout=limit)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if not done:
            raise Overrun
        return task.result()
