"""One interface, several Swarms: the fake, and real single-node Docker Swarms.

A scenario drives a ``Driver``: it creates services, changes them, asks the
engine (or the fake) for its own list of tasks, and runs swarmdns the way an
application in a task would. Run against all of them, the same scenario proves
swarmdns on each engine and the fake faithful to them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, ClassVar, Protocol
from unittest import mock

import attrs
import pytest

from swarmdns import (
    NAMESERVER_VARIABLE,
    OWN_ADDRESSES_VARIABLE,
    PROVENANCE_VARIABLE,
    RUNTIME_VARIABLE,
    _memo,
)
from swarmdns.testing import (
    ENGINES,
    HIJACK_ADDRESSES,
    EndpointMode,
    EngineVersion,
    FakeSwarm,
    ServiceMode,
    Upstream,
)

from . import probe, upstream

NETWORKS = ("sdnstest-a", "sdnstest-b")
#: The service whose task the application runs in.
PROBE_SERVICE = "sdnstest-probe"
IMAGE = "swarmdns-busybox:1"
#: The Engine API of Docker 20.10 (Debian 12's docker.io), which newer engines also serve.
API_VERSION = "1.41"
#: Debian 12's CLI (API 1.41), for every engine.
DOCKER = "/usr/bin/docker"
#: The engines to run on, ``VERSION=unix://SOCKET`` separated by white space.
ENGINES_VARIABLE = "SWARMDNS_ENGINES"
#: Without ENGINES_VARIABLE: the folder where .ci/swarm-setup lists its engines.
STATE_VARIABLE = "SWARMDNS_SWARM_STATE"
DEFAULT_STATE = "/tmp/swarmdns-swarm"  # noqa: S108 - .ci/swarm-setup's default
#: Inside the task's container, not on this machine.
HEALTHY_FILE = "/tmp/healthy"  # noqa: S108
PROBE = Path(probe.__file__)
UPSTREAM = Path(upstream.__file__)
#: A task's address on the docker_gwbridge network (eth1 in a real task).
GATEWAY_BRIDGE_ADDRESS = IPv4Address("172.18.0.3")
#: How long the engine may take to converge; a bound for a broken engine, not
#: a timing expectation.
CONVERGE_TIMEOUT = 120.0


@attrs.frozen
class Engine:
    """A Docker engine in Swarm mode: its version as the tests name it, and its API socket."""

    version: str
    socket: str


def listed_engines() -> list[Engine]:
    """The engines SWARMDNS_ENGINES lists, else those .ci/swarm-setup listed."""
    listing = os.environ.get(ENGINES_VARIABLE)
    if listing is None:
        written = Path(os.environ.get(STATE_VARIABLE, DEFAULT_STATE)) / "engines"
        listing = written.read_text() if written.exists() else ""
    engines = []
    for pair in listing.split():
        version, separator, socket_url = pair.partition("=")
        if not separator or not socket_url.startswith("unix://"):
            raise ValueError(f"{ENGINES_VARIABLE}: {pair!r} is not VERSION=unix://SOCKET")
        engines.append(Engine(version, socket_url))
    return engines


@attrs.frozen(kw_only=True)
class EngineTask:
    """A running task, as the Swarm itself lists it."""

    id: str
    slot: int | None
    node_id: str
    container_id: str
    addresses: dict[str, IPv4Address] = attrs.field(hash=False)


class Watch(Protocol):
    """A watch running where an application would run it."""

    def next_event(self, timeout: float = CONVERGE_TIMEOUT) -> dict[str, Any]:
        """The next change, as probe.watch() describes it."""
        ...

    def close(self) -> None:
        """Stop watching."""
        ...


class Driver(Protocol):
    """What a scenario can do to a Swarm, and ask of it."""

    kind: str
    #: The engine version whose behaviour to expect, as "MAJOR.MINOR".
    engine: str

    def create_service(
        self,
        name: str,
        replicas: int = 1,
        *,
        networks: Sequence[str] = NETWORKS[:1],
        endpoint_mode: EndpointMode = "vip",
        mode: ServiceMode = "replicated",
        healthcheck: bool = False,
    ) -> None: ...

    def deploy_stack(self, stack: str, services: dict[str, int]) -> None: ...

    def scale(self, name: str, replicas: int) -> None: ...

    def kill_task(self, name: str) -> EngineTask: ...

    def converge(self, name: str, replicas: int, *, replaced: Sequence[str] = ()) -> None: ...

    def rolling_update(self, name: str) -> None: ...

    def make_healthy(self, task: EngineTask) -> None: ...

    def remove(self, name: str) -> None: ...

    def tasks(self, name: str, *, starting: bool = False) -> list[EngineTask]:
        """The running tasks, as the Swarm lists them (with ``starting``, unhealthy ones too)."""
        ...

    def vip(self, name: str, network: str = NETWORKS[0]) -> IPv4Address: ...

    def call(self, *requests: dict[str, Any]) -> list[dict[str, Any]]: ...

    def watch(self, **options: Any) -> Watch: ...

    def upstream_unreachable(self) -> contextlib.AbstractContextManager[None]:
        """While in the block, the engine's upstream nameserver cannot be reached."""
        ...

    def upstream_silent(self) -> contextlib.AbstractContextManager[None]:
        """While in the block, the engine's upstream nameserver drops every query."""
        ...

    def upstream_hijacking(
        self, addresses: Sequence[str] = upstream.HIJACK_ADDRESSES
    ) -> contextlib.AbstractContextManager[None]:
        """While in the block, the upstream answers every A query with ``addresses``.

        As resolvers that rewrite NXDOMAIN do (upstream.py's ``hijack``): the
        names a real engine forwards, ``tasks.<svc>`` of a service without
        tasks among them, come back with addresses that are not the Swarm's.
        """
        ...

    def resolv_conf(self) -> str:
        """The probe task's ``/etc/resolv.conf``, as the engine wrote it."""
        ...

    def run_in(self, task: EngineTask, *arguments: str) -> subprocess.CompletedProcess[str]:
        """Run ``python -m swarmdns ARGUMENTS`` as the application in ``task`` would."""
        ...

    def cleanup(self) -> None: ...


@contextlib.contextmanager
def as_a_new_process(variables: dict[str, str]) -> Iterator[None]:
    """In the block, ``variables`` are set, and swarmdns remembers nothing, as in a new process.

    The fakes' drivers run probe requests in this process, one fake after
    another. swarmdns remembers for the process whether it runs in a Swarm
    task or a Compose container (per engine address and backend), which
    holds in a real container but not from one fake to the next.
    """
    _memo.clear_caches()
    try:
        with mock.patch.dict(os.environ, variables):
            yield
    finally:
        _memo.clear_caches()


def since(driver: Driver, version: str) -> bool:
    """Whether the driver's engine is ``version`` (such as "24.0") or newer."""

    def number(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split("."))

    return number(driver.engine) >= number(version)


def wait_until(
    condition: Callable[[], bool], what: str, timeout: float = CONVERGE_TIMEOUT
) -> None:
    """Poll ``condition`` until it holds; fail saying ``what`` did not happen."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.1)


class _ProcessWatch:
    """probe.py's watch in a process of its own, one JSON line per change."""

    def __init__(self, command: list[str], environment: dict[str, str] | None) -> None:
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, env=environment
        )
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._events.put(json.loads(line))

    def next_event(self, timeout: float = CONVERGE_TIMEOUT) -> dict[str, Any]:
        return self._events.get(timeout=timeout)

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()  # the process this watch started, by its id
        self._process.wait(30)
        self._reader.join()
        if self._process.stdout is not None:
            self._process.stdout.close()


# -- the fake ------------------------------------------------------------------------


class FakeDriver:
    """The fake, with an application attached to both test networks.

    It listens on the engine's own address, 127.0.0.11 (another port), so that
    swarmdns reads its answers as it reads the engine's.
    """

    kind = "fake"

    def __init__(self, engine: EngineVersion = ENGINES[-1]) -> None:
        self.swarm = FakeSwarm(host="127.0.0.11", engine=engine).start()
        self.engine: str = self.swarm.engine
        for network in NETWORKS:
            self.swarm.create_network(network)
        self.swarm.client_networks = NETWORKS
        self._watches: list[_ProcessWatch] = []
        # The application runs in a task, as on a real Swarm (SwarmDriver's
        # sdnstest-probe): its own addresses are the task's and a gateway
        # bridge's, whose PTR records tell swarmdns's runtime="auto".
        probe = self.swarm.create_service(PROBE_SERVICE, 1, network=list(NETWORKS))
        (task,) = probe.tasks
        self._own = ",".join(str(a) for a in [*task.addresses.values(), GATEWAY_BRIDGE_ADDRESS])

    def _environment(self) -> contextlib.AbstractContextManager[None]:
        return as_a_new_process(self._variables())

    def _variables(self, task: EngineTask | None = None) -> dict[str, str]:
        """Where swarmdns finds the fake, and its networks: this machine's are not a task's.

        ``task``: the nameserver of that task's node rather than the probe's.
        """
        networks = ",".join(str(network) for network in self.swarm.engine_networks)
        return {
            NAMESERVER_VARIABLE: self._nameserver(task),
            PROVENANCE_VARIABLE: networks,
            OWN_ADDRESSES_VARIABLE: self._own,
        }

    def _nameserver(self, task: EngineTask | None) -> str:
        return self.swarm.nameserver

    def create_service(
        self,
        name: str,
        replicas: int = 1,
        *,
        networks: Sequence[str] = NETWORKS[:1],
        endpoint_mode: EndpointMode = "vip",
        mode: ServiceMode = "replicated",
        healthcheck: bool = False,
    ) -> None:
        self.swarm.create_service(
            name,
            replicas,
            network=list(networks),
            endpoint_mode=endpoint_mode,
            mode=mode,
            healthcheck=healthcheck,
        )

    def deploy_stack(self, stack: str, services: dict[str, int]) -> None:
        for name, replicas in services.items():
            self.swarm.create_service(name, replicas, stack=stack, network=NETWORKS[0])

    def scale(self, name: str, replicas: int) -> None:
        self.swarm.scale(name, replicas)

    def kill_task(self, name: str) -> EngineTask:
        victim = self.tasks(name)[0]
        self.swarm.kill_task(victim.id)
        return victim

    def converge(self, name: str, replicas: int, *, replaced: Sequence[str] = ()) -> None:
        self.swarm.reschedule(name)  # what the engine's orchestrator does by itself

    def rolling_update(self, name: str) -> None:
        for task in self.swarm.service(name).tasks:
            self.swarm.replace_task(task)

    def make_healthy(self, task: EngineTask) -> None:
        self.swarm.mark_healthy(task.id)

    def remove(self, name: str) -> None:
        self.swarm.remove_service(name)

    def tasks(self, name: str, *, starting: bool = False) -> list[EngineTask]:
        return [
            EngineTask(
                id=t.id,
                slot=t.slot,
                node_id=t.node_id,
                container_id=t.container_id,
                addresses=dict(t.addresses),
            )
            for t in self.swarm.service(name).tasks
            if t.visible or starting
        ]

    def vip(self, name: str, network: str = NETWORKS[0]) -> IPv4Address:
        return self.swarm.service(name).vips[network]

    def call(self, *requests: dict[str, Any]) -> list[dict[str, Any]]:
        with self._environment():
            return [probe.handle(r) for r in requests]

    def watch(self, **options: Any) -> Watch:
        environment = {**os.environ, **self._variables()}
        watch = _ProcessWatch(
            [sys.executable, str(PROBE), "watch", json.dumps(options)], environment
        )
        self._watches.append(watch)
        return watch

    def resolv_conf(self) -> str:
        return self.swarm.resolv_conf()

    def run_in(self, task: EngineTask, *arguments: str) -> subprocess.CompletedProcess[str]:
        """With the task's addresses as this process's own (SWARMDNS_OWN_ADDRESSES).

        As in a real task, one more is on the gateway bridge, which the
        engine does not name (its PTR is forwarded).

        And no SWARMDNS_RUNTIME: it tells the runtime from the fake's PTR
        records, as an application in a real task does from the engine's.
        """
        addresses = [*task.addresses.values(), GATEWAY_BRIDGE_ADDRESS]
        own = ",".join(str(address) for address in addresses)
        environment = {k: v for k, v in os.environ.items() if k != RUNTIME_VARIABLE}
        return subprocess.run(
            [sys.executable, "-m", "swarmdns", *arguments],
            env={**environment, **self._variables(task), OWN_ADDRESSES_VARIABLE: own},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def upstream_unreachable(self) -> contextlib.AbstractContextManager[None]:
        return self._upstream(Upstream.UNREACHABLE)

    def upstream_silent(self) -> contextlib.AbstractContextManager[None]:
        return self._upstream(Upstream.NO_REPLY)

    def upstream_hijacking(
        self, addresses: Sequence[str] = upstream.HIJACK_ADDRESSES
    ) -> contextlib.AbstractContextManager[None]:
        if tuple(IPv4Address(address) for address in addresses) != HIJACK_ADDRESSES:
            pytest.skip(f"the fake's hijacking upstream answers {HIJACK_ADDRESSES} only")
        return self._upstream(Upstream.HIJACK)

    @contextlib.contextmanager
    def _upstream(self, upstream: Upstream) -> Iterator[None]:
        self.swarm.upstream = upstream
        try:
            yield
        finally:
            self.swarm.upstream = Upstream.NXDOMAIN

    def cleanup(self) -> None:
        while self._watches:
            self._watches.pop().close()
        for service in self.swarm.services:
            if service.name != PROBE_SERVICE:  # the application's own task stays, as on a Swarm
                self.swarm.remove_service(service.name)

    def stop(self) -> None:
        self.swarm.stop()


# -- the real engine -------------------------------------------------------------------


class SwarmDriver:
    """A real single-node Docker Swarm, and an application task on both networks."""

    kind = "swarm"

    def __init__(self, engine: Engine) -> None:
        import docker  # noqa: PLC0415 - only the real Swarm needs it

        self.engine = engine.version
        self.client = docker.DockerClient(base_url=engine.socket, version=API_VERSION)
        self._cli_environment = {**os.environ, "DOCKER_HOST": engine.socket}
        self._watches: list[_ProcessWatch] = []
        self._docker = docker
        self._created: list[str] = []
        self._stacks: list[str] = []
        self._scratch = Path(tempfile.mkdtemp(prefix="swarmdns-conformance-"))
        for network in NETWORKS:
            if not self.client.networks.list(names=[network]):
                self.client.networks.create(network, driver="overlay", attachable=True)
        for leftover in self.client.services.list(filters={"name": "sdnstest-probe"}):
            leftover.remove()  # a run that crashed left it
        self._service(
            "sdnstest-probe",
            1,
            networks=NETWORKS,
            endpoint_mode="vip",
            mode="replicated",
            healthcheck=False,
        )
        self.converge("sdnstest-probe", 1)
        (app,) = self.tasks("sdnstest-probe")
        self._pid = self.client.containers.get(app.container_id).attrs["State"]["Pid"]
        container = self.client.containers.get(app.container_id)
        self._resolv_conf = container.attrs["ResolvConfPath"]
        self._upstream = LabUpstream.acquire(serving_pid(engine.socket))

    def _in_task(self, *command: str, task: tuple[int, str] | None = None) -> list[str]:
        """A command line that runs ``command`` as an application in the probe task would.

        ``task`` (process id, resolv.conf path) names another task to run in.
        """
        return in_namespace(*(task or (self._pid, self._resolv_conf)), *command)

    def run_in(self, task: EngineTask, *arguments: str) -> subprocess.CompletedProcess[str]:
        """Run ``python -m swarmdns ARGUMENTS`` in ``task``, as its application would."""
        return subprocess.run(
            self._in_task(
                sys.executable, "-m", "swarmdns", *arguments, task=self._namespace_of(task)
            ),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def _namespace_of(self, task: EngineTask) -> tuple[int, str]:
        """The process id and resolv.conf of ``task``'s container."""
        attributes = self.client.containers.get(task.container_id).attrs
        return attributes["State"]["Pid"], attributes["ResolvConfPath"]

    def _service(
        self,
        name: str,
        replicas: int,
        *,
        networks: Sequence[str],
        endpoint_mode: EndpointMode,
        mode: ServiceMode,
        healthcheck: bool,
    ) -> None:
        types = self._docker.types
        options = self._placement_of(name)
        if healthcheck:
            # Unhealthy until the scenario creates /tmp/healthy. A long start
            # period keeps failed checks from getting the task replaced.
            options["healthcheck"] = types.Healthcheck(
                test=["CMD", "test", "-e", HEALTHY_FILE],
                interval=200_000_000,
                timeout=1_000_000_000,
                retries=3,
                start_period=600_000_000_000,
            )
        # Through API 1.30 and newer, the engine leaves the image as named
        # (the CLI's --no-resolve-image): no registry is asked for its digest.
        self.client.services.create(
            IMAGE,
            ["sleep", "1000000"],
            name=name,
            stop_grace_period=1_000_000_000,  # sleep ignores SIGTERM: do not wait 10 s
            networks=list(networks),
            mode=types.ServiceMode(mode, replicas=replicas if mode == "replicated" else None),
            endpoint_spec=types.EndpointSpec(mode=endpoint_mode),
            **options,
        )
        self._created.append(name)

    def _placement_of(self, name: str) -> dict[str, Any]:
        """Options that place the service's tasks: none on a single node."""
        return {}

    def create_service(
        self,
        name: str,
        replicas: int = 1,
        *,
        networks: Sequence[str] = NETWORKS[:1],
        endpoint_mode: EndpointMode = "vip",
        mode: ServiceMode = "replicated",
        healthcheck: bool = False,
    ) -> None:
        self._service(
            name,
            replicas,
            networks=networks,
            endpoint_mode=endpoint_mode,
            mode=mode,
            healthcheck=healthcheck,
        )
        self.converge(name, replicas if mode == "replicated" else 1, starting=healthcheck)

    def deploy_stack(self, stack: str, services: dict[str, int]) -> None:
        compose = {
            "version": "3.8",
            "services": {
                name: {
                    "image": IMAGE,
                    "command": ["sleep", "1000000"],
                    "deploy": {"replicas": replicas},
                    "stop_grace_period": "1s",
                }
                for name, replicas in services.items()
            },
            "networks": {"default": {"external": True, "name": NETWORKS[0]}},
        }
        path = self._scratch / f"{stack}.json"
        path.write_text(json.dumps(compose))  # JSON is YAML
        self._stacks.append(stack)
        self._cli("stack", "deploy", "--resolve-image", "never", "-c", str(path), stack)
        for name, replicas in services.items():
            self.converge(f"{stack}_{name}", replicas)

    def _cli(self, *arguments: str, check: bool = True) -> None:
        """Run Debian 12's docker CLI on this engine; never let it look up a registry."""
        subprocess.run(
            [DOCKER, *arguments], env=self._cli_environment, check=check, capture_output=True
        )

    def _get(self, name: str) -> Any:
        return self.client.services.get(name)

    def scale(self, name: str, replicas: int) -> None:
        # Not the SDK's Service.scale(): its update rewrites the task template,
        # which makes the engine replace every task.
        self._cli("service", "scale", "--detach", f"{name}={replicas}")
        self.converge(name, replicas)

    def kill_task(self, name: str) -> EngineTask:
        victim = self.tasks(name)[0]
        self.client.containers.get(victim.container_id).kill()
        wait_until(lambda: victim.id not in {t.id for t in self.tasks(name)}, "the kill")
        return victim

    def converge(
        self, name: str, replicas: int, *, replaced: Sequence[str] = (), starting: bool = False
    ) -> None:
        def converged() -> bool:
            running = self.tasks(name, starting=starting)
            if len(running) != replicas or {t.id for t in running} & set(replaced):
                return False
            # Tasks on their way out leave DNS before their containers stop:
            # once every one has stopped, DNS shows the new state.
            every = self.client.api.tasks(filters={"service": name})
            leaving = [t for t in every if t["DesiredState"] != "running"]
            return all(task["Status"]["State"] != "running" for task in leaving)

        wait_until(converged, f"{name} running {replicas} tasks")

    def rolling_update(self, name: str) -> None:
        old = [t.id for t in self.tasks(name)]
        self._cli("service", "update", "--detach", "--force", "--no-resolve-image", name)
        self.converge(name, len(old), replaced=old)

    def make_healthy(self, task: EngineTask) -> None:
        self.client.containers.get(task.container_id).exec_run(["touch", HEALTHY_FILE])

    def remove(self, name: str) -> None:
        self._get(name).remove()
        self._created.remove(name)

    def tasks(self, name: str, *, starting: bool = False) -> list[EngineTask]:
        states = {"running", "starting"} if starting else {"running"}
        found = []
        for task in self.client.api.tasks(filters={"service": name, "desired-state": "running"}):
            status = task["Status"]
            if status["State"] not in states:
                continue
            addresses = {
                attachment["Network"]["Spec"]["Name"]: IPv4Address(
                    attachment["Addresses"][0].split("/")[0]
                )
                for attachment in task.get("NetworksAttachments", [])
            }
            found.append(
                EngineTask(
                    id=task["ID"],
                    slot=task.get("Slot"),
                    node_id=task["NodeID"],
                    container_id=status["ContainerStatus"]["ContainerID"],
                    addresses=addresses,
                )
            )
        return sorted(found, key=lambda t: (t.slot or 0, t.node_id))

    def vip(self, name: str, network: str = NETWORKS[0]) -> IPv4Address:
        network_id = self.client.networks.get(network).id
        for vip in self._get(name).attrs["Endpoint"].get("VirtualIPs", []):
            if vip["NetworkID"] == network_id:
                return IPv4Address(vip["Addr"].split("/")[0])
        raise LookupError(f"{name} has no VIP on {network}")

    def call(self, *requests: dict[str, Any]) -> list[dict[str, Any]]:
        return self._probe(requests)

    def _probe(
        self, requests: Sequence[dict[str, Any]], task: tuple[int, str] | None = None
    ) -> list[dict[str, Any]]:
        result = subprocess.run(
            self._in_task(sys.executable, str(PROBE), json.dumps(list(requests)), task=task),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        answers: list[dict[str, Any]] = json.loads(result.stdout)
        return answers

    def watch(self, **options: Any) -> Watch:
        command = self._in_task(sys.executable, str(PROBE), "watch", json.dumps(options))
        watch = _ProcessWatch(command, None)
        self._watches.append(watch)
        return watch

    def resolv_conf(self) -> str:
        return Path(self._resolv_conf).read_text()

    def upstream_unreachable(self) -> contextlib.AbstractContextManager[None]:
        """Stop the upstream: its port is closed, as on a host without a resolver."""
        return self._upstream.unreachable()

    def upstream_silent(self) -> contextlib.AbstractContextManager[None]:
        """The upstream reads every query and answers none."""
        return self._upstream.mode("silent")

    def upstream_hijacking(
        self, addresses: Sequence[str] = upstream.HIJACK_ADDRESSES
    ) -> contextlib.AbstractContextManager[None]:
        """The upstream answers every A query with ``addresses`` (upstream.py's hijack)."""
        return self._upstream.hijacking(addresses)

    def cleanup(self) -> None:
        while self._watches:
            self._watches.pop().close()
        for stack in self._stacks:
            self._cli("stack", "rm", stack, check=False)
        self._stacks.clear()
        for name in [n for n in self._created if n != "sdnstest-probe"]:
            with contextlib.suppress(self._docker.errors.NotFound):
                self._get(name).remove()
            self._created.remove(name)

    def stop(self) -> None:
        self.cleanup()
        self._upstream.release()
        with contextlib.suppress(self._docker.errors.NotFound):
            self._get("sdnstest-probe").remove()
        self.client.close()
        shutil.rmtree(self._scratch, ignore_errors=True)


class LabUpstream:
    """The lab's upstream (upstream.py) in an engine's network namespace.

    The engine forwards the names it does not own to its --dns address, in
    the network namespace of its own that .ci/swarm-setup runs it in: the
    lab's upstream answers there, NXDOMAIN like a host's resolver until a
    scenario switches it, and no packet leaves the machine. It listens on
    port 53, so every driver of that engine in this process (a Swarm's, a
    Compose project's) shares one: ``acquire()`` and ``release()``.
    """

    _running: ClassVar[dict[int, LabUpstream]] = {}

    def __init__(self, engine_pid: int) -> None:
        if os.stat(f"/proc/{engine_pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino:
            raise RuntimeError(
                f"the engine (process {engine_pid}) shares this machine's network namespace,"
                " where its forwarded queries could leave the machine: start it with"
                " .ci/swarm-setup"
            )
        self._engine_pid = engine_pid
        self._users = 0
        self._process = self._start()

    @classmethod
    def acquire(cls, engine_pid: int) -> LabUpstream:
        """The upstream of the engine ``engine_pid``, started unless it runs."""
        shared = cls._running.get(engine_pid)
        if shared is None:
            shared = cls._running[engine_pid] = cls(engine_pid)
        shared._users += 1
        return shared

    def release(self) -> None:
        """Stop the upstream once its last user is done with it."""
        self._users -= 1
        if self._users == 0:
            self._stop()
            del self._running[self._engine_pid]

    def _start(self) -> subprocess.Popen[str]:
        command = [sys.executable, str(UPSTREAM), _dns_option(self._engine_pid)]
        process = subprocess.Popen(
            ["nsenter", "-t", str(self._engine_pid), "-n", *command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "nxdomain"
        return process

    def _stop(self) -> None:
        self._process.terminate()  # the process this upstream started, by its id
        self._process.wait(30)
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                stream.close()

    def _switch(self, mode: str) -> None:
        """Give the upstream the command ``mode`` (see upstream.py); in effect on return."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(f"{mode}\n")
        self._process.stdin.flush()
        assert self._process.stdout.readline().strip() == mode

    @contextlib.contextmanager
    def mode(self, mode: str) -> Iterator[None]:
        """In the block, the upstream answers in ``mode``; then NXDOMAIN again."""
        self._switch(mode)
        try:
            yield
        finally:
            self._switch("nxdomain")

    def hijacking(self, addresses: Sequence[str]) -> contextlib.AbstractContextManager[None]:
        """In the block, the upstream answers every A query with ``addresses``."""
        return self.mode(" ".join(["hijack", *addresses]))

    @contextlib.contextmanager
    def unreachable(self) -> Iterator[None]:
        """In the block, the upstream is stopped: its port is closed."""
        self._stop()
        try:
            yield
        finally:
            self._process = self._start()


def in_namespace(pid: int, resolv_conf: str, *command: str) -> list[str]:
    """A command line that runs ``command`` as an application in a container would.

    In the network namespace of process ``pid``, with the container's own
    resolv.conf (bind-mounted in a private mount namespace), and none of the
    variables that tell swarmdns where it runs (SWARMDNS_NAMESERVER,
    SWARMDNS_RUNTIME, SWARMDNS_OWN_ADDRESSES).
    """
    return [
        "nsenter", "-t", str(pid), "-n",
        "unshare", "-m", "sh", "-c",
        'mount --bind "$0" /etc/resolv.conf && exec env'
        f' -u {NAMESERVER_VARIABLE} -u {RUNTIME_VARIABLE} -u {OWN_ADDRESSES_VARIABLE} "$@"',
        resolv_conf,
        *command,
    ]  # fmt: skip


def engine_available(engine: Engine) -> str | None:  # noqa: PLR0911 - one return per missing piece
    """None when the engine answers, in Swarm mode and of its listed version; otherwise why not."""
    if not Path(DOCKER).exists() or shutil.which("nsenter") is None:
        return f"{DOCKER} or nsenter is missing"
    try:
        import docker  # noqa: PLC0415
    except ImportError:
        return "the docker Python package is not installed"
    # The SDK leaves its socket open when the engine does not answer: look first.
    with socket.socket(socket.AF_UNIX) as probe_socket:
        try:
            probe_socket.connect(engine.socket.removeprefix("unix://"))
        except OSError as error:
            return f"no Docker engine answers at {engine.socket}: {error.strerror}"
    client = docker.DockerClient(base_url=engine.socket, version=API_VERSION)
    try:
        state = client.info()["Swarm"]["LocalNodeState"]
        version = client.version()["Version"]
    except docker.errors.DockerException as error:
        return f"no Docker engine answers at {engine.socket}: {error}"
    finally:
        client.close()
    if not version.startswith(f"{engine.version}."):
        return f"the engine at {engine.socket} is {version}, not {engine.version}"
    if state != "active":
        return f"the Docker engine at {engine.socket} is not in Swarm mode ({state})"
    if os.geteuid() != 0:
        return "entering a task's namespaces needs root"
    return None


def serving_pid(socket_url: str) -> int:
    """The process id of the engine that listens on ``socket_url``."""
    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(socket_url.removeprefix("unix://"))
        credentials = connection.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
        )
    pid: int = struct.unpack("3i", credentials)[0]
    return pid


def _dns_option(engine_pid: int) -> str:
    """The address the engine forwards to: its dockerd's ``--dns``."""
    command_line = Path(f"/proc/{engine_pid}/cmdline").read_bytes().decode().split("\0")
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--dns")
    address: str | None = parser.parse_known_args(command_line[1:])[0].dns
    if address is None:
        raise RuntimeError(
            f"the engine (process {engine_pid}) has no --dns: start it with .ci/swarm-setup"
        )
    return address


def consume(watch: Watch) -> Iterator[dict[str, Any]]:
    """Every event of ``watch``, as they come."""
    while True:
        yield watch.next_event()
