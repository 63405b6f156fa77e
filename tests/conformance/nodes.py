"""Drivers for Swarms of three nodes: the fake with ``nodes=3``, and the lab's real one.

A scenario sees nodes by number, 1 to 3, as ``.ci/swarm-nodes`` labels them
(``swarmdns.node=N``). The application (swarmdns, run by probe.py) always runs
on node 1: on the real Swarm in a task placed there, on the fake with node 1's
DNS server. ``cut_off(3)`` severs node 3 from the others and ``restore(3)``
brings it back: on the real Swarm its link to the lab's hub goes down and up,
on the fake ``isolate(paused=False)`` and ``rejoin()``. ``pause(3)`` and
``resume(3)`` stop and continue node 3's dockerd (SIGSTOP, SIGCONT) on the
real Swarm, and are ``isolate()`` and ``rejoin()`` on the fake.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from swarmdns import NAMESERVER_VARIABLE, PROVENANCE_VARIABLE
from swarmdns.testing import FakeSwarm

from . import probe
from .drivers import (
    API_VERSION,
    DEFAULT_STATE,
    NETWORKS,
    STATE_VARIABLE,
    Engine,
    EngineTask,
    FakeDriver,
    SwarmDriver,
    Watch,
    as_a_new_process,
    engine_available,
    serving_pid,
    wait_until,
)

#: The label .ci/swarm-nodes gives each node: its number.
NODE_LABEL = "swarmdns.node"
NODE_COUNT = 3


class NodesDriver(Protocol):
    """What a scenario can do to a Swarm of three nodes, and ask of it."""

    kind: str
    engine: str
    #: Each node's ID, node 1's first.
    node_ids: list[str]

    def create_service(self, name: str, replicas: int = 1, *, node: int | None = None) -> None:
        """Create a service and wait for its tasks; ``node`` pins them to that node.

        The fake has no placement constraints: it ignores ``node`` and spreads
        the tasks round-robin, slot 1 on node 1, slot 2 on node 2, and so on.
        """
        ...

    def start_scaling(self, name: str, replicas: int) -> None:
        """Ask for ``replicas`` tasks, without waiting for them."""
        ...

    def converge(self, name: str, replicas: int) -> None: ...

    def tasks(self, name: str, *, starting: bool = False) -> list[EngineTask]: ...

    def call(self, *requests: dict[str, Any]) -> list[dict[str, Any]]: ...

    def watch(self, **options: Any) -> Watch: ...

    def cut_off(self, node: int) -> None:
        """Sever ``node`` (2 or 3) from the others."""
        ...

    def restore(self, node: int) -> None:
        """Bring a node that ``cut_off()`` severed back."""
        ...

    def pause(self, node: int) -> None:
        """Pause ``node``'s engine (2 or 3), its embedded DNS with it."""
        ...

    def resume(self, node: int) -> None:
        """Let a node that ``pause()`` stopped go on."""
        ...

    def ask_node(self, node: int, *requests: dict[str, Any]) -> list[dict[str, Any]]:
        """Carry out probe requests against ``node``'s own DNS, as a task there would."""
        ...

    def run_in(self, task: EngineTask, *arguments: str) -> subprocess.CompletedProcess[str]:
        """Run ``python -m swarmdns ARGUMENTS`` as the application in ``task`` would."""
        ...

    def cleanup(self) -> None: ...

    def stop(self) -> None: ...


# -- the fake ------------------------------------------------------------------------


class FakeNodesDriver(FakeDriver):
    """The fake with three nodes and the measured delays; the application is on node 1."""

    kind = "fake-nodes"

    def __init__(self) -> None:
        self.swarm = FakeSwarm(host="127.0.0.11", nodes=NODE_COUNT).start()
        self.engine = self.swarm.engine
        for network in NETWORKS:
            self.swarm.create_network(network)
        self.swarm.client_networks = NETWORKS
        self._watches = []
        self._own = ""  # the application on node 1 is not a task: SWARMDNS_RUNTIME decides
        self.node_ids = [node.id for node in self.swarm.nodes]
        self._cut: set[int] = set()

    def create_service(  # type: ignore[override]
        self, name: str, replicas: int = 1, *, node: int | None = None
    ) -> None:
        self.swarm.create_service(name, replicas, network=NETWORKS[0])

    def start_scaling(self, name: str, replicas: int) -> None:
        self.swarm.scale(name, replicas)

    def converge(self, name: str, replicas: int, *, replaced: Sequence[str] = ()) -> None:
        """Nothing to wait for: the fake's scheduler is synchronous."""

    def cut_off(self, node: int) -> None:
        self.swarm.isolate(f"node-{node}", paused=False)
        self._cut.add(node)

    def restore(self, node: int) -> None:
        self.swarm.rejoin(f"node-{node}")
        self._cut.discard(node)

    def pause(self, node: int) -> None:
        self.swarm.isolate(f"node-{node}")
        self._cut.add(node)

    resume = restore

    def _nameserver(self, task: EngineTask | None) -> str:
        """The DNS server of the node ``task`` runs on (node 1's without one)."""
        if task is None:
            return self.swarm.nameserver
        return next(node.nameserver for node in self.swarm.nodes if node.id == task.node_id)

    def ask_node(self, node: int, *requests: dict[str, Any]) -> list[dict[str, Any]]:
        nameserver = self.swarm.nodes[node - 1].nameserver
        # The fake is on 127.0.0.11 but its networks are not this machine's: name them.
        networks = ",".join(str(network) for network in self.swarm.engine_networks)
        variables = {NAMESERVER_VARIABLE: nameserver, PROVENANCE_VARIABLE: networks}
        with as_a_new_process(variables):
            return [probe.handle(r) for r in requests]

    def cleanup(self) -> None:
        while self._cut:
            self.restore(min(self._cut))
        super().cleanup()
        # No effect of this scenario's (a node marked Down, say) reaches the next.
        self.swarm.settle()


# -- the real Swarm ----------------------------------------------------------------------


def listed_nodes() -> list[tuple[str, str]]:
    """The nodes .ci/swarm-nodes listed in its state folder: (name, socket URL), node 1 first."""
    listing = Path(os.environ.get(STATE_VARIABLE, DEFAULT_STATE)) / "nodes"
    if not listing.exists():
        return []
    pairs = [line.partition("=") for line in listing.read_text().split()]
    return [(name, socket_url) for name, _, socket_url in pairs]


def nodes_available(nodes: list[tuple[str, str]]) -> str | None:
    """None when the three-node lab is up and whole; otherwise why not."""
    if len(nodes) != NODE_COUNT:
        return f"no three-node Swarm is listed (run .ci/swarm-nodes; found {len(nodes)} nodes)"
    for name, socket_url in nodes:
        missing = engine_available(Engine(name.partition("-")[0], socket_url))
        if missing is not None:
            return missing
    if not _hub_path().exists():
        return f"{_hub_path()} is missing (run .ci/swarm-nodes)"
    return None


def _hub_path() -> Path:
    return Path(os.environ.get(STATE_VARIABLE, DEFAULT_STATE)) / "hub"


class SwarmNodesDriver(SwarmDriver):
    """The lab's three-node Swarm (.ci/swarm-nodes), driven through node 1, the manager.

    The probe task is pinned to node 1, and swarmdns runs in its network
    namespace as ``SwarmDriver`` runs it.
    """

    kind = "swarm-nodes"

    def __init__(self, nodes: list[tuple[str, str]]) -> None:
        (first, first_socket), *_ = nodes
        # Each node's name is also the name of its link's end in the hub.
        self._links = [name for name, _ in nodes]
        self._hub = _hub_path().read_text().strip()
        self._placement: dict[str, int] = {"sdnstest-probe": 1}
        self._cut: set[int] = set()
        self._sockets = [socket_url for _, socket_url in nodes]
        self._paused: set[int] = set()
        self._tasks_on: dict[int, tuple[int, str]] = {}
        super().__init__(Engine(first.partition("-")[0], first_socket))
        numbered = {
            int(node.attrs["Spec"]["Labels"][NODE_LABEL]): node.id
            for node in self.client.nodes.list()
            if NODE_LABEL in node.attrs["Spec"].get("Labels", {})
        }
        self.node_ids = [numbered[n] for n in range(1, NODE_COUNT + 1)]

    def _placement_of(self, name: str) -> dict[str, Any]:
        """Pin the service to the node ``create_service()`` named, if any."""
        node = self._placement.get(name)
        return {} if node is None else {"constraints": [f"node.labels.{NODE_LABEL}=={node}"]}

    def create_service(  # type: ignore[override]
        self, name: str, replicas: int = 1, *, node: int | None = None
    ) -> None:
        if node is not None:
            self._placement[name] = node
        super().create_service(name, replicas)

    def start_scaling(self, name: str, replicas: int) -> None:
        self._cli("service", "scale", "--detach", f"{name}={replicas}")

    def _link(self, node: int, state: str) -> None:
        if node == 1:
            raise ValueError("node 1 runs the application and the manager: cut off 2 or 3")
        subprocess.run(
            ["ip", "-n", self._hub, "link", "set", self._links[node - 1], state],
            check=True,
            capture_output=True,
        )

    def cut_off(self, node: int) -> None:
        self._link(node, "down")
        self._cut.add(node)

    def restore(self, node: int) -> None:
        self._link(node, "up")
        self._cut.discard(node)

    def pause(self, node: int) -> None:
        if node == 1:
            raise ValueError("node 1 runs the application and the manager: pause 2 or 3")
        self._tasks_on[node] = self._task_on(node)  # its engine cannot say while paused
        os.kill(serving_pid(self._sockets[node - 1]), signal.SIGSTOP)
        self._paused.add(node)

    def resume(self, node: int) -> None:
        os.kill(serving_pid(self._sockets[node - 1]), signal.SIGCONT)
        self._paused.discard(node)
        self._tasks_on.pop(node, None)

    def ask_node(self, node: int, *requests: dict[str, Any]) -> list[dict[str, Any]]:
        """In the network namespace of a task on ``node`` (found before a pause)."""
        task = self._tasks_on.get(node) or self._task_on(node)
        return self._probe(requests, task)

    def _namespace_of(self, task: EngineTask) -> tuple[int, str]:
        """From the engine of the node ``task`` runs on."""
        node_socket = self._sockets[self.node_ids.index(task.node_id)]
        client = self._docker.DockerClient(base_url=node_socket, version=API_VERSION)
        try:
            attributes = client.containers.get(task.container_id).attrs
        finally:
            client.close()
        return attributes["State"]["Pid"], attributes["ResolvConfPath"]

    def _task_on(self, node: int) -> tuple[int, str]:
        """A running task on ``node``: its process id and resolv.conf, from that node's engine."""
        client = self._docker.DockerClient(base_url=self._sockets[node - 1], version=API_VERSION)
        try:
            for container in client.containers.list(filters={"label": "com.docker.swarm.task"}):
                return container.attrs["State"]["Pid"], container.attrs["ResolvConfPath"]
        finally:
            client.close()
        raise RuntimeError(f"no task runs on node {node}: create a service with tasks there")

    def cleanup(self) -> None:
        restored = bool(self._cut or self._paused)
        while self._paused:
            self.resume(min(self._paused))
        while self._cut:
            self.restore(min(self._cut))
        super().cleanup()
        if restored:  # the next scenario starts with every node ready
            wait_until(self._all_ready, "every node ready again")
        self._placement = {"sdnstest-probe": 1}

    def _all_ready(self) -> bool:
        nodes = self.client.nodes.list()
        return len(nodes) == NODE_COUNT and all(
            node.attrs["Status"]["State"] == "ready" for node in nodes
        )
