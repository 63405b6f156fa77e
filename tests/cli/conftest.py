"""The fixtures of the command line's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import Child, Spawn


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start swarmdns with arguments; each process is stopped after the test if still running."""
    started: list[Child] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Child:
        child = Child(*args, env=env)
        started.append(child)
        return child

    yield start
    for child in started:
        child.close()
