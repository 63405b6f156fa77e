"""What every fake shares: its own DNS server and control channel, engine, upstream, faults, log.

``FakeSwarm`` and ``FakeCompose`` model different things but serve them the
same way: each holds a ``Responder`` (and, for a Swarm of several nodes, one
per node), and a ``Serving`` that binds its ports. ``ServedFake`` gives both
the methods that only drive those.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from ipaddress import IPv4Address
from types import TracebackType
from typing import Literal, TypeVar

from .._own_addresses import OWN_ADDRESSES_VARIABLE
from .._runtime import RUNTIME_VARIABLE
from ._engines import EngineVersion, engine_profile, resolv_conf
from ._loop import endpoint
from ._responder import Injected, QueryRecord, Responder, Upstream
from ._server import DNSServer
from ._serving import Serving

_Fake = TypeVar("_Fake", bound="ServedFake")

#: Where a fake's containers run, as ``SWARMDNS_RUNTIME`` says it.
Runtime = Literal["swarm", "compose"]


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then put each back as it was (or unset)."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class ServedFake:
    """The serving half of a fake: life cycle, control channel, engine, faults, query log.

    Subclasses set ``_lock``, ``_responder`` and ``_serving`` in ``__init__``,
    and name every responder that answers for them in ``_responders()``.
    """

    #: The fake as messages name it.
    _what = "the fake Swarm"
    _lock: threading.RLock
    _responder: Responder
    _serving: Serving
    _seed: int | None
    _initial_engine: EngineVersion
    _initial_upstream: Upstream
    #: The networks the asking container is on (None: every one); a property
    #: of each fake.
    client_networks: tuple[str, ...] | None

    def _responders(self) -> Sequence[Responder]:
        """Every responder of the fake: its own first (a Swarm's nodes' follow)."""
        return (self._responder,)

    def _answer_as_created(self) -> None:
        """Upstream, engine and order of answers as at creation; no fault, no logged query."""
        self.upstream = self._initial_upstream
        self.use_engine(self._initial_engine)
        self.seed(self._seed)
        self._responder.faults.clear()
        self._responder.log.clear()

    @contextlib.contextmanager
    def _inside(self, addresses: Mapping[str, IPv4Address], runtime: Runtime) -> Iterator[None]:
        """Be the container with these addresses (by network) for the block.

        The library reads its own addresses and where it runs from the
        environment; DNS answers as to a container on exactly those networks.
        """
        values = {
            OWN_ADDRESSES_VARIABLE: ",".join(str(address) for address in addresses.values()),
            RUNTIME_VARIABLE: runtime,
        }
        with self._lock:
            attached = self.client_networks
            self.client_networks = tuple(addresses)
        try:
            with environment(values):
                yield
        finally:
            with self._lock:
                self.client_networks = attached

    # -- life cycle ------------------------------------------------------------

    def start(self: _Fake) -> _Fake:
        """Bind the sockets and start answering; returns the fake itself.

        Started again after ``stop()``, the fake listens on the same port as
        before (every node's DNS too, and the control channel), so that
        ``nameserver`` and ``SWARMDNS_NAMESERVER`` stay true.

        Raises:
            OSError: The port is taken; started again, the message names the
                port it had before, which something else took meanwhile.
        """
        self._serving.start()
        return self

    def forget_ports(self) -> None:
        """Let the next ``start()`` take free ports, not those the fake had before.

        A stopped fake remembers its ports, so that ``start()`` binds them
        again and an address handed out stays true; but if something else
        took one meanwhile, ``start()`` fails. After this, ``start()`` takes
        the ``port`` the fake was created with (any free one for 0), and free
        ones for the other nodes' DNS and the control channel (if open), so
        ``nameserver`` and the nodes' addresses may change. The ``swarm_dns``
        and ``compose_dns`` fixtures do this when a test left the fake stopped
        and its port taken.

        Raises:
            RuntimeError: The fake is running: ``stop()`` it first.
        """
        self._serving.forget_ports()

    def stop(self) -> None:
        """Stop answering and release the sockets and the threads; idempotent.

        ``start()`` binds the same ports again.
        """
        self._serving.stop()

    # -- the control channel ---------------------------------------------------------

    def serve_control(self, port: int = 0, *, host: str = "127.0.0.1") -> str:
        """Let another process drive this fake, through ``FakeControl``.

        Listens on a loopback TCP port for requests, one line of JSON each
        (see docs/testing.md); ``FakeControl(address)`` sends them. The
        channel closes with ``stop()`` (and opens again, on the same port,
        with ``start()``) or with ``close_control()``.

        Args:
            port: The TCP port; 0 lets the system choose.
            host: A loopback address: whoever reaches the channel can change the fake.

        Returns:
            Where it listens, ``host:port``, as ``FakeControl`` takes it.

        Raises:
            ValueError: ``host`` is not a loopback address, or ``port`` not a port.
            RuntimeError: The fake is stopped, or the channel already open.
            OSError: The port is taken.
        """
        return self._serving.serve_control(port, host=host)

    def close_control(self) -> None:
        """Close the control channel, if open; ``start()`` will not open it again."""
        self._serving.close_control()

    @property
    def control_address(self) -> str | None:
        """Where the control channel listens (``host:port``), or None when closed."""
        control = self._serving.control
        return None if control is None else control.address

    def __enter__(self: _Fake) -> _Fake:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the engine version ------------------------------------------------------

    @property
    def engine(self) -> EngineVersion:
        """The Docker Engine version answered like, such as ``"28.5"``."""
        return self._responder.engine.version

    def use_engine(self, engine: EngineVersion) -> None:
        """Answer like another Docker Engine version from the next query on.

        Cheap enough to call per test: nothing is rebuilt. ``reset()`` goes
        back to the version the fake was created with.

        Raises:
            ValueError: ``engine`` is not a version the fake models.
        """
        profile = engine_profile(engine)
        for responder in self._responders():
            responder.engine = profile

    def resolv_conf(self, *, search: Sequence[str] = (), options: Sequence[str] = ()) -> str:
        """A task's ``/etc/resolv.conf``, as this engine version writes it.

        The nameserver is the engine's, 127.0.0.11, as in a real task (not
        the fake's own address). 20.10 writes the directives alone; 26.1 and
        newer add a comment block around them.

        Args:
            search: The host's search domains, which the engine copies.
            options: The host's resolver options (such as ``"edns0"``), which
                the engine copies; an ``ndots:<n>`` among them stops the
                engine adding its own ``ndots:0``.

        Returns:
            The file's text.
        """
        return resolv_conf(self._responder.engine, search=search, options=options)

    # -- where it listens ------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the server is answering."""
        server = self._serving.server
        return server is not None and server.running

    @property
    def _running(self) -> DNSServer:
        server = self._serving.server
        if server is None:
            raise RuntimeError(f"{self._what} DNS server is not running: call start() first")
        return server

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._running.host

    @property
    def port(self) -> int:
        """The port the server listens on, for both UDP and TCP."""
        return self._running.port

    @property
    def nameserver(self) -> str:
        """``host:port`` (``[host]:port`` for IPv6), as ``SWARMDNS_NAMESERVER`` takes it."""
        server = self._running
        return endpoint(server.host, server.port)

    @property
    def internal_errors(self) -> tuple[BaseException, ...]:
        """Exceptions the servers caught in their own code (always empty, barring bugs)."""
        return tuple(self._serving.errors())

    # -- DNS behaviour and faults --------------------------------------------------

    @property
    def upstream(self) -> Upstream:
        """What names the fake does not own, and empty services, get."""
        return self._responder.upstream

    @upstream.setter
    def upstream(self, upstream: Upstream) -> None:
        if not isinstance(upstream, Upstream):
            raise TypeError(f"upstream must be an Upstream member, not {upstream!r}")
        for responder in self._responders():
            responder.upstream = upstream

    def seed(self, seed: int | None) -> None:
        """Make the order of answers repeatable from now on (None: random again)."""
        for responder in self._responders():
            responder.seed(seed)

    def inject(
        self,
        fault: Injected | Sequence[Injected],
        *,
        name: str | None = None,
        qtype: str | None = None,
    ) -> None:
        """Make the server misbehave for ``name`` (any case), or for every name.

        With ``qtype`` (``"A"``, ``"AAAA"``, ``"PTR"``, ...), only queries of
        that type misbehave, so that a one-time fault for A is not used up by
        the AAAA query a C library sends alongside it.

        A single ``Fault`` or ``Delay`` lasts until ``clear_faults()``. A
        sequence is used up one query at a time, after which the name is
        answered as usual again: ``inject([Fault.SERVFAIL] * 2, name="tasks.web")``
        fails twice, then answers. A name's own faults come before faults for
        every name.
        """
        self._responder.faults.inject(fault, name, qtype)

    def clear_faults(self, name: str | None = None) -> None:
        """Stop misbehaving for ``name``, or for every name when None."""
        self._responder.faults.clear(name)

    # -- what the server received --------------------------------------------------

    @property
    def queries(self) -> tuple[QueryRecord, ...]:
        """The messages received since the start (or the last reset), oldest first.

        Only the newest ``query_log`` of them (see ``FakeSwarm``, ``FakeCompose``).
        """
        return self._responder.log.snapshot()

    def count_queries(self, name: str | None = None) -> int:
        """How many messages (about ``name``, if given) arrived since the start or last reset.

        Unlike ``len(queries)``, this counts those the log no longer keeps.
        """
        return self._responder.log.count(name)

    def clear_queries(self) -> None:
        """Forget the messages received so far, and their count."""
        self._responder.log.clear()

    def wait_for_queries(
        self, count: int, *, name: str | None = None, timeout: float = 5.0
    ) -> tuple[QueryRecord, ...]:
        """Block until ``count`` messages (about ``name``, if given) have arrived.

        Every message since the start (or the last reset) counts, including
        those the log no longer keeps.

        Returns:
            Those messages still in the log, oldest first.

        Raises:
            TimeoutError: Fewer arrived within ``timeout`` seconds.
        """
        return self._responder.log.wait(count, name=name, timeout=timeout)
