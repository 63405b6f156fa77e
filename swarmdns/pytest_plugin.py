"""pytest fixtures for testing code that discovers Swarm tasks through DNS.

Installing swarmdns registers this plugin (entry point ``pytest11``), so any
project's tests can ask for the ``swarm_dns`` fixture::

    def test_sees_every_replica(swarm_dns):
        swarm_dns.create_service("web", replicas=3)
        ...  # code that resolves tasks.web through SWARMDNS_NAMESERVER
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from swarmdns import NAMESERVER_VARIABLE
from swarmdns._backends.default import swap_default_backend
from swarmdns.testing import FakeSwarm


@pytest.fixture(scope="session")
def swarm_dns_server() -> Iterator[FakeSwarm]:
    """One running fake Swarm DNS server for the whole session.

    Tests normally want ``swarm_dns``, which empties it before each test.
    """
    with FakeSwarm() as swarm:
        yield swarm


@pytest.fixture
def swarm_dns(swarm_dns_server: FakeSwarm, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSwarm]:
    """An empty fake Swarm for this test, with ``SWARMDNS_NAMESERVER`` pointing at it.

    The server answers like Docker's embedded DNS at 127.0.0.11: create
    services, scale them, kill tasks or inject faults, and code under test that
    resolves through ``SWARMDNS_NAMESERVER`` sees the change at once.

    During the test, swarmdns's process-wide default backend is the built-in
    one (which follows ``SWARMDNS_NAMESERVER``); whatever default was set
    before the test, and whatever the test sets, the default is put back as
    it was afterwards.
    """
    if not swarm_dns_server.running:  # a test before this one stopped it
        swarm_dns_server.stop()
        swarm_dns_server.start()
    swarm_dns_server.reset()
    monkeypatch.setenv(NAMESERVER_VARIABLE, swarm_dns_server.nameserver)
    errors_before = len(swarm_dns_server.internal_errors)
    default_before = swap_default_backend(None)
    try:
        yield swarm_dns_server
    finally:
        swap_default_backend(default_before)
    errors = swarm_dns_server.internal_errors[errors_before:]
    swarm_dns_server.reset()
    if errors:
        pytest.fail(f"the fake Swarm DNS server failed internally: {errors!r}", pytrace=False)
