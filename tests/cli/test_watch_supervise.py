"""``swarmdns watch --supervise`` (entrypoint mode), and SIGHUP acting again, against the fake."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from swarmdns.testing import FakeSwarm

from .helpers import Fifo, Spawn, assert_one_line_error, free_port, run, scrape

#: A supervised program: writes what happens to it, with the rendered file, into a FIFO.
PROGRAM = """
import os, signal, sys
fifo, rendered, pidfile = sys.argv[1:4]
with open(pidfile, "w") as out:
    out.write(str(os.getpid()))
def report(what):
    with open(rendered) as file:
        text = file.read().strip()
    with open(fifo, "w") as out:
        out.write(f"{what}: {text}")
def on_signal(signum, frame):
    report(signal.Signals(signum).name)
    if signum in (signal.SIGTERM, signal.SIGINT):
        sys.exit(3 if signum == signal.SIGTERM else 4)
for each in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
    signal.signal(each, on_signal)
report("started")
while True:
    signal.pause()
"""


class Supervised(NamedTuple):
    """PROGRAM, supervised by a watch: what it reports, and the options that run it."""

    fifo: Fifo  # each report: "started: <file>", "<SIGNAL>: <file>"
    options: tuple[str, ...]  # --render TEMPLATE:DEST --supervise PROGRAM


@pytest.fixture
def supervised(spawn: Spawn, tmp_path: Path) -> Iterator[Supervised]:
    """PROGRAM's FIFO and options; afterwards, PROGRAM is gone even if the test failed.

    In a session of its own, it outlives a watch that a failed test kills; it
    is killed by the number it wrote, if that is still this test's program.
    (After ``spawn`` is set up, so before its watches are stopped.)
    """
    script, pidfile, dest = tmp_path / "program.py", tmp_path / "program.pid", tmp_path / "ips"
    script.write_text(PROGRAM)
    fifo = Fifo(tmp_path / "events")
    command = f"{sys.executable} {script} {fifo.path} {dest} {pidfile}"
    try:
        yield Supervised(
            fifo, ("--render", f"{template(tmp_path)}:{dest}", "--supervise", command)
        )
    finally:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            pid = int(pidfile.read_text())
            if str(script) in Path(f"/proc/{pid}/cmdline").read_text():
                os.kill(pid, signal.SIGKILL)
        fifo.close()


def template(tmp_path: Path) -> Path:
    path = tmp_path / "ips.j2"
    path.write_text("{{ ips | join(' ') }}\n")
    return path


def test_supervise_starts_after_the_render_reloads_on_changes_and_ends_with_the_program(
    swarm_dns: FakeSwarm, spawn: Spawn, supervised: Supervised
) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    port = free_port()
    watch = spawn("watch", "web", "--interval", "0.05", "--metrics", f"127.0.0.1:{port}",
                  *supervised.options)  # fmt: skip
    started = supervised.fifo.next_run()
    metrics = scrape(port)
    web = swarm_dns.scale("web", 3)
    reloaded = supervised.fifo.next_run()
    watch.popen.send_signal(signal.SIGHUP)  # acts again: the same file, one more reload
    again = supervised.fifo.next_run()
    watch.popen.send_signal(signal.SIGTERM)
    stopped = supervised.fifo.next_run()
    code, _, err = watch.finish()

    ips = [str(ip) for ip in web.task_ips]
    assert started == f"started: {ips[0]} {ips[1]}"  # the file was there before it started
    assert 'swarmdns_tasks{service="web"} 2.0' in metrics
    assert reloaded == f"SIGHUP: {' '.join(ips)}"
    assert again == f"SIGHUP: {' '.join(ips)}"
    assert stopped == f"SIGTERM: {' '.join(ips)}"
    assert code == 3, err  # the program's own status
    assert "exited with status 3" in err


def test_supervise_forwards_sigint_and_sends_the_reload_signal_asked_for(
    swarm_dns: FakeSwarm, spawn: Spawn, supervised: Supervised
) -> None:
    web = swarm_dns.create_service("web", replicas=1)
    watch = spawn("watch", "web", "--interval", "0.05", "--reload-signal", "usr1",
                  "--splay", "10ms", *supervised.options)  # fmt: skip
    supervised.fifo.next_run()
    web = swarm_dns.scale("web", 2)
    reloaded = supervised.fifo.next_run()
    watch.popen.send_signal(signal.SIGINT)
    stopped = supervised.fifo.next_run()
    code, _, err = watch.finish()

    ips = " ".join(str(ip) for ip in web.task_ips)
    assert reloaded == f"SIGUSR1: {ips}"
    assert stopped == f"SIGINT: {ips}"
    assert code == 4, err


def test_a_held_change_neither_renders_nor_reloads_and_wait_settles_a_burst(
    swarm_dns: FakeSwarm, spawn: Spawn, supervised: Supervised
) -> None:
    """With --min and --wait: the program sees only sets the watch believes, one reload a burst."""
    swarm_dns.create_service("web", replicas=2)
    watch = spawn("watch", "web", "--interval", "0.05", "--json", "--min", "2",
                  "--wait", "3s:10s", *supervised.options)  # fmt: skip
    supervised.fifo.next_run()
    swarm_dns.scale("web", 1)  # below --min: held, so not rendered, and no reload
    watch.lines_until('"event": "held"')
    swarm_dns.scale("web", 3)
    web = swarm_dns.scale("web", 4)  # the same burst as 3, within --wait
    reloaded = supervised.fifo.next_run()
    watch.popen.send_signal(signal.SIGTERM)
    stopped = supervised.fifo.next_run()
    code, _, err = watch.finish()

    ips = " ".join(str(ip) for ip in web.task_ips)
    assert reloaded == f"SIGHUP: {ips}"  # the first reload after the start is of the 4
    assert stopped == f"SIGTERM: {ips}"  # and the only one
    assert code == 3, err


@pytest.mark.parametrize(
    ("command", "status"), [("exit 7", 7), ("exit 0", 0), ("kill -KILL $$", 128 + 9)]
)
def test_watch_exits_with_the_status_of_a_program_that_exits(
    swarm_dns: FakeSwarm, command: str, status: int
) -> None:
    swarm_dns.create_service("web", replicas=1)

    result = run("watch", "web", "--interval", "0.05", "--supervise", command)

    assert result.returncode == status, result
    assert f"exited with status {status}; the watch ends with it" in result.stderr or status == 0
    assert "Traceback" not in result.stderr


def test_supervise_starts_nothing_when_the_first_render_fails(
    swarm_dns: FakeSwarm, tmp_path: Path
) -> None:
    swarm_dns.create_service("web", replicas=1)
    bad = tmp_path / "bad.j2"
    bad.write_text("{{ nope }}\n")
    started = tmp_path / "started"

    result = run("watch", "web", "--interval", "0.05", "--render", f"{bad}:{tmp_path / 'out'}",
                 "--supervise", f"touch {started}")  # fmt: skip

    assert result.returncode == 2, result
    assert "nope" in result.stderr
    assert not started.exists()


def test_sighup_renders_every_template_and_runs_the_command_again(
    swarm_dns: FakeSwarm, spawn: Spawn, tmp_path: Path
) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    dest = tmp_path / "ips"
    fifo = Fifo(tmp_path / "runs")
    try:
        watch = spawn("watch", "web", "--interval", "0.05", "--render",
                      f"{template(tmp_path)}:{dest}", "--wait", "1h",
                      "--exec", f'echo "$SWARMDNS_SERVICE" > {fifo.path}')  # fmt: skip
        first = watch.line()
        watch.popen.send_signal(signal.SIGHUP)  # acts now, not an hour after the first set
        fifo.next_run()
        dest.unlink()
        watch.popen.send_signal(signal.SIGHUP)
        again = fifo.next_run()
        rendered = dest.read_text()
        watch.popen.send_signal(signal.SIGINT)
        code, _, err = watch.finish()
    finally:
        fifo.close()

    ips = " ".join(str(ip) for ip in web.task_ips)
    assert first.endswith(f"now: {ips}\n")
    assert again == "web\n"
    assert rendered == f"{ips}\n"
    assert code == 0, err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ("--supervise", "nginx", "--reload-signal", "FOO"),
            "--reload-signal 'FOO' is not a signal",
        ),
        (("--reload-signal", "HUP"), "--reload-signal needs --supervise"),
        (("--splay", "2"), "--splay needs --supervise"),
        (("--supervise", "nginx", "--splay", "-1"), "--splay"),
        (("--supervise", " "), "--supervise"),
        (("--supervise", "nginx", "--once"), "--supervise needs a watch"),
    ],
)
def test_bad_supervise_options_are_usage_errors(args: tuple[str, ...], words: str) -> None:
    assert_one_line_error(run("watch", "web", *args), 2, words)
