"""What operators do to a Swarm (updates, rollbacks, drains), and the DNS timeline they leave.

A scenario drives an ``Operations``: the fake's operations (FakeSwarm's
``update_service()``, ``rollback()``, ``drain()``, ``activate()``) or the real
engine's (``docker service update --force``, ``docker service rollback``,
``docker node update --availability``). Meanwhile a ``Sampler`` asks the
probe task's DNS every 50 ms what ``tasks.<svc>`` and ``<svc>`` are, and
``analyse()``, which does no I/O, tells from those samples what an
application saw: the fewest and most tasks, how long fewer or more than the
replica count, the addresses, whether the VIP changed.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import math
import os
import queue
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Protocol

import attrs

from swarmdns.testing import FakeSwarm, Operation, OperationDelays, SwarmError, UpdateOrder

from . import sampler as sampler_module
from .drivers import (
    API_VERSION,
    CONVERGE_TIMEOUT,
    HEALTHY_FILE,
    IMAGE,
    NETWORKS,
    _ProcessWatch,
    wait_until,
)

SAMPLER = Path(sampler_module.__file__)
#: How often the sampler asks, and how long it waits for each answer: a
#: missed answer counts as a failure, never as an empty one.
SAMPLE_INTERVAL = 0.05
SAMPLE_DEADLINE = 0.25
#: DNS shows the final state this long (after the operation is over, and
#: DNS agrees with the engine's list of tasks) before sampling stops, so
#: that a late change would still be seen.
SETTLE = 1.0
#: The lab service's health check passes this long after its container starts.
HEALTHY_AFTER = 1.0

# -- the timeline --------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Sample:
    """One answer of the probe task's DNS: when it was asked, and what it said."""

    at: float
    name: str
    rcode: str
    addresses: frozenset[IPv4Address]

    @property
    def failed(self) -> bool:
        """No answer, or an error: it tells nothing about the tasks."""
        return self.rcode not in ("NOERROR", "NXDOMAIN")

    @classmethod
    def parse(cls, fields: Any) -> Sample:
        """A sample from a line that sampler.py printed, read as JSON."""
        at, name, rcode, addresses = fields
        return cls(at=at, name=name, rcode=rcode, addresses=frozenset(map(IPv4Address, addresses)))


@attrs.frozen(kw_only=True)
class Analysis:
    """What an application saw of ``tasks.<svc>`` and ``<svc>`` during an operation.

    Attributes:
        replicas: The service's replica count, N.
        fewest: The fewest tasks any answer listed (an NXDOMAIN lists none).
        most: The most tasks any answer listed.
        below: Seconds during which the answers listed fewer than N.
        above: Seconds during which they listed more than N.
        initial: The tasks of the first answer, from before the operation.
        final: The tasks of the last answer.
        seen: Every address any answer listed.
        returned: Addresses that left the answers and came back later.
        vips: Every address ``<svc>`` answered (one, if the VIP never changed).
        took: Seconds from the operation's start to the last change of the answers.
        failed: Answers that did not come (or were errors), ignored above.
        answers: The answers for ``tasks.<svc>`` that came.
    """

    replicas: int
    fewest: int
    most: int
    below: float
    above: float
    initial: frozenset[IPv4Address]
    final: frozenset[IPv4Address]
    seen: frozenset[IPv4Address]
    returned: frozenset[IPv4Address]
    vips: frozenset[IPv4Address]
    took: float
    failed: int
    answers: int

    @property
    def all_new(self) -> bool:
        """Whether no final task has an address of an initial one."""
        return not self.final & self.initial

    @property
    def vip_unchanged(self) -> bool:
        """Whether ``<svc>`` always answered the same one address."""
        return len(self.vips) == 1

    def describe(self) -> str:
        """The analysis in one line, for the report."""
        return (
            f"took {self.took:.1f} s; tasks in DNS: fewest {self.fewest}, most {self.most}"
            f" (N={self.replicas}); below N {self.below:.1f} s, above N {self.above:.1f} s;"
            f" {len(self.seen)} addresses seen, final all new: {self.all_new},"
            f" returned: {len(self.returned)}; VIPs {sorted(map(str, self.vips))};"
            f" {self.failed} of {self.answers + self.failed} answers missing"
        )


def analyse(samples: Sequence[Sample], *, service: str, replicas: int, start: float) -> Analysis:
    """What the answers for ``tasks.<service>`` and ``<service>`` show, from ``start`` on.

    Each answer stands until the next one (of the same name): a single
    answer short of a task counts for the time until the next answer.
    """
    answers = [s for s in samples if s.name == f"tasks.{service}" and not s.failed]
    failed = sum(1 for s in samples if s.name == f"tasks.{service}" and s.failed)
    if not answers:
        raise ValueError(f"no answer for tasks.{service} among {len(samples)} samples")
    counts = [len(s.addresses) for s in answers]
    below = above = 0.0
    for this, following in itertools.pairwise(answers):
        span = following.at - this.at
        if len(this.addresses) < replicas:
            below += span
        elif len(this.addresses) > replicas:
            above += span
    last_change = start
    for previous, this in itertools.pairwise(answers):
        if this.addresses != previous.addresses:
            last_change = this.at
    left: set[IPv4Address] = set()
    returned: set[IPv4Address] = set()
    for previous, this in itertools.pairwise(answers):
        returned |= this.addresses & left
        left |= previous.addresses - this.addresses
    vips = frozenset().union(*(s.addresses for s in samples if s.name == service and not s.failed))
    return Analysis(
        replicas=replicas,
        fewest=min(counts),
        most=max(counts),
        below=below,
        above=above,
        initial=answers[0].addresses,
        final=answers[-1].addresses,
        seen=frozenset().union(*(s.addresses for s in answers)),
        returned=frozenset(returned),
        vips=vips,
        took=max(0.0, last_change - start),
        failed=failed,
        answers=len(answers),
    )


def first_answer(
    samples: Iterable[Sample], name: str, after: float, *, empty: bool
) -> float | None:
    """When ``name`` first answered no address (``empty``) or some, after ``after``."""
    for sample in samples:
        wanted = bool(sample.addresses) != empty
        if sample.name == name and sample.at >= after and not sample.failed and wanted:
            return sample.at
    return None


#: What each step took for the lab's service (``SwarmOperations.create()``,
#: N=3, one node), per engine, sampled every 50 ms. On every engine DNS
#: dropped an old task 1.2 s after its batch began and its container exited
#: 3.0 s later (the engine waits 2 s, then the 1 s stop grace period ends
#: ``sleep``); the next batch was dropped 1.2 s after the last one entered
#: (``stop``, with no wait before it: ``monitor`` 0). The new container
#: started 0.3 s (28.5) or 0.5-0.7 s (26.1, 20.10) after the old one exited,
#: or after the decision, start-first. It entered DNS 1.1-1.2 s after its
#: start on 26.1 and 20.10, but 5.2 s after it on 28.5, which had run no
#: check 4.5 s after the start (its default start interval, 5 s, paces
#: the checks of the start period; API 1.41 cannot set it).
LAB_DELAYS: dict[str, OperationDelays] = {
    "20.10": OperationDelays(stop=1.2, exit=3.0, start=0.55, healthy=1.15, monitor=0.0),
    "26.1": OperationDelays(stop=1.2, exit=3.0, start=0.6, healthy=1.15, monitor=0.0),
    "28.5": OperationDelays(stop=1.2, exit=3.0, start=0.3, healthy=5.2, monitor=0.0),
}
#: The fake runs its engine's lab timeline four times as fast: the same shape
#: (its shortest step, 0.075 s, still seen at 50 ms sampling) in a quarter
#: of the time.
FAKE_SPEED = 4.0


def lab_delays(engine: str) -> OperationDelays:
    """The measured delays of ``engine`` (the newest measured one's for another)."""
    return LAB_DELAYS.get(engine, LAB_DELAYS["28.5"])


def expected_below(
    delays: OperationDelays, *, replicas: int, parallelism: int, order: UpdateOrder
) -> float:
    """How long a rolling update with ``delays`` keeps fewer than ``replicas`` tasks in DNS.

    Stop-first, each batch is out of DNS from the moment it is dropped until
    its replacements are listed: their old containers exit, the new ones
    start and pass their health check. Start-first never drops below.
    """
    if order == "start-first":
        return 0.0
    batches = math.ceil(replicas / parallelism)
    return batches * (delays.exit + delays.start + delays.healthy)


# -- sampling ------------------------------------------------------------------------


class Sampler:
    """sampler.py in a process of its own, asking the probe task's DNS about ``names``."""

    def __init__(
        self,
        command_prefix: Sequence[str],
        environment: dict[str, str] | None,
        names: Sequence[str],
    ) -> None:
        options = {"names": list(names), "interval": SAMPLE_INTERVAL, "deadline": SAMPLE_DEADLINE}
        command = [*command_prefix, sys.executable, str(SAMPLER), json.dumps(options)]
        #: One JSON line per answer, read as a watch's changes are.
        self._lines = _ProcessWatch(command, environment)
        self._samples: list[Sample] = []

    def _collect(self) -> list[Sample]:
        with contextlib.suppress(queue.Empty):
            while True:
                self._samples.append(Sample.parse(self._lines.next_event(timeout=0)))
        return self._samples

    def wait_started(self) -> None:
        """Return once the first answer is in."""
        self._samples.append(Sample.parse(self._lines.next_event()))

    @property
    def samples(self) -> list[Sample]:
        """The answers so far."""
        return list(self._collect())

    def latest(self, name: str) -> Sample | None:
        """The last answer for ``name`` that came."""
        return next(
            (s for s in reversed(self._collect()) if s.name == name and not s.failed), None
        )

    def stop(self) -> list[Sample]:
        """Stop sampling; every answer it got."""
        self._lines.close()
        return self.samples


def settle(sampler: Sampler, name: str, expected: Iterable[IPv4Address]) -> None:
    """Wait until ``name`` answers ``expected``, then ``SETTLE`` seconds more."""
    wanted = frozenset(expected)

    def shown() -> bool:
        latest = sampler.latest(name)
        return latest is not None and latest.addresses == wanted

    wait_until(shown, f"{name} answering {sorted(map(str, wanted))}")
    time.sleep(SETTLE)  # sampling on: a late change is caught, not timed


# -- the Swarms ---------------------------------------------------------------------


class Operations(Protocol):
    """What a scenario does to a Swarm (the fake, or a real engine's) and asks of it."""

    #: The Swarm, as the report names it ("fake-28.5", "swarm-28.5-nodes", ...).
    name: str
    #: What a replacement's steps take on this Swarm, as far as the scenario expects.
    delays: OperationDelays

    def create(self, name: str, replicas: int, *, node: int | None = None) -> None:
        """Create a service with the health check; wait until its tasks run."""
        ...

    def addresses(self, name: str) -> frozenset[IPv4Address]:
        """The addresses of the service's tasks that the Swarm runs (and would list in DNS)."""
        ...

    def addresses_by_node(self, name: str) -> dict[IPv4Address, int]:
        """Each running task's address, and its node (1 to 3)."""
        ...

    def nodes_of(self, name: str) -> list[int]:
        """The node of each running task, sorted."""
        ...

    def wait_running(self, name: str, replicas: int) -> None:
        """Wait until the Swarm runs ``replicas`` tasks of the service."""
        ...

    def sampler(self, names: Sequence[str]) -> Sampler:
        """A sampler asking the probe task's DNS about ``names``."""
        ...

    def update(self, name: str, *, order: UpdateOrder, parallelism: int) -> None:
        """Replace every task; return once the Swarm runs only new ones."""
        ...

    def completed(self, name: str) -> None:
        """Wait until the Swarm calls the last update done."""
        ...

    def rollback(self, name: str) -> None:
        """Undo the last update; return once the Swarm runs only new tasks."""
        ...

    def drain(self, node: int) -> None: ...

    def activate(self, node: int) -> None: ...

    def steps(self, name: str, samples: Sequence[Sample]) -> list[Step]:
        """The replacements of the operations on ``name``, timed."""
        ...

    def cleanup(self) -> None: ...


def operations_for(driver: Any) -> Operations:
    """The operations of a conformance driver's Swarm (one node or three, fake or real)."""
    if driver.kind.startswith("fake"):
        return FakeOperations(driver)
    return SwarmOperations(driver)


# -- the fake -------------------------------------------------------------------------


class FakeOperations:
    """The fake's operations (its engine's lab delays, ``FAKE_SPEED`` times as fast).

    Its services have a health check that the fake passes on its own for
    the tasks an operation starts; the first tasks are marked healthy here.
    """

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.swarm: FakeSwarm = driver.swarm
        self.name = "fake-nodes" if driver.kind == "fake-nodes" else f"fake-{driver.engine}"
        self.delays = lab_delays(driver.engine).scaled(1 / FAKE_SPEED)
        #: Each operation run: when it began (monotonic), and the operation.
        self._operations: list[tuple[float, Operation]] = []
        self._drained: set[int] = set()

    def create(self, name: str, replicas: int, *, node: int | None = None) -> None:
        placement = None if node is None else [f"node-{node}"]
        service = self.swarm.create_service(
            name, replicas, network=NETWORKS[0], healthcheck=True, placement=placement
        )
        for task in service.tasks:
            self.swarm.mark_healthy(task.id)
        self.wait_running(name, replicas)

    def _node(self, node_id: str) -> int:
        return [n.id for n in self.swarm.nodes].index(node_id) + 1

    def addresses(self, name: str) -> frozenset[IPv4Address]:
        return frozenset(
            t.addresses[NETWORKS[0]] for t in self.swarm.service(name).tasks if t.visible
        )

    def addresses_by_node(self, name: str) -> dict[IPv4Address, int]:
        return {
            t.addresses[NETWORKS[0]]: self._node(t.node_id)
            for t in self.swarm.service(name).tasks
            if t.visible
        }

    def nodes_of(self, name: str) -> list[int]:
        return sorted(self.addresses_by_node(name).values())

    def wait_running(self, name: str, replicas: int) -> None:
        wait_until(lambda: len(self.addresses(name)) == replicas, f"{name} running")

    def sampler(self, names: Sequence[str]) -> Sampler:
        """The same sampler, asking the fake's DNS server (node 1's)."""
        return Sampler([], {**os.environ, **self.driver._variables()}, names)

    def _run(self, start: Callable[[], Operation]) -> None:
        began = time.monotonic()
        operation = start()
        self._operations.append((began, operation))
        operation.wait(CONVERGE_TIMEOUT)

    def update(self, name: str, *, order: UpdateOrder, parallelism: int) -> None:
        self._run(
            lambda: self.swarm.update_service(
                name, order=order, parallelism=parallelism, delays=self.delays
            )
        )

    def completed(self, name: str) -> None:
        """Nothing to wait for: ``update()`` returned at the operation's end."""

    def rollback(self, name: str) -> None:
        self._run(lambda: self.swarm.rollback(name, delays=self.delays))

    def drain(self, node: int) -> None:
        self._run(lambda: self.swarm.drain(f"node-{node}", delays=self.delays))
        self._drained.add(node)

    def activate(self, node: int) -> None:
        self._run(lambda: self.swarm.activate(f"node-{node}", delays=self.delays))
        self._drained.discard(node)

    def steps(self, name: str, samples: Sequence[Sample]) -> list[Step]:
        """Each replacement, timed from the samples and the operations' timelines.

        Old and new tasks are paired by slot (tasks are ``<service>.<slot>.<id>``).
        """
        found = []
        for began, operation in self._operations:
            by_slot: dict[str, dict[str, Any]] = {}
            for event in operation.timeline:
                if event.service == name:
                    slot = by_slot.setdefault(event.task.split(".")[1], {})
                    slot[event.step] = (began + event.at, event.ip)
            for slot in by_slot.values():
                if {"exited", "started"} <= slot.keys():
                    found.append(
                        Step(
                            dropped=_change(
                                samples, f"tasks.{name}", slot["exited"][1], present=False
                            ),
                            exited=slot["exited"][0],
                            started=slot["started"][0],
                            entered=_change(
                                samples, f"tasks.{name}", slot["started"][1], present=True
                            ),
                        )
                    )
        return sorted(found, key=lambda s: s.started)

    def cleanup(self) -> None:
        """Every node active again (at once), for the next scenario."""
        for node in sorted(self._drained):
            with contextlib.suppress(SwarmError):
                self.swarm.activate(f"node-{node}", delays=OperationDelays.INSTANT).wait()
        self._drained.clear()
        self._operations.clear()


# -- the real engine -------------------------------------------------------------------


class SwarmOperations:
    """The real engine's operations, through a conformance driver of it (one node or three).

    Services run the lab's busybox image with a health check that passes
    ``HEALTHY_AFTER`` seconds after their container starts, and stop within
    1 s (``sleep`` ignores SIGTERM: the stop grace period ends it).
    """

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        nodes = "-nodes" if driver.kind == "swarm-nodes" else ""
        self.name = f"swarm-{driver.engine}{nodes}"
        self.delays = lab_delays(driver.engine)
        self._client = driver.client

    def create(self, name: str, replicas: int, *, node: int | None = None) -> None:
        """Create the service (on node ``node`` only, if given) and wait until DNS lists it."""
        types = self.driver._docker.types
        constraints = [] if node is None else [f"node.labels.swarmdns.node=={node}"]
        self._client.services.create(
            IMAGE,
            ["sh", "-c", f"sleep {HEALTHY_AFTER:g}; touch {HEALTHY_FILE}; exec sleep 1000000"],
            name=name,
            stop_grace_period=1_000_000_000,
            networks=[NETWORKS[0]],
            mode=types.ServiceMode("replicated", replicas=replicas),
            constraints=constraints,
            healthcheck=types.Healthcheck(
                test=["CMD", "test", "-e", HEALTHY_FILE],
                interval=500_000_000,
                timeout=1_000_000_000,
                retries=3,
                # Failed checks before the file is there never get a task replaced.
                start_period=60_000_000_000,
            ),
        )
        self.driver._created.append(name)
        self.wait_running(name, replicas)

    def addresses(self, name: str) -> frozenset[IPv4Address]:
        """The addresses of the service's running tasks, as the engine lists them."""
        return frozenset(t.addresses[NETWORKS[0]] for t in self.driver.tasks(name))

    def addresses_by_node(self, name: str) -> dict[IPv4Address, int]:
        """Each running task's address, and its node (1 to 3)."""
        return {
            t.addresses[NETWORKS[0]]: self.driver.node_ids.index(t.node_id) + 1
            for t in self.driver.tasks(name)
        }

    def wait_running(self, name: str, replicas: int) -> None:
        """Wait until the engine runs ``replicas`` tasks of the service."""
        wait_until(lambda: len(self.driver.tasks(name)) == replicas, f"{name} running")

    def sampler(self, names: Sequence[str]) -> Sampler:
        """A sampler in the probe task's network namespace, asking the engine's 127.0.0.11."""
        return Sampler(self.driver._in_task(), None, names)

    def _cli(self, *arguments: str) -> None:
        self.driver._cli(*arguments)

    def update(self, name: str, *, order: UpdateOrder, parallelism: int) -> None:
        """Replace every task, as ``--force`` does; return once the engine runs only new ones.

        Not once the engine calls the update completed: that is its monitor
        period (5 s) later, and changes nothing in DNS.
        """
        old = [t.id for t in self.driver.tasks(name, starting=True)]
        self._cli(
            "service", "update", "--detach", "--force", "--no-resolve-image",
            "--update-order", order, "--update-parallelism", str(parallelism),
            "--update-delay", "0s", name,
        )  # fmt: skip
        self.driver.converge(name, len(old), replaced=old)

    def completed(self, name: str) -> None:
        """Wait until the engine calls the last update of ``name`` over (a rollback needs it)."""

        def over() -> bool:
            status = self._client.api.inspect_service(name).get("UpdateStatus") or {}
            return status.get("State") == "completed"

        wait_until(over, f"the update of {name} completed")

    def rollback(self, name: str) -> None:
        """Undo the last update, with the rollback configuration's defaults, as ``update()``."""
        old = [t.id for t in self.driver.tasks(name, starting=True)]
        self._cli("service", "rollback", "--detach", name)
        self.driver.converge(name, len(old), replaced=old)

    def nodes_of(self, name: str) -> list[int]:
        """The node (1 to 3) of each running task of ``name``, as the engine lists them."""
        return sorted(self.driver.node_ids.index(t.node_id) + 1 for t in self.driver.tasks(name))

    def drain(self, node: int) -> None:
        """Make node ``node`` drain its tasks; return once the engine has moved them."""
        self._cli("node", "update", "--availability", "drain", self.driver.node_ids[node - 1])

    def activate(self, node: int) -> None:
        """Make node ``node`` active again."""
        self._cli("node", "update", "--availability", "active", self.driver.node_ids[node - 1])

    def cleanup(self) -> None:
        """Every node active again, for the next scenario."""
        for node_id in getattr(self.driver, "node_ids", []):
            self._cli("node", "update", "--availability", "active", node_id)

    def steps(self, name: str, samples: Sequence[Sample]) -> list[Step]:
        """Each replacement of ``name``'s tasks, timed from the samples and the engine.

        Old and new tasks are paired by slot; when a container exited and
        started comes from the engine (its wall clock, turned into this
        process's monotonic time).
        """
        offset = time.time() - time.monotonic()
        by_slot: dict[int, list[dict[str, Any]]] = {}
        for task in self._client.api.tasks(filters={"service": name}):
            by_slot.setdefault(task.get("Slot") or 0, []).append(task)
        found = []
        for tasks in by_slot.values():
            tasks.sort(key=lambda t: t["CreatedAt"])
            for old, new in itertools.pairwise(tasks):
                old_ip, new_ip = _address(old), _address(new)
                exited = self._container_time(old, "FinishedAt")
                started = self._container_time(new, "StartedAt")
                if old_ip is None or new_ip is None or exited is None or started is None:
                    continue
                found.append(
                    Step(
                        dropped=_change(samples, f"tasks.{name}", old_ip, present=False),
                        exited=exited - offset,
                        started=started - offset,
                        entered=_change(samples, f"tasks.{name}", new_ip, present=True),
                    )
                )
        return sorted(found, key=lambda s: s.started)

    def _container_time(self, task: dict[str, Any], field: str) -> float | None:
        container = task["Status"].get("ContainerStatus", {}).get("ContainerID")
        if not container:
            return None
        node_ids: list[str] = getattr(self.driver, "node_ids", [])
        if task["NodeID"] not in node_ids[1:]:
            client = self._client
        else:  # on another node than node 1: that node's engine knows the container
            node_socket = self.driver._sockets[node_ids.index(task["NodeID"])]
            client = self.driver._docker.DockerClient(base_url=node_socket, version=API_VERSION)
        try:
            state = client.api.inspect_container(container)["State"]
        except self.driver._docker.errors.NotFound:
            return None
        finally:
            if client is not self._client:
                client.close()
        return _wall(state[field])


@attrs.frozen(kw_only=True)
class Step:
    """One task's replacement (monotonic times; None: not seen in the samples)."""

    dropped: float | None
    exited: float
    started: float
    entered: float | None


def _address(task: dict[str, Any]) -> IPv4Address | None:
    for attachment in task.get("NetworksAttachments", []):
        if attachment["Network"]["Spec"]["Name"] == NETWORKS[0]:
            return IPv4Address(attachment["Addresses"][0].split("/")[0])
    return None


def _wall(stamp: str) -> float | None:
    """An engine's RFC 3339 time stamp (nanoseconds, "Z") as seconds since the epoch."""
    if stamp.startswith("0001-"):
        return None
    seconds, _, fraction = stamp.rstrip("Z").partition(".")
    whole = datetime.datetime.fromisoformat(seconds).replace(tzinfo=datetime.timezone.utc)
    return whole.timestamp() + float(f"0.{fraction or 0}")


def _change(
    samples: Sequence[Sample], name: str, address: IPv4Address | None, *, present: bool
) -> float | None:
    """When ``address`` first was in the answers (``present``), or first left them."""
    seen = False
    for sample in samples:
        if sample.name != name or sample.failed:
            continue
        there = address in sample.addresses
        if present and there:
            return sample.at
        if not present and seen and not there:
            return sample.at
        seen = seen or there
    return None
