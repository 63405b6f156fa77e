"""``swarmdns serve``: run the fake Swarm DNS server until interrupted."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import shlex
import shutil
import socket
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import attrs

from .._backends.base import Backend
from .._backends.direct import DirectBackend
from .._errors import ConfigurationError, NoVirtualIP
from .._sync import service_vip, task_ips
from .common import EXIT_OK
from .options import (
    bad_value,
    parse_listen_address,
    parse_port,
    parse_service_spec,
    whole_number,
)
from .process import interrupted_once, warnings_shown

if TYPE_CHECKING:
    from ..testing import FakeCompose, FakeSwarm

HELP = "run the fake Swarm DNS server, for local development"
DESCRIPTION = (
    "Run a fake of Docker's embedded DNS server with the given services (of a Swarm, or of"
    " a Compose project with --compose), and print its address, until interrupted."
)

_DESCRIPTION_EXAMPLE = (
    '{"networks": [{"name": "mesh", "subnet": "10.9.0.0/24"}],'
    ' "services": [{"name": "web", "replicas": 3, "network": "mesh"}]}'
)


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address (or name, such as localhost) to listen on (default: 127.0.0.1)",
    )
    parser.add_argument("--port", default="0", help="port for UDP and TCP (default: any free one)")
    parser.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="NAME[=REPLICAS]",
        help="a service to run (repeatable; default: web=3)",
    )
    parser.add_argument(
        "--file", type=Path, metavar="FILE", help=f"a JSON description: {_DESCRIPTION_EXAMPLE}"
    )
    parser.add_argument(
        "--engine",
        metavar="VERSION",
        help="the Docker Engine version to answer like: 20.10, 26.1 or 28.5 (default: 28.5)",
    )
    parser.add_argument(
        "--compose",
        metavar="PROJECT",
        help="fake a Compose project of this name instead of a Swarm: each service's"
        " REPLICAS are its containers (PROJECT-NAME-1, ...), on the network PROJECT_default",
    )
    parser.add_argument(
        "--nodes",
        default="1",
        metavar="N",
        help="how many nodes the Swarm has, each with a DNS server of its own (default: 1),"
        " so that swarmdns control drain has somewhere to move tasks",
    )
    parser.add_argument(
        "--control",
        metavar="PORT",
        help="also open the control channel on 127.0.0.1:PORT (0: any free port), so that"
        " swarmdns control can scale services, kill tasks and inject faults",
    )


@attrs.frozen(kw_only=True)
class ServeRequest:
    """What ``serve`` was asked for: where to listen, and what Swarm to fake."""

    host: str
    address: str  # what ``host`` names
    port: int
    engine: str | None
    control: int | None
    nodes: int
    compose: str | None  # the project, when faking Compose
    networks: list[dict[str, Any]]
    services: list[dict[str, Any]]

    @classmethod
    def from_options(cls, options: argparse.Namespace) -> ServeRequest:
        port = parse_port(options.port, source="--port")
        control = (
            None if options.control is None else parse_port(options.control, source="--control")
        )
        nodes = whole_number(options.nodes)
        if nodes is None or nodes < 1:
            raise bad_value("--nodes", options.nodes, "is not a number of nodes (1 or more)")
        if nodes > 1 and options.compose is not None:
            raise bad_value(
                "--nodes",
                options.nodes,
                "cannot be used with --compose: a Compose project runs on one engine;"
                " leave --nodes out",
            )
        networks, services = _described(options.file, options.service)
        return cls(
            host=options.host,
            address=parse_listen_address(options.host, source="--host"),
            port=port,
            engine=options.engine,
            control=control,
            nodes=nodes,
            compose=options.compose,
            networks=networks,
            services=services,
        )


def _listed(description: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """``description[key]``: a list of objects (none when the key is missing)."""
    listed = description.get(key, [])
    if not isinstance(listed, list) or not all(isinstance(item, dict) for item in listed):
        raise TypeError(f"{key!r} must be a list of objects, not {json.dumps(listed)}")
    return listed


def _described(
    file: Path | None, specs: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The networks and services of ``serve``: from ``--file``, then each ``--service``."""
    networks: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    if file is not None:
        try:
            description = json.loads(file.read_text())
            if not isinstance(description, dict):
                raise TypeError("the description must be a JSON object")
            unknown = sorted(set(description) - {"networks", "services"})
            if unknown:
                raise TypeError(f"unknown key {unknown[0]!r} (it takes networks and services)")
            networks.extend(_listed(description, "networks"))
            services.extend(_listed(description, "services"))
        except (OSError, ValueError, TypeError, RecursionError) as error:  # nested too deep
            raise ConfigurationError(
                f"cannot use {str(file)!r}: {error}; expected {_DESCRIPTION_EXAMPLE}",
                source="--file",
            ) from error
    services.extend(parse_service_spec(text, source="--service") for text in specs)
    return networks, services or [{"name": "web", "replicas": 3}]


def wait_for_interrupt(stop: threading.Event) -> None:
    """Block until Ctrl-C or SIGTERM (``run()`` makes either set ``stop``, or raise)."""
    stop.wait()


_WHY_NOT = {
    errno.EADDRINUSE: "another program uses that port: choose another --port, or leave --port"
    " out for any free one",
    errno.EADDRNOTAVAIL: "that is not an address of this machine: give one that is, such as"
    " 127.0.0.1 (the default)",
    errno.EACCES: "ports below 1024 need privileges: choose a port from 1024 up, or leave"
    " --port out for any free one",
}


def _try_address(address: str) -> None:
    """Bind a socket to ``address`` (any port), for the reason it cannot be, if it cannot.

    With any free port, the fake tries several ports before it gives up, and
    its error no longer says why the address itself would not do.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((address, 0))


def _cannot_listen(request: ServeRequest, error: OSError) -> ConfigurationError:
    host, address, port = request.host, request.address, request.port
    where = host if host == address else f"{host} ({address})"
    where += f" port {port}" if port else " (any free port)"
    why = error.strerror or str(error) or type(error).__name__
    hint = _WHY_NOT.get(error.errno or 0)
    return ConfigurationError(
        f"cannot listen on {where}: {why}" + (f"; {hint}" if hint else ""),
        source="--host/--port",
    )


def _own_command() -> str:
    """How to run this swarmdns from a shell: ``swarmdns`` if that is it, else ``python -m``."""
    here = Path(sys.executable).with_name("swarmdns")
    found = shutil.which("swarmdns")
    with contextlib.suppress(OSError):
        if found is not None and here.exists() and Path(found).samefile(here):
            return "swarmdns"
    return f"{shlex.quote(sys.executable)} -m swarmdns"


def _summary(name: str, backend: Backend) -> tuple[str, bool]:
    """What DNS gives for a service of the fake (its virtual IP, its tasks); whether any."""
    addresses = task_ips(name, backend=backend)
    if not addresses:
        return f"  {name}: not in DNS (no running task)", False
    try:
        vip = f"vip {service_vip(name, backend=backend)}"
    except NoVirtualIP:
        vip = "no VIP (dnsrr)"
    return f"  {name}: {vip}, tasks {' '.join(str(ip) for ip in addresses)}", True


def _started(request: ServeRequest) -> FakeSwarm | FakeCompose:
    """The fake, listening where asked."""
    from ..testing import ENGINES, FakeCompose, FakeSwarm, SwarmError  # noqa: PLC0415

    engine = ENGINES[-1] if request.engine is None else request.engine
    if engine not in ENGINES:
        choices = ", ".join(repr(version) for version in ENGINES)
        raise bad_value(
            "--engine",
            engine,
            f"is not a Docker Engine version the fake models; give one of {choices}",
        )
    # Nobody reads this fake's query log, and it may run for days: keep none.
    swarm: FakeSwarm | FakeCompose
    if request.compose is None:
        try:
            swarm = FakeSwarm(
                host=request.address,
                port=request.port,
                engine=engine,
                nodes=request.nodes,
                query_log=0,
            )
        except ValueError as error:  # too many nodes
            raise bad_value("--nodes", str(request.nodes), f"cannot be used: {error}") from error
    else:
        try:
            swarm = FakeCompose(
                request.compose,
                host=request.address,
                port=request.port,
                engine=engine,
                query_log=0,
            )
        except SwarmError as error:
            raise bad_value("--compose", request.compose, f"cannot be used: {error}") from error
    try:
        _try_address(request.address)
        swarm.start()
    except OSError as error:
        raise _cannot_listen(request, error) from error
    return swarm


def _populate(swarm: FakeSwarm | FakeCompose, request: ServeRequest) -> None:
    """Create the networks and services asked for."""
    from ..testing import FakeCompose, SwarmError  # noqa: PLC0415 - the fake only when asked

    if isinstance(swarm, FakeCompose):
        _populate_compose(swarm, request)
        return
    for network in request.networks:
        try:
            swarm.create_network(**network)
        except (SwarmError, TypeError) as error:
            raise ConfigurationError(
                f"network {json.dumps(network)}: {error}", source="--file"
            ) from error
    for service in request.services:
        try:
            swarm.create_service(**{"replicas": 1, **service})
        except (SwarmError, TypeError) as error:
            raise ConfigurationError(
                f"service {json.dumps(service)}: {error}", source="--service/--file"
            ) from error
    swarm.settle()  # every node's tasks reach node-1's DNS, which the banner asks


def _compose_service(service: dict[str, Any]) -> dict[str, Any]:
    """A service of ``--file`` or ``--service`` as ``FakeCompose.create_service()`` takes it.

    ``replicas`` is the scale, ``network`` a network or a list of them (as
    named in a Compose file), ``aliases`` as for a Swarm.

    Raises:
        TypeError: It has a key a Compose service does not take.
    """
    unknown = sorted(set(service) - {"name", "replicas", "network", "aliases"})
    if unknown:
        raise TypeError(
            f"a Compose service takes name, replicas, network and aliases; not {unknown[0]!r}"
        )
    arguments: dict[str, Any] = {k: service[k] for k in ("name", "aliases") if k in service}
    arguments["scale"] = service.get("replicas", 1)
    network = service.get("network")
    if network is not None:
        arguments["networks"] = [network] if isinstance(network, str) else network
    return arguments


def _populate_compose(compose: FakeCompose, request: ServeRequest) -> None:
    """Create the services asked for in the Compose project (networks come with them)."""
    from ..testing import SwarmError  # noqa: PLC0415 - the fake only when asked

    if request.networks:
        raise ConfigurationError(
            'a Compose project\'s networks come with its services ("network": "back" is'
            f' {compose.project}_back): leave "networks" out with --compose',
            source="--file",
        )
    for service in request.services:
        try:
            compose.create_service(**_compose_service(service))
        except (SwarmError, TypeError) as error:
            raise ConfigurationError(
                f"service {json.dumps(service)}: {error}", source="--service/--file"
            ) from error


def _control_line(swarm: FakeSwarm | FakeCompose, port: int) -> str:
    """Open the control channel on ``port``; the line that says where."""
    try:
        control = swarm.serve_control(port)
    except OSError as error:
        raise ConfigurationError(
            f"cannot open the control channel on 127.0.0.1:{port}:"
            f" {error.strerror or error}; pick another port, or 0 for any free one",
            source="--control",
        ) from error
    return (
        f"control channel on {control} (try: {_own_command()} control --address {control} state)"
    )


def _compose_banner(compose: FakeCompose, request: ServeRequest) -> list[str]:
    """What ``serve --compose`` prints: where it listens, its containers, how to use it."""
    say = [
        f"fake Compose DNS listening on {compose.nameserver} (UDP and TCP),"
        f" project {compose.project}, answering like Docker Engine {compose.engine}",
        "  networks: " + ", ".join(f"{n.name} {n.subnet}" for n in compose.networks),
    ]
    for service in compose.services:
        running = [f"{c.name} {c.ip}" for c in service.containers if c.visible]
        say.append(f"  {service.name}: " + (", ".join(running) or "not in DNS (no container)"))
    shown = compose.services[0].name if compose.services else "web"
    if request.control is not None:
        say.append(_control_line(compose, request.control))
    say.append(f"try: dig @{compose.host} -p {compose.port} {shown}")
    say.append(
        f"or:  SWARMDNS_NAMESERVER={compose.nameserver} SWARMDNS_RUNTIME=compose"
        f" {_own_command()} tasks {shown}"
    )
    say.append("Ctrl-C stops it.")
    return say


def _banner(swarm: FakeSwarm | FakeCompose, request: ServeRequest) -> list[str]:
    """What ``serve`` prints: where it listens, what DNS gives, and how to use it."""
    from ..testing import FakeCompose  # noqa: PLC0415 - the fake only when asked

    if isinstance(swarm, FakeCompose):
        return _compose_banner(swarm, request)
    backend = DirectBackend([swarm.nameserver])
    say = [
        f"fake Swarm DNS listening on {swarm.nameserver} (UDP and TCP),"
        f" answering like Docker Engine {swarm.engine}",
        "  networks: " + ", ".join(f"{n.name} {n.subnet}" for n in swarm.networks),
    ]
    if len(swarm.nodes) > 1:
        say.append(
            f"  nodes: {swarm.nodes[0].name} (this DNS), "
            + ", ".join(f"{n.name} (DNS on {n.nameserver})" for n in swarm.nodes[1:])
        )
    in_dns = []
    for each in swarm.services:
        line, listed = _summary(each.name, backend)
        say.append(line)
        in_dns += [each.name] if listed else []
    shown = (in_dns or [swarm.services[0].name])[0]
    if request.control is not None:
        say.append(_control_line(swarm, request.control))
    say.append(f"try: dig @{swarm.host} -p {swarm.port} tasks.{shown}")
    say.append(f"or:  SWARMDNS_NAMESERVER={swarm.nameserver} {_own_command()} tasks {shown}")
    say.append("Ctrl-C stops it.")
    return say


def run(options: argparse.Namespace, out: TextIO) -> int:
    request = ServeRequest.from_options(options)
    stop = threading.Event()
    # Before the banner says "Ctrl-C stops it", so that Ctrl-C or SIGTERM after it
    # always finds the handler that stops the fake cleanly.
    with (
        interrupted_once() as interrupts,
        interrupts.waking(stop.set),
        contextlib.suppress(KeyboardInterrupt),
        warnings_shown("testing", "%(message)s"),  # the fake's: out of descriptors
    ):
        swarm = _started(request)
        try:
            _populate(swarm, request)
            print("\n".join(_banner(swarm, request)), file=out, flush=True)
            wait_for_interrupt(stop)
        finally:
            swarm.stop()
    return EXIT_OK
