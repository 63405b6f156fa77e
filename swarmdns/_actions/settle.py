"""When to act, and on what: the settle window and the batches of changes, without I/O.

``SettleWindow`` decides when a burst of changes has settled (consul-template's
``wait``: quiet for ``min_quiet``, or ``max_wait`` after its first change);
``PendingChanges`` merges the changes since the last action into a ``Batch``:
each service's net change and every service's set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from ipaddress import IPv4Address
from types import MappingProxyType

from attrs import frozen

from .._deadlines import MAX_SECONDS, seconds
from .._values import TaskSetChange


class SettleWindow:
    """When a burst of changes has settled: consul-template's ``wait``, without I/O.

    After a change, act once the set has been quiet for ``min_quiet`` seconds,
    and at the latest ``max_wait`` seconds after the burst's first change, so
    that a set that keeps changing is still acted on. With ``min_quiet`` 0
    (the default), act at once.

    Args:
        min_quiet: Seconds without a change before acting.
        max_wait: Seconds after a burst's first change to act at the latest;
            by default 4 times ``min_quiet`` (at most a day).
        clock: Monotonic seconds, read when a method is not given ``now``.

    Raises:
        TypeError, ValueError: A negative duration, one longer than a day, or
            ``max_wait`` below ``min_quiet``.
    """

    def __init__(
        self,
        min_quiet: float = 0.0,
        max_wait: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_quiet = seconds("min_quiet", min_quiet, zero=True)
        self.max_wait = (
            min(4 * self.min_quiet, MAX_SECONDS)
            if max_wait is None
            else seconds("max_wait", max_wait, zero=True)
        )
        if self.max_wait < self.min_quiet:
            raise ValueError(
                f"max_wait ({self.max_wait:g} s) must be at least min_quiet ({self.min_quiet:g} s)"
            )
        self._clock = clock
        self._first: float | None = None
        self._last = 0.0

    def __repr__(self) -> str:
        return f"<SettleWindow {self.min_quiet:g}:{self.max_wait:g} s, due {self.next_deadline()}>"

    @property
    def pending(self) -> bool:
        """Whether a change waits to be acted on."""
        return self._first is not None

    def changed(self, now: float | None = None) -> None:
        """Take a change at ``now``: the first of a burst starts it, each restarts the quiet."""
        now = self._clock() if now is None else now
        if self._first is None:
            self._first = now
        self._last = now

    def next_deadline(self) -> float | None:
        """When the burst will be due, on the clock (None: no change waits)."""
        if self._first is None:
            return None
        return min(self._last + self.min_quiet, self._first + self.max_wait)

    def due(self, now: float | None = None) -> bool:
        """Whether to act now: a change waits, and it is quiet enough or waited long enough."""
        deadline = self.next_deadline()
        return deadline is not None and (self._clock() if now is None else now) >= deadline

    def acted(self) -> None:
        """The action has taken the burst: wait for the next change."""
        self._first = None


@frozen(kw_only=True)
class Batch:
    """What an action is about: the net changes since the last action, and every service's set.

    Attributes:
        changes: Each service that changed, sorted by name, with its net
            change against its set at the last action. The first batch has
            every service, each with its whole set added (even when empty).
        current: Every service's addresses now, sorted (by name, then address).
        again: Whether it was asked for again (``watch`` got SIGHUP): it has
            every service, and its actions run even if no file changed.
    """

    changes: tuple[TaskSetChange, ...]
    current: Mapping[str, tuple[IPv4Address, ...]]
    again: bool = False

    @property
    def services(self) -> tuple[str, ...]:
        """The names of the services that changed."""
        return tuple(change.service for change in self.changes)

    def to_json(self) -> str:
        """The batch for a command's stdin.

        ``{"changes": [{"service", "added", "removed", "current"}, ...],
        "services": {name: [address, ...]}}``: each change as a line of
        ``swarmdns watch --json``, and every service's addresses.
        """
        return json.dumps(
            {
                "changes": [
                    {
                        "service": change.service,
                        "added": [str(ip) for ip in sorted(change.added)],
                        "removed": [str(ip) for ip in sorted(change.removed)],
                        "current": [str(ip) for ip in change.current],
                    }
                    for change in self.changes
                ],
                "services": {
                    name: [str(ip) for ip in addresses] for name, addresses in self.current.items()
                },
            }
        )

    def environment(self) -> dict[str, str]:
        """The variables a command gets.

        ``SWARMDNS_SERVICE``: the services that changed, comma-separated.
        ``SWARMDNS_TASKS``: their addresses now, sorted and space-separated
        (with several services, every address of any of them, once; stdin has
        each service's own).
        """
        addresses = sorted({ip for change in self.changes for ip in change.current})
        return {
            "SWARMDNS_SERVICE": ",".join(self.services),
            "SWARMDNS_TASKS": " ".join(str(ip) for ip in addresses),
        }


class PendingChanges:
    """The changes since the last action, merged per service, and every service's set; no I/O.

    The first batch waits until every service named has reported its initial
    set, so that a template sees them all; it holds every service. After it,
    a service whose set came back to what it was (a task that left and came
    back within one burst) is left out, and a burst that leaves every set as
    it was makes no batch. Not thread-safe: ``ActionLoop`` holds a lock.

    Args:
        services: The services watched, whose initial sets the first batch waits for.
    """

    def __init__(self, services: Iterable[str] = ()) -> None:
        if isinstance(services, str):
            raise TypeError(f"services takes a list of names, not one: [{services!r}]")
        self._waiting_for = set(services)
        self._current: dict[str, tuple[IPv4Address, ...]] = {}
        self._before: dict[str, frozenset[IPv4Address]] = {}
        self._latest: dict[str, TaskSetChange] = {}
        self._first = True
        self._again = False

    def add(self, change: TaskSetChange) -> None:
        """Take a change of a service's set."""
        service = change.service
        if service not in self._before:
            self._before[service] = frozenset(self._current.get(service, ()))
        self._current[service] = change.current
        self._latest[service] = change
        self._waiting_for.discard(service)

    def again(self) -> None:
        """Make the next batch hold every service, as changed, with ``again`` set (SIGHUP)."""
        for service, current in self._current.items():
            self._before.setdefault(service, frozenset(current))
        self._again = True

    @property
    def waiting_for(self) -> frozenset[str]:
        """The services named whose initial set has not come yet."""
        return frozenset(self._waiting_for)

    @property
    def ready(self) -> bool:
        """Whether there is something to take: changes, and every initial set."""
        return bool(self._before) and not self._waiting_for

    def unchanged(self) -> Batch | None:
        """A batch of no change, with every service's set now, to act again on the same sets.

        None before the first batch: there is nothing to act on again yet.
        """
        if self._first:
            return None
        current = {name: self._current[name] for name in sorted(self._current)}
        return Batch(changes=(), current=MappingProxyType(current))

    def take(self) -> Batch | None:
        """The batch of the changes so far (None if they cancel out), and start over."""
        changes = []
        for service in sorted(self._before):
            before = self._before[service]
            after = frozenset(self._current[service])
            if after != before or self._first or self._again:
                changes.append(
                    TaskSetChange(
                        service=service,
                        added=after - before,
                        removed=before - after,
                        current=self._current[service],
                        observed_at=self._latest[service].observed_at,
                    )
                )
        self._before.clear()
        if not changes:
            return None
        self._first = False
        again, self._again = self._again, False
        current = {name: self._current[name] for name in sorted(self._current)}
        return Batch(changes=tuple(changes), current=MappingProxyType(current), again=again)
