"""What the tests of the actions share: changes, a clock, waiting for threads and processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from ipaddress import IPv4Address
from pathlib import Path
from typing import TypeVar

import pytest

from swarmdns import TaskSetChange
from swarmdns._actions.settle import Batch, PendingChanges

T = TypeVar("T")

WALL = datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc)
#: The longest any test waits for a thread or a process that should be quick.
PATIENCE = 10.0


def ip(last_octet: int) -> IPv4Address:
    return IPv4Address(f"10.0.1.{last_octet}")


def change(service: str, *current: int, added: tuple[int, ...] = ()) -> TaskSetChange:
    """A change whose set is now ``current`` (``added`` matters only to the watch, not here)."""
    return TaskSetChange(
        service=service,
        added=frozenset(ip(n) for n in added),
        removed=frozenset(),
        current=tuple(sorted(ip(n) for n in current)),
        observed_at=WALL,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_until(condition: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
    """Wait for something a real process does, within a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.01)


def batch_of(*changes: TaskSetChange, services: tuple[str, ...] = ()) -> Batch:
    pending = PendingChanges(services)
    for each in changes:
        pending.add(each)
    batch = pending.take()
    assert batch is not None
    return batch


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def started_pid(pid_file: Path) -> int:
    """The pid a command wrote to ``pid_file`` once started (``echo $$ > FILE``)."""
    wait_until(lambda: pid_file.read_text().endswith("\n"), "the command starts")
    return int(pid_file.read_text())


def in_thread(function: Callable[[], T]) -> tuple[threading.Thread, list[T]]:
    """Call ``function`` in a thread; the list gets what it returns."""
    returned: list[T] = []
    thread = threading.Thread(target=lambda: returned.append(function()), daemon=True)
    thread.start()
    return thread, returned
