"""``swarmdns watch``: follow services' tasks; render templates and run a command on changes."""

from __future__ import annotations

import argparse
import contextlib
import functools
import queue
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from ipaddress import IPv4Address
from signal import Signals
from typing import TextIO

import attrs

from .._actions import (
    ActionLoop,
    Actions,
    CommandResult,
    CommandRunner,
    Renderer,
    SettleWindow,
    Template,
)
from .._actions.render import STDOUT
from .._actions.report import ActionEvent, ActionTally
from .._actions.supervise import Supervisor
from .._errors import ConfigurationError, ResolutionError, ResolutionTimeout, SwarmDNSError
from .._lookups import instances_query
from .._own_addresses import excluded_addresses
from .._sync import tasks
from .._values import TaskSetChange
from .._watcher import FleetWatcher
from .common import (
    EXIT_COMMAND_FAILED,
    EXIT_DNS_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CommandExit,
    change_line,
    utc_now,
)
from .follow import Follow, Item, action_line, running
from .metrics_server import MAX_CONNECTIONS, REQUEST_SECONDS
from .options import (
    DURATION_GRAMMAR,
    RenderSpec,
    add_duration_option,
    parse_command,
    parse_count,
    parse_duration,
    parse_fraction,
    parse_render_spec,
    parse_server_address,
    parse_wait,
)
from .process import (
    Interrupts,
    action_failures_shown,
    interrupted_once,
    when_reader_leaves,
)
from .query import Query, add_query_options
from .supervise import (
    add_supervise_options,
    followed,
    supervise_options,
    supervised,
    supervisor_of,
)

HELP = "print a line whenever the tasks change, until interrupted"
DESCRIPTION = (
    "Follow the tasks of each SERVICE: one line for each initial set, then one per change;"
    " a line when a service's lookups start failing, and one when they work again (each"
    " stamped with its lookup). A failed lookup never changes the set. With --min or"
    " --max-drop, an answer that drops more than they allow is held: a line says so, the last"
    " set stays, and nothing is rendered or run from it; a line tells when the hold ends."
    " With several services, each change line names its service; all go through one socket."
    " Ctrl-C or SIGTERM (docker stop) ends it, stopping a command under way with its process"
    " group, and so does the reader of its output going away. With --render, --exec or"
    " --supervise, SIGHUP renders and acts again at once instead."
)


def add_options(parser: argparse.ArgumentParser) -> None:
    add_query_options(parser)
    add = parser.add_argument
    add("services", nargs="+", metavar="SERVICE", help="the services' names (one or more)")
    add_duration_option(parser, "--interval", help="time between lookups", default="2")
    add(
        "--exclude-self",
        action="store_true",
        help="leave out this container's own addresses (a sidecar in a task of the service)",
    )
    add(
        "--once",
        action="store_true",
        help="look each service up once, print its set, render and run once (--render, --exec),"
        " and exit (3 if a lookup failed, 4 if a command or a check failed)",
    )
    add_duration_option(
        parser,
        "--fail-after",
        help="exit 3 once a service's lookups have failed for this long",
        default=None,
        shown="never",
    )
    _add_hold_options(parser)
    _add_action_options(parser)


def _add_hold_options(parser: argparse.ArgumentParser) -> None:
    """When to hold a service's set against an answer not believed: ``--min``, ``--max-drop``."""
    add = parser.add_argument
    add(
        "--min",
        default="0",
        metavar="N",
        help="never report fewer than N tasks of a service: hold its last set against an"
        " answer that would leave fewer (default: 0, no minimum)",
    )
    add(
        "--max-drop",
        metavar="F",
        help="hold a service's last set against an answer that would remove more than the"
        " share F (above 0, at most 1) of its tasks at once (default: any share)",
    )
    add_duration_option(
        parser,
        "--hold-for",
        help="report an answer held anyway once held for this long",
        default=None,
        shown="hold until the answer changes",
    )


def _add_action_options(parser: argparse.ArgumentParser) -> None:
    """What to do on a change (``--render``, ``--exec``...), and ``--metrics``, in help order."""
    add = parser.add_argument
    add(
        "--render",
        action=_RenderStep,
        default=[],
        metavar="TEMPLATE:DEST",
        help="render the Jinja2 TEMPLATE into DEST on each change, atomically and only when"
        " its content changes (repeatable; needs pip install 'swarmdns[render]'); DEST -"
        " prints the render on stdout each time it changes",
    )
    add(
        "--render-check",
        action=_RenderStep,
        metavar="CMD",
        help="check the preceding --render's new content before it replaces DEST: run CMD"
        " through the shell with the staged file's path in SWARMDNS_STAGED (DEST's in"
        " SWARMDNS_RENDERED); if it fails, DEST stays as it was",
    )
    add(
        "--render-exec",
        action=_RenderStep,
        metavar="CMD",
        help="run CMD through the shell when the preceding --render's DEST changed, before"
        " --exec, with DEST in SWARMDNS_RENDERED",
    )
    add(
        "--render-any-dest",
        action="store_true",
        help="let --render replace a DEST that is not a regular file (a symbolic link, a"
        " FIFO, a device...) with one; without it, such a DEST is refused",
    )
    add(
        "--exec",
        metavar="CMD",
        help="run CMD through the shell after each change (after rendering: only when a file"
        " changed), with the change as JSON on stdin and SWARMDNS_SERVICE and SWARMDNS_TASKS"
        " in its environment; its output goes to stderr",
    )
    add_duration_option(
        parser,
        "--exec-timeout",
        help="stop a command (and its process group) running longer than this",
        default="30",
    )
    add(
        "--metrics",
        metavar="[HOST:]PORT",
        help="serve Prometheus metrics of the watch on http://HOST:PORT/metrics; HOST is"
        " 127.0.0.1 unless given (0.0.0.0: every interface, to be scraped from other"
        f" containers); at most {MAX_CONNECTIONS} connections at once, each closed after"
        f" {REQUEST_SECONDS:g} s (needs pip install 'swarmdns[metrics]')",
    )
    add(
        "--wait",
        metavar="MIN[:MAX]",
        help="act once the tasks have been quiet for MIN, at the latest MAX after the first"
        " change of a burst, so a rolling update is one reload (MIN and MAX each a"
        f" {DURATION_GRAMMAR}; default MAX: 4 x MIN)",
    )
    add_supervise_options(parser)


class _RenderStep(argparse.Action):
    """Keeps ``--render``, ``--render-check`` and ``--render-exec`` in order, in ``render_steps``.

    A check or a command belongs to the ``--render`` before it, which
    argparse alone cannot tell.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        steps = getattr(namespace, "render_steps", None) or []
        namespace.render_steps = [*steps, (option_string or self.dest, values)]
        if self.dest == "render":
            namespace.render = [*namespace.render, values]
        else:
            setattr(namespace, self.dest, values)


@attrs.frozen(kw_only=True)
class RenderAction:
    """A ``--render``, with the ``--render-check`` and ``--render-exec`` after it."""

    spec: RenderSpec
    check: str | None = None
    command: str | None = None


def _render_specs(steps: Sequence[tuple[str, str]], *, any_dest: bool) -> tuple[RenderAction, ...]:
    """Each ``--render``, with the ``--render-check`` and ``--render-exec`` after it.

    Raises:
        ConfigurationError, CommandExit: A bad option (exit 2).
    """
    specs: list[RenderAction] = []
    for option, text in steps:
        if option == "--render":
            spec = parse_render_spec(text, source="--render", any_dest=any_dest)
            specs.append(RenderAction(spec=spec))
            continue
        if not specs:
            raise CommandExit(
                EXIT_USAGE,
                f"{option} needs a --render before it: it belongs to that template's file",
            )
        field = "check" if option == "--render-check" else "command"
        last = specs[-1]
        template, dest = last.spec
        if getattr(last, field) is not None:
            raise CommandExit(
                EXIT_USAGE, f"{option} was given twice for --render {template}:{dest}; give one"
            )
        if field == "check" and str(dest) == STDOUT:
            raise CommandExit(
                EXIT_USAGE,
                f"--render-check needs a file to check: --render {template}:- prints the"
                " render instead",
            )
        command = parse_command(text, source=option)
        if field == "check":
            specs[-1] = attrs.evolve(last, check=command)
        else:
            specs[-1] = attrs.evolve(last, command=command)
    return tuple(specs)


@attrs.frozen(kw_only=True)
class WatchRequest:
    """What ``watch`` was asked for, checked: the one value its parts are given."""

    services: tuple[str, ...]  # each once, in the order given
    query: Query  # with the one backend every lookup of the watch shares
    interval: float
    fail_after: float | None
    min_tasks: int
    max_drop: float | None
    hold_for: float | None
    once: bool
    exclude: frozenset[IPv4Address]
    render: tuple[RenderAction, ...]
    render_any_dest: bool
    command: str | None
    exec_timeout: float
    wait: tuple[float, float] | None
    metrics: tuple[str, int] | None
    supervise: str | None = None
    reload_signal: Signals = Signals.SIGHUP
    splay: float = 0.0

    @property
    def named(self) -> bool:
        """Whether each change line names its service: with several."""
        return len(self.services) > 1

    @classmethod
    def from_options(cls, options: argparse.Namespace) -> WatchRequest:
        """Read and check every option of ``watch``, and make its backend.

        Raises:
            ConfigurationError, CommandExit: A bad option (exit 2).
        """
        interval = parse_duration(options.interval, source="--interval", positive=True)
        fail_after = None
        if options.fail_after is not None:
            fail_after = parse_duration(options.fail_after, source="--fail-after", positive=True)
        exec_timeout = parse_duration(options.exec_timeout, source="--exec-timeout", positive=True)
        min_tasks = parse_count(options.min, source="--min", of="tasks")
        max_drop = None
        if options.max_drop is not None:
            max_drop = parse_fraction(options.max_drop, source="--max-drop")
        hold_for = None
        if options.hold_for is not None:
            hold_for = parse_duration(options.hold_for, source="--hold-for", positive=True)
        supervise = supervise_options(options)
        acts = options.render or options.exec is not None or options.supervise is not None
        if not acts and options.wait is not None:
            raise CommandExit(
                EXIT_USAGE,
                "--wait needs --render or --exec (or --supervise): there is nothing to do",
            )
        if options.render_any_dest and not options.render:
            raise CommandExit(
                EXIT_USAGE, "--render-any-dest needs --render: there is no DEST to replace"
            )
        render = _render_specs(
            getattr(options, "render_steps", None) or [], any_dest=options.render_any_dest
        )
        holds = min_tasks > 0 or max_drop is not None
        if hold_for is not None and not holds:
            raise CommandExit(
                EXIT_USAGE, "--hold-for needs --min or --max-drop: without them nothing is held"
            )
        if options.once and (holds or hold_for is not None):
            raise CommandExit(
                EXIT_USAGE,
                "--min, --max-drop and --hold-for need a watch: --once looks each service up"
                " once, with no earlier set to hold",
            )
        return cls(
            services=tuple(dict.fromkeys(options.services)),
            query=Query.from_options(options),
            interval=interval,
            fail_after=fail_after,
            min_tasks=min_tasks,
            max_drop=max_drop,
            hold_for=hold_for,
            once=options.once,
            exclude=excluded_addresses((), exclude_self=options.exclude_self),
            render=render,
            render_any_dest=options.render_any_dest,
            command=None if options.exec is None else parse_command(options.exec),
            exec_timeout=exec_timeout,
            wait=None if options.wait is None else parse_wait(options.wait, source="--wait"),
            metrics=_metrics_address(options),
            **supervise,
        )


def _metrics_address(options: argparse.Namespace) -> tuple[str, int] | None:
    """``--metrics``, checked: (host, port), or None.

    Raises:
        ConfigurationError, CommandExit: A bad address, or ``--once`` (exit 2).
    """
    if options.metrics is None:
        return None
    address = parse_server_address(options.metrics, source="--metrics")
    if options.once:
        raise CommandExit(
            EXIT_USAGE,
            "--metrics needs a watch: --once exits before anything could scrape it;"
            " leave out --once, or --metrics",
        )
    return address


def run(options: argparse.Namespace, out: TextIO) -> int:
    request = WatchRequest.from_options(options)
    # docker stop: as Ctrl-C, exit 0
    with interrupted_once() as interrupts, action_failures_shown():
        return _watch_until_interrupted(request, out, interrupts)


def _watch_until_interrupted(request: WatchRequest, out: TextIO, interrupts: Interrupts) -> int:
    items: queue.Queue[Item] = queue.Queue()
    if request.once:
        told = None if not request.query.as_json else functools.partial(_tell_now, out)
        actions = _action_loop(request, emit=functools.partial(_emit, out), on_event=told)
        try:
            return _watch_once(request, out, actions=actions)
        except KeyboardInterrupt:  # not a success: a script must not go on as if it were
            raise CommandExit(
                EXIT_INTERRUPTED,
                "interrupted before the lookups, the templates and the command were done;"
                " run it again",
            ) from None
    tally = ActionTally()  # what --metrics says of the actions

    def on_event(event: ActionEvent) -> None:
        tally.record(event)
        if request.query.as_json:
            items.put(event)  # printed in order with the changes

    supervisor = supervisor_of(request, items.put, on_event)
    # A render for DEST - is printed in order.
    actions = _action_loop(request, emit=items.put, supervisor=supervisor, on_event=on_event)
    query = request.query
    fleet = FleetWatcher(
        request.services,
        network=query.network,
        interval=request.interval,
        backend=query.backend,
        timeout=query.timeout,
        exclude=request.exclude,
        fail_after=request.fail_after,
        min_tasks=request.min_tasks,
        max_drop=request.max_drop,
        hold_for=request.hold_for,
        runtime=query.runtime,
        on_health=items.put,  # into the queue of changes: the lines keep their order
        on_change=items.put if actions is None else _both(items.put, actions.submit),
    )
    follow = Follow(
        fleet, out, fail_after=request.fail_after, as_json=query.as_json, named=request.named
    )
    try:
        with (
            interrupts.waking(
                lambda: items.put(KeyboardInterrupt()),
                hangup=None if actions is None else actions.act_again,
            ),
            # Served before the first action, which starts --supervise's program.
            _metrics_served(
                request.metrics, fleet, None if actions is None else tally, supervisor
            ),
            _acting(actions, items.put),
            running(fleet, items.put),
            when_reader_leaves(out, lambda: items.put(None)),
            supervised(supervisor),
        ):
            return followed(functools.partial(follow.run, items), supervisor, interrupts)
    finally:
        with contextlib.suppress(OSError):  # the output's reader may have gone
            follow.say_actions(items)  # what the stop did: a command stopped, the program's exit


@contextlib.contextmanager
def _metrics_served(
    address: tuple[str, int] | None,
    fleet: FleetWatcher,
    tally: ActionTally | None,
    supervisor: Supervisor | None,
) -> Iterator[None]:
    """Serve ``fleet``'s metrics, and the actions' (``tally``), on ``address`` (host, port)."""
    if address is None:
        yield
        return
    from prometheus_client import CollectorRegistry  # noqa: PLC0415 - the same reason

    from ..metrics import WatchCollector  # noqa: PLC0415 - an optional extra, only when asked
    from .metrics_server import MetricsServer, registry_exposition  # noqa: PLC0415

    registry = CollectorRegistry()
    registry.register(WatchCollector(fleet))
    if tally is not None:
        from .action_metrics import ActionCollector  # noqa: PLC0415 - the same reason

        registry.register(ActionCollector(tally, supervised=supervisor is not None))
    host, port = address
    try:
        server = MetricsServer(address, registry_exposition(registry))
    except (OSError, UnicodeError) as error:  # UnicodeError: a host name IDNA refuses
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        why = getattr(error, "strerror", None) or error
        raise ConfigurationError(
            f"cannot serve metrics on {shown}: {why}; give an address of this machine"
            " and a free port",
            source="--metrics",
        ) from error
    with server:
        yield


def _emit(out: TextIO, text: str) -> None:
    out.write(text)
    out.flush()


def _tell_now(out: TextIO, event: ActionEvent) -> None:
    """``watch --once --json``: an action's line, printed as it ends (in the main thread)."""
    _emit(out, action_line(event) + "\n")


#: How many times ``watch --once`` tries to start a command; a watch tries until it starts.
_ONCE_TRIES = 3


def _action_loop(
    request: WatchRequest,
    *,
    emit: Callable[[str], object],
    supervisor: Supervisor | None = None,
    on_event: Callable[[ActionEvent], object] | None = None,
) -> ActionLoop | None:
    """What ``--render``, ``--exec``, ``--supervise`` and ``--wait`` ask for, made first.

    ``emit`` prints a render whose DEST is ``-``; ``supervisor`` is told after each
    action; ``on_event`` gets what each render, check and command did.
    """
    if not request.render and request.command is None and supervisor is None:
        return None

    def runner(command: str | None, label: str = "the command") -> CommandRunner | None:
        if command is None:
            return None
        return CommandRunner(
            command,
            timeout=request.exec_timeout,
            stdout=sys.stderr,
            watching=not request.once,
            tries=_ONCE_TRIES if request.once else None,
            label=label,
        )

    templates = [
        Template(
            renderer=Renderer(*one.spec, any_file=request.render_any_dest, emit=emit),
            check=runner(one.check, f"the --render-check of {str(one.spec.dest)!r},"),
            command=runner(one.command, f"the --render-exec of {str(one.spec.dest)!r},"),
        )
        for one in request.render
    ]
    query = request.query
    lookup = functools.partial(tasks, **query.lookup_options)
    window = None if request.wait is None else SettleWindow(*request.wait)
    act = Actions(
        templates,
        runner(request.command),
        lookup_tasks=lookup if templates else None,
        names_again_after=request.interval,
        after=None if supervisor is None else supervisor.acted,
        on_event=on_event,
    )

    def cancel() -> None:
        act.stop()
        if supervisor is not None:
            supervisor.cancel()

    return ActionLoop(act, list(request.services), window=window, cancel=cancel, again=act.again)


def _both(
    first: Callable[[TaskSetChange], object], second: Callable[[TaskSetChange], object]
) -> Callable[[TaskSetChange], None]:
    def both(change: TaskSetChange) -> None:
        first(change)
        second(change)

    return both


def _cannot_act(error: OSError) -> ConfigurationError:
    """The first action's failure to write a file, as the setting to fix."""
    failure = ConfigurationError(
        f"cannot act on the first change: {error}; check --render's DEST and --exec",
        source="--render",
    )
    failure.__cause__ = error
    return failure


@contextlib.contextmanager
def _acting(
    actions: ActionLoop | None, report: Callable[[BaseException], object]
) -> Iterator[None]:
    """Run the action loop in a thread while the watch runs; ``report`` its failure."""
    if actions is None:
        yield
        return

    def act() -> None:
        try:
            actions.run()
        except OSError as error:  # a file that cannot be written: a setting to fix
            report(_cannot_act(error))
        except BaseException as error:  # handed to the main thread, which raises it
            report(error)

    thread = threading.Thread(target=act, name="swarmdns-actions", daemon=True)
    thread.start()
    try:
        yield
    finally:
        actions.stop()
        thread.join()


def _watch_once(request: WatchRequest, out: TextIO, *, actions: ActionLoop | None) -> int:
    """Look each service up once, concurrently; print each set as a watch's first line.

    Then, if every lookup worked, render the templates and run the command
    once, as consul-template's ``-once``; after a failed lookup, nothing is
    rendered, so that a file never holds a set the engine did not give.
    """
    import asyncio  # noqa: PLC0415 - only for --once

    from .. import aio  # noqa: PLC0415 - the same reason

    services, query = request.services, request.query
    for service in services:
        instances_query(service, query.network)  # a bad name is a usage error, before any lookup

    async def look_up(service: str) -> TaskSetChange | SwarmDNSError:
        try:
            answer = await aio.task_ips(service, **query.lookup_options)
        except (ResolutionError, ResolutionTimeout) as error:  # not a bad configuration
            return error
        found = tuple(ip for ip in answer if ip not in request.exclude)
        return TaskSetChange(
            service=service,
            added=frozenset(found),
            removed=frozenset(),
            current=found,
            observed_at=utc_now(),
        )

    async def look_up_all() -> list[TaskSetChange | SwarmDNSError]:
        return await asyncio.gather(*(look_up(service) for service in services))

    failed: list[tuple[str, SwarmDNSError]] = []
    for service, result in zip(services, asyncio.run(look_up_all()), strict=True):
        if isinstance(result, SwarmDNSError):
            failed.append((service, result))
        else:
            print(change_line(result, query.as_json, named=request.named), file=out, flush=True)
            if actions is not None:
                actions.submit(result)
    if not failed:
        return EXIT_OK if actions is None else _act_once(actions)
    if len(failed) == 1:
        ((service, error),) = failed
        raise CommandExit(EXIT_DNS_FAILURE, f"looking up {service!r} failed: {error}")
    each = "; ".join(f"{service!r}: {error}" for service, error in failed)
    raise CommandExit(
        EXIT_DNS_FAILURE, f"looking up {len(failed)} of {len(services)} services failed: {each}"
    )


def _act_once(actions: ActionLoop) -> int:
    """Render and run on every service's set, once: the end of ``watch --once``."""
    try:
        result = actions.act_now()
    except OSError as error:
        raise _cannot_act(error) from error
    if isinstance(result, CommandResult) and not result.ok:
        if result.timed_out:
            why = "ran past --exec-timeout (above); raise it if the command needs longer"
        else:
            why = "failed (above); run it by hand to see why, then fix it"
        raise CommandExit(EXIT_COMMAND_FAILED, f"the --exec command {why}")
    act = actions.act
    if isinstance(act, Actions) and (act.failed_checks or act.failed_commands):
        raise CommandExit(
            EXIT_COMMAND_FAILED,
            "a --render-check refused a file, which was left as it was, or a --render-exec"
            " command failed (above); run it by hand to see why, then fix it",
        )
    return EXIT_OK
