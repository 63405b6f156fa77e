"""What ``watch``'s actions did, as JSON lines (``--json``) and as metrics (``--metrics``)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

from swarmdns.testing import FakeSwarm

from .helpers import DEADLINE, ROOT, Child, Fifo, Spawn, free_port, moment, run, scrape

#: One line per address: the file's lines count the tasks.
LINES = "{% for ip in ips %}server {{ ip }}:80;\n{% endfor %}"
#: Refuses a file of three servers.
CHECK = 'test "$(wc -l < "$SWARMDNS_STAGED")" -ne 3'


def template(tmp_path: Path) -> Path:
    path = tmp_path / "upstream.j2"
    path.write_text(LINES)
    return path


def samples(port: int) -> dict[str, float]:
    """The samples of a scrape, by name with labels as printed."""
    found = {}
    for line in scrape(port).splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def events(watch: Child, count: int) -> list[dict[str, Any]]:
    """The next ``count`` JSON lines, each checked for its time."""
    found = [json.loads(watch.line()) for _ in range(count)]
    for each in found:
        moment(each.pop("at"))
    return found


def without_durations(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for each in found:
        duration = each.pop("duration", 0.0)
        assert 0.0 <= duration < DEADLINE, each
    return found


def test_watch_once_json_tells_each_check_render_and_command(
    swarm_dns: FakeSwarm, tmp_path: Path
) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    dest = str(tmp_path / "upstream.conf")

    result = run("watch", "web", "--once", "--json", "--render", f"{template(tmp_path)}:{dest}",
                 "--render-check", CHECK, "--render-exec", "exit 5",
                 "--exec", "true")  # fmt: skip

    lines = [json.loads(line) for line in result.stdout.splitlines()]
    for line in lines:
        moment(line.pop("at"))
    w = {"services": ["web"]}
    assert lines[0]["event"] == "change"
    assert lines[0]["current"] == [str(ip) for ip in web.task_ips]
    assert without_durations(lines[1:]) == [
        {"event": "check", "outcome": "passed", "file": dest, "command": CHECK, "status": 0, **w},
        {"event": "render", "outcome": "changed", "file": dest, **w},
        {"event": "command", "outcome": "failed", "file": dest, "command": "exit 5", "status": 5,
         **w},
        {"event": "command", "outcome": "ok", "command": "true", "status": 0, **w},
    ]  # fmt: skip
    assert result.returncode == 4, result  # the --render-exec failed


def test_the_lines_are_as_the_docs_show_them(swarm_dns: FakeSwarm, tmp_path: Path) -> None:
    documented = (ROOT / "docs" / "cli.md").read_text().splitlines()
    examples = [
        text for text in documented if text.startswith(('{"event": "check"', '{"event": "render"'))
    ]
    shown = {line["event"]: list(line) for line in map(json.loads, examples)}
    swarm_dns.create_service("web", replicas=1)
    dest = tmp_path / "up.conf"

    result = run("watch", "web", "--once", "--json", "--render", f"{template(tmp_path)}:{dest}",
                 "--render-check", "true")  # fmt: skip

    printed = {line["event"]: list(line) for line in map(json.loads, result.stdout.splitlines())}
    assert shown.keys() == {"check", "render"}
    assert {event: printed[event] for event in shown} == shown


def test_a_watch_tells_its_actions_in_order_and_counts_them_in_its_metrics(
    swarm_dns: FakeSwarm, spawn: Spawn, tmp_path: Path
) -> None:
    swarm_dns.create_service("web", replicas=2)
    dest = str(tmp_path / "upstream.conf")
    port = free_port()
    watch = spawn("watch", "web", "--interval", "0.05", "--json", "--metrics", f"127.0.0.1:{port}",
                  "--render", f"{template(tmp_path)}:{dest}", "--render-check", CHECK,
                  "--exec", "exit 3")  # fmt: skip

    first = without_durations(events(watch, 4))
    swarm_dns.scale("web", 3)  # refused by the check: the command does not run
    refused = without_durations(events(watch, 3))
    scraped = samples(port)
    watch.popen.send_signal(signal.SIGTERM)
    code, rest, err = watch.finish()

    assert [(e["event"], e.get("outcome")) for e in first] == [
        ("change", None), ("check", "passed"), ("render", "changed"), ("command", "failed"),
    ]  # fmt: skip
    assert [(e["event"], e.get("outcome")) for e in refused] == [
        ("change", None), ("check", "failed"), ("render", "refused"),
    ]  # fmt: skip
    labels = f'file="{dest}"'
    assert scraped[f'swarmdns_actions_total{{action="render",{labels},outcome="changed"}}'] == 1
    assert scraped[f'swarmdns_actions_total{{action="render",{labels},outcome="refused"}}'] == 1
    assert scraped[f'swarmdns_actions_total{{action="check",{labels},outcome="passed"}}'] == 1
    assert scraped[f'swarmdns_actions_total{{action="check",{labels},outcome="failed"}}'] == 1
    assert scraped['swarmdns_actions_total{action="command",file="",outcome="failed"}'] == 1
    assert scraped[f'swarmdns_action_last_exit_status{{action="check",{labels}}}'] == 1
    assert scraped['swarmdns_action_last_exit_status{action="command",file=""}'] == 3
    seconds = scraped['swarmdns_action_seconds_total{action="command",file="",outcome="failed"}']
    assert 0 < seconds < DEADLINE
    assert "swarmdns_program_running" not in scraped  # no --supervise
    assert code == 0, err
    assert rest == ""


#: A supervised program that exits 3 on SIGTERM.
PROGRAM = """
import signal, sys
signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
signal.signal(signal.SIGHUP, lambda *_: print("reloaded", file=sys.stderr, flush=True))
print("ready", file=sys.stderr, flush=True)
while True:
    signal.pause()
"""


def test_the_supervised_program_is_told_and_counted(
    swarm_dns: FakeSwarm, spawn: Spawn, tmp_path: Path
) -> None:
    swarm_dns.create_service("web", replicas=1)
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    program = f"{sys.executable} {script}"
    port = free_port()
    watch = spawn("watch", "web", "--interval", "0.05", "--json", "--metrics", f"127.0.0.1:{port}",
                  "--render", f"{template(tmp_path)}:{tmp_path / 'out'}",
                  "--supervise", program)  # fmt: skip

    started = events(watch, 3)
    running = samples(port)
    watch.stderr_until("ready")  # its handlers are set: SIGHUP no longer ends it
    swarm_dns.scale("web", 2)
    reloaded = events(watch, 3)
    counted = samples(port)
    watch.popen.send_signal(signal.SIGTERM)
    code, rest, err = watch.finish()

    assert [(e["event"], e.get("outcome")) for e in started] == [
        ("change", None), ("render", "changed"), ("program", "started"),
    ]  # fmt: skip
    assert started[2] == {"event": "program", "outcome": "started", "command": program}
    assert reloaded[2] == {
        "event": "program", "outcome": "reloaded", "command": program, "signal": "SIGHUP"
    }  # fmt: skip
    assert (running["swarmdns_program_running"], running["swarmdns_program_reloads_total"]) == (
        1,
        0,
    )
    assert counted["swarmdns_program_reloads_total"] == 1
    exited = json.loads(rest)
    moment(exited.pop("at"))
    assert exited == {"event": "program", "outcome": "exited", "command": program, "status": 3}
    assert code == 3, err


def test_a_program_that_a_reload_ends_is_told_reloaded_then_exited(
    swarm_dns: FakeSwarm, spawn: Spawn, tmp_path: Path
) -> None:
    swarm_dns.create_service("web", replicas=1)
    watch = spawn("watch", "web", "--interval", "0.05", "--json",
                  "--render", f"{template(tmp_path)}:{tmp_path / 'out'}",
                  "--supervise", "sleep 600")  # fmt: skip

    events(watch, 3)  # its set, the render, and the program started
    swarm_dns.scale("web", 2)  # SIGHUP ends sleep
    code, rest, err = watch.finish()

    told = [json.loads(line) for line in rest.splitlines()]
    assert [(e["event"], e.get("outcome"), e.get("status")) for e in told] == [
        ("change", None, None), ("render", "changed", None), ("program", "reloaded", None),
        ("program", "exited", 128 + signal.SIGHUP),
    ]  # fmt: skip
    assert code == 128 + signal.SIGHUP, err


def test_a_command_the_stop_cuts_short_is_told_stopped(
    swarm_dns: FakeSwarm, spawn: Spawn, tmp_path: Path
) -> None:
    swarm_dns.create_service("web", replicas=1)
    runs = Fifo(tmp_path / "runs")
    command = f"echo started > {runs.path}; exec sleep 600"
    try:
        watch = spawn("watch", "web", "--interval", "0.05", "--json", "--exec", command)
        events(watch, 1)  # its set
        runs.next_run()
        watch.popen.send_signal(signal.SIGTERM)
        code, rest, err = watch.finish()
    finally:
        runs.close()

    (stopped,) = [json.loads(line) for line in rest.splitlines()]
    moment(stopped.pop("at"))
    assert without_durations([stopped]) == [
        {"event": "command", "outcome": "stopped", "command": command, "services": ["web"],
         "status": 128 + signal.SIGTERM}
    ]  # fmt: skip
    assert code == 0, err
