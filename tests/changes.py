"""What tests of watches share about changes."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address

from swarmdns import TaskSetChange


def replay(changes: Iterable[TaskSetChange]) -> dict[str, frozenset[IPv4Address]]:
    """Each service's set after applying ``changes`` in turn, from nothing, as a user would.

    Checks on the way that each change leads to its own ``current``, that a
    service's first change is its initial set, and that every later one
    changes something.
    """
    sets: dict[str, frozenset[IPv4Address]] = {}
    for each in changes:
        if each.service not in sets:
            assert not each.removed, each
            assert each.added == frozenset(each.current), each
        else:
            assert each.added or each.removed, f"an empty change: {each!r}"
        before = sets.get(each.service, frozenset())
        sets[each.service] = (before - each.removed) | each.added
        assert sets[each.service] == frozenset(each.current), each
    return sets
