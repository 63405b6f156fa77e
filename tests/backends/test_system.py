"""SystemBackend: the C library's resolver."""

from __future__ import annotations

import asyncio
import socket
from ipaddress import IPv4Address

import pytest

import swarmdns
import swarmdns.aio
from swarmdns import (
    ResolutionError,
    SystemBackend,
)


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
        return ("web.1.abc.proxy", [], [address])

    monkeypatch.setattr(socket, "gethostbyaddr", gethostbyaddr)

    (task,) = asyncio.run(swarmdns.aio.tasks("web", backend=SystemBackend()))

    assert asked == ["10.0.1.3"]
    assert (task.slot, task.task_id, task.network) == (1, "abc", "proxy")
