"""What the actions did, as events: a render, a check, a command, the supervised program.

``Actions`` and ``Supervisor`` hand an ``ActionEvent`` to their ``on_event``
for each thing they did; ``watch --json`` prints them, and ``ActionTally``
counts them for ``watch --metrics``. No I/O here.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Literal

from attrs import field, frozen

from .child import CommandResult, exit_status

Kind = Literal["render", "check", "command", "program"]

#: What each kind of event may say happened.
OUTCOMES: Mapping[Kind, tuple[str, ...]] = {
    # refused: its check failed, so DEST was left as it was.
    "render": ("changed", "unchanged", "failed", "refused", "stopped"),
    "check": ("passed", "failed", "timed_out", "not_started", "stopped"),
    "command": ("ok", "failed", "timed_out", "not_started", "stopped"),
    "program": ("started", "reloaded", "exited"),
}


def _now() -> datetime:
    return datetime.now(timezone.utc)


@frozen(kw_only=True)
class ActionEvent:
    """One thing the actions did.

    Attributes:
        kind: ``render`` (a template into its DEST), ``check`` (a
            ``--render-check`` on the staged file), ``command`` (a
            ``--render-exec``, or the ``--exec`` command when ``file`` is
            None), or ``program`` (``--supervise``'s).
        outcome: One of ``OUTCOMES[kind]``.
        file: The DEST it was about; None for ``--exec`` and the program.
        command: The command that ran (checks, commands, the program).
        services: The services whose change it acted on.
        duration: Seconds it took (renders, checks, commands).
        status: The exit status (as a shell gives it: 128 + N when killed by
            signal N), when a command or the program ended.
        signal: The signal sent to the program (``reloaded``).
        at: When it ended, in UTC.
    """

    kind: Kind
    outcome: str
    file: str | None = None
    command: str | None = None
    services: tuple[str, ...] = ()
    duration: float | None = None
    status: int | None = None
    signal: str | None = None
    at: datetime = field(factory=_now)

    def __attrs_post_init__(self) -> None:
        if self.outcome not in OUTCOMES[self.kind]:
            raise ValueError(
                f"a {self.kind} event's outcome is one of {', '.join(OUTCOMES[self.kind])},"
                f" not {self.outcome!r}"
            )

    def to_json(self) -> dict[str, object]:
        """The event's fields for a JSON line: those it has, ``at`` left to the caller to format.

        A render, check or command has the ``services`` it acted on; the
        program's events have none.
        """
        fields: dict[str, object] = {"event": self.kind, "outcome": self.outcome}
        if self.file is not None:
            fields["file"] = self.file
        if self.command is not None:
            fields["command"] = self.command
        if self.kind != "program":
            fields["services"] = list(self.services)
        if self.duration is not None:
            fields["duration"] = round(self.duration, 6)
        for name, value in (("status", self.status), ("signal", self.signal)):
            if value is not None:
                fields[name] = value
        return fields


def command_outcome(result: CommandResult, *, check: bool = False) -> str:
    """What a command's run came to, in ``OUTCOMES``' words (a check's when ``check``)."""
    if result.cancelled:
        return "stopped"
    if result.timed_out:
        return "timed_out"
    if result.returncode is None:
        return "not_started"
    if result.returncode == 0:
        return "passed" if check else "ok"
    return "failed"


def command_event(
    result: CommandResult,
    *,
    kind: Literal["check", "command"],
    command: str,
    services: tuple[str, ...],
    file: str | None = None,
) -> ActionEvent:
    """The event of a check's or command's run."""
    return ActionEvent(
        kind=kind,
        outcome=command_outcome(result, check=kind == "check"),
        file=file,
        command=command,
        services=services,
        duration=result.duration,
        status=None if result.returncode is None else exit_status(result.returncode),
    )


@frozen(kw_only=True)
class TallyLine:
    """How many events of a kind, for a file (or command), ended one way; how long they took."""

    kind: Kind
    file: str
    outcome: str
    count: int
    seconds: float


class ActionTally:
    """Counts the actions' events, for metrics; their one owner. Safe under threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: dict[tuple[Kind, str, str], tuple[int, float]] = {}
        self._last_status: dict[tuple[Kind, str], int] = {}
        self._program_running = False

    def __repr__(self) -> str:
        with self._lock:
            total = sum(count for count, _ in self._lines.values())
        return f"<ActionTally of {total} events>"

    def record(self, event: ActionEvent) -> None:
        """Count ``event``; from any thread."""
        where = event.file if event.file is not None else ""
        with self._lock:
            key = (event.kind, where, event.outcome)
            count, seconds = self._lines.get(key, (0, 0.0))
            self._lines[key] = (count + 1, seconds + (event.duration or 0.0))
            if event.status is not None and event.kind != "program":
                self._last_status[event.kind, where] = event.status
            if event.kind == "program" and event.outcome != "reloaded":
                self._program_running = event.outcome == "started"

    def lines(self) -> list[TallyLine]:
        """Every (kind, file, outcome) counted so far, sorted."""
        with self._lock:
            found = sorted(self._lines.items())
        return [
            TallyLine(kind=kind, file=file, outcome=outcome, count=count, seconds=seconds)
            for (kind, file, outcome), (count, seconds) in found
        ]

    def last_statuses(self) -> dict[tuple[Kind, str], int]:
        """The exit status of the last run of each check and command, by (kind, file)."""
        with self._lock:
            return dict(self._last_status)

    @property
    def program_running(self) -> bool:
        """Whether the supervised program was started and has not exited."""
        with self._lock:
            return self._program_running
