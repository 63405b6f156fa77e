"""``swarmdns watch --render/--exec``, and how a watch stops with a command under way."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from swarmdns import _cli
from swarmdns.testing import FakeSwarm

from .helpers import (
    DEADLINE,
    Fifo,
    Spawn,
    assert_one_line_error,
    run,
    stop_what_is_left,
    wait_for_more_lookups,
    wait_until_gone,
)


def test_watch_shows_a_failing_command_on_stderr_and_goes_on(
    swarm_dns: FakeSwarm, spawn: Spawn, tmp_path: Path
) -> None:
    swarm_dns.create_service("web", replicas=1)
    fifo = Fifo(tmp_path / "runs")
    try:
        watch = spawn("watch", "web", "--interval", "0.05", "--exec",
                      f"echo $SWARMDNS_TASKS > {fifo.path}; exit 7")  # fmt: skip
        fifo.next_run()
        swarm_dns.scale("web", 2)
        fifo.next_run()  # so the first run was over, and logged
        watch.popen.send_signal(signal.SIGINT)
        code, _, err = watch.finish()
    finally:
        fifo.close()

    assert code == 0
    assert re.match(
        r"swarmdns: the command '.*' \(for web\) exited with status 7 after [0-9.e-]+ s;"
        r" the watch goes on\n",
        err,
    )


def test_watch_renders_a_template_and_runs_a_command_on_each_change(
    swarm_dns: FakeSwarm, spawn: Spawn, tmp_path: Path
) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    template = tmp_path / "upstream.j2"
    template.write_text("{% for ip in ips %}server {{ ip }}:80;\n{% endfor %}")
    dest = tmp_path / "upstream.conf"
    fifo = Fifo(tmp_path / "runs")
    command = f'echo "$SWARMDNS_SERVICE $SWARMDNS_TASKS" > {fifo.path}'
    try:
        spawn("watch", "web", "--interval", "0.05", "--render", f"{template}:{dest}",
              "--exec", command)  # fmt: skip
        first = fifo.next_run()
        first_file = dest.read_text()
        web = swarm_dns.scale("web", 3)
        second = fifo.next_run()
    finally:
        fifo.close()

    ips = [str(ip) for ip in web.task_ips]
    assert first == f"web {ips[0]} {ips[1]}\n"
    assert first_file == f"server {ips[0]}:80;\nserver {ips[1]}:80;\n"
    assert second == f"web {' '.join(ips)}\n"
    assert dest.read_text() == "".join(f"server {ip}:80;\n" for ip in ips)


def test_watch_renders_and_runs_nothing_from_a_held_answer(
    swarm_dns: FakeSwarm, spawn: Spawn, tmp_path: Path
) -> None:
    web = swarm_dns.create_service("web", replicas=2, network="web-net")
    swarm_dns.create_network("elsewhere")
    template = tmp_path / "upstream.j2"
    template.write_text("{% for ip in ips %}server {{ ip }}:80;\n{% endfor %}")
    dest = tmp_path / "upstream.conf"
    fifo = Fifo(tmp_path / "runs")
    command = f'echo "$SWARMDNS_TASKS" > {fifo.path}'
    try:
        watch = spawn("watch", "web", "--interval", "0.05", "--min", "1",
                      "--render", f"{template}:{dest}", "--exec", command)  # fmt: skip
        first = fifo.next_run()
        # web's names answer NXDOMAIN while its tasks run on, as on Docker 29.x.
        swarm_dns.client_networks = ["elsewhere"]
        held = watch.lines_until("change held")
        wait_for_more_lookups(swarm_dns, "web")
        during = dest.read_text()
        swarm_dns.client_networks = None
        watch.lines_until("hold ends")
        web = swarm_dns.scale("web", 3)
        second = fifo.next_run()  # the next run: the scale-up, none from the held answer
    finally:
        fifo.close()

    ips = [str(ip) for ip in web.task_ips]
    assert first == f"{ips[0]} {ips[1]}\n"
    assert held[-1].split(" ", 1)[1] == (
        f"web change held, below min_tasks 1: -{ips[0]} -{ips[1]} would leave: (none)\n"
    )
    assert during == f"server {ips[0]}:80;\nserver {ips[1]}:80;\n"
    assert second == f"{' '.join(ips)}\n"


#: A command that tells its shell's pid and its child's, then waits far longer than a test.
LONG_COMMAND = 'sleep 600 & echo "$$ $!" > {started}; wait'


class Interrupted(NamedTuple):
    """How a watch ended that was interrupted with its command under way."""

    command: str
    code: int
    stderr: str
    left: list[int]  # the command's shell and child, if still running


def interrupt_watch(
    spawn: Spawn,
    tmp_path: Path,
    *options: str,
    command: str = LONG_COMMAND,
    interrupt: Callable[[subprocess.Popen[str], Fifo], None],
) -> Interrupted:
    """Watch ``web`` with ``--exec command``; once it runs, ``interrupt`` the watch.

    ``command`` writes its shell's pid and its child's to ``{started}``;
    ``{stopping}`` is a FIFO it may write to when it gets SIGTERM.
    Whatever of it is left afterwards is killed.
    """
    started, stopping = Fifo(tmp_path / "started"), Fifo(tmp_path / "stopping")
    command = command.format(started=started.path, stopping=stopping.path)
    shell = child = 0
    try:
        watch = spawn("watch", "web", *options, "--exec", command, "--exec-timeout", "3600")
        shell, child = map(int, started.next_run().split())
        interrupt(watch.popen, stopping)
        code, _, err = watch.finish()
        left = wait_until_gone(shell, child)
    finally:
        started.close()
        stopping.close()
        stop_what_is_left(shell, shell, child)
    return Interrupted(command, code, err, left)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "ctrl-c"])
def test_watch_stops_on_sigterm_as_on_ctrl_c_with_the_command_under_way(
    swarm_dns: FakeSwarm, spawn: Spawn, tmp_path: Path, signum: signal.Signals
) -> None:
    swarm_dns.create_service("web", replicas=2)

    ended = interrupt_watch(
        spawn, tmp_path, "--interval", "0.05", interrupt=lambda watch, _: watch.send_signal(signum)
    )

    assert ended.code == 0
    assert ended.stderr.startswith(
        f"swarmdns: the command {ended.command!r} (for web) was stopped, with its"
    )
    assert ended.stderr.endswith("because the watch is stopping\n")
    assert ended.stderr.count("\n") == 1
    assert ended.left == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "ctrl-c"])
def test_watch_once_interrupted_is_not_a_success(
    swarm_dns: FakeSwarm, spawn: Spawn, tmp_path: Path, signum: signal.Signals
) -> None:
    swarm_dns.create_service("web", replicas=1)

    ended = interrupt_watch(
        spawn, tmp_path, "--once", interrupt=lambda watch, _: watch.send_signal(signum)
    )

    assert ended.code == 130
    assert "was stopped, with its process group, because swarmdns was interrupted" in ended.stderr
    assert ended.stderr.endswith(
        "swarmdns: interrupted before the lookups, the templates and the command were done;"
        " run it again\n"
    )
    assert ended.left == []


def test_a_second_interrupt_does_not_cut_the_stopping_short(
    swarm_dns: FakeSwarm, spawn: Spawn, tmp_path: Path
) -> None:
    swarm_dns.create_service("web", replicas=1)

    def twice(watch: subprocess.Popen[str], stopping: Fifo) -> None:
        watch.send_signal(signal.SIGTERM)
        stopping.next_run()  # the command got SIGTERM: the watch is stopping it
        watch.send_signal(signal.SIGINT)

    # Both ignore SIGTERM, so the stopping lasts the 2 s grace, then SIGKILL;
    # the shell says when SIGTERM came, so the second interrupt comes during it.
    ended = interrupt_watch(
        spawn,
        tmp_path,
        "--interval",
        "0.05",
        command="trap '' TERM; sleep 600 & child=$!; trap 'echo > {stopping}' TERM;"
        ' echo "$$ $child" > {started}; while :; do wait $child; done',
        interrupt=twice,
    )

    assert ended.code == 0, ended.stderr
    assert "Traceback" not in ended.stderr
    assert ended.left == []


def test_watch_in_process_takes_sigterm_then_puts_the_handler_back(
    swarm_dns: FakeSwarm, tmp_path: Path
) -> None:
    swarm_dns.create_service("web", replicas=1)
    fifo = Fifo(tmp_path / "started")
    command = LONG_COMMAND.format(started=fifo.path)
    received: list[int] = []
    pids: list[int] = []
    watched = threading.Event()

    def handler(signum: int, frame: object) -> None:
        received.append(signum)  # what SIGTERM did before the watch, and is to do after

    def terminate_when_the_command_runs() -> None:
        pids.extend(map(int, fifo.next_run().split()))
        os.kill(os.getpid(), signal.SIGTERM)
        if not watched.wait(DEADLINE):  # the watch took no notice: end the test
            stop_what_is_left(pids[0], *pids)
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.signal(signal.SIGTERM, handler)
    terminator = threading.Thread(target=terminate_when_the_command_runs, daemon=True)
    try:
        terminator.start()
        code = _cli.main(
            ["watch", "web", "--interval", "0.05", "--exec", command, "--exec-timeout", "3600"],
            out=io.StringIO(),
        )
        watched.set()
        terminator.join(DEADLINE)
        after = signal.getsignal(signal.SIGTERM)
        left = wait_until_gone(*pids)
    finally:
        signal.signal(signal.SIGTERM, before)
        fifo.close()
        if pids:
            stop_what_is_left(pids[0], *pids)

    assert code == 0
    assert received == []
    assert after is handler
    assert not terminator.is_alive()
    assert left == []


def test_watch_wait_without_anything_to_do_is_a_usage_error() -> None:
    assert_one_line_error(run("watch", "web", "--wait", "2"), 2, "--wait needs --render or --exec")


def test_watch_render_of_a_missing_template_is_a_usage_error(tmp_path: Path) -> None:
    spec = f"{tmp_path / 'nope.j2'}:{tmp_path / 'out'}"
    assert_one_line_error(run("watch", "web", "--render", spec), 2, "nope.j2")


def test_watch_ends_with_exit_2_when_the_first_rendering_fails(
    swarm_dns: FakeSwarm, tmp_path: Path
) -> None:
    swarm_dns.create_service("web", replicas=1)
    template = tmp_path / "bad.j2"
    template.write_text("{{ nope }}\n")
    spec = f"{template}:{tmp_path / 'out'}"

    result = run("watch", "web", "--interval", "0.05", "--render", spec)

    assert result.returncode == 2, result
    assert "nope" in result.stderr
    assert "bad.j2" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
