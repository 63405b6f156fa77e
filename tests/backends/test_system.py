"""SystemBackend: the C library's resolver."""

from __future__ import annotations

import asyncio
import functools
import socket
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

import swarmdns
import swarmdns.aio
from swarmdns import (
    ForwardedAnswer,
    Provenance,
    ResolutionError,
    SystemBackend,
)
from swarmdns._backends import nameserver, system


def fake_getaddrinfo(error: int | None, *addresses: str) -> object:
    def getaddrinfo(host: str, port: object, **kwargs: object) -> list[tuple[object, ...]]:
        if error is not None:
            raise socket.gaierror(error, "simulated")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in addresses]

    return getaddrinfo


def test_system_backend_reads_getaddrinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        socket, "getaddrinfo", fake_getaddrinfo(None, "10.0.1.4", "10.0.1.3", "10.0.1.4")
    )

    assert swarmdns.task_ips("web", backend=SystemBackend()) == (
        IPv4Address("10.0.1.3"),
        IPv4Address("10.0.1.4"),
    )


def test_system_backend_tells_missing_from_failing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo(socket.EAI_NONAME))
    assert swarmdns.task_ips("web", backend=SystemBackend()) == ()

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo(socket.EAI_AGAIN))
    with pytest.raises(ResolutionError, match=r"the system resolver failed on A 'tasks\.web\.'"):
        swarmdns.task_ips("web", backend=SystemBackend())


def test_system_backend_reads_ptr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo(None, "10.0.1.3"))
    asked = []

    def gethostbyaddr(address: str) -> tuple[str, list[str], list[str]]:
        asked.append(address)
        return ("web.1.abcdefghijklmnopqrstuvwxy.proxy", [], [address])

    monkeypatch.setattr(socket, "gethostbyaddr", gethostbyaddr)

    (task,) = asyncio.run(swarmdns.aio.tasks("web", backend=SystemBackend()))

    assert asked == ["10.0.1.3"]
    assert (task.slot, task.task_id, task.network) == (1, "abcdefghijklmnopqrstuvwxy", "proxy")


@pytest.mark.parametrize("resolv_conf_names", ["127.0.0.11", "192.0.2.53"])
def test_addresses_outside_the_engines_networks_are_no_tasks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, resolv_conf_names: str
) -> None:
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text(f"nameserver {resolv_conf_names}\noptions ndots:0\n")
    read = functools.partial(nameserver.system_nameserver, str(resolv_conf))
    monkeypatch.setattr(system, "system_nameserver", read)
    monkeypatch.setattr(system, "container_networks", lambda: (IPv4Network("10.0.1.0/24"),))
    monkeypatch.setattr(
        socket, "getaddrinfo", fake_getaddrinfo(None, "23.202.231.167", "23.217.138.108")
    )
    question = swarmdns.Question(name="tasks.gone.", rdtype="A")

    answer = SystemBackend(provenance=Provenance()).resolve(question, 1.0)

    if resolv_conf_names == "127.0.0.11":  # the engine: its networks decide
        assert (answer.records, answer.nxdomain) == ((), True)
        assert (
            answer.forwarded == "23.202.231.167 lies outside the engine's networks (10.0.1.0/24)"
        )
        with pytest.raises(ForwardedAnswer, match="not the engine's own"):
            SystemBackend(provenance=Provenance(strict=True)).resolve(question, 1.0)
    else:  # another resolver: taken as it answers
        assert answer.records == ("23.202.231.167", "23.217.138.108")
        assert answer.forwarded is None
