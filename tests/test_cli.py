"""The ``swarmdns`` command, run as a subprocess against the fake."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest

import swarmdns.testing
from swarmdns import _cli
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


def test_tasks_of_an_empty_service_is_empty_not_an_error(swarm_dns: FakeSwarm) -> None:
    swarm_dns.create_service("web", replicas=0)

    result = run("tasks", "web", "--json")

    assert (result.returncode, json.loads(result.stdout)) == (0, [])


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
    ],
)
def test_usage_errors_exit_2(swarm_dns: FakeSwarm, args: tuple[str, ...], words: str) -> None:
    assert_one_line_error(run(*args), 2, words)


@pytest.fixture
def process() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; each is stopped (by its id) if still running."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)


def start(started: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [*SWARMDNS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    started.append(child)
    return child


def test_watch_prints_a_line_per_change_and_ctrl_c_exits_0(
    swarm_dns: FakeSwarm, process: list[subprocess.Popen[str]]
) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    watch = start(process, "watch", "web", "--json", "--interval", "0.05")
    assert watch.stdout is not None

    first = json.loads(watch.stdout.readline())
    web = swarm_dns.scale("web", 3)
    second = json.loads(watch.stdout.readline())
    watch.send_signal(signal.SIGINT)
    out, err = watch.communicate(timeout=30)

    assert first == {
        "service": "web",
        "added": sorted(str(ip) for ip in swarm_dns.service("web").task_ips[:2]),
        "removed": [],
        "current": [str(ip) for ip in web.task_ips[:2]],
    }
    assert second["added"] == [str(web.task_ips[2])]
    assert second["current"] == [str(ip) for ip in web.task_ips]
    assert (watch.returncode, out, err) == (0, "", "")


def test_watch_plain_lines(swarm_dns: FakeSwarm, process: list[subprocess.Popen[str]]) -> None:
    web = swarm_dns.create_service("web", replicas=1)
    watch = start(process, "watch", "web", "--interval", "0.05")
    assert watch.stdout is not None

    line = watch.stdout.readline()

    assert re.fullmatch(rf"\d\d:\d\d:\d\d \+{web.task_ips[0]} now: {web.task_ips[0]}\n", line)


def test_watch_follows_several_services_and_names_each_on_its_line(
    swarm_dns: FakeSwarm, process: list[subprocess.Popen[str]]
) -> None:
    web = swarm_dns.create_service("web", replicas=1)
    api = swarm_dns.create_service("api", replicas=2)
    watch = start(process, "watch", "web", "api", "nosuch", "--interval", "0.05")
    assert watch.stdout is not None

    first = {watch.stdout.readline() for _ in range(3)}
    api = swarm_dns.scale("api", 3)
    change = watch.stdout.readline()

    stamp = r"\d\d:\d\d:\d\d"
    web_ip, (api_1, api_2, api_3) = web.task_ips[0], api.task_ips
    assert sorted(re.sub(stamp, "T", line) for line in first) == [
        f"T api +{api_1} +{api_2} now: {api_1} {api_2}\n",
        "T nosuch now: (none)\n",
        f"T web +{web_ip} now: {web_ip}\n",
    ]
    assert re.sub(stamp, "T", change) == f"T api +{api_3} now: {api_1} {api_2} {api_3}\n"


def test_watch_json_lines_of_several_services(
    swarm_dns: FakeSwarm, process: list[subprocess.Popen[str]]
) -> None:
    swarm_dns.create_service("web", replicas=1)
    swarm_dns.create_service("api", replicas=2)
    watch = start(process, "watch", "web", "api", "--json", "--interval", "0.05")
    assert watch.stdout is not None

    lines = [json.loads(watch.stdout.readline()) for _ in range(2)]

    assert sorted((line["service"], len(line["current"])) for line in lines) == [
        ("api", 2),
        ("web", 1),
    ]


def test_watch_needs_a_service() -> None:
    assert_one_line_error(run("watch"), 2, "the following arguments are required: SERVICE")


def test_serve_runs_the_fake_until_interrupted(
    process: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    description = tmp_path / "swarm.json"
    description.write_text(json.dumps({"services": [{"name": "db", "endpoint_mode": "dnsrr"}]}))
    serve = start(process, "serve", "--service", "api=2", "--file", str(description))
    assert serve.stdout is not None

    banner = serve.stdout.readline()
    port = int(re.search(r"127\.0\.0\.1:(\d+)", banner).group(1))  # type: ignore[union-attr]
    for line in serve.stdout:
        if "Ctrl-C" in line:
            break
    reply = dns.query.udp(
        dns.message.make_query("tasks.api", "A"), "127.0.0.1", port=port, timeout=5
    )
    db = dns.query.udp(dns.message.make_query("db", "A"), "127.0.0.1", port=port, timeout=5)
    serve.send_signal(signal.SIGINT)
    _, err = serve.communicate(timeout=30)

    assert len(reply.answer[0]) == 2
    assert len(db.answer[0]) == 1
    assert (serve.returncode, err) == (0, "")


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


def test_serve_with_a_bad_description_exits_2(tmp_path: Path) -> None:
    description = tmp_path / "swarm.json"
    description.write_text('{"services": "web"}')

    assert_one_line_error(run("serve", "--file", str(description)), 2, "must be a list")
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

    assert result.returncode == 0
    assert result.stdout.startswith("swarmdns 0.1")
