"""The conformance suite runs every scenario on the fake and on a real Swarm.

The real Swarm needs a Docker engine in Swarm mode (``bash .ci/swarm-setup``)
and root. Without one, its half of the suite is skipped, unless
SWARMDNS_REAL_SWARM=1 (as in .ci/run) makes a missing engine an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .drivers import Driver, FakeDriver, SwarmDriver, engine_available

REQUIRE_ENGINE = "SWARMDNS_REAL_SWARM"


@pytest.fixture(scope="session")
def fake_driver() -> Iterator[FakeDriver]:
    driver = FakeDriver()
    yield driver
    driver.stop()


@pytest.fixture(scope="session")
def swarm_driver() -> Iterator[SwarmDriver]:
    missing = engine_available()
    if missing is not None:
        if os.environ.get(REQUIRE_ENGINE) == "1":
            pytest.fail(f"{REQUIRE_ENGINE}=1 but {missing}", pytrace=False)
        pytest.skip(f"real Swarm tests skipped: {missing} (run .ci/swarm-setup as root)")
    driver = SwarmDriver()
    yield driver
    driver.stop()


@pytest.fixture(params=["fake", "swarm"])
def driver(request: pytest.FixtureRequest) -> Iterator[Driver]:
    """A Swarm to run the scenario on; whatever the test creates is removed after it."""
    chosen: Driver = request.getfixturevalue(f"{request.param}_driver")
    try:
        yield chosen
    finally:
        chosen.cleanup()
