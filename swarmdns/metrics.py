"""Prometheus metrics of running watches (``pip install 'swarmdns[metrics]'``).

``WatchCollector`` reads the ``current`` and ``health`` of any watch (one
service or a fleet) each time Prometheus scrapes, so nothing is counted
twice and nothing runs between scrapes::

    from prometheus_client import REGISTRY, start_http_server

    fleet = swarmdns.FleetWatcher(["web", "api"]).start()
    REGISTRY.register(swarmdns.metrics.WatchCollector(fleet))
    start_http_server(9109, addr="127.0.0.1")  # this machine only

Every metric has a ``service`` label: ``swarmdns_tasks`` (tasks now),
``swarmdns_lookups_total``, ``swarmdns_lookup_failures_total`` (with
``kind``: the error's class), ``swarmdns_changes_total``,
``swarmdns_consecutive_failures`` and ``swarmdns_seconds_since_success``
(NaN before the first success); and for holds (``min_tasks``, ``max_drop``):
``swarmdns_held`` (1 while a change is held, else 0), ``swarmdns_held_seconds``
(how long the hold under way has lasted, 0 without one) and
``swarmdns_holds_total``; ``swarmdns_answer_forwarded`` (1 while the engine
forwards the service's name, so that its answers read as no tasks; see
``swarmdns.Provenance``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Protocol

from ._errors import ConfigurationError
from ._values import WatchHealth

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = ["WatchCollector"]


class _FleetLike(Protocol):
    @property
    def current(self) -> Mapping[str, tuple[IPv4Address, ...]]: ...

    @property
    def health(self) -> Mapping[str, WatchHealth]: ...


class _SingleLike(Protocol):
    @property
    def service(self) -> str: ...

    @property
    def current(self) -> tuple[IPv4Address, ...]: ...

    @property
    def health(self) -> WatchHealth: ...


class WatchCollector:
    """A ``prometheus_client`` collector of one or more watches' tasks and lookups.

    Args:
        watches: Watches of one service (``TaskWatcher``, ``watch_tasks()``'s
            iterator) or of many (``FleetWatcher``, ``watch_services()``'s).

    Raises:
        TypeError: Something other than a watch was given.
        ConfigurationError: ``prometheus_client`` is not installed.
    """

    def __init__(self, *watches: _FleetLike | _SingleLike) -> None:
        for watch in watches:
            if not all(hasattr(type(watch), name) for name in ("current", "health")):
                raise TypeError(
                    "WatchCollector takes watches (TaskWatcher, FleetWatcher, or what"
                    f" watch_tasks() and watch_services() return), not {watch!r}"
                )
        try:
            import prometheus_client  # noqa: F401, PLC0415 - an optional extra
        except ImportError as error:
            raise ConfigurationError(
                "swarmdns.metrics needs prometheus_client: pip install 'swarmdns[metrics]'",
                source="swarmdns.metrics",
            ) from error
        self._watches = watches

    def describe(self) -> list[Metric]:
        """No description ahead of time: the services come and go."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The metrics as they are now, for one scrape.

        Long because it declares every metric family, then fills them all in
        one pass over the services.
        """
        from prometheus_client.core import (  # noqa: PLC0415 - an optional extra
            CounterMetricFamily,
            GaugeMetricFamily,
        )

        tasks = GaugeMetricFamily(
            "swarmdns_tasks", "Tasks of the service now.", labels=["service"]
        )
        lookups = CounterMetricFamily(
            "swarmdns_lookups", "Lookups finished, failed ones included.", labels=["service"]
        )
        failures = CounterMetricFamily(
            "swarmdns_lookup_failures",
            "Failed lookups, by the error's class.",
            labels=["service", "kind"],
        )
        changes = CounterMetricFamily(
            "swarmdns_changes", "Changes reported, the initial set included.", labels=["service"]
        )
        failing = GaugeMetricFamily(
            "swarmdns_consecutive_failures",
            "Failed lookups since the last successful one.",
            labels=["service"],
        )
        stale = GaugeMetricFamily(
            "swarmdns_seconds_since_success",
            "Seconds since the last successful lookup (NaN before the first).",
            labels=["service"],
        )
        held = GaugeMetricFamily(
            "swarmdns_held",
            "1 while a change that drops tasks is held (min_tasks, max_drop), else 0.",
            labels=["service"],
        )
        held_seconds = GaugeMetricFamily(
            "swarmdns_held_seconds",
            "Seconds the hold under way has lasted (0 without one).",
            labels=["service"],
        )
        holds = CounterMetricFamily(
            "swarmdns_holds", "Changes held, one per hold.", labels=["service"]
        )
        forwarded = GaugeMetricFamily(
            "swarmdns_answer_forwarded",
            "1 while the engine forwards the name, whose answers then read as no tasks.",
            labels=["service"],
        )
        now = datetime.now(timezone.utc)
        moment = time.monotonic()  # the clock of every watch's holds
        for service, current, health in self._services():
            tasks.add_metric([service], len(current))
            lookups.add_metric([service], health.lookups)
            for kind, count in sorted(health.failures_by_kind.items()):
                failures.add_metric([service, kind], count)
            changes.add_metric([service], health.changes)
            failing.add_metric([service], health.consecutive_failures)
            last = health.last_success
            stale.add_metric([service], math.nan if last is None else (now - last).total_seconds())
            hold = health.held
            held.add_metric([service], 0 if hold is None else 1)
            held_seconds.add_metric([service], 0 if hold is None else max(0, moment - hold.since))
            holds.add_metric([service], health.holds)
            forwarded.add_metric([service], 0 if health.forwarded is None else 1)
        yield from (tasks, lookups, failures, changes, failing, stale, held, held_seconds, holds)
        yield forwarded

    def _services(self) -> Iterator[tuple[str, tuple[IPv4Address, ...], WatchHealth]]:
        for watch in self._watches:
            current, health = watch.current, watch.health
            if isinstance(current, Mapping) and isinstance(health, Mapping):
                for service, addresses in list(current.items()):
                    found = health.get(service)
                    if found is not None:
                        yield service, addresses, found
            elif isinstance(health, WatchHealth) and not isinstance(current, Mapping):
                yield watch.service, current, health  # type: ignore[union-attr]
