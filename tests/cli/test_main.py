"""The ``swarmdns`` command as a whole: parsing, usage errors, exit codes, its output."""

from __future__ import annotations

import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import swarmdns.testing
from swarmdns import _cli
from swarmdns._cli import app
from swarmdns._cli.options import parse_duration, parse_wait
from swarmdns.testing import FakeSwarm

from .helpers import (
    DEADLINE,
    ROOT,
    SWARMDNS,
    assert_one_line_error,
    run,
)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((), "the following arguments are required: COMMAND"),
        (("vip",), "the following arguments are required: SERVICE"),
        (("tasks", "web", "--timeout", "0"), "'0' is not a positive number of seconds"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        (("vip", "tasks.web"), "pass the service's own name, 'web'"),
        (("vip", "web", "--nameserver", "nowhere"), "not an IP address"),
        (("serve", "--port", "70000"), "'70000' is not a port number"),
        (("tasks", "web", "--min", "-1"), "'-1' is not a number of tasks (0 or more)"),
        (("tasks", "web", "--min", "all"), "'all' is not a number of tasks"),
        (("watch", "web", "--fail-after", "0"), "'0' is not a positive number of seconds"),
        (("watch", "web", "--once", "--nameserver", "nowhere"), "not an IP address"),
        (("watch", "web", "tasks.api", "--once"), "pass the service's own name, 'api'"),
    ],
)
def test_usage_errors_exit_2(swarm_dns: FakeSwarm, args: tuple[str, ...], words: str) -> None:
    assert_one_line_error(run(*args), 2, words)


@pytest.mark.parametrize(
    "args", [("tasks", "web"), ("watch", "web"), ("watch", "web", "--once")], ids=" ".join
)
def test_a_bad_nameserver_variable_exits_2(
    monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    monkeypatch.setenv("SWARMDNS_NAMESERVER", "nowhere")

    assert_one_line_error(run(*args), 2, "SWARMDNS_NAMESERVER")


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize(
    "args",
    [("tasks", "web"), ("watch", "web", "--interval", "60"), ("watch", "web", "--once")],
    ids=["tasks", "watch", "watch-once"],
)
def test_output_nobody_reads_ends_quietly(
    swarm_dns: FakeSwarm, args: tuple[str, ...], unbuffered: bool
) -> None:
    swarm_dns.create_service("web", replicas=3)
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    reading, writing = os.pipe()
    os.close(reading)  # the pipe has no reader from the start
    try:
        child = subprocess.Popen(
            [*SWARMDNS, *args], stdout=writing, stderr=subprocess.PIPE, env=env
        )
    finally:
        os.close(writing)

    _, err = child.communicate(timeout=DEADLINE)

    assert (child.returncode, err) == (0, b"")


@pytest.mark.parametrize("command", [(), ("tasks",), ("watch",), ("serve",)])
def test_help_shows_the_exit_codes_as_the_docs_do(command: tuple[str, ...]) -> None:
    result = run(*command, "--help")

    assert result.returncode == 0
    assert _cli.EXIT_CODES in result.stdout
    assert f"```text\n{_cli.EXIT_CODES}\n```" in (ROOT / "docs" / "cli.md").read_text()


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("swarmdns")

    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, check=False
    )

    assert (result.returncode, result.stdout) == (0, f"swarmdns {swarmdns.__version__}\n")


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("vip", "web", "--timeout", "soon"), "--timeout"),
        (("tasks", "web", "--min", "all"), "--min"),
        (("watch", "web", "--interval", "0"), "--interval"),
        (("watch", "web", "--fail-after", "-1"), "--fail-after"),
        (("watch", "web", "--exec", "true", "--exec-timeout", "10x"), "--exec-timeout"),
        (("watch", "web", "--exec", "true", "--wait", "1:2:3"), "--wait"),
        (("watch", "web", "--exec", "true", "--wait", "10:2"), "--wait"),
        (("watch", "web", "--render", "nothing"), "--render"),
        (("watch", "web", "--render", "/nowhere/t.j2:out"), "--render"),
        (("watch", "web", "--metrics", "host:"), "--metrics"),
        (("serve", "--port", "http"), "--port"),
        (("serve", "--control", "70000"), "--control"),
        (("serve", "--service", "web=lots"), "--service"),
        (("control", "--address", "nowhere", "state"), "--address"),
        (("control", "--address", "127.0.0.1:99999", "state"), "--address"),
    ],
    ids=" ".join,
)
def test_every_bad_option_value_is_one_line_of_one_format(
    args: tuple[str, ...], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _cli.main(list(args), out=io.StringIO())
    err = capsys.readouterr().err

    assert code == 2
    value = args[args.index(option) + 1]
    assert err.startswith(f"swarmdns: {option} {value!r} ")
    assert re.fullmatch(r"swarmdns: --[a-z-]+ '[^']*' (is not|cannot) [^\n]+\n", err), err


def _doc_command_lines() -> list[str]:
    """The ``$ swarmdns ...`` command lines of docs/cli.md (continuations joined).

    Those shown with an option's error are left out: they are the next test's.
    """
    text = (ROOT / "docs" / "cli.md").read_text().replace("\\\n", " ")
    return re.findall(r"^\$ swarmdns (.*)$(?!\nswarmdns: --)", text, re.MULTILINE)


def test_the_docs_have_command_lines() -> None:
    assert len(_doc_command_lines()) >= 10


@pytest.mark.parametrize("line", _doc_command_lines())
def test_each_command_line_of_the_docs_parses(line: str) -> None:
    options = app.parser().parse_args(shlex.split(line))

    for name in ("timeout", "interval", "fail_after", "exec_timeout"):
        if getattr(options, name, None) is not None:
            parse_duration(getattr(options, name), source=name, positive=True)
    if getattr(options, "wait", None) is not None:
        parse_wait(options.wait)


def _doc_option_errors() -> list[tuple[str, str]]:
    """The command lines of docs/cli.md shown with a bad option's error, and that error."""
    text = (ROOT / "docs" / "cli.md").read_text()
    return re.findall(r"^\$ swarmdns (.*)\n(swarmdns: --.*\n)", text, re.MULTILINE)


def test_the_docs_show_option_errors() -> None:
    assert len(_doc_option_errors()) >= 2


@pytest.mark.parametrize(("line", "error"), _doc_option_errors())
def test_each_option_error_of_the_docs_is_what_the_command_says(
    line: str, error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _cli.main(shlex.split(line), out=io.StringIO())

    assert (code, capsys.readouterr().err) == (2, error)
