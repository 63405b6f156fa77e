"""One interface, several ways to run containers without Swarm services (issue #23).

A Compose scenario drives a ``ComposeDriver``: it scales a service of the
project ``sdnstest``, asks the engine (or the fake) for the service's running
containers, and runs swarmdns as an application in the project's ``probe``
container would. The real drivers:

- ``ComposeProject`` (kind "compose"): Debian's Compose v2 (``docker compose
  -p sdnstest``, a compose file of its own with ``pull_policy: never`` and the
  lab's local image) on engines 26.1 (trixie's 2.26.1) and 28.5 (sid's 2.40.3);
- ``PlainContainers`` (kind "plain"): the same by hand with ``docker run
  --network sdnstest_default --network-alias SERVICE --name sdnstest-SERVICE-N``
  on 20.10, for which Debian packages no Compose v2.

``compose_fake.FakeComposeDriver`` is the fake's. The Compose binaries are
those ``SWARMDNS_COMPOSE`` lists ("VERSION=PATH" separated by white space),
else those ``.ci/compose-fetch`` listed in the lab's state folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Protocol

import attrs

from . import upstream
from .drivers import (
    API_VERSION,
    DEFAULT_STATE,
    DOCKER,
    IMAGE,
    PROBE,
    STATE_VARIABLE,
    Engine,
    LabUpstream,
    Watch,
    _ProcessWatch,
    in_namespace,
    serving_pid,
    wait_until,
)

PROJECT = "sdnstest"
#: The project's network, which Compose names ``<project>_default``.
NETWORK = f"{PROJECT}_default"
#: The service whose container runs the application (swarmdns).
PROBE_SERVICE = "probe"
#: The Compose binaries to run, ``VERSION=PATH`` separated by white space.
COMPOSE_VARIABLE = "SWARMDNS_COMPOSE"
#: The engines that get a Compose project, and the one that gets plain containers.
COMPOSE_ENGINES = ("26.1", "28.5")
PLAIN_ENGINES = ("20.10",)


@attrs.frozen(kw_only=True)
class Container:
    """A running container of a service, as the engine lists it (``docker inspect``)."""

    #: ``sdnstest-web-1``.
    name: str
    #: Compose's container number (the ``N`` of the name).
    number: int
    #: Its address on the project's network.
    address: IPv4Address
    container_id: str


class ComposeDriver(Protocol):
    """What a scenario can do to a Compose project (or plain containers), and ask of it.

    The project ``project`` has one network, ``network``, and a service
    ``probe`` with one container, where the application runs: ``run_cli()``,
    ``call()`` and ``watch()`` run there (with the container's own
    resolv.conf and its own addresses, as an application in it would).
    """

    #: "compose" (a real Compose project), "plain" (``docker run``), or "fake".
    kind: str
    #: The engine version whose behaviour to expect, as "MAJOR.MINOR".
    engine: str
    project: str
    network: str

    def up(self, service: str, scale: int) -> None:
        """Create ``service`` or scale it to ``scale`` containers; return once they run.

        Containers are numbered from 1; scaling down removes the highest
        numbers, and once ``up()`` returns, the removed ones are gone.
        """
        ...

    def containers(self, service: str) -> list[Container]:
        """The running containers of ``service``, by number."""
        ...

    def call(self, *requests: dict[str, Any]) -> list[dict[str, Any]]:
        """Carry out probe.py requests in the probe container."""
        ...

    def run_cli(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        """Run ``python -m swarmdns ARGUMENTS`` in the probe container."""
        ...

    def watch(self, **options: Any) -> Watch:
        """probe.py's watch with ``options`` (swarmdns.watch_tasks'), in the probe container."""
        ...

    def self_in(self, container: str, *arguments: str) -> dict[str, Any]:
        """``swarmdns self --json ARGUMENTS`` in the container named ``container``, parsed.

        Fails the test if the command fails.
        """
        ...

    def kill(self, name: str) -> None:
        """``docker kill`` the container ``name``; return once it no longer runs."""
        ...

    def upstream_hijacking(
        self, addresses: Sequence[str] = upstream.HIJACK_ADDRESSES
    ) -> contextlib.AbstractContextManager[None]:
        """While in the block, the upstream answers every A query with ``addresses``."""
        ...

    def cleanup(self) -> None:
        """Remove every service but the probe, and stop the watches."""
        ...

    def stop(self) -> None:
        """Remove the project, its network and everything else the driver made."""
        ...


def listed_compose() -> dict[str, str]:
    """The Compose binaries SWARMDNS_COMPOSE lists, else those .ci/compose-fetch listed."""
    listing = os.environ.get(COMPOSE_VARIABLE)
    if listing is None:
        written = Path(os.environ.get(STATE_VARIABLE, DEFAULT_STATE)) / "compose"
        listing = written.read_text() if written.exists() else ""
    binaries = {}
    for pair in listing.split():
        version, separator, path = pair.partition("=")
        if not separator:
            raise ValueError(f"{COMPOSE_VARIABLE}: {pair!r} is not VERSION=PATH")
        binaries[version] = path
    return binaries


def check_output(done: subprocess.CompletedProcess[str]) -> str:
    """The output of a command that must have succeeded; fails the test with its stderr."""
    assert done.returncode == 0, f"{done.args} exited {done.returncode}: {done.stderr}"
    return done.stdout


class _EngineProject:
    """What the real drivers share: the engine, the probe container, the upstream."""

    kind: str
    project = PROJECT
    network = NETWORK

    def __init__(self, engine: Engine) -> None:
        import docker  # noqa: PLC0415 - only a real engine needs it

        self.engine = engine.version
        self.client = docker.DockerClient(base_url=engine.socket, version=API_VERSION)
        self._scratch = Path(tempfile.mkdtemp(prefix="swarmdns-compose-"))
        # Debian 12's CLI and Compose, on this engine, with no configuration of
        # this machine's (credentials, a registry mirror).
        self._environment = {
            **os.environ,
            "DOCKER_HOST": engine.socket,
            "DOCKER_CONFIG": str(self._scratch / "docker-config"),
        }
        self._scales: dict[str, int] = {}
        self._watches: list[_ProcessWatch] = []
        self._upstream = LabUpstream.acquire(serving_pid(engine.socket))
        try:
            self._remove_leftovers()
            self.up(PROBE_SERVICE, 1)
            (probe,) = self.containers(PROBE_SERVICE)
            self._probe = self._namespace_of(probe.name)
        except BaseException:
            self._upstream.release()
            self.client.close()
            raise

    # -- what each kind does its own way

    def _remove_leftovers(self) -> None:
        """Remove what a run that crashed left."""
        raise NotImplementedError

    def _scale(self, service: str, scale: int) -> None:
        raise NotImplementedError

    def _labels(self, service: str) -> list[str]:
        """The labels (``KEY=VALUE``) that the containers of ``service`` carry."""
        raise NotImplementedError

    def _number(self, container: Any) -> int:
        raise NotImplementedError

    def _remove_all(self) -> None:
        raise NotImplementedError

    # -- the rest

    def up(self, service: str, scale: int) -> None:
        self._scales[service] = scale
        self._scale(service, scale)
        wait_until(
            lambda: [c.number for c in self.containers(service)] == list(range(1, scale + 1)),
            f"{service} running {scale} containers",
        )

    def containers(self, service: str) -> list[Container]:
        found = []
        for container in self.client.containers.list(filters={"label": self._labels(service)}):
            network = container.attrs["NetworkSettings"]["Networks"][self.network]
            found.append(
                Container(
                    name=container.name,
                    number=self._number(container),
                    address=IPv4Address(network["IPAddress"]),
                    container_id=container.id,
                )
            )
        return sorted(found, key=lambda c: c.number)

    def _namespace_of(self, name: str) -> tuple[int, str]:
        attributes = self.client.containers.get(name).attrs
        return attributes["State"]["Pid"], attributes["ResolvConfPath"]

    def _command(self, *command: str) -> None:
        """Run ``command`` (Compose, the docker CLI) on this engine; fail the test if it fails."""
        check_output(
            subprocess.run(
                command,
                env=self._environment,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        )

    def _run(self, command: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    def call(self, *requests: dict[str, Any]) -> list[dict[str, Any]]:
        done = self._run(
            in_namespace(*self._probe, sys.executable, str(PROBE), json.dumps(requests))
        )
        answers: list[dict[str, Any]] = json.loads(check_output(done))
        return answers

    def run_cli(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return self._run(in_namespace(*self._probe, sys.executable, "-m", "swarmdns", *arguments))

    def watch(self, **options: Any) -> Watch:
        command = in_namespace(
            *self._probe, sys.executable, str(PROBE), "watch", json.dumps(options)
        )
        watch = _ProcessWatch(command, None)
        self._watches.append(watch)
        return watch

    def self_in(self, container: str, *arguments: str) -> dict[str, Any]:
        namespace = self._namespace_of(container)
        command = [sys.executable, "-m", "swarmdns", "self", "--json", *arguments]
        found: dict[str, Any] = json.loads(
            check_output(self._run(in_namespace(*namespace, *command)))
        )
        return found

    def kill(self, name: str) -> None:
        container = self.client.containers.get(name)
        container.kill()

        def stopped() -> bool:
            container.reload()
            return bool(container.status != "running")

        wait_until(stopped, f"{name} stopped")

    def upstream_hijacking(
        self, addresses: Sequence[str] = upstream.HIJACK_ADDRESSES
    ) -> contextlib.AbstractContextManager[None]:
        return self._upstream.hijacking(addresses)

    def cleanup(self) -> None:
        while self._watches:
            self._watches.pop().close()
        for service in [s for s in self._scales if s != PROBE_SERVICE]:
            self.up(service, 0)
            del self._scales[service]

    def stop(self) -> None:
        self.cleanup()
        self._remove_all()
        self._upstream.release()
        self.client.close()
        shutil.rmtree(self._scratch, ignore_errors=True)


class ComposeProject(_EngineProject):
    """A real Compose project on a lab engine, with Debian's Compose v2.

    Compose runs cut off from every network (``unshare --net``; the engine's
    socket is a file, still reachable), so that it cannot reach a registry
    even if it wanted to; ``pull_policy: never`` says it must not.
    """

    kind = "compose"

    def __init__(self, engine: Engine, binary: str) -> None:
        self._binary = binary
        self._file: Path | None = None
        super().__init__(engine)

    def _compose(self, *arguments: str) -> None:
        assert self._file is not None
        project = ["-p", self.project, "-f", str(self._file)]
        self._command("unshare", "--net", "--", self._binary, *project, *arguments)

    def _write_file(self) -> None:
        services = {
            service: {
                "image": IMAGE,
                "pull_policy": "never",
                "command": ["sleep", "1000000"],
                # sleep ignores SIGTERM: stop at once rather than after 10 s.
                "stop_signal": "SIGKILL",
            }
            for service in self._scales
        }
        self._file = self._scratch / "compose.json"
        self._file.write_text(json.dumps({"services": services}))  # JSON is YAML

    def _remove_leftovers(self) -> None:
        self._write_file()
        self._compose("down", "--remove-orphans")

    def _scale(self, service: str, scale: int) -> None:
        self._write_file()
        self._compose("up", "--detach", "--wait", "--scale", f"{service}={scale}", service)

    def _labels(self, service: str) -> list[str]:
        return [
            f"com.docker.compose.project={self.project}",
            f"com.docker.compose.service={service}",
        ]

    def _number(self, container: Any) -> int:
        return int(container.labels["com.docker.compose.container-number"])

    def _remove_all(self) -> None:
        self._compose("down", "--remove-orphans")


#: The labels of a plain container: its service and number.
SERVICE_LABEL = "swarmdns.conformance.service"
NUMBER_LABEL = "swarmdns.conformance.number"


class PlainContainers(_EngineProject):
    """Compose by hand: ``docker run --network-alias`` containers, named as Compose names them."""

    kind = "plain"

    def _docker_cli(self, *arguments: str) -> None:
        self._command(DOCKER, *arguments)

    def _remove_leftovers(self) -> None:
        self._remove_all()
        self.client.networks.create(self.network, driver="bridge")

    def _scale(self, service: str, scale: int) -> None:
        running = {c.number: c.name for c in self.containers(service)}
        for number, name in running.items():
            if number > scale:
                self._docker_cli("rm", "--force", name)
        for number in range(1, scale + 1):
            if number not in running:
                self._docker_cli(
                    "run", "--detach", "--pull", "never",
                    "--network", self.network, "--network-alias", service,
                    "--name", f"{self.project}-{service}-{number}",
                    "--label", f"{SERVICE_LABEL}={service}",
                    "--label", f"{NUMBER_LABEL}={number}",
                    IMAGE, "sleep", "1000000",
                )  # fmt: skip

    def _labels(self, service: str) -> list[str]:
        return [f"{SERVICE_LABEL}={service}"]

    def _number(self, container: Any) -> int:
        return int(container.labels[NUMBER_LABEL])

    def kill(self, name: str) -> None:
        # A killed plain container stays, stopped, with its name: Compose's
        # next up() would start it again, this driver's needs the name free.
        super().kill(name)
        self._docker_cli("rm", name)

    def _remove_all(self) -> None:
        for container in self.client.containers.list(all=True, filters={"label": SERVICE_LABEL}):
            container.remove(force=True)
        for network in self.client.networks.list(names=[self.network]):
            network.remove()
