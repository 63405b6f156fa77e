"""What the tests of the command line share: running it, reading its output, its commands."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from ipaddress import IPv4Address
from pathlib import Path
from typing import Protocol

import dns.message
import dns.query
import pytest

from swarmdns.testing import FakeSwarm, Fault

SWARMDNS = [sys.executable, "-m", "swarmdns"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SWARMDNS, *args], capture_output=True, text=True, timeout=60, check=False
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    assert result.returncode == code, result
    assert result.stderr.startswith("swarmdns: ")
    assert result.stderr.count("\n") == 1
    assert words in result.stderr
    assert "Traceback" not in result.stderr


#: How long a test waits for a line of output, or for a process to end, before it fails.
DEADLINE = 30.0


ROOT = Path(__file__).resolve().parent.parent.parent


class Child:
    """A running swarmdns; threads read its output, so a test waits for a line with a deadline."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, command: Sequence[str] = SWARMDNS
    ) -> None:
        self.popen = subprocess.Popen(
            [*command, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()  # None: the output ended
        self._stderr: list[str] = []
        self._stderr_grew = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            with self._stderr_grew:
                self._stderr.append(line)
                self._stderr_grew.notify_all()

    def stderr_until(self, words: str) -> str:
        """What it has written on stderr so far, once ``words`` are in it."""
        with self._stderr_grew:
            if not self._stderr_grew.wait_for(lambda: words in "".join(self._stderr), DEADLINE):
                pytest.fail(f"swarmdns did not say {words!r} on stderr within {DEADLINE} s")
            return "".join(self._stderr)

    def line(self) -> str:
        """The next line it prints."""
        try:
            line = self._lines.get(timeout=DEADLINE)
        except queue.Empty:
            pytest.fail(f"swarmdns printed no line within {DEADLINE} s")
        if line is None:
            code, _, err = self.finish()
            pytest.fail(f"swarmdns ended (exit {code}) instead of printing a line: {err}")
        return line

    def lines_until(self, words: str) -> list[str]:
        """The lines it prints, up to the first with ``words`` in it."""
        lines = [self.line()]
        while words not in lines[-1]:
            lines.append(self.line())
        return lines

    def finish(self) -> tuple[int, str, str]:
        """Wait for it to end: its exit code, the lines not yet read, and its stderr."""
        code = self.popen.wait(timeout=DEADLINE)
        for reader in self._readers:
            reader.join(DEADLINE)
        rest = []
        while (line := self._lines.get_nowait()) is not None:
            rest.append(line)
        return code, "".join(rest), "".join(self._stderr)

    def close(self) -> None:
        """Stop it (by its id) if it still runs, and close its pipes."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=DEADLINE)
        for reader in self._readers:
            reader.join(DEADLINE)
        if any(reader.is_alive() for reader in self._readers):
            # A process it started holds its output open: closing a pipe that
            # a thread reads waits for that thread, forever.
            pytest.fail("a process that swarmdns started still runs after it, holding its output")
        for pipe in self.popen.stdout, self.popen.stderr:
            if pipe is not None:
                pipe.close()


class Spawn(Protocol):
    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Child: ...


def moment(text: str) -> datetime:
    """An ``at`` of a JSON line: ISO 8601, in UTC."""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)", text), text
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def utc_now() -> datetime:
    # The lines' times are cut to the millisecond.
    return datetime.now(timezone.utc).replace(microsecond=0)


def fail_lookups(swarm: FakeSwarm, service: str) -> None:
    """Make the lookups of ``service`` fail, until ``clear_faults()``."""
    swarm.inject(Fault.SERVFAIL, name=f"tasks.{service}")


def wait_for_more_lookups(swarm: FakeSwarm, service: str, more: int = 10) -> None:
    """Wait until ``service`` has been looked up ``more`` times again."""
    name = f"tasks.{service}"
    swarm.wait_for_queries(swarm.count_queries(name) + more, name=name, timeout=DEADLINE)


def serve_address(banner: str) -> tuple[str, int]:
    found = re.match(r"fake Swarm DNS listening on (127\.0\.0\.1|\[::1\]):(\d+) ", banner)
    assert found, banner
    return found.group(1).strip("[]"), int(found.group(2))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def scrape(port: int) -> str:
    """What ``watch --metrics`` on 127.0.0.1:``port`` answers, straight (no proxy)."""
    with _DIRECT.open(f"http://127.0.0.1:{port}/metrics", timeout=DEADLINE) as reply:
        return str(reply.read().decode())


def addresses(name: str, host: str, port: int) -> list[IPv4Address]:
    reply = dns.query.udp(dns.message.make_query(name, "A"), host, port=port, timeout=5)
    return sorted(IPv4Address(record.address) for record in reply.answer[0])


class Fifo:
    """A named pipe that a command writes to on each run; each run's text, with a deadline."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self._runs: queue.Queue[str] = queue.Queue()
        self._closing = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closing:
            with open(self.path, encoding="utf-8") as pipe:  # blocks until a writer opens it
                text = pipe.read()
            if not self._closing:
                self._runs.put(text)

    def next_run(self) -> str:
        try:
            return self._runs.get(timeout=DEADLINE)
        except queue.Empty:
            pytest.fail(f"the command did not run within {DEADLINE} s")

    def close(self) -> None:
        self._closing = True
        with open(self.path, "w", encoding="utf-8"):  # lets the reader's open() return
            pass
        self._reader.join(DEADLINE)


def runs(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (ended, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_until_gone(*pids: int) -> list[int]:
    """Wait (up to the deadline) for ``pids`` to end; those still running."""
    deadline = time.monotonic() + DEADLINE
    while any(map(runs, pids)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return [pid for pid in pids if runs(pid)]


def stop_what_is_left(group: int, *pids: int) -> None:
    """If a test failed with its command running, kill the command's process group."""
    if any(map(runs, pids)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
