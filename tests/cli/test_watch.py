"""``swarmdns watch``: its lines, failures and recoveries, run as a subprocess against the fake."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from ipaddress import IPv4Address
from pathlib import Path
from typing import ClassVar, TextIO

import pytest

from swarmdns import _cli
from swarmdns._backends.direct import DirectBackend
from swarmdns._cli import query
from swarmdns.testing import FakeSwarm, Outcome

from .helpers import (
    DEADLINE,
    SWARMDNS,
    Spawn,
    assert_one_line_error,
    fail_lookups,
    moment,
    run,
    utc_now,
    wait_for_more_lookups,
)


def test_watch_prints_a_line_per_change_and_ctrl_c_exits_0(
    swarm_dns: FakeSwarm, spawn: Spawn
) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    before = utc_now()
    watch = spawn("watch", "web", "--json", "--interval", "0.05")

    first = json.loads(watch.line())
    web = swarm_dns.scale("web", 3)
    second = json.loads(watch.line())
    after = datetime.now(timezone.utc)
    watch.popen.send_signal(signal.SIGINT)

    assert before <= moment(first.pop("at")) <= moment(second.pop("at")) <= after
    assert first == {
        "event": "change",
        "service": "web",
        "added": sorted(str(ip) for ip in web.task_ips[:2]),
        "removed": [],
        "current": [str(ip) for ip in web.task_ips[:2]],
    }
    assert second == {
        "event": "change",
        "service": "web",
        "added": [str(web.task_ips[2])],
        "removed": [],
        "current": [str(ip) for ip in web.task_ips],
    }
    assert watch.finish() == (0, "", "")


def test_watch_plain_lines(swarm_dns: FakeSwarm, spawn: Spawn) -> None:
    web = swarm_dns.create_service("web", replicas=1)
    watch = spawn("watch", "web", "--interval", "0.05")

    line = watch.line()

    assert re.fullmatch(rf"\d\d:\d\d:\d\d \+{web.task_ips[0]} now: {web.task_ips[0]}\n", line)


def test_watch_follows_several_services_and_names_each_on_its_line(
    swarm_dns: FakeSwarm, spawn: Spawn
) -> None:
    web = swarm_dns.create_service("web", replicas=1)
    api = swarm_dns.create_service("api", replicas=2)
    watch = spawn("watch", "web", "api", "nosuch", "--interval", "0.05")

    first = {watch.line() for _ in range(3)}
    api = swarm_dns.scale("api", 3)
    change = watch.line()

    stamp = r"\d\d:\d\d:\d\d"
    web_ip, (api_1, api_2, api_3) = web.task_ips[0], api.task_ips
    assert sorted(re.sub(stamp, "T", line) for line in first) == [
        f"T api +{api_1} +{api_2} now: {api_1} {api_2}\n",
        "T nosuch now: (none)\n",
        f"T web +{web_ip} now: {web_ip}\n",
    ]
    assert re.sub(stamp, "T", change) == f"T api +{api_3} now: {api_1} {api_2} {api_3}\n"


def test_watch_json_lines_of_several_services(swarm_dns: FakeSwarm, spawn: Spawn) -> None:
    swarm_dns.create_service("web", replicas=1)
    swarm_dns.create_service("api", replicas=2)
    watch = spawn("watch", "web", "api", "--json", "--interval", "0.05")

    lines = [json.loads(watch.line()) for _ in range(2)]

    assert sorted((line["service"], len(line["current"])) for line in lines) == [
        ("api", 2),
        ("web", 1),
    ]


def test_watch_json_reports_a_failure_once_then_the_recovery(
    swarm_dns: FakeSwarm, spawn: Spawn
) -> None:
    swarm_dns.create_service("web", replicas=2)
    watch = spawn("watch", "web", "--json", "--interval", "0.05")
    first = json.loads(watch.line())

    fail_lookups(swarm_dns, "web")
    failure = json.loads(watch.line())
    wait_for_more_lookups(swarm_dns, "web")  # failing all along: no second failure event
    swarm_dns.clear_faults()
    recovery = json.loads(watch.line())
    web = swarm_dns.scale("web", 3)
    change = json.loads(watch.line())

    assert failure["event"] == "failure"
    assert failure["service"] == "web"
    assert "SERVFAIL" in failure["error"]
    assert "tasks.web" in failure["error"]
    assert set(failure) == {"event", "at", "service", "error"}
    assert (recovery["event"], recovery["service"]) == ("recovery", "web")
    assert set(recovery) == {"event", "at", "service", "failed_for"}
    failed_at, recovered_at = moment(failure["at"]), moment(recovery["at"])
    assert moment(first["at"]) <= failed_at <= recovered_at <= moment(change["at"])
    assert recovery["failed_for"] == pytest.approx(
        (recovered_at - failed_at).total_seconds(), abs=0.002
    )
    assert (change["event"], change["added"]) == ("change", [str(web.task_ips[2])])


def test_watch_stamps_a_failure_with_the_first_failed_lookup_not_when_it_noticed(
    swarm_dns: FakeSwarm, spawn: Spawn
) -> None:
    swarm_dns.create_service("web", replicas=2)
    # A long interval: the watch notices a failure up to a second after the lookup.
    watch = spawn("watch", "web", "--json", "--interval", "1")
    watch.line()
    wall_minus_monotonic = time.time() - time.monotonic()

    fail_lookups(swarm_dns, "web")
    failure = json.loads(watch.line())
    wait_for_more_lookups(swarm_dns, "web", more=1)  # so there are two failed ones at least
    failed = [
        datetime.fromtimestamp(record.received + wall_minus_monotonic, timezone.utc)
        for record in swarm_dns.queries
        if record.name == "tasks.web" and record.outcome is Outcome.SERVFAIL
    ]

    # Between the first failed lookup (the times are cut to the millisecond)
    # and the retry that follows it.
    assert failed[0] - timedelta(milliseconds=1) <= moment(failure["at"]) <= failed[1]


def test_watch_text_reports_failing_lookups_and_their_recovery(
    swarm_dns: FakeSwarm, spawn: Spawn
) -> None:
    swarm_dns.create_service("web", replicas=1)
    api = swarm_dns.create_service("api", replicas=1)
    watch = spawn("watch", "web", "api", "--interval", "0.05")
    watch.line(), watch.line()

    fail_lookups(swarm_dns, "api")
    failing = watch.line()
    wait_for_more_lookups(swarm_dns, "api")
    swarm_dns.clear_faults()
    working = watch.line()
    api = swarm_dns.scale("api", 2)
    change = watch.line()

    assert re.fullmatch(
        r"\d\d:\d\d:\d\d api lookups failing: \S+ answered SERVFAIL for A 'tasks\.api\.'.*\n",
        failing,
    )
    assert re.fullmatch(r"\d\d:\d\d:\d\d api lookups work again after \d+\.\d s\n", working)
    assert change.endswith(f" api +{api.task_ips[1]} now: {api.task_ips[0]} {api.task_ips[1]}\n")


def test_watch_reports_a_failing_first_lookup_before_the_first_set(
    swarm_dns: FakeSwarm, spawn: Spawn
) -> None:
    web = swarm_dns.create_service("web", replicas=1)
    fail_lookups(swarm_dns, "web")
    watch = spawn("watch", "web", "--json", "--interval", "0.05")

    failure = json.loads(watch.line())
    swarm_dns.clear_faults()
    recovery, first = json.loads(watch.line()), json.loads(watch.line())

    assert [failure["event"], recovery["event"], first["event"]] == [
        "failure",
        "recovery",
        "change",
    ]
    assert first["current"] == [str(web.task_ips[0])]


def test_watch_fail_after_exits_3(swarm_dns: FakeSwarm, spawn: Spawn) -> None:
    swarm_dns.create_service("web", replicas=1)
    fail_lookups(swarm_dns, "web")
    watch = spawn("watch", "web", "--interval", "0.05", "--fail-after", "0.5", "--json")

    code, out, err = watch.finish()

    assert code == 3
    assert [json.loads(line)["event"] for line in out.splitlines()] == ["failure"]
    assert err.count("\n") == 1
    found = re.fullmatch(
        r"swarmdns: no successful lookup of 'web' for (\d+\.\d) s, longer than --fail-after"
        r" 0\.5; the last error: .*SERVFAIL.*\n",
        err,
    )
    assert found, err
    assert float(found.group(1)) >= 0.5


def test_watch_fail_after_leaves_a_working_watch_alone(swarm_dns: FakeSwarm, spawn: Spawn) -> None:
    swarm_dns.create_service("web", replicas=1)
    watch = spawn("watch", "web", "--interval", "0.05", "--fail-after", "0.1", "--json")
    watch.line()

    wait_for_more_lookups(swarm_dns, "web", more=20)  # about a second
    web = swarm_dns.scale("web", 2)

    assert json.loads(watch.line())["added"] == [str(web.task_ips[1])]
    assert watch.popen.poll() is None


def test_watch_into_head_ends_when_head_does(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=1)
    # No change will come for a minute: only head leaving can end the watch.
    watch = subprocess.Popen(
        [*SWARMDNS, "watch", "web", "--interval", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watch.stdout is not None
    assert watch.stderr is not None
    try:
        head = subprocess.run(
            ["head", "-1"],
            stdin=watch.stdout,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        watch.stdout.close()  # head was its only reader, and has left
        code = watch.wait(timeout=DEADLINE)
        err = watch.stderr.read()
    finally:
        if watch.poll() is None:
            watch.kill()
        watch.communicate(timeout=DEADLINE)

    assert re.fullmatch(
        rf"\d\d:\d\d:\d\d \+{web.task_ips[0]} now: {web.task_ips[0]}\n", head.stdout
    )
    assert (code, err) == (0, "")


def test_watch_needs_a_service() -> None:
    assert_one_line_error(run("watch"), 2, "the following arguments are required: SERVICE")


def test_watch_serves_prometheus_metrics(swarm_dns: FakeSwarm, spawn: Spawn) -> None:
    swarm_dns.create_service("web", replicas=2)
    with socket.socket() as probe:  # a free port, for the metrics server to take
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    watch = spawn("watch", "web", "--interval", "0.05", "--metrics", f"127.0.0.1:{port}")

    watch.line()  # the initial set: the metrics server is up by now
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=DEADLINE) as reply:
        text = reply.read().decode()

    assert 'swarmdns_tasks{service="web"} 2.0' in text
    assert 'swarmdns_changes_total{service="web"} 1.0' in text


def test_watch_metrics_needs_a_port() -> None:
    assert_one_line_error(run("watch", "web", "--metrics", "web:"), 2, "give PORT (on 127.0.0.1)")


@contextlib.contextmanager
def watch_in_process(args: list[str]) -> Iterator[tuple[TextIO, list[int]]]:
    """``swarmdns ARGS`` in a thread of this process (for a patch), its output on a pipe.

    Yields the pipe's reading end and the list that gets the exit code. Leaving
    closes the reading end, which ends the watch, and joins its thread.
    """
    read_end, write_end = os.pipe()
    codes: list[int] = []
    with open(write_end, "w", encoding="utf-8") as out:
        with open(read_end, encoding="utf-8") as lines:
            watch = threading.Thread(
                target=lambda: codes.append(_cli.main(args, out)), daemon=True
            )
            watch.start()
            yield lines, codes
        watch.join(DEADLINE)


def test_watch_exclude_self_leaves_out_this_containers_addresses(
    swarm_dns: FakeSwarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = swarm_dns.create_service("web", replicas=3)
    me = web.task_ips[1]
    monkeypatch.setattr("swarmdns._own_addresses.local_addresses", lambda: frozenset({me}))
    out, everyone = io.StringIO(), io.StringIO()

    code = _cli.main(["watch", "web", "--once", "--json", "--exclude-self"], out=out)
    _cli.main(["watch", "web", "--once", "--json"], out=everyone)

    assert code == 0
    assert json.loads(out.getvalue())["current"] == [str(ip) for ip in web.task_ips if ip != me]
    assert json.loads(everyone.getvalue())["current"] == [str(ip) for ip in web.task_ips]


def test_watch_exclude_self_holds_for_every_change_too(
    swarm_dns: FakeSwarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    me = web.task_ips[0]
    monkeypatch.setattr("swarmdns._own_addresses.local_addresses", lambda: frozenset({me}))
    args = ["watch", "web", "--json", "--interval", "0.05", "--exclude-self"]
    with watch_in_process(args) as (lines, codes):
        first = json.loads(lines.readline())
        web = swarm_dns.scale("web", 3)
        second = json.loads(lines.readline())

    assert first["current"] == [str(web.task_ips[1])]
    assert second["added"] == [str(web.task_ips[2])]
    assert me not in map(IPv4Address, second["current"])
    assert codes == [0]


class CountedBackend(DirectBackend):
    """A ``DirectBackend`` that counts how many are made."""

    made: ClassVar[list[CountedBackend]] = []

    def __init__(self, nameservers: Sequence[str] | None = None) -> None:
        super().__init__(nameservers)
        CountedBackend.made.append(self)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[CountedBackend]:
    """The backends the command line makes from now on."""
    CountedBackend.made = []
    monkeypatch.setattr(query, "DirectBackend", CountedBackend)
    return CountedBackend.made


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "t.j2"
    path.write_text("{% for task in tasks %}{{ task.ip }} {{ task.name }}\n{% endfor %}")
    return path


def test_watch_once_makes_its_backend_once(
    swarm_dns: FakeSwarm, counted: list[CountedBackend], template: Path, tmp_path: Path
) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    dest = tmp_path / "out"
    args = ["watch", "web", "--once", "--nameserver", swarm_dns.nameserver]

    code = _cli.main([*args, "--render", f"{template}:{dest}", "--exec", "true"], io.StringIO())

    assert code == 0
    assert len(counted) == 1
    assert dest.read_text() == "".join(f"{t.ip} {t.name}\n" for t in web.tasks)


def test_watch_makes_its_backend_once(
    swarm_dns: FakeSwarm, counted: list[CountedBackend], template: Path, tmp_path: Path
) -> None:
    web = swarm_dns.create_service("web", replicas=1)
    dest = tmp_path / "out"
    args = ["watch", "web", "--interval", "0.05", "--nameserver", swarm_dns.nameserver]
    with watch_in_process([*args, "--render", f"{template}:{dest}", "--json"]) as (lines, codes):
        first = json.loads(lines.readline())

    assert codes == [0]
    assert first["current"] == [str(web.task_ips[0])]
    assert len(counted) == 1
