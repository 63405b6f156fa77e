"""A control channel for a running fake, so that another process can drive it: the client.

``FakeSwarm.serve_control()`` listens on loopback TCP (``_control_server``).
Each request is one line of JSON, an object naming the operation and its
arguments, and each reply one line, in order, on the same connection
(``_control_requests`` says what each does; ``_control_values`` how values
go as JSON).

``FakeControl`` is the Python client, with one method per operation, which
returns the values the ``FakeSwarm`` method of the same name returns, and
raises ``ControlError`` when the channel cannot carry a request out.
"""

from __future__ import annotations

import json
import math
import socket
import time
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address
from typing import Any

import attrs

from .._model import Task as DNSTask
from ._control_requests import MAX_WAIT, WAIT_TIMEOUT
from ._control_server import MAX_CONNECTIONS
from ._control_values import (
    RemoteOperation,
    SwarmState,
    operation_from,
    service_from,
    state_from,
    task_from,
)
from ._loop import endpoint
from ._operations import OperationDelays, UpdateOrder
from ._responder import Delay, Fault, Injected
from ._swarm import EndpointMode, Service, ServiceMode, SwarmError, Task, TaskKey

#: The longest reply the client reads, in bytes.
MAX_REPLY_BYTES = 64 * 1024 * 1024
_RECV_SIZE = 65536


class ControlError(Exception):
    """The fake's control channel could not carry out a request.

    The fake refusing the operation itself (no such service, say) raises
    ``SwarmError`` instead, as the same call on the ``FakeSwarm`` would.

    Attributes:
        kind: What went wrong: ``"BadRequest"``, ``"RequestTooLarge"``,
            ``"InternalError"`` (the server's reply), or ``"Unreachable"``,
            ``"Timeout"``, ``"BadReply"`` (on the client's side).
    """

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def _parse_address(address: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(address, tuple):
        host, port = address
    elif isinstance(address, str):
        host, colon, port_text = address.rpartition(":")
        if not colon or not port_text.isdigit():
            raise ValueError(
                f"a control address is host:port, such as 127.0.0.1:5353 ([::1]:5353 for"
                f" IPv6); not {address!r}"
            )
        host, port = host.removeprefix("[").removesuffix("]"), int(port_text)
    else:
        raise TypeError(f"a control address is 'host:port' or (host, port), not {address!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
        raise ValueError(f"a control port is a whole number from 1 to 65535, not {port!r}")
    return host, port


def _task_key(task: TaskKey) -> str:
    if isinstance(task, Task):
        return task.id
    if isinstance(task, DNSTask):
        return str(task.ip)
    if isinstance(task, IPv4Address | str):
        return str(task)
    raise TypeError(
        "a task is the fake's Task, a swarmdns.Task, its address (an IPv4Address or a"
        f" str), or its ID, name or container ID as a str; not {task!r}"
    )


def _waits(fields: Mapping[str, object]) -> float:
    """How long the fake may hold a request's reply back: its ``timeout`` with ``wait=true``."""
    if fields.get("wait") is not True:
        return 0.0
    timeout = fields.get("timeout", WAIT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        return 0.0  # the fake refuses it at once
    return min(max(float(timeout), 0.0), MAX_WAIT) if math.isfinite(timeout) else 0.0


def _delays_json(delays: OperationDelays | None) -> dict[str, object]:
    if delays is None:
        return {}
    if not isinstance(delays, OperationDelays):
        raise TypeError(f"delays takes an OperationDelays, not {delays!r}")
    return {"delays": attrs.asdict(delays)}


def _fault_json(fault: object) -> object:
    if isinstance(fault, Fault):
        return fault.name
    if isinstance(fault, Delay):
        return fault.seconds
    return fault


class FakeControl:
    """Drives a fake Swarm running in another process, through its control channel.

    The fake listens for it once ``FakeSwarm.serve_control()`` was called
    (``swarmdns serve --control PORT`` on the command line). Each method does
    what the ``FakeSwarm`` method of the same name does, over one short
    connection, and returns the same values (snapshots, decoded; an update,
    rollback, drain or activation as a ``RemoteOperation``)::

        control = FakeControl("127.0.0.1:5380")
        control.scale("web", 5)
        control.kill_task("10.0.1.4")  # by address, ID, name, or value
        print(control.state().service("web").task_ips)

    Args:
        address: Where the channel listens: ``"host:port"`` (as
            ``FakeSwarm.control_address`` gives it) or ``(host, port)``.
        timeout: How many seconds each request may take, connecting included.

    Raises:
        ValueError: ``address`` is not ``host:port``.

    Every method raises ``SwarmError`` where the fake refuses the operation
    (the same error the ``FakeSwarm`` method raises), and ``ControlError``
    when the request could not be carried out: the channel unreachable or
    silent, or the request refused as malformed.
    """

    def __init__(self, address: str | tuple[str, int], *, timeout: float = 10.0) -> None:
        self._host, self._port = _parse_address(address)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self._timeout = float(timeout)

    @property
    def address(self) -> str:
        """``host:port`` of the channel."""
        return endpoint(self._host, self._port)

    def __repr__(self) -> str:
        return f"<FakeControl {self.address}>"

    def request(self, op: str, /, **fields: object) -> Any:  # noqa: ANN401 - JSON, as sent
        """Send one request as it goes on the wire; return its ``result`` as JSON.

        For tools that pass JSON through (``swarmdns control``); the other
        methods are this with their arguments checked and their results decoded.

        Raises:
            SwarmError: The fake refused the operation.
            ControlError: The request could not be carried out.
        """
        line = json.dumps({"op": op, **fields}).encode() + b"\n"
        deadline = time.monotonic() + self._timeout + _waits(fields)
        try:
            with socket.create_connection((self._host, self._port), self._timeout) as sock:
                sock.sendall(line)
                reply_line = self._read_line(sock, deadline)
        except TimeoutError:
            raise ControlError(
                f"{op}: the fake's control channel at {self.address} did not reply within"
                f" {self._timeout:g} s; it may be busy with {MAX_CONNECTIONS} other"
                " connections, or not a control channel: check the address",
                kind="Timeout",
            ) from None
        except OSError as error:
            raise ControlError(
                f"{op}: cannot reach the fake's control channel at {self.address}:"
                f" {error.strerror or error}; is the fake running, and serving its control"
                " channel there (FakeSwarm.serve_control(), swarmdns serve --control PORT)?",
                kind="Unreachable",
            ) from error
        return self._result(op, reply_line)

    def _read_line(self, sock: socket.socket, deadline: float) -> bytes:
        received = bytearray()
        while True:
            end = received.find(b"\n")
            if end >= 0:
                return bytes(received[:end])
            if len(received) > MAX_REPLY_BYTES:
                raise ControlError(
                    f"the reply from {self.address} is longer than {MAX_REPLY_BYTES} bytes:"
                    " is it a fake's control channel?",
                    kind="BadReply",
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = sock.recv(_RECV_SIZE)
            if not chunk:
                raise ControlError(
                    f"{self.address} closed the connection without replying: is it a fake's"
                    " control channel, and is the fake still running?",
                    kind="BadReply",
                )
            received += chunk

    def _result(self, op: str, line: bytes) -> Any:  # noqa: ANN401 - JSON, as sent
        try:
            reply = json.loads(line)
            ok = reply["ok"]
        except (ValueError, TypeError, KeyError):
            raise ControlError(
                f"{op}: {self.address} replied with something other than the fake's control"
                f" protocol ({bytes(line[:60])!r}): check the address",
                kind="BadReply",
            ) from None
        if ok:
            return reply.get("result")
        kind, message = str(reply.get("error")), str(reply.get("message"))
        if kind == "SwarmError":
            raise SwarmError(message)
        raise ControlError(message, kind=kind)

    # -- one method per operation ----------------------------------------------------

    def state(self) -> SwarmState:
        """The whole Swarm as it is now: services (with tasks and VIPs), networks, nodes."""
        return state_from(self.request("state"))

    def create_service(
        self,
        name: str,
        replicas: int = 1,
        *,
        network: str | Sequence[str] | None = None,
        endpoint_mode: EndpointMode = "vip",
        mode: ServiceMode = "replicated",
        aliases: Sequence[str] = (),
        healthcheck: bool = False,
        stack: str | None = None,
        placement: Sequence[str] | None = None,
    ) -> Service:
        """Create a service and start its tasks (see ``FakeSwarm.create_service()``).

        ``placement`` names the nodes it may run on (``"node-3"``, or their IDs).
        """
        if isinstance(aliases, str):
            raise TypeError(f"aliases takes a sequence of names, not one string: [{aliases!r}]")
        if isinstance(placement, str):
            raise TypeError(
                f"placement takes a sequence of nodes, not one string: [{placement!r}]"
            )
        fields: dict[str, object] = {
            "name": name,
            "replicas": replicas,
            "endpoint_mode": endpoint_mode,
            "mode": mode,
            "aliases": list(aliases),
            "healthcheck": healthcheck,
        }
        if network is not None:
            fields["network"] = network if isinstance(network, str) else list(network)
        if stack is not None:
            fields["stack"] = stack
        if placement:
            fields["placement"] = list(placement)
        return service_from(self.request("create_service", **fields))

    def scale(self, name: str, replicas: int) -> Service:
        """Set a replicated service's task count."""
        return service_from(self.request("scale", name=name, replicas=replicas))

    def remove_service(self, name: str) -> None:
        """Remove a service: every one of its names vanishes from DNS."""
        self.request("remove_service", name=name)

    def kill_task(self, task: TaskKey) -> Service:
        """Kill one task (by value, address, ID, name or container ID) without replacing it."""
        return service_from(self.request("kill_task", task=_task_key(task)))

    def replace_task(self, task: TaskKey) -> Task:
        """Kill one task and start its replacement in the same slot."""
        return task_from(self.request("replace_task", task=_task_key(task)))

    def reschedule(self, name: str) -> tuple[Task, ...]:
        """Start tasks in every empty slot of a service; returns them."""
        return tuple(task_from(t) for t in self.request("reschedule", name=name))

    def mark_healthy(self, task: TaskKey) -> Task:
        """Report a task of a service with a healthcheck healthy: DNS lists it."""
        return task_from(self.request("mark_healthy", task=_task_key(task)))

    def mark_unhealthy(self, task: TaskKey) -> Task:
        """Report a task unhealthy: DNS stops listing it."""
        return task_from(self.request("mark_unhealthy", task=_task_key(task)))

    def update_service(
        self,
        name: str,
        *,
        order: UpdateOrder = "stop-first",
        parallelism: int = 1,
        delay: float = 0.0,
        delays: OperationDelays | None = None,
        wait: bool = False,
        timeout: float = WAIT_TIMEOUT,
    ) -> RemoteOperation:
        """Replace every task of a service, batch by batch (see ``FakeSwarm.update_service()``).

        Args:
            name: The service.
            order: ``"stop-first"`` or ``"start-first"``.
            parallelism: Tasks per batch; 0: all at once.
            delay: Seconds between batches.
            delays: How long each step takes; the measured delays when None.
            wait: Reply once the update is over (or cancelled by a reset), not
                as it begins.
            timeout: With ``wait``, how many seconds to wait at most.

        Raises:
            ControlError: With ``wait``, it is still running after ``timeout``
                (``kind`` ``"Timeout"``; read it again with ``operation()``).
        """
        return self._rolled_out(
            "update_service",
            name,
            order=order,
            parallelism=parallelism,
            delay=delay,
            delays=delays,
            wait=wait,
            timeout=timeout,
        )

    def rollback(
        self,
        name: str,
        *,
        order: UpdateOrder = "stop-first",
        parallelism: int = 1,
        delay: float = 0.0,
        delays: OperationDelays | None = None,
        wait: bool = False,
        timeout: float = WAIT_TIMEOUT,
    ) -> RemoteOperation:
        """Undo a service's last update, with the rollback settings (see ``update_service()``)."""
        return self._rolled_out(
            "rollback",
            name,
            order=order,
            parallelism=parallelism,
            delay=delay,
            delays=delays,
            wait=wait,
            timeout=timeout,
        )

    def _rolled_out(
        self,
        op: str,
        name: str,
        *,
        order: UpdateOrder,
        parallelism: int,
        delay: float,
        delays: OperationDelays | None,
        wait: bool,
        timeout: float,
    ) -> RemoteOperation:
        fields: dict[str, object] = {
            "name": name,
            "order": order,
            "parallelism": parallelism,
            "delay": delay,
            **_delays_json(delays),
        }
        return self._operation(op, fields, wait, timeout)

    def drain(
        self,
        node: str,
        *,
        delays: OperationDelays | None = None,
        wait: bool = False,
        timeout: float = WAIT_TIMEOUT,
    ) -> RemoteOperation:
        """Drain a node (by name, such as ``"node-3"``, or ID; see ``FakeSwarm.drain()``)."""
        return self._operation("drain", {"node": node, **_delays_json(delays)}, wait, timeout)

    def activate(
        self,
        node: str,
        *,
        delays: OperationDelays | None = None,
        wait: bool = False,
        timeout: float = WAIT_TIMEOUT,
    ) -> RemoteOperation:
        """Make a drained node active again (see ``FakeSwarm.activate()``)."""
        return self._operation("activate", {"node": node, **_delays_json(delays)}, wait, timeout)

    def operation(
        self, id: int, *, wait: bool = False, timeout: float = WAIT_TIMEOUT
    ) -> RemoteOperation:
        """An operation the channel started, as it is now, or once over with ``wait``.

        Raises:
            SwarmError: The channel does not know the ID (it forgets them on reset).
            ControlError: With ``wait``, it is still running after ``timeout``.
        """
        return self._operation("operation", {"id": id}, wait, timeout)

    def _operation(
        self, op: str, fields: dict[str, object], wait: bool, timeout: float
    ) -> RemoteOperation:
        if wait:
            fields.update(wait=True, timeout=timeout)
        return operation_from(self.request(op, **fields))

    def inject(
        self,
        fault: Injected | str | float | Sequence[Injected | str | float],
        *,
        name: str | None = None,
        qtype: str | None = None,
    ) -> None:
        """Make the fake misbehave (see ``FakeSwarm.inject()``).

        Args:
            fault: A ``Fault`` (or its name, such as ``"SERVFAIL"``), a ``Delay``
                (or its seconds), or a sequence of them, used up one query at a time.
            name: The name to misbehave for; every name when None.
            qtype: The query type to misbehave for (``"A"``, ...); every type when None.
        """
        value: object
        if isinstance(fault, str) or not isinstance(fault, Sequence):
            value = _fault_json(fault)
        else:
            value = [_fault_json(each) for each in fault]
        fields: dict[str, object] = {"fault": value}
        if name is not None:
            fields["name"] = name
        if qtype is not None:
            fields["qtype"] = qtype
        self.request("inject", **fields)

    def clear_faults(self, name: str | None = None) -> None:
        """Stop misbehaving for ``name``, or for every name when None."""
        self.request("clear_faults", **({} if name is None else {"name": name}))

    def reset(self) -> None:
        """Forget every service, network, node, fault and logged query (``FakeSwarm.reset()``)."""
        self.request("reset")
