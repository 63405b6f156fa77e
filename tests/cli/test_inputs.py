"""Bad values of every option: exit 2 and one line naming the option, never a traceback.

Each parser of ``swarmdns._cli.options`` is tried with every bad value of
its kind (digits of other scripts, which ``str.isdigit()`` takes, signs,
empty text, numbers too long for ``int()``, durations past a day); then the
command runs once with each option given a bad value, and with each value
the robustness review found a traceback for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmdns import ConfigurationError
from swarmdns._backends.nameserver import parse_nameserver
from swarmdns._cli.options import (
    parse_count,
    parse_duration,
    parse_port,
    parse_server_address,
    parse_service_spec,
    parse_wait,
)
from swarmdns._deadlines import MAX_SECONDS
from swarmdns.testing import FakeSwarm

from .helpers import assert_one_line_error, run

#: Digits of other scripts, which ``str.isdigit()`` takes: 53 (twice) and 5.
A53 = "\N{ARABIC-INDIC DIGIT FIVE}\N{ARABIC-INDIC DIGIT THREE}"
F53 = "\N{FULLWIDTH DIGIT FIVE}\N{FULLWIDTH DIGIT THREE}"
A5 = "\N{ARABIC-INDIC DIGIT FIVE}"

#: Every parser of a number, with the option its error names.
NUMBERS: dict[str, tuple[Callable[[str], object], str]] = {
    "port": (lambda text: parse_port(text, source="--port"), "--port"),
    "count": (lambda text: parse_count(text, source="--min", of="tasks"), "--min"),
    "host:port": (
        lambda text: parse_server_address(f"127.0.0.1:{text}", source="--metrics"),
        "--metrics",
    ),
    "replicas": (lambda text: parse_service_spec(f"web={text}"), "--service"),
    "nameserver port": (
        lambda text: parse_nameserver(f"127.0.0.1:{text}", source="--nameserver"),
        "--nameserver",
    ),
    "duration": (
        lambda text: parse_duration(text, source="--interval", positive=True),
        "--interval",
    ),
    "wait": (parse_wait, "--wait"),
}
_NOT_NUMBERS = ["²", A53, F53, A5, f"1{A5}", " ", "-1", "+1", "0x35", "5_3", "1" * 5000]
_TOO_LONG = ["1e308", "25h", "86401", "1441m", "86400001ms"]


@pytest.mark.parametrize(
    ("parser", "text"),
    [
        pytest.param(parser, text, id=f"{parser}-{text[:12]!r}")
        for parser in NUMBERS
        for text in [*_NOT_NUMBERS, *(_TOO_LONG if parser in ("duration", "wait") else [])]
    ],
)
def test_a_bad_number_names_its_option(parser: str, text: str) -> None:
    parse, option = NUMBERS[parser]

    with pytest.raises(ConfigurationError) as caught:
        parse(text)
    assert caught.value.source == option
    assert str(caught.value).startswith(option)


@pytest.mark.parametrize("text", ["24h", "86400", "1440m", "86400000ms"])
def test_a_day_is_the_longest_duration(text: str) -> None:
    assert parse_duration(text, source="--interval", positive=True) == MAX_SECONDS


def test_a_wait_without_max_waits_a_day_at_most() -> None:
    assert parse_wait("10h") == (36000.0, MAX_SECONDS)  # not 40 h: 4 x MIN, up to a day


def test_replicas_may_be_left_out() -> None:
    assert [parse_service_spec(text)["replicas"] for text in ("web", "web=", "web=05")] == [
        1,
        1,
        5,
    ]


@pytest.fixture
def nested(tmp_path: Path) -> Path:
    path = tmp_path / "nested.json"
    path.write_text('{"services": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return path


#: A bad value for each option of each command, and the words of its line.
CASES = [
    (("tasks", "web", "--timeout", "25h"), "--timeout '25h' is longer than a day"),
    (("vip", "web", "--timeout", "1e308"), "--timeout '1e308' is longer than a day"),
    (("tasks", "web", "--min", "²"), "--min '²' is not a number of tasks"),
    (("tasks", "web", "--nameserver", "127.0.0.1:²"), "--nameserver is '127.0.0.1:²'"),
    (("vip", "web", "--nameserver", f"127.0.0.1:{A53}"), f"port '{A53}' is not a number"),
    (("watch", "web", "--once", "--interval", "1e308"), "--interval '1e308' is longer than a day"),
    (
        ("watch", "web", "--once", "--interval", "1e308", "--fail-after", "0.1"),
        "--interval '1e308' is longer than a day",
    ),
    (("watch", "web", "--once", "--fail-after", "25h"), "--fail-after '25h' is longer than a day"),
    (("watch", "web", "--once", "--timeout", "86401"), "--timeout '86401' is longer than a day"),
    (
        ("watch", "web", "--once", "--exec", "true", "--exec-timeout", "1e308"),
        "--exec-timeout '1e308' is longer than a day",
    ),
    (
        ("watch", "web", "--once", "--exec", "true", "--wait", "1e308"),
        "--wait '1e308' is longer than a day",
    ),
    (("watch", "web", "--once", "--exec", ""), "--exec '' is empty; give a shell command"),
    (("watch", "web", "--once", "--exec", " \t"), "is empty; give a shell command"),
    (("watch", "web", "--once", "--metrics", "127.0.0.1:99999"), "--metrics '127.0.0.1:99999'"),
    (("watch", "web", "--once", "--metrics", f"127.0.0.1:{F53}"), f"--metrics '127.0.0.1:{F53}'"),
    (("watch", "web", "--metrics", "a" * 300 + ":9109"), "cannot serve metrics on aaa"),
    (("serve", "--service", "web=²"), "--service 'web=²' is not NAME[=REPLICAS]"),
    (("serve", "--port", "²"), "--port '²' is not a port number"),
    (("serve", "--control", A53), f"--control '{A53}' is not a port number"),
    (("serve", "--engine", ""), "--engine '' is not a Docker Engine version"),
    (("serve", "--nodes", "0"), "--nodes '0' is not a number of nodes (1 or more)"),
    (("serve", "--nodes", "²"), "--nodes '²' is not a number of nodes (1 or more)"),
    (("serve", "--nodes", "65"), "--nodes '65' cannot be used: nodes must be a whole number"),
    (("control", "--address", f"127.0.0.1:{A53}", "state"), f"--address '127.0.0.1:{A53}'"),
    (("control", "--address", "127.0.0.1:²", "state"), "--address '127.0.0.1:²' is not HOST:PORT"),
]


@pytest.mark.parametrize(("args", "words"), CASES, ids=lambda v: " ".join(v)[:60])
def test_a_bad_option_exits_2_with_one_line(
    swarm_dns: FakeSwarm, args: tuple[str, ...], words: str
) -> None:
    swarm_dns.create_service("web", replicas=1)  # what an option taken by mistake would find

    assert_one_line_error(run(*args), 2, words)


def test_a_description_nested_too_deep_exits_2_with_one_line(nested: Path) -> None:
    assert_one_line_error(run("serve", "--file", str(nested)), 2, "maximum recursion depth")


@pytest.mark.parametrize("value", ["127.0.0.1:²", f"127.0.0.1:{F53}"])
def test_a_nameserver_variable_in_other_digits_exits_2(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SWARMDNS_NAMESERVER", value)

    assert_one_line_error(run("tasks", "web"), 2, "SWARMDNS_NAMESERVER is")


_PARSERS: dict[str, Callable[[str], object]] = {
    **{name: parse for name, (parse, _) in NUMBERS.items()},
    "host:port whole": lambda text: parse_server_address(text, source="--metrics"),
    "service whole": parse_service_spec,
    "nameserver whole": lambda text: parse_nameserver(text, source="--nameserver"),
}
_ALPHABET = "0123456789.:-+ e[]hms\t_x²" + A5 + F53


@settings(max_examples=300)
@given(
    parser=st.sampled_from(sorted(_PARSERS)),
    text=st.text(st.sampled_from(_ALPHABET)) | st.text(),
)
def test_a_parser_returns_a_value_or_a_configuration_error(parser: str, text: str) -> None:
    try:
        value = _PARSERS[parser](text)
    except ConfigurationError:
        return
    if parser in ("duration", "wait"):
        seconds = value if isinstance(value, tuple) else (value,)
        assert all(0 <= each <= MAX_SECONDS for each in seconds)
