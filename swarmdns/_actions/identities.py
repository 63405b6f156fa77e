"""The last identity each task's address had, so that a failed PTR lookup does not rename a task.

The engine's PTR records (a task's name, slot and ID) are looked up when a
service changes; if those lookups fail then, a template would render the
task by its address until the next change. ``KnownIdentities`` keeps what
the lookups said last for each address a service has now, and gives it back,
marked stale, when they fail. No I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address

from attrs import frozen

from .._model import Task


@frozen(kw_only=True)
class Identities:
    """A service's tasks, one per address, with the identity known for each.

    Attributes:
        tasks: A ``Task`` for each address, in the order of the addresses:
            what the lookup said, else the last identity it said for that
            address, else the address alone.
        stale: The addresses whose identity is the remembered one: their
            lookup failed (or gave a name that is no task's) this time.
    """

    tasks: tuple[Task, ...]
    stale: frozenset[IPv4Address]


class KnownIdentities:
    """The last identity looked up for each address of each service: their one owner.

    One per watch (``Actions`` holds it); ``swarmdns.tasks()`` itself
    remembers nothing. Bounded: a service keeps only the identities of the
    addresses it has now, so an address that leaves is forgotten with it.
    Safe under threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, dict[IPv4Address, Task]] = {}

    def __len__(self) -> int:
        """How many identities are remembered, over every service."""
        with self._lock:
            return sum(len(known) for known in self._known.values())

    def __repr__(self) -> str:
        return f"<KnownIdentities of {len(self)} addresses>"

    def update(
        self, service: str, addresses: Iterable[IPv4Address], found: Sequence[Task]
    ) -> Identities:
        """What is known of ``service``'s ``addresses`` now that a lookup ``found`` these tasks.

        A task the lookup named is remembered; one it left without a name
        (the PTR lookup failed, or gave no task's name), or did not list,
        keeps the identity remembered for its address, marked stale.

        Args:
            service: The service.
            addresses: Its addresses now (the watch's set).
            found: What the lookup of its tasks gave; empty if it failed whole.
        """
        named = {task.ip: task for task in found if task.name is not None}
        tasks: list[Task] = []
        stale: set[IPv4Address] = set()
        with self._lock:
            before = self._known.get(service, {})
            now: dict[IPv4Address, Task] = {}
            for ip in addresses:
                task = named.get(ip)
                if task is None and ip in before:
                    task = before[ip]
                    stale.add(ip)
                if task is None:
                    tasks.append(Task(ip=ip))
                else:
                    now[ip] = task
                    tasks.append(task)
            self._known[service] = now
        return Identities(tasks=tuple(tasks), stale=frozenset(stale))

    def clear(self) -> None:
        """Forget them all."""
        with self._lock:
            self._known.clear()
