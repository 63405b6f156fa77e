"""``_fleet.Turns``: one thread runs a fleet's lookups, the others wait on its steps.

Each test knows that a thread waits in ``take()`` because ``take()`` calls
its ``until`` under the lock just before it waits, and the running thread's
``stepped()``, ``give_back()`` and ``close()`` need that lock: what they do
reaches the waiting thread, never a thread still on its way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from swarmdns._deadlines import Deadline
from swarmdns._fleet import FleetCore, Turns
from swarmdns._values import WatchSettings

DEADLINE = 10.0  # a bound for a broken test, not a timing expectation


class Probe:
    """An ``until`` that says when it was first asked, and holds once ``hold`` is set."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.hold = False

    def __call__(self) -> bool:
        self.asked.set()
        return self.hold


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(1, thread_name_prefix="turns-test") as executor:
        yield executor


def waiting(pool: ThreadPoolExecutor, turns: Turns, until: Probe) -> Future[bool]:
    """``turns.take(until)`` in another thread, returned once it waits."""
    taken = pool.submit(turns.take, until, Deadline(DEADLINE))
    assert until.asked.wait(DEADLINE)
    return taken


def test_the_first_takes_the_turn_at_once() -> None:
    turns = Turns()

    assert turns.take(lambda: False, None)


def test_a_second_waits_and_takes_over_when_the_first_gives_back(pool: ThreadPoolExecutor) -> None:
    turns = Turns()
    assert turns.take(lambda: False, None)

    taken = waiting(pool, turns, Probe())
    assert not taken.done()
    assert not turns.give_back(None)  # nothing to release: the watch goes on

    assert taken.result(DEADLINE) is True


def test_a_second_returns_once_what_it_waits_for_holds(pool: ThreadPoolExecutor) -> None:
    turns = Turns()
    assert turns.take(lambda: False, None)
    until = Probe()
    taken = waiting(pool, turns, until)

    until.hold = True
    turns.stepped()

    assert taken.result(DEADLINE) is False  # it does not run: the first still does
    assert turns.take(lambda: False, Deadline(0.05)) is False  # the first's turn, still


def test_a_second_gets_the_error_that_ended_the_watch(pool: ThreadPoolExecutor) -> None:
    turns = Turns()
    assert turns.take(lambda: False, None)
    taken = waiting(pool, turns, Probe())
    failure = RuntimeError("the watch failed")

    assert turns.give_back(failure)  # the last out releases

    with pytest.raises(RuntimeError, match="the watch failed"):
        taken.result(DEADLINE)
    assert turns.closing
    assert turns.take(lambda: False, None) is False  # later callers find it closed


def test_close_ends_a_wait_and_the_runner_releases_once(pool: ThreadPoolExecutor) -> None:
    turns = Turns()
    assert turns.take(lambda: False, None)
    taken = waiting(pool, turns, Probe())

    assert not turns.close()  # the runner still holds the watch

    assert taken.result(DEADLINE) is False
    assert turns.give_back(None)  # the runner releases, once
    assert not turns.close()


def test_a_wait_gives_up_at_its_deadline() -> None:
    turns = Turns()
    assert turns.take(lambda: False, None)

    assert turns.take(lambda: False, Deadline(0.05)) is False


def test_one_taker_of_changes_at_a_time() -> None:
    core = FleetCore(["web"], WatchSettings(), excluded=frozenset())

    with (
        core.taking("thread"),
        pytest.raises(RuntimeError, match="already being taken by another thread"),
        core.taking("thread"),
    ):
        pass
    with core.taking("task"):  # free again
        pass
