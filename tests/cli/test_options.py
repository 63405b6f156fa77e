"""The command line's option types: durations, ``MIN[:MAX]``, ``TEMPLATE:DEST``, ports..."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from swarmdns import ConfigurationError
from swarmdns._cli.options import (
    RenderSpec,
    parse_count,
    parse_duration,
    parse_fraction,
    parse_listen_address,
    parse_port,
    parse_render_spec,
    parse_server_address,
    parse_service_spec,
    parse_wait,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2", 2.0),
        ("2.5", 2.5),
        (".5", 0.5),
        ("0", 0.0),
        ("500ms", 0.5),
        ("10s", 10.0),
        (" 3 s ", 3.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1e1", 10.0),
    ],
)
def test_durations(text: str, expected: float) -> None:
    assert parse_duration(text, source="--exec-timeout") == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "takes a number of seconds"),
        ("soon", "takes a number of seconds"),
        ("2x", "takes a number of seconds"),
        ("nan", "takes a number of seconds"),
        ("inf", "takes a number of seconds"),
        ("1e400", "takes a number of seconds"),
        ("-1", "cannot be negative"),
        ("-0.5s", "cannot be negative"),
    ],
)
def test_bad_durations_say_what_is_wanted(text: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(words)) as caught:
        parse_duration(text, source="--exec-timeout")

    assert caught.value.source == "--exec-timeout"
    assert str(caught.value).startswith("--exec-timeout ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2", (2.0, 8.0)),  # MAX is 4 x MIN, as in consul-template
        ("2:10", (2.0, 10.0)),
        ("0.5s:10s", (0.5, 10.0)),
        ("500ms:1m", (0.5, 60.0)),
        ("3:3", (3.0, 3.0)),
        ("0", (0.0, 0.0)),
        ("0:5", (0.0, 5.0)),
    ],
)
def test_wait(text: str, expected: tuple[float, float]) -> None:
    assert parse_wait(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("10:2", "MAX (2 s) is shorter than MIN (10 s)"),
        ("1:2:3", "takes MIN or MIN:MAX"),
        ("-1", "cannot be negative"),
        ("1:-2", "cannot be negative"),
        (":5", "takes a number of seconds"),
        ("5:", "takes a number of seconds"),
        ("fast", "takes a number of seconds"),
    ],
)
def test_bad_waits_say_what_is_wanted(text: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(words)) as caught:
        parse_wait(text)

    assert caught.value.source == "--wait"


def test_a_max_below_min_suggests_one_that_works() -> None:
    with pytest.raises(ConfigurationError, match=r"such as 10:40"):
        parse_wait("10:2")


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "upstreams.j2"
    path.write_text("{% for ip in ips %}server {{ ip }}:80;\n{% endfor %}")
    return path


def test_render_spec(template: Path, tmp_path: Path) -> None:
    spec = parse_render_spec(f"{template}:{tmp_path / 'out.conf'}")

    assert spec == RenderSpec(template, tmp_path / "out.conf")
    assert (spec.template, spec.dest) == (template, tmp_path / "out.conf")


def test_render_spec_with_relative_paths(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert parse_render_spec("upstreams.j2:out.conf") == (Path("upstreams.j2"), Path("out.conf"))


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("{template}", "takes TEMPLATE:DEST"),
        ("{template}:", "takes TEMPLATE:DEST"),
        (":{dir}/out", "takes TEMPLATE:DEST"),
        ("{dir}/missing.j2:{dir}/out", "the template '{dir}/missing.j2' does not exist"),
        ("{dir}:{dir}/out", "is not a file"),
        ("{template}:{dir}/nowhere/out", "the directory of DEST, '{dir}/nowhere', does not exist"),
        ("{template}:{dir}", "is a directory"),
        ("{template}:{template}", "DEST is the template itself"),
    ],
)
def test_bad_render_specs_say_what_is_wrong(
    spec: str, words: str, template: Path, tmp_path: Path
) -> None:
    text = spec.format(template=template, dir=tmp_path)

    with pytest.raises(ConfigurationError) as caught:
        parse_render_spec(text)

    assert words.format(template=template, dir=tmp_path) in str(caught.value)
    assert caught.value.source == "--render"
    assert repr(text) in str(caught.value)  # what was asked


def test_a_positive_duration_refuses_zero() -> None:
    assert parse_duration("1ms", source="--interval", positive=True) == 0.001
    with pytest.raises(ConfigurationError, match=r"^--interval '0s' is not a positive number"):
        parse_duration("0s", source="--interval", positive=True)


@pytest.mark.parametrize(("text", "port"), [("0", 0), ("53", 53), ("65535", 65535)])
def test_ports(text: str, port: int) -> None:
    assert parse_port(text, source="--port") == port


@pytest.mark.parametrize("text", ["65536", "-1", "http", "", "5.3"])
def test_bad_ports(text: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_port(text, source="--port")

    assert str(caught.value) == f"--port {text!r} is not a port number from 0 to 65535"
    assert caught.value.source == "--port"


def test_counts() -> None:
    assert parse_count("0", source="--min", of="tasks") == 0
    assert parse_count("12", source="--min", of="tasks") == 12
    with pytest.raises(ConfigurationError, match=r"^--min '-1' is not a number of tasks"):
        parse_count("-1", source="--min", of="tasks")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:9109", ("0.0.0.0", 9109)),
        ("[::1]:80", ("::1", 80)),
        ("host:1", ("host", 1)),
        ("9109", ("127.0.0.1", 9109)),  # a port alone: loopback only
    ],
)
def test_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_server_address(text, source="--metrics") == expected


@pytest.mark.parametrize("text", ["", "port", ":9109", "host:", "host:p", "host:70000", "70000"])
def test_bad_host_and_port(text: str) -> None:
    with pytest.raises(ConfigurationError, match=r"give PORT \(on 127\.0\.0\.1\) or HOST:PORT"):
        parse_server_address(text, source="--metrics")


def test_service_specs() -> None:
    assert parse_service_spec("web") == {"name": "web", "replicas": 1}
    assert parse_service_spec("web=0") == {"name": "web", "replicas": 0}
    with pytest.raises(ConfigurationError, match=r"^--service 'web=3x' is not NAME\[=REPLICAS\]"):
        parse_service_spec("web=3x")


def test_listen_addresses_are_addresses() -> None:
    assert parse_listen_address("127.0.0.1") == "127.0.0.1"
    assert parse_listen_address("localhost") in ("127.0.0.1", "::1")


@pytest.mark.parametrize(
    ("text", "expected"), [("0.5", 0.5), ("1", 1.0), (".25", 0.25), ("1e-3", 0.001)]
)
def test_fractions(text: str, expected: float) -> None:
    assert parse_fraction(text, source="--max-drop") == expected


@pytest.mark.parametrize("text", ["0", "1.5", "-0.5", "half", "", "nan", "inf", "50%"])
def test_bad_fractions_say_what_is_wanted(text: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_fraction(text, source="--max-drop")

    assert str(caught.value) == (
        f"--max-drop {text!r} is not a fraction above 0 and at most 1; give one such as 0.5 (half)"
    )
    assert caught.value.source == "--max-drop"
