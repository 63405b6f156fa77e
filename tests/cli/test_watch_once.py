"""``swarmdns watch --once``, run as a subprocess against the fake."""

from __future__ import annotations

import io
import json
import re
import signal
import threading
from datetime import datetime, timezone
from pathlib import Path

from swarmdns import _cli
from swarmdns.testing import FakeSwarm, Fault

from .helpers import (
    DEADLINE,
    assert_one_line_error,
    fail_lookups,
    moment,
    run,
    utc_now,
)


def test_watch_once_prints_each_set_and_exits_0(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=1)
    api = swarm_dns.create_service("api", replicas=2)
    before = utc_now()

    plain = run("watch", "web", "api", "nosuch", "--once")
    alone = run("watch", "web", "--once")
    as_json = run("watch", "api", "web", "--once", "--json")

    stamp = r"\d\d:\d\d:\d\d"
    (web_ip,), (api_1, api_2) = web.task_ips, api.task_ips
    assert (plain.returncode, plain.stderr) == (0, "")
    assert re.sub(stamp, "T", plain.stdout) == (
        f"T web +{web_ip} now: {web_ip}\nT api +{api_1} +{api_2} now: {api_1} {api_2}\n"
        "T nosuch now: (none)\n"
    )
    assert re.sub(stamp, "T", alone.stdout) == f"T +{web_ip} now: {web_ip}\n"
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert all(before <= moment(line.pop("at")) <= datetime.now(timezone.utc) for line in lines)
    assert lines == [
        {
            "event": "change",
            "service": "api",
            "added": [str(api_1), str(api_2)],
            "removed": [],
            "current": [str(api_1), str(api_2)],
        },
        {
            "event": "change",
            "service": "web",
            "added": [str(web_ip)],
            "removed": [],
            "current": [str(web_ip)],
        },
    ]


def test_watch_once_exits_3_when_a_lookup_fails(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=1)
    swarm_dns.create_service("api", replicas=1)
    fail_lookups(swarm_dns, "api")

    one = run("watch", "web", "api", "--once")
    swarm_dns.inject(Fault.SERVFAIL)
    both = run("watch", "web", "api", "--once")

    assert_one_line_error(one, 3, "looking up 'api' failed: ")
    assert "SERVFAIL" in one.stderr
    assert one.stdout.endswith(f" web +{web.task_ips[0]} now: {web.task_ips[0]}\n")
    assert_one_line_error(both, 3, "looking up 2 of 2 services failed: 'web': ")
    assert "; 'api': " in both.stderr
    assert both.stdout == ""


def test_watch_once_renders_and_runs_the_command_once(
    swarm_dns: FakeSwarm, tmp_path: Path
) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    api = swarm_dns.create_service("api", replicas=1)
    template = tmp_path / "all.j2"
    template.write_text(
        "{% for name, s in services.items() %}{{ name }}={{ s.ips | join(',') }}\n{% endfor %}"
    )
    dest = tmp_path / "all"
    runs = tmp_path / "runs"
    command = f'echo "$SWARMDNS_SERVICE" >> {runs}'

    first = run("watch", "web", "api", "--once", "--render", f"{template}:{dest}",
                "--exec", command)  # fmt: skip
    again = run("watch", "web", "api", "--once", "--render", f"{template}:{dest}",
                "--exec", command)  # fmt: skip

    assert (first.returncode, first.stderr) == (0, "")
    ips = {name: ",".join(map(str, s.task_ips)) for name, s in (("web", web), ("api", api))}
    assert dest.read_text() == f"api={ips['api']}\nweb={ips['web']}\n"
    # The second time, the file is as it was: the command does not run (as consul-template).
    assert (again.returncode, again.stderr) == (0, "")
    assert runs.read_text() == "api,web\n"


def test_watch_once_renders_nothing_when_a_lookup_fails(
    swarm_dns: FakeSwarm, tmp_path: Path
) -> None:
    swarm_dns.create_service("web", replicas=1)
    swarm_dns.create_service("api", replicas=1)
    fail_lookups(swarm_dns, "api")
    template = tmp_path / "t.j2"
    template.write_text("{{ services }}\n")
    dest = tmp_path / "out"

    result = run("watch", "web", "api", "--once", "--render", f"{template}:{dest}",
                 "--exec", f"touch {tmp_path / 'ran'}")  # fmt: skip

    assert_one_line_error(result, 3, "looking up 'api' failed: ")
    assert not dest.exists()
    assert not (tmp_path / "ran").exists()


def test_watch_once_exits_4_when_the_command_fails(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=1)

    failed = run("watch", "web", "--once", "--exec", "exit 7")
    slow = run("watch", "web", "--once", "--exec", "sleep 30", "--exec-timeout", "0.2")

    assert failed.returncode == 4, failed
    logged, summary = failed.stderr.splitlines()
    assert re.fullmatch(
        r"swarmdns: the command 'exit 7' \(for web\) exited with status 7 after [0-9.e-]+ s",
        logged,
    )
    assert summary == (
        "swarmdns: the --exec command failed (above); run it by hand to see why, then fix it"
    )
    assert slow.returncode == 4, slow
    assert "ran past its timeout of 0.2 s" in slow.stderr
    assert slow.stderr.endswith(
        "swarmdns: the --exec command ran past --exec-timeout (above); raise it if the command"
        " needs longer\n"
    )


def test_watch_outside_the_main_thread_leaves_signals_alone(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=1)
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(_cli.main(["watch", "web", "--once"], out=io.StringIO()))
    )
    before = signal.getsignal(signal.SIGTERM)

    thread.start()
    thread.join(DEADLINE)

    assert codes == [0]  # no ValueError: signal handlers are for the main thread only
    assert signal.getsignal(signal.SIGTERM) is before


def test_watch_once_refuses_metrics_that_nothing_could_scrape() -> None:
    assert_one_line_error(
        run("watch", "web", "--once", "--metrics", "0"), 2, "--metrics needs a watch"
    )
