"""How pytest-xdist shares the suite out among its workers (pyproject.toml runs it with ``-n``).

Most tests own everything they touch (free ports, ``tmp_path``, their own
process's environment), so any worker may take any of them. These must run
one after the other, in one worker:

- tests/test_recipes.py: its replicas listen on fixed addresses
  (127.77.0.0/24, port 8080).
- tests/conformance, on each real Swarm: the scenarios share the engine's
  services, networks and upstream resolver (with the Compose scenarios on
  that engine). Different Swarms (each engine, and the three-node one) share
  nothing, and run side by side.

xdist's own ``--dist loadgroup`` would do this with markers, but silently
stops grouping on pytest 9.2 (pytest-xdist issue 1386): the scheduler below
groups by node ID instead, and each worker checks that every test of a real
Swarm is in its Swarm's group.

Workers share the machine's cores, so a test may take a few times as long as
alone: hypothesis's per-example deadline (200 ms) and its too-slow health
check, which time the test rather than check it, are off.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("swarmdns", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("swarmdns")

RECIPES = "tests/test_recipes.py"
CONFORMANCE = "tests/conformance/"
#: A real Swarm's part of a test's ID: "swarm-VERSION" (conftest.py there) or
#: "swarm-VERSION-nodes" (test_nodes.py; "swarm-nodes" when no nodes are
#: listed); "compose-VERSION" and "plain-VERSION" (test_compose.py) run on
#: engine VERSION's lab too, and share its upstream.
_SWARM_ID = re.compile(r"[\[-](?:swarm|compose|plain)-(\d+(?:\.\d+)*(?:-nodes)?|nodes)[-\]]")


def shared_state(nodeid: str) -> str | None:
    """The group of tests that share state with test ``nodeid``, or None if it shares none."""
    if nodeid.startswith(RECIPES + "::"):
        return RECIPES
    if nodeid.startswith(CONFORMANCE) and (swarm := _SWARM_ID.search(nodeid)):
        return f"swarm-{swarm[1]}"
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Tests of a group go to one worker together; all others, one by one, to any."""
    if config.getoption("dist") not in ("load", "loadgroup", "worksteal"):
        return None  # loadscope, loadfile keep a module together; each runs all everywhere
    from xdist.scheduler import LoadScopeScheduling  # noqa: PLC0415 - only with xdist

    class SharedStateScheduling(LoadScopeScheduling):  # type: ignore[misc]
        # Largest groups first (LoadScopeScheduling's order): the Swarms' scenarios start at once.
        def _split_scope(self, nodeid: str) -> str:
            return shared_state(nodeid) or nodeid

    return SharedStateScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker, refuse to run a real Swarm's test that the scheduler would not group."""
    if not hasattr(config, "workerinput"):
        return
    for item in items:
        callspec = getattr(item, "callspec", None)
        params: dict[str, object] = callspec.params if callspec is not None else {}
        engine = params.get("session_driver")
        if engine is not None and not isinstance(engine, str):
            expected = f"swarm-{getattr(engine, 'version', '?')}"
        elif params.get("session_nodes") == "swarm":
            expected = "-nodes"
        else:
            continue
        group = shared_state(item.nodeid)
        if group is None or not (group == expected or group.endswith(expected)):
            raise pytest.UsageError(
                f"{item.nodeid} runs on a real Swarm, but tests/conftest.py groups it with"
                f" {group or 'no Swarm'}: update its _SWARM_ID"
            )


@pytest.fixture(autouse=True)
def swarm_runtime(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside tests/conformance, a test runs as if in a Swarm task (``SWARMDNS_RUNTIME=swarm``).

    The suite's DNS servers listen on loopback, some at the engine's own
    127.0.0.11, where ``runtime="auto"`` would first ask the PTR records of
    this machine's addresses. The tests of ``auto`` itself (tests/test_runtime.py)
    unset the variable; the conformance suite runs as an application would,
    without it.
    """
    if not request.node.nodeid.startswith(CONFORMANCE):
        monkeypatch.setenv("SWARMDNS_RUNTIME", "swarm")
