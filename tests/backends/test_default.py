"""Choosing a backend: the process-wide default, and backends that misbehave."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

import swarmdns
import swarmdns.aio
from swarmdns import (
    Answer,
    DNSPythonBackend,
    Question,
    ResolutionError,
    ResolutionTimeout,
    StaticBackend,
)


@pytest.fixture
def restore_default() -> Iterator[None]:
    yield
    swarmdns.set_default_backend(None)


def test_builtin_default_is_the_direct_backend(restore_default: None) -> None:
    swarmdns.set_default_backend(None)

    assert isinstance(swarmdns.get_default_backend(), swarmdns.DirectBackend)
    assert DNSPythonBackend is swarmdns.DirectBackend  # its former name still works


def test_default_backend_is_used_by_both_front_ends(restore_default: None) -> None:
    swarmdns.set_default_backend(StaticBackend({"tasks.web": ["10.0.1.4", "10.0.1.3"]}))

    expected = (IPv4Address("10.0.1.3"), IPv4Address("10.0.1.4"))
    assert swarmdns.task_ips("web") == expected
    assert asyncio.run(swarmdns.aio.task_ips("web")) == expected


def test_something_that_is_not_a_backend_is_refused() -> None:
    with pytest.raises(TypeError, match="needs a resolve"):
        swarmdns.set_default_backend("127.0.0.11")  # type: ignore[arg-type]


class AsyncOnly:
    async def resolve_async(self, question: Question, timeout: float) -> Answer:
        raise NotImplementedError


class SyncStatic:
    """A backend with only resolve(), as a user might write one."""

    def __init__(self) -> None:
        self.inner = swarmdns.StaticBackend({"tasks.web": ["10.0.1.3"]})

    def resolve(self, question: Question, timeout: float) -> Answer:
        return self.inner.resolve(question, timeout)


def test_a_sync_only_backend_serves_aio_from_a_worker_thread() -> None:
    found = asyncio.run(swarmdns.aio.task_ips("web", backend=SyncStatic()))

    assert found == (IPv4Address("10.0.1.3"),)


def test_a_backend_with_neither_method_cannot_serve_aio() -> None:
    with pytest.raises(TypeError, match="has neither resolve"):
        asyncio.run(swarmdns.aio.task_ips("web", backend=object()))  # type: ignore[arg-type]


def test_an_async_only_backend_cannot_serve_sync_code() -> None:
    with pytest.raises(TypeError, match=r"has no resolve\(\) method"):
        swarmdns.task_ips("web", backend=AsyncOnly())


class Exploding:
    def resolve(self, question: Question, timeout: float) -> Answer:
        raise KeyError("boom")

    async def resolve_async(self, question: Question, timeout: float) -> Answer:
        raise KeyError("boom")


def test_unexpected_backend_errors_become_resolution_errors() -> None:
    backend = Exploding()

    with pytest.raises(
        ResolutionError, match=r"failed to answer A 'tasks\.web\.': KeyError"
    ) as caught:
        swarmdns.task_ips("web", backend=backend)
    assert isinstance(caught.value.__cause__, KeyError)
    with pytest.raises(ResolutionError, match="KeyError"):
        asyncio.run(swarmdns.aio.task_ips("web", backend=backend))


class Sleepy:
    async def resolve_async(self, question: Question, timeout: float) -> Answer:
        await asyncio.sleep(3600)  # ignores its timeout
        raise AssertionError("unreachable")


def test_an_async_backend_that_ignores_the_deadline_is_cut_off() -> None:
    with pytest.raises(ResolutionTimeout, match="Sleepy"):
        asyncio.run(swarmdns.aio.task_ips("web", backend=Sleepy(), timeout=0.1))


class Careless:
    def resolve(self, question: Question, timeout: float) -> Answer:
        return None  # type: ignore[return-value]

    async def resolve_async(self, question: Question, timeout: float) -> Answer:
        return Answer(question=Question(name="other.", rdtype="A"), nameserver="careless")


def test_a_backend_that_returns_nonsense_gets_a_clear_error() -> None:
    with pytest.raises(ResolutionError, match=r"returned None for A 'tasks\.web\.'"):
        swarmdns.task_ips("web", backend=Careless())
    with pytest.raises(ResolutionError, match="returned an Answer to another question"):
        asyncio.run(swarmdns.aio.task_ips("web", backend=Careless()))


class OwnTimeout:
    async def resolve_async(self, question: Question, timeout: float) -> Answer:
        raise TimeoutError("the backend's own")


def test_a_backends_own_timeout_error_is_its_failure_not_an_overrun() -> None:
    with pytest.raises(ResolutionError, match="TimeoutError: the backend's own"):
        asyncio.run(swarmdns.aio.task_ips("web", backend=OwnTimeout()))


def test_a_dnspython_resolver_is_not_a_backend() -> None:
    import dns.resolver  # noqa: PLC0415

    with pytest.raises(TypeError, match=r"use swarmdns\.DirectBackend"):
        swarmdns.set_default_backend(dns.resolver.Resolver(configure=False))  # type: ignore[arg-type]


class SlowerDirect(swarmdns.DirectBackend):
    """A subclass that does more than its base, and so no longer keeps its deadline."""

    async def resolve_async(self, question: Question, timeout: float) -> Answer:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


def test_keeping_the_deadline_is_declared_by_each_class_not_inherited() -> None:
    with pytest.raises(ResolutionTimeout, match="SlowerDirect"):
        asyncio.run(swarmdns.aio.task_ips("web", backend=SlowerDirect(["127.0.0.1"]), timeout=0.1))
