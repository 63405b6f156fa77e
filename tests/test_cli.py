"""The ``swarmdns`` command, run as a subprocess against the fake."""

from __future__ import annotations

import contextlib
import io
import json
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
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import NamedTuple, Protocol

import dns.message
import dns.query
import pytest

import swarmdns.testing
from swarmdns import _cli
from swarmdns.testing import FakeSwarm, Fault, Outcome

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


def test_vip(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=2)

    plain, as_json = run("vip", "web"), run("vip", "web", "--json")

    assert (plain.returncode, plain.stdout) == (0, f"{web.vip}\n")
    assert json.loads(as_json.stdout) == str(web.vip)


def test_vip_of_a_dnsrr_service_exits_1(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("db", replicas=2, endpoint_mode="dnsrr")

    assert_one_line_error(run("vip", "db"), 1, "no virtual IP")


def test_unknown_service_exits_1(swarm_dns: FakeSwarm) -> None:
    assert_one_line_error(run("vip", "ghost"), 1, "no service 'ghost'")


def test_tasks(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=3, network="proxy")

    plain = run("tasks", "web")
    as_json = run("tasks", "web", "--json")
    names = run("tasks", "web", "--names")
    names_json = run("tasks", "web", "--names", "--json")

    assert plain.stdout.split() == [str(ip) for ip in web.task_ips]
    assert json.loads(as_json.stdout) == [str(ip) for ip in web.task_ips]
    assert [line.split("\t") for line in names.stdout.splitlines()] == [
        [str(t.ip), t.name, str(t.slot), "proxy"] for t in web.tasks
    ]
    assert [(t["ip"], t["task_id"], t["slot"]) for t in json.loads(names_json.stdout)] == [
        (str(t.ip), t.id, t.slot) for t in web.tasks
    ]


@pytest.mark.parametrize("options", [(), ("--json",), ("--names",), ("--names", "--json")])
@pytest.mark.parametrize("service", ["web", "ghost"])
def test_tasks_of_a_service_without_tasks_exits_1_and_prints_nothing(
    swarm_dns: FakeSwarm, options: tuple[str, ...], service: str
) -> None:
    swarm_dns.create_service("web", replicas=0)

    result = run("tasks", service, *options)

    assert_one_line_error(result, 1, f"no task of {service!r}")
    assert f"tasks.{service} is NXDOMAIN" in result.stderr
    assert "scaled to 0" in result.stderr
    assert "--min 0" in result.stderr
    assert result.stdout == ""


def test_tasks_min_0_accepts_none(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=0)

    plain = run("tasks", "web", "--min", "0")
    as_json = run("tasks", "web", "--min", "0", "--json")

    assert (plain.returncode, plain.stdout, plain.stderr) == (0, "", "")
    assert (as_json.returncode, json.loads(as_json.stdout)) == (0, [])


def test_tasks_min_n_wants_that_many(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    first, second = web.task_ips

    too_few = run("tasks", "web", "--min", "3")
    too_few_names = run("tasks", "web", "--min", "3", "--names", "--json")
    enough = run("tasks", "web", "--min", "2")

    for result in too_few, too_few_names:
        assert_one_line_error(result, 1, "wanted at least 3 tasks of 'web', found 2")
        assert f"{first}, {second}" in result.stderr
        assert result.stdout == ""
    assert (enough.returncode, enough.stdout.split()) == (0, [str(first), str(second)])


def test_tasks_min_of_an_unknown_service_says_how_many_were_wanted(swarm_dns: FakeSwarm) -> None:
    result = run("tasks", "ghost", "--min", "3", "--network", "back")

    assert_one_line_error(result, 1, "no task of 'ghost' (wanted at least 3)")
    assert "tasks.ghost.back is NXDOMAIN" in result.stderr


def test_network_option(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=2, network=["front", "back"])

    result = run("tasks", "web", "--network", "back")

    assert result.stdout.split() == [str(ip) for ip in web.task_ips_on("back")]


def test_nameserver_option_overrides_the_environment(swarm_dns: FakeSwarm) -> None:
    with FakeSwarm() as other:
        api = other.create_service("api", replicas=1)

        result = run("tasks", "api", "--nameserver", other.nameserver)

    assert result.stdout.split() == [str(api.task_ips[0])]
    assert swarm_dns.queries == ()


def test_dns_failure_exits_3(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web")
    swarm_dns.inject(Fault.SERVFAIL)

    assert_one_line_error(run("tasks", "web"), 3, "SERVFAIL")


def test_timeout_exits_3(swarm_dns: FakeSwarm) -> None:
    swarm_dns.inject(Fault.NO_REPLY)

    assert_one_line_error(run("vip", "web", "--timeout", "0.2"), 3, "no answer")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((), "the following arguments are required: COMMAND"),
        (("vip",), "the following arguments are required: SERVICE"),
        (("tasks", "web", "--timeout", "0"), "'0' is not a positive number of seconds"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        (("vip", "tasks.web"), "pass the service's own name, 'web'"),
        (("vip", "web", "--nameserver", "nowhere"), "not an IP address"),
        (("serve", "--port", "70000"), "'70000' is not a port number"),
        (("tasks", "web", "--min", "-1"), "'-1' is not a number of tasks (0 or more)"),
        (("tasks", "web", "--min", "all"), "'all' is not a number of tasks"),
        (("watch", "web", "--fail-after", "0"), "'0' is not a positive number of seconds"),
        (("watch", "web", "--once", "--nameserver", "nowhere"), "not an IP address"),
        (("watch", "web", "tasks.api", "--once"), "pass the service's own name, 'api'"),
    ],
)
def test_usage_errors_exit_2(swarm_dns: FakeSwarm, args: tuple[str, ...], words: str) -> None:
    assert_one_line_error(run(*args), 2, words)


@pytest.mark.parametrize(
    "args", [("tasks", "web"), ("watch", "web"), ("watch", "web", "--once")], ids=" ".join
)
def test_a_bad_nameserver_variable_exits_2(
    monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    monkeypatch.setenv("SWARMDNS_NAMESERVER", "nowhere")

    assert_one_line_error(run(*args), 2, "SWARMDNS_NAMESERVER")


#: How long a test waits for a line of output, or for a process to end, before it fails.
DEADLINE = 30.0
ROOT = Path(__file__).resolve().parent.parent


class Child:
    """A running swarmdns; threads read its output, so a test waits for a line with a deadline."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen(
            [*SWARMDNS, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()  # None: the output ended
        self._stderr: list[str] = []
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
        self._stderr.append(self.popen.stderr.read())

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
        for pipe in self.popen.stdout, self.popen.stderr:
            if pipe is not None:
                pipe.close()


class Spawn(Protocol):
    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Child: ...


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start swarmdns with arguments; each process is stopped after the test if still running."""
    started: list[Child] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Child:
        child = Child(*args, env=env)
        started.append(child)
        return child

    yield start
    for child in started:
        child.close()


def moment(text: str) -> datetime:
    """An ``at`` of a JSON line: ISO 8601, in UTC."""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)", text), text
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def utc_now() -> datetime:
    # The lines' times are cut to the millisecond.
    return datetime.now(timezone.utc).replace(microsecond=0)


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


def fail_lookups(swarm: FakeSwarm, service: str) -> None:
    """Make the lookups of ``service`` fail, until ``clear_faults()``."""
    swarm.inject(Fault.SERVFAIL, name=f"tasks.{service}")


def wait_for_more_lookups(swarm: FakeSwarm, service: str, more: int = 10) -> None:
    """Wait until ``service`` has been looked up ``more`` times again."""
    name = f"tasks.{service}"
    swarm.wait_for_queries(swarm.count_queries(name) + more, name=name, timeout=DEADLINE)


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


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize(
    "args",
    [("tasks", "web"), ("watch", "web", "--interval", "60"), ("watch", "web", "--once")],
    ids=["tasks", "watch", "watch-once"],
)
def test_output_nobody_reads_ends_quietly(
    swarm_dns: FakeSwarm, args: tuple[str, ...], unbuffered: bool
) -> None:
    swarm_dns.create_service("web", replicas=3)
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    reading, writing = os.pipe()
    os.close(reading)  # the pipe has no reader from the start
    try:
        child = subprocess.Popen(
            [*SWARMDNS, *args], stdout=writing, stderr=subprocess.PIPE, env=env
        )
    finally:
        os.close(writing)

    _, err = child.communicate(timeout=DEADLINE)

    assert (child.returncode, err) == (0, b"")


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


def test_watch_needs_a_service() -> None:
    assert_one_line_error(run("watch"), 2, "the following arguments are required: SERVICE")


@pytest.mark.parametrize("command", [(), ("tasks",), ("watch",), ("serve",)])
def test_help_shows_the_exit_codes_as_the_docs_do(command: tuple[str, ...]) -> None:
    result = run(*command, "--help")

    assert result.returncode == 0
    assert _cli.EXIT_CODES in result.stdout
    assert f"```text\n{_cli.EXIT_CODES}\n```" in (ROOT / "docs" / "cli.md").read_text()


def serve_address(banner: str) -> tuple[str, int]:
    found = re.match(r"fake Swarm DNS listening on (127\.0\.0\.1|\[::1\]):(\d+) ", banner)
    assert found, banner
    return found.group(1).strip("[]"), int(found.group(2))


def addresses(name: str, host: str, port: int) -> list[IPv4Address]:
    reply = dns.query.udp(dns.message.make_query(name, "A"), host, port=port, timeout=5)
    return sorted(IPv4Address(record.address) for record in reply.answer[0])


def test_serve_runs_the_fake_until_interrupted(spawn: Spawn, tmp_path: Path) -> None:
    description = tmp_path / "swarm.json"
    description.write_text(json.dumps({"services": [{"name": "db", "endpoint_mode": "dnsrr"}]}))
    serve = spawn("serve", "--service", "api=2", "--service", "idle=0", "--file", str(description))

    lines = serve.lines_until("Ctrl-C")
    host, port = serve_address(lines[0])
    api_tasks = addresses("tasks.api", host, port)
    (api_vip,) = addresses("api", host, port)
    db_tasks = addresses("db", host, port)
    serve.popen.send_signal(signal.SIGINT)

    assert len(api_tasks) == 2
    assert len(db_tasks) == 1
    assert f"  api: vip {api_vip}, tasks {api_tasks[0]} {api_tasks[1]}\n" in lines
    assert f"  db: no VIP (dnsrr), tasks {db_tasks[0]}\n" in lines
    assert "  idle: not in DNS (no running task)\n" in lines
    assert serve.finish() == (0, "", "")


@pytest.mark.parametrize("on_path", [False, True], ids=["python-m", "console-script"])
def test_serve_on_localhost_prints_hints_that_work_as_printed(spawn: Spawn, on_path: bool) -> None:
    env = {name: value for name, value in os.environ.items() if name != "SWARMDNS_NAMESERVER"}
    env["PATH"] = os.pathsep.join(
        [str(Path(sys.executable).parent)] * on_path + ["/usr/bin", "/bin"]
    )
    serve = spawn("serve", "--host", "localhost", "--service", "api=2", env=env)

    lines = serve.lines_until("Ctrl-C")
    (dig,) = [line for line in lines if line.startswith("try: dig ")]
    (hint,) = [line.removeprefix("or:").strip() for line in lines if line.startswith("or:")]
    result = subprocess.run(
        ["sh", "-c", hint], env=env, capture_output=True, text=True, timeout=DEADLINE, check=False
    )
    found = re.fullmatch(r"try: dig @(\S+) -p (\d+) (tasks\.api)\n", dig)
    assert found, dig

    serve_address(lines[0])  # an address, not "localhost"
    assert hint.startswith("SWARMDNS_NAMESERVER=")
    assert ("-m swarmdns" not in hint) == on_path
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.split() == [
        str(ip) for ip in addresses(found.group(3), found.group(1), int(found.group(2)))
    ]


def test_serve_says_why_it_cannot_listen() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        in_use = run("serve", "--port", str(port))
    # TEST-NET-1 (RFC 5737): no machine's own address; binding to it fails at once.
    elsewhere = run("serve", "--host", "192.0.2.1")

    assert_one_line_error(in_use, 2, f"cannot listen on 127.0.0.1 port {port}: ")
    assert "choose another --port" in in_use.stderr
    assert_one_line_error(elsewhere, 2, "cannot listen on 192.0.2.1 (any free port): ")
    assert "not an address of this machine" in elsewhere.stderr
    assert "None" not in in_use.stderr + elsewhere.stderr


def test_serve_file_sets_networks_and_their_subnets(spawn: Spawn, tmp_path: Path) -> None:
    description = tmp_path / "swarm.json"
    description.write_text(
        json.dumps(
            {
                "networks": [{"name": "mesh", "subnet": "127.77.0.0/24"}],
                "services": [{"name": "web", "replicas": 2, "network": "mesh"}],
            }
        )
    )
    serve = spawn("serve", "--file", str(description))

    lines = serve.lines_until("Ctrl-C")
    host, port = serve_address(lines[0])
    web_tasks = addresses("tasks.web", host, port)
    (web_vip,) = addresses("web", host, port)

    assert "  networks: mesh 127.77.0.0/24\n" in lines
    assert len(web_tasks) == 2
    assert all(ip in IPv4Network("127.77.0.0/24") for ip in [web_vip, *web_tasks])


def test_serve_keeps_no_query_log(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nobody reads the log of a fake started by serve, which may run for days.
    started: list[FakeSwarm] = []

    class Recorded(FakeSwarm):
        def start(self) -> Recorded:
            started.append(self)
            return super().start()

    def ask_while_serving() -> None:
        (swarm,) = started
        for _ in range(50):
            query = dns.message.make_query("tasks.web", "A")
            dns.query.udp(query, swarm.host, port=swarm.port, timeout=60)
        swarm.wait_for_queries(50)  # still counted

    monkeypatch.setattr(swarmdns.testing, "FakeSwarm", Recorded)
    monkeypatch.setattr(_cli, "_wait_for_interrupt", ask_while_serving)

    assert _cli.main(["serve"], out=io.StringIO()) == 0
    assert started[0].queries == ()


@pytest.mark.parametrize(
    ("description", "words"),
    [
        ('{"services": "web"}', "'services' must be a list of objects"),
        ('{"networks": {"mesh": {}}}', "'networks' must be a list of objects"),
        ('{"networks": [{"name": "mesh", "subnet": "nonsense"}]}', "invalid subnet 'nonsense'"),
        ('{"networks": [{"name": "mesh", "size": 24}]}', "unexpected keyword argument 'size'"),
        ('{"servces": []}', "unknown key 'servces' (it takes networks and services)"),
        ('["web"]', "the description must be a JSON object"),
    ],
)
def test_serve_with_a_bad_description_exits_2(
    tmp_path: Path, description: str, words: str
) -> None:
    path = tmp_path / "swarm.json"
    path.write_text(description)

    assert_one_line_error(run("serve", "--file", str(path)), 2, words)


def test_serve_with_bad_services_exits_2() -> None:
    assert_one_line_error(run("serve", "--service", "web=lots"), 2, "REPLICAS must be a whole")
    assert_one_line_error(run("serve", "--service=web!"), 2, "invalid service name")


def test_demo_shows_the_vip_the_tasks_and_a_watch() -> None:
    result = run("demo")

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"^10\.0\.1\.2$", out, re.MULTILINE)
    assert len(re.findall(r"^10\.0\.1\.\d+\tweb\.\d\.\w{25}$", out, re.MULTILINE)) == 3
    events = re.findall(r"^  \d\d:\d\d:\d\d (.*)$", out, re.MULTILINE)
    assert len(events) == 5  # the initial set, then one event per change
    assert events[-1].endswith("now: (none)")
    assert result.stderr == ""


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("swarmdns")

    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, check=False
    )

    assert (result.returncode, result.stdout) == (0, f"swarmdns {swarmdns.__version__}\n")


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


def test_a_served_fake_is_driven_through_its_control_channel(spawn: Spawn) -> None:
    serve = spawn("serve", "--service", "web=2", "--control", "0")
    lines = serve.lines_until("Ctrl-C")
    host, port = serve_address(lines[0])
    (announced,) = [line for line in lines if line.startswith("control channel on ")]
    control = announced.split()[3]

    scaled = run("control", "--address", control, "scale", "name=web", "replicas=3")
    refused = run("control", "--address", control, "scale", "name=nosuch", "replicas=1")
    state = run("control", "--address", control, "state")
    in_dns = addresses("tasks.web", host, port)
    serve.popen.send_signal(signal.SIGINT)

    assert scaled.returncode == 0, scaled
    assert len(in_dns) == 3
    assert refused.returncode == 1
    assert "the fake refused" in refused.stderr
    assert state.returncode == 0
    (web,) = [s for s in json.loads(state.stdout)["services"] if s["name"] == "web"]
    assert len(web["tasks"]) == 3
    assert serve.finish()[0] == 0


def test_control_needs_an_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWARMDNS_CONTROL", raising=False)

    assert_one_line_error(run("control", "state"), 2, "no control channel given")


def test_control_fields_are_field_equals_value() -> None:
    result = run("control", "--address", "127.0.0.1:9", "scale", "web")

    assert_one_line_error(result, 2, "'web' is not FIELD=VALUE")


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


def test_watch_metrics_needs_host_and_port() -> None:
    assert_one_line_error(run("watch", "web", "--metrics", "9109"), 2, "give HOST:PORT")


def test_serve_help_names_every_engine_the_fake_models() -> None:
    help_text = " ".join(run("serve", "--help").stdout.split())

    versions = ", ".join(swarmdns.testing.ENGINES[:-1]) + f" or {swarmdns.testing.ENGINES[-1]}"
    assert f"{versions} (default: {swarmdns.testing.ENGINES[-1]})" in help_text


def test_watch_exclude_self_leaves_out_this_containers_addresses(
    swarm_dns: FakeSwarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = swarm_dns.create_service("web", replicas=3)
    me = web.task_ips[1]
    monkeypatch.setattr("swarmdns._watch.local_addresses", lambda: frozenset({me}))
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
    monkeypatch.setattr("swarmdns._watch.local_addresses", lambda: frozenset({me}))
    read_end, write_end = os.pipe()
    codes: list[int] = []
    with open(write_end, "w", encoding="utf-8") as out:
        with open(read_end, encoding="utf-8") as lines:
            # In a thread, in this process (for the patch); it ends when its reader goes away.
            watch = threading.Thread(
                target=lambda: codes.append(
                    _cli.main(
                        ["watch", "web", "--json", "--interval", "0.05", "--exclude-self"], out
                    )
                ),
                daemon=True,
            )
            watch.start()
            first = json.loads(lines.readline())
            web = swarm_dns.scale("web", 3)
            second = json.loads(lines.readline())
        watch.join(DEADLINE)

    assert first["current"] == [str(web.task_ips[1])]
    assert second["added"] == [str(web.task_ips[2])]
    assert me not in map(IPv4Address, second["current"])
    assert codes == [0]
