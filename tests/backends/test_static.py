"""StaticBackend: names and addresses held in memory."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

import swarmdns
import swarmdns.aio
from swarmdns import (
    NoVirtualIP,
    ServiceNotFound,
    StaticBackend,
)


def test_static_backend_answers_from_memory() -> None:
    backend = StaticBackend(
        {"web.": ["10.0.1.2"], "TASKS.web": ["10.0.1.3"], "db": []},
        ptr={"10.0.1.3": "web.1.abcdefghijklmnopqrstuvwxy.proxy."},
    )

    assert swarmdns.service_vip("web", backend=backend) == IPv4Address("10.0.1.2")
    assert [t.task_id for t in swarmdns.tasks("web", backend=backend)] == [
        "abcdefghijklmnopqrstuvwxy"
    ]
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


def test_static_backend_checks_ptr_targets() -> None:
    with pytest.raises(TypeError, match="PTR target"):
        StaticBackend(ptr={"10.0.1.3": None})  # type: ignore[dict-item]
