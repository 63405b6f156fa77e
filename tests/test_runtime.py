"""Swarm or Compose: which name lists the instances, how ``auto`` is told, and ``whoami()``."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

import pytest

import swarmdns
import swarmdns.aio
from swarmdns import Answer, Question, StaticBackend
from swarmdns._backends.nameserver import Nameserver
from swarmdns._cli.app import main
from swarmdns._memo import cache_sizes, clear_caches
from swarmdns._own_addresses import default_route_subnets
from swarmdns._provenance import EngineRules
from swarmdns._runtime import compose_container, identity, swarm_task

IP = IPv4Address
TASK_ID = "k3j5l7m9n1p3q5r7s9t1v3x5z"  # 25 lowercase letters and digits, as swarmkit's
OTHER_ID = "a1b2c3d4e5f6g7h8i9j0k1l2m"


class Engine(StaticBackend):
    """A StaticBackend that says it asks the engine at 127.0.0.11, and counts the questions."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.asked: list[tuple[str, str]] = []
        self.timeouts: list[float] = []
        self.failing_ptr = False

    def nameservers(self) -> tuple[Nameserver, ...]:
        return (Nameserver("127.0.0.11", engine=EngineRules()),)

    def resolve(self, question: Question, timeout: float) -> Answer:
        self.asked.append((question.rdtype, question.name))
        self.timeouts.append(timeout)
        if self.failing_ptr and question.rdtype == "PTR":
            raise swarmdns.ResolutionTimeout("the engine did not answer", name=question.name)
        return super().resolve(question, timeout)


@pytest.fixture(autouse=True)
def auto(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``auto`` as an application gets it: no SWARMDNS_RUNTIME, nothing learned before."""
    monkeypatch.delenv("SWARMDNS_RUNTIME", raising=False)
    clear_caches()
    yield
    clear_caches()


def compose_engine(**more: str) -> Engine:
    """Project ``proj``: web with three containers; this container is proj-app-1."""
    return Engine(
        {"web": ["172.20.0.4", "172.20.0.3", "172.20.0.5"], "app": ["172.20.0.2"]},
        ptr={
            "172.20.0.2": "proj-app-1.proj_default.",
            "172.20.0.3": "proj-web-1.proj_default.",
            "172.20.0.4": "proj-web-2.proj_default.",
            "172.20.0.5": "proj-web-3.proj_default.",
            **more,
        },
    )


def swarm_engine() -> Engine:
    """A Swarm: web has a VIP and two tasks; this container is task app.1 on ``net``."""
    return Engine(
        {"web": ["10.0.1.2"], "tasks.web": ["10.0.1.3", "10.0.1.4"]},
        ptr={
            "10.0.1.3": f"web.1.{OTHER_ID}.net.",
            "10.0.1.4": f"web.2.{OTHER_ID}.net.",
            "10.0.1.7": f"app.1.{TASK_ID}.net.",
            "10.0.0.7": f"app.1.{TASK_ID}.ingress.",
        },
    )


def inside(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> None:
    monkeypatch.setenv(swarmdns.OWN_ADDRESSES_VARIABLE, ",".join(addresses))


# -- reading PTR targets -----------------------------------------------------------------


def test_a_swarm_target_names_a_task_and_a_compose_target_a_container() -> None:
    task = swarm_task(IP("10.0.1.3"), f"web.1.{TASK_ID}.net.")
    assert task is not None
    assert (task.service, task.slot, task.task_id, task.network) == ("web", 1, TASK_ID, "net")
    assert identity(IP("10.0.1.3"), f"web.1.{TASK_ID}.net.") == ("swarm", task)
    told = identity(IP("172.20.0.3"), "my-proj-web-3.my-proj_default.")
    assert told is not None
    runtime, container = told
    assert runtime == "compose"
    assert (container.project, container.service, container.slot) == ("my-proj", "web", 3)
    assert (container.name, container.network, container.task_id) == (
        "my-proj-web-3",
        "my-proj_default",
        None,
    )


@pytest.mark.parametrize(
    ("target", "service", "expected"),
    [
        ("proj-web-1.proj_default.", "web", ("proj", "web", 1, "proj-web-1")),
        ("proj-my-web-12.proj_back.", "my-web", ("proj", "my-web", 12, "proj-my-web-12")),
        ("proj_web_2.proj_default.", "web", ("proj", "web", 2, "proj_web_2")),  # Compose v1
        ("sdnstest-web-1.sdnstest.", None, ("sdnstest", "web", 1, "sdnstest-web-1")),
        ("db.proj_default.", "db", (None, "db", None, "db")),  # container_name: db
    ],
)
def test_a_container_name_is_read_as_project_service_and_number(
    target: str, service: str | None, expected: tuple[object, ...]
) -> None:
    container = compose_container(IP("172.20.0.3"), target, service)
    assert container is not None
    assert (container.project, container.service, container.slot, container.name) == expected


@pytest.mark.parametrize(
    "target",
    [
        "proj-web#-1.proj_default.",
        "proj-{web}-1.proj_default.",
        "proj\\032web-1.proj_default.",  # a space, as dnspython writes it
        "proj-web-1.proj\\;default.",
        "-proj-web-1.proj_default.",
        "proj-web-1.",
    ],
)
def test_a_container_name_or_network_docker_would_not_allow_is_no_container(
    target: str,
) -> None:
    assert compose_container(IP("172.20.0.3"), target, "web") is None
    assert identity(IP("172.20.0.3"), target) is None


@pytest.mark.parametrize(
    "target",
    ["web.1.short.net.", "host.example.com.", "lonely.", "web..net."],
)
def test_a_target_that_is_neither_a_task_nor_a_container_is_no_identity(target: str) -> None:
    assert identity(IP("10.0.1.3"), target) is None


# -- choosing the runtime ----------------------------------------------------------------


def test_runtime_compose_lists_every_container_of_the_service_name() -> None:
    engine = compose_engine()
    assert swarmdns.task_ips("web", backend=engine, runtime="compose") == (
        IP("172.20.0.3"),
        IP("172.20.0.4"),
        IP("172.20.0.5"),
    )
    assert engine.asked == [("A", "web.")]


def test_runtime_swarm_never_reads_the_service_name_as_its_tasks() -> None:
    engine = compose_engine()  # no tasks.web: the engine forwards it
    assert swarmdns.task_ips("web", backend=engine, runtime="swarm") == ()
    assert engine.asked == [("A", "tasks.web.")]


def test_tasks_under_compose_give_each_container_its_identity() -> None:
    found = swarmdns.tasks("web", backend=compose_engine(), runtime="compose")
    assert [(t.name, t.project, t.service, t.slot) for t in found] == [
        ("proj-web-1", "proj", "web", 1),
        ("proj-web-2", "proj", "web", 2),
        ("proj-web-3", "proj", "web", 3),
    ]


def test_service_vip_under_compose_says_there_is_none_without_asking() -> None:
    engine = compose_engine()
    with pytest.raises(swarmdns.NoVirtualIP, match="no virtual IP: this runs under Compose"):
        swarmdns.service_vip("web", backend=engine, runtime="compose")
    assert engine.asked == []


@pytest.mark.parametrize("value", ["kubernetes", "Swarm ", ""])
def test_a_runtime_that_is_not_one_is_refused(value: str) -> None:
    with pytest.raises(swarmdns.ConfigurationError, match="is not a runtime: say 'swarm'"):
        swarmdns.task_ips("web", backend=compose_engine(), runtime=value)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="runtime must be a str"):
        swarmdns.task_ips("web", backend=compose_engine(), runtime=1)  # type: ignore[arg-type]


def test_the_variable_chooses_the_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(swarmdns.RUNTIME_VARIABLE, "Compose")
    assert len(swarmdns.task_ips("web", backend=compose_engine())) == 3
    monkeypatch.setenv(swarmdns.RUNTIME_VARIABLE, "docker")
    with pytest.raises(swarmdns.ConfigurationError, match="SWARMDNS_RUNTIME='docker'"):
        swarmdns.task_ips("web", backend=compose_engine())


def test_auto_in_a_compose_container_asks_the_engine_once_then_the_service_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inside(monkeypatch, "127.0.0.1", "172.20.0.2")
    engine = compose_engine()
    assert len(swarmdns.task_ips("web", backend=engine)) == 3
    assert len(swarmdns.task_ips("web", backend=engine)) == 3
    assert engine.asked == [
        ("PTR", "2.0.20.172.in-addr.arpa."),  # loopback is never asked about
        ("A", "web."),
        ("A", "web."),
    ]
    assert cache_sizes()["swarmdns._runtime.detected"] == 1


def test_auto_in_a_swarm_task_asks_tasks_of_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    inside(monkeypatch, "10.0.1.7")
    engine = swarm_engine()
    assert swarmdns.task_ips("web", backend=engine) == (IP("10.0.1.3"), IP("10.0.1.4"))
    assert engine.asked[-1] == ("A", "tasks.web.")


def test_auto_where_no_address_is_named_is_a_swarm_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inside(monkeypatch, "192.0.2.9")
    engine = compose_engine()
    assert swarmdns.task_ips("web", backend=engine) == ()
    assert engine.asked == [("PTR", "9.2.0.192.in-addr.arpa."), ("A", "tasks.web.")]


def test_auto_without_an_engine_is_a_swarm_and_asks_nothing_more() -> None:
    backend = StaticBackend({"tasks.web": ["10.0.1.3"], "web": ["10.0.1.2"]})
    assert swarmdns.task_ips("web", backend=backend) == (IP("10.0.1.3"),)


def test_auto_remembers_nothing_when_the_engine_cannot_be_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inside(monkeypatch, "172.20.0.2")
    engine = compose_engine()
    engine.failing_ptr = True
    with pytest.raises(swarmdns.ResolutionTimeout):
        swarmdns.task_ips("web", backend=engine)
    assert ("A", "tasks.web.") not in engine.asked  # never read the forwarded name
    engine.failing_ptr = False
    assert len(swarmdns.task_ips("web", backend=engine)) == 3


def test_a_watch_under_compose_follows_the_containers(monkeypatch: pytest.MonkeyPatch) -> None:
    inside(monkeypatch, "172.20.0.2")
    engine = compose_engine()
    with swarmdns.watch_tasks("web", backend=engine, interval=0.01, jitter=0) as watch:
        assert "'tasks.web.'" in repr(watch)  # not told yet: named as in a Swarm
        assert len(next(watch).current) == 3
        assert "'web.'" in repr(watch)  # told: named by the name it asks
        engine.set("web", ["172.20.0.3"])
        assert next(watch).removed == frozenset({IP("172.20.0.4"), IP("172.20.0.5")})
        engine.remove("web")  # scaled to 0: the engine forwards the name, NXDOMAIN
        assert next(watch).current == ()


@pytest.mark.parametrize("front_end", ["sync", "aio", "thread"])
def test_a_fleet_tells_the_runtime_before_its_first_lookup(
    monkeypatch: pytest.MonkeyPatch, front_end: str
) -> None:
    inside(monkeypatch, "172.20.0.2")
    engine = compose_engine()
    options = {"backend": engine, "interval": 0.01, "jitter": 0.0}
    if front_end == "sync":
        with swarmdns.watch_services(["web", "app"], **options) as fleet:  # type: ignore[arg-type]
            fleet.wait_for_tasks("web", 3, timeout=5)
            current = dict(fleet.current)
    elif front_end == "thread":
        with swarmdns.FleetWatcher(["web", "app"], **options) as watcher:  # type: ignore[arg-type]
            watcher.wait_for_tasks("web", 3, timeout=5)
            current = dict(watcher.current)
    else:

        async def main() -> dict[str, tuple[IPv4Address, ...]]:
            async with swarmdns.aio.watch_services(["web", "app"], **options) as fleet:  # type: ignore[arg-type]
                await fleet.wait_for_tasks("web", 3, timeout=5)
                return dict(fleet.current)

        current = asyncio.run(main())
    assert len(current["web"]) == 3
    assert ("A", "tasks.web.") not in engine.asked
    assert engine.asked[0] == ("PTR", "2.0.20.172.in-addr.arpa.")


# -- whoami ------------------------------------------------------------------------------


def test_whoami_in_a_swarm_task_is_its_overlay_address_never_ingress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inside(monkeypatch, "10.0.0.7", "10.0.1.7", "172.18.0.5", "10.0.1.2")
    me = swarmdns.whoami(backend=swarm_engine())
    assert (me.ip, me.service, me.slot, me.task_id, me.network) == (
        IP("10.0.1.7"),
        "app",
        1,
        TASK_ID,
        "net",
    )


def test_whoami_in_a_compose_container(monkeypatch: pytest.MonkeyPatch) -> None:
    inside(monkeypatch, "172.20.0.2")
    me = asyncio.run(swarmdns.aio.whoami(backend=compose_engine()))
    assert (me.ip, me.project, me.service, me.slot, me.name) == (
        IP("172.20.0.2"),
        "proj",
        "app",
        1,
        "proj-app-1",
    )


def test_whoami_on_several_networks_needs_one_named(monkeypatch: pytest.MonkeyPatch) -> None:
    inside(monkeypatch, "172.20.0.2", "172.21.0.2")
    engine = compose_engine(**{"172.21.0.2": "proj-app-1.proj_back."})
    with pytest.raises(swarmdns.SelfUnknown, match=r"several networks \('proj_back', 'proj_def"):
        swarmdns.whoami(backend=engine)
    assert swarmdns.whoami("proj_back", backend=engine).ip == IP("172.21.0.2")
    with pytest.raises(swarmdns.SelfUnknown, match="no address on network 'other'") as raised:
        swarmdns.whoami("other", backend=engine)
    assert raised.value.name == "other"
    assert isinstance(raised.value, LookupError)


def test_whoami_outside_any_container_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    inside(monkeypatch, "192.0.2.9")
    with pytest.raises(swarmdns.SelfUnknown, match=r"names none of its own addresses \(192"):
        swarmdns.whoami(backend=compose_engine())


def test_a_bad_own_addresses_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    inside(monkeypatch, "10.0.1.7", "web")
    with pytest.raises(
        swarmdns.ConfigurationError, match=r"SWARMDNS_OWN_ADDRESSES='10\.0\.1\.7,web'"
    ):
        swarmdns.whoami(backend=swarm_engine())


def test_swarmdns_self_prints_the_identity_as_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    inside(monkeypatch, "10.0.1.7")
    engine = swarm_engine()
    monkeypatch.setattr(swarmdns._cli.query, "_backend", lambda nameserver: engine)
    assert main(["self", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {
        "ip": "10.0.1.7",
        "name": f"app.1.{TASK_ID}",
        "service": "app",
        "slot": 1,
        "node_id": None,
        "task_id": TASK_ID,
        "network": "net",
        "project": None,
        "runtime": "swarm",
    }
    inside(monkeypatch, "192.0.2.9")
    assert main(["self"]) == 1
    assert "cannot tell who this container is" in capsys.readouterr().err


def test_auto_with_the_system_resolver_asks_the_engine_in_resolv_conf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import swarmdns._where as where_module  # noqa: PLC0415 - the module under test

    inside(monkeypatch, "172.20.0.2")
    monkeypatch.setattr(where_module, "system_nameserver", lambda: "127.0.0.11")
    where = where_module.where_for(None, swarmdns.SystemBackend())
    assert (where.runtime, where.engine, where.own) == (
        "auto",
        "127.0.0.11",
        (IP("172.20.0.2"),),
    )
    monkeypatch.setattr(where_module, "system_nameserver", lambda: "192.0.2.53")
    monkeypatch.delenv(swarmdns.OWN_ADDRESSES_VARIABLE)
    clear_caches()
    assert where_module.where_for(None, swarmdns.SystemBackend()).settled == "swarm"


def test_what_a_pretended_container_told_is_not_kept_for_the_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A test inside a Compose container of a fake, then one outside any, with one backend."""

    class Fake(Engine):
        def nameservers(self) -> tuple[Nameserver, ...]:  # a fake on loopback, called the engine
            return (Nameserver("127.0.0.1", 5353, engine=EngineRules()),)

    fake = Fake(
        {"web": ["172.20.0.3"], "tasks.web": ["10.0.1.3"]},
        ptr={"172.20.0.2": "proj-app-1.proj_default."},
    )
    inside(monkeypatch, "172.20.0.2")
    assert swarmdns.task_ips("web", backend=fake) == (IP("172.20.0.3"),)  # told: Compose
    monkeypatch.delenv(swarmdns.OWN_ADDRESSES_VARIABLE)
    assert swarmdns.task_ips("web", backend=fake) == (IP("10.0.1.3"),)  # no engine: a Swarm


def test_auto_stops_at_the_first_address_the_engine_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task's gateway-bridge address, whose PTR the engine forwards, is never asked."""
    inside(monkeypatch, "10.0.1.7", "172.18.0.5")
    engine = swarm_engine()
    swarmdns.task_ips("web", backend=engine, timeout=5)
    assert engine.asked == [("PTR", "7.1.0.10.in-addr.arpa."), ("A", "tasks.web.")]


def test_each_own_address_gets_half_of_the_time_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An address whose PTR is forwarded to a silent upstream takes at most its share."""
    inside(monkeypatch, "172.18.0.5", "10.0.1.7")
    engine = swarm_engine()
    swarmdns.task_ips("web", backend=engine, timeout=5)
    assert [kind for kind, _ in engine.asked] == ["PTR", "PTR", "A"]
    first, second, lookup = engine.timeouts
    assert 2 < first <= 2.5  # half of 5 s
    assert 2 < second <= 2.5  # half of what is left: nothing was waited for
    assert lookup > 4


def test_the_default_route_s_networks_come_last() -> None:
    def hexed(address: str) -> str:  # as the kernel prints it: the bytes in this machine's order
        return f"{int.from_bytes(IP(address).packed, sys.byteorder):08X}"

    header = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT"
    rows = [
        ("eth1", "0.0.0.0", "172.18.0.1", "0003", "0.0.0.0"),  # the default route
        ("eth0", "10.0.1.0", "0.0.0.0", "0001", "255.255.255.0"),  # the overlay
        ("eth1", "172.18.0.0", "0.0.0.0", "0001", "255.255.0.0"),  # docker_gwbridge
    ]
    routes = "\n".join(
        [header]
        + [
            f"{iface}\t{hexed(dest)}\t{hexed(gw)}\t{flags}\t0\t0\t0\t{hexed(mask)}\t0\t0\t0"
            for iface, dest, gw, flags, mask in rows
        ]
    )
    assert default_route_subnets(routes) == (IPv4Network("172.18.0.0/16"),)
