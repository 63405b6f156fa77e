"""No entry point reports a forwarded answer's addresses: each mark alone, sync and asyncio.

A scriptable server plays the engine: its own names answer as the engine's
records do (TTL 600, no OPT, addresses in 10.0.0.0/8), and the names it
does not own come back as an upstream that rewrites NXDOMAIN answers them,
with one mark of a forwarded answer at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address

import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client import CollectorRegistry

import swarmdns
import swarmdns.aio
from swarmdns import DirectBackend, ForwardedAnswer, Provenance, ServiceNotFound
from swarmdns.metrics import WatchCollector

from .backends.hostile import HostileServer, Query, Script, add, response

ENGINE_NETWORKS = ["10.0.0.0/8"]
WEB_TASKS = ("10.0.1.3", "10.0.1.4")
WEB_VIP = "10.0.1.2"
#: What an NXDOMAIN-rewriting resolver answers for any name (moby/moby#40435).
HIJACKED = ("23.202.231.167", "23.217.138.108")

#: Each mark of a forwarded answer, alone: (OPT record?, TTL, addresses).
MARKS = {
    "opt": (True, 600, ("10.0.1.98", "10.0.1.99")),
    "ttl": (False, 300, ("10.0.1.98", "10.0.1.99")),
    "outside": (False, 600, HIJACKED),
}


def _engine(mark: str) -> HostileServer:
    opt, ttl, forwarded = MARKS[mark]

    def handler(query: Query) -> Script:
        name = query.name
        owned = {"tasks.web.": WEB_TASKS, "web.": (WEB_VIP,)}.get(name)
        if query.message.question[0].rdtype == dns.rdatatype.PTR:
            # A forwarded PTR answer, with the mark the address check cannot give.
            forwarded_ptr = mark != "outside"
            message = response(query, edns=forwarded_ptr and opt)
            add(message, name, "PTR", "web.1.faketaskid000000000000000.net.")
            message.answer[0].ttl = ttl if forwarded_ptr else 600
            return [message]
        if owned is not None:
            message = response(query, edns=False)  # the engine's own: no OPT
            add(message, name, "A", *owned)
            message.answer[0].ttl = 600
            return [message]
        message = response(query, edns=opt)
        add(message, name, "A", *forwarded)
        message.answer[0].ttl = ttl
        return [message]

    return HostileServer(handler)


@pytest.fixture(params=sorted(MARKS))
def engine(request: pytest.FixtureRequest) -> Iterator[HostileServer]:
    with _engine(request.param) as server:
        yield server


@pytest.fixture
def backend(engine: HostileServer) -> DirectBackend:
    return DirectBackend([engine.nameserver], provenance=Provenance.engine(ENGINE_NETWORKS))


def _ips(*addresses: str) -> tuple[IPv4Address, ...]:
    return tuple(IPv4Address(a) for a in addresses)


def test_the_engines_own_names_still_answer(backend: DirectBackend) -> None:
    assert swarmdns.task_ips("web", backend=backend) == _ips(*WEB_TASKS)
    assert swarmdns.service_vip("web", backend=backend) == IPv4Address(WEB_VIP)


def test_task_ips_of_a_forwarded_name_are_none(backend: DirectBackend) -> None:
    assert swarmdns.task_ips("gone", backend=backend) == ()
    assert asyncio.run(swarmdns.aio.task_ips("gone", backend=backend)) == ()


def test_tasks_of_a_forwarded_name_are_none(backend: DirectBackend) -> None:
    assert swarmdns.tasks("gone", backend=backend) == ()
    assert asyncio.run(swarmdns.aio.tasks("gone", backend=backend)) == ()


def test_a_forwarded_ptr_answer_gives_no_identity(
    request: pytest.FixtureRequest, backend: DirectBackend
) -> None:
    mark = request.node.callspec.params["engine"]

    tasks = swarmdns.tasks("web", backend=backend)

    assert [task.ip for task in tasks] == list(_ips(*WEB_TASKS))
    names = {task.name for task in tasks}
    assert names == ({"web.1.faketaskid000000000000000"} if mark == "outside" else {None})


def test_the_vip_of_a_forwarded_name_is_not_found_and_says_why(backend: DirectBackend) -> None:
    with pytest.raises(ServiceNotFound, match=r"forwarded 'gone\.' to the host's resolvers"):
        swarmdns.service_vip("gone", backend=backend)
    with pytest.raises(ServiceNotFound, match="is not the engine's own"):
        asyncio.run(swarmdns.aio.service_vip("gone", backend=backend))


def test_the_answer_keeps_the_reason(engine: HostileServer, backend: DirectBackend) -> None:
    answer = backend.resolve(swarmdns.Question(name="tasks.gone.", rdtype="A"), 2.0)

    assert (answer.records, answer.nxdomain) == ((), True)
    assert answer.forwarded is not None


def test_strict_raises_forwarded_answer(engine: HostileServer) -> None:
    strict = DirectBackend(
        [engine.nameserver], provenance=Provenance.engine(ENGINE_NETWORKS, strict=True)
    )

    with pytest.raises(ForwardedAnswer, match="Its records are not tasks") as caught:
        swarmdns.task_ips("gone", backend=strict)
    with pytest.raises(ForwardedAnswer):
        asyncio.run(swarmdns.aio.task_ips("gone", backend=strict))

    assert caught.value.name == "tasks.gone."
    assert swarmdns.task_ips("web", backend=strict) == _ips(*WEB_TASKS)


def test_watches_see_no_tasks_for_a_forwarded_name(backend: DirectBackend) -> None:
    with swarmdns.watch_tasks("gone", backend=backend, interval=0.01) as watch:
        first = next(watch)
    with swarmdns.watch_services(["gone", "web"], backend=backend, interval=0.01) as fleet:
        initial = {change.service: change.current for change in (next(fleet), next(fleet))}

    async def aio() -> tuple[tuple[IPv4Address, ...], tuple[IPv4Address, ...]]:
        async with swarmdns.aio.watch_tasks("gone", backend=backend, interval=0.01) as one:
            single = (await anext(one)).current
        async with swarmdns.aio.watch_services(["gone"], backend=backend, interval=0.01) as many:
            fleet_set = (await anext(many)).current
        return single, fleet_set

    assert first.current == ()
    assert initial == {"gone": (), "web": _ips(*WEB_TASKS)}
    assert asyncio.run(aio()) == ((), ())


def test_the_watchers_in_a_thread_see_no_tasks(backend: DirectBackend) -> None:
    with swarmdns.TaskWatcher("gone", backend=backend, interval=0.01) as watcher:
        assert watcher.wait_until_started(10)
        single = watcher.current
    with swarmdns.FleetWatcher(["gone"], backend=backend, interval=0.01) as fleet:
        # Its initial set may come before a wait_for_change() would begin.
        _until(lambda: fleet.health["gone"].changes >= 1, "the initial set")
        several = fleet.current

    assert single == ()
    assert several == {"gone": ()}


def test_the_command_line_reports_no_tasks_and_no_vip(engine: HostileServer) -> None:
    env = {
        **os.environ,
        "SWARMDNS_NAMESERVER": engine.nameserver,
        "SWARMDNS_PROVENANCE": ",".join(ENGINE_NETWORKS),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "swarmdns", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    tasks = run("tasks", "gone")
    vip = run("vip", "gone")

    assert (tasks.returncode, tasks.stdout) == (1, "")
    assert (vip.returncode, vip.stdout) == (1, "")
    assert "forwarded" in vip.stderr
    for address in (*HIJACKED, "10.0.1.98"):
        assert address not in tasks.stdout + tasks.stderr + vip.stdout


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within 10 s: {what}")
        time.sleep(0.01)


def test_a_watch_shows_the_forwarding_in_its_health_its_metrics_and_one_warning(
    backend: DirectBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="swarmdns")
    registry = CollectorRegistry()
    with swarmdns.FleetWatcher(["gone", "web"], backend=backend, interval=0.01) as fleet:
        registry.register(WatchCollector(fleet))
        _until(lambda: all(h.lookups >= 3 for h in fleet.health.values()), "three lookups each")
        health = fleet.health
        flags = {
            service: registry.get_sample_value("swarmdns_answer_forwarded", {"service": service})
            for service in ("gone", "web")
        }

    assert health["gone"].forwarded is not None
    assert health["web"].forwarded is None
    assert flags == {"gone": 1.0, "web": 0.0}
    warnings = [r.getMessage() for r in caplog.records if "forwarded" in r.getMessage()]
    assert warnings == [
        f"the engine forwarded tasks.gone. to the host's resolvers, so it reads as no tasks:"
        f" {health['gone'].forwarded}"
    ]
