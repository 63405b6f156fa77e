"""Acting on changes: render every template and run the command, one batch at a time.

``Actions`` does both for one batch; ``ActionLoop`` takes changes from any
thread (a watcher's ``on_change``), waits for each burst to settle, and acts
on one batch at a time; its ``stop()`` cuts the action under way short
(``Actions.cancel()``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence

from .._errors import SwarmDNSError
from .._model import Task
from .._values import TaskSetChange
from .child import CommandResult, CommandRunner
from .log import _log
from .render import Renderer, render_context
from .settle import Batch, PendingChanges, SettleWindow


class Actions:
    """What to do with a batch: render every template, then run the command.

    As in consul-template, the command runs only when a rendered file
    changed; without templates, on every batch. A template that fails leaves
    its file as it was and holds the command back; its error is raised once
    every template was tried (the others' are logged).

    Args:
        renderers: The templates to render, in order.
        runner: The command to run, if any.
        lookup_tasks: Looks up a service's tasks with their identities (such
            as ``functools.partial(swarmdns.tasks, backend=...)``), for the
            templates' ``tasks``; only for the services that changed, the
            others' are kept. None leaves ``tasks`` out.
        after: Called after each batch's templates and command with whether
            the command was due (a file changed, there is no template, or the
            batch was asked for again): ``Supervisor.acted``.
    """

    def __init__(
        self,
        renderers: Sequence[Renderer] = (),
        runner: CommandRunner | None = None,
        *,
        lookup_tasks: Callable[[str], Sequence[Task]] | None = None,
        after: Callable[[bool], object] | None = None,
    ) -> None:
        self.renderers = tuple(renderers)
        self.runner = runner
        self._after = after
        self._lookup_tasks = lookup_tasks
        self._tasks: dict[str, Sequence[Task]] = {}

    def __repr__(self) -> str:
        return f"<Actions {list(self.renderers)!r}, {self.runner!r}>"

    def cancel(self) -> None:
        """Stop the command under way, and run it no more: the watch is stopping.

        From any thread (``ActionLoop``'s ``cancel``); see
        ``CommandRunner.cancel()``. Without a command, nothing to do.
        """
        if self.runner is not None:
            self.runner.cancel()

    def __call__(self, batch: Batch) -> CommandResult | None:
        """Act on ``batch``; return the command's result, if it ran.

        Raises:
            ConfigurationError: A template failed.
            OSError: A file could not be written.
        """
        due = (self._render(batch) if self.renderers else True) or batch.again
        result = None
        if not due:
            _log().info(
                "the change of %s leaves every rendered file as it was", ", ".join(batch.services)
            )
        elif self.runner is not None:
            result = self.runner.run(batch.to_json(), batch.environment())
        if self._after is not None:
            self._after(due)
        return result

    def _render(self, batch: Batch) -> bool:
        tasks = None if self._lookup_tasks is None else self._tasks_of(batch)
        context = render_context(batch.current, tasks)
        changed = False
        errors: list[SwarmDNSError | OSError] = []
        for renderer in self.renderers:
            try:
                if renderer.render(context):
                    changed = True
                    _log().info("rendered %s from %s", renderer.dest_path, renderer.template_path)
            except (SwarmDNSError, OSError) as error:
                errors.append(error)
        for other in errors[1:]:
            _log().error("%s", other)
        if errors:
            raise errors[0]
        return changed

    def _tasks_of(self, batch: Batch) -> dict[str, Sequence[Task]]:
        assert self._lookup_tasks is not None  # noqa: S101 - for mypy
        for service in batch.services:
            try:
                self._tasks[service] = self._lookup_tasks(service)
            except SwarmDNSError as error:
                _log().warning(
                    "looking up the tasks of %s failed; the templates get their addresses"
                    " without names: %s",
                    service,
                    error,
                )
                self._tasks[service] = ()
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
        loop = ActionLoop(actions, services, cancel=actions.cancel)

    Args:
        act: What to do with each batch (an ``Actions``).
        services: The services watched: the first action waits for all their
            initial sets.
        window: When a burst has settled; by default, at once.
        clock: Monotonic seconds, given to ``window`` as ``now``.
        cancel: Called (from the thread of ``stop()``) to end the action
            under way at once and to keep later ones from doing anything,
            such as ``Actions.cancel``; it may block until the action's
            command has ended. None: ``stop()`` waits for the action.
    """

    def __init__(
        self,
        act: Callable[[Batch], object],
        services: Iterable[str] = (),
        *,
        window: SettleWindow | None = None,
        clock: Callable[[], float] = time.monotonic,
        cancel: Callable[[], object] | None = None,
    ) -> None:
        self._act = act
        self._cancel = cancel
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
        if not (self._pending.ready and (self._now or self._window.due(now))):
            return None
        self._now = False
        self._window.acted()
        return self._pending.take()

    def _wait_time(self, now: float) -> float | None:
        deadline = now if self._now else self._window.next_deadline()
        if deadline is None or not self._pending.ready:
            return None  # until a change comes
        return max(0.0, deadline - now)

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
