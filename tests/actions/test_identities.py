"""``KnownIdentities``: a task keeps the last identity known for its address if a lookup fails."""

from __future__ import annotations

import threading

from swarmdns import Task
from swarmdns._actions.loop import KnownIdentities

from .helpers import ip


def named(n: int, slot: int | None = None) -> Task:
    return Task(ip=ip(n), name=f"web.{slot or n}.x", service="web", slot=slot or n)


def test_a_lookup_that_names_every_task_gives_them_and_nothing_stale() -> None:
    known = KnownIdentities()

    found = known.update("web", [ip(3), ip(4)], [named(4), named(3)])

    assert found.tasks == (named(3), named(4))  # in the order of the addresses
    assert found.stale == frozenset()
    assert len(known) == 2


def test_a_failed_ptr_lookup_keeps_the_last_identity_marked_stale() -> None:
    known = KnownIdentities()
    known.update("web", [ip(3), ip(4)], [named(3), named(4)])

    found = known.update("web", [ip(3), ip(4), ip(5)], [Task(ip=ip(3)), named(4), Task(ip=ip(5))])

    assert found.tasks == (named(3), named(4), Task(ip=ip(5)))  # 5 was never named
    assert found.stale == {ip(3)}


def test_a_lookup_that_failed_whole_keeps_every_known_identity() -> None:
    known = KnownIdentities()
    known.update("web", [ip(3), ip(4)], [named(3), named(4)])

    found = known.update("web", [ip(3), ip(4)], [])

    assert found.tasks == (named(3), named(4))
    assert found.stale == {ip(3), ip(4)}


def test_a_fresh_name_replaces_the_stale_one() -> None:
    known = KnownIdentities()
    known.update("web", [ip(3)], [named(3)])
    known.update("web", [ip(3)], [])

    found = known.update("web", [ip(3)], [named(3, slot=7)])

    assert found.tasks == (named(3, slot=7),)
    assert found.stale == frozenset()


def test_an_address_that_leaves_is_forgotten_so_the_memory_stays_bounded() -> None:
    known = KnownIdentities()
    known.update("web", [ip(3), ip(4)], [named(3), named(4)])
    known.update("web", [ip(4)], [named(4)])

    found = known.update("web", [ip(3), ip(4)], [])  # 3 is back, but its old name is gone

    assert found.tasks == (Task(ip=ip(3)), named(4))
    assert found.stale == {ip(4)}
    assert len(known) == 1


def test_each_service_has_its_own_identities() -> None:
    known = KnownIdentities()
    known.update("web", [ip(3)], [named(3)])

    found = known.update("api", [ip(3)], [])

    assert found.tasks == (Task(ip=ip(3)),)
    assert found.stale == frozenset()
    known.clear()
    assert len(known) == 0


def test_updates_from_many_threads_keep_one_whole_answer_per_service() -> None:
    known = KnownIdentities()
    barrier = threading.Barrier(8)

    def update(n: int) -> None:
        barrier.wait()
        for _ in range(200):
            known.update(f"s{n % 2}", [ip(n)], [named(n)])

    threads = [threading.Thread(target=update, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(known) == 2  # the last update of each service won, whole
