"""TaskWatcher: a watch in a background thread, its callbacks and its life cycle.

Nothing here sleeps: a test changes the Swarm, then waits for the watcher's
next event, or for the fake's log to show the lookups it expects.
"""

from __future__ import annotations

import queue
import threading

import pytest

import swarmdns
import swarmdns.aio
from swarmdns import TaskSetChange, TaskWatcher
from swarmdns.testing import Delay, FakeSwarm, Fault

EVENT_TIMEOUT = 30.0  # a bound for a broken test, not a timing expectation
FAST = {"interval": 0.01, "jitter": 0.0, "timeout": 0.25}


def test_fail_after_ends_a_task_watcher_and_says_why(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web")
    swarm_dns.inject(Fault.SERVFAIL)
    watcher = TaskWatcher("web", fail_after=0.1, **FAST).start()  # type: ignore[arg-type]

    assert not watcher.wait_until_started(EVENT_TIMEOUT)
    watcher.stop()
    assert isinstance(watcher.error, swarmdns.WatchTimeout)
    assert not watcher.running


def test_a_failing_callback_is_logged_and_the_watch_goes_on(
    swarm_dns: FakeSwarm, caplog: pytest.LogCaptureFixture
) -> None:
    swarm_dns.create_service("web")
    seen: queue.Queue[TaskSetChange] = queue.Queue()

    def broken(change: TaskSetChange) -> None:
        raise RuntimeError("bug in the application")

    with TaskWatcher("web", **FAST) as watcher:  # type: ignore[arg-type]
        watcher.add_callback(broken)
        watcher.add_callback(seen.put)
        swarm_dns.scale("web", 2)
        while len(seen.get(timeout=EVENT_TIMEOUT).current) != 2:
            pass

    assert "a TaskWatcher callback failed" in caplog.text
    assert "bug in the application" in caplog.text


def test_stop_abandons_a_lookup_in_flight(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web")
    swarm_dns.inject(Delay(3600))
    watcher = TaskWatcher("web", timeout=3000).start()
    swarm_dns.wait_for_queries(1)

    watcher.stop()  # pytest-timeout fails this test if stop waits for the lookup

    assert not watcher.running


def test_on_change_sees_the_initial_set(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    seen: queue.Queue[TaskSetChange] = queue.Queue()

    with TaskWatcher("web", on_change=seen.put, **FAST):  # type: ignore[arg-type]
        first = seen.get(timeout=EVENT_TIMEOUT)

    assert first.added == set(web.task_ips)


def test_waiting_on_a_watcher_that_never_started_ends_when_it_stops(swarm_dns: FakeSwarm) -> None:
    swarm_dns.inject(Fault.SERVFAIL)
    watcher = TaskWatcher("web", **FAST).start()  # type: ignore[arg-type]

    def stop_after_two_failures() -> None:
        swarm_dns.wait_for_queries(2)
        watcher.stop()

    stopper = threading.Thread(target=stop_after_two_failures)
    stopper.start()

    assert not watcher.wait_until_started()  # no timeout: returns because the watch ended
    assert not watcher.wait_for_change()
    stopper.join()
    assert watcher.error is None


def test_stop_before_start_and_start_after_stop(swarm_dns: FakeSwarm) -> None:
    watcher = TaskWatcher("web", **FAST)  # type: ignore[arg-type]
    watcher.stop()

    with pytest.raises(RuntimeError, match="started once"):
        watcher.start()
    assert not watcher.running


def test_stop_from_inside_a_callback(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web")
    stopped = threading.Event()

    def stop_now(change: TaskSetChange) -> None:
        watcher.stop()
        stopped.set()

    watcher = TaskWatcher("web", on_change=stop_now, **FAST).start()  # type: ignore[arg-type]
    assert stopped.wait(EVENT_TIMEOUT)
    watcher.stop()  # joins the thread, which ended by itself

    assert not watcher.running


def test_callbacks_can_be_added_and_removed_while_changes_arrive(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web")
    later: queue.Queue[TaskSetChange] = queue.Queue()

    def add_another(change: TaskSetChange) -> None:
        watcher.add_callback(later.put)
        watcher.remove_callback(add_another)

    with TaskWatcher("web", on_change=add_another, **FAST) as watcher:  # type: ignore[arg-type]
        assert watcher.wait_until_started(EVENT_TIMEOUT)
        swarm_dns.scale("web", 2)
        change = later.get(timeout=EVENT_TIMEOUT)

    assert len(change.current) == 2


class SyncOnlyBackend:
    def __init__(self, inner: swarmdns.DirectBackend) -> None:
        self.inner = inner

    def resolve(self, question: swarmdns.Question, timeout: float) -> swarmdns.Answer:
        return self.inner.resolve(question, timeout)


def test_a_task_watcher_runs_a_sync_only_backend_in_a_thread(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    backend = SyncOnlyBackend(swarmdns.DirectBackend([swarm_dns.nameserver]))

    with TaskWatcher("web", backend=backend, **FAST) as watcher:  # type: ignore[arg-type]
        assert watcher.wait_until_started(EVENT_TIMEOUT)
        assert watcher.current == web.task_ips


def test_a_configuration_error_ends_the_watcher_and_says_why(
    swarm_dns: FakeSwarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWARMDNS_NAMESERVER", "not an address")
    watcher = TaskWatcher("web", **FAST).start()  # type: ignore[arg-type]

    assert not watcher.wait_until_started()
    watcher.stop()
    assert isinstance(watcher.error, swarmdns.ConfigurationError)


# -- waiting on a watcher ----------------------------------------------------------------


def test_waiting_for_tasks_on_a_watcher_uses_its_own_lookups(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=2)
    with TaskWatcher("web", **FAST) as watcher:  # type: ignore[arg-type]
        assert watcher.wait_until_started(EVENT_TIMEOUT)
        assert len(watcher.wait_for_tasks(2, timeout=EVENT_TIMEOUT)) == 2  # already there
        web = swarm_dns.scale("web", 4)  # after the watcher saw 2: it must look again

        found = watcher.wait_for_tasks(4, timeout=EVENT_TIMEOUT)

    assert found == web.task_ips
    # Nothing but the watcher's own A lookups reached the nameserver.
    assert {(q.name, q.qtype) for q in swarm_dns.queries} == {("tasks.web", "A")}


def test_waiting_for_more_tasks_than_come_ends_at_the_timeout(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    with (
        TaskWatcher("web", **FAST) as watcher,  # type: ignore[arg-type]
        pytest.raises(swarmdns.NotEnoughTasks, match="for 3 tasks of 'web'") as caught,
    ):
        watcher.wait_for_tasks(3, timeout=0.2)

    assert caught.value.current == web.task_ips
    assert caught.value.wanted == 3


def test_waiting_on_a_watcher_that_is_not_running_says_so(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=1)
    watcher = TaskWatcher("web", **FAST)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="never started"):
        watcher.wait_for_tasks(1, timeout=1.0)
    watcher.start()
    watcher.stop()

    with pytest.raises(RuntimeError, match="stopped before it showed 5 tasks"):
        watcher.wait_for_tasks(5, timeout=EVENT_TIMEOUT)  # at once: it cannot come any more


@pytest.mark.parametrize("count", [-1, 1.5, True])
def test_waiting_for_a_count_that_is_not_a_whole_number_fails_at_once(
    swarm_dns: FakeSwarm, count: object
) -> None:
    with (
        TaskWatcher("web", **FAST) as watcher,  # type: ignore[arg-type]
        pytest.raises((TypeError, ValueError), match="count must be"),
    ):
        watcher.wait_for_tasks(count, timeout=1.0)  # type: ignore[arg-type]
