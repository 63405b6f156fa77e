"""Every type of the command line's options, in one place, with one error format."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import NamedTuple

from .._errors import ConfigurationError

_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|m|h)?\s*")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, *, source: str) -> float:
    """Seconds from ``2``, ``2.5``, ``500ms``, ``10s``, ``1m`` or ``1h``: zero or more.

    Args:
        text: The duration.
        source: The option it came from, for the error (``"--exec-timeout"``).

    Raises:
        ConfigurationError: ``text`` is not such a duration.
    """
    match = _DURATION.fullmatch(text)
    if text.strip().startswith("-"):
        raise ConfigurationError(
            f"{source} cannot be negative, not {text!r}; give a number of seconds such as 2",
            source=source,
        )
    value = float(match[1]) * _UNITS[match[2]] if match is not None else math.nan
    if not math.isfinite(value):
        raise ConfigurationError(
            f"{source} takes a number of seconds such as 2, 0.5s, 500ms or 1m, not {text!r}",
            source=source,
        )
    return value


def parse_wait(text: str, *, source: str = "--wait") -> tuple[float, float]:
    """``MIN[:MAX]`` as ``(min_quiet, max_wait)`` seconds: ``2``, ``2:10``, ``0.5s:10s``.

    As in consul-template, MAX is 4 times MIN when left out.

    Raises:
        ConfigurationError: Not ``MIN[:MAX]``, a negative duration, or MAX below MIN.
    """
    parts = text.split(":")
    if len(parts) > 2:
        raise ConfigurationError(
            f"{source} takes MIN or MIN:MAX (such as 2 or 2:10), not {text!r}", source=source
        )
    min_quiet = parse_duration(parts[0], source=source)
    max_wait = parse_duration(parts[1], source=source) if len(parts) == 2 else 4 * min_quiet
    if max_wait < min_quiet:
        raise ConfigurationError(
            f"{source} {text!r}: MAX ({max_wait:g} s) is shorter than MIN ({min_quiet:g} s);"
            " MAX is the longest a burst of changes may hold an action back, so give at least"
            f" MIN, such as {parts[0]}:{4 * min_quiet:g}",
            source=source,
        )
    return min_quiet, max_wait


class RenderSpec(NamedTuple):
    """A ``TEMPLATE:DEST`` from the command line: ``Renderer(*spec)``."""

    template: Path
    dest: Path


def parse_render_spec(text: str, *, source: str = "--render") -> RenderSpec:
    """Read ``TEMPLATE:DEST`` (split at the first colon) and check both paths.

    Raises:
        ConfigurationError: No colon, a template that is not a file, a DEST
            that is a directory or whose directory does not exist, or DEST the
            template itself.
    """
    template_text, colon, dest_text = text.partition(":")
    if not colon or not template_text or not dest_text:
        raise ConfigurationError(
            f"{source} takes TEMPLATE:DEST, such as haproxy.cfg.j2:/etc/haproxy/haproxy.cfg,"
            f" not {text!r}",
            source=source,
        )
    template = Path(template_text).expanduser()
    dest = Path(dest_text).expanduser()
    if not template.exists():
        raise ConfigurationError(
            f"{source} {text!r}: the template {str(template)!r} does not exist; check the path"
            " (relative paths start from the current directory)",
            source=source,
        )
    if not template.is_file():
        raise ConfigurationError(
            f"{source} {text!r}: the template {str(template)!r} is not a file", source=source
        )
    directory = dest.parent
    if not directory.is_dir():
        raise ConfigurationError(
            f"{source} {text!r}: the directory of DEST, {str(directory)!r}, does not exist;"
            " create it first",
            source=source,
        )
    if dest.is_dir():
        raise ConfigurationError(
            f"{source} {text!r}: DEST {str(dest)!r} is a directory; give the file to write",
            source=source,
        )
    if dest.resolve() == template.resolve():
        raise ConfigurationError(
            f"{source} {text!r}: DEST is the template itself, which rendering would overwrite",
            source=source,
        )
    return RenderSpec(template, dest)
