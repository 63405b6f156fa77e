"""pytest fixtures for testing code that discovers Swarm tasks through DNS.

Installing swarmdns registers this plugin (entry point ``pytest11``), so any
project's tests can ask for the ``swarm_dns`` fixture::

    def test_sees_every_replica(swarm_dns):
        swarm_dns.create_service("web", replicas=3)
        ...  # code that resolves tasks.web through SWARMDNS_NAMESERVER

The fake answers like the newest Docker Engine it models unless a test is
marked ``@pytest.mark.swarm_dns(engine="20.10")``, or the whole run is started
with ``--swarm-dns-engine=20.10``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from swarmdns import NAMESERVER_VARIABLE, PROVENANCE_VARIABLE
from swarmdns._backends.default import swap_default_backend
from swarmdns.testing import ENGINES, EngineVersion, FakeSwarm

#: The library's variable that names the engine's networks (``SWARMDNS_PROVENANCE``).
_MARKER = "swarm_dns"
_ENGINE_OPTION = "--swarm-dns-engine"
#: What the marker takes: its keyword arguments.
_MARKER_ARGUMENTS = ("engine", "nodes", "delays")


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


def _marked(node: pytest.Item) -> dict[str, Any]:
    """What the closest ``swarm_dns`` marker asks for (engine, nodes, delays), if any."""
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

    During the test, swarmdns's process-wide default backend is the built-in
    one (which follows ``SWARMDNS_NAMESERVER``); whatever default was set
    before the test, and whatever the test sets, the default is put back as
    it was afterwards.
    """
    marked = _marked(request.node)
    if not swarm_dns_server.running:  # a test before this one stopped it
        swarm_dns_server.stop()
        try:
            swarm_dns_server.start()  # on the same port...
        except OSError:
            swarm_dns_server.forget_ports()  # ...unless taken meanwhile: this test's own
            swarm_dns_server.start()
    swarm_dns_server.reset(nodes=marked.get("nodes"), delays=marked.get("delays"))
    if marked.get("engine") is not None:
        swarm_dns_server.use_engine(marked["engine"])
    monkeypatch.setenv(NAMESERVER_VARIABLE, swarm_dns_server.nameserver)
    monkeypatch.setenv(PROVENANCE_VARIABLE, ",".join(map(str, swarm_dns_server.engine_networks)))
    errors_before = len(swarm_dns_server.internal_errors)
    default_before = swap_default_backend(None)
    try:
        yield swarm_dns_server
    finally:
        swap_default_backend(default_before)
    errors = swarm_dns_server.internal_errors[errors_before:]
    swarm_dns_server.close_control()
    swarm_dns_server.reset()
    if errors:
        pytest.fail(f"the fake Swarm DNS server failed internally: {errors!r}", pytrace=False)
