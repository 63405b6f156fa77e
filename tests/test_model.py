"""The values swarmdns hands to backends and users."""

from __future__ import annotations

from ipaddress import IPv4Address

from swarmdns import Task


def test_task_repr_reads_well() -> None:
    task = Task(ip=IPv4Address("10.0.1.3"), name="web.1.abc", slot=1)

    assert repr(task).startswith("Task(ip=10.0.1.3, name='web.1.abc', service=None, slot=1")
