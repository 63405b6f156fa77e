"""StaticBackend: names and addresses held in memory, for tests without sockets."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address
from typing import Any

from .._model import Answer, Question, ipv4_address, listed
from .._names import reverse_name


def _key(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"a name must be a string, not {name!r}")
    if not name.strip("."):
        raise ValueError(f"a name must be a non-empty string, not {name!r}")
    return name.rstrip(".").lower()


def _addresses(values: Iterable[str | IPv4Address], name: str) -> tuple[str, ...]:
    if isinstance(values, str | IPv4Address):
        raise TypeError(f"the addresses of {name!r} must be a list, not a single {values!r}")
    if not listed(values):
        raise TypeError(f"the addresses of {name!r} must be a list, not {values!r}")
    try:
        return tuple(str(ipv4_address(value, what=f"an address of {name!r}")) for value in values)
    except ValueError as error:
        raise ValueError(f"an address of {name!r} is not an IPv4 address: {error}") from None


def _mapping(value: object, what: str, example: str) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping such as {example}, not {value!r}")
    return value


class StaticBackend:
    """Answers from a mapping of names to addresses, without any network.

    Names match without regard to case or a trailing dot; a name that is not
    in the mapping does not exist (NXDOMAIN), and an empty list is a name
    without addresses. PTR questions are answered from ``ptr``::

        backend = StaticBackend(
            {"web": ["10.0.1.2"], "tasks.web": ["10.0.1.3", "10.0.1.4"]},
            ptr={"10.0.1.3": "web.1.abc.proxy."},
        )

    ``set()`` and ``remove()`` change the names between calls.

    Args:
        records: Each name's A records.
        ptr: Each address's PTR target.

    Raises:
        TypeError: Not a mapping of names to lists of addresses (their text,
            or ``IPv4Address``), or of addresses to names.
        ValueError: An empty name, or text that is not an IPv4 address.
    """

    nameserver = "static"
    #: Answers come from memory, at once.
    keeps_deadline = True

    def __init__(
        self,
        records: Mapping[str, Iterable[str | IPv4Address]] | None = None,
        *,
        ptr: Mapping[str | IPv4Address, str] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, tuple[str, ...]] = {}
        self._ptr: dict[str, str] = {}
        for name, values in _mapping(records, "records", "{'tasks.web': ['10.0.1.3']}").items():
            self.set(name, values)
        for address, target in _mapping(ptr, "ptr", "{'10.0.1.3': 'web.1.abc.proxy.'}").items():
            if not isinstance(target, str) or not target.strip("."):
                raise TypeError(
                    f"the PTR target of {address} must be a name such as 'web.1.abc.proxy.',"
                    f" not {target!r}"
                )
            checked = ipv4_address(address, what="an address of ptr")
            self._ptr[_key(reverse_name(checked))] = target

    def __repr__(self) -> str:
        with self._lock:
            return f"<StaticBackend: {len(self._records)} names, {len(self._ptr)} PTR>"

    def set(self, name: str, addresses: Iterable[str | IPv4Address]) -> None:
        """Make ``name`` answer with ``addresses`` (an empty list: no records)."""
        records = _addresses(addresses, name)
        with self._lock:
            self._records[_key(name)] = records

    def remove(self, name: str) -> None:
        """Make ``name`` not exist."""
        with self._lock:
            self._records.pop(_key(name), None)

    def resolve(self, question: Question, timeout: float) -> Answer:
        """Answer from memory; ``timeout`` is never needed."""
        table = self._ptr if question.rdtype == "PTR" else None
        with self._lock:
            key = _key(question.name)
            if table is not None:
                found: tuple[str, ...] | None = (table[key],) if key in table else None
            else:
                found = self._records.get(key)
        return Answer(
            question=question,
            records=found or (),
            nxdomain=found is None,
            nameserver=self.nameserver,
        )

    async def resolve_async(self, question: Question, timeout: float) -> Answer:
        """Answer from memory."""
        return self.resolve(question, timeout)
