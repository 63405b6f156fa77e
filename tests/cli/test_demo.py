"""``swarmdns demo``, run as a subprocess against the fake."""

from __future__ import annotations

import re

from .helpers import (
    run,
)


def test_demo_shows_the_vip_the_tasks_and_a_watch() -> None:
    result = run("demo")

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"^10\.0\.1\.2$", out, re.MULTILINE)
    assert len(re.findall(r"^10\.0\.1\.\d+\tweb\.\d\.\w{25}$", out, re.MULTILINE)) == 3
    events = re.findall(r"^  \d\d:\d\d:\d\d (.*)$", out, re.MULTILINE)
    assert len(events) == 5  # the initial set, then one event per change
    assert events[-1].endswith("now: (none)")
    assert result.stderr == ""
