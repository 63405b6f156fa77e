"""What the actions did, as events (``ActionEvent``), and their count (``ActionTally``)."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from swarmdns._actions.child import CommandResult
from swarmdns._actions.report import (
    OUTCOMES,
    ActionEvent,
    ActionTally,
    TallyLine,
    command_event,
    command_outcome,
)

AT = datetime(2026, 12, 5, 3, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("result", "as_command", "as_check"),
    [
        (CommandResult(returncode=0), "ok", "passed"),
        (CommandResult(returncode=3), "failed", "failed"),
        (CommandResult(returncode=-9), "failed", "failed"),
        (CommandResult(returncode=-15, timed_out=True), "timed_out", "timed_out"),
        (CommandResult(returncode=-15, cancelled=True), "stopped", "stopped"),
        (CommandResult(returncode=None, cancelled=True), "stopped", "stopped"),
        (CommandResult(returncode=None), "not_started", "not_started"),
    ],
)
def test_how_a_run_ended(result: CommandResult, as_command: str, as_check: str) -> None:
    assert command_outcome(result) == as_command
    assert command_outcome(result, check=True) == as_check


def test_a_command_s_event_has_its_status_as_a_shell_gives_it() -> None:
    killed = CommandResult(returncode=-9, duration=0.25)

    event = command_event(
        killed, kind="check", command="nginx -t", services=("web",), file="/etc/up.conf"
    )

    assert (event.kind, event.outcome, event.status, event.duration) == (
        "check",
        "failed",
        137,
        0.25,
    )
    assert (event.file, event.command, event.services) == ("/etc/up.conf", "nginx -t", ("web",))
    assert (
        command_event(
            CommandResult(returncode=None), kind="command", command="x", services=()
        ).status
        is None
    )


def test_an_event_as_json_has_the_fields_it_has() -> None:
    render = ActionEvent(
        kind="render",
        outcome="changed",
        file="/x",
        services=("web", "api"),
        duration=0.0012345678,
        at=AT,
    )
    program = ActionEvent(
        kind="program", outcome="reloaded", command="nginx", signal="SIGHUP", at=AT
    )

    assert render.to_json() == {
        "event": "render", "outcome": "changed", "file": "/x", "services": ["web", "api"],
        "duration": 0.001235,
    }  # fmt: skip
    assert program.to_json() == {
        "event": "program", "outcome": "reloaded", "command": "nginx", "signal": "SIGHUP",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "outcome"), [("render", "ok"), ("check", "changed"), ("program", "failed")]
)
def test_an_outcome_its_kind_does_not_have_is_refused(kind: str, outcome: str) -> None:
    with pytest.raises(ValueError, match=f"a {kind} event's outcome is one of .*not '{outcome}'"):
        ActionEvent(kind=kind, outcome=outcome)  # type: ignore[arg-type]


def test_every_kind_has_its_outcomes() -> None:
    assert set(OUTCOMES) == {"render", "check", "command", "program"}


def test_the_tally_counts_each_kind_file_and_outcome_with_its_seconds() -> None:
    tally = ActionTally()
    for event in [
        ActionEvent(kind="render", outcome="changed", file="/a", duration=0.5),
        ActionEvent(kind="render", outcome="changed", file="/a", duration=0.25),
        ActionEvent(kind="render", outcome="unchanged", file="/a", duration=0.125),
        ActionEvent(kind="check", outcome="failed", file="/a", status=1, duration=1.0),
        ActionEvent(kind="check", outcome="passed", file="/a", status=0, duration=1.0),
        ActionEvent(kind="command", outcome="failed", status=2, duration=2.0),
    ]:
        tally.record(event)

    assert tally.lines() == [
        TallyLine(kind="check", file="/a", outcome="failed", count=1, seconds=1.0),
        TallyLine(kind="check", file="/a", outcome="passed", count=1, seconds=1.0),
        TallyLine(kind="command", file="", outcome="failed", count=1, seconds=2.0),
        TallyLine(kind="render", file="/a", outcome="changed", count=2, seconds=0.75),
        TallyLine(kind="render", file="/a", outcome="unchanged", count=1, seconds=0.125),
    ]
    assert tally.last_statuses() == {("check", "/a"): 0, ("command", ""): 2}  # the last run's
    assert repr(tally) == "<ActionTally of 6 events>"


def test_the_program_runs_from_its_start_to_its_exit() -> None:
    tally = ActionTally()
    assert not tally.program_running

    tally.record(ActionEvent(kind="program", outcome="started", command="nginx"))
    running = tally.program_running
    tally.record(ActionEvent(kind="program", outcome="reloaded", command="nginx", signal="SIGHUP"))
    still = tally.program_running
    tally.record(ActionEvent(kind="program", outcome="exited", command="nginx", status=0))

    assert (running, still, tally.program_running) == (True, True, False)
    assert tally.last_statuses() == {}  # the program's status is not a command's


def test_the_tally_loses_nothing_under_threads() -> None:
    tally = ActionTally()
    event = ActionEvent(kind="command", outcome="ok", status=0, duration=0.5)

    def record() -> None:
        for _ in range(2000):
            tally.record(event)

    threads = [threading.Thread(target=record) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert tally.lines() == [
        TallyLine(kind="command", file="", outcome="ok", count=16000, seconds=8000.0)
    ]
