"""The fake's Compose project, as a ``ComposeDriver`` (compose.py) for the Compose scenarios.

``FakeComposeDriver`` runs a ``FakeCompose`` project ``sdnstest`` with a
``probe`` service, on the engine's own address, 127.0.0.11 (another port), so
that swarmdns reads its answers as it reads the engine's. swarmdns runs "in" a
container as an application there would: with ``SWARMDNS_OWN_ADDRESSES`` set to
that container's addresses (what the library reads instead of the system's),
and without ``SWARMDNS_RUNTIME``, so that it detects Compose from its own PTR
records as it does in a real container.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from ipaddress import IPv4Address
from typing import Any

import pytest

from swarmdns import (
    NAMESERVER_VARIABLE,
    OWN_ADDRESSES_VARIABLE,
    PROVENANCE_VARIABLE,
    RUNTIME_VARIABLE,
)
from swarmdns.testing import ENGINES, HIJACK_ADDRESSES, EngineVersion, FakeCompose, Upstream

from . import probe, upstream
from .compose import NETWORK, PROBE_SERVICE, PROJECT, Container
from .drivers import PROBE, Watch, _ProcessWatch, as_a_new_process

PROBE_CONTAINER = f"{PROJECT}-{PROBE_SERVICE}-1"


class FakeComposeDriver:
    """The fake's Compose project ``sdnstest``, with its ``probe`` container running.

    Args:
        engine: The Docker Engine version the fake answers like.
    """

    kind = "fake"
    project = PROJECT
    network = NETWORK

    def __init__(self, engine: EngineVersion = ENGINES[-1]) -> None:
        self.fake = FakeCompose(PROJECT, host="127.0.0.11", engine=engine).start()
        self.engine: str = self.fake.engine
        self._watches: list[_ProcessWatch] = []
        self.up(PROBE_SERVICE, 1)

    def _variables(self, container: str = PROBE_CONTAINER) -> dict[str, str]:
        """What swarmdns needs to run "in" ``container``: the fake, its networks, the addresses."""
        own = self.fake.container(container).addresses.values()
        return {
            NAMESERVER_VARIABLE: self.fake.nameserver,
            PROVENANCE_VARIABLE: ",".join(str(n) for n in self.fake.engine_networks),
            OWN_ADDRESSES_VARIABLE: ",".join(str(address) for address in own),
        }

    def _environment(self, container: str = PROBE_CONTAINER) -> dict[str, str]:
        """This process's environment as it is in ``container`` (no runtime chosen)."""
        environment = {**os.environ, **self._variables(container)}
        environment.pop(RUNTIME_VARIABLE, None)
        return environment

    def up(self, service: str, scale: int) -> None:
        if service in {s.name for s in self.fake.services}:
            self.fake.scale(service, scale)
        else:
            self.fake.create_service(service, scale)

    def containers(self, service: str) -> list[Container]:
        return [
            Container(
                name=c.name,
                number=c.number,
                address=c.addresses[NETWORK],
                container_id=c.container_id,
            )
            for c in self.fake.containers(service)
            if c.visible
        ]

    def call(self, *requests: dict[str, Any]) -> list[dict[str, Any]]:
        with as_a_new_process(self._variables()):
            os.environ.pop(RUNTIME_VARIABLE, None)
            return [probe.handle(r) for r in requests]

    def run_cli(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return self._run_in(PROBE_CONTAINER, arguments)

    def _run_in(
        self, container: str, arguments: Sequence[str]
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "swarmdns", *arguments],
            env=self._environment(container),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def watch(self, **options: Any) -> Watch:
        watch = _ProcessWatch(
            [sys.executable, str(PROBE), "watch", json.dumps(options)], self._environment()
        )
        self._watches.append(watch)
        return watch

    def self_in(self, container: str, *arguments: str) -> dict[str, Any]:
        done = self._run_in(container, ["self", "--json", *arguments])
        assert done.returncode == 0, f"{done.args} exited {done.returncode}: {done.stderr}"
        found: dict[str, Any] = json.loads(done.stdout)
        return found

    def kill(self, name: str) -> None:
        self.fake.kill_container(name)

    @contextlib.contextmanager
    def upstream_hijacking(
        self, addresses: Sequence[str] = upstream.HIJACK_ADDRESSES
    ) -> Iterator[None]:
        if tuple(IPv4Address(address) for address in addresses) != HIJACK_ADDRESSES:
            pytest.skip(f"the fake's hijacking upstream answers {HIJACK_ADDRESSES} only")
        self.fake.upstream = Upstream.HIJACK
        try:
            yield
        finally:
            self.fake.upstream = Upstream.NXDOMAIN

    def cleanup(self) -> None:
        while self._watches:
            self._watches.pop().close()
        for service in self.fake.services:
            if service.name != PROBE_SERVICE:
                self.fake.remove_service(service.name)

    def stop(self) -> None:
        self.cleanup()
        self.fake.stop()
