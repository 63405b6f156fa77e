"""What every command shares: exit codes, the error that ends a command, output lines."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from .._values import TaskSetChange

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_DNS_FAILURE = 3
EXIT_COMMAND_FAILED = 4
EXIT_INTERRUPTED = 130

#: The exit codes, as ``--help`` shows them (docs/cli.md shows the same table).
EXIT_CODES = """\
exit codes:
    0  success
    1  not found: no such service, fewer tasks than tasks --min (1 by default),
       no virtual IP where vip asked for one, or self cannot tell who this
       container is
    2  usage: bad options, a name Docker would not accept, a bad
       SWARMDNS_NAMESERVER, or an address serve cannot listen on
    3  DNS failure or timeout; watch --once: a lookup failed; watch: lookups
       failed for longer than --fail-after
    4  watch --once: the --exec command failed, or ran past --exec-timeout;
       a --render-check refused a file, or a --render-exec command failed
  130  watch --once: interrupted (Ctrl-C, SIGTERM) before it was done"""


class CommandExit(Exception):
    """End the command with ``code``, and ``message`` as its one line on stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def stamp(moment: datetime) -> str:
    """A time in JSON: ISO 8601, in UTC, to the millisecond (``...T14:02:11.250+00:00``)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def clock(moment: datetime) -> str:
    """A time in a text line: ``14:02:11`` (UTC)."""
    return moment.astimezone(timezone.utc).strftime("%H:%M:%S")


def change_line(change: TaskSetChange, as_json: bool, *, named: bool = False) -> str:
    """The line of ``watch`` (and ``demo``) for a change: text, or a JSON object."""
    if as_json:
        return json.dumps(
            {
                "event": "change",
                "at": stamp(change.observed_at),
                "service": change.service,
                "added": sorted(str(ip) for ip in change.added),
                "removed": sorted(str(ip) for ip in change.removed),
                "current": [str(ip) for ip in change.current],
            }
        )
    added = " ".join(f"+{ip}" for ip in sorted(change.added))
    removed = " ".join(f"-{ip}" for ip in sorted(change.removed))
    current = " ".join(str(ip) for ip in change.current) or "(none)"
    service = change.service if named else ""
    parts = (clock(change.observed_at), service, added, removed, "now:", current)
    return " ".join(p for p in parts if p)
