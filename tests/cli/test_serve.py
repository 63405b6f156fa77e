"""``swarmdns serve``, run as a subprocess against the fake."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from ipaddress import IPv4Network
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

import swarmdns.testing
from swarmdns import _cli
from swarmdns._cli import serve as serve_command
from swarmdns.testing import FakeSwarm

from .helpers import (
    DEADLINE,
    Spawn,
    addresses,
    assert_one_line_error,
    run,
    serve_address,
)


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

    def ask_while_serving(stop: threading.Event) -> None:
        (swarm,) = started
        for _ in range(50):
            query = dns.message.make_query("tasks.web", "A")
            dns.query.udp(query, swarm.host, port=swarm.port, timeout=60)
        swarm.wait_for_queries(50)  # still counted

    monkeypatch.setattr(swarmdns.testing, "FakeSwarm", Recorded)
    monkeypatch.setattr(serve_command, "wait_for_interrupt", ask_while_serving)

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


def test_serve_help_names_every_engine_the_fake_models() -> None:
    help_text = " ".join(run("serve", "--help").stdout.split())

    versions = ", ".join(swarmdns.testing.ENGINES[:-1]) + f" or {swarmdns.testing.ENGINES[-1]}"
    assert f"{versions} (default: {swarmdns.testing.ENGINES[-1]})" in help_text


def test_serve_compose_runs_a_compose_project(spawn: Spawn, tmp_path: Path) -> None:
    description = tmp_path / "compose.json"
    description.write_text(
        json.dumps({"services": [{"name": "db", "network": ["default", "back"]}]})
    )
    serve = spawn("serve", "--compose", "shop", "--service", "web=2", "--file", str(description))

    lines = serve.lines_until("Ctrl-C")
    found = re.match(
        r"fake Compose DNS listening on 127\.0\.0\.1:(\d+) .* project shop,", lines[0]
    )
    assert found, lines[0]
    port = int(found.group(1))
    web = addresses("web", "127.0.0.1", port)
    second = addresses("shop-web-2.shop_default", "127.0.0.1", port)
    db_back = addresses("db.shop_back", "127.0.0.1", port)
    query = dns.message.make_query("tasks.web", "A")
    tasks = dns.query.udp(query, "127.0.0.1", port=port, timeout=5)
    serve.popen.send_signal(signal.SIGINT)

    assert len(web) == 2
    assert second == [web[1]]  # numbered in order of their addresses
    assert "  networks: shop_default 172.18.0.0/16, shop_back 172.19.0.0/16\n" in lines
    assert f"  web: shop-web-1 {web[0]}, shop-web-2 {web[1]}\n" in lines
    assert len(db_back) == 1
    assert tasks.rcode() == dns.rcode.NXDOMAIN
    assert serve.finish() == (0, "", "")


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["--compose", "Shop"], "invalid project name 'Shop'"),
        (["--compose", "shop", "--service", "web!"], "invalid service name"),
        (["--compose", "shop", "--nodes", "3"], "--nodes '3' cannot be used with --compose"),
    ],
)
def test_serve_compose_refuses_what_compose_would(arguments: list[str], words: str) -> None:
    assert_one_line_error(run("serve", *arguments), 2, words)


def test_serve_compose_takes_no_networks_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "compose.json"
    path.write_text('{"networks": [{"name": "back"}], "services": [{"name": "web"}]}')

    assert_one_line_error(
        run("serve", "--compose", "shop", "--file", str(path)), 2, 'leave "networks" out'
    )


def test_serve_compose_refuses_what_only_a_swarm_service_has(tmp_path: Path) -> None:
    path = tmp_path / "compose.json"
    path.write_text('{"services": [{"name": "web", "endpoint_mode": "dnsrr"}]}')

    assert_one_line_error(
        run("serve", "--compose", "shop", "--file", str(path)), 2, "not 'endpoint_mode'"
    )


def test_serve_compose_prints_hints_that_work_as_printed(spawn: Spawn) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("SWARMDNS_")}
    serve = spawn("serve", "--compose", "shop", "--service", "api=2", env=env)

    lines = serve.lines_until("Ctrl-C")
    (dig,) = [line for line in lines if line.startswith("try: dig ")]
    (hint,) = [line.removeprefix("or:").strip() for line in lines if line.startswith("or:")]
    result = subprocess.run(
        ["sh", "-c", hint], env=env, capture_output=True, text=True, timeout=DEADLINE, check=False
    )
    found = re.fullmatch(r"try: dig @(\S+) -p (\d+) (api)\n", dig)
    assert found, dig
    served = addresses(found.group(3), found.group(1), int(found.group(2)))  # before it stops
    serve.popen.send_signal(signal.SIGINT)

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.split() == [str(ip) for ip in served]
    assert serve.finish() == (0, "", "")


def test_serve_nodes_runs_a_swarm_of_that_many_nodes(spawn: Spawn) -> None:
    serve = spawn("serve", "--nodes", "3", "--service", "web=3", "--control", "0")

    lines = serve.lines_until("Ctrl-C")
    host, port = serve_address(lines[0])
    (nodes,) = [line for line in lines if line.startswith("  nodes: ")]
    (announced,) = [line for line in lines if line.startswith("control channel on ")]
    state = run("control", "--address", announced.split()[3], "state")
    web = addresses("tasks.web", host, port)
    (vip,) = addresses("web", host, port)
    serve.popen.send_signal(signal.SIGINT)

    listed = json.loads(state.stdout)["nodes"]
    assert [n["name"] for n in listed] == ["node-1", "node-2", "node-3"]
    assert nodes == (
        "  nodes: node-1 (this DNS), "
        + ", ".join(f"{n['name']} (DNS on {n['host']}:{n['port']})" for n in listed[1:])
        + "\n"
    )
    assert listed[0]["port"] == port
    assert f"  web: vip {vip}, tasks {' '.join(map(str, web))}\n" in lines
    assert len(web) == 3, "every node's task is in the banner and in DNS"
    assert serve.finish() == (0, "", "")
