"""Every Python example in the README and in docs/ runs, and passes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import runpy
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

import pytest

import swarmdns
from swarmdns.testing import FakeSwarm

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_FILE_MARKER = re.compile(r"\A# file: (test_\w+\.py)\n")
_IN_A_SWARM_TASK = '# in a Swarm task, with a service "web" of 3 replicas:'
_IN_TASK_WEB_1 = "# in task web.1 of that service:"


def examples() -> Sequence[object]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(pytest.param(match.group(1), id=f"{page.relative_to(ROOT)}:{line}"))
    return found


def test_there_are_examples() -> None:
    assert len(examples()) >= 4


@pytest.mark.parametrize("code", examples())
def test_example(code: str, tmp_path: Path, pytester: pytest.Pytester) -> None:
    marker = _FILE_MARKER.match(code)
    if marker:
        # A test file for a downstream project: run it with pytest, as they would.
        pytester.makepyfile(**{marker.group(1)[:-3]: code})
        result = pytester.runpytest_subprocess("-W", "error")
        outcomes = result.parseoutcomes()
        assert outcomes.get("passed", 0) >= 1
        result.assert_outcomes(passed=outcomes["passed"])
        return
    script = tmp_path / "example.py"
    script.write_text(code)
    with mock.patch.dict(os.environ), contextlib.ExitStack() as stack:
        if code.startswith(_IN_A_SWARM_TASK):
            # Stand in for the engine at 127.0.0.11, as the example describes.
            swarm = stack.enter_context(FakeSwarm(seed=1))
            swarm.create_service("web", replicas=3, network="proxy")
            os.environ[swarmdns.NAMESERVER_VARIABLE] = swarm.nameserver
            if _IN_TASK_WEB_1 in code:
                (first, *_) = sorted(swarm.service("web").tasks, key=lambda t: t.slot or 0)
                os.environ[swarmdns.OWN_ADDRESSES_VARIABLE] = str(first.ip)
        stack.callback(swarmdns.set_default_backend, None)
        runpy.run_path(str(script), run_name="__main__")


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^```sh\n(.*?)\n```$", readme, re.MULTILINE | re.DOTALL)
    test_command = next(c for c in commands if "pytest" in c)

    assert test_command in ci.splitlines()


def test_json_examples_parse() -> None:
    blocks = [
        block
        for page in PAGES
        for block in re.findall(
            r"^```json\n(.*?)^```$", page.read_text(), re.MULTILINE | re.DOTALL
        )
    ]

    assert blocks
    for block in blocks:
        json.loads(block)


def test_the_serve_description_example_runs(tmp_path: Path) -> None:
    (block,) = re.findall(
        r"^```json\n(.*?)^```$", (ROOT / "docs" / "cli.md").read_text(), re.MULTILINE | re.DOTALL
    )
    description = json.loads(block)
    with FakeSwarm() as swarm:
        for service in description["services"]:
            swarm.create_service(**service)
        assert [s.name for s in swarm.services] == ["web", "db"]
