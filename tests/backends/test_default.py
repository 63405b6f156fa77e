"""Backends: the default one, user-written ones, StaticBackend and SystemBackend."""

from __future__ import annotations

import asyncio
import pickle
import socket
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

import swarmdns
import swarmdns.aio
from swarmdns import (
    Answer,
    DNSPythonBackend,
    NoVirtualIP,
    Question,
    ResolutionError,
    ResolutionTimeout,
    ServiceNotFound,
    StaticBackend,
    SwarmDNSError,
    SystemBackend,
)


@pytest.fixture
def restore_default() -> Iterator[None]:
    yield
    swarmdns.set_default_backend(None)


def test_builtin_default_is_dnspython(restore_default: None) -> None:
    swarmdns.set_default_backend(None)

    assert isinstance(swarmdns.get_default_backend(), DNSPythonBackend)


def test_default_backend_is_used_by_both_front_ends(restore_default: None) -> None:
    swarmdns.set_default_backend(StaticBackend({"tasks.web": ["10.0.1.4", "10.0.1.3"]}))

    expected = (IPv4Address("10.0.1.3"), IPv4Address("10.0.1.4"))
    assert swarmdns.task_ips("web") == expected
    assert asyncio.run(swarmdns.aio.task_ips("web")) == expected


def test_something_that_is_not_a_backend_is_refused() -> None:
    with pytest.raises(TypeError, match="needs a resolve"):
        swarmdns.set_default_backend("127.0.0.11")  # type: ignore[arg-type]


class SyncOnly:
    def resolve(self, question: Question, timeout: float) -> Answer:
        raise NotImplementedError


class AsyncOnly:
    async def resolve_async(self, question: Question, timeout: float) -> Answer:
        raise NotImplementedError


def test_a_sync_only_backend_cannot_serve_aio() -> None:
    with pytest.raises(TypeError, match="has no async resolve_async"):
        asyncio.run(swarmdns.aio.task_ips("web", backend=SyncOnly()))


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


def test_static_backend_answers_from_memory() -> None:
    backend = StaticBackend(
        {"web.": ["10.0.1.2"], "TASKS.web": ["10.0.1.3"], "db": []},
        ptr={"10.0.1.3": "web.1.abc.proxy."},
    )

    assert swarmdns.service_vip("web", backend=backend) == IPv4Address("10.0.1.2")
    assert [t.task_id for t in swarmdns.tasks("web", backend=backend)] == ["abc"]
    with pytest.raises(ServiceNotFound, match="answered no address"):
        swarmdns.service_vip("db", backend=backend)
    backend.set("tasks.web", ["10.0.1.3", "10.0.1.9"])
    assert len(swarmdns.task_ips("web", backend=backend)) == 2
    backend.remove("tasks.web")
    assert swarmdns.task_ips("web", backend=backend) == ()
    assert repr(backend) == "<StaticBackend: 2 names, 1 PTR>"


def test_static_backend_checks_its_input() -> None:
    with pytest.raises(TypeError, match="must be a list"):
        StaticBackend({"web": "10.0.1.2"})
    with pytest.raises(ValueError, match="not an IPv4 address"):
        StaticBackend({"web": ["10.0.1.300"]})
    with pytest.raises(ValueError, match="non-empty string"):
        StaticBackend({"": ["10.0.1.2"]})


def test_static_backend_in_dnsrr_mode() -> None:
    backend = StaticBackend({"db": ["10.0.1.5", "10.0.1.4"]})

    with pytest.raises(NoVirtualIP) as caught:
        swarmdns.service_vip("db", backend=backend)
    assert caught.value.addresses == (IPv4Address("10.0.1.4"), IPv4Address("10.0.1.5"))
    assert caught.value.nameserver == "static"


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


def test_errors_derive_from_the_base_and_the_matching_builtin() -> None:
    assert issubclass(swarmdns.ServiceNotFound, LookupError)
    assert issubclass(swarmdns.NoVirtualIP, LookupError)
    assert issubclass(swarmdns.ResolutionTimeout, TimeoutError)
    assert issubclass(swarmdns.InvalidName, ValueError)
    assert issubclass(swarmdns.ConfigurationError, ValueError)
    for error in (
        swarmdns.ServiceNotFound,
        swarmdns.NoVirtualIP,
        swarmdns.ResolutionTimeout,
        swarmdns.ResolutionError,
        swarmdns.InvalidName,
        swarmdns.ConfigurationError,
    ):
        assert issubclass(error, SwarmDNSError)


def test_errors_survive_pickling() -> None:
    error = NoVirtualIP(
        "m", name="db.", nameserver="127.0.0.11:53", addresses=[IPv4Address("10.0.0.5")]
    )

    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes

    assert (type(copy), str(copy), copy.name, copy.nameserver, copy.addresses) == (
        NoVirtualIP,
        "m",
        "db.",
        "127.0.0.11:53",
        (IPv4Address("10.0.0.5"),),
    )


def test_public_api_is_sorted_and_complete() -> None:
    # Sorted the way ruff (RUF022) keeps it: constants, classes, then functions.
    def group(name: str) -> tuple[bool, bool, str]:
        return (not name.isupper(), not name[0].isupper(), name)

    assert swarmdns.__all__ == sorted(swarmdns.__all__, key=group)
    assert all(hasattr(swarmdns, name) for name in swarmdns.__all__)


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

    with pytest.raises(TypeError, match="DNSPythonBackend"):
        swarmdns.set_default_backend(dns.resolver.Resolver(configure=False))  # type: ignore[arg-type]


def test_static_backend_checks_ptr_targets() -> None:
    with pytest.raises(TypeError, match="PTR target"):
        StaticBackend(ptr={"10.0.1.3": None})  # type: ignore[dict-item]


def test_importing_swarmdns_leaves_heavy_modules_alone() -> None:
    # Import time is measured in tests/benchmarks; this guards the reason it is low.
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = (
        "import sys, swarmdns; print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('dns', 'asyncio', 'logging', 'concurrent')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]"
