"""Where a fake Swarm listens: its DNS servers and control channel, across restarts.

Started again after ``stop()``, each server binds the port it had before, so
that an address handed out stays true; ``forget_ports()`` lets the next start
take free ones instead.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from ._control_requests import OPERATIONS, Operations
from ._control_server import ControlServer
from ._loop import binding_again, endpoint
from ._responder import Responder
from ._server import DNSServer


class Attached(Protocol):
    """What starts and stops with a fake's own DNS server, and its delayed effects.

    A Swarm's other nodes (``Cluster``), or a Compose project's timers.
    """

    def start(self, manager_port: int, *, again: bool) -> None:
        """The fake serves on ``manager_port``: start serving and applying effects."""
        ...

    def detach(self) -> list[DNSServer]:
        """The fake stops serving: the DNS servers for the caller to stop."""
        ...

    def pause(self) -> None:
        """Stop applying delayed effects, which stay pending; without the lock."""
        ...

    def forget_ports(self) -> None:
        """Let the next ``start()`` take free ports."""
        ...

    def errors(self) -> list[BaseException]:
        """What the delayed effects and the DNS servers raised (bugs only)."""
        ...


class Serving:
    """A fake's own DNS server (node 1's) and control channel, and its nodes' DNS.

    ``FakeSwarm`` documents each method of the same name (``FakeCompose``
    serves the same way). Each takes the fake's lock, and stops servers
    outside it, which the thread applying the delayed effects may want
    meanwhile.

    Args:
        responder: What the fake's own DNS server answers with.
        cluster: What starts and stops with it: the fake's nodes, whose DNS
            servers too, or a Compose project's timers.
        target: What the control channel drives: the fake.
        lock: The fake's lock.
        host: The address the DNS servers listen on.
        port: The fake's own DNS port, UDP and TCP; 0 lets the system choose.
        operations: What the control channel serves (a ``FakeSwarm``'s by default).
        what: The fake, as error messages name it.
    """

    def __init__(
        self,
        responder: Responder,
        cluster: Attached,
        target: object,
        *,
        lock: threading.RLock,
        host: str,
        port: int,
        operations: Operations = OPERATIONS,
        what: str = "the fake Swarm",
    ) -> None:
        self._responder = responder
        self._cluster = cluster
        self._target = target
        self._operations = operations
        self._what = what
        self._lock = lock
        self._host = host
        self._initial_port = self._port = port
        #: Started at least once: start() binds the port it had before.
        self._started = False
        #: The fake's own DNS server while it serves, else None.
        self.server: DNSServer | None = None
        self.control: ControlServer | None = None
        #: Where the control channel listens, to open it again at start().
        self._control_at: tuple[str, int] | None = None

    def start(self) -> None:
        """Bind every port (the ones from before, if started before) and serve; all or none."""
        with self._lock:
            if self.server is not None:
                where = endpoint(self.server.host, self.server.port)
                raise RuntimeError(f"{self._what} DNS server is already running at {where}")
            again = self._started  # a port taken meanwhile is named in the error
            with binding_again(
                f"{self._what}'s DNS server", self._host, self._port if again else 0
            ):
                server = DNSServer(self._responder, host=self._host, port=self._port)
            server.start()
            self.server = server
            try:
                self._cluster.start(server.port, again=again)
                if self._control_at is not None:
                    host, port = self._control_at
                    what = f"{self._what}'s control channel"
                    with binding_again(what, host, port if again else 0):
                        self.control = self._control_server(host, port)
                    self.control.start()
            except BaseException as error:  # all of it starts, or none
                self.server = None
                started, failure = self._detach(server), error
            else:
                self._port = server.port  # kept across stop() and start()
                self._started = True
                return
        self._stop(started)  # outside the lock
        raise failure

    def drop_pending(self) -> None:
        """Drop what clients sent the fake's DNS server and it has not read yet."""
        if self.server is not None:
            self.server.drop_pending()

    def forget_ports(self) -> None:
        """Let the next ``start()`` take free ports, not those it had before."""
        with self._lock:
            if self.server is not None:
                where = endpoint(self.server.host, self.server.port)
                raise RuntimeError(
                    f"{self._what} is running at {where}, on the ports it keeps:"
                    " stop() it before forget_ports()"
                )
            self._port = self._initial_port
            self._cluster.forget_ports()
            if self._control_at is not None:
                self._control_at = (self._control_at[0], 0)

    def stop(self) -> None:
        """Stop every server, keeping their ports for the next ``start()``; idempotent."""
        with self._lock:
            servers = self._detach(self.server)
            self.server = None
        self._stop(servers)

    def serve_control(self, port: int, *, host: str) -> str:
        """Open the control channel; returns where it listens."""
        with self._lock:
            if self.server is None:
                raise RuntimeError(f"{self._what} is stopped: call start() before serve_control()")
            if self.control is not None:
                raise RuntimeError(
                    f"{self._what}'s control channel is already open at"
                    f" {self.control.address}; close_control() first to move it"
                )
            control = self._control_server(host, port)
            control.start()
            self.control = control
            self._control_at = (control.host, control.port)
            return control.address

    def _control_server(self, host: str, port: int) -> ControlServer:
        return ControlServer(self._target, host=host, port=port, operations=self._operations)

    def close_control(self) -> None:
        """Close the control channel, if open, for good."""
        with self._lock:
            control, self.control = self.control, None
            self._control_at = None
        if control is not None:
            control.stop()

    def errors(self) -> list[BaseException]:
        """What the servers and the nodes' delayed effects caught of their own (bugs only)."""
        server, control = self.server, self.control
        errors = [] if server is None else list(server.internal_errors)
        if control is not None:
            errors.extend(control.internal_errors)
        return [*errors, *self._cluster.errors()]

    def _detach(self, server: DNSServer | None) -> list[DNSServer | ControlServer]:
        control, self.control = self.control, None
        servers: list[DNSServer | ControlServer] = [] if control is None else [control]
        if server is not None:
            servers.append(server)
        return [*servers, *self._cluster.detach()]

    def _stop(self, servers: Sequence[DNSServer | ControlServer]) -> None:
        """Stop the control channel first, then the nodes' scheduler, then every DNS server."""
        for each in servers:
            if isinstance(each, ControlServer):
                each.stop()
        self._cluster.pause()
        for each in servers:
            if not isinstance(each, ControlServer):
                each.stop()
