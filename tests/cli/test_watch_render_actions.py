"""``--render-check``, ``--render-exec``, safe destinations, ``TEMPLATE:-``, a stopped render."""

from __future__ import annotations

import errno
import io
import os
import resource
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from swarmdns import _cli
from swarmdns.testing import FakeSwarm

from .helpers import Fifo, Spawn, assert_one_line_error, fail_lookups, run

#: One line per address: the file's lines count the tasks.
LINES = "{% for ip in ips %}server {{ ip }}:80;\n{% endfor %}"
#: A template that takes far longer than a test, printing a dot now and then.
SLOW = "{% for i in range(10**9) %}{% if i % 100000 == 0 %}.{% endif %}{% endfor %}\n"


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if "swarmdns-tmp" in p.name)


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "upstream.j2"
    path.write_text(LINES)
    return path


# -- --render-check ---------------------------------------------------------------


def test_a_failing_check_leaves_dest_as_it_was_and_the_watch_goes_on(
    swarm_dns: FakeSwarm, spawn: Spawn, template: Path, tmp_path: Path
) -> None:
    swarm_dns.create_service("web", replicas=2)
    dest = tmp_path / "upstream.conf"
    checks, runs = Fifo(tmp_path / "checks"), Fifo(tmp_path / "runs")
    # The check refuses a file of 3 servers; it says what it saw, and where.
    check = (
        f'wc -l < "$SWARMDNS_STAGED" > {checks.path};'
        ' test "$(dirname "$SWARMDNS_STAGED")" = "$(dirname "$SWARMDNS_RENDERED")"'
        ' && test "$(wc -l < "$SWARMDNS_STAGED")" -ne 3'
    )
    try:
        watch = spawn("watch", "web", "--interval", "0.05", "--render", f"{template}:{dest}",
                      "--render-check", check, "--exec", f"cat {dest} > {runs.path}")  # fmt: skip
        first_check = checks.next_run()
        first_run = runs.next_run()
        swarm_dns.scale("web", 3)
        refused = checks.next_run()
        web = swarm_dns.scale("web", 1)
        last_check = checks.next_run()
        last_run = runs.next_run()  # the next run: none came of the refused file
        watch.popen.send_signal(signal.SIGTERM)
        code, _, err = watch.finish()
    finally:
        checks.close()
        runs.close()

    assert [first_check, refused, last_check] == ["2\n", "3\n", "1\n"]
    assert first_run.count("server ") == 2
    assert last_run == f"server {web.task_ips[0]}:80;\n"
    assert dest.read_text() == last_run
    assert code == 0
    assert f"swarmdns: the --render-check of {str(dest)!r}, {check!r} (for web) exited with" in err
    assert f"swarmdns: {dest} was left as it was: the check of its new content failed" in err
    assert leftovers(tmp_path) == []


def test_watch_once_with_a_failing_check_keeps_the_old_file_and_exits_4(
    swarm_dns: FakeSwarm, template: Path, tmp_path: Path
) -> None:
    swarm_dns.create_service("web", replicas=2)
    dest = tmp_path / "upstream.conf"
    dest.write_text("the old file\n")

    result = run("watch", "web", "--once", "--render", f"{template}:{dest}",
                 "--render-check", "grep -q nothing-such \"$SWARMDNS_STAGED\"")  # fmt: skip

    assert result.returncode == 4, result
    assert dest.read_text() == "the old file\n"
    assert result.stderr.endswith(
        "swarmdns: a --render-check refused a file, which was left as it was, or a"
        " --render-exec command failed (above); run it by hand to see why, then fix it\n"
    )
    assert leftovers(tmp_path) == []


def test_watch_once_with_a_passing_check_installs_the_file(
    swarm_dns: FakeSwarm, template: Path, tmp_path: Path
) -> None:
    web = swarm_dns.create_service("web", replicas=1)
    dest = tmp_path / "upstream.conf"

    result = run("watch", "web", "--once", "--render", f"{template}:{dest}",
                 "--render-check", 'grep -q "server " "$SWARMDNS_STAGED"')  # fmt: skip

    assert result.returncode == 0, result
    assert dest.read_text() == f"server {web.task_ips[0]}:80;\n"


# -- --render-exec ------------------------------------------------------------------


def test_a_template_s_command_runs_only_when_its_file_changed(
    swarm_dns: FakeSwarm, spawn: Spawn, template: Path, tmp_path: Path
) -> None:
    swarm_dns.create_service("web", replicas=1)
    static = tmp_path / "static.j2"
    static.write_text("the same every time\n")
    upstream, fixed = tmp_path / "upstream.conf", tmp_path / "fixed.conf"
    log = tmp_path / "log"
    fifo = Fifo(tmp_path / "runs")  # --exec, the last of a batch's commands, says it ran
    says = f'echo "$0 $SWARMDNS_RENDERED $SWARMDNS_SERVICE" >> {log}'
    try:
        spawn("watch", "web", "--interval", "0.05",
              "--render", f"{template}:{upstream}", "--render-exec", says.replace("$0", "up"),
              "--render", f"{static}:{fixed}", "--render-exec", says.replace("$0", "fixed"),
              "--exec", f"{says.replace('$0', 'exec')}; echo > {fifo.path}")  # fmt: skip
        fifo.next_run()
        first = log.read_text().splitlines()
        swarm_dns.scale("web", 2)
        fifo.next_run()
        second = log.read_text().splitlines()[len(first) :]
    finally:
        fifo.close()

    assert first == [f"up {upstream} web", f"fixed {fixed} web", "exec  web"]
    assert second == [f"up {upstream} web", "exec  web"]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--render-check", "true"], "--render-check needs a --render before it"),
        (["--render-exec", "true", "--render", "{template}:{dest}"], "--render-exec needs a"),
        (
            ["--render", "{template}:{dest}", "--render-exec", "a", "--render-exec", "b"],
            "--render-exec was given twice",
        ),
        (["--render", "{template}:-", "--render-check", "true"], "needs a file to check"),
        (["--render", "{template}:{dest}", "--render-check", " "], "is empty"),
        (["--render-any-dest"], "--render-any-dest needs --render"),
    ],
)
def test_bad_template_commands_are_usage_errors(
    template: Path, tmp_path: Path, options: list[str], words: str
) -> None:
    dest = tmp_path / "out"
    given = [option.format(template=template, dest=dest) for option in options]

    assert_one_line_error(run("watch", "web", *given), 2, words)


# -- safe destinations and standard output ---------------------------------------------


@pytest.mark.parametrize("kind", ["symlink to a device", "fifo", "dangling symlink"])
def test_a_dest_that_is_not_a_regular_file_is_refused(
    template: Path, tmp_path: Path, kind: str
) -> None:
    dest = tmp_path / "dest"
    if kind == "fifo":
        os.mkfifo(dest)
        what = "a named pipe (FIFO)"
    else:
        dest.symlink_to("/dev/null" if kind == "symlink to a device" else tmp_path / "nowhere")
        what = "a symbolic link"

    result = run("watch", "web", "--render", f"{template}:{dest}")

    assert_one_line_error(result, 2, f"DEST {str(dest)!r} is {what}, not a regular file")
    assert "--render-any-dest" in result.stderr
    assert not dest.is_file()


def test_render_any_dest_replaces_a_symlink_when_asked(
    swarm_dns: FakeSwarm, template: Path, tmp_path: Path
) -> None:
    web = swarm_dns.create_service("web", replicas=1)
    target = tmp_path / "target"
    target.write_text("left alone\n")
    dest = tmp_path / "dest"
    dest.symlink_to(target)

    result = run("watch", "web", "--once", "--render", f"{template}:{dest}", "--render-any-dest")

    assert result.returncode == 0, result
    assert not dest.is_symlink()
    assert dest.read_text() == f"server {web.task_ips[0]}:80;\n"
    assert target.read_text() == "left alone\n"


def test_a_dest_that_became_a_fifo_is_refused_when_acting(
    swarm_dns: FakeSwarm, spawn: Spawn, template: Path, tmp_path: Path
) -> None:
    swarm_dns.create_service("web", replicas=1)
    swarm_dns.create_service("api", replicas=1)
    fail_lookups(swarm_dns, "api")  # the first render waits for api's first set
    template.write_text("{% for ip in services.web.ips %}server {{ ip }}:80;\n{% endfor %}")
    dest = tmp_path / "dest"

    watch = spawn("watch", "web", "api", "--interval", "0.05", "--render", f"{template}:{dest}")
    watch.lines_until("web")  # web's first set: the options were checked
    os.mkfifo(dest)
    swarm_dns.clear_faults()
    code, _, err = watch.finish()

    assert code == 2, err
    assert f"{str(dest)!r} is a named pipe (FIFO), not a regular file" in err
    assert "--render-any-dest" in err
    assert leftovers(tmp_path) == []


def test_dest_dash_prints_the_render_after_the_set(
    swarm_dns: FakeSwarm, template: Path, tmp_path: Path
) -> None:
    web = swarm_dns.create_service("web", replicas=2)

    result = run("watch", "web", "--once", "--render", f"{template}:-")

    assert result.returncode == 0, result
    line, *rendered = result.stdout.splitlines(keepends=True)
    assert line.endswith(" now: " + " ".join(map(str, web.task_ips)) + "\n")
    assert rendered == [f"server {ip}:80;\n" for ip in web.task_ips]
    assert not (tmp_path / "-").exists()
    assert not Path("-").exists()


def test_dest_dash_prints_each_render_that_changed_in_a_watch(
    swarm_dns: FakeSwarm, spawn: Spawn, template: Path
) -> None:
    web = swarm_dns.create_service("web", replicas=1)

    watch = spawn("watch", "web", "--interval", "0.05", "--render", f"{template}:-")
    first = [watch.line(), watch.line()]
    web = swarm_dns.scale("web", 2)
    second = [watch.line() for _ in range(3)]
    watch.popen.send_signal(signal.SIGINT)
    code, rest, _ = watch.finish()

    ips = web.task_ips
    assert first[1] == f"server {ips[0]}:80;\n"
    assert second[1:] == [f"server {ip}:80;\n" for ip in ips]
    assert "+" in second[0]
    assert (code, rest) == (0, "")


# -- stopping in the middle of a render ----------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "ctrl-c"])
def test_an_interrupt_stops_a_slow_render_without_writing_dest(
    swarm_dns: FakeSwarm, spawn: Spawn, tmp_path: Path, signum: signal.Signals
) -> None:
    swarm_dns.create_service("web", replicas=1)
    slow = tmp_path / "slow.j2"
    slow.write_text(SLOW)
    dest = tmp_path / "out"

    watch = spawn("watch", "web", "--interval", "0.05", "--render", f"{slow}:{dest}")
    watch.line()  # the first set: the render starts now
    watch.popen.send_signal(signum)
    code, _, err = watch.finish()  # within the deadline, not the template's minutes

    assert code == 0, err
    assert not dest.exists()
    assert leftovers(tmp_path) == []
    assert "Traceback" not in err


def test_watch_once_interrupted_in_a_slow_render_writes_nothing(
    swarm_dns: FakeSwarm, spawn: Spawn, tmp_path: Path
) -> None:
    swarm_dns.create_service("web", replicas=1)
    slow = tmp_path / "slow.j2"
    slow.write_text(SLOW)
    dest = tmp_path / "out"

    watch = spawn("watch", "web", "--once", "--render", f"{slow}:{dest}")
    watch.line()
    watch.popen.send_signal(signal.SIGTERM)
    code, _, err = watch.finish()

    assert code == 130, err
    assert not dest.exists()
    assert err.endswith("run it again\n")


# -- a command that could not start ------------------------------------------------------


def test_a_command_that_could_not_start_is_tried_again(
    swarm_dns: FakeSwarm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    swarm_dns.create_service("web", replicas=1)
    ran = tmp_path / "ran"
    real_popen = subprocess.Popen
    tries: list[object] = []

    def popen(*args: Any, **kwargs: Any) -> object:
        tries.append(args)
        if len(tries) == 1:  # as when every descriptor is taken
            raise OSError(errno.EMFILE, "Too many open files")
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen)

    code = _cli.main(["watch", "web", "--once", "--exec", f"touch {ran}"], out=io.StringIO())

    assert code == 0
    assert len(tries) == 2
    assert ran.exists()
    assert capfd.readouterr().err == (
        f"swarmdns: could not start the command 'touch {ran}' (for web): [Errno 24] Too many"
        " open files; trying again in 0.5 s\n"
    )


def test_a_command_that_found_no_descriptor_starts_once_one_is_free(
    swarm_dns: FakeSwarm, spawn: Spawn, tmp_path: Path
) -> None:
    """A real shortage: the watch may open no descriptor more, then SIGHUP asks it to act."""
    swarm_dns.create_service("web", replicas=1)
    runs = Fifo(tmp_path / "runs")
    try:
        watch = spawn("watch", "web", "--interval", "0.05", "--json",
                      "--exec", f"echo ran > {runs.path}")  # fmt: skip
        runs.next_run()
        # Told once the run is over and its pipe closed: what is open now stays open.
        watch.lines_until('"event": "command"')
        pid = watch.popen.pid
        limit = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        taken = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
        lowest_free = min(set(range(len(taken) + 1)) - taken)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free, limit[1]))  # none is left
        try:
            watch.popen.send_signal(signal.SIGHUP)
            refused = watch.stderr_until("could not start the command")
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, limit)
        again = runs.next_run()  # tried again, not left until the next change
        watch.popen.send_signal(signal.SIGTERM)
        code, _, err = watch.finish()
    finally:
        runs.close()

    assert "[Errno 24] Too many open files; trying again in 0.5 s" in refused
    assert again == "ran\n"
    assert code == 0, err
