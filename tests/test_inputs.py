"""Bad input to every public entry point: a TypeError or ValueError that names it, at once.

Each table lists an entry point's options of one kind (seconds, counts,
lists of addresses, names, a backend's arguments), each call made with one
value; each is tried with every bad value of its kind (huge integers,
infinities, NaN, negatives, booleans, digits of other scripts, empty text,
the wrong type). Each must raise TypeError or ValueError (ConfigurationError
is one) that names the option or the value, before any question is asked:
not an OverflowError or AttributeError, not a failure later, not a hang.
"""

from __future__ import annotations

import asyncio
import math
import re
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from typing import Any

import pytest

import swarmdns
import swarmdns.aio
from swarmdns import (
    Answer,
    ConfigurationError,
    DirectBackend,
    FleetWatcher,
    Question,
    StaticBackend,
    TaskWatcher,
)
from swarmdns._actions import CommandRunner, SettleWindow
from swarmdns._deadlines import MAX_SECONDS, Deadline, seconds, shown
from swarmdns.testing import FakeSwarm

#: Digits of other scripts, which ``str.isdigit()`` takes: 53 (twice), 10 and 5.
A53 = "\N{ARABIC-INDIC DIGIT FIVE}\N{ARABIC-INDIC DIGIT THREE}"
F53 = "\N{FULLWIDTH DIGIT FIVE}\N{FULLWIDTH DIGIT THREE}"
A10 = "\N{ARABIC-INDIC DIGIT ONE}\N{ARABIC-INDIC DIGIT ZERO}"
A5 = "\N{ARABIC-INDIC DIGIT FIVE}"


class Untouched(StaticBackend):
    """A StaticBackend that counts the questions it is asked: a bad option asks none."""

    def __init__(self) -> None:
        super().__init__({"tasks.web": ["10.0.1.3"], "web": ["10.0.1.2"]})
        self.asked: list[Question] = []

    def resolve(self, question: Question, timeout: float) -> Answer:
        self.asked.append(question)
        return super().resolve(question, timeout)


@pytest.fixture
def backend() -> Iterator[Untouched]:
    backend = Untouched()
    yield backend
    assert backend.asked == []


def _closed(watch: Any) -> None:
    watch.close()


def _async_closed(watch: Any) -> None:
    asyncio.run(watch.aclose())


def _not_started(watcher: Any) -> None:
    """A watcher checks its options when made, before ``start()``."""


Call = Callable[[Untouched, Any], object]


def _watch_option(
    watch: Callable[..., Any], first: object, option: str, close: Callable[[Any], None]
) -> Call:
    """Make a watch with ``option`` set to the value, and close it."""

    def call(backend: Untouched, value: Any) -> None:
        close(watch(first, backend=backend, **{option: value}))

    return call


#: Every option that takes a number of seconds, more than 0, at most a day.
SECONDS: dict[str, Call] = {
    "task_ips timeout": lambda b, v: swarmdns.task_ips("web", backend=b, timeout=v),
    "service_vip timeout": lambda b, v: swarmdns.service_vip("web", backend=b, timeout=v),
    "tasks timeout": lambda b, v: swarmdns.tasks("web", backend=b, timeout=v),
    "aio.task_ips timeout": lambda b, v: asyncio.run(
        swarmdns.aio.task_ips("web", backend=b, timeout=v)
    ),
    "aio.tasks timeout": lambda b, v: asyncio.run(swarmdns.aio.tasks("web", backend=b, timeout=v)),
    **{
        f"{name} {option}": _watch_option(call, first, option, close)
        for name, call, first, close in [
            ("watch_tasks", swarmdns.watch_tasks, "web", _closed),
            ("watch_services", swarmdns.watch_services, ["web"], _closed),
            ("aio.watch_tasks", swarmdns.aio.watch_tasks, "web", _async_closed),
            ("aio.watch_services", swarmdns.aio.watch_services, ["web"], _async_closed),
            ("TaskWatcher", TaskWatcher, "web", _not_started),
            ("FleetWatcher", FleetWatcher, ["web"], _not_started),
        ]
        for option in ("interval", "timeout", "fail_after")
    },
    "wait_for_tasks timeout": lambda b, v: swarmdns.wait_for_tasks("web", 1, backend=b, timeout=v),
    "wait_for_tasks interval": lambda b, v: swarmdns.wait_for_tasks(
        "web", 1, backend=b, timeout=1, interval=v
    ),
    "aio.wait_for_tasks timeout": lambda b, v: asyncio.run(
        swarmdns.aio.wait_for_tasks("web", 1, backend=b, timeout=v)
    ),
    "TaskWatch.wait_for_tasks timeout": lambda b, v: _on_watch(
        swarmdns.watch_tasks("web", backend=b), lambda w: w.wait_for_tasks(1, timeout=v)
    ),
    "FleetWatch.wait_for_tasks timeout": lambda b, v: _on_watch(
        swarmdns.watch_services(["web"], backend=b),
        lambda w: w.wait_for_tasks("web", 1, timeout=v),
    ),
    "TaskWatcher.wait_for_tasks timeout": lambda b, v: TaskWatcher(
        "web", backend=b
    ).wait_for_tasks(1, timeout=v),
    "CommandRunner timeout": lambda b, v: CommandRunner("true", timeout=v),
    "CommandRunner kill_grace": lambda b, v: CommandRunner("true", kill_grace=v),
}

#: Options that take 0 as well (a wait that does not wait); None too, as no limit.
SECONDS_OR_ZERO: dict[str, Call] = {
    "TaskWatcher.wait_for_change": lambda b, v: TaskWatcher("web", backend=b).wait_for_change(v),
    "TaskWatcher.wait_until_started": lambda b, v: TaskWatcher(
        "web", backend=b
    ).wait_until_started(v),
    "FleetWatcher.wait_for_change": lambda b, v: FleetWatcher(["web"], backend=b).wait_for_change(
        v
    ),
    "SettleWindow min_quiet": lambda b, v: SettleWindow(v),
    "SettleWindow max_wait": lambda b, v: SettleWindow(0, v),
}


def _on_watch(watch: Any, call: Callable[[Any], object]) -> object:
    with watch:
        return call(watch)


_ABOVE_A_DAY: list[object] = [MAX_SECONDS + 0.001, 86_401, 1e308, 2**64, 10**400, 10**5000]
_NEVER_SECONDS: list[object] = [
    *_ABOVE_A_DAY,
    math.inf,
    -math.inf,
    math.nan,
    -1,
    -0.5,
    -(10**400),
    True,
    False,
    "1",
    "",
    b"1",
    1j,
    [1],
]


def _id(value: object) -> str:
    text = shown(value)
    return text if len(text) < 20 else f"{text[:8]}...{len(text)}chars"


#: Options where None means no limit.
_NONE_IS_NO_LIMIT = ("fail_after", "CommandRunner timeout")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        pytest.param(option, value, id=f"{option}-{_id(value)}")
        for option in SECONDS
        for value in [*_NEVER_SECONDS, 0, 0.0, None]
        if not (value is None and option.endswith(_NONE_IS_NO_LIMIT))
    ],
)
def test_a_bad_number_of_seconds_is_refused_at_once(
    option: str, value: object, backend: Untouched
) -> None:
    with pytest.raises((TypeError, ValueError)) as caught:
        SECONDS[option](backend, value)

    named = option.rsplit(maxsplit=1)[-1]
    assert str(caught.value).startswith(f"{named} must be"), caught.value


@pytest.mark.parametrize("value", _NEVER_SECONDS, ids=_id)
@pytest.mark.parametrize("option", SECONDS_OR_ZERO)
def test_a_bad_wait_is_refused_at_once(option: str, value: object, backend: Untouched) -> None:
    with pytest.raises((TypeError, ValueError)) as caught:
        SECONDS_OR_ZERO[option](backend, value)

    named = option.rsplit(maxsplit=1)[-1] if " " in option else "timeout"
    assert str(caught.value).startswith(f"{named} must be"), caught.value


def test_zero_to_a_day_is_a_wait() -> None:
    backend = StaticBackend({"tasks.web": ["10.0.1.3"]})
    with TaskWatcher("web", backend=backend) as watcher:
        assert watcher.wait_until_started(MAX_SECONDS)
        assert watcher.wait_until_started(0)
        assert not watcher.wait_for_change(0)  # no second change, and no wait for one
    assert SettleWindow(0, 86_400).max_wait == MAX_SECONDS
    assert SettleWindow(MAX_SECONDS).max_wait == MAX_SECONDS  # not 4 days


def test_the_bound_is_a_day_and_the_message_says_so() -> None:
    assert seconds("interval", 86_400) == MAX_SECONDS == 24 * 3600
    with pytest.raises(ValueError, match=r"at most a day \(86400\), not an integer of 16610 bits"):
        seconds("interval", 10**5000)  # too long for repr()
    with pytest.raises(ValueError, match=r"at most a day \(86400\), not 1e\+308"):
        Deadline(1e308)


def test_a_day_fits_every_wait_swarmdns_makes() -> None:
    # Each primitive converts its timeout before it waits: with something
    # ready, it returns at once, or raises OverflowError for a bound too large
    # (an epoll wait counts milliseconds in a C int: 24.8 days).
    reading, writing = socket.socketpair()
    with reading, writing, selectors.DefaultSelector() as selector:
        writing.send(b"x")
        selector.register(reading, selectors.EVENT_READ)
        assert selector.select(MAX_SECONDS)
        reading.settimeout(MAX_SECONDS)
        assert reading.recv(1) == b"x"
    ready = threading.Event()
    ready.set()
    assert ready.wait(MAX_SECONDS)

    async def later() -> None:
        asyncio.get_running_loop().call_later(MAX_SECONDS, print).cancel()
        await asyncio.wait_for(asyncio.sleep(0), MAX_SECONDS)

    asyncio.run(later())


def test_a_day_long_timeout_gets_its_answer(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=2)

    assert swarmdns.task_ips("web", timeout=MAX_SECONDS) == web.task_ips
    assert asyncio.run(swarmdns.aio.task_ips("web", timeout=86_400)) == web.task_ips
    with swarmdns.watch_services(["web"], interval=MAX_SECONDS, timeout=MAX_SECONDS) as watch:
        assert next(watch).current == web.task_ips


#: Options that take a whole number (or a fraction): what each must be; its values out of range.
COUNTS: dict[str, tuple[Call, str, list[object]]] = {
    "wait_for_tasks count": (
        lambda b, v: swarmdns.wait_for_tasks("web", v, backend=b, timeout=1),
        "count must be",
        [-1, 2**32 + 1, 10**5000],
    ),
    "TaskWatch.wait_for_tasks count": (
        lambda b, v: _on_watch(
            swarmdns.watch_tasks("web", backend=b), lambda w: w.wait_for_tasks(v, timeout=1)
        ),
        "count must be",
        [-1, 2**32 + 1, 10**5000],
    ),
    "watch_tasks removal_debounce": (
        lambda b, v: swarmdns.watch_tasks("web", backend=b, removal_debounce=v),
        "removal_debounce must be",
        [0, -1],
    ),
    "watch_tasks jitter": (
        lambda b, v: swarmdns.watch_tasks("web", backend=b, jitter=v),
        "jitter must be",
        [-0.1, 1, 1.0, 10**5000],
    ),
}
_NEVER_COUNTS: list[object] = [-(10**400), 1.5, math.nan, math.inf, True, "3", b"3", None, [3]]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        pytest.param(option, value, id=f"{option}-{_id(value)}")
        for option, (_, _, out_of_range) in COUNTS.items()
        for value in [*_NEVER_COUNTS, *out_of_range]
    ],
)
def test_a_bad_count_is_refused_at_once(option: str, value: object, backend: Untouched) -> None:
    call, words, _ = COUNTS[option]
    with pytest.raises((TypeError, ValueError), match=f"^{words}"):
        call(backend, value)


#: Options that take a list of addresses (or names), and what each must be.
LISTS: dict[str, Call] = {
    "watch_tasks exclude": lambda b, v: swarmdns.watch_tasks("web", backend=b, exclude=v),
    "watch_services exclude": lambda b, v: swarmdns.watch_services(["web"], backend=b, exclude=v),
    "wait_for_tasks exclude": lambda b, v: swarmdns.wait_for_tasks(
        "web", 1, backend=b, timeout=1, exclude=v
    ),
    "TaskWatcher exclude": lambda b, v: TaskWatcher("web", backend=b, exclude=v),
}


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("10.0.1.3", "not one"),
        (IPv4Address("10.0.1.3"), "not one"),
        (b"\x0a\x00\x01\x03", "exclude takes a list of addresses, not b"),
        (5, "exclude takes a list of addresses, not 5"),
        (None, "exclude takes a list of addresses, not None"),
        ([167772419], "an address of exclude must be an IPv4 address"),  # 10.0.1.3 as an int
        ([True], "an address of exclude must be an IPv4 address"),
        ([None], "an address of exclude must be an IPv4 address"),
        ([b"10.0.1.3"], "an address of exclude must be an IPv4 address"),
        (["10.0.1.300"], "10.0.1.300"),
        ([f"{A10}.0.1.3"], A10),
        ([""], "Address cannot be empty"),
    ],
    ids=_id,
)
@pytest.mark.parametrize("option", LISTS)
def test_a_bad_list_of_addresses_is_refused_at_once(
    option: str, value: object, words: str, backend: Untouched
) -> None:
    with pytest.raises((TypeError, ValueError), match=words):
        LISTS[option](backend, value)


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [
        ("web", TypeError, r"not one: \['web'\]"),
        (b"web", TypeError, "services takes a list of names, not b'web'"),
        (5, TypeError, "services takes a list of names, not 5"),
        (None, TypeError, "services takes a list of names, not None"),
        ([5], TypeError, "the service name must be a str"),
        ([""], ValueError, "invalid service name ''"),
        ([A5], ValueError, f"Docker does not allow '{A5}'"),
    ],
    ids=_id,
)
@pytest.mark.parametrize(
    "call",
    [swarmdns.watch_services, swarmdns.aio.watch_services, FleetWatcher],
    ids=["watch_services", "aio.watch_services", "FleetWatcher"],
)
def test_a_bad_list_of_services_is_refused_at_once(
    call: Callable[..., object], value: object, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        call(value, backend=Untouched())


# -- the backends' arguments -----------------------------------------------------


@pytest.mark.parametrize(
    ("nameservers", "error", "words"),
    [
        (5, TypeError, "nameservers must be a list of 'host' or 'host:port' strings, not 5"),
        (b"127.0.0.1", TypeError, "not b'127.0.0.1'"),
        ([5], TypeError, "a nameserver of nameservers must be a 'host:port' string, not 5"),
        ([None], TypeError, "not None"),
        ([b"127.0.0.1"], TypeError, "not b'127.0.0.1'"),
        ([], ValueError, "at least one nameserver"),
        ("", ConfigurationError, "not an IP address"),
        ("١٢٧.0.0.1", ConfigurationError, "not an IP address"),
        ("127.0.0.1:²", ConfigurationError, "port '²' is not a number from 1 to 65535"),
        (f"127.0.0.1:{A53}", ConfigurationError, f"port '{A53}' is not a number"),
        (f"127.0.0.1:{F53}", ConfigurationError, f"port '{F53}' is not a number"),
        (f"[::1]:{A53}", ConfigurationError, f"port '{A53}' is not a number"),
        ("127.0.0.1:" + "9" * 5000, ConfigurationError, "is not a number from 1 to 65535"),
        ("127.0.0.1:65536", ConfigurationError, "is not a number from 1 to 65535"),
    ],
    ids=_id,
)
def test_direct_backend_refuses_what_is_not_a_nameserver(
    nameservers: Any, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        DirectBackend(nameservers)


@pytest.mark.parametrize(
    "value", ["127.0.0.1:²", f"127.0.0.1:{A53}", f"127.0.0.1:{F53}", f"[::1]:{A53}"]
)
def test_a_nameserver_variable_with_other_digits_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(swarmdns.NAMESERVER_VARIABLE, value)

    with pytest.raises(ConfigurationError, match="is not a number from 1 to 65535") as caught:
        swarmdns.task_ips("web", backend=DirectBackend())
    assert caught.value.source == "SWARMDNS_NAMESERVER"


@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        ({"records": "x"}, TypeError, "records must be a mapping such as"),
        ({"records": 0}, TypeError, "records must be a mapping such as"),
        ({"records": [("web", ["10.0.1.2"])]}, TypeError, "records must be a mapping"),
        ({"records": {"web": 5}}, TypeError, "the addresses of 'web' must be a list, not 5"),
        ({"records": {"web": b"\x0a\x00\x01\x02"}}, TypeError, "must be a list, not b"),
        ({"records": {"web": [167772418]}}, TypeError, "an address of 'web' must be an IPv4"),
        ({"records": {"web": [True]}}, TypeError, "an address of 'web' must be an IPv4"),
        ({"records": {"web": [f"{A10}.0.1.2"]}}, ValueError, "an address of 'web' is not an IPv4"),
        ({"records": {5: []}}, TypeError, "a name must be a string, not 5"),
        ({"ptr": "x"}, TypeError, "ptr must be a mapping such as"),
        ({"ptr": {True: "web.1.abc.proxy."}}, TypeError, "an address of ptr must be an IPv4"),
        ({"ptr": {"10.0.1.300": "web.1.abc.proxy."}}, ValueError, "10.0.1.300"),
        ({"ptr": {"10.0.1.3": 5}}, TypeError, "PTR target of 10.0.1.3"),
    ],
    ids=_id,
)
def test_static_backend_refuses_what_is_not_names_and_addresses(
    arguments: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        StaticBackend(**arguments)


def test_static_backend_set_refuses_the_wrong_type() -> None:
    backend = StaticBackend()

    with pytest.raises(TypeError, match="an address of 'web' must be an IPv4"):
        backend.set("web", [1])  # type: ignore[list-item]
    assert swarmdns.task_ips("web", backend=backend) == ()  # nothing was set


@pytest.mark.parametrize("value", [5, None, b"web", ["web"]], ids=_id)
def test_a_fleet_adds_and_discards_only_names(value: Any, backend: Untouched) -> None:
    with swarmdns.watch_services(["web"], backend=backend) as watch:
        with pytest.raises(TypeError, match="the service name must be a str"):
            watch.add(value)
        with pytest.raises(TypeError, match="discard takes a service's name, not"):
            watch.discard(value)
        assert watch.services == ("web",)


#: Every way of watching, made with one option set (a watcher is not started).
WATCHES: dict[str, Callable[..., object]] = {
    "watch_tasks": lambda **options: _closed(swarmdns.watch_tasks("web", **options)),
    "aio.watch_tasks": lambda **options: _async_closed(swarmdns.aio.watch_tasks("web", **options)),
    "watch_services": lambda **options: _closed(swarmdns.watch_services(["web"], **options)),
    "aio.watch_services": lambda **options: _async_closed(
        swarmdns.aio.watch_services(["web"], **options)
    ),
    "TaskWatcher": lambda **options: TaskWatcher("web", **options),
    "FleetWatcher": lambda **options: FleetWatcher(["web"], **options),
}


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("backend", 5, "5 is not a backend: it needs a resolve() method"),
        ("backend", "127.0.0.1", "'127.0.0.1' is not a backend"),
        ("on_health", 5, "on_health must be callable (or None), not 5"),
        ("exclude_self", "no", "exclude_self must be True or False, not 'no'"),
        ("exclude_self", 1, "exclude_self must be True or False, not 1"),
    ],
    ids=_id,
)
@pytest.mark.parametrize("watch", WATCHES)
def test_a_watch_refuses_what_it_could_only_fail_on_later(
    watch: str, option: str, value: object, words: str
) -> None:
    options = {"backend": Untouched(), option: value}

    with pytest.raises(TypeError, match=re.escape(words)):
        WATCHES[watch](**options)
