"""A watch's options, checked once (``WatchSettings``), for every front end and fleet."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any
from unittest import mock

import attrs
import pytest

import swarmdns
import swarmdns.aio
from swarmdns import ConfigurationError, InvalidName, StaticBackend
from swarmdns._fleet import FleetCore
from swarmdns._own_addresses import excluded_for
from swarmdns._values import WatchSettings
from swarmdns._watch import prepare_watch


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"network": "bad network!"}, InvalidName, "network"),
        ({"exclude": "10.0.1.3"}, TypeError, r"exclude takes a list of addresses, not one"),
        ({"exclude": IPv4Address("10.0.1.3")}, TypeError, r"not one: \['10.0.1.3'\]"),
        ({"exclude": ["10.0.1.300"]}, ValueError, "10.0.1.300"),
        ({"interval": 0}, ValueError, "interval must be a positive"),
        ({"interval": -1.0}, ValueError, "interval must be a positive"),
        ({"interval": float("nan")}, ValueError, "interval must be a positive"),
        ({"interval": "2"}, TypeError, "interval must be a number"),
        ({"jitter": 1.0}, ValueError, "jitter must be a fraction"),
        ({"jitter": -0.1}, ValueError, "jitter must be a fraction"),
        ({"jitter": True}, ValueError, "jitter must be a fraction"),
        ({"removal_debounce": 0}, ValueError, "at least 1"),
        ({"removal_debounce": 1.5}, TypeError, "whole number"),
        ({"removal_debounce": True}, TypeError, "whole number"),
        ({"fail_after": float("inf")}, ValueError, "fail_after must be a positive"),
        ({"fail_after": 0}, ValueError, "fail_after must be a positive"),
        ({"timeout": 0}, ValueError, "timeout must be a positive"),
        ({"timeout": None}, TypeError, "timeout must be a number"),
    ],
)
def test_options_are_checked(
    options: dict[str, object], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        WatchSettings(**options)  # type: ignore[arg-type]


def test_checked_options_are_normalised_and_frozen() -> None:
    settings = WatchSettings(interval=1, fail_after=5, timeout=3, exclude=["10.0.1.3"])

    assert (settings.interval, settings.fail_after, settings.timeout) == (1.0, 5.0, 3.0)
    assert all(type(v) is float for v in (settings.interval, settings.fail_after))
    assert settings.exclude == frozenset({IPv4Address("10.0.1.3")})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.interval = 3.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        WatchSettings(2.0)  # type: ignore[call-arg, arg-type] # keyword-only


def test_the_defaults_are_those_of_the_public_functions() -> None:
    import inspect  # noqa: PLC0415

    defaults = {
        name: p.default
        for name, p in inspect.signature(swarmdns.watch_tasks).parameters.items()
        if name not in ("service", "on_health")
    }
    settings = WatchSettings()

    assert {name: getattr(settings, name) for name in defaults} == {
        **defaults,
        "exclude": frozenset(),
    }


def test_building_settings_reads_nothing_from_the_kernel() -> None:
    with mock.patch("swarmdns._own_addresses.local_addresses") as local:
        settings = WatchSettings(exclude_self=True)
    local.assert_not_called()
    assert settings.exclude_self is True


def test_the_decisions_never_read_the_kernel_the_front_end_hands_them_in() -> None:
    own = frozenset({IPv4Address("10.0.1.9")})
    settings = WatchSettings(exclude_self=True, exclude=["10.0.1.3"])
    with mock.patch("swarmdns._own_addresses.local_addresses", return_value=own) as local:
        core = prepare_watch("web", settings, excluded=frozenset({IPv4Address("10.0.1.4")}))
        fleet = FleetCore(["web"], settings, excluded=frozenset())
        local.assert_not_called()
        excluded = excluded_for(settings)

    assert core.exclude == {IPv4Address("10.0.1.4")}
    assert fleet.slots()["web"].watch.exclude == frozenset()
    assert excluded == own | {IPv4Address("10.0.1.3")}


def test_exclude_self_on_a_system_without_the_kernel_table_fails_at_set_up() -> None:
    error = ConfigurationError("no /proc/net/fib_trie", source="/proc/net/fib_trie")
    with (
        mock.patch("swarmdns._own_addresses.local_addresses", side_effect=error),
        pytest.raises(ConfigurationError),
    ):
        swarmdns.watch_tasks("web", exclude_self=True, backend=StaticBackend({}))


def test_a_watch_is_set_up_from_its_settings() -> None:
    settings = WatchSettings(
        network="proxy", interval=3.0, jitter=0.2, removal_debounce=2, fail_after=9.0
    )

    core = prepare_watch("web", settings, excluded=frozenset())

    assert core.query_name == "tasks.web.proxy."
    assert (core.interval, core.jitter, core.removal_debounce, core.fail_after) == (
        3.0,
        0.2,
        2,
        9.0,
    )


def test_a_fleet_reads_the_containers_own_addresses_once_for_every_service() -> None:
    own = frozenset({IPv4Address("10.0.1.9")})
    with mock.patch("swarmdns._own_addresses.local_addresses", return_value=own) as local:
        watch = swarmdns.watch_services(
            ["web", "api", "db"], exclude_self=True, backend=StaticBackend({})
        )
        watch.add("cache")
        watch.close()

    local.assert_called_once()
    assert all(slot.watch.exclude == own for slot in watch._core.slots().values())


@pytest.mark.parametrize(
    "front_end",
    [
        swarmdns.watch_tasks,
        swarmdns.aio.watch_tasks,
        swarmdns.TaskWatcher,
        lambda service, **options: swarmdns.watch_services([service], **options),
        lambda service, **options: swarmdns.aio.watch_services([service], **options),
        lambda service, **options: swarmdns.FleetWatcher([service], **options),
        lambda service, **options: swarmdns.watch_services([], **options),
    ],
)
def test_every_front_end_refuses_bad_options_at_once(front_end: Callable[..., object]) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"jitter": 1.5}, "jitter must be a fraction"),
        ({"fail_after": -1}, "fail_after must be a positive"),
        ({"timeout": 0}, "timeout must be a positive"),
    ]
    for options, words in cases:
        with pytest.raises(ValueError, match=words):
            front_end("web", **options)
