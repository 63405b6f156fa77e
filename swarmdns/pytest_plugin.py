"""pytest fixtures for testing code that discovers Swarm tasks through DNS.

Installing swarmdns registers this plugin (entry point ``pytest11``), so any
project's tests can ask for the ``swarm_dns`` fixture::

    def test_sees_every_replica(swarm_dns):
        swarm_dns.create_service("web", replicas=3)
        ...  # code that resolves tasks.web through SWARMDNS_NAMESERVER

The fake answers like the newest Docker Engine it models unless a test is
marked ``@pytest.mark.swarm_dns(engine="20.10")``, or the whole run is started
with ``--swarm-dns-engine=20.10``.

Code that runs under Docker Compose asks for ``compose_dns`` instead: an empty
``FakeCompose`` (project ``proj``, or the marker's ``project=``), with
``SWARMDNS_RUNTIME=compose``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from swarmdns import NAMESERVER_VARIABLE, PROVENANCE_VARIABLE, RUNTIME_VARIABLE
from swarmdns._backends.default import swap_default_backend
from swarmdns.testing import ENGINES, EngineVersion, FakeCompose, FakeSwarm
from swarmdns.testing._base import Runtime

#: The library's variable that names the engine's networks (``SWARMDNS_PROVENANCE``).
_MARKER = "swarm_dns"
_ENGINE_OPTION = "--swarm-dns-engine"
#: What the marker takes: its keyword arguments.
_MARKER_ARGUMENTS = ("engine", "nodes", "delays", "project")
#: What only a Swarm has, and only a Compose project.
_SWARM_ONLY = ("nodes", "delays")
_COMPOSE_ONLY = ("project",)
_Served = TypeVar("_Served", FakeSwarm, FakeCompose)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--swarm-dns-engine``: the engine version the fake answers like by default."""
    group = parser.getgroup("swarmdns", "the fake Swarm DNS server (swarm_dns fixture)")
    group.addoption(
        _ENGINE_OPTION,
        choices=ENGINES,
        default=None,
        metavar="VERSION",
        help="the Docker Engine version the swarm_dns fixture answers like, unless a"
        f" test's marker says otherwise: {', '.join(ENGINES)} (default: {ENGINES[-1]})",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``swarm_dns`` marker."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(engine=VERSION): the swarm_dns fixture answers like this Docker Engine"
        f" version during the test ({', '.join(ENGINES)})",
    )
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(nodes=N, delays=NodeDelays(...)): the swarm_dns fixture is a Swarm of"
        " N nodes, each with its own DNS, with these delays, during the test",
    )
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(project=NAME): the compose_dns fixture's Compose project is named so"
        " during the test (default: proj)",
    )


def _marked(node: pytest.Item, fixture: str, foreign: tuple[str, ...]) -> dict[str, Any]:
    """What the closest ``swarm_dns`` marker asks of ``fixture`` (engine, nodes, ...), if any.

    Raises:
        TypeError: The marker takes positional arguments, unknown ones, or
            ``foreign`` ones, which the fixture has no use for.
    """
    marker = node.get_closest_marker(_MARKER)
    if marker is None:
        return {}
    unknown = sorted(set(marker.kwargs) - set(_MARKER_ARGUMENTS))
    if marker.args or unknown:
        given = [*map(repr, marker.args), *unknown]
        raise TypeError(
            f"@pytest.mark.{_MARKER}() takes keyword arguments only"
            f" ({', '.join(_MARKER_ARGUMENTS)}), not {', '.join(given)}"
        )
    misplaced = sorted(set(marker.kwargs) & set(foreign))
    if misplaced:
        other = "compose_dns" if fixture == "swarm_dns" else "swarm_dns"
        raise TypeError(
            f"@pytest.mark.{_MARKER}({', '.join(misplaced)}=...) is for the {other} fixture;"
            f" this test uses {fixture}"
        )
    return dict(marker.kwargs)


@pytest.fixture(scope="session")
def swarm_dns_server(request: pytest.FixtureRequest) -> Iterator[FakeSwarm]:
    """One running fake Swarm DNS server for the whole session.

    It answers like the engine given with ``--swarm-dns-engine`` (else the
    newest). Tests normally want ``swarm_dns``, which empties it before each
    test.
    """
    engine: EngineVersion | None = request.config.getoption(_ENGINE_OPTION)
    with FakeSwarm(engine=engine or ENGINES[-1]) as swarm:
        yield swarm


@pytest.fixture
def swarm_dns(
    swarm_dns_server: FakeSwarm, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[FakeSwarm]:
    """An empty fake Swarm for this test, with ``SWARMDNS_NAMESERVER`` pointing at it.

    The server answers like Docker's embedded DNS at 127.0.0.11: create
    services, scale them, kill tasks or inject faults, and code under test that
    resolves through ``SWARMDNS_NAMESERVER`` sees the change at once.

    It answers like the engine version of the test's
    ``@pytest.mark.swarm_dns(engine=...)`` marker (on the test, its class or
    its module), else like the session's (``--swarm-dns-engine``, else the
    newest); the session's comes back after the test.

    The Swarm has one node unless the marker asks for more:
    ``@pytest.mark.swarm_dns(nodes=3)``, optionally with
    ``delays=NodeDelays(...)`` (by default the measured ones). Node 1's DNS is
    the one ``SWARMDNS_NAMESERVER`` names; ``swarm_dns.nodes`` gives every
    node's. After the test, the Swarm has one node again.

    ``SWARMDNS_PROVENANCE`` names ``swarm_dns.engine_networks`` (the fake's
    address pool, 10.0.0.0/8), so that swarmdns treats the fake's answers as
    the engine's and applies every engine rule to them. A test that creates
    a network with a subnet outside the pool sets it again afterwards::

        monkeypatch.setenv("SWARMDNS_PROVENANCE",
                           ",".join(map(str, swarm_dns.engine_networks)))

    A test may ``stop()`` and ``start()`` the fake: it listens on the same port
    again, so ``SWARMDNS_NAMESERVER`` stays true. A control channel the test
    opens (``serve_control()``) is closed after it.

    ``SWARMDNS_RUNTIME`` is ``swarm`` during the test, so that swarmdns
    never guesses: ``swarm_dns.inside(task)`` makes it believe it runs inside
    a task.

    During the test, swarmdns's process-wide default backend is the built-in
    one (which follows ``SWARMDNS_NAMESERVER``); whatever default was set
    before the test, and whatever the test sets, the default is put back as
    it was afterwards.
    """
    marked = _marked(request.node, "swarm_dns", _COMPOSE_ONLY)
    yield from _serve_test(
        swarm_dns_server,
        lambda: swarm_dns_server.reset(nodes=marked.get("nodes"), delays=marked.get("delays")),
        runtime="swarm",
        engine=marked.get("engine"),
        monkeypatch=monkeypatch,
        what="the fake Swarm DNS server",
    )


@pytest.fixture(scope="session")
def compose_dns_server(request: pytest.FixtureRequest) -> Iterator[FakeCompose]:
    """One running fake Compose project's DNS server for the whole session.

    It answers like the engine given with ``--swarm-dns-engine`` (else the
    newest). Tests normally want ``compose_dns``, which empties it before
    each test.
    """
    engine: EngineVersion | None = request.config.getoption(_ENGINE_OPTION)
    with FakeCompose(engine=engine or ENGINES[-1]) as compose:
        yield compose


@pytest.fixture
def compose_dns(
    compose_dns_server: FakeCompose,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[FakeCompose]:
    """An empty fake Compose project for this test, with ``SWARMDNS_NAMESERVER`` pointing at it.

    The sibling of ``swarm_dns`` for code that runs under Docker Compose: the
    same engine choice (``@pytest.mark.swarm_dns(engine=...)``,
    ``--swarm-dns-engine``), the same ``SWARMDNS_PROVENANCE`` (here the
    engine's local address pools, ``compose_dns.engine_networks``), the same
    care of the default backend, stops and restarts; and
    ``SWARMDNS_RUNTIME=compose``, so that swarmdns reads ``<service>`` as
    the service's containers. The project is ``proj`` unless the marker says
    ``@pytest.mark.swarm_dns(project="shop")``.

    A test uses either this fixture or ``swarm_dns``, not both: each points
    ``SWARMDNS_NAMESERVER`` at its own fake.
    """
    if "swarm_dns" in request.fixturenames:
        raise pytest.UsageError(
            "a test uses either swarm_dns or compose_dns, not both: each points"
            " SWARMDNS_NAMESERVER at its own fake; use FakeSwarm() or FakeCompose() directly"
            " for the other"
        )
    marked = _marked(request.node, "compose_dns", _SWARM_ONLY)
    yield from _serve_test(
        compose_dns_server,
        lambda: compose_dns_server.reset(project=marked.get("project")),
        runtime="compose",
        engine=marked.get("engine"),
        monkeypatch=monkeypatch,
        what="the fake Compose DNS server",
    )


def _serve_test(
    server: _Served,
    reset: Callable[[], None],
    *,
    runtime: Runtime,
    engine: EngineVersion | None,
    monkeypatch: pytest.MonkeyPatch,
    what: str,
) -> Iterator[_Served]:
    """Run one test against ``server``: emptied, running, and named by the environment.

    Args:
        server: The session's fake.
        reset: Empties it as the test's marker asks.
        runtime: What ``SWARMDNS_RUNTIME`` says during the test.
        engine: The engine version the marker asks for, if any.
        monkeypatch: The test's, which puts the environment back afterwards.
        what: The server, as a failure names it.
    """
    if not server.running:  # a test before this one stopped it
        server.stop()
        try:
            server.start()  # on the same port...
        except OSError:
            server.forget_ports()  # ...unless taken meanwhile: this test's own
            server.start()
    reset()
    if engine is not None:
        server.use_engine(engine)
    monkeypatch.setenv(NAMESERVER_VARIABLE, server.nameserver)
    monkeypatch.setenv(PROVENANCE_VARIABLE, ",".join(map(str, server.engine_networks)))
    monkeypatch.setenv(RUNTIME_VARIABLE, runtime)
    errors_before = len(server.internal_errors)
    default_before = swap_default_backend(None)
    try:
        yield server
    finally:
        swap_default_backend(default_before)
    errors = server.internal_errors[errors_before:]
    server.close_control()
    server.reset()
    if errors:
        pytest.fail(f"{what} failed internally: {errors!r}", pytrace=False)
