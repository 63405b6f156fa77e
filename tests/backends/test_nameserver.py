"""Finding the nameserver: SWARMDNS_NAMESERVER, then resolv.conf."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swarmdns import ConfigurationError
from swarmdns._backends.nameserver import (
    Nameserver,
    configured_nameservers,
    nameservers_from_resolv_conf,
    parse_nameserver,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.11", Nameserver("127.0.0.11", 53)),
        (" 127.0.0.1:5353 ", Nameserver("127.0.0.1", 5353)),
        ("::1", Nameserver("::1", 53)),
        ("[::1]", Nameserver("::1", 53)),
        ("[::1]:5353", Nameserver("::1", 5353)),
    ],
)
def test_parses_host_and_optional_port(text: str, expected: Nameserver) -> None:
    assert parse_nameserver(text, source="X") == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "not an IP address"),
        ("dns.example", "not an IP address"),
        ("127.0.0.1:", "port '' is not a number"),
        ("127.0.0.1:0", "port '0' is not a number from 1 to 65535"),
        ("127.0.0.1:99999", "from 1 to 65535"),
        ("127.0.0.1:x", "port 'x'"),
        ("[::1]:-1", "port '-1'"),
    ],
)
def test_bad_values_say_what_is_expected(text: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words) as caught:
        parse_nameserver(text, source="SWARMDNS_NAMESERVER")
    assert str(caught.value).startswith("SWARMDNS_NAMESERVER is")


def test_str_is_host_and_port() -> None:
    assert [str(Nameserver("127.0.0.11")), str(Nameserver("::1", 5353))] == [
        "127.0.0.11:53",
        "[::1]:5353",
    ]


def test_resolv_conf_lines() -> None:
    text = """
    # written by Docker
    search example.com
    nameserver 127.0.0.11
    nameserver fe80::1%eth0  # with a zone
    nameserver bogus
    ; nameserver 10.9.9.9
    options ndots:0
    """

    assert nameservers_from_resolv_conf("\n".join(line.strip() for line in text.splitlines())) == (
        Nameserver("127.0.0.11"),
        Nameserver("fe80::1"),
    )


def test_variable_comes_before_resolv_conf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.11\noptions ndots:0\n")

    monkeypatch.delenv("SWARMDNS_NAMESERVER", raising=False)
    assert configured_nameservers(str(conf)) == (Nameserver("127.0.0.11"),)
    monkeypatch.setenv("SWARMDNS_NAMESERVER", "127.0.0.1:5300")
    assert configured_nameservers(str(conf)) == (Nameserver("127.0.0.1", 5300),)


def test_no_nameserver_anywhere_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SWARMDNS_NAMESERVER", raising=False)
    empty = tmp_path / "resolv.conf"
    empty.write_text("search example.com\n")

    with pytest.raises(ConfigurationError, match="has no nameserver line"):
        configured_nameservers(str(empty))
    with pytest.raises(ConfigurationError, match="cannot be read"):
        configured_nameservers(str(tmp_path / "missing"))


def test_a_changed_resolv_conf_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SWARMDNS_NAMESERVER", raising=False)
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 10.0.0.1\n")
    assert configured_nameservers(str(conf)) == (Nameserver("10.0.0.1"),)

    conf.write_text("nameserver 10.0.0.2\n")  # the same size: only the time tells
    os.utime(conf, ns=(0, 10**9))
    assert configured_nameservers(str(conf)) == (Nameserver("10.0.0.2"),)

    replaced = tmp_path / "new"
    replaced.write_text("nameserver 127.0.0.11\n")
    replaced.replace(conf)  # as Docker rewrites it: a new file
    assert configured_nameservers(str(conf)) == (Nameserver("127.0.0.11"),)


def test_a_bad_variable_is_an_error_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMDNS_NAMESERVER", "not an address")

    for _ in range(2):
        with pytest.raises(ConfigurationError, match="SWARMDNS_NAMESERVER is 'not an address'"):
            configured_nameservers()
