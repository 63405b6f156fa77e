"""How the fake answers one query: the engine's rules plus injected faults, no I/O.

The server hands every datagram or TCP message to ``Responder.respond`` and
sends back whatever ``Reply`` says, after its delay. Everything that decides
an answer lives here so that it can be tested and fuzzed without sockets.
"""

from __future__ import annotations

import collections
import enum
import functools
import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from typing import Literal, NamedTuple

import dns.rdatatype
from attrs import field, frozen

from . import _wire
from ._engines import DEFAULT_ENGINE, EngineProfile, EngineVersion, engine_profile
from ._zone import IPV4_REVERSE_SUFFIX, IPV6_REVERSE_SUFFIX, Zone

#: The engine answers every local name with this TTL; it cannot be configured.
TTL = 600
#: The TTL of the records an upstream answers with (``Upstream.HIJACK``),
#: which the engine relays as it came: a resolver's usual 5 minutes, never
#: the engine's own 600.
UPSTREAM_TTL = 300
#: What resolvers that rewrite NXDOMAIN answer every A query for a name the
#: engine does not own with (``Upstream.HIJACK``): the two public addresses
#: quoted in moby/moby#40435.
HIJACK_ADDRESSES = (IPv4Address("23.202.231.167"), IPv4Address("23.217.138.108"))
#: The UDP buffer size in the OPT record of an upstream's answer to an EDNS
#: query (BIND's and Unbound's default); the engine's own answers carry no OPT.
UPSTREAM_EDNS_PAYLOAD = 1232
#: How a message reached the fake: ``"udp"`` or ``"tcp"`` (``QueryRecord.transport``).
Transport = Literal["udp", "tcp"]
#: The engine's limit on a TCP answer (miekg/dns MaxMsgSize - 1).
_TCP_LIMIT = 65534
#: The largest datagram the system sends over IPv4; EDNS may ask for more.
_UDP_LIMIT = 65507
#: How long the engine waits for an upstream, and for a free forwarding slot
#: (moby's ``extIOTimeout``).
UPSTREAM_TIMEOUT = 4.0


class Fault(enum.Enum):
    """A way for the fake to misbehave, for one name or for every name.

    An injected SERVFAIL or REFUSED is a failure, on every engine: RA set,
    as 20.10 relays an upstream's failure. The engine's own SERVFAIL and
    REFUSED without RA (24 and newer) say that it forwarded a name it does
    not own, which swarmdns reads as "no such name" from the engine; they
    come from the upstream's settings (``Upstream``), not from faults.
    """

    #: Answer SERVFAIL, RA set: the lookup fails.
    SERVFAIL = "servfail"
    #: Answer REFUSED, RA set: the lookup fails.
    REFUSED = "refused"
    #: Answer nothing, so that the client times out (engine 23 and older
    #: without an upstream).
    NO_REPLY = "no-reply"
    #: Answer bytes that claim to be a reply but cannot be parsed.
    GARBAGE = "garbage"
    #: Answer correctly, but under another query ID.
    WRONG_ID = "wrong-id"


@frozen
class Delay:
    """Answer as usual, but only after ``seconds``.

    Attributes:
        seconds: How long to hold the answer back.
    """

    seconds: float = field()

    @seconds.validator
    def _check(self, _attribute: object, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"a delay is a number of seconds, not {value!r}")
        if not 0 <= value <= 3600:
            raise ValueError(f"a delay must be between 0 and 3600 seconds, not {value!r}")


#: What can be injected: a fault, or a delay before the usual answer.
Injected = Fault | Delay


class Upstream(enum.Enum):
    """How the host's resolvers treat what the engine forwards to them.

    The engine forwards names it does not own (and the names of services
    without tasks) to the resolvers of its host; what the client then sees
    depends on them and on the engine's version.
    """

    #: They answer that the name does not exist (the usual case); relayed.
    NXDOMAIN = "nxdomain"
    #: They answer SERVFAIL. 20.10 relays it (RA set); 24 and newer answer a
    #: SERVFAIL of their own, without RA.
    SERVFAIL = "servfail"
    #: None can be reached (no resolvers, or a closed port): 20.10 sends no
    #: reply at all; 24 and newer answer SERVFAIL without RA at once.
    UNREACHABLE = "unreachable"
    #: They never answer (packets dropped): 20.10 sends no reply at all; 24
    #: and newer answer SERVFAIL without RA after 4 s, and more than 1,024 such
    #: forwards in flight make the engine answer REFUSED.
    NO_REPLY = "no-reply"
    #: They rewrite NXDOMAIN (moby/moby#40435): every A query for a name the
    #: engine does not own (``tasks.<svc>`` of a service without tasks
    #: included) gets made-up public addresses, ``HIJACK_ADDRESSES``, as a
    #: forwarded answer: TTL ``UPSTREAM_TTL`` (not 600), flags ``qr rd ra``
    #: on every engine, and an OPT record when the query had one. Other
    #: types get their NXDOMAIN. Names the engine owns are answered as usual.
    HIJACK = "hijack"


class Outcome(enum.Enum):
    """What the fake did with a query, as recorded in its log."""

    NOERROR = "NOERROR"
    NXDOMAIN = "NXDOMAIN"
    SERVFAIL = "SERVFAIL"
    REFUSED = "REFUSED"
    FORMERR = "FORMERR"
    NOTIMP = "NOTIMP"
    NO_REPLY = "no-reply"
    GARBAGE = "garbage"
    WRONG_ID = "wrong-id"


@frozen(kw_only=True)
class QueryRecord:
    """One message the fake received, and what it did with it.

    Attributes:
        name: The question's name as sent, without the root dot (None when
            the message could not be parsed).
        qtype: The question's type, such as ``"A"`` (None when unparsed).
        transport: ``"udp"`` or ``"tcp"`` (a ``Transport``).
        outcome: What the fake answered.
        answers: How many records the answer carried.
        truncated: Whether the answer was cut short and flagged TC.
        delay: How long the answer was held back, in seconds.
        received: When the message arrived (``time.monotonic()``).
    """

    name: str | None
    qtype: str | None
    transport: Transport
    outcome: Outcome
    answers: int = 0
    truncated: bool = False
    delay: float = 0.0
    received: float = field(repr=False, eq=False)


class _Unanswered(enum.Enum):
    """Why the engine has no records of its own for a query."""

    #: It does not own the name (or type): it forwards the query upstream.
    FORWARD = "forward"
    #: Its handler fails: it logs an error and sends nothing.
    FAIL = "fail"


#: How many parsed queries, and how many names' records, a responder keeps.
_REMEMBERED = 4096
#: The longest message whose parse is kept, in bytes: a real query is at
#: most about 300 (a 255-byte name, its question and an OPT record with a
#: cookie). Longer ones are parsed each time, so that the cache holds at most
#: ``_REMEMBERED`` times this (2 MiB), whatever clients send.
_REMEMBERED_MESSAGE = 512


class _Parsed(NamedTuple):
    """A query as parsed, and what answering it needs; the same for any query ID.

    ``query.id`` is that of the first query parsed so: answers take the ID
    from the datagram at hand.
    """

    query: _wire.Query
    name: str | None
    qtype: str
    logged_name: str

    @classmethod
    def of(cls, query: _wire.Query) -> _Parsed:
        """What a newly parsed query says."""
        return cls(
            query=query,
            name=query.ascii_name,
            qtype=_type_text(query.qtype),
            logged_name=_wire.name_to_text(query.labels).removesuffix(".") or ".",
        )


class _Answer(NamedTuple):
    data: bytes | None
    outcome: Outcome
    answers: int = 0
    truncated: bool = False
    delay: float = 0.0


class _Forwarded(NamedTuple):
    """What comes back from forwarding a query upstream, as the engine relays it.

    ``relayed``: the upstream's own reply, with its OPT record when the query
    had EDNS; else the engine's own, without.
    """

    rcode: int
    outcome: Outcome
    recursion: bool
    delay: float = 0.0
    relayed: bool = False


#: An upstream's NXDOMAIN or SERVFAIL, relayed as it came (with its RA).
_RELAYED_NXDOMAIN = _Forwarded(_wire.RCODE_NXDOMAIN, Outcome.NXDOMAIN, True, relayed=True)
_RELAYED_SERVFAIL = _Forwarded(_wire.RCODE_SERVFAIL, Outcome.SERVFAIL, True, relayed=True)
#: An upstream that rewrites NXDOMAIN: its made-up addresses, relayed.
_RELAYED_HIJACK = _Forwarded(_wire.RCODE_NOERROR, Outcome.NOERROR, True, relayed=True)
#: The engine's own SERVFAIL (24+) when no upstream answered: at once when
#: none can be reached, after its timeout when they stay silent.
_OWN_SERVFAIL = _Forwarded(_wire.RCODE_SERVFAIL, Outcome.SERVFAIL, recursion=False)
_OWN_SERVFAIL_LATE = _OWN_SERVFAIL._replace(delay=UPSTREAM_TIMEOUT)
#: The engine's own REFUSED (24+): no forwarding slot came free in time.
_OWN_REFUSED = _Forwarded(_wire.RCODE_REFUSED, Outcome.REFUSED, False, UPSTREAM_TIMEOUT)


@frozen(kw_only=True)
class Reply:
    """What to send back, and when.

    Attributes:
        data: The bytes to send, or None to send nothing.
        delay: Seconds to wait before sending.
    """

    data: bytes | None
    delay: float = 0.0


#: The OPT record of an upstream's answer to a query with EDNS.
_UPSTREAM_OPT = _wire.opt_record(UPSTREAM_EDNS_PAYLOAD)


def _upstream_records(query: _wire.Query) -> list[bytes]:
    """A hijacking upstream's answer records, owners compressed as a resolver writes them."""
    records = [_wire.a_record(query.qname_wire, a.packed, UPSTREAM_TTL) for a in HIJACK_ADDRESSES]
    return _wire.compress_owners(records, query.qname_wire)


@functools.lru_cache(maxsize=256)
def _type_text(qtype: int) -> str:
    """``A``, ``AAAA``, ``TYPE65280``...: a query type as the log shows it."""
    return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(qtype))


def normalize_name(name: str) -> str:
    """The form names are matched in: lower case, no root dot."""
    if not isinstance(name, str) or not name.strip("."):
        raise ValueError(f"a name to inject a fault for must be a non-empty string, not {name!r}")
    return name.rstrip(".").lower()


#: How many names (with or without a type) may have faults at once.
MAX_FAULT_NAMES = 1024
#: How many faults may wait in sequences at once, over every name (2,000
#: injects of 1,000 faults each had held 157 MB; this is about 1 MB).
MAX_QUEUED_FAULTS = 10_000


class FaultTable:
    """Faults injected for a name, a query type, both, or everything; thread-safe.

    A single fault lasts until cleared. A sequence is used up one query at a
    time, after which the name is answered as usual again. The most specific
    entry wins: name and type, then name, then type, then everything. At
    most ``MAX_FAULT_NAMES`` entries and ``MAX_QUEUED_FAULTS`` faults are kept.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[tuple[str | None, str | None], list[Injected] | Injected] = {}
        self._queued = 0  # faults in every sequence

    def inject(
        self,
        outcomes: Injected | Sequence[Injected],
        name: str | None,
        qtype: str | None = None,
    ) -> None:
        """Inject ``outcomes`` for ``name`` and ``qtype`` (None: any)."""
        key = (None if name is None else normalize_name(name), _normalize_type(qtype))
        entry: list[Injected] | Injected
        if isinstance(outcomes, Fault | Delay):
            entry = outcomes
        elif isinstance(outcomes, list | tuple):
            entry = list(outcomes)
        else:
            entry = []
        if not entry or any(not isinstance(o, Fault | Delay) for o in _as_list(entry)):
            raise TypeError(
                "inject() takes a Fault, a Delay, or a non-empty sequence of them;"
                f" got {outcomes!r}"
            )
        with self._lock:
            previous = self._faults.get(key)
            replaced = len(previous) if isinstance(previous, list) else 0
            queued = self._queued - replaced + (len(entry) if isinstance(entry, list) else 0)
            if previous is None and len(self._faults) >= MAX_FAULT_NAMES:
                raise ValueError(
                    f"the fake holds faults for {MAX_FAULT_NAMES} names already, the most it"
                    " keeps: clear_faults() those no longer needed, or inject for every name"
                    " (name=None)"
                )
            if queued > MAX_QUEUED_FAULTS:
                raise ValueError(
                    f"{queued} faults would wait in sequences, more than the fake keeps"
                    f" ({MAX_QUEUED_FAULTS}): inject a shorter sequence, a single fault"
                    " (which lasts until cleared), or clear_faults() first"
                )
            self._faults[key] = entry
            self._queued = queued

    def clear(self, name: str | None = None) -> None:
        """Clear the faults of ``name`` (of any type), or every fault when None."""
        with self._lock:
            if name is None:
                self._faults.clear()
                self._queued = 0
                return
            normalized = normalize_name(name)
            for key in [k for k in self._faults if k[0] == normalized]:
                entry = self._faults.pop(key)
                self._queued -= len(entry) if isinstance(entry, list) else 0

    def take(self, name: str | None, qtype: str | None) -> Injected | None:
        """The fault for the next query about ``name`` of type ``qtype``, if any."""
        if not self._faults:  # the usual case, decided without the lock
            return None
        with self._lock:
            for key in ((name, qtype), (name, None), (None, qtype), (None, None)):
                entry = self._faults.get(key)
                if entry is None:
                    continue
                if not isinstance(entry, list):
                    return entry
                outcome = entry.pop(0)
                self._queued -= 1
                if not entry:
                    del self._faults[key]
                return outcome
        return None


def _normalize_type(qtype: str | None) -> str | None:
    if qtype is None:
        return None
    if not isinstance(qtype, str) or not qtype.strip():
        raise TypeError(f"qtype must be a record type such as 'A', not {qtype!r}")
    try:
        return dns.rdatatype.to_text(dns.rdatatype.from_text(qtype))
    except dns.rdatatype.UnknownRdatatype:
        raise ValueError(f"unknown record type {qtype!r}; use 'A', 'AAAA', 'PTR', ...") from None


def _as_list(entry: list[Injected] | Injected) -> list[Injected]:
    return entry if isinstance(entry, list) else [entry]


#: How many messages the query log keeps by default: about 1.5 MB of records.
DEFAULT_QUERY_LOG = 10_000
#: How many names the log counts past its end (for ``wait(name=...)``).
_COUNTED_NAMES = 4096


class QueryLog:
    """The newest messages the fake received, and how many it received in all.

    A ring of ``size`` records (0: none): older ones fall off, so that a fake
    running for hours keeps the same memory. Counts cover every message,
    those fallen off included. Thread-safe: the server appends while tests
    read and wait.
    """

    def __init__(self, size: int = DEFAULT_QUERY_LOG) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(
                f"query_log is how many queries to keep: a whole number, 0 or more; not {size!r}"
            )
        self.size = size
        self._records: collections.deque[QueryRecord] = collections.deque(maxlen=size)
        self._total = 0
        self._clears = 0  # tells a waiter the log was emptied meanwhile
        # The messages fallen off the ring, by name (at most _COUNTED_NAMES names).
        self._fallen: dict[str, int] = {}
        self._uncounted = False  # a name fell off without being counted
        self._changed = threading.Condition(threading.Lock())

    def append(self, record: QueryRecord) -> None:
        """Record one message and wake up whoever waits for it."""
        with self._changed:
            records = self._records
            if len(records) == self.size:
                self._count_fallen(records[0] if records else record)
            records.append(record)
            self._total += 1
            self._changed.notify_all()

    def _count_fallen(self, record: QueryRecord) -> None:
        if record.name is None:
            return
        key = record.name.lower()
        fallen = self._fallen
        if key in fallen:
            fallen[key] += 1
        elif len(fallen) < _COUNTED_NAMES:
            fallen[key] = 1
        else:
            self._uncounted = True

    def snapshot(self) -> tuple[QueryRecord, ...]:
        """The records kept, oldest first."""
        with self._changed:
            return tuple(self._records)

    def count(self, name: str | None = None) -> int:
        """How many messages (about ``name``, if given) arrived, kept or not."""
        key = None if name is None else normalize_name(name)
        with self._changed:
            return self._count(key)

    def _count(self, key: str | None) -> int:
        if key is None:
            return self._total
        return self._fallen.get(key, 0) + sum(1 for r in self._records if _about(r, key))

    def clear(self) -> None:
        """Forget every record, and every count."""
        with self._changed:
            self._records.clear()
            self._total = 0
            self._clears += 1
            self._fallen.clear()
            self._uncounted = False

    def wait(self, count: int, *, name: str | None, timeout: float) -> tuple[QueryRecord, ...]:
        """Block until ``count`` messages (about ``name``, if given) arrived in all.

        Returns:
            The matching records still kept, oldest first.

        Raises:
            TimeoutError: Fewer arrived within ``timeout`` seconds.
        """
        key = None if name is None else normalize_name(name)
        with self._changed:
            counter = self._counter(key)
            if not self._changed.wait_for(lambda: counter() >= count, timeout):
                raise TimeoutError(self._missing(counter(), count, key, timeout))
            return tuple(r for r in self._records if key is None or _about(r, key))

    def _counter(self, key: str | None) -> Callable[[], int]:
        """What counts the messages about ``key`` as they come, each looked at once."""
        if key is None:
            return lambda: self._total
        state = [self._clears, self._total, self._count(key)]  # as of: clears, total; count

        def count() -> int:
            clears, total, found = state
            new = self._total - total
            if clears != self._clears or new > len(self._records):
                found = self._count(key)  # emptied, or some fell off unseen: count afresh
            elif new:
                recent = itertools.islice(reversed(self._records), new)
                found += sum(1 for r in recent if _about(r, key))
            state[:] = [self._clears, self._total, found]
            return found

        return count

    def _missing(self, found: int, count: int, key: str | None, timeout: float) -> str:
        about = "" if key is None else f" for {key!r}"
        message = (
            f"the fake Swarm DNS received {found} of {count} queries{about} within {timeout} s;"
            " check the code under test talks to SWARMDNS_NAMESERVER"
        )
        if key is not None and self._uncounted and key not in self._fallen:
            message += (
                f" (more than {_COUNTED_NAMES} names fell out of the query log uncounted:"
                " give FakeSwarm a larger query_log)"
            )
        return message


def _about(record: QueryRecord, key: str) -> bool:
    return record.name is not None and record.name.lower() == key


class ForwardSlots:
    """The engine's limit on forwards in flight (24 and newer), decided on arrival.

    The engine holds a semaphore of ``size`` slots in front of its upstreams:
    a forward waits, first come first served, up to ``UPSTREAM_TIMEOUT`` for
    a slot, and is REFUSED when none frees in time. A forward's duration is
    known when it arrives (the fake's upstream answers at once or never), so
    the slot it gets, and when it is answered, are too.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._free_at: list[float] = []  # a heap: when each busy slot frees

    def acquire(self, now: float, duration: float) -> float | None:
        """When a forward arriving at ``now`` is answered, or None if it is refused.

        Args:
            now: When the query arrived.
            duration: How long the forward holds its slot.
        """
        if not duration and len(self._free_at) < self.size:
            return now  # at once, with a slot free: nothing to remember
        with self._lock:
            free_at = self._free_at
            if len(free_at) < self.size:
                if duration > 0:
                    heapq.heappush(free_at, now + duration)
                return now + duration
            start = max(now, free_at[0])
            if start - now >= UPSTREAM_TIMEOUT:
                return None
            heapq.heapreplace(free_at, start + duration)
            return start + duration

    def clear(self) -> None:
        """Forget every forward in flight."""
        with self._lock:
            self._free_at.clear()


class Responder:
    """Decides the reply to each message, as the engine would, plus faults.

    Attributes:
        zone: The names to answer from; replaced whole on every change.
        upstream: How the host's resolvers treat forwarded queries.
        faults: Injected faults.
        log: The newest messages received (``query_log`` of them), and their count.
        forwards: The engine's forwards in flight (engine 24 and newer).
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        engine: EngineVersion = DEFAULT_ENGINE,
        query_log: int = DEFAULT_QUERY_LOG,
    ) -> None:
        self.zone = Zone()
        self.upstream = Upstream.NXDOMAIN
        self.faults = FaultTable()
        self.log = QueryLog(query_log)
        self._engine = engine_profile(engine)
        self.forwards = ForwardSlots(self._engine.forward_limit or 0)
        self._rng = random.Random(seed)
        self._clock = clock
        # Clients ask the same few questions again and again: what a query
        # says (all but its ID) is parsed once, and a name's records are
        # written once per zone.
        self._parsed: dict[bytes, _Parsed] = {}
        self._written: dict[tuple[bytes, int], list[bytes] | _Unanswered] = {}
        self._written_for = self.zone

    @property
    def engine(self) -> EngineProfile:
        """The engine version answered like."""
        return self._engine

    @engine.setter
    def engine(self, profile: EngineProfile) -> None:
        # One assignment, read once per query: a switch takes effect between
        # two queries, never in the middle of one.
        self.forwards = ForwardSlots(profile.forward_limit or 0)
        self._engine = profile

    def seed(self, seed: int | None) -> None:
        """Make the order of answers repeatable (or random again with None)."""
        self._rng.seed(seed)

    def respond(self, data: bytes, transport: Transport, *, waited: float = 0.0) -> Reply:
        """The reply to one message received over ``transport``.

        Args:
            data: The message.
            transport: How it came.
            waited: Seconds since it arrived, unread (a server that fell
                behind): the engine decides on arrival, and the reply's
                ``delay`` counts from then.
        """
        received = self._clock() - waited
        parsed = self._parsed.get(data[2:])
        if parsed is None:
            try:
                parsed = _Parsed.of(_wire.parse_query(data))
            except _wire.QueryFormatError as error:
                return self._reject(error, transport, received)
            if len(data) <= _REMEMBERED_MESSAGE:
                if len(self._parsed) >= _REMEMBERED:
                    self._parsed.clear()
                self._parsed[data[2:]] = parsed
        query, name, qtype = parsed.query, parsed.name, parsed.qtype
        injected = self.faults.take(None if name is None else name.lower(), qtype)
        answer = self._answer(
            query,
            self._written_records(query, name),
            query_id=int.from_bytes(data[:2], "big"),
            fault=injected if isinstance(injected, Fault) else None,
            transport=transport,
            received=received,
        )
        delay = answer.delay
        if isinstance(injected, Delay):
            delay += injected.seconds
        self.log.append(
            QueryRecord(
                name=parsed.logged_name,
                qtype=qtype,
                transport=transport,
                outcome=answer.outcome,
                answers=answer.answers,
                truncated=answer.truncated,
                delay=delay,
                received=received,
            )
        )
        return Reply(data=answer.data, delay=delay)

    def _written_records(self, query: _wire.Query, name: str | None) -> list[bytes] | _Unanswered:
        """The answer records for a query in the current zone, in the zone's order."""
        zone = self.zone  # read once: a test may replace it meanwhile
        if zone is not self._written_for:
            self._written.clear()
            self._written_for = zone
        key = (query.qname_wire, query.qtype)
        records = self._written.get(key)
        if records is None:
            records = self._records(zone, query, name)
            if len(self._written) >= _REMEMBERED:
                self._written.clear()
            self._written[key] = records
        return records

    def _answer(
        self,
        query: _wire.Query,
        records: list[bytes] | _Unanswered,
        *,
        query_id: int,
        fault: Fault | None,
        transport: Transport,
        received: float,
    ) -> _Answer:
        engine = self._engine  # read once: a test may switch engines meanwhile
        if fault is Fault.NO_REPLY:
            return _Answer(None, Outcome.NO_REPLY)
        if fault is Fault.SERVFAIL or fault is Fault.REFUSED:
            rcode = _wire.RCODE_SERVFAIL if fault is Fault.SERVFAIL else _wire.RCODE_REFUSED
            # RA set on every engine: an injected failure is a failure. The
            # engine's own SERVFAIL and REFUSED without RA (24+) say that it
            # forwarded the name, and come from the upstream's settings.
            reply = _wire.build_reply(query, rcode, [], query_id=query_id, recursion=True)[0]
            return _Answer(reply, Outcome(fault.name))
        additional = b""
        if isinstance(records, _Unanswered):
            forwarded = self._forward(records, engine, received, query.qtype)
            if forwarded is None:
                return _Answer(None, Outcome.NO_REPLY)
            rcode, outcome, recursion, delay, relayed = forwarded
            records = _upstream_records(query) if relayed and outcome is Outcome.NOERROR else []
            if relayed and query.udp_payload is not None:
                additional = _UPSTREAM_OPT
        else:
            rcode, outcome, recursion, delay = _wire.RCODE_NOERROR, Outcome.NOERROR, True, 0.0
            if len(records) > 1:
                records = records.copy()
                self._rng.shuffle(records)  # the engine shuffles every answer
        if transport == "udp":
            limit = min(_UDP_LIMIT, max(_wire.CLASSIC_UDP_LIMIT, query.udp_payload or 0))
            flag_truncation = True
        else:
            limit, flag_truncation = engine.tcp_limit, engine.tc_over_tcp
        if fault is Fault.WRONG_ID:
            query_id = (query_id + 1) & 0xFFFF
        reply, kept, truncated = _wire.build_reply(
            query,
            rcode,
            records,
            limit=limit,
            query_id=query_id,
            compress=engine.compresses_to_fit,
            flag_truncation=flag_truncation,
            recursion=recursion,
            additional=additional,
        )
        if fault is Fault.GARBAGE:
            # The header promises records that never come: no client can parse it.
            return _Answer(
                reply[: _wire.HEADER.size] + b"\x3fgarbage", Outcome.GARBAGE, delay=delay
            )
        if fault is Fault.WRONG_ID:
            outcome = Outcome.WRONG_ID
        return _Answer(reply, outcome, kept, truncated, delay)

    def _forward(
        self, why: _Unanswered, engine: EngineProfile, received: float, qtype: int
    ) -> _Forwarded | None:
        """What the client gets for a query the engine has no records for (None: nothing)."""
        if why is _Unanswered.FAIL and not engine.forwards_foreign_ptr:
            return None  # the handler of 20.10 fails; 24+ forward the query instead
        upstream = self.upstream  # read once: a test may change it meanwhile
        if upstream is Upstream.HIJACK and qtype == _wire.TYPE_A:
            answer = _RELAYED_HIJACK
        elif upstream is Upstream.NXDOMAIN or upstream is Upstream.HIJACK:
            answer = _RELAYED_NXDOMAIN
        elif upstream is Upstream.SERVFAIL and engine.relays_upstream_failures:
            answer = _RELAYED_SERVFAIL
        elif not engine.replies_without_upstream:
            return None  # 20.10: no upstream answered, so nothing is sent
        elif upstream is Upstream.NO_REPLY:
            answer = _OWN_SERVFAIL_LATE
        else:
            answer = _OWN_SERVFAIL
        if engine.forward_limit is None:
            return answer
        answered = self.forwards.acquire(received, answer.delay)
        if answered is None:
            return _OWN_REFUSED
        delay = answered - received
        return answer if delay == answer.delay else answer._replace(delay=delay)

    def _records(
        self, zone: Zone, query: _wire.Query, name: str | None
    ) -> list[bytes] | _Unanswered:
        """The answer records for a query, or why the engine has none of its own."""
        if query.qtype == _wire.TYPE_PTR:
            return self._reverse_records(zone, query, name)
        if name is None or query.qtype not in (_wire.TYPE_A, _wire.TYPE_AAAA, _wire.TYPE_MX):
            return _Unanswered.FORWARD  # the engine forwards every other type
        addresses = zone.addresses(name)
        if addresses is None:
            return _Unanswered.FORWARD
        if query.qtype != _wire.TYPE_A:
            return []  # a Swarm name has no IPv6 address and no mail exchanger
        return [_wire.a_record(query.qname_wire, address, TTL) for address in addresses]

    def _reverse_records(
        self, zone: Zone, query: _wire.Query, name: str | None
    ) -> list[bytes] | _Unanswered:
        if name is None or not name.endswith((IPV4_REVERSE_SUFFIX, IPV6_REVERSE_SUFFIX)):
            # The handler of 20.10 fails on a PTR query for any other name (its
            # suffix test is case-sensitive too), logs the error and sends
            # nothing; 24 and newer forward the query instead.
            return _Unanswered.FAIL
        target = zone.ptr_target(name) if name.endswith(IPV4_REVERSE_SUFFIX) else None
        if target is None:
            return _Unanswered.FORWARD
        return [_wire.ptr_record(query.qname_wire, target, TTL)]

    def _reject(
        self, error: _wire.QueryFormatError, transport: Transport, received: float
    ) -> Reply:
        if error.rcode is None or error.header is None:
            self.log.append(
                QueryRecord(
                    name=None,
                    qtype=None,
                    transport=transport,
                    outcome=Outcome.NO_REPLY,
                    received=received,
                )
            )
            return Reply(data=None)
        outcome = Outcome.NOTIMP if error.rcode == _wire.RCODE_NOTIMP else Outcome.FORMERR
        self.log.append(
            QueryRecord(
                name=None,
                qtype=None,
                transport=transport,
                outcome=outcome,
                received=received,
            )
        )
        return Reply(data=_wire.error_reply(*error.header, error.rcode))
