"""Acting on changes: ``Actions`` on one batch, ``ActionLoop`` on one batch at a time."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from swarmdns import ConfigurationError, ResolutionTimeout, Task
from swarmdns._actions.child import CommandResult, CommandRunner
from swarmdns._actions.loop import ActionLoop, Actions, Template
from swarmdns._actions.render import Renderer
from swarmdns._actions.report import ActionEvent
from swarmdns._actions.settle import Batch, PendingChanges, SettleWindow

from .helpers import (
    PATIENCE,
    Clock,
    alive,
    batch_of,
    change,
    in_thread,
    ip,
    messages,
    started_pid,
    wait_until,
)

# -- actions -------------------------------------------------------------------------


class Recorder:
    """A stand-in CommandRunner that records its runs."""

    def __init__(self) -> None:
        self.runs: list[tuple[dict[str, object], dict[str, str]]] = []

    def run(self, event_json: str, env: dict[str, str]) -> CommandResult:
        self.runs.append((json.loads(event_json), env))
        return CommandResult(returncode=0)


def test_the_command_runs_only_when_a_rendered_file_changed(
    template: Path, tmp_path: Path
) -> None:
    recorder = Recorder()
    actions = Actions([Renderer(template, tmp_path / "out")], recorder)  # type: ignore[arg-type]
    pending = PendingChanges(["web"])

    pending.add(change("web", 3))
    actions(pending.take())  # type: ignore[arg-type]
    assert [env for _, env in recorder.runs] == [
        {"SWARMDNS_SERVICE": "web", "SWARMDNS_TASKS": "10.0.1.3"}
    ]

    (tmp_path / "out").write_text("server 10.0.1.3:80;\nserver 10.0.1.4:80;\n")
    pending.add(change("web", 3, 4))
    actions(pending.take())  # type: ignore[arg-type]
    assert len(recorder.runs) == 1  # the file already said so


def test_without_templates_the_command_runs_on_every_batch() -> None:
    recorder = Recorder()
    actions = Actions(runner=recorder)  # type: ignore[arg-type]

    actions(batch_of(change("web", 3)))
    actions(batch_of(change("web", 3)))

    assert len(recorder.runs) == 2
    assert recorder.runs[0][0]["services"] == {"web": ["10.0.1.3"]}


def test_a_failing_template_holds_the_command_back_but_not_the_others(
    template: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken.j2"
    broken.write_text("{{ nope }}")
    also_broken = tmp_path / "also.j2"
    also_broken.write_text("{{ nope_either }}")
    recorder = Recorder()
    actions = Actions(
        [
            Renderer(broken, tmp_path / "a"),
            Renderer(template, tmp_path / "b"),
            Renderer(also_broken, tmp_path / "c"),
        ],
        recorder,  # type: ignore[arg-type]
    )

    with pytest.raises(ConfigurationError, match="'nope' is undefined"):
        actions(batch_of(change("web", 3)))

    assert (tmp_path / "b").read_text() == "server 10.0.1.3:80;\n"
    assert recorder.runs == []
    assert "'nope_either' is undefined" in messages(caplog, logging.ERROR)[0]


def test_tasks_are_looked_up_for_the_services_that_changed(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text(
        "{% for name, s in services.items() %}{% for t in s.tasks %}"
        "{{ name }} {{ t.ip }} {{ t.name }}\n{% endfor %}{% endfor %}"
    )
    asked: list[str] = []

    def lookup(service: str) -> tuple[Task, ...]:
        asked.append(service)
        if service == "api":
            raise ResolutionTimeout("no answer", name="tasks.api.")
        return (Task(ip=ip(3), name=f"{service}.1.x"),)

    actions = Actions([Renderer(template, tmp_path / "out")], lookup_tasks=lookup)
    pending = PendingChanges(["web", "api"])
    pending.add(change("web", 3))
    pending.add(change("api", 7))
    actions(pending.take())  # type: ignore[arg-type]

    assert sorted(asked) == ["api", "web"]
    assert (tmp_path / "out").read_text() == "api 10.0.1.7 None\nweb 10.0.1.3 web.1.x\n"

    pending.add(change("api", 7, 8))
    actions(pending.take())  # type: ignore[arg-type]
    assert sorted(asked) == ["api", "api", "web"]  # web's tasks are kept
    assert "web 10.0.1.3 web.1.x" in (tmp_path / "out").read_text()


# -- the loop ---------------------------------------------------------------------


def test_the_loop_acts_once_the_burst_settles_on_its_clock() -> None:
    clock = Clock()
    loop = ActionLoop(print, ["web"], window=SettleWindow(2.0, 10.0), clock=clock)

    loop.submit(change("web", 3))
    assert loop.take_due() is None
    clock.now += 1.0
    loop.submit(change("web", 3, 4))
    clock.now += 1.9
    assert loop.take_due() is None
    clock.now += 0.1

    batch = loop.take_due()
    assert batch is not None
    assert batch.changes[0].current == (ip(3), ip(4))
    assert loop.take_due(clock.now + 100) is None  # nothing more

    clock.now += 100  # long past the first burst's max: the next burst has its own
    loop.submit(change("web", 4))
    assert loop.take_due() is None
    clock.now += 2.0
    assert loop.take_due() is not None


def test_act_now_acts_at_once_on_what_came_and_returns_what_the_action_did() -> None:
    acted: list[Batch] = []

    def act(batch: Batch) -> str:
        acted.append(batch)
        return "done"

    loop = ActionLoop(act, ["web", "api"], window=SettleWindow(60.0))
    loop.submit(change("web", 3))
    too_soon = loop.act_now()  # api's initial set has not come
    loop.submit(change("api", 4))

    assert too_soon is None
    assert loop.act_now() == "done"  # the window's 60 s are not waited for
    assert loop.act_now() is None  # nothing new
    assert [sorted(b.current) for b in acted] == [["api", "web"]]
    assert loop.actions == 1


def test_the_loop_waits_for_every_initial_set() -> None:
    clock = Clock()
    loop = ActionLoop(print, ["web", "api"], clock=clock)
    loop.submit(change("web", 3))

    assert loop.take_due() is None
    assert loop.waiting_for == {"api"}
    loop.submit(change("api"))
    batch = loop.take_due()
    assert batch is not None
    assert batch.services == ("api", "web")


@pytest.fixture
def running() -> Iterator[Callable[[ActionLoop], threading.Thread]]:
    """Runs loops in threads; stops and joins them after the test."""
    started: list[tuple[ActionLoop, threading.Thread]] = []
    errors: list[BaseException] = []

    def start(loop: ActionLoop) -> threading.Thread:
        def run() -> None:
            try:
                loop.run()
            except BaseException as error:  # kept for the test to see
                errors.append(error)

        thread = threading.Thread(target=run, daemon=True)
        thread.errors = errors  # type: ignore[attr-defined]
        thread.start()
        started.append((loop, thread))
        return thread

    yield start
    for loop, thread in started:
        loop.stop()
        thread.join(PATIENCE)
        assert not thread.is_alive()


class Gate:
    """An action that records each batch and holds the first one until released."""

    def __init__(self, fail_on: tuple[int, ...] = ()) -> None:
        self.batches: list[Batch] = []
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.entered.release()
        if len(self.batches) == 1:
            assert self.release.wait(PATIENCE)
        if len(self.batches) in self.fail_on:
            raise ConfigurationError("the template broke", source="t.j2")

    def wait_for_batch(self) -> None:
        assert self.entered.acquire(timeout=PATIENCE), "no action came"


def test_changes_during_an_action_make_exactly_one_more_with_the_latest_state(
    running: Callable[[ActionLoop], threading.Thread],
) -> None:
    gate = Gate()
    loop = ActionLoop(gate, ["web", "api"])
    loop.submit(change("web", 3))
    loop.submit(change("api", 7))
    thread = running(loop)
    gate.wait_for_batch()

    loop.submit(change("web", 3, 4))  # while the first action runs
    loop.submit(change("api", 7, 8))
    loop.submit(change("web", 4, 5))
    gate.release.set()
    gate.wait_for_batch()
    loop.stop()
    thread.join(PATIENCE)

    assert not thread.is_alive()
    assert len(gate.batches) == 2
    second = gate.batches[1]
    assert second.services == ("api", "web")
    assert dict(second.current) == {"api": (ip(7), ip(8)), "web": (ip(4), ip(5))}
    web = second.changes[1]
    assert (web.added, web.removed) == (frozenset({ip(4), ip(5)}), frozenset({ip(3)}))
    assert loop.actions == 2


def test_a_failing_first_action_ends_the_loop(
    running: Callable[[ActionLoop], threading.Thread],
) -> None:
    gate = Gate(fail_on=(1,))
    gate.release.set()
    loop = ActionLoop(gate, ["web"])
    loop.submit(change("web", 3))
    thread = running(loop)

    thread.join(PATIENCE)

    assert not thread.is_alive()
    (error,) = thread.errors  # type: ignore[attr-defined]
    assert isinstance(error, ConfigurationError)


def test_a_later_failing_action_is_logged_and_the_loop_goes_on(
    running: Callable[[ActionLoop], threading.Thread], caplog: pytest.LogCaptureFixture
) -> None:
    gate = Gate(fail_on=(2,))
    gate.release.set()
    loop = ActionLoop(gate, ["web"])
    loop.submit(change("web", 3))
    running(loop)
    gate.wait_for_batch()

    loop.submit(change("web", 4))
    gate.wait_for_batch()
    loop.submit(change("web", 5))
    gate.wait_for_batch()

    assert [b.changes[0].current for b in gate.batches] == [(ip(3),), (ip(4),), (ip(5),)]
    (error,) = messages(caplog, logging.ERROR)
    assert "acting on the change of web failed; the watch goes on" in error
    assert "the template broke" in error


def test_stop_ends_an_idle_loop(running: Callable[[ActionLoop], threading.Thread]) -> None:
    loop = ActionLoop(print, ["web"])
    thread = running(loop)

    loop.stop()
    thread.join(PATIENCE)

    assert not thread.is_alive()


def test_stop_cuts_the_command_under_way_short(
    pid_file: Path, running: Callable[[ActionLoop], threading.Thread]
) -> None:
    runner = CommandRunner(f"echo $$ > {pid_file}; exec sleep 600", timeout=3600)
    actions = Actions(runner=runner)
    loop = ActionLoop(actions, ["web"], cancel=actions.cancel)
    thread = running(loop)
    loop.submit(change("web", 3))
    command = started_pid(pid_file)

    stopping, _ = in_thread(loop.stop)
    stopping.join(PATIENCE)
    thread.join(PATIENCE)

    assert not stopping.is_alive()
    assert not thread.is_alive()
    assert thread.errors == []  # type: ignore[attr-defined]
    assert not alive(command)
    assert loop.actions == 1
    assert runner.closed


def test_stop_cancels_even_when_no_action_runs(
    running: Callable[[ActionLoop], threading.Thread],
) -> None:
    cancels: list[None] = []
    loop = ActionLoop(print, ["web"], cancel=lambda: cancels.append(None))
    thread = running(loop)

    loop.stop()
    thread.join(PATIENCE)

    assert not thread.is_alive()
    assert cancels == [None]  # so that a batch taken just now starts no command


def test_cancelling_actions_without_a_command_does_nothing(template: Path, tmp_path: Path) -> None:
    actions = Actions([Renderer(template, tmp_path / "out")])

    actions.cancel()
    actions(batch_of(change("web", 3)))

    assert (tmp_path / "out").read_text() == "server 10.0.1.3:80;\n"


def test_the_loop_renders_and_runs_the_command_end_to_end(
    template: Path, tmp_path: Path, running: Callable[[ActionLoop], threading.Thread]
) -> None:
    dest = tmp_path / "upstreams.conf"
    log = tmp_path / "log"
    runner = CommandRunner(
        f'echo "$SWARMDNS_SERVICE $SWARMDNS_TASKS $(wc -l < {dest})" >> {log}', timeout=PATIENCE
    )
    loop = ActionLoop(Actions([Renderer(template, dest)], runner), ["web"])
    running(loop)

    loop.submit(change("web", 3))
    wait_until(lambda: log.exists() and log.read_text().count("\n") == 1, "the first run")
    loop.submit(change("web", 3, 4))
    wait_until(lambda: log.read_text().count("\n") == 2, "the second run")

    assert log.read_text().split("\n") == ["web 10.0.1.3 1", "web 10.0.1.3 10.0.1.4 2", ""]
    assert dest.read_text() == "server 10.0.1.3:80;\nserver 10.0.1.4:80;\n"


# -- a template's own check and command ----------------------------------------------


def test_a_template_s_check_and_command_get_its_files(template: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    log = tmp_path / "log"
    check = CommandRunner(
        f'echo "check $SWARMDNS_RENDERED $(cat "$SWARMDNS_STAGED")" >> {log};'
        ' ! grep -q 10.0.1.4 "$SWARMDNS_STAGED"',
        timeout=PATIENCE,
    )
    command = CommandRunner(f'echo "command $SWARMDNS_RENDERED" >> {log}', timeout=PATIENCE)
    actions = Actions([Template(renderer=Renderer(template, dest), check=check, command=command)])

    actions(batch_of(change("web", 3)))
    actions(batch_of(change("web", 3, 4)))  # refused by the check

    assert log.read_text().splitlines() == [
        f"check {dest} server 10.0.1.3:80;",
        f"command {dest}",
        f"check {dest} server 10.0.1.3:80;",
        "server 10.0.1.4:80;",
    ]
    assert dest.read_text() == "server 10.0.1.3:80;\n"
    assert (actions.failed_checks, actions.failed_commands) == (1, 0)


def test_each_render_check_and_command_is_told_as_it_ends(template: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    check = CommandRunner('! grep -q 10.0.1.4 "$SWARMDNS_STAGED"', timeout=PATIENCE)
    command = CommandRunner("exit 4", timeout=PATIENCE)
    runner = CommandRunner("true", timeout=PATIENCE)
    events: list[ActionEvent] = []
    actions = Actions(
        [Template(renderer=Renderer(template, dest), check=check, command=command)],
        runner,
        on_event=events.append,
    )

    actions(batch_of(change("web", 3)))  # rendered, checked, both commands run
    actions(batch_of(change("web", 3)))  # the same file: nothing runs
    actions(batch_of(change("web", 3, 4)))  # refused by the check: nothing runs

    assert [(e.kind, e.outcome, e.file, e.status) for e in events] == [
        ("check", "passed", str(dest), 0),
        ("render", "changed", str(dest), None),
        ("command", "failed", str(dest), 4),
        ("command", "ok", None, 0),
        ("render", "unchanged", str(dest), None),
        ("check", "failed", str(dest), 1),
        ("render", "refused", str(dest), None),
    ]
    assert [e.command for e in events if e.kind != "render"] == [
        check.command, command.command, runner.command, check.command
    ]  # fmt: skip
    assert {e.services for e in events} == {("web",)}
    render = events[1]
    assert render.duration is not None
    assert events[0].duration is not None
    assert render.duration >= events[0].duration  # its check's time is in it


def test_a_render_that_fails_or_is_stopped_is_told(template: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.j2"
    bad.write_text("{{ nope.at_all }}")
    events: list[ActionEvent] = []
    failing = Actions([Renderer(bad, tmp_path / "bad")], on_event=events.append)
    stopped = Actions([Renderer(template, tmp_path / "out")], on_event=events.append)

    with pytest.raises(ConfigurationError):
        failing(batch_of(change("web", 3)))
    stopped.stop()
    stopped(batch_of(change("web", 3)))

    assert [(e.kind, e.outcome) for e in events] == [("render", "failed"), ("render", "stopped")]


def test_a_refused_file_holds_the_command_back(template: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    check = CommandRunner("exit 1", timeout=PATIENCE)
    runner = CommandRunner(f"echo ran >> {log}", timeout=PATIENCE)
    checked = Template(renderer=Renderer(template, tmp_path / "out"), check=check)
    actions = Actions([checked], runner)

    result = actions(batch_of(change("web", 3)))

    assert result is None
    assert not log.exists()
    assert not (tmp_path / "out").exists()


def test_stopped_actions_render_nothing_and_run_nothing(template: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    runner = CommandRunner(f"echo ran >> {log}", timeout=PATIENCE)
    actions = Actions([Renderer(template, tmp_path / "out")], runner)

    actions.stop()
    result = actions(batch_of(change("web", 3)))

    assert result is None
    assert not (tmp_path / "out").exists()
    assert not log.exists()


def test_a_task_keeps_its_last_name_when_its_lookup_fails_and_is_listed_stale(
    tmp_path: Path,
) -> None:
    template = tmp_path / "t.j2"
    template.write_text(
        "{% for t in tasks %}{{ t.name or t.ip }}{% if t.ip|string in stale %} stale{% endif %}\n"
        "{% endfor %}"
    )
    answers: list[tuple[Task, ...] | Exception] = [
        (Task(ip=ip(3), name="web.1.x"),),
        (Task(ip=ip(3)), Task(ip=ip(4))),  # the PTR lookups fail
        ResolutionTimeout("no answer", name="tasks.web."),  # the whole lookup fails
        (Task(ip=ip(3), name="web.1.x"), Task(ip=ip(4), name="web.2.y")),
    ]
    asked: list[str] = []

    def lookup(service: str) -> tuple[Task, ...]:
        asked.append(service)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    out = tmp_path / "out"
    actions = Actions([Renderer(template, out)], lookup_tasks=lookup)
    pending = PendingChanges(["web"])
    seen = []
    for now in [(3,), (3, 4), (3, 4, 5), (3, 4)]:
        pending.add(change("web", *now))
        actions(pending.take())  # type: ignore[arg-type]
        seen.append(out.read_text())

    assert seen == [
        "web.1.x\n",
        "web.1.x stale\n10.0.1.4\n",
        "web.1.x stale\n10.0.1.4\n10.0.1.5\n",
        "web.1.x\nweb.2.y\n",
    ]
    assert asked == ["web"] * 4


def test_a_service_with_stale_names_is_looked_up_again_at_the_next_action(
    tmp_path: Path,
) -> None:
    template = tmp_path / "t.j2"
    template.write_text(
        "{% for name, s in services.items() %}{% for t in s.tasks %}"
        "{{ t.name or t.ip }} {{ s.stale }}\n{% endfor %}{% endfor %}"
    )
    web_answers = [
        (Task(ip=ip(3), name="web.1.x"),),
        (Task(ip=ip(3)), Task(ip=ip(4))),  # the PTR lookups fail
        (Task(ip=ip(3), name="web.1.x"), Task(ip=ip(4), name="web.2.y")),
    ]
    asked: list[str] = []

    def lookup(service: str) -> tuple[Task, ...]:
        asked.append(service)
        if service == "web":
            return web_answers.pop(0)
        return tuple(Task(ip=ip(n), name=f"api.{n}.z") for n in (7, 8))

    out = tmp_path / "out"
    actions = Actions([Renderer(template, out)], lookup_tasks=lookup)
    pending = PendingChanges(["web", "api"])
    pending.add(change("web", 3))
    pending.add(change("api", 7))
    actions(pending.take())  # type: ignore[arg-type]
    pending.add(change("web", 3, 4))
    actions(pending.take())  # type: ignore[arg-type]
    during = out.read_text()
    pending.add(change("api", 7, 8))  # web is as it was, but its names are stale
    actions(pending.take())  # type: ignore[arg-type]

    assert during == "api.7.z []\nweb.1.x ['10.0.1.3']\n10.0.1.4 ['10.0.1.3']\n"
    assert asked == ["api", "web", "web", "api", "web"]
    assert out.read_text() == "api.7.z []\napi.8.z []\nweb.1.x []\nweb.2.y []\n"


def test_actions_ask_to_act_again_while_a_name_is_stale_backing_off(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("{{ tasks | map(attribute='name') | list }} {{ stale }}")
    bare = (Task(ip=ip(3)), Task(ip=ip(4)))
    named = (Task(ip=ip(3), name="web.1.x"), Task(ip=ip(4), name="web.2.y"))
    answers = [named[:1], bare, bare, bare, named]
    actions = Actions(
        [Renderer(template, tmp_path / "out")],
        lookup_tasks=lambda service: answers.pop(0),
        names_again_after=0.5,
    )
    pending = PendingChanges(["web"])
    seen = []
    for now in [(3,), (3, 4), None, None, None]:
        if now is not None:
            pending.add(change("web", *now))
        actions(pending.take() if now is not None else pending.unchanged())  # type: ignore[arg-type]
        seen.append(actions.again())
        if now == (3, 4):
            during = (tmp_path / "out").read_text()

    assert seen == [None, 0.5, 1.0, 2.0, None]
    assert answers == []
    assert during == "['web.1.x', None] ['10.0.1.3']"
    assert (tmp_path / "out").read_text() == "['web.1.x', 'web.2.y'] []"


def test_acting_again_backs_off_to_a_minute_at_most(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("{{ tasks | map(attribute='name') | list }}")
    actions = Actions(
        [Renderer(template, tmp_path / "out")],
        lookup_tasks=lambda service: (Task(ip=ip(3)),),  # never named
        names_again_after=2.0,
    )
    pending = PendingChanges(["web"])
    pending.add(change("web", 3))
    actions(pending.take())  # type: ignore[arg-type]
    delays = []
    for _ in range(8):
        delays.append(actions.again())
        actions(pending.unchanged())  # type: ignore[arg-type]

    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_the_loop_acts_again_on_the_same_sets_when_the_action_asks() -> None:
    acted: list[Batch] = []
    twice = threading.Event()
    delays = [0.0, None]  # again at once after the first action, then not

    def act(batch: Batch) -> None:
        acted.append(batch)
        if len(acted) == 2:
            twice.set()

    loop = ActionLoop(act, ["web"], again=lambda: delays.pop(0))
    loop.submit(change("web", 3))
    thread, _ = in_thread(loop.run)
    try:
        assert twice.wait(PATIENCE), "the loop did not act again"
    finally:
        loop.stop()
        thread.join(PATIENCE)

    assert not thread.is_alive()
    assert [b.changes == () for b in acted] == [False, True]
    assert acted[1].current == acted[0].current
    assert delays == []  # asked after each action, the second said: not again


def test_a_change_comes_before_acting_again_and_decides_anew() -> None:
    clock = Clock()
    loop = ActionLoop(print, ["web"], clock=clock, again=lambda: 5.0)
    loop.submit(change("web", 3))
    assert loop.take_due() is not None
    loop._schedule_again()  # as run() does after each action
    clock.now += 1.0
    loop.submit(change("web", 3, 4))

    batch = loop.take_due()  # the change, at once

    assert batch is not None
    assert batch.changes != ()
    clock.now += 10.0
    assert loop.take_due() is None  # acting again was for before the change
