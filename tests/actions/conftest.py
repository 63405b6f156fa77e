"""Fixtures for the tests of the actions: a template, the log, a pid file for a command."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import alive


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "upstreams.j2"
    path.write_text("{% for ip in ips %}server {{ ip }}:80;\n{% endfor %}")
    return path


@pytest.fixture
def quiet_caplog(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="swarmdns")
    return caplog


@pytest.fixture
def pid_file(tmp_path: Path) -> Iterator[Path]:
    """Where a command writes its pid; whatever still runs in its group is killed after."""
    path = tmp_path / "command.pid"
    path.touch()
    yield path
    text = path.read_text()
    if text.endswith("\n") and alive(int(text)):  # the test failed: leave nothing behind
        os.killpg(int(text), signal.SIGKILL)
