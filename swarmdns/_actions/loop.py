"""Acting on changes: render every template and run the command, one batch at a time.

``Template`` is a template with its own check and command; ``Actions`` does
all of it for one batch; ``ActionLoop`` takes changes from any
thread (a watcher's ``on_change``), waits for each burst to settle, and acts
on one batch at a time; its ``stop()`` cuts the action under way short
(``Actions.stop()``). ``KnownIdentities`` is the memory of an ``Actions``:
the last identity each task's address had, so that a task whose PTR lookup
fails at a change keeps its name (marked stale) instead of its address.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address
from pathlib import Path
from typing import Literal

from attrs import frozen

from .._errors import SwarmDNSError
from .._model import Task
from .._values import TaskSetChange
from .child import CommandResult, CommandRunner
from .log import _log
from .render import CheckFailed, Renderer, RenderStopped, render_context
from .report import ActionEvent, command_event
from .settle import Batch, PendingChanges, SettleWindow

#: The longest ``Actions.again()`` waits to look up names that are stale or missing.
NAMES_AGAIN_AT_MOST = 60.0


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


@frozen(kw_only=True)
class Template:
    """A template to render, with its file's commands (as confd's ``check_cmd``, ``reload_cmd``).

    Attributes:
        renderer: Renders it.
        check: Run on the staged file before it replaces DEST, its path in
            ``SWARMDNS_STAGED`` (DEST's in ``SWARMDNS_RENDERED``); a failure
            leaves DEST as it was.
        command: Run after the templates were rendered, when this one's DEST
            changed, with ``SWARMDNS_RENDERED`` set to DEST.
    """

    renderer: Renderer
    check: CommandRunner | None = None
    command: CommandRunner | None = None

    def runners(self) -> tuple[CommandRunner, ...]:
        """Its commands."""
        return tuple(runner for runner in (self.check, self.command) if runner is not None)


class Actions:
    """What to do with a batch: render every template, then run the commands.

    As in consul-template, the command runs only when a rendered file
    changed; without templates, on every batch. A template's own command
    runs (before it) only when that template's file changed. A template that
    fails leaves its file as it was and holds the command back; its error is
    raised once every template was tried (the others' are logged). A check
    that fails leaves its file as it was too, and is logged: it is not an
    error, the watch goes on.

    Args:
        renderers: The templates to render, in order (a ``Renderer``, or a
            ``Template`` with its check and command).
        runner: The command to run, if any.
        lookup_tasks: Looks up a service's tasks with their identities (such
            as ``functools.partial(swarmdns.tasks, backend=...)``), for the
            templates' ``tasks``; only for the services that changed (or
            whose names are stale), the others' are kept. A task whose
            lookup fails keeps the last identity known for its address,
            and is listed in the templates' ``stale`` (``KnownIdentities``).
            None leaves ``tasks`` out.
        names_again_after: Seconds after an action that left a task's name
            stale or missing until ``again()`` asks to act again, so that
            the names come back without waiting for a change; doubled at
            each such action in a row, up to ``NAMES_AGAIN_AT_MOST``. None:
            only at the next change.
        after: Called after each batch's templates and commands with whether
            the command was due (a file changed, there is no template, or the
            batch was asked for again): ``Supervisor.acted``.
        on_event: Called with an ``ActionEvent`` for each render (its check's
            time included), check and command, as each ends.
    """

    def __init__(
        self,
        renderers: Sequence[Renderer | Template] = (),
        runner: CommandRunner | None = None,
        *,
        lookup_tasks: Callable[[str], Sequence[Task]] | None = None,
        names_again_after: float | None = None,
        after: Callable[[bool], object] | None = None,
        on_event: Callable[[ActionEvent], object] | None = None,
    ) -> None:
        self.templates = tuple(
            one if isinstance(one, Template) else Template(renderer=one) for one in renderers
        )
        self.renderers = tuple(template.renderer for template in self.templates)
        self.runner = runner
        self._after = after
        self._on_event = on_event
        #: How many checks refused a file, and how many templates' commands failed.
        self.failed_checks = 0
        self.failed_commands = 0
        self._lookup_tasks = lookup_tasks
        self._tasks: dict[str, Sequence[Task]] = {}
        self._stopping = threading.Event()
        self._names_again_after = names_again_after
        self._names_missed = 0  # actions in a row that left a name stale or missing
        self._identities = KnownIdentities()
        self._stale: dict[str, frozenset[IPv4Address]] = {}
        self._incomplete: set[str] = set()  # services with a task named stale, or not at all

    def __repr__(self) -> str:
        return f"<Actions {list(self.renderers)!r}, {self.runner!r}>"

    def again(self) -> float | None:
        """Seconds until the loop should act again on the same sets; None: not before a change.

        Some once the last action left a task's name stale or missing (its
        PTR lookup failed) and ``names_again_after`` was given.
        """
        if self._names_again_after is None or not self._incomplete:
            return None
        backoff = self._names_again_after * 2.0 ** min(max(self._names_missed - 1, 0), 16)
        return min(backoff, max(NAMES_AGAIN_AT_MOST, self._names_again_after))

    def cancel(self) -> None:
        """Stop the command under way, and run commands no more.

        From any thread; see ``CommandRunner.cancel()``. Templates are still
        rendered: ``stop()`` stops them too.
        """
        for template in self.templates:
            for runner in template.runners():
                runner.cancel()
        if self.runner is not None:
            self.runner.cancel()

    def stop(self) -> None:
        """Stop the render or command under way, and act no more: the watch is stopping.

        From any thread (``ActionLoop``'s ``cancel``). A render stops at the
        template's next piece of output and leaves its file as it was; a
        command is stopped as by ``cancel()``.
        """
        self._stopping.set()
        self.cancel()

    def __call__(self, batch: Batch) -> CommandResult | None:
        """Act on ``batch``; return the command's result, if it ran.

        Raises:
            ConfigurationError: A template failed.
            OSError: A file could not be written.
        """
        due = True  # without templates, on every batch
        if self.templates:
            changed = self._render(batch)
            if self._stopping.is_set():
                return None
            due = bool(changed) or batch.again
            if not due:
                _log().info(
                    "the change of %s leaves every rendered file as it was",
                    ", ".join(batch.services),
                )
            for template in changed:  # a file refused or unchanged: not its command
                if template.command is not None and not self._stopping.is_set():
                    ran = template.command.run(batch.to_json(), self._environment(batch, template))
                    self.failed_commands += not ran.ok
                    self._tell_run(ran, template.command, batch, "command", template)
        result = None
        if due and self.runner is not None:
            result = self.runner.run(batch.to_json(), batch.environment())
            self._tell_run(result, self.runner, batch, "command")
        if self._after is not None:
            self._after(due)
        return result

    def _tell(self, event: ActionEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def _tell_run(
        self,
        result: CommandResult,
        runner: CommandRunner,
        batch: Batch,
        kind: Literal["check", "command"],
        template: Template | None = None,
    ) -> None:
        if self._on_event is None:
            return
        file = None if template is None else str(template.renderer.dest_path)
        self._tell(
            command_event(
                result, kind=kind, command=runner.command, services=batch.services, file=file
            )
        )

    def _tell_render(self, template: Template, batch: Batch, outcome: str, began: float) -> None:
        self._tell(
            ActionEvent(
                kind="render",
                outcome=outcome,
                file=str(template.renderer.dest_path),
                services=batch.services,
                duration=time.monotonic() - began,
            )
        )

    @staticmethod
    def _environment(
        batch: Batch, template: Template, staged: Path | None = None
    ) -> dict[str, str]:
        environment = {
            **batch.environment(),
            "SWARMDNS_RENDERED": str(template.renderer.dest_path),
        }
        if staged is not None:
            environment["SWARMDNS_STAGED"] = str(staged)
        return environment

    def _render(self, batch: Batch) -> list[Template]:
        """Render every template; the ones whose file changed."""
        tasks = None if self._lookup_tasks is None else self._tasks_of(batch)
        context = render_context(batch.current, tasks, self._stale)
        changed: list[Template] = []
        errors: list[SwarmDNSError | OSError] = []
        for template in self.templates:
            renderer = template.renderer
            began = time.monotonic()
            try:
                wrote = renderer.render(
                    context, check=self._check(batch, template), stop=self._stopping
                )
            except (SwarmDNSError, OSError) as error:
                errors.append(error)
                self._tell_render(template, batch, "failed", began)
            except CheckFailed:
                self.failed_checks += 1
                _log().error(
                    "%s was left as it was: the check of its new content failed (above)",
                    renderer.dest_path,
                )
                self._tell_render(template, batch, "refused", began)
            except RenderStopped as stopped:
                _log().warning("%s", stopped)
                self._tell_render(template, batch, "stopped", began)
                return []
            else:
                if wrote:
                    changed.append(template)
                    _log().info("rendered %s from %s", renderer.dest_path, renderer.template_path)
                self._tell_render(template, batch, "changed" if wrote else "unchanged", began)
        for other in errors[1:]:
            _log().error("%s", other)
        if errors:
            raise errors[0]
        return changed

    def _check(self, batch: Batch, template: Template) -> Callable[[Path], bool] | None:
        """What ``Renderer.render()`` calls to check the staged file: ``template``'s check."""
        runner = template.check
        if runner is None:
            return None

        def check(staged: Path) -> bool:
            result = runner.run(batch.to_json(), self._environment(batch, template, staged))
            self._tell_run(result, runner, batch, "check", template)
            if result.cancelled:
                raise RenderStopped(
                    f"the check of {str(template.renderer.dest_path)!r} was stopped: the watch"
                    " is stopping; the file was left as it was"
                )
            return result.ok

        return check

    def _tasks_of(self, batch: Batch) -> dict[str, Sequence[Task]]:
        """Each service's tasks: looked up for those that changed, or whose names are stale."""
        assert self._lookup_tasks is not None  # noqa: S101 - for mypy
        for service in sorted({*batch.services, *self._incomplete} & batch.current.keys()):
            try:
                found = self._lookup_tasks(service)
            except SwarmDNSError as error:
                _log().warning(
                    "looking up the tasks of %s failed; the templates get the names known"
                    " before (as stale), or addresses alone: %s",
                    service,
                    error,
                )
                found = ()
            known = self._identities.update(service, batch.current[service], found)
            self._tasks[service] = known.tasks
            if known.stale and known.stale != self._stale.get(service):
                _log().warning(
                    "no name for %s of %s from the engine this time; the templates keep the"
                    " names known before, and list them in stale",
                    ", ".join(str(ip) for ip in sorted(known.stale)),
                    service,
                )
            self._stale[service] = known.stale
            if known.stale or any(task.name is None for task in known.tasks):
                self._incomplete.add(service)  # looked up again at the next action (again())
            else:
                self._incomplete.discard(service)
        self._names_missed = self._names_missed + 1 if self._incomplete else 0
        return {name: self._tasks.get(name, ()) for name in batch.current}


class ActionLoop:
    """Acts on changes one batch at a time, once each burst has settled.

    ``submit()`` takes changes from any thread (a watcher's ``on_change``)
    and returns at once; ``run()`` acts on them, in the thread that calls it,
    never on two batches at once: changes that come while an action runs make
    exactly one more action after it, with the state then.

    An action's error (``SwarmDNSError``, ``OSError``) on the first batch ends
    ``run()``: a template that fails at start is a mistake to fix. After
    that, it is logged and the loop goes on; the next change tries again.

    ``stop()`` calls ``cancel``, which cuts the action under way short, so
    that a watch that stops does not wait for its command (up to its
    timeout), nor leave it running::

        actions = Actions(renderers, runner)
        loop = ActionLoop(actions, services, cancel=actions.stop)

    Args:
        act: What to do with each batch (an ``Actions``).
        services: The services watched: the first action waits for all their
            initial sets.
        window: When a burst has settled; by default, at once.
        clock: Monotonic seconds, given to ``window`` as ``now``.
        cancel: Called (from the thread of ``stop()``) to end the action
            under way at once and to keep later ones from doing anything,
            such as ``Actions.stop``; it may block until the action's
            command has ended. None: ``stop()`` waits for the action.
        again: Called after each action of ``run()``: the seconds until it
            acts again on the same sets (a ``Batch`` of no change) unless a
            change comes first, such as ``Actions.again`` while a task's
            name is stale; None: not again.
    """

    def __init__(
        self,
        act: Callable[[Batch], object],
        services: Iterable[str] = (),
        *,
        window: SettleWindow | None = None,
        clock: Callable[[], float] = time.monotonic,
        cancel: Callable[[], object] | None = None,
        again: Callable[[], float | None] | None = None,
    ) -> None:
        self._act = act
        self._cancel = cancel
        self._again = again
        self._again_at: float | None = None  # when to act again on the same sets
        self._pending = PendingChanges(services)
        self._window = window if window is not None else SettleWindow()
        self._clock = clock
        self._condition = threading.Condition()
        self._stopped = False
        self._now = False  # act_again(): the next batch is due at once
        self._done = 0

    def __repr__(self) -> str:
        return f"<ActionLoop {self._act!r}, {self._window!r}, {self._done} actions>"

    @property
    def act(self) -> Callable[[Batch], object]:
        """What it does with each batch (an ``Actions``)."""
        return self._act

    @property
    def actions(self) -> int:
        """How many batches were acted on (including those that failed after the first)."""
        return self._done

    @property
    def waiting_for(self) -> frozenset[str]:
        """The services whose initial set the first action still waits for."""
        with self._condition:
            return self._pending.waiting_for

    def submit(self, change: TaskSetChange) -> None:
        """Take a change, from any thread; returns at once."""
        with self._condition:
            self._pending.add(change)
            self._window.changed(self._clock())
            self._condition.notify_all()

    def act_again(self) -> None:
        """Act on every service's set at once, as if each had changed (``watch`` got SIGHUP).

        From any thread; returns at once. The batch has ``again`` set, so
        ``Actions`` runs the command even if no file changed. Before the
        first action, that one is only made due without waiting for a burst
        to settle.
        """
        with self._condition:
            self._pending.again()
            self._now = True
            self._condition.notify_all()

    def act_now(self) -> object:
        """Act on the changes submitted so far, in this thread, without waiting: ``watch --once``.

        Returns:
            What the action returned (``Actions``: the command's result), or
            None when there was nothing to act on yet.

        Raises:
            Exception: What the action raised.
        """
        with self._condition:
            batch = self._pending.take() if self._pending.ready else None
            if batch is not None:
                self._window.acted()
        if batch is None:
            return None
        result = self._act(batch)
        self._done += 1
        return result

    def take_due(self, now: float | None = None) -> Batch | None:
        """The batch to act on, if one is due at ``now``; then the next burst starts.

        None also when the burst cancelled out. ``run()`` calls it; call it
        yourself to drive the loop on a clock of your own.
        """
        with self._condition:
            return self._take_due(self._clock() if now is None else now)

    def _take_due(self, now: float) -> Batch | None:
        if self._again_at is not None and now >= self._again_at and not self._window.pending:
            self._again_at = None
            return self._pending.unchanged()
        if not (self._pending.ready and (self._now or self._window.due(now))):
            return None
        self._now = False
        self._window.acted()
        self._again_at = None  # this action decides anew
        return self._pending.take()

    def _wait_time(self, now: float) -> float | None:
        deadline = now if self._now else self._window.next_deadline()
        if deadline is None or not self._pending.ready:
            deadline = None if self._window.pending else self._again_at
        if deadline is None:
            return None  # until a change comes
        return max(0.0, deadline - now)

    def _schedule_again(self) -> None:
        delay = None if self._again is None else self._again()
        with self._condition:
            self._again_at = None if delay is None else self._clock() + delay

    def run(self) -> None:
        """Act on each batch once it is due, until ``stop()``.

        Raises:
            SwarmDNSError, OSError: The first action failed.
            Exception: Anything else an action raised (a bug), at any time.
        """
        while True:
            with self._condition:
                while True:
                    if self._stopped:
                        return
                    now = self._clock()
                    batch = self._take_due(now)
                    if batch is not None:
                        break
                    self._condition.wait(self._wait_time(now))
            try:
                self._act(batch)
            except (SwarmDNSError, OSError) as error:
                if not self._done:
                    raise
                _log().error(
                    "acting on the change of %s failed; the watch goes on, and the next change"
                    " tries again: %s",
                    ", ".join(batch.services),
                    error,
                )
            self._done += 1
            self._schedule_again()

    def stop(self) -> None:
        """End ``run()``, from any thread; the action under way is cut short.

        ``run()`` takes no batch after this. An action under way is
        cancelled (``cancel``: its command is stopped, with its process
        group), and ``run()`` returns once it has returned; this returns once
        ``cancel`` has. Without ``cancel``, ``run()`` returns when the action
        ends. Calling it again does no harm.
        """
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
        if self._cancel is not None:
            self._cancel()
