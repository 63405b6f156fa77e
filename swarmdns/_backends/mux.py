"""Many questions in flight through one UDP socket: IDs, matching and timeouts, without I/O.

A watch over many services sends every query through one long-lived socket.
``Multiplexer`` gives each query an ID no other query in flight has, takes a
datagram only from the server asked, with that ID and that question echoed
(anything else is dropped, as ``DirectBackend`` drops it; here also an error
reply without a question, which could be any query's), and times each
request out. Each question is an ``Exchange``, so every rule of a single
lookup holds: TCP after a truncated answer, the next nameserver after a
failure, the deadline. The fleet's traffic (``fleet``) only moves
datagrams and TCP answers.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from .._errors import SwarmDNSError
from .._model import Answer, Question
from . import wire
from .direct import Exchange, Request, timed_out
from .nameserver import Nameserver

K = TypeVar("K")


class Flight(Generic[K]):
    """One question on its way: its exchange, the request in progress, and how it ended.

    Attributes:
        key: What the caller asked it for.
        exchange: The question's way through the nameservers.
        request: The request in progress; None once the flight is over.
        attempt: How many requests it has made, so that a timer set for an
            earlier one is known as stale.
        values: The address values of the usual answer, once it came.
        query_id: The ID its queries carry.
    """

    __slots__ = ("attempt", "exchange", "key", "query_id", "request", "values")

    def __init__(self, key: K, exchange: Exchange, query_id: int) -> None:
        self.key = key
        self.exchange = exchange
        self.query_id = query_id
        self.request: Request | None = None
        self.attempt = 0
        self.values: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        state = "over" if self.request is None else f"asking {self.request.server}"
        return f"<Flight {self.exchange.question.name!r} {state}>"

    def outcome(self) -> tuple[int, ...] | Answer | SwarmDNSError:
        """How the flight ended: address values (the usual answer), an Answer, or the error."""
        if self.values is not None:
            return self.values
        try:
            return self.exchange.result()
        except SwarmDNSError as error:
            return error


class Multiplexer(Generic[K]):
    """Questions in flight through one UDP socket, matched by ID, source and question.

    Args:
        clock: Monotonic seconds, for the requests' timeouts.
        rng: The source of query IDs.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._rng = rng if rng is not None else random.SystemRandom()
        self._waiting: dict[int, Flight[K]] = {}  # UDP requests by query ID
        self._ids: set[int] = set()  # the IDs of every flight not over, TCP ones too
        self._timers: list[tuple[float, int, Flight[K], int]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        """The UDP requests waiting for their answer."""
        return len(self._waiting)

    def start(
        self, key: K, question: Question, servers: Sequence[Nameserver], timeout: float
    ) -> Flight[K]:
        """Set off ``question``: its first request is the flight's ``request``."""
        query_id = self._rng.getrandbits(16)
        while query_id in self._ids:
            query_id = self._rng.getrandbits(16)
        self._ids.add(query_id)
        flight = Flight(key, Exchange(question, servers, timeout, self._clock, query_id), query_id)
        self._advance(flight)
        return flight

    def received(
        self, data: bytes, source: tuple[str, int] | tuple[str, int, int, int]
    ) -> Flight[K] | None:
        """Take a datagram from ``source``; the flight it moved on, or None if it is no answer.

        A datagram with no query of its ID in flight, from another address than
        the one asked, or that does not echo the question, is dropped: so is
        an error reply without a question, which only its ID would tie to a
        query (``wire.answers``).
        """
        query_id = int.from_bytes(data[:2], "big")
        flight = self._waiting.get(query_id)
        if flight is None or flight.request is None:
            return None
        server = flight.request.server
        if source[0] != server.host or source[1] != server.port:
            return None
        if not wire.answers(data, flight.exchange.wire, echoed=True):
            return None
        del self._waiting[query_id]
        values = flight.exchange.usual_values(data)
        if values is not None:
            flight.values = values
            self._end(flight)
            return flight
        flight.exchange.handle_wire(data)
        self._advance(flight)
        return flight

    def answered(self, flight: Flight[K], reply: bytes | Exception) -> None:
        """Take a TCP request's answer, or the exception a request ended with.

        For what the driver read or met itself: a TCP answer, a failed
        connection, a datagram that could not be sent.
        """
        if self._waiting.get(flight.query_id) is flight:
            del self._waiting[flight.query_id]
        if isinstance(reply, Exception):
            flight.exchange.handle_error(reply)
        else:
            flight.exchange.handle_wire(reply)
        self._advance(flight)

    def expired(self, now: float) -> list[Flight[K]]:
        """The flights whose UDP request timed out by ``now``, each moved on."""
        moved = []
        while self._timers and self._timers[0][0] <= now:
            _, _, flight, attempt = heapq.heappop(self._timers)
            request = flight.request
            if request is None or not self._live(flight, attempt):
                continue
            del self._waiting[flight.query_id]
            flight.exchange.handle_error(timed_out(request.timeout))
            self._advance(flight)
            moved.append(flight)
        return moved

    def next_expiry(self) -> float | None:
        """When the next UDP request times out, if any is waiting."""
        while self._timers and not self._live(self._timers[0][2], self._timers[0][3]):
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def abandon(self, flight: Flight[K]) -> None:
        """Forget ``flight``: a late answer to it is dropped like a stray one."""
        if flight.request is None:
            return  # over already: its ID may be another flight's by now
        if not flight.request.tcp:
            self._waiting.pop(flight.query_id, None)
        self._end(flight)

    def _advance(self, flight: Flight[K]) -> None:
        request = flight.exchange.next_request()
        flight.request = request
        flight.attempt += 1
        if request is None:
            self._end(flight)
        elif not request.tcp:
            self._waiting[flight.query_id] = flight
            deadline = self._clock() + request.timeout
            heapq.heappush(self._timers, (deadline, next(self._order), flight, flight.attempt))

    def _end(self, flight: Flight[K]) -> None:
        """The flight is over: its ID is free again."""
        flight.request = None
        self._ids.discard(flight.query_id)

    def _live(self, flight: Flight[K], attempt: int) -> bool:
        """Whether a timer is still that of the flight's request in progress."""
        return (
            flight.attempt == attempt
            and flight.request is not None
            and self._waiting.get(flight.query_id) is flight
        )
