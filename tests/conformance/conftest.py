"""The conformance suite runs every scenario on the fake as each engine and on each real Swarm.

The real Swarms are the engines that SWARMDNS_ENGINES lists, or else those
``bash .ci/swarm-setup`` started (20.10, 26.1 and 28.5, single-node, listed in
its state folder); they need root. Without them, their half of the suite is
skipped, unless SWARMDNS_REAL_SWARM=1 (as in .ci/run) makes a missing engine
an error. Each Swarm is set up once and shared by the session's scenarios.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from swarmdns.testing import ENGINES as FAKE_ENGINES

from .drivers import Driver, FakeDriver, SwarmDriver, engine_available, listed_engines

REQUIRE_ENGINE = "SWARMDNS_REAL_SWARM"

ENGINES = listed_engines()
SWARMS = [pytest.param(engine, id=f"swarm-{engine.version}") for engine in ENGINES] or [
    pytest.param(None, id="swarm")
]


FAKES = [pytest.param(f"fake-{engine}", id=f"fake-{engine}") for engine in FAKE_ENGINES]


@pytest.fixture(scope="session", params=[*FAKES, *SWARMS])
def session_driver(request: pytest.FixtureRequest) -> Iterator[Driver]:
    """The fake as each engine, or one engine's Swarm: made once, for every scenario on it."""
    if isinstance(request.param, str):
        fake = FakeDriver(next(e for e in FAKE_ENGINES if f"fake-{e}" == request.param))
        yield fake
        fake.stop()
        return
    missing = "no engine is listed" if request.param is None else engine_available(request.param)
    if missing is not None:
        if os.environ.get(REQUIRE_ENGINE) == "1":
            pytest.fail(f"{REQUIRE_ENGINE}=1 but {missing}", pytrace=False)
        pytest.skip(f"real Swarm tests skipped: {missing} (run .ci/swarm-setup as root)")
    swarm = SwarmDriver(request.param)
    yield swarm
    swarm.stop()


@pytest.fixture
def driver(session_driver: Driver) -> Iterator[Driver]:
    """A Swarm to run the scenario on; whatever the test creates is removed after it."""
    try:
        yield session_driver
    finally:
        session_driver.cleanup()
