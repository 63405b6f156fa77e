"""``watch --metrics``' metrics of the actions: renders, checks, commands, the program.

``ActionCollector`` reads an ``ActionTally`` each time Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .._actions.report import ActionTally

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric


class ActionCollector:
    """A ``prometheus_client`` collector of what a watch's actions did.

    ``swarmdns_actions_total`` and ``swarmdns_action_seconds_total`` (by
    ``action``: render, check or command; ``file``: the DEST, empty for
    ``--exec``; and ``outcome``), ``swarmdns_action_last_exit_status`` (of
    each check and command), and, with ``--supervise``,
    ``swarmdns_program_running`` and ``swarmdns_program_reloads_total``.
    """

    def __init__(self, tally: ActionTally, *, supervised: bool) -> None:
        self._tally = tally
        self._supervised = supervised

    def describe(self) -> list[Metric]:
        """No description ahead of time: the files and outcomes come as they happen."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The metrics as they are now, for one scrape."""
        from prometheus_client.core import (  # noqa: PLC0415 - an optional extra
            CounterMetricFamily,
            GaugeMetricFamily,
        )

        labels = ["action", "file", "outcome"]
        actions = CounterMetricFamily(
            "swarmdns_actions", "Renders, checks and commands, by how they ended.", labels=labels
        )
        seconds = CounterMetricFamily(
            "swarmdns_action_seconds",
            "Seconds spent in renders (their checks included), checks and commands.",
            labels=labels,
        )
        reloads = 0
        for line in self._tally.lines():
            if line.kind == "program":
                reloads += line.count if line.outcome == "reloaded" else 0
                continue
            actions.add_metric([line.kind, line.file, line.outcome], line.count)
            seconds.add_metric([line.kind, line.file, line.outcome], line.seconds)
        statuses = GaugeMetricFamily(
            "swarmdns_action_last_exit_status",
            "The exit status of the last run of each check and command.",
            labels=["action", "file"],
        )
        for (kind, file), status in sorted(self._tally.last_statuses().items()):
            statuses.add_metric([kind, file], status)
        yield from (actions, seconds, statuses)
        if self._supervised:
            yield GaugeMetricFamily(
                "swarmdns_program_running",
                "1 while --supervise's program runs, else 0.",
                value=1 if self._tally.program_running else 0,
            )
            yield CounterMetricFamily(
                "swarmdns_program_reloads",
                "Reload signals sent to --supervise's program.",
                value=reloads,
            )
