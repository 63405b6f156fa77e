"""service_vip(), task_ips() and tasks() against the fake, through both front ends.

Every test runs twice: through ``swarmdns`` and through ``swarmdns.aio``. The
calls pass no backend: the ``swarm_dns`` fixture's SWARMDNS_NAMESERVER is
what points the default backend at the fake.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import attrs
import pytest

import swarmdns
import swarmdns.aio
from swarmdns import (
    InvalidName,
    NoVirtualIP,
    ResolutionError,
    ResolutionTimeout,
    ServiceNotFound,
    Task,
)
from swarmdns.testing import Delay, EngineVersion, FakeSwarm, Fault, Upstream


@attrs.frozen
class API:
    """One front end, called synchronously whichever it is."""

    name: str
    service_vip: Callable[..., IPv4Address]
    task_ips: Callable[..., tuple[IPv4Address, ...]]
    tasks: Callable[..., tuple[Task, ...]]


def _blocking(function: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(function(*args, **kwargs))

    return call


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> API:
    if request.param == "sync":
        return API("sync", swarmdns.service_vip, swarmdns.task_ips, swarmdns.tasks)
    return API(
        "async",
        _blocking(swarmdns.aio.service_vip),
        _blocking(swarmdns.aio.task_ips),
        _blocking(swarmdns.aio.tasks),
    )


# -- the names -----------------------------------------------------------------------


def test_vip(swarm_dns: FakeSwarm, api: API) -> None:
    web = swarm_dns.create_service("web", replicas=3)

    assert api.service_vip("web") == web.vip
    assert api.task_ips("web") == web.task_ips
    assert isinstance(api.task_ips("web")[0], IPv4Address)


def test_dnsrr_with_one_task_has_no_virtual_ip_either(swarm_dns: FakeSwarm, api: API) -> None:
    db = swarm_dns.create_service("db", replicas=1, endpoint_mode="dnsrr")

    with pytest.raises(NoVirtualIP) as caught:
        api.service_vip("db")

    assert caught.value.addresses == db.task_ips


def test_dnsrr_has_no_virtual_ip(swarm_dns: FakeSwarm, api: API) -> None:
    db = swarm_dns.create_service("db", replicas=3, endpoint_mode="dnsrr")

    with pytest.raises(NoVirtualIP) as caught:
        api.service_vip("db")

    assert caught.value.addresses == db.task_ips
    assert "task_ips('db')" in str(caught.value)
    assert swarm_dns.nameserver in str(caught.value)
    assert isinstance(caught.value, LookupError)
    assert api.task_ips("db") == db.task_ips


def test_network_scoped_names(swarm_dns: FakeSwarm, api: API) -> None:
    web = swarm_dns.create_service("web", replicas=2, network=["front", "back"])

    assert api.service_vip("web", network="back") == web.vips["back"]
    assert api.task_ips("web", network="front") == web.task_ips_on("front")
    assert api.task_ips("web", network="back") == web.task_ips_on("back")
    assert [t.network for t in api.tasks("web", network="back")] == ["back", "back"]


def test_stack_long_and_short_names(swarm_dns: FakeSwarm, api: API) -> None:
    web = swarm_dns.create_service("web", replicas=2, stack="shop")

    for name in ("shop_web", "web"):
        assert api.service_vip(name) == web.vip
        assert api.task_ips(name) == web.task_ips
    assert {t.service for t in api.tasks("web")} == {"shop_web"}


def test_zero_tasks_look_like_no_service(swarm_dns: FakeSwarm, api: API) -> None:
    swarm_dns.create_service("web", replicas=2)
    swarm_dns.scale("web", 0)

    assert api.task_ips("web") == ()
    assert api.tasks("web") == ()
    with pytest.raises(ServiceNotFound, match="zero running"):
        api.service_vip("web")


def test_unknown_service(swarm_dns: FakeSwarm, api: API) -> None:
    with pytest.raises(ServiceNotFound) as caught:
        api.service_vip("ghost")

    assert caught.value.name == "ghost."
    assert caught.value.nameserver == swarm_dns.nameserver
    assert "NXDOMAIN" in str(caught.value)
    assert api.task_ips("ghost") == ()


def test_more_tasks_than_fit_in_512_bytes_come_back_whole_by_edns(
    swarm_dns: FakeSwarm, api: API
) -> None:
    web = swarm_dns.create_service("web", replicas=70)

    assert api.task_ips("web") == web.task_ips
    (query,) = swarm_dns.queries
    assert (query.transport, query.truncated, query.answers) == ("udp", False, 70)


def test_more_tasks_than_fit_in_4096_bytes_come_back_whole_by_tcp(
    swarm_dns: FakeSwarm, api: API
) -> None:
    swarm_dns.create_network("big", subnet="10.8.0.0/21")
    web = swarm_dns.create_service("web", replicas=300, network="big")

    assert api.task_ips("web") == web.task_ips
    assert [(q.transport, q.truncated) for q in swarm_dns.queries] == [
        ("udp", True),
        ("tcp", False),
    ]


def test_names_match_in_any_case(swarm_dns: FakeSwarm, api: API) -> None:
    web = swarm_dns.create_service("web", replicas=2)

    assert api.task_ips("WEB") == web.task_ips
    assert api.service_vip("Web") == web.vip


def test_only_a_records_are_asked_for(swarm_dns: FakeSwarm, api: API) -> None:
    # The engine answers AAAA with an empty NOERROR: asking for it would only
    # risk reading "no addresses" where there are some.
    swarm_dns.create_service("web", replicas=2)

    api.service_vip("web")
    api.task_ips("web")

    assert [q.qtype for q in swarm_dns.queries] == ["A", "A", "A"]


def test_task_identity_from_ptr(swarm_dns: FakeSwarm, api: API) -> None:
    web = swarm_dns.create_service("web", replicas=3, network="proxy")

    found = api.tasks("web")

    assert found == tuple(
        Task(
            ip=t.ip,
            name=t.name,
            service="web",
            slot=t.slot,
            task_id=t.id,
            network="proxy",
        )
        for t in sorted(web.tasks, key=lambda t: t.ip)
    )
    assert sorted(str(q.qtype) for q in swarm_dns.queries) == ["A", "PTR", "PTR", "PTR"]


def test_global_task_identity_has_a_node_instead_of_a_slot(swarm_dns: FakeSwarm, api: API) -> None:
    swarm_dns.add_node()
    agent = swarm_dns.create_service("agent", mode="global", network="proxy")
    swarm_dns.settle()  # node 2's task reaches node 1's DNS by gossip

    found = api.tasks("agent")

    assert {(t.slot, t.node_id, t.task_id) for t in found} == {
        (None, t.node_id, t.id) for t in agent.tasks
    }


def test_task_whose_ptr_fails_keeps_its_address(swarm_dns: FakeSwarm, api: API) -> None:
    web = swarm_dns.create_service("web", replicas=3)
    broken = web.tasks[1].ip
    reverse = ".".join(reversed(str(broken).split("."))) + ".in-addr.arpa"
    swarm_dns.inject(Fault.SERVFAIL, name=reverse)

    found = {t.ip: t for t in api.tasks("web")}

    assert found[broken] == Task(ip=broken)
    assert all(t.task_id for ip, t in found.items() if ip != broken)


def test_nothing_is_cached(swarm_dns: FakeSwarm, api: API) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    before = api.task_ips("web")

    web = swarm_dns.scale("web", 4)

    assert len(before) == 2
    assert api.task_ips("web") == web.task_ips
    assert len(web.task_ips) == 4


# -- failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error", "words"),
    [
        (Fault.SERVFAIL, ResolutionError, "SERVFAIL"),
        (Fault.REFUSED, ResolutionError, "REFUSED"),
        # A datagram that does not answer the query is dropped: the wait goes on.
        (Fault.GARBAGE, ResolutionTimeout, "no answer"),
        (Fault.WRONG_ID, ResolutionTimeout, "no answer"),
        (Fault.NO_REPLY, ResolutionTimeout, "no answer"),
        (Delay(30), ResolutionTimeout, "no answer"),
    ],
    ids=lambda value: getattr(value, "name", None) or repr(value),
)
def test_each_fault_gives_its_error(
    swarm_dns: FakeSwarm,
    api: API,
    fault: Fault | Delay,
    error: type[swarmdns.SwarmDNSError],
    words: str,
) -> None:
    # A name of this test's own: the queries counted are its lookups', whatever
    # else in this process still asks the fake for "web" (CI saw one more, on 3.10).
    swarm_dns.create_service("faulty", replicas=2)
    swarm_dns.inject(fault)

    for lookup in (api.service_vip, api.task_ips, api.tasks):
        started = time.monotonic()
        with pytest.raises(error, match=words) as caught:
            lookup("faulty", timeout=0.3)
        if error is ResolutionTimeout:
            # It waited out the deadline rather than giving up early...
            assert time.monotonic() - started >= 0.3
        assert caught.value.nameserver == swarm_dns.nameserver
        assert "tasks.faulty." in str(caught.value) or "'faulty.'" in str(caught.value)
    # ...and sent no query after it: never a retry (service_vip() asks two names).
    # The fake may read the last query after the client gave up on it: wait for it.
    asked = ("faulty.", "tasks.faulty.")
    swarm_dns.wait_for_queries(3, name="tasks.faulty.")
    swarm_dns.wait_for_queries(1, name="faulty.")
    assert [swarm_dns.count_queries(name) for name in asked] == [1, 3]


def test_a_short_delay_is_just_a_slow_answer(swarm_dns: FakeSwarm, api: API) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    swarm_dns.inject(Delay(0.05))

    assert api.task_ips("web", timeout=5) == web.task_ips


def test_one_failure_is_reported_not_retried(swarm_dns: FakeSwarm, api: API) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    swarm_dns.inject([Fault.SERVFAIL], name="tasks.web")

    with pytest.raises(ResolutionError):
        api.task_ips("web")
    assert api.task_ips("web") == web.task_ips


@pytest.mark.parametrize(
    ("engine", "upstream", "error"),
    [
        ("20.10", Upstream.SERVFAIL, ResolutionError),  # relayed as it came, RA set
        ("20.10", Upstream.UNREACHABLE, ResolutionTimeout),  # no reply at all
        ("28.5", Upstream.NO_REPLY, ResolutionTimeout),  # its SERVFAIL comes after 4 s
    ],
)
def test_engines_without_upstream_fail_where_they_cannot_say_empty(
    swarm_dns: FakeSwarm,
    api: API,
    engine: EngineVersion,
    upstream: Upstream,
    error: type[Exception],
) -> None:
    swarm_dns.use_engine(engine)
    swarm_dns.upstream = upstream

    with pytest.raises(error):
        api.task_ips("ghost", timeout=0.3)


@pytest.mark.parametrize("upstream", [Upstream.SERVFAIL, Upstream.UNREACHABLE])
def test_a_new_engine_without_upstream_says_empty_as_in_production(
    swarm_dns: FakeSwarm, api: API, upstream: Upstream
) -> None:
    # Its own SERVFAIL without RA says that it forwarded the name: the fixture
    # makes the fake the engine, so the library reads it as on 127.0.0.11.
    web = swarm_dns.create_service("web", replicas=2)
    swarm_dns.upstream = upstream
    assert api.task_ips("web") == web.task_ips
    swarm_dns.scale("web", 0)

    assert api.task_ips("web") == ()
    with pytest.raises(ServiceNotFound):
        api.service_vip("web")


def test_a_nameserver_that_is_not_listening_is_a_failure(
    swarm_dns: FakeSwarm, api: API, monkeypatch: pytest.MonkeyPatch
) -> None:
    swarm_dns.stop()
    try:
        with pytest.raises(ResolutionError, match="Connection refused"):
            api.task_ips("web", timeout=5)
    finally:
        swarm_dns.start()
        monkeypatch.setenv(swarmdns.NAMESERVER_VARIABLE, swarm_dns.nameserver)


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "network", "words"),
    [
        ("", None, "empty"),
        ("a" * 64, None, "over DNS's limit of 63"),
        ("web!", None, "does not allow '!'"),
        ("wéb", None, "does not allow 'é'"),
        ("web.", None, "starts or ends with a dot"),
        (".web", None, "starts or ends with a dot"),
        ("-web", None, "'-' or '_' at either end"),
        ("web-", None, "'-' or '_' at either end"),
        ("web_", None, "'-' or '_' at either end"),
        ("tasks.web", None, "pass the service's own name, 'web'"),
        ("TASKS.web", None, "pass the service's own name, 'web'"),
        ("web.proxy", None, "pass the network with network="),
        ("web", "", "invalid network name '': it is empty"),
        ("web", "prox y", "does not allow ' '"),
        ("web", "proxy.", "starts or ends with a dot"),
        ("web", "a..b", "labels must not be empty"),
        ("web", "-proxy", "must start with a letter or digit"),
        ("web", "proxy-", "must not end with '-'"),
        ("web", "n" * 64, "over DNS's limit of 63"),
        ("w" * 63, ".".join(["n" * 60] * 4), "over DNS's limit of 253"),
    ],
)
def test_invalid_names_are_refused_before_any_query(
    swarm_dns: FakeSwarm, api: API, service: str, network: str | None, words: str
) -> None:
    for lookup in (api.service_vip, api.task_ips, api.tasks):
        with pytest.raises(InvalidName, match=words) as caught:
            lookup(service, network=network)
        assert isinstance(caught.value, ValueError)
    assert swarm_dns.queries == ()


@pytest.mark.parametrize("service", [None, 5, b"web"])
def test_a_name_that_is_not_a_string_is_a_type_error(
    swarm_dns: FakeSwarm, api: API, service: object
) -> None:
    with pytest.raises(TypeError, match="must be a str"):
        api.task_ips(service)
    assert swarm_dns.queries == ()


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan")])
def test_timeout_must_be_positive_and_finite(api: API, timeout: float) -> None:
    with pytest.raises(ValueError, match="positive, finite"):
        api.task_ips("web", timeout=timeout)


# -- the deadline, concurrency and cancellation ---------------------------------------


def test_ptr_lookups_run_concurrently_within_the_deadline(swarm_dns: FakeSwarm, api: API) -> None:
    # 48 PTR answers held back 0.3 s each fit a 2 s deadline only if asked
    # many at a time: one by one, 6 would make it.
    swarm_dns.create_service("web", replicas=48)
    swarm_dns.inject(Delay(0.3), qtype="PTR")

    found = api.tasks("web", timeout=2.0)

    assert len(found) == 48
    assert all(task.task_id for task in found)


def test_tasks_remember_no_identity_from_one_call_to_the_next(
    swarm_dns: FakeSwarm, api: API
) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    named = api.tasks("web")
    swarm_dns.inject(Fault.SERVFAIL, qtype="PTR")

    bare = api.tasks("web")

    assert named == tuple(task.as_dns() for task in web.tasks)
    assert bare == tuple(Task(ip=ip) for ip in web.task_ips)  # only a watch keeps names


def test_ptr_lookups_past_the_deadline_leave_bare_tasks(swarm_dns: FakeSwarm, api: API) -> None:
    web = swarm_dns.create_service("web", replicas=20)
    swarm_dns.inject(Delay(3600), qtype="PTR")

    found = api.tasks("web", timeout=0.3)  # pytest-timeout fails this if it waits

    assert found == tuple(Task(ip=ip) for ip in web.task_ips)


def test_a_failure_then_nxdomain_from_another_server_is_a_failure(
    swarm_dns: FakeSwarm, api: API
) -> None:
    swarm_dns.create_service("web", replicas=2)
    swarm_dns.inject(Fault.SERVFAIL)
    with FakeSwarm() as elsewhere:  # a second nameserver that knows nothing of the Swarm
        backend = swarmdns.DNSPythonBackend([swarm_dns.nameserver, elsewhere.nameserver])

        with pytest.raises(ResolutionError, match="SERVFAIL"):
            api.task_ips("web", backend=backend)
        assert len(elsewhere.queries) == 1  # it was asked, and its NXDOMAIN set aside


def test_cancelling_an_async_lookup_leaves_nothing_running(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=20)
    swarm_dns.inject(Delay(3600), qtype="PTR")

    async def main() -> set[asyncio.Task[Any]]:
        lookup = asyncio.create_task(swarmdns.aio.tasks("web", timeout=3000))
        await asyncio.to_thread(swarm_dns.wait_for_queries, 17)  # the A, then 16 PTRs
        lookup.cancel()
        with pytest.raises(asyncio.CancelledError):
            await lookup
        return asyncio.all_tasks() - {asyncio.current_task()}

    assert asyncio.run(main()) == set()
