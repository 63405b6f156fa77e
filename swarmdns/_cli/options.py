"""Every type of the command line's options, in one place, with one error format.

Each ``parse_*`` function reads the text of one option and raises
``ConfigurationError`` (``source``: the option) with a message of one shape,
``--OPTION 'VALUE' what is wrong; what to do``, which the command prints as
``swarmdns: <message>`` and exits 2. Every time option takes the same grammar,
``DURATION``: a bare number is seconds; ``ms``, ``s``, ``m`` and ``h`` are units;
at most a day (``MAX_SECONDS``), as every duration of the library. Numbers are
ASCII digits only: ``str.isdigit()`` also takes superscripts and other scripts' digits.
"""

from __future__ import annotations

import argparse
import math
import re
import socket
from pathlib import Path
from typing import NamedTuple

from .._actions.render import STDOUT, not_a_regular_file
from .._deadlines import MAX_SECONDS
from .._errors import ConfigurationError

#: What every time option's ``--help`` says it takes.
DURATION_GRAMMAR = "DURATION: 2, 0.5s, 500ms, 1m, 1h"
_EXAMPLES = "such as 2, 0.5s, 500ms, 1m or 1h"
_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|m|h)?\s*")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_WHOLE = re.compile(r"[0-9]{1,18}")  # ASCII digits, few enough for int() and a C long


def bad_value(source: str, text: str, problem: str) -> ConfigurationError:
    """The error for the value ``text`` of the option ``source``: ``--OPTION 'text' problem``."""
    return ConfigurationError(f"{source} {text!r} {problem}", source=source)


def add_duration_option(
    parser: argparse.ArgumentParser, flag: str, *, help: str, default: str | None, shown: str = ""
) -> None:
    """Add a time option: it takes a ``DURATION``, and its ``--help`` shows the grammar.

    Args:
        parser: The command's parser.
        flag: The option (``"--interval"``); its value is text, for ``parse_duration()``.
        help: What it does.
        default: Its default, as text (``"2"``); None: not given.
        shown: How ``--help`` shows the default, if not as ``default`` (``"never"``).
    """
    parser.add_argument(
        flag,
        default=default,
        metavar="DURATION",
        help=f"{help} ({DURATION_GRAMMAR}; default: {shown or default})",
    )


def whole_number(text: str) -> int | None:
    """``text`` as a whole number, 0 or more, in ASCII digits (up to 18); None if it is not one."""
    return int(text) if _WHOLE.fullmatch(text) else None


def parse_duration(text: str, *, source: str, positive: bool = False) -> float:
    """Seconds from ``2``, ``2.5``, ``500ms``, ``10s``, ``1m`` or ``1h``: zero up to a day.

    Args:
        text: The duration.
        source: The option it came from, for the error (``"--exec-timeout"``).
        positive: Refuse zero as well as negative durations.

    Raises:
        ConfigurationError: ``text`` is not such a duration.
    """
    if text.strip().startswith("-"):
        raise bad_value(source, text, f"cannot be negative; give a number of seconds {_EXAMPLES}")
    match = _DURATION.fullmatch(text)
    value = float(match[1]) * _UNITS[match[2]] if match is not None else math.nan
    if not math.isfinite(value):
        raise bad_value(
            source, text, f"is not a duration: it takes a number of seconds {_EXAMPLES}"
        )
    if positive and value <= 0:
        raise bad_value(
            source, text, f"is not a positive number of seconds; give more than 0, {_EXAMPLES}"
        )
    if value > MAX_SECONDS:
        raise bad_value(
            source,
            text,
            f"is longer than a day, the longest duration swarmdns takes; give at most 24h"
            f" ({MAX_SECONDS:.0f} s)",
        )
    return value


def parse_wait(text: str, *, source: str = "--wait") -> tuple[float, float]:
    """``MIN[:MAX]`` as ``(min_quiet, max_wait)`` seconds: ``2``, ``2:10``, ``0.5s:10s``.

    As in consul-template, MAX is 4 times MIN when left out (at most a day).

    Raises:
        ConfigurationError: Not ``MIN[:MAX]``, a negative duration, or MAX below MIN.
    """
    parts = text.split(":")
    if len(parts) > 2:
        raise bad_value(
            source, text, "is not MIN[:MAX]: it takes MIN or MIN:MAX, such as 2 or 500ms:10s"
        )
    min_quiet = parse_duration(parts[0], source=source)
    if len(parts) == 2:
        max_wait = parse_duration(parts[1], source=source)
    else:
        max_wait = min(4 * min_quiet, MAX_SECONDS)
    if max_wait < min_quiet:
        raise bad_value(
            source,
            text,
            f"cannot be used: MAX ({max_wait:g} s) is shorter than MIN ({min_quiet:g} s);"
            " MAX is the longest a burst of changes may hold an action back, so give at least"
            f" MIN, such as {parts[0]}:{4 * min_quiet:g}",
        )
    return min_quiet, max_wait


def parse_port(text: str, *, source: str) -> int:
    """A port number, 0 (any free port) to 65535.

    Raises:
        ConfigurationError: ``text`` is not one.
    """
    port = whole_number(text)
    if port is None or port > 65535:
        raise bad_value(source, text, "is not a port number from 0 to 65535")
    return port


def parse_count(text: str, *, source: str, of: str) -> int:
    """A whole number, 0 or more, of ``of`` (``"tasks"``).

    Raises:
        ConfigurationError: ``text`` is not one.
    """
    count = whole_number(text)
    if count is None:
        raise bad_value(source, text, f"is not a number of {of} (0 or more)")
    return count


#: Where a server listens when given only a port: this machine only.
LOOPBACK = "127.0.0.1"


def parse_server_address(text: str, *, source: str) -> tuple[str, int]:
    """``[HOST:]PORT`` (``[::1]:9109`` too) as ``(host, port)``, the host without brackets.

    A port alone listens on loopback only: serving every interface is asked for.

    Raises:
        ConfigurationError: No port number, or an empty host.
    """
    host, _, port_text = text.rpartition(":")
    port = whole_number(port_text)
    if port is None or port > 65535 or (not host and ":" in text):
        raise bad_value(
            source,
            text,
            "is not [HOST:]PORT with a port from 0 to 65535; give PORT (on 127.0.0.1)"
            " or HOST:PORT, such as 9109 or 127.0.0.1:9109",
        )
    return host.strip("[]") or LOOPBACK, port


def parse_service_spec(text: str, *, source: str = "--service") -> dict[str, object]:
    """``NAME[=REPLICAS]`` as the arguments of ``FakeSwarm.create_service()`` (1 replica).

    Raises:
        ConfigurationError: REPLICAS is not a whole number.
    """
    name, _, replicas_text = text.partition("=")
    replicas = whole_number(replicas_text) if replicas_text else 1
    if replicas is None:
        raise bad_value(source, text, "is not NAME[=REPLICAS]: REPLICAS must be a whole number")
    return {"name": name, "replicas": replicas}


def parse_command(text: str, *, source: str = "--exec") -> str:
    """A shell command: any text but an empty (or blank) one.

    Raises:
        ConfigurationError: ``text`` is blank.
    """
    if not text.strip():
        raise bad_value(source, text, "is empty; give a shell command, such as 'kill -HUP 1'")
    return text


def parse_listen_address(text: str, *, source: str = "--host") -> str:
    """The address a host names (an IPv4 one if it has several): ``localhost`` is 127.0.0.1.

    ``SWARMDNS_NAMESERVER`` and ``dig @`` take an address, so the fake listens
    on one, and its hints print it.

    Raises:
        ConfigurationError: The name has no address.
    """
    try:
        found = socket.getaddrinfo(text, None, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as error:
        why = getattr(error, "strerror", None) or str(error)
        raise bad_value(
            source,
            text,
            f"cannot be used: cannot find its address ({why}); give an address of this"
            " machine, such as 127.0.0.1 (the default)",
        ) from error
    ordered = sorted(found, key=lambda info: info[0] != socket.AF_INET)
    return str(ordered[0][4][0])


class RenderSpec(NamedTuple):
    """A ``TEMPLATE:DEST`` from the command line: ``Renderer(*spec)``."""

    template: Path
    dest: Path  # ``-``: standard output


def parse_render_spec(
    text: str, *, source: str = "--render", any_dest: bool = False
) -> RenderSpec:
    """Read ``TEMPLATE:DEST`` (split at the first colon) and check both paths.

    DEST ``-`` is standard output.

    Raises:
        ConfigurationError: No colon, a template that is not a file, a DEST
            that is a directory or whose directory does not exist, DEST the
            template itself, or DEST that is not a regular file (unless
            ``any_dest``).
    """
    template_text, colon, dest_text = text.partition(":")
    if not colon or not template_text or not dest_text:
        raise bad_value(
            source,
            text,
            "is not TEMPLATE:DEST: it takes TEMPLATE:DEST, such as"
            " haproxy.cfg.j2:/etc/haproxy/haproxy.cfg",
        )
    template = Path(template_text).expanduser()
    dest = Path(dest_text) if dest_text == STDOUT else Path(dest_text).expanduser()
    problem = _render_problem(template, dest, any_dest=any_dest)
    if problem is not None:
        raise bad_value(source, text, f"cannot be used: {problem}")
    return RenderSpec(template, dest)


def _render_problem(template: Path, dest: Path, *, any_dest: bool) -> str | None:
    """What makes ``template`` and ``dest`` unfit to render into, if anything."""
    if not template.exists():
        return (
            f"the template {str(template)!r} does not exist; check the path"
            " (relative paths start from the current directory)"
        )
    if not template.is_file():
        return f"the template {str(template)!r} is not a file"
    if str(dest) == STDOUT:
        return None
    if dest.resolve() == template.resolve():
        return "DEST is the template itself, which rendering would overwrite"
    return _dest_problem(dest, any_dest=any_dest)


def _dest_problem(dest: Path, *, any_dest: bool) -> str | None:
    """What makes ``dest`` unfit to be replaced by a render, if anything."""
    if not dest.parent.is_dir():
        return f"the directory of DEST, {str(dest.parent)!r}, does not exist; create it first"
    if dest.is_dir():
        return f"DEST {str(dest)!r} is a directory; give the file to write"
    kind = not_a_regular_file(dest)
    if kind is not None and not any_dest:
        return (
            f"DEST {str(dest)!r} is {kind}, not a regular file, which rendering would replace"
            " with a regular file; give a file's path, TEMPLATE:- to print the render, or"
            " add --render-any-dest to replace it anyway"
        )
    return None


def parse_fraction(text: str, *, source: str) -> float:
    """A share of a whole, above 0 and at most 1: ``0.5``, ``1``, ``.25``.

    Raises:
        ConfigurationError: ``text`` is not one.
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise bad_value(
            source, text, "is not a fraction above 0 and at most 1; give one such as 0.5 (half)"
        )
    return value
