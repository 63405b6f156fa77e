"""Every time option of every command takes one grammar, shows it in ``--help``, and says so."""

from __future__ import annotations

import re

import pytest

from swarmdns import ConfigurationError
from swarmdns._cli import app
from swarmdns._cli.query import Query
from swarmdns._cli.tasks import TasksRequest
from swarmdns._cli.watch import WatchRequest
from swarmdns.testing import FakeSwarm

from .helpers import ROOT, run

#: The grammar, as every time option's --help and docs/cli.md show it.
GRAMMAR = "DURATION: 2, 0.5s, 500ms, 1m, 1h"

#: Each command's time options: those that take a DURATION.
TIME_OPTIONS = {
    "vip": {"--timeout"},
    "tasks": {"--timeout"},
    "watch": {
        "--timeout",
        "--interval",
        "--fail-after",
        "--exec-timeout",
        "--wait",
        "--hold-for",
        "--splay",
    },
    "serve": set(),
    "control": set(),
    "demo": set(),
}

#: How each command is given the arguments it needs besides the option tried.
_ARGUMENTS = {
    "vip": ["web"],
    "tasks": ["web"],
    "watch": ["web", "--exec", "true", "--min", "1", "--supervise", "true"],
}


def _seconds(command: str, option: str, text: str) -> object:
    """What ``command`` reads from ``option`` given as ``text``: its value, checked."""
    options = app.parser().parse_args([command, *_ARGUMENTS[command], option, text])
    if command == "vip":
        return Query.from_options(options).timeout
    if command == "tasks":
        return TasksRequest.from_options(options).query.timeout
    request = WatchRequest.from_options(options)
    attribute = option.removeprefix("--").replace("-", "_")
    return request.query.timeout if option == "--timeout" else getattr(request, attribute)


_EACH_OPTION = [
    pytest.param(command, option, id=f"{command} {option}")
    for command, options in TIME_OPTIONS.items()
    for option in sorted(options - {"--wait"})
]


@pytest.mark.parametrize(("command", "option"), _EACH_OPTION)
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("10s", 10.0), ("1m", 60.0), ("1h", 3600.0), ("3", 3.0), ("0.25", 0.25)],
)
def test_every_time_option_takes_the_duration_grammar(
    command: str, option: str, text: str, seconds: float
) -> None:
    assert _seconds(command, option, text) == seconds


@pytest.mark.parametrize(
    ("text", "window"),
    [("500ms", (0.5, 2.0)), ("10s:1m", (10.0, 60.0)), ("2", (2.0, 8.0)), ("0", (0.0, 0.0))],
)
def test_wait_takes_two_durations(text: str, window: tuple[float, float]) -> None:
    assert _seconds("watch", "--wait", text) == window


@pytest.mark.parametrize(("command", "option"), _EACH_OPTION)
@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("soon", "is not a duration: it takes a number of seconds such as 2, 0.5s, 500ms"),
        ("2x", "is not a duration"),
        ("500 us", "is not a duration"),
        ("1e400", "is not a duration"),
        ("-1", "cannot be negative"),
        ("0", "is not a positive number of seconds"),
        ("0ms", "is not a positive number of seconds"),
    ],
)
def test_a_bad_time_option_says_which_and_what_it_takes(
    command: str, option: str, text: str, words: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        _seconds(command, option, text)

    assert str(caught.value).startswith(f"{option} {text!r} {words}")
    assert caught.value.source == option


def test_the_time_options_of_the_issue_are_accepted(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=1)

    result = run("watch", "web", "--interval", "500ms", "--exec-timeout", "10s",
                 "--fail-after", "1m", "--timeout", "1.5s", "--wait", "100ms:1s",
                 "--exec", "true", "--once")  # fmt: skip

    assert (result.returncode, result.stderr) == (0, "")


def _entries(help_text: str) -> dict[str, str]:
    """Each option of a ``--help``, and its text, with whitespace made single spaces."""
    options = help_text.split("\noptions:\n", 1)[1].split("\n\n", 1)[0]
    entries = re.split(r"\n(?=  -)", options)
    found = {}
    for entry in entries:
        flags = re.findall(r"(--[a-z-]+)", entry.split("  ", 2)[1])
        found[flags[-1] if flags else entry] = " ".join(entry.split())
    return found


@pytest.mark.parametrize("command", list(TIME_OPTIONS))
def test_help_shows_the_one_grammar_for_every_time_option(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        app.main([command, "--help"])
    entries = _entries(capsys.readouterr().out)

    with_the_grammar = {option for option, text in entries.items() if GRAMMAR in text}
    taking_a_duration = {option for option, text in entries.items() if "DURATION" in text}
    assert with_the_grammar == taking_a_duration == TIME_OPTIONS[command]


def test_the_docs_show_the_grammar() -> None:
    assert GRAMMAR in " ".join((ROOT / "docs" / "cli.md").read_text().split())


def test_reading_the_options_of_a_watch_leaves_them_as_they_were() -> None:
    options = app.parser().parse_args(
        ["watch", "web", "api", "web", "--interval", "500ms", "--exec", "true", "--wait", "1s"]
    )
    before = vars(options).copy()

    request = WatchRequest.from_options(options)

    assert vars(options) == before
    assert (request.services, request.interval, request.wait) == (("web", "api"), 0.5, (1.0, 4.0))
