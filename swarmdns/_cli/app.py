"""The ``swarmdns`` command: its parser, made of each command's options, and the dispatch.

Each command is a module of this package (``vip``, ``tasks``, ``watch``,
``identity`` for ``self``, ``serve``, ``control``, ``demo``) with its ``HELP``, ``DESCRIPTION``,
``add_options(parser)`` and ``run(options, out)``; ``run`` reads the parsed
options once, into a value, and returns the exit code. Exit codes
(``EXIT_CODES``, shown by ``--help``): 0 success; 1 not found; 2 usage error;
3 DNS failure or timeout; 4 ``watch --once``'s command failed; 130 ``watch
--once`` interrupted. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn, Protocol, TextIO

from .. import __version__
from .._errors import (
    ConfigurationError,
    InvalidName,
    NoVirtualIP,
    SelfUnknown,
    ServiceNotFound,
    SwarmDNSError,
)
from . import control, demo, identity, serve, tasks, vip, watch
from .common import (
    EXIT_CODES,
    EXIT_DNS_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    CommandExit,
)


class Command(Protocol):
    """What a command's module holds."""

    HELP: str  # its line in ``swarmdns --help``
    DESCRIPTION: str  # the top of its own ``--help``

    def add_options(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, options: argparse.Namespace, out: TextIO) -> int: ...


#: The commands, in the order ``--help`` lists them.
COMMANDS: dict[str, Command] = {
    "vip": vip,
    "tasks": tasks,
    "watch": watch,
    "self": identity,
    "serve": serve,
    "control": control,
    "demo": demo,
}


class _Formatter(argparse.HelpFormatter):
    """Wraps descriptions, but keeps text laid out by hand (the exit codes) as it is."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"swarmdns: {message} (see swarmdns --help)\n")


def parser() -> argparse.ArgumentParser:
    """The parser of every command: each command's module adds its options."""
    main_parser = _Parser(
        prog="swarmdns",
        description="Discover the tasks of a Docker Swarm service through Docker's embedded DNS.",
        epilog=EXIT_CODES,
        formatter_class=_Formatter,
    )
    main_parser.add_argument("--version", action="version", version=f"swarmdns {__version__}")
    commands = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        command = commands.add_parser(
            name,
            help=module.HELP,
            description=module.DESCRIPTION,
            epilog=EXIT_CODES,
            formatter_class=_Formatter,
        )
        module.add_options(command)
    return main_parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the ``swarmdns`` command; return its exit code."""
    options = parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    code = EXIT_OK
    try:
        code = _run(options, stream)
        stream.flush()  # here, where a reader that went away is noticed
    except BrokenPipeError:
        # The reader went away (swarmdns watch | head -1): nothing more to say.
        _discard_output(stream)
    return code


def _run(options: argparse.Namespace, out: TextIO) -> int:
    """Run the command; an error becomes its line on stderr and its exit code."""
    try:
        return COMMANDS[options.command].run(options, out)
    except KeyboardInterrupt:
        return EXIT_OK
    except (CommandExit, SwarmDNSError) as error:
        print(f"swarmdns: {error}", file=sys.stderr)
        return _exit_code(error)


def _exit_code(error: CommandExit | SwarmDNSError) -> int:
    if isinstance(error, CommandExit):
        return error.code
    if isinstance(error, ServiceNotFound | NoVirtualIP | SelfUnknown):
        return EXIT_NOT_FOUND
    if isinstance(error, InvalidName | ConfigurationError):
        return EXIT_USAGE
    return EXIT_DNS_FAILURE


def _discard_output(stream: TextIO) -> None:
    """Send what is left for ``stream`` to /dev/null, so that exiting writes no error about it.

    Python flushes standard output at exit; into a pipe without a reader,
    that fails with a second BrokenPipeError, which it reports on stderr.
    """
    with contextlib.suppress(OSError, ValueError):
        fd = stream.fileno()
        nowhere = os.open(os.devnull, os.O_WRONLY)
        os.dup2(nowhere, fd)
        os.close(nowhere)


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())
