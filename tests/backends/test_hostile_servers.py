"""The default backend against nameservers that misbehave, on real sockets.

Each test scripts a ``HostileServer`` (``hostile.py``) on 127.0.0.1 and asks
it through ``DirectBackend``, as an application would: truncated answers over
TCP, NOERROR answers with nothing usable in them, a silent first nameserver,
stray datagrams, and cancellation in the middle of a TCP exchange. The rules
come from docs/watching.md: a failure never changes a watch's set, and only
NXDOMAIN (or an empty NOERROR) means zero tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from ipaddress import IPv4Address

import dns.message
import dns.rcode
import pytest

import swarmdns
import swarmdns.aio
from swarmdns import (
    DirectBackend,
    ResolutionError,
    ResolutionTimeout,
    SwarmDNSError,
    TaskSetChange,
    TaskWatcher,
)

from .hostile import (
    Handler,
    HostileServer,
    Query,
    Script,
    Send,
    add,
    add_a,
    addresses,
    cached,
    other_id,
    response,
    to_wire,
    with_id,
)

SERVICE = "web"
TASKS = "tasks.web."
THREE = addresses(3)
FOUR = addresses(4)
#: More tasks than one 4096-byte datagram carries: the answer needs TCP.
MANY = addresses(300)

Serve = Callable[[Handler], HostileServer]
Lookup = Callable[[DirectBackend, float], tuple[IPv4Address, ...]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start hostile servers; each is stopped (sockets closed, thread joined) afterwards."""
    with contextlib.ExitStack() as stack:

        def start(handler: Handler) -> HostileServer:
            return stack.enter_context(HostileServer(handler))

        yield start


@pytest.fixture(params=["sync", "async"])
def task_ips(request: pytest.FixtureRequest) -> Lookup:
    """``swarmdns.task_ips``, then its asyncio twin, for the service ``web``."""

    def sync(backend: DirectBackend, timeout: float) -> tuple[IPv4Address, ...]:
        return swarmdns.task_ips(SERVICE, backend=backend, timeout=timeout)

    def in_asyncio(backend: DirectBackend, timeout: float) -> tuple[IPv4Address, ...]:
        return asyncio.run(swarmdns.aio.task_ips(SERVICE, backend=backend, timeout=timeout))

    return sync if request.param == "sync" else in_asyncio


def backend(*servers: HostileServer) -> DirectBackend:
    return DirectBackend([server.nameserver for server in servers])


def failure(
    lookup: Lookup, server: HostileServer, answers: str, timeout: float = 1.0
) -> SwarmDNSError:
    """The error the lookup ends with; fails the test if it returns addresses instead.

    ``answers`` says what the server answers, for the failure's message.
    """
    try:
        found = lookup(backend(server), timeout)
    except SwarmDNSError as error:
        return error
    pytest.fail(
        f"the lookup returned {[str(ip) for ip in found]} from a server that answers"
        f" {answers}, instead of raising an error"
    )


# -- handlers ----------------------------------------------------------------------------------


def answering(
    ips: Sequence[IPv4Address], *, udp_records: int | None = None, edns: bool = True
) -> Handler:
    """A good server: ``ips`` for tasks.web.; over UDP only the first ``udp_records``, with TC.

    Without ``edns`` its answers have the engine's usual shape, which the
    backend's fast reader reads (dnspython reads the others).
    """

    def build(query: Query) -> dns.message.Message:
        if query.transport == "udp" and udp_records is not None:
            return add_a(response(query, truncated=True, edns=edns), TASKS, ips[:udp_records])
        return add_a(response(query, edns=edns), TASKS, ips)

    return cached(build)


def truncated_over_tcp_too(ips: Sequence[IPv4Address]) -> Handler:
    """TC over UDP with one record, then TC over TCP too, with all but the last of ``ips``."""

    def handle(query: Query) -> Script:
        shown = ips[:1] if query.transport == "udp" else ips[:-1]
        return [add_a(response(query, truncated=True), TASKS, shown)]

    return handle


def by_lookup(*phases: tuple[int, Handler]) -> Handler:
    """Answer the first ``n`` lookups with one handler, the next ``m`` with another...

    A lookup starts with a UDP query; a TCP query belongs to the lookup before it.
    The last handler answers every later lookup.
    """
    lookup = 0

    def handle(query: Query) -> Script:
        nonlocal lookup
        if query.transport == "udp":
            lookup = query.number
        end = 0
        for count, handler in phases:
            end += count
            if lookup <= end:
                return handler(query)
        return phases[-1][1](query)

    return handle


def cname_chain_only(query: Query) -> Script:
    message = add(response(query), TASKS, "CNAME", "alias.example.")
    return [add(message, "alias.example.", "CNAME", "target.example.")]


def cname_loop(query: Query) -> Script:
    message = add(response(query), TASKS, "CNAME", "loop.example.")
    return [add(message, "loop.example.", "CNAME", TASKS)]


def another_names_addresses(query: Query) -> Script:
    return [add_a(response(query), "elsewhere.example.", THREE)]


def text_only(query: Query) -> Script:
    return [add(response(query), TASKS, "TXT", '"10.0.1.2"', '"10.0.1.3"')]


def ipv6_only(query: Query) -> Script:
    return [add(response(query), TASKS, "AAAA", "fd00::2", "fd00::3")]


def truncated_everywhere_without_records(query: Query) -> Script:
    return [response(query, truncated=True)]


def nxdomain_with_one_address(query: Query) -> Script:
    return [add_a(response(query, rcode=dns.rcode.NXDOMAIN), TASKS, THREE[:1])]


NOTHING_USABLE = [
    pytest.param(cname_chain_only, id="cname-chain-only"),
    pytest.param(cname_loop, id="cname-loop"),
    pytest.param(another_names_addresses, id="another-names-a"),
    pytest.param(text_only, id="txt-only"),
    pytest.param(ipv6_only, id="aaaa-only"),
    pytest.param(truncated_everywhere_without_records, id="tc-over-udp-and-tcp"),
]


def first_change_after_trouble(server: HostileServer) -> tuple[TaskSetChange, TaskSetChange]:
    """Watch ``web``, polling fast: its initial set, then its next change.

    ``fail_after`` ends a watch that never recovers (``WatchTimeout``), rather than hang.
    """
    with swarmdns.watch_tasks(
        SERVICE, backend=backend(server), interval=0.01, jitter=0.0, timeout=0.5, fail_after=5.0
    ) as watch:
        return next(watch), next(watch)


def assert_no_removal(initial: TaskSetChange, change: TaskSetChange) -> None:
    assert initial.current == THREE
    assert not change.removed, (
        f"the watch reported {sorted(map(str, change.removed))} removed on an answer that"
        f" is a failure, not a task set (the change: {change})"
    )
    assert change.added == {FOUR[-1]}
    assert change.current == FOUR


# -- 1. a TCP answer with TC set is never data ----------------------------------------------


def test_a_truncated_tcp_answer_is_an_error_not_a_subset(serve: Serve, task_ips: Lookup) -> None:
    server = serve(truncated_over_tcp_too(THREE))

    error = failure(task_ips, server, "TC over TCP too, with 2 of 3 records")

    assert isinstance(error, ResolutionError), error
    assert "truncat" in str(error).lower(), error
    assert server.count("tcp") >= 1  # it was asked over TCP


def test_a_watch_keeps_its_tasks_through_truncated_tcp_answers(serve: Serve) -> None:
    server = serve(
        by_lookup((1, answering(THREE)), (3, truncated_over_tcp_too(THREE)), (1, answering(FOUR)))
    )

    initial, change = first_change_after_trouble(server)

    assert_no_removal(initial, change)
    assert server.count("tcp") >= 3  # the truncated answers were served


# -- 2. NOERROR with nothing usable is an error; NODATA is zero tasks -----------------------


@pytest.mark.parametrize("handler", NOTHING_USABLE)
def test_noerror_without_a_usable_record_is_an_error(
    serve: Serve, task_ips: Lookup, handler: Handler
) -> None:
    error = failure(task_ips, serve(handler), f"NOERROR with no A record ({handler.__name__})")

    assert isinstance(error, ResolutionError), error


def test_a_cname_chain_in_the_answer_is_followed_to_its_addresses(
    serve: Serve, task_ips: Lookup
) -> None:
    def chain(query: Query) -> Script:
        message = add(response(query), TASKS, "CNAME", "alias.example.")
        add(message, "alias.example.", "CNAME", "target.example.")
        return [add_a(message, "target.example.", THREE)]

    found = task_ips(backend(serve(chain)), 1.0)

    assert found == THREE, (
        "the answer's chain tasks.web. CNAME alias.example. CNAME target.example. A ..."
        f" was not followed to its addresses: the lookup returned {[str(ip) for ip in found]}"
    )


def test_an_endless_cname_chain_is_an_error(serve: Serve, task_ips: Lookup) -> None:
    links = [TASKS, *(f"link{i}.example." for i in range(64))]

    def chain(query: Query) -> Script:
        message = response(query)
        for owner, target in itertools.pairwise(links):
            add(message, owner, "CNAME", target)
        return [add_a(message, links[-1], THREE)]

    error = failure(task_ips, serve(chain), f"a chain of {len(links) - 1} CNAMEs")

    assert isinstance(error, ResolutionError), error


def test_an_empty_noerror_answer_means_zero_tasks(serve: Serve, task_ips: Lookup) -> None:
    server = serve(lambda query: [response(query)])

    assert task_ips(backend(server), 1.0) == ()


@pytest.mark.parametrize("edns", [False, True], ids=["fast-reader", "dnspython-reader"])
def test_nxdomain_with_addresses_is_contradictory(
    serve: Serve, task_ips: Lookup, edns: bool
) -> None:
    def handle(query: Query) -> Script:
        return [add_a(response(query, rcode=dns.rcode.NXDOMAIN, edns=edns), TASKS, THREE)]

    error = failure(task_ips, serve(handle), "NXDOMAIN with A records for the name")

    assert isinstance(error, ResolutionError), error


@pytest.mark.parametrize(
    "handler", [*NOTHING_USABLE, pytest.param(nxdomain_with_one_address, id="nxdomain-with-a")]
)
def test_a_watch_keeps_its_tasks_through_answers_without_usable_records(
    serve: Serve, handler: Handler
) -> None:
    server = serve(by_lookup((1, answering(THREE)), (3, handler), (1, answering(FOUR))))

    initial, change = first_change_after_trouble(server)

    assert_no_removal(initial, change)
    assert server.count("udp") >= 5  # every hostile answer was served


# -- 3. a silent nameserver does not use up the whole deadline ------------------------------


def test_a_silent_first_nameserver_leaves_time_for_the_next(
    serve: Serve, task_ips: Lookup
) -> None:
    silent = serve(lambda query: [])
    good = serve(answering(THREE))

    try:
        found = task_ips(backend(silent, good), 1.0)
    except SwarmDNSError as error:
        pytest.fail(
            f"the silent first nameserver used up the deadline: {type(error).__name__}:"
            f" {error} (the second nameserver got {len(good.queries)} queries)"
        )

    assert found == THREE
    assert silent.count("udp") == 1
    assert good.count("udp") == 1


# -- 4. stray datagrams are ignored -----------------------------------------------------------


def wrong_id(query: Query) -> bytes:
    return to_wire(with_id(add_a(response(query), TASKS, FOUR), other_id(query)))


def another_question(query: Query) -> bytes:
    other = dns.message.make_query("tasks.other.", "A", use_edns=0)
    other.id = query.message.id
    stray = dns.message.make_response(other, recursion_available=True)
    return to_wire(add_a(stray, "tasks.other.", FOUR))


def garbage(query: Query) -> bytes:
    # Our ID, QR set, one question and five answers claimed, then a few bytes.
    return struct.pack("!HHHHHH", query.message.id, 0x8180, 1, 5, 0, 0) + b"\x07tas\xff"


STRAYS = [
    pytest.param(wrong_id, id="wrong-id"),
    pytest.param(another_question, id="another-question"),
    pytest.param(garbage, id="garbage"),
]


@pytest.mark.parametrize("stray", STRAYS)
def test_a_stray_datagram_before_the_answer_is_ignored(
    serve: Serve, task_ips: Lookup, stray: Callable[[Query], bytes]
) -> None:
    def handle(query: Query) -> Script:
        return [stray(query), Send(to_wire(add_a(response(query), TASKS, THREE)), 0.02)]

    server = serve(handle)

    try:
        found = task_ips(backend(server), 1.0)
    except SwarmDNSError as error:
        pytest.fail(f"the stray datagram ended the lookup: {type(error).__name__}: {error}")

    assert found == THREE


@pytest.mark.parametrize("stray", STRAYS)
def test_only_stray_datagrams_end_in_a_timeout(
    serve: Serve, task_ips: Lookup, stray: Callable[[Query], bytes]
) -> None:
    def handle(query: Query) -> Script:
        return [Send(stray(query), delay) for delay in (0.0, 0.02, 0.05)]

    error = failure(task_ips, serve(handle), "stray datagrams only", timeout=0.3)

    assert isinstance(error, ResolutionTimeout), (
        f"a stray datagram ended the lookup before its deadline: {type(error).__name__}: {error}"
    )


# -- 5. cancellation in the middle of a TCP exchange -----------------------------------------


def big_service() -> Handler:
    """300 tasks: truncated over UDP, so that every lookup goes on over TCP."""
    return answering(MANY, udp_records=0, edns=False)


@pytest.mark.parametrize("edns", [False, True], ids=["fast-reader", "dnspython-reader"])
def test_the_server_serves_a_big_service_over_tcp(
    serve: Serve, task_ips: Lookup, edns: bool
) -> None:
    # The ground the cancellation tests stand on: 300 tasks need TCP, and get it.
    server = serve(answering(MANY, udp_records=0, edns=edns))

    assert task_ips(backend(server), 2.0) == MANY
    assert (server.count("udp"), server.count("tcp")) == (1, 1)


def spread(count: int) -> list[float]:
    """``count`` delays from 0 to 5 ms, denser near 0: how long after the release to cancel.

    Two in five are under 0.3 ms, while the released TCP answer arrives and is read.
    """
    return [5e-3 * (i / (count - 1)) ** 3 for i in range(count)]


CANCELLATIONS = 300
LOOP_BUDGET = 30.0  # a bound for a broken test, not a timing expectation


async def cancel_lookups(server: HostileServer) -> tuple[list[str], int]:
    """Cancel a lookup of 300 tasks around its TCP answer, again and again.

    Each time, the server holds the TCP answer until the lookup is waiting
    for it, then releases it, and the lookup is cancelled a moment later:
    before the answer arrives, as it is read, or after the lookup finished
    (then there is nothing to check). Returns what the cancelled lookups did
    instead of ending cancelled, and how many were cancelled.
    """
    wrong: list[str] = []
    cancelled = 0
    budget = time.monotonic() + LOOP_BUDGET
    for delay in spread(CANCELLATIONS):
        assert time.monotonic() < budget, "the cancellation loop ran out of time"
        server.hold_tcp()
        held = server.held_total
        lookup = asyncio.ensure_future(
            swarmdns.aio.task_ips(SERVICE, backend=backend(server), timeout=2.0)
        )
        while server.held_total == held and not lookup.done():
            await asyncio.sleep(0)  # over UDP, then connecting over TCP
        server.release_tcp()
        await asyncio.sleep(delay)
        if not lookup.cancel():
            continue
        cancelled += 1
        await asyncio.wait([lookup])
        if not lookup.cancelled():
            error = lookup.exception()
            outcome = (
                f"raised {error!r}"
                if error is not None
                else f"returned {len(lookup.result())} addresses"
            )
            wrong.append(f"cancelled {delay * 1e3:.3f} ms after the release, it {outcome}")
    return wrong, cancelled


def test_a_cancelled_lookup_over_tcp_always_ends_cancelled(serve: Serve) -> None:
    server = serve(big_service())

    wrong, cancelled = asyncio.run(cancel_lookups(server))

    assert cancelled > 0
    assert not wrong, (
        f"{len(wrong)} of {cancelled} cancelled lookups did not end cancelled"
        f" (the cancel was swallowed): {wrong[:3]}"
    )


STOPS = 200
STOP_TIMEOUT = 10.0  # a bound for a hung stop(), not a timing expectation


def stop_within(watcher: TaskWatcher, timeout: float) -> bool:
    """Call ``watcher.stop()`` in a helper thread; whether it returned within ``timeout``."""
    stopper = threading.Thread(target=watcher.stop, name="stopper", daemon=True)
    stopper.start()
    stopper.join(timeout)
    return not stopper.is_alive()


def test_stopping_a_task_watcher_always_returns(serve: Serve) -> None:
    server = serve(big_service())
    for i, delay in enumerate(spread(STOPS)):
        # As above: stop the watch around the TCP answer of its first lookup.
        server.hold_tcp()
        held = server.held_total
        watcher = TaskWatcher(SERVICE, backend=backend(server), interval=0.01, timeout=2.0)
        watcher.start()
        try:
            server.wait_for_held(held + 1)
        finally:
            server.release_tcp()
        time.sleep(delay)

        if not stop_within(watcher, STOP_TIMEOUT):
            # A second cancel usually frees the thread, so that none is left behind.
            stop_within(watcher, STOP_TIMEOUT)
            pytest.fail(
                f"TaskWatcher.stop() did not return within {STOP_TIMEOUT:g} s (stop {i + 1}"
                f" of {STOPS}, {delay * 1e3:.3f} ms after the answer's release): the cancel"
                " was swallowed and the watch went on"
            )


# -- 6. an error reply without a question, from the engine's address --------------------------

ENGINE_HOST = "127.0.0.11"
FLEET = [f"s{n}" for n in range(20)]
_SERVFAIL_WITHOUT_RA = 0x8102  # QR, RD and SERVFAIL; no RA, as the engine's own


def questionless_servfail(query: Query) -> bytes:
    """SERVFAIL without RA and without a question, under the query's ID.

    Without the question nothing says which query it answers: on a socket
    that many queries share, it may as well carry another service's ID.
    """
    return struct.pack("!HHHHHH", query.message.id, _SERVFAIL_WITHOUT_RA, 0, 0, 0, 0)


def forging_engine(query: Query) -> Script:
    """Every service has two tasks, but each answer comes after a question-less SERVFAIL."""
    octet = int(query.name.removeprefix("tasks.s").rstrip(".")) + 2
    good = add_a(response(query), query.name, addresses(2, f"10.0.{octet}.2"))
    return [questionless_servfail(query), Send(to_wire(good), 0.005)]


def fleet_changes(nameserver: str, front_end: str) -> tuple[list[TaskSetChange], int]:
    """A fleet's changes over ten rounds of lookups at least, and the failures it counted."""
    # The engine for its SERVFAIL rule, but its answers (an OPT record, this
    # machine's networks) are not checked for where they came from: not the point here.
    backend = DirectBackend([nameserver], provenance=swarmdns.Provenance(mode="off"))
    options = {"backend": backend, "interval": 0.05, "timeout": 1.0}
    if front_end == "sync":
        with swarmdns.watch_services(FLEET, **options) as fleet:  # type: ignore[arg-type]
            with pytest.raises(swarmdns.NotEnoughTasks):
                fleet.wait_for_tasks("s0", 3, timeout=0.6)
            changes = list(fleet._core.changes)
            failures = sum(health.consecutive_failures for health in fleet.health.values())
        return changes, failures

    async def main() -> tuple[list[TaskSetChange], int]:
        async with swarmdns.aio.watch_services(FLEET, **options) as fleet:  # type: ignore[arg-type]
            with pytest.raises(swarmdns.NotEnoughTasks):
                await fleet.wait_for_tasks("s0", 3, timeout=0.6)
            changes = list(fleet._core.changes)
            failures = sum(health.consecutive_failures for health in fleet.health.values())
        return changes, failures

    return asyncio.run(main())


@pytest.mark.parametrize("front_end", ["sync", "aio"])
def test_a_fleet_never_reads_an_error_without_a_question_as_a_service_disowned(
    front_end: str,
) -> None:
    with HostileServer(forging_engine, host=ENGINE_HOST) as server:
        changes, failures = fleet_changes(server.nameserver, front_end)
        asked = dict.fromkeys(FLEET, 0)
        for query in server.queries:
            asked[query.name.removeprefix("tasks.").rstrip(".")] += 1

    assert min(asked.values()) >= 3, f"too few lookups to tell: {asked}"
    wrong = [change for change in changes if change.removed or len(change.current) != 2]
    assert not wrong, f"{len(wrong)} changes read from question-less SERVFAILs, such as {wrong[0]}"
    assert sorted(change.service for change in changes) == sorted(FLEET)  # initial sets only
    assert failures == 0


def test_one_lookup_reads_an_error_without_a_question_as_a_failure_not_as_no_tasks(
    task_ips: Lookup,
) -> None:
    def handle(query: Query) -> Script:
        return [questionless_servfail(query)]

    with HostileServer(handle, host=ENGINE_HOST) as server:
        error = failure(task_ips, server, "SERVFAIL without RA and without a question")

    assert isinstance(error, ResolutionError)
    assert "SERVFAIL" in str(error)
