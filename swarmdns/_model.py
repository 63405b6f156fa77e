"""The values swarmdns hands to backends and to users."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address
from typing import Literal

from attrs import field, frozen

#: The record types swarmdns asks for.
RecordType = Literal["A", "PTR"]


@frozen(kw_only=True)
class Question:
    """One DNS question a lookup needs answered.

    Attributes:
        name: The absolute name to ask for, such as ``"tasks.web."``.
        rdtype: ``"A"`` for addresses, ``"PTR"`` for a task's identity.
    """

    name: str
    rdtype: RecordType


def listed(value: object) -> bool:
    """Whether ``value`` is a list of values: iterable, but not text or bytes (one value)."""
    return isinstance(value, Iterable) and not isinstance(value, str | bytes | bytearray)


def ipv4_address(value: object, *, what: str) -> IPv4Address:
    """``value``, an ``IPv4Address`` or its text (``"10.0.1.3"``), as an ``IPv4Address``.

    Integers are refused: ``IPv4Address`` reads ``True`` as 0.0.0.1, and bytes
    iterated as addresses would give one a byte.

    Raises:
        TypeError: ``value`` is neither.
        ValueError: The text is not an IPv4 address.
    """
    if isinstance(value, IPv4Address):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{what} must be an IPv4 address such as '10.0.1.3', not {value!r}")
    return IPv4Address(value)  # its AddressValueError quotes the text


class SortedAddresses(tuple[IPv4Address, ...]):
    """A-record values already distinct and in ascending order (the fast path's)."""

    __slots__ = ()


class Disowned(tuple[IPv4Address, ...]):
    """No address: the engine does not own the name, as its forwarding showed.

    What a lookup of a service's instances gives for an answer the engine
    forwarded (``Answer.forwarded``): empty like NXDOMAIN's, with the
    ``reason``, so that a watch can show it in its health.
    """

    reason: str

    def __new__(cls, reason: str) -> Disowned:
        disowned = super().__new__(cls, ())
        disowned.reason = reason
        return disowned


@frozen(kw_only=True)
class Answer:
    """A backend's answer to a ``Question``.

    Attributes:
        question: What was asked.
        records: The answer's values: for A, dotted quads as text or
            ``IPv4Address`` objects; for PTR, names as text. Empty when the name
            exists without such records.
        nxdomain: Whether the name does not exist at all.
        nameserver: Who answered, for messages (``"127.0.0.11:53"``).
        forwarded: Why the answer is not the engine's own, when the engine
            forwarded the name to the host's resolvers and their answer held
            records: those records are dropped, and the answer reads as
            NXDOMAIN (``swarmdns.Provenance``). None otherwise.
    """

    question: Question
    records: tuple[str, ...] | tuple[IPv4Address, ...] = ()
    nxdomain: bool = False
    nameserver: str
    forwarded: str | None = None


@frozen(kw_only=True)
class Task:
    """One task of a service, as DNS describes it.

    The engine's PTR record for a task's address is
    ``<service>.<slot>.<task id>.<network>.`` (a global service's tasks have
    the node ID instead of a slot); under Compose, a container's is
    ``<project>-<service>-<number>.<network>.``, and the number is its slot.
    When that lookup fails, only ``ip`` is known and the other fields are None.

    Not to be confused with ``swarmdns.testing.Task`` (also ``FakeTask``), the
    fake's own record of a task it runs (every network's address, container,
    node, state): ``FakeSwarm.task(this)`` finds that record, and
    ``fake_task.as_dns(network)`` gives this value for it.

    Attributes:
        ip: The task's address on the network that was asked about.
        name: The task's container name, ``web.1.<task id>`` (Compose:
            ``proj-web-1``).
        service: The service's name.
        slot: The replica slot (Compose: the container's number); None for a
            task of a global service.
        node_id: The node of a global service's task; None otherwise.
        task_id: The task's ID; None under Compose.
        network: The network the address belongs to.
        project: The Compose project; None in a Swarm.
    """

    ip: IPv4Address = field(repr=str)
    name: str | None = None
    service: str | None = None
    slot: int | None = None
    node_id: str | None = None
    task_id: str | None = None
    network: str | None = None
    project: str | None = None
