"""``watch --supervise`` on the command line: its options, and the program's part in a watch.

The decisions and the process are ``_actions.supervise``'s; this module reads
the options, makes the ``Supervisor`` for a watch, and ends the watch with
the program's status.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from signal import SIGTERM, Signals
from typing import Any, NoReturn, Protocol

from .._actions.report import ActionEvent
from .._actions.supervise import Supervisor, parse_signal
from .common import EXIT_USAGE, CommandExit
from .options import add_duration_option, parse_command, parse_duration


class _Request(Protocol):
    """What of ``WatchRequest`` a supervisor is made from."""

    @property
    def supervise(self) -> str | None: ...
    @property
    def reload_signal(self) -> Signals: ...
    @property
    def splay(self) -> float: ...


class _Interrupts(Protocol):
    @property
    def signum(self) -> int | None: ...


def add_supervise_options(parser: argparse.ArgumentParser) -> None:
    """Entrypoint mode: ``--supervise`` and how it tells its program of a change."""
    add = parser.add_argument
    add(
        "--supervise",
        metavar="CMD",
        help="once every template is rendered, start CMD through the shell and send it"
        " --reload-signal after each change that changed a file; forward SIGTERM and SIGINT"
        " to it, and exit with its status when it exits (a container's entrypoint)",
    )
    add(
        "--reload-signal",
        metavar="SIGNAL",
        help="the signal --supervise's CMD gets on a change, by name or number (default: HUP)",
    )
    add_duration_option(
        parser,
        "--splay",
        help="wait a random time up to this before sending --reload-signal, so that"
        " replicas do not all reload at once",
        default=None,
        shown="none, at once",
    )


def supervise_options(options: argparse.Namespace) -> dict[str, Any]:
    """``--supervise``, ``--reload-signal`` and ``--splay``, checked, as ``WatchRequest``'s fields.

    Raises:
        ConfigurationError, CommandExit: A bad option (exit 2).
    """
    if options.supervise is None:
        for flag, value in (
            ("--reload-signal", options.reload_signal),
            ("--splay", options.splay),
        ):
            if value is not None:
                raise CommandExit(
                    EXIT_USAGE, f"{flag} needs --supervise: there is no program to signal"
                )
        return {}
    if options.once:
        raise CommandExit(
            EXIT_USAGE,
            "--supervise needs a watch: --once renders and exits, with no program to run;"
            " leave out --once",
        )
    fields: dict[str, Any] = {"supervise": parse_command(options.supervise, source="--supervise")}
    if options.reload_signal is not None:
        fields["reload_signal"] = parse_signal(options.reload_signal, source="--reload-signal")
    if options.splay is not None:
        fields["splay"] = parse_duration(options.splay, source="--splay", positive=True)
    return fields


def supervisor_of(
    request: _Request,
    tell: Callable[[BaseException], object],
    on_event: Callable[[ActionEvent], object],
) -> Supervisor | None:
    """The supervisor ``--supervise`` asks for; ``tell`` gets ``ProgramExited`` when it exits."""
    if request.supervise is None:
        return None
    return Supervisor(
        request.supervise,
        reload_signal=request.reload_signal,
        splay=request.splay,
        on_exit=lambda status: tell(ProgramExited(status)),
        stdout=sys.stderr,  # as --exec's: stdout is the watch's lines
        on_event=on_event,
    )


def followed(
    follow: Callable[[], NoReturn], supervisor: Supervisor | None, interrupts: _Interrupts
) -> int:
    """Run the watch (``follow``) until it ends; with a program, end with the program's status.

    An interrupt is forwarded to the program, and the watch waits for it to
    exit; without a program (or before it started), the interrupt goes on.
    """
    try:
        follow()
    except KeyboardInterrupt:
        status = None if supervisor is None else supervisor.stop(interrupts.signum or SIGTERM)
        if status is None:  # no program (yet): as any watch
            raise
        return status
    except ProgramExited as exited:
        return exited.status


class ProgramExited(Exception):
    """Put in the queue when the ``--supervise`` program exits: the watch ends with its status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the supervised program exited with status {status}")
        self.status = status


#: Seconds a program still running when the watch ends for another reason
#: (its output's reader left, --fail-after, an error) has after SIGTERM.
_STOP_GRACE = 10.0


@contextlib.contextmanager
def supervised(supervisor: Supervisor | None) -> Iterator[None]:
    """Leave no program running when the watch ends, whatever ends it."""
    try:
        yield
    finally:
        if supervisor is not None:
            supervisor.stop(SIGTERM, grace=_STOP_GRACE)
