"""``swarmdns watch`` prints the library's health events, and leaves ``--fail-after`` to it."""

from __future__ import annotations

import ast
import io
import json
import os
import queue
import select
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, ClassVar

import pytest

from swarmdns import (
    ChangeHeld,
    FleetWatcher,
    HealthEvent,
    HoldReleased,
    LookupsFailing,
    LookupsRecovered,
    ResolutionError,
    WatchHealth,
    WatchTimeout,
)
from swarmdns._cli import follow as follow_module
from swarmdns._cli import main
from swarmdns._cli import watch as watch_module
from swarmdns.testing import FakeSwarm, Fault

from .helpers import DEADLINE, ROOT, fail_lookups


class Observed(FleetWatcher):
    """The command line's ``FleetWatcher``: records its options and the events it tells.

    Reading its ``health`` fails the test: the command line must learn of
    outages from the events alone.
    """

    options: ClassVar[list[Mapping[str, Any]]] = []
    events: ClassVar[queue.Queue[HealthEvent]]

    def __init__(
        self,
        services: Iterable[str],
        *,
        on_health: Callable[[HealthEvent], object] | None = None,
        **options: Any,
    ) -> None:
        Observed.options.append(options)
        told = on_health

        def tell(event: HealthEvent) -> None:
            Observed.events.put(event)  # before the command line sees it, so before its line
            if told is not None:
                told(event)

        super().__init__(services, on_health=tell, **options)

    @property
    def health(self) -> Mapping[str, WatchHealth]:
        raise AssertionError("the command line read FleetWatcher.health")


@pytest.fixture
def observed(monkeypatch: pytest.MonkeyPatch) -> type[Observed]:
    Observed.options = []
    Observed.events = queue.Queue()
    monkeypatch.setattr(watch_module, "FleetWatcher", Observed)
    return Observed


def _event(events: queue.Queue[HealthEvent]) -> HealthEvent:
    try:
        return events.get(timeout=DEADLINE)
    except queue.Empty:
        pytest.fail(f"the watch told no health event within {DEADLINE} s")


class InProcess:
    """``swarmdns watch`` in a thread here (for the patch): its lines, each with a deadline."""

    def __init__(self, *args: str) -> None:
        self._read, write_end = os.pipe()
        self._out = open(write_end, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._buffer = b""
        self.codes: list[int] = []
        self._thread = threading.Thread(
            target=lambda: self.codes.append(main(["watch", *args], self._out)), daemon=True
        )
        self._thread.start()

    def line(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self._read], [], [], DEADLINE)
            if not ready:
                pytest.fail(f"the watch printed no line within {DEADLINE} s")
            chunk = os.read(self._read, 65536)
            assert chunk, "the watch ended instead of printing a line"
            self._buffer += chunk
        text, _, self._buffer = self._buffer.partition(b"\n")
        parsed: dict[str, Any] = json.loads(text)
        return parsed

    def close(self) -> None:
        """Leave, as ``head`` does: the watch ends (exit 0)."""
        os.close(self._read)
        self._thread.join(DEADLINE)
        self._out.close()
        assert not self._thread.is_alive()


def test_failure_and_recovery_lines_are_the_events_with_their_times(
    swarm_dns: FakeSwarm, observed: type[Observed]
) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    watch = InProcess("web", "--json", "--interval", "0.05")
    try:
        first = watch.line()
        swarm_dns.inject([Fault.SERVFAIL] * 3, name="tasks.web")  # the next three lookups fail
        failure, failing = watch.line(), _event(observed.events)
        recovery, recovered = watch.line(), _event(observed.events)
    finally:
        watch.close()

    assert first["current"] == [str(ip) for ip in web.task_ips]
    assert isinstance(failing, LookupsFailing)
    assert isinstance(recovered, LookupsRecovered)
    assert failure == {
        "event": "failure",
        "at": failing.observed_at.isoformat(timespec="milliseconds"),
        "service": "web",
        "error": str(failing.error),
    }
    assert recovery == {
        "event": "recovery",
        "at": recovered.observed_at.isoformat(timespec="milliseconds"),
        "service": "web",
        "failed_for": round(recovered.at - failing.since, 3),
    }
    assert recovered.failures == 3
    assert watch.codes == [0]


def test_the_watcher_is_given_fail_after_in_seconds_and_on_health(
    swarm_dns: FakeSwarm, observed: type[Observed]
) -> None:
    swarm_dns.create_service("web", replicas=1)
    watch = InProcess("web", "--json", "--interval", "0.05", "--fail-after", "1m")
    try:
        watch.line()
    finally:
        watch.close()

    ((options,),) = [observed.options]
    assert options["fail_after"] == 60.0
    assert watch.codes == [0]


def test_without_fail_after_the_watcher_never_gives_up(
    swarm_dns: FakeSwarm, observed: type[Observed]
) -> None:
    swarm_dns.create_service("web", replicas=1)
    watch = InProcess("web", "--json", "--interval", "0.05")
    try:
        watch.line()
    finally:
        watch.close()

    assert [options["fail_after"] for options in observed.options] == [None]


def test_an_outage_longer_than_fail_after_ends_the_watch_with_exit_3(
    swarm_dns: FakeSwarm, observed: type[Observed], capsys: pytest.CaptureFixture[str]
) -> None:
    swarm_dns.create_service("web", replicas=1)
    fail_lookups(swarm_dns, "web")
    out = io.StringIO()
    codes: list[int] = []
    args = ["watch", "web", "--json", "--interval", "0.05", "--fail-after", "0.3"]

    # Nothing but the end of the watch can wake the command line: it is told of it.
    watch = threading.Thread(target=lambda: codes.append(main(args, out)), daemon=True)
    watch.start()
    watch.join(DEADLINE)

    assert not watch.is_alive()
    assert codes == [3]
    failing = _event(observed.events)
    assert isinstance(failing, LookupsFailing)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {
            "event": "failure",
            "at": failing.observed_at.isoformat(timespec="milliseconds"),
            "service": "web",
            "error": str(failing.error),
        }
    ]
    err = capsys.readouterr().err
    assert err.startswith("swarmdns: no successful lookup of 'web' for ")
    assert ", longer than --fail-after 0.3; the last error: " in err
    assert "SERVFAIL" in err
    assert err.count("\n") == 1


def _follow(services: tuple[str, ...], fleet: object, fail_after: float | None) -> Any:
    return follow_module.Follow(
        fleet,  # type: ignore[arg-type]
        io.StringIO(),
        fail_after=fail_after,
        as_json=False,
        named=len(services) > 1,
    )


class EndedFleet:
    """A ``FleetWatcher`` that ``WatchTimeout`` ended, as the command line sees it."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    @property
    def health(self) -> object:
        raise AssertionError("the command line read FleetWatcher.health")


def test_the_libraries_timeout_is_said_with_the_service_and_its_option() -> None:
    last = ResolutionError("127.0.0.1:53 answered SERVFAIL for A 'tasks.api.'", name="tasks.api.")
    timeout = WatchTimeout(
        "no successful lookup of 'tasks.api.' for 61.25 s (40 attempts), over fail_after=60;"
        f" last error: {last}",
        name="tasks.api.",
        last_error=last,
        service="api",
        failed_for=61.25,
    )
    items: queue.Queue[follow_module.Item] = queue.Queue()
    items.put(follow_module.Ended())

    with pytest.raises(WatchTimeout) as raised:
        _follow(("web", "api"), EndedFleet(timeout), 60.0).run(items)

    assert str(raised.value) == (
        f"no successful lookup of 'api' for 61.2 s, longer than --fail-after 60; the last error:"
        f" {last}"
    )
    assert raised.value.last_error is last
    assert raised.value.__cause__ is timeout


def test_a_timeout_it_cannot_read_is_said_as_the_library_says_it() -> None:
    timeout = WatchTimeout("the watch gave up", name="tasks.other.")
    items: queue.Queue[follow_module.Item] = queue.Queue()
    items.put(follow_module.Ended())

    with pytest.raises(WatchTimeout) as raised:
        _follow(("web",), EndedFleet(timeout), 60.0).run(items)

    assert raised.value is timeout


def test_text_lines_of_the_events() -> None:
    error = ResolutionError("127.0.0.1:53 answered SERVFAIL for A 'tasks.web.'", name="tasks.web.")
    at = datetime(2026, 11, 26, 14, 2, 11, 250000, tzinfo=timezone.utc)
    later = datetime(2026, 11, 26, 14, 2, 15, 260000, tzinfo=timezone.utc)
    failing = LookupsFailing(service="web", since=100.0, error=error, observed_at=at)
    recovered = LookupsRecovered(
        service="web", at=104.0625, failed_for=4.0625, failures=5, observed_at=later
    )

    assert follow_module.failure_line(failing, as_json=False) == (
        f"14:02:11 web lookups failing: {error}"
    )
    assert follow_module.recovery_line(recovered, as_json=False) == (
        "14:02:15 web lookups work again after 4.1 s"
    )
    assert json.loads(follow_module.recovery_line(recovered, as_json=True)) == {
        "event": "recovery",
        "at": "2026-11-26T14:02:15.260+00:00",
        "service": "web",
        "failed_for": 4.062,
    }


def test_the_command_line_reads_no_health_to_find_outages() -> None:
    """The events are its one source: no ``.health``, nor the fields an outage was read from."""
    read = {"health", "failing_since", "consecutive_failures", "last_success"}
    found = []
    for path in sorted((ROOT / "swarmdns" / "_cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in read:
                found.append(f"{Path(path).name}:{node.lineno} .{node.attr}")

    assert found == []


# -- holds: --min, --max-drop, --hold-for -------------------------------------------------


def test_held_and_released_lines_are_the_events_with_their_times(
    swarm_dns: FakeSwarm, observed: type[Observed]
) -> None:
    web = swarm_dns.create_service("web", replicas=2, network="web-net")
    swarm_dns.create_network("elsewhere")
    watch = InProcess("web", "--json", "--interval", "0.05", "--min", "1")
    try:
        first = watch.line()
        swarm_dns.client_networks = ["elsewhere"]  # NXDOMAIN while the tasks run, as on 29.x
        held_line, held = watch.line(), _event(observed.events)
        swarm_dns.client_networks = None
        released_line, released = watch.line(), _event(observed.events)
        grown = swarm_dns.scale("web", 3)
        change = watch.line()  # the next line after the hold: the scale-up
    finally:
        watch.close()

    ips = [str(ip) for ip in web.task_ips]
    assert first["current"] == ips
    assert isinstance(held, ChangeHeld)
    assert isinstance(released, HoldReleased)
    assert held_line == {
        "event": "held",
        "at": held.observed_at.isoformat(timespec="milliseconds"),
        "service": "web",
        "reason": "below min_tasks 1",
        "removed": ips,
        "tasks": [],
    }
    assert released_line == {
        "event": "released",
        "at": released.observed_at.isoformat(timespec="milliseconds"),
        "service": "web",
        "held_for": round(released.at - held.since, 3),
        "expired": False,
    }
    assert (change["event"], change["removed"]) == ("change", [])
    assert change["current"] == [str(ip) for ip in grown.task_ips]
    assert watch.codes == [0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), {"min_tasks": 0, "max_drop": None, "hold_for": None}),
        (
            ("--min", "2", "--max-drop", "0.5", "--hold-for", "1m"),
            {"min_tasks": 2, "max_drop": 0.5, "hold_for": 60.0},
        ),
        (
            ("--max-drop", "1", "--hold-for", "500ms"),
            {"min_tasks": 0, "max_drop": 1.0, "hold_for": 0.5},
        ),
    ],
)
def test_the_watcher_is_given_the_hold_options(
    swarm_dns: FakeSwarm, observed: type[Observed], args: tuple[str, ...], expected: dict[str, Any]
) -> None:
    swarm_dns.create_service("web", replicas=1)
    watch = InProcess("web", "--json", "--interval", "0.05", *args)
    try:
        watch.line()
    finally:
        watch.close()

    ((options,),) = [observed.options]
    assert {name: options[name] for name in expected} == expected


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--min", "-1"), "--min '-1' is not a number of tasks"),
        (("--min", "two"), "--min 'two' is not a number of tasks"),
        (("--max-drop", "0"), "--max-drop '0' is not a fraction above 0 and at most 1"),
        (("--max-drop", "2"), "--max-drop '2' is not a fraction above 0 and at most 1"),
        (("--min", "1", "--hold-for", "0"), "--hold-for '0' is not a positive number of seconds"),
        (("--min", "1", "--hold-for", "soon"), "--hold-for 'soon' is not a duration"),
        (("--hold-for", "30s"), "--hold-for needs --min or --max-drop"),
        (("--once", "--min", "1"), "--min, --max-drop and --hold-for need a watch"),
    ],
)
def test_bad_hold_options_are_usage_errors(
    args: tuple[str, ...], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["watch", "web", *args], io.StringIO())

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("swarmdns: ")
    assert words in err
    assert err.count("\n") == 1


def test_text_lines_of_the_hold_events() -> None:
    at = datetime(2026, 12, 4, 14, 2, 11, 250000, tzinfo=timezone.utc)
    later = datetime(2026, 12, 4, 14, 2, 41, 500000, tzinfo=timezone.utc)
    held = ChangeHeld(
        service="web",
        since=100.0,
        tasks=(IPv4Address("10.0.1.3"),),
        removed=frozenset({IPv4Address("10.0.1.5"), IPv4Address("10.0.1.4")}),
        reason="drop of 2 of 3 exceeds max_drop 0.5",
        observed_at=at,
    )
    ended = HoldReleased(service="web", at=130.25, held_for=30.25, expired=True, observed_at=later)
    believed = HoldReleased(service="web", at=101.0, held_for=1.0, expired=False, observed_at=at)

    assert follow_module.held_line(held, as_json=False) == (
        "14:02:11 web change held, drop of 2 of 3 exceeds max_drop 0.5: -10.0.1.4 -10.0.1.5"
        " would leave: 10.0.1.3"
    )
    assert follow_module.released_line(ended, as_json=False) == (
        "14:02:41 web hold ends after 30.2 s: the answer held is reported"
    )
    assert follow_module.released_line(believed, as_json=False) == (
        "14:02:11 web hold ends after 1.0 s: the answer is believed again"
    )
    assert json.loads(follow_module.held_line(held, as_json=True)) == {
        "event": "held",
        "at": "2026-12-04T14:02:11.250+00:00",
        "service": "web",
        "reason": "drop of 2 of 3 exceeds max_drop 0.5",
        "removed": ["10.0.1.4", "10.0.1.5"],
        "tasks": ["10.0.1.3"],
    }
