"""Fixtures for the tests of the fake Swarm DNS server."""

from __future__ import annotations

import pytest

from .dns_clients import Ask, ask_dig, ask_dnspython


@pytest.fixture(params=["dig", "dnspython"])
def ask(request: pytest.FixtureRequest) -> Ask:
    """Ask the fake a question through dig, then through dnspython."""
    client: Ask = ask_dig if request.param == "dig" else ask_dnspython
    return client
