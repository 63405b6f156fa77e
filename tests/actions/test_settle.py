"""When to act, and on what: the settle window, and the changes merged into batches."""

from __future__ import annotations

import json

import pytest

from swarmdns._actions.settle import PendingChanges, SettleWindow

from .helpers import Clock, batch_of, change, ip

# -- the settle window ------------------------------------------------------------


def test_without_a_wait_a_change_is_due_at_once() -> None:
    window = SettleWindow(clock=Clock())

    assert (window.pending, window.due(), window.next_deadline()) == (False, False, None)
    window.changed(5.0)
    assert window.pending
    assert window.next_deadline() == 5.0
    assert window.due(5.0)


def test_a_burst_is_due_once_quiet_for_min() -> None:
    window = SettleWindow(2.0, 10.0)

    for now in (0.0, 1.0, 2.5):
        window.changed(now)
        assert not window.due(now)

    assert window.next_deadline() == 4.5
    assert not window.due(4.49)
    assert window.due(4.5)


def test_a_burst_that_never_quiets_is_due_max_after_its_first_change() -> None:
    window = SettleWindow(2.0, 5.0)

    now = 0.0
    while now < 5.0:  # a change every second: never 2 s of quiet
        window.changed(now)
        assert not window.due(now)
        now += 1.0
    window.changed(4.9)

    assert window.next_deadline() == 5.0
    assert window.due(5.0)


def test_after_acting_the_next_burst_starts_afresh() -> None:
    window = SettleWindow(2.0, 5.0)
    window.changed(0.0)
    window.acted()

    assert (window.pending, window.next_deadline(), window.due(100.0)) == (False, None, False)
    window.changed(100.0)  # its max runs from here, not from 0
    window.changed(101.0)
    assert window.next_deadline() == 103.0


def test_max_defaults_to_four_times_min() -> None:
    window = SettleWindow(0.5)
    assert window.max_wait == 2.0
    window.changed(0.0)
    for now in (0.4, 0.8, 1.2, 1.6):
        window.changed(now)

    assert window.next_deadline() == 2.0


def test_the_window_reads_its_clock_when_not_given_now() -> None:
    clock = Clock()
    window = SettleWindow(1.0, clock=clock)
    window.changed()
    clock.now += 0.9
    assert not window.due()
    clock.now += 0.1
    assert window.due()


@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        ((-1.0,), ValueError, "min_quiet must be zero or more"),
        ((1.0, -1.0), ValueError, "max_wait must be zero or more"),
        ((float("inf"),), ValueError, "finite"),
        ((2.0, 1.0), ValueError, r"max_wait \(1 s\) must be at least min_quiet \(2 s\)"),
        ((True,), TypeError, "min_quiet must be a number of seconds"),
        (("2",), TypeError, "min_quiet must be a number of seconds"),
    ],
)
def test_bad_windows(arguments: tuple[object, ...], error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        SettleWindow(*arguments)  # type: ignore[arg-type]


# -- batches ---------------------------------------------------------------------


def test_the_first_batch_waits_for_every_initial_set() -> None:
    pending = PendingChanges(["web", "api"])
    pending.add(change("web", 3, 4))

    assert (pending.ready, pending.waiting_for) == (False, frozenset({"api"}))
    pending.add(change("api"))  # an empty initial set counts
    assert pending.ready

    batch = pending.take()
    assert batch is not None
    assert batch.services == ("api", "web")
    assert [(c.added, c.removed) for c in batch.changes] == [
        (frozenset(), frozenset()),
        ({ip(3), ip(4)}, frozenset()),
    ]
    assert dict(batch.current) == {"api": (), "web": (ip(3), ip(4))}
    assert not pending.ready


def test_later_batches_hold_the_net_change_of_the_services_that_changed() -> None:
    pending = PendingChanges(["web", "api"])
    pending.add(change("web", 3, 4))
    pending.add(change("api", 7))
    pending.take()

    pending.add(change("web", 3, 4, 5))
    pending.add(change("web", 4, 5, 6))  # 3 left, 5 and 6 came
    batch = pending.take()

    assert batch is not None
    (web,) = batch.changes
    assert web.service == "web"
    assert web.added == {ip(5), ip(6)}
    assert web.removed == {ip(3)}
    assert web.current == (ip(4), ip(5), ip(6))
    assert dict(batch.current) == {"api": (ip(7),), "web": (ip(4), ip(5), ip(6))}


def test_a_burst_that_cancels_out_makes_no_batch() -> None:
    pending = PendingChanges(["web"])
    pending.add(change("web", 3, 4))
    pending.take()

    pending.add(change("web", 4))
    pending.add(change("web", 3, 4))  # the task came back

    assert pending.ready
    assert pending.take() is None
    assert not pending.ready


def test_a_service_that_came_back_is_left_out_of_a_batch() -> None:
    pending = PendingChanges(["web", "api"])
    pending.add(change("web", 3))
    pending.add(change("api", 7))
    pending.take()

    pending.add(change("web"))
    pending.add(change("web", 3))
    pending.add(change("api", 7, 8))
    batch = pending.take()

    assert batch is not None
    assert batch.services == ("api",)


def test_pending_changes_take_a_list_of_services() -> None:
    with pytest.raises(TypeError, match=r"not one: \['web'\]"):
        PendingChanges("web")


def test_a_batch_as_json() -> None:
    pending = PendingChanges(["web", "api"])
    pending.add(change("web", 3))
    pending.add(change("api", 7))
    pending.take()
    pending.add(change("web", 4, 10))
    batch = pending.take()
    assert batch is not None

    assert json.loads(batch.to_json()) == {
        "changes": [
            {
                "service": "web",
                "added": ["10.0.1.4", "10.0.1.10"],  # sorted as addresses, not text
                "removed": ["10.0.1.3"],
                "current": ["10.0.1.4", "10.0.1.10"],
            }
        ],
        "services": {"api": ["10.0.1.7"], "web": ["10.0.1.4", "10.0.1.10"]},
    }


def test_the_environment_of_one_service() -> None:
    batch = batch_of(change("web", 10, 9))

    assert batch.environment() == {
        "SWARMDNS_SERVICE": "web",
        "SWARMDNS_TASKS": "10.0.1.9 10.0.1.10",
    }


def test_the_environment_of_several_services_has_every_address_once() -> None:
    batch = batch_of(change("web", 3, 10), change("api", 3, 4), change("db"))

    assert batch.environment() == {
        "SWARMDNS_SERVICE": "api,db,web",
        "SWARMDNS_TASKS": "10.0.1.3 10.0.1.4 10.0.1.10",
    }


def test_an_empty_set_has_empty_variables() -> None:
    assert batch_of(change("web")).environment() == {
        "SWARMDNS_SERVICE": "web",
        "SWARMDNS_TASKS": "",
    }


def test_an_unchanged_batch_has_every_set_now_and_no_change() -> None:
    pending = PendingChanges(["web", "api"])
    pending.add(change("web", 3))
    pending.add(change("api", 7))
    assert pending.unchanged() is None  # nothing acted on yet

    assert pending.take() is not None
    pending.add(change("web", 3, 4))
    again = pending.unchanged()

    assert again is not None
    assert again.changes == ()
    assert again.services == ()
    assert dict(again.current) == {"api": (ip(7),), "web": (ip(3), ip(4))}
    assert pending.take() is not None  # the change waits, untaken
