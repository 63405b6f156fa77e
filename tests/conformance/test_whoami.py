"""``swarmdns self`` inside a Swarm task (issue #23), on the fake and on each real Swarm.

On a real Swarm the command runs in the task's own network namespace with its
resolv.conf (so it sees the task's addresses: one per overlay network and one
on the gateway bridge); on the fake, with the task's addresses as its own
(SWARMDNS_OWN_ADDRESSES). What it says must be what the Swarm says of the
task: its address on the network, service, slot and task ID.
The three-node lab's task on node 3: tests/conformance/test_nodes.py.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from .drivers import NETWORKS, Driver, EngineTask


def identity(service: str, task: EngineTask, network: str) -> dict[str, Any]:
    """What ``swarmdns self --json`` should print in ``task``: what the Swarm says of it."""
    return {
        "ip": str(task.addresses[network]),
        "name": f"{service}.{task.slot}.{task.id}",
        "service": service,
        "slot": task.slot,
        "node_id": None,
        "task_id": task.id,
        "network": network,
        "project": None,
        "runtime": "swarm",
    }


def printed(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, f"{done.args} exited {done.returncode}: {done.stderr}"
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def test_whoami_in_a_task_on_one_network(driver: Driver) -> None:
    driver.create_service("whoone", 2)

    for task in driver.tasks("whoone"):
        found = printed(driver.run_in(task, "self", "--json"))
        named = printed(driver.run_in(task, "self", "--json", "--network", NETWORKS[0]))

        assert found == identity("whoone", task, NETWORKS[0])
        assert named == found


def test_whoami_in_a_task_on_two_networks(driver: Driver) -> None:
    driver.create_service("whotwo", 2, networks=NETWORKS)

    for task in driver.tasks("whotwo"):
        for network in NETWORKS:
            found = printed(driver.run_in(task, "self", "--json", "--network", network))

            assert found == identity("whotwo", task, network)
    (task, *_) = driver.tasks("whotwo")
    unsaid = driver.run_in(task, "self", "--json")
    assert unsaid.returncode == 1, unsaid  # two networks, and none named
    assert unsaid.stdout == ""
    assert "--network" in unsaid.stderr, unsaid.stderr
