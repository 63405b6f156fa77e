"""The ``swarmdns`` logger: its records go where the application says, and nowhere by default."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from swarmdns._cli.process import action_failures_shown, warnings_shown

#: A watch whose lookups all fail: the library logs a warning, then fail_after ends it.
_FAILING_WATCH = """
import logging, sys
import swarmdns

if sys.argv[1] == "configured":
    logging.basicConfig(format="app: %(name)s %(message)s")

class Down:
    def resolve(self, question, timeout):
        raise swarmdns.ResolutionError("the nameserver is down")

try:
    next(swarmdns.watch_tasks("web", backend=Down(), interval=0.01, fail_after=0.05))
except swarmdns.WatchTimeout:
    print("ended")
"""


def _failing_watch(logging_is: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _FAILING_WATCH, logging_is],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_the_library_prints_nothing_where_the_application_configures_no_logging() -> None:
    result = _failing_watch("not configured")

    assert (result.stdout, result.stderr) == ("ended\n", "")


def test_the_application_that_configures_logging_gets_the_warnings() -> None:
    result = _failing_watch("configured")

    assert result.stdout == "ended\n"
    assert result.stderr.startswith("app: swarmdns looking up tasks.web. failed;")


@pytest.mark.parametrize(
    ("shown", "logger", "line"),
    [
        (action_failures_shown, "swarmdns.actions", "swarmdns: the command failed\n"),
        (
            lambda: warnings_shown("testing", "%(message)s"),
            "swarmdns.testing",
            "the command failed\n",
        ),
    ],
    ids=["watch's actions", "serve's fake"],
)
def test_the_command_line_shows_its_own_warnings(
    shown: object, logger: str, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with shown():  # type: ignore[operator]
        logging.getLogger(logger).warning("the command failed")
        logging.getLogger(logger).info("ran the command")
    logging.getLogger(logger).warning("after the command")

    assert capsys.readouterr().err == line
