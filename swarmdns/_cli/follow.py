"""The main thread of ``watch``: print the watch's changes and health events, in order.

The library tells when a service's lookups start failing and when they work
again, and when a change is held and when the hold ends (``on_health``), and
ends the watch itself after ``--fail-after`` (on the monotonic clock); this
module only prints what it is told.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections.abc import Callable, Iterator
from typing import NoReturn, TextIO

from .._actions.report import ActionEvent
from .._errors import SwarmDNSError, WatchTimeout
from .._values import (
    ChangeHeld,
    HealthEvent,
    HoldReleased,
    LookupsFailing,
    LookupsRecovered,
    TaskSetChange,
)
from .._watcher import FleetWatcher
from .common import change_line, clock, stamp


class Ended:
    """Put in the queue once the watch has ended (``FleetWatcher.error`` says why)."""


#: What the main thread of ``watch`` is handed, in the order it happened. None:
#: the reader of the output went away; an exception: acting failed.
Item = TaskSetChange | HealthEvent | ActionEvent | Ended | BaseException | str | None


def action_line(event: ActionEvent) -> str:
    """The JSON line for what an action did (``watch --json`` with actions)."""
    fields = event.to_json()
    return json.dumps({"event": fields.pop("event"), "at": stamp(event.at), **fields})


def failure_line(failing: LookupsFailing, as_json: bool) -> str:
    """The line for a service's first failed lookup, stamped with when it ended."""
    service, at, error = failing.service, failing.observed_at, failing.error
    if as_json:
        return json.dumps(
            {"event": "failure", "at": stamp(at), "service": service, "error": str(error)}
        )
    return f"{clock(at)} {service} lookups failing: {error}"


def recovery_line(recovered: LookupsRecovered, as_json: bool) -> str:
    """The line for a service's first good lookup after failures, with how long they lasted."""
    service, at, failed_for = recovered.service, recovered.observed_at, recovered.failed_for
    if as_json:
        return json.dumps(
            {
                "event": "recovery",
                "at": stamp(at),
                "service": service,
                "failed_for": round(failed_for, 3),
            }
        )
    return f"{clock(at)} {service} lookups work again after {failed_for:.1f} s"


def held_line(held: ChangeHeld, as_json: bool) -> str:
    """The line for a change held: why, and what the answer held would remove and leave."""
    service, at = held.service, held.observed_at
    if as_json:
        return json.dumps(
            {
                "event": "held",
                "at": stamp(at),
                "service": service,
                "reason": held.reason,
                "removed": sorted(str(ip) for ip in held.removed),
                "tasks": [str(ip) for ip in held.tasks],
            }
        )
    removed = " ".join(f"-{ip}" for ip in sorted(held.removed))
    left = " ".join(str(ip) for ip in held.tasks) or "(none)"
    return f"{clock(at)} {service} change held, {held.reason}: {removed} would leave: {left}"


def released_line(released: HoldReleased, as_json: bool) -> str:
    """The line for the end of a hold: how long it lasted, and how it ended."""
    service, at, held_for = released.service, released.observed_at, released.held_for
    if as_json:
        return json.dumps(
            {
                "event": "released",
                "at": stamp(at),
                "service": service,
                "held_for": round(held_for, 3),
                "expired": released.expired,
            }
        )
    how = "the answer held is reported" if released.expired else "the answer is believed again"
    return f"{clock(at)} {service} hold ends after {held_for:.1f} s: {how}"


@contextlib.contextmanager
def running(fleet: FleetWatcher, tell: Callable[[Ended], object]) -> Iterator[None]:
    """Run ``fleet``; ``tell`` an ``Ended`` once it ends, stopped or not.

    A watch that ends by itself (``--fail-after``, a bad configuration)
    calls no callback: a thread waits for its end, so that the main thread
    wakes at once.
    """

    def wait() -> None:
        while fleet.wait_for_change():
            pass
        tell(Ended())

    fleet.start()
    thread = threading.Thread(target=wait, name="swarmdns-watch-end", daemon=True)
    thread.start()
    try:
        yield
    finally:
        fleet.stop()
        thread.join()


class Follow:
    """The main thread of ``watch``: print each change and health event as it comes."""

    def __init__(
        self,
        fleet: FleetWatcher,
        out: TextIO,
        *,
        fail_after: float | None,
        as_json: bool,
        named: bool,
    ) -> None:
        self._fleet = fleet
        self._out = out
        self._fail_after = fail_after
        self._json = as_json
        self._named = named

    def run(self, items: queue.Queue[Item]) -> NoReturn:
        """Print what ``items`` brings, until the watch ends or the output's reader leaves."""
        while True:
            item = items.get()
            if item is None:
                raise BrokenPipeError("the reader of the output went away")
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, Ended):
                self._ended()
            if isinstance(item, str):  # a render printed (--render TEMPLATE:-), as it is
                self._out.write(item)
                self._out.flush()
                continue
            if isinstance(item, ActionEvent):  # only with --json
                self._say(action_line(item))
                continue
            self._say(self._line(item))

    def say_actions(self, items: queue.Queue[Item]) -> None:
        """Print the action events still in ``items`` once the watch has stopped.

        Such as a command's ``stopped`` and the program's ``exited``; nothing
        once the reader of the output has gone.
        """
        while True:
            try:
                item = items.get_nowait()
            except queue.Empty:
                return
            if item is None:
                return
            if isinstance(item, ActionEvent):
                self._say(action_line(item))

    def _line(self, item: TaskSetChange | HealthEvent) -> str:
        if isinstance(item, LookupsFailing):
            return failure_line(item, self._json)
        if isinstance(item, LookupsRecovered):
            return recovery_line(item, self._json)
        if isinstance(item, ChangeHeld):
            return held_line(item, self._json)
        if isinstance(item, HoldReleased):
            return released_line(item, self._json)
        return change_line(item, self._json, named=self._named)

    def _say(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    def _ended(self) -> NoReturn:
        error = self._fleet.error
        if isinstance(error, WatchTimeout):
            raise self._timed_out(error)
        if isinstance(error, SwarmDNSError):
            raise error
        raise SwarmDNSError(f"the watch ended unexpectedly: {error!r}")

    def _timed_out(self, error: WatchTimeout) -> WatchTimeout:
        """The library's ``WatchTimeout`` in the words of the command line's options.

        As it is if it does not say which service, or for how long.
        """
        if error.service is None or error.failed_for is None or self._fail_after is None:
            return error
        timeout = WatchTimeout(
            f"no successful lookup of {error.service!r} for {error.failed_for:.1f} s,"
            f" longer than --fail-after {self._fail_after:g}; the last error:"
            f" {error.last_error}",
            name=(error.name or "").rstrip(".") or None,
            last_error=error.last_error,
            service=error.service,
            failed_for=error.failed_for,
        )
        timeout.__cause__ = error
        return timeout
