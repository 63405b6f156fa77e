"""The main thread of ``watch``: print the watch's changes and health events, in order.

The library tells when a service's lookups start failing and when they work
again (``on_health``), and ends the watch itself after ``--fail-after``
(on the monotonic clock); this module only prints what it is told.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import NoReturn, TextIO

from .._errors import SwarmDNSError, WatchTimeout
from .._lookups import instances_query
from .._values import LookupsFailing, LookupsRecovered, TaskSetChange
from .._watcher import FleetWatcher
from .common import change_line, clock, stamp


class Ended:
    """Put in the queue once the watch has ended (``FleetWatcher.error`` says why)."""


#: What the main thread of ``watch`` is handed, in the order it happened. None:
#: the reader of the output went away; an exception: acting failed.
Item = TaskSetChange | LookupsFailing | LookupsRecovered | Ended | BaseException | None

#: How long the lookups went without success, in the library's ``WatchTimeout``
#: ("no successful lookup of 'tasks.web.' for 0.503 s (12 attempts), ...").
_WITHOUT_SUCCESS = re.compile(r" for ([0-9.e+-]+) s \(")


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
        services: Iterable[str],
        network: str | None,
        fail_after: float | None,
        as_json: bool,
        named: bool,
    ) -> None:
        self._fleet = fleet
        self._out = out
        self._services = tuple(services)
        self._network = network
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
            self._say(self._line(item))

    def _line(self, item: TaskSetChange | LookupsFailing | LookupsRecovered) -> str:
        if isinstance(item, LookupsFailing):
            return failure_line(item, self._json)
        if isinstance(item, LookupsRecovered):
            return recovery_line(item, self._json)
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

        As it is if it cannot be read (which service, for how long).
        """
        found = _WITHOUT_SUCCESS.search(str(error))
        if found is None or self._fail_after is None:
            return error
        for service in self._services:
            name = instances_query(service, self._network).question.name
            if name == error.name:
                timeout = WatchTimeout(
                    f"no successful lookup of {service!r} for {float(found.group(1)):.1f} s,"
                    f" longer than --fail-after {self._fail_after:g}; the last error:"
                    f" {error.last_error}",
                    name=name.rstrip("."),
                    last_error=error.last_error,
                )
                timeout.__cause__ = error
                return timeout
        return error
