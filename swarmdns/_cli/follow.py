"""The main thread of ``watch``: print changes, and notice failing lookups and their recovery.

This module is the whole health logic of the command line (``Follow``, with
its ``_Outage`` and its failure and recovery lines), kept apart so that it can
be replaced by the library's own health events.
"""

from __future__ import annotations

import contextlib
import json
import queue
from datetime import datetime
from typing import NoReturn, TextIO

import attrs

from .._errors import SwarmDNSError, WatchTimeout
from .._names import tasks_name
from .._values import TaskSetChange, WatchHealth
from .._watcher import FleetWatcher
from .common import change_line, clock, stamp, utc_now


def failure_line(service: str, at: datetime, error: object, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {"event": "failure", "at": stamp(at), "service": service, "error": str(error)}
        )
    return f"{clock(at)} {service} lookups failing: {error}"


def recovery_line(service: str, at: datetime, failed_for: float, as_json: bool) -> str:
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


@attrs.define
class _Outage:
    """A service whose lookups fail: since when (its first failed lookup), after which success."""

    since: datetime
    last_success: datetime | None


class Follow:
    """The main thread of ``watch``: print changes, notice failures and recoveries.

    The ``FleetWatcher`` hands changes over at once; its health is read after
    each change, and at least once an interval, so a failure or a recovery
    shows within about an interval.
    """

    def __init__(
        self,
        fleet: FleetWatcher,
        out: TextIO,
        *,
        interval: float,
        fail_after: float | None,
        network: str | None,
        as_json: bool,
        named: bool,
    ) -> None:
        self._fleet = fleet
        self._interval = interval
        self._fail_after = fail_after
        self._network = network
        self._json = as_json
        self._out = out
        self._named = named
        self._started = utc_now()
        self._outages: dict[str, _Outage] = {}

    def run(self, changes: queue.Queue[TaskSetChange | BaseException | None]) -> NoReturn:
        while True:
            try:
                change = changes.get(timeout=self._wait())
            except queue.Empty:
                pass
            else:
                while True:
                    if change is None:
                        raise BrokenPipeError("the reader of the output went away")
                    if isinstance(change, BaseException):
                        raise change
                    self._changed(change)
                    try:
                        change = changes.get_nowait()
                    except queue.Empty:
                        break
            if not self._fleet.running:
                self._ended()
            self._check_health()

    def _say(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    def _changed(self, change: TaskSetChange) -> None:
        outage = self._outages.get(change.service)
        if outage is not None and change.observed_at >= outage.since:
            # Only a lookup that worked shows a change: this one ended the outage.
            self._recovered(change.service, change.observed_at)
        self._say(change_line(change, self._json, named=self._named))

    def _recovered(self, service: str, at: datetime) -> None:
        outage = self._outages.pop(service)
        failed_for = max(0.0, (at - outage.since).total_seconds())
        self._say(recovery_line(service, at, failed_for, self._json))

    def _check_health(self) -> None:
        now = utc_now()
        for service, health in list(self._fleet.health.items()):
            outage = self._outages.get(service)
            if (
                outage is not None
                and health.last_success is not None
                and (
                    health.consecutive_failures == 0 or health.last_success != outage.last_success
                )
            ):
                self._recovered(service, max(health.last_success, outage.since))
                outage = None
            if outage is None and health.consecutive_failures > 0:
                since = health.failing_since or now
                self._outages[service] = _Outage(since=since, last_success=health.last_success)
                self._say(failure_line(service, since, health.last_error, self._json))
            if service in self._outages:
                self._check_fail_after(service, health, now)

    def _failing_since(self, health: WatchHealth) -> datetime:
        """Since when there has been no successful lookup."""
        return health.last_success or self._started

    def _check_fail_after(self, service: str, health: WatchHealth, now: datetime) -> None:
        if self._fail_after is None:
            return
        failing = (now - self._failing_since(health)).total_seconds()
        if failing >= self._fail_after:
            name = tasks_name(service, self._network).rstrip(".")
            raise WatchTimeout(
                f"no successful lookup of {service!r} for {failing:.1f} s, longer than"
                f" --fail-after {self._fail_after:g}; the last error: {health.last_error}",
                name=name,
                last_error=health.last_error,
            )

    def _wait(self) -> float:
        """How long to wait for a change: an interval, or less to a --fail-after deadline."""
        wait = self._interval
        if self._fail_after is not None and self._outages:
            health = self._fleet.health
            now = utc_now()
            for service in self._outages:
                with contextlib.suppress(KeyError):
                    since = self._failing_since(health[service])
                    left = self._fail_after - (now - since).total_seconds()
                    wait = min(wait, max(0.0, left))
        return wait

    def _ended(self) -> NoReturn:
        error = self._fleet.error
        if isinstance(error, SwarmDNSError):
            raise error
        raise SwarmDNSError(f"the watch ended unexpectedly: {error!r}")
