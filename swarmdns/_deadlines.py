"""Waiting for an awaitable with a time limit, as cheaply as the running Python allows."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class Overrun(Exception):
    """The awaitable did not finish within its time (and was cancelled)."""


if sys.version_info >= (3, 11):

    async def within(awaitable: Awaitable[T], seconds: float) -> T:
        """Await ``awaitable``, cancelling it after ``seconds``: then raise ``Overrun``.

        A ``TimeoutError`` the awaitable raises itself passes through as it is.
        """
        scope = asyncio.timeout(seconds)  # no extra task, unlike wait_for()
        try:
            async with scope:
                return await awaitable
        except TimeoutError:
            if scope.expired():
                raise Overrun from None
            raise

else:  # pragma: no cover - Python 3.10

    async def within(awaitable: Awaitable[T], seconds: float) -> T:
        """Await ``awaitable``, cancelling it after ``seconds``: then raise ``Overrun``."""
        task = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait({task}, timeout=seconds)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if not done:
            raise Overrun
        return task.result()
