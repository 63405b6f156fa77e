"""The recipes of docs/recipes.md, run as written against the fake and Debian's real programs.

Each test takes the templates, configuration and ``swarmdns watch`` command
lines from the page itself; only paths move into a temporary directory and
the proxy listens on a free loopback port. The fake's tasks live on the
loopback subnet 127.77.0.0/24, so that each task's address can be bound by
a small HTTP server standing in for the replica.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from swarmdns.testing import FakeSwarm, NodeDelays, Service

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "docs" / "recipes.md"
SWARMDNS = [sys.executable, "-m", "swarmdns"]
SUBNET = "127.77.0.0/24"
REPLICA_PORT = 8080
DEADLINE = 30.0  # a bound for a broken test, not a timing expectation

_TITLED = re.compile(r'^```\w+ title="([^"]+)"\n(.*?)^```$', re.MULTILINE | re.DOTALL)
_SHELL = re.compile(r"^```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)

# -- the page ------------------------------------------------------------------------


def documented_file(title: str) -> str:
    """The block of docs/recipes.md titled ``title``."""
    blocks: dict[str, str] = dict(_TITLED.findall(RECIPES.read_text()))
    return blocks[title]


def documented_watch(template: str, *, once: bool = False, supervise: bool = False) -> list[str]:
    """The arguments of the page's ``swarmdns watch`` command that renders ``template``."""
    found = []
    for block in _SHELL.findall(RECIPES.read_text()):
        for line in block.splitlines():
            words = shlex.split(line)
            if words[:1] == ["exec"]:
                words = words[1:]
            if words[:2] == ["swarmdns", "watch"] and any(
                word.startswith(f"{template}:") for word in words
            ):
                found.append(words[1:])
    (command,) = [
        words
        for words in found
        if ("--once" in words) == once and ("--supervise" in words) == supervise
    ]
    return command


def moved(words: Sequence[str], paths: Mapping[str, Path]) -> list[str]:
    """``words`` with each documented directory replaced by the test's own."""
    result = []
    for word in words:
        local_word = word
        for documented, local in paths.items():
            local_word = local_word.replace(documented, f"{local}/")
        result.append(local_word)
    return result


def test_every_recipe_block_is_used_by_a_test() -> None:
    source = Path(__file__).read_text()
    titles = [name for name, _ in _TITLED.findall(RECIPES.read_text())]

    assert len(titles) == 10
    for title in titles:
        assert f'"{title}"' in source, f"no test uses the recipe block {title!r}"


# -- what the tests need ---------------------------------------------------------------


def program(name: str, package: str) -> str:
    """The path of a program from Debian's packages: missing fails in CI, else skips."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: .ci/run installs Debian's {package}")
        pytest.skip(f"{name} is not installed (apt-get install {package})")
    return found


class Check:
    """A condition to poll: ``__call__`` is true once it holds; ``last`` says what was seen."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.last = "nothing yet"

    def __call__(self) -> bool:
        raise NotImplementedError


def eventually(check: Check, context: Path) -> None:
    """Poll ``check`` until it holds; at the deadline, fail with what it saw and the logs."""
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(
                f"{check.what}: not so within {DEADLINE} s; last seen: {check.last}\n"
                f"{logs(context)}"
            )
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Replica:
    """An HTTP server on a task's address that answers with that address."""

    def __init__(self, ip: IPv4Address) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = str(ip).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.ip = ip
        self.server = http.server.ThreadingHTTPServer((str(ip), REPLICA_PORT), Handler)
        self.server.daemon_threads = False  # server_close() waits for every handler
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(DEADLINE)


@pytest.fixture
def replicas() -> Iterator[Callable[[Sequence[IPv4Address]], None]]:
    """Start a replica on each address not yet served; all are closed after the test."""
    running: dict[IPv4Address, Replica] = {}

    def serve(ips: Sequence[IPv4Address]) -> None:
        for ip in ips:
            if ip not in running:
                running[ip] = Replica(ip)

    yield serve
    for replica in running.values():
        replica.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start processes (output to files in tmp_path); each is stopped after the test."""
    started: list[tuple[subprocess.Popen[bytes], signal.Signals]] = []

    def start(
        *argv: str,
        stop: signal.Signals = signal.SIGTERM,
        cwd: Path | None = None,
        stdout: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        log = tmp_path / f"{Path(argv[0]).name}-{len(started)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                argv, stdout=output if stdout is None else stdout, stderr=output, cwd=cwd, env=env
            )
        started.append((process, stop))
        return process

    yield start
    for process, stop in reversed(started):
        if process.poll() is None:
            process.send_signal(stop)
        try:
            process.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stdin):
            if stream is not None:
                stream.close()


def logs(tmp_path: Path) -> str:
    return "\n".join(
        f"--- {log.name}\n{log.read_text()}" for log in sorted(tmp_path.glob("*.log"))
    )


def swarmdns(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SWARMDNS, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answer(url: str) -> str:
    """The body of a GET, ``HTTP <status>`` for an error status, or ``no answer``."""
    try:
        with _DIRECT.open(url, timeout=5) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as error:
        error.close()
        return f"HTTP {error.code}"
    except OSError:  # not listening yet
        return "no answer"


class AnsweredByEach(Check):
    """Requests to ``url`` reach every address of ``ips``, and no other."""

    def __init__(self, url: str, ips: Sequence[IPv4Address]) -> None:
        super().__init__(f"requests to {url} reach each of {len(ips)} tasks")
        self.url = url
        self.wanted = {str(ip) for ip in ips}

    def __call__(self) -> bool:
        seen = {answer(self.url) for _ in range(3 * len(self.wanted))}
        self.last = ", ".join(sorted(seen))
        return seen == self.wanted


class AnsweredWith(Check):
    """A request to ``url`` gets ``expected``."""

    def __init__(self, url: str, expected: str) -> None:
        super().__init__(f"a request to {url} gets {expected}")
        self.url = url
        self.expected = expected

    def __call__(self) -> bool:
        self.last = answer(self.url)
        return self.last == self.expected


@pytest.fixture
def app(
    swarm_dns: FakeSwarm,
    replicas: Callable[[Sequence[IPv4Address]], None],
    monkeypatch: pytest.MonkeyPatch,
) -> Service:
    """A service ``app`` of 3 tasks on loopback addresses, each served by a replica."""
    swarm_dns.create_network("mesh", subnet=SUBNET)
    # The subnet lies outside the fake's pool: the engine's networks include it now.
    monkeypatch.setenv("SWARMDNS_PROVENANCE", ",".join(map(str, swarm_dns.engine_networks)))
    service = swarm_dns.create_service("app", replicas=3, network="mesh")
    replicas(service.task_ips)
    return service


def follows_the_service(
    swarm: FakeSwarm,
    url: str,
    replicas: Callable[[Sequence[IPv4Address]], None],
    context: Path,
    *,
    without_tasks: str,
) -> None:
    """Scale ``app`` up, kill a task, scale it to 0: requests to ``url`` follow each time."""
    app = swarm.scale("app", 5)
    replicas(app.task_ips)
    eventually(AnsweredByEach(url, app.task_ips), context)
    app = swarm.kill_task(app.task_ips[0])
    eventually(AnsweredByEach(url, app.task_ips), context)
    swarm.scale("app", 0)
    eventually(AnsweredWith(url, without_tasks), context)


# -- nginx --------------------------------------------------------------------------


def nginx_here(tmp_path: Path) -> tuple[Path, Path, Path, int]:
    """The recipe's nginx files in tmp_path, and an ``nginx`` that uses them, on a free port.

    Returns:
        The directory of the ``nginx`` wrapper, conf.d, nginx's prefix, its port.
    """
    nginx = program("nginx", "nginx-light")
    prefix = tmp_path / "nginx"
    conf_d = prefix / "conf.d"
    conf_d.mkdir(parents=True)
    port = free_port()
    (tmp_path / "app-upstreams.conf.j2").write_text(documented_file("app-upstreams.conf.j2"))
    (conf_d / "app.conf").write_text(
        documented_file("/etc/nginx/conf.d/app.conf").replace(
            "listen 80;", f"listen 127.0.0.1:{port};"
        )
    )
    (prefix / "nginx.conf").write_text(
        f"pid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log;\n"
        "events {}\n"
        "http {\n"
        "    access_log off;\n"
        + "".join(
            f"    {kind}_temp_path {prefix}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"    include {conf_d}/*.conf;\n"
        "}\n"
    )
    # `nginx` in the recipe's command is this nginx, with its prefix and configuration.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "nginx"
    wrapper.write_text(
        f'#!/bin/sh\nexec {nginx} -p {prefix} -c {prefix}/nginx.conf -e {prefix}/error.log "$@"\n'
    )
    wrapper.chmod(0o755)
    return bin_dir, conf_d, prefix, port


def test_nginx_balances_over_every_task_and_follows_scaling(
    app: Service,
    swarm_dns: FakeSwarm,
    tmp_path: Path,
    replicas: Callable[[Sequence[IPv4Address]], None],
    processes: Callable[..., subprocess.Popen[bytes]],
) -> None:
    bin_dir, conf_d, _, port = nginx_here(tmp_path)
    wrapper = bin_dir / "nginx"
    paths = {"/etc/nginx/conf.d/": conf_d}
    url = f"http://127.0.0.1:{port}/"

    once = swarmdns(
        *moved(documented_watch("app-upstreams.conf.j2", once=True), paths), cwd=tmp_path
    )
    assert once.returncode == 0, once
    processes(str(wrapper), "-g", "daemon off;", stop=signal.SIGQUIT)
    eventually(AnsweredByEach(url, app.task_ips), tmp_path)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    processes(
        *SWARMDNS, *moved(documented_watch("app-upstreams.conf.j2"), paths), cwd=tmp_path, env=env
    )

    follows_the_service(swarm_dns, url, replicas, tmp_path, without_tasks="HTTP 502")

    rendered = (conf_d / "app-upstreams.conf").read_text()
    assert "server 127.0.0.1:65535 down;" in rendered, logs(tmp_path)
    assert "syntax is ok" not in logs(tmp_path)  # `nginx -t -q` is quiet when all is well


def test_nginx_supervised_as_the_entrypoint_follows_scaling_and_stops_with_the_watch(
    app: Service,
    swarm_dns: FakeSwarm,
    tmp_path: Path,
    replicas: Callable[[Sequence[IPv4Address]], None],
    processes: Callable[..., subprocess.Popen[bytes]],
) -> None:
    bin_dir, conf_d, prefix, port = nginx_here(tmp_path)
    paths = {"/etc/nginx/conf.d/": conf_d}
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    command = moved(documented_watch("app-upstreams.conf.j2", supervise=True), paths)

    watch = processes(*SWARMDNS, *command, cwd=tmp_path, env=env)
    eventually(AnsweredByEach(url, app.task_ips), tmp_path)  # nginx started on the rendered file
    master = int((prefix / "nginx.pid").read_text())
    # Each step below is served only once nginx has reloaded the file (SIGHUP from the watch).
    follows_the_service(swarm_dns, url, replicas, tmp_path, without_tasks="HTTP 502")

    assert int((prefix / "nginx.pid").read_text()) == master  # reloaded, never restarted
    watch.send_signal(signal.SIGTERM)  # docker stop: passed on to nginx, which stops
    assert watch.wait(DEADLINE) == 0, logs(tmp_path)  # nginx's own status
    assert not (prefix / "nginx.pid").exists()
    assert answer(url) == "no answer"


# -- HAProxy ------------------------------------------------------------------------


def test_haproxy_balances_over_every_task_and_follows_scaling(
    app: Service,
    swarm_dns: FakeSwarm,
    tmp_path: Path,
    replicas: Callable[[Sequence[IPv4Address]], None],
    processes: Callable[..., subprocess.Popen[bytes]],
) -> None:
    haproxy = program("haproxy", "haproxy")
    etc, run = tmp_path / "etc", tmp_path / "run"
    etc.mkdir()
    run.mkdir()
    port = free_port()
    (tmp_path / "haproxy.cfg.j2").write_text(
        documented_file("haproxy.cfg.j2").replace("bind :80", f"bind 127.0.0.1:{port}")
    )
    paths = {"/etc/haproxy/": etc, "/run/": run}
    url = f"http://127.0.0.1:{port}/"

    once = swarmdns(*moved(documented_watch("haproxy.cfg.j2", once=True), paths), cwd=tmp_path)
    assert once.returncode == 0, once
    # As the recipe starts it, but in the foreground: the test stops it.
    processes(haproxy, "-W", "-f", f"{etc}/haproxy.cfg", "-p", f"{run}/haproxy.pid")
    eventually(AnsweredByEach(url, app.task_ips), tmp_path)
    processes(*SWARMDNS, *moved(documented_watch("haproxy.cfg.j2"), paths), cwd=tmp_path)

    follows_the_service(swarm_dns, url, replicas, tmp_path, without_tasks="HTTP 503")

    assert "    server " not in (etc / "haproxy.cfg").read_text()


def test_haproxy_checks_a_file_before_it_replaces_the_old_one(
    app: Service, swarm_dns: FakeSwarm, tmp_path: Path
) -> None:
    program("haproxy", "haproxy")
    etc = tmp_path / "etc"
    etc.mkdir()
    template = tmp_path / "haproxy.cfg.j2"
    template.write_text(documented_file("haproxy.cfg.j2"))
    once = moved(documented_watch("haproxy.cfg.j2", once=True), {"/etc/haproxy/": etc})
    assert swarmdns(*once, cwd=tmp_path).returncode == 0
    good = (etc / "haproxy.cfg").read_text()
    # A name HAProxy refuses, as a hostile PTR answer could once give.
    template.write_text(
        documented_file("haproxy.cfg.j2").replace("{{ task.name or task.ip }}", "{ bad")
    )

    refused = swarmdns(*once, cwd=tmp_path)

    assert refused.returncode == 4, refused
    assert "--render-check" in refused.stderr
    assert (etc / "haproxy.cfg").read_text() == good
    assert [p.name for p in etc.iterdir()] == ["haproxy.cfg"]


# -- Prometheus file_sd --------------------------------------------------------------


#: The port the page's watch serves its metrics on, which each test replaces with a free one.
METRICS_PORT = "9109"


def target_labels(service: Service) -> dict[str, dict[str, str]]:
    """The labels the page's template gives each task DNS lists, by its target."""
    found = {}
    for task in service.tasks:
        if task.visible:
            labels = {"swarm_service": service.name, "swarm_task_id": task.id}
            if task.slot is None:
                labels |= {"instance": f"{service.name}.{task.node_id}"}
                labels |= {"swarm_node_id": task.node_id}
            else:
                labels |= {"instance": f"{service.name}.{task.slot}"}
                labels |= {"swarm_task_slot": str(task.slot)}
            found[f"{task.ip}:9100"] = labels
    return found


def documented_targets(*services: Service) -> dict[str, dict[str, str]]:
    return {
        target: labels for service in services for target, labels in target_labels(service).items()
    }


class TargetsAre(Check):
    """The rendered file_sd file has one group for each task, with its labels."""

    def __init__(self, path: Path, wanted: Mapping[str, Mapping[str, str]]) -> None:
        super().__init__(f"{path.name} lists {dict(wanted)}")
        self.path = path
        self.wanted = wanted

    def __call__(self) -> bool:
        try:
            self.last = self.path.read_text()
        except FileNotFoundError:
            return False
        groups = json.loads(self.last)
        found = {target: group["labels"] for group in groups for target in group["targets"]}
        return len(groups) == len(found) and found == self.wanted


def prometheus_files(tmp_path: Path, metrics_port: int) -> tuple[Path, list[str]]:
    """The page's template and configuration in ``tmp_path``; the configuration and watch."""
    prometheus, targets = tmp_path / "prometheus", tmp_path / "prometheus" / "targets"
    targets.mkdir(parents=True)
    paths = {"/etc/prometheus/": prometheus}
    (tmp_path / "swarm-targets.json.j2").write_text(documented_file("swarm-targets.json.j2"))
    config = prometheus / "prometheus.yml"
    documented = documented_file("/etc/prometheus/prometheus.yml")
    assert f"localhost:{METRICS_PORT}" in documented
    config.write_text(
        moved([documented.replace(f":{METRICS_PORT}", f":{metrics_port}")], paths)[0]
    )
    watch = moved(documented_watch("swarm-targets.json.j2"), paths)
    assert watch[-2:] == ["--metrics", METRICS_PORT]
    return config, [*watch[:-1], str(metrics_port)]


def test_prometheus_file_sd_targets_follow_every_service(
    swarm_dns: FakeSwarm, tmp_path: Path, processes: Callable[..., subprocess.Popen[bytes]]
) -> None:
    promtool = program("promtool", "prometheus")
    exporters = swarm_dns.create_service("node-exporter", mode="global")
    cadvisor = swarm_dns.create_service("cadvisor", replicas=2)
    config, watch = prometheus_files(tmp_path, free_port())
    target_file = config.parent / "targets" / "swarm.json"
    check = [promtool, "check", "config", str(config)]

    processes(*SWARMDNS, *watch, cwd=tmp_path)
    eventually(TargetsAre(target_file, documented_targets(exporters, cadvisor)), tmp_path)
    valid = subprocess.run(check, capture_output=True, text=True, check=False)
    cadvisor = swarm_dns.scale("cadvisor", 0)
    eventually(TargetsAre(target_file, documented_targets(exporters)), tmp_path)
    without_tasks = subprocess.run(check, capture_output=True, text=True, check=False)

    assert valid.returncode == 0, valid
    assert "SUCCESS" in valid.stdout
    assert without_tasks.returncode == 0, without_tasks


def api(url: str) -> object:
    """The ``data`` of a Prometheus API answer, or None while it does not answer."""
    try:
        with _DIRECT.open(url, timeout=5) as response:
            return json.loads(response.read())["data"]
    except OSError:  # not listening yet
        return None


class PrometheusTargets(Check):
    """Prometheus's active targets of ``job`` are these (address: labels), seen by its API."""

    def __init__(self, url: str, job: str, wanted: Mapping[str, Mapping[str, str]]) -> None:
        super().__init__(f"Prometheus's targets of job {job} are {dict(wanted)}")
        self.url, self.job = f"{url}/api/v1/targets?state=active", job
        self.wanted = {target: {**labels, "job": job} for target, labels in wanted.items()}

    def __call__(self) -> bool:
        data = api(self.url)
        if not isinstance(data, dict):
            return False
        found = {
            target["discoveredLabels"]["__address__"]: target["labels"]
            for target in data["activeTargets"]
            if target["labels"]["job"] == self.job
        }
        self.last = json.dumps(found)
        return found == self.wanted


class Scraped(Check):
    """Prometheus has scraped ``swarmdns_tasks`` of ``job`` from ``instances`` watches: these."""

    def __init__(
        self, url: str, wanted: Mapping[str, int], *, job: str = "swarmdns", instances: int = 1
    ) -> None:
        super().__init__(f"Prometheus scraped swarmdns_tasks of job {job}: {dict(wanted)}")
        self.url = f"{url}/api/v1/query?query=swarmdns_tasks"
        self.wanted = {name: str(count) for name, count in wanted.items()}
        self.job, self.instances = job, instances

    def __call__(self) -> bool:
        data = api(self.url)
        if not isinstance(data, dict):
            return False
        samples = [s for s in data["result"] if s["metric"].get("job") == self.job]
        self.last = json.dumps(samples)
        # Every instance has every service, each with the value wanted.
        seen = {
            (s["metric"].get("instance"), s["metric"]["service"]): s["value"][1] for s in samples
        }
        instances = {instance for instance, _ in seen}
        wanted = {(i, service): v for i in instances for service, v in self.wanted.items()}
        return len(instances) == self.instances and seen == wanted


def test_prometheus_names_each_target_by_its_task_and_scrapes_the_watch(
    swarm_dns: FakeSwarm, tmp_path: Path, processes: Callable[..., subprocess.Popen[bytes]]
) -> None:
    prometheus = program("prometheus", "prometheus")
    exporters = swarm_dns.create_service("node-exporter", mode="global")
    cadvisor = swarm_dns.create_service("cadvisor", replicas=2)
    config, watch = prometheus_files(tmp_path, free_port())
    # Scrapes every second, not every minute: the test's only change to the configuration.
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n" + config.read_text()
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    processes(*SWARMDNS, *watch, cwd=tmp_path)
    eventually(
        TargetsAre(
            config.parent / "targets" / "swarm.json", documented_targets(exporters, cadvisor)
        ),
        tmp_path,
    )
    processes(
        prometheus,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        cwd=tmp_path,
    )
    eventually(PrometheusTargets(url, "swarm", documented_targets(exporters, cadvisor)), tmp_path)
    eventually(Scraped(url, {"node-exporter": 1, "cadvisor": 2}), tmp_path)
    swarm_dns.replace_task(cadvisor.task_ips[0])  # the same slot, a new task ID and address
    cadvisor = swarm_dns.service("cadvisor")
    eventually(PrometheusTargets(url, "swarm", documented_targets(exporters, cadvisor)), tmp_path)
    cadvisor = swarm_dns.scale("cadvisor", 3)
    eventually(PrometheusTargets(url, "swarm", documented_targets(exporters, cadvisor)), tmp_path)
    eventually(Scraped(url, {"node-exporter": 1, "cadvisor": 3}), tmp_path)


def test_promtool_refuses_a_target_file_that_is_not_file_sd(tmp_path: Path) -> None:
    # The check above can fail: promtool reads the target files, not only the configuration.
    promtool = program("promtool", "prometheus")
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "swarm.json").write_text('[{"targets": "10.0.1.3:9100"}]')
    config = tmp_path / "prometheus.yml"
    config.write_text(
        documented_file("/etc/prometheus/prometheus.yml").replace(
            "/etc/prometheus/", f"{tmp_path}/"
        )
    )

    result = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
    )

    assert result.returncode != 0
    assert (
        "swarm.json" in result.stdout + result.stderr or "SD file" in result.stdout + result.stderr
    )


# -- a peers file ------------------------------------------------------------------------

_APP = """\
import os, signal, sys
peers, pid_file = sys.argv[1:]

def reread(*_):
    with open(peers) as file:
        print(" ".join(file.read().split()), flush=True)

signal.signal(signal.SIGHUP, reread)
with open(pid_file, "w") as file:
    file.write(str(os.getpid()))
print("ready", flush=True)
while True:
    signal.pause()
"""


class Lines:
    """A process's stdout, a line at a time, each with a deadline."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self.stream = process.stdout
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.stream, selectors.EVENT_READ)
        self.buffer = b""

    def next(self) -> str:
        deadline = time.monotonic() + DEADLINE
        while b"\n" not in self.buffer:
            if not self.selector.select(deadline - time.monotonic()):
                pytest.fail(f"no line within {DEADLINE} s; so far: {self.buffer!r}")
            chunk = os.read(self.stream.fileno(), 4096)
            if not chunk:
                pytest.fail(f"the output ended; so far: {self.buffer!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    def close(self) -> None:
        self.selector.close()


def test_a_peers_file_is_rewritten_and_the_program_told_on_each_change(
    swarm_dns: FakeSwarm, tmp_path: Path, processes: Callable[..., subprocess.Popen[bytes]]
) -> None:
    app = swarm_dns.create_service("app", replicas=3)
    etc, run = tmp_path / "etc" / "app", tmp_path / "run"
    etc.mkdir(parents=True)
    run.mkdir()
    paths = {"/etc/app/": etc, "/run/": run}
    (tmp_path / "peers.j2").write_text(documented_file("peers.j2"))
    program_lines = Lines(
        processes(
            sys.executable,
            "-c",
            _APP,
            str(etc / "peers"),
            str(run / "app.pid"),
            stdout=subprocess.PIPE,
        )
    )
    try:
        assert program_lines.next() == "ready"
        processes(*SWARMDNS, *moved(documented_watch("peers.j2"), paths), cwd=tmp_path)
        seen = [(program_lines.next(), peers(app))]
        app = swarm_dns.scale("app", 4)
        seen.append((program_lines.next(), peers(app)))
        app = swarm_dns.kill_task(app.task_ips[1])
        seen.append((program_lines.next(), peers(app)))
    finally:
        program_lines.close()

    for read, wanted in seen:
        assert read == wanted
    assert len({read for read, _ in seen}) == 3
    assert (etc / "peers").read_text() == "".join(f"{ip}\n" for ip in sorted(app.task_ips))


def peers(service: Service) -> str:
    """The service's task addresses as the program prints them: sorted, space-separated."""
    return " ".join(str(ip) for ip in sorted(service.task_ips))


# -- nodes whose DNS disagree ------------------------------------------------------------

_RULES = "swarmdns-consistency.rules.yml"
_RULE_TESTS = "swarmdns-consistency.rules.test.yml"


def promtool_test_rules(rules: str, directory: Path) -> subprocess.CompletedProcess[str]:
    """``promtool test rules`` on the page's test cases, against ``rules``."""
    promtool = program("promtool", "prometheus")
    (directory / _RULES).write_text(rules)
    (directory / _RULE_TESTS).write_text(documented_file(_RULE_TESTS))
    return subprocess.run(
        [promtool, "test", "rules", _RULE_TESTS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=directory,
    )


def test_the_consistency_alerts_pass_their_promtool_tests(tmp_path: Path) -> None:
    result = promtool_test_rules(documented_file(_RULES), tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("documented", "broken"),
    [
        ("for: 2m", "for: 0m"),  # fires while a change is still spreading
        ("!= on (service)", "> on (service)"),  # misses the node that sees fewer
    ],
)
def test_the_consistency_rule_tests_catch_a_wrong_rule(
    documented: str, broken: str, tmp_path: Path
) -> None:
    rules = documented_file(_RULES)
    assert documented in rules

    result = promtool_test_rules(rules.replace(documented, broken, 1), tmp_path)

    assert result.returncode != 0, result.stdout


def test_the_consistency_prometheus_config_and_rules_are_valid(tmp_path: Path) -> None:
    promtool = program("promtool", "prometheus")
    for title in ("prometheus-consistency.yml", _RULES):
        (tmp_path / title).write_text(documented_file(title))

    result = subprocess.run(
        [promtool, "check", "config", "prometheus-consistency.yml"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rules found" in result.stdout


class MetricsShow(Check):
    """The metrics at ``url`` show each of these lines."""

    def __init__(self, url: str, lines: Sequence[str]) -> None:
        super().__init__(f"{url} shows {list(lines)}")
        self.url = url
        self.lines = lines

    def __call__(self) -> bool:
        self.last = answer(self.url)
        shown = set(self.last.splitlines())
        return all(line in shown for line in self.lines)


def test_the_consistency_watch_serves_every_metric_its_rules_read(
    swarm_dns: FakeSwarm, tmp_path: Path, processes: Callable[..., subprocess.Popen[bytes]]
) -> None:
    stack = documented_file("swarmdns-consistency.stack.yml")
    assert re.search(r"^\s+mode: global$", stack, re.MULTILINE)
    (command,) = re.findall(r"^\s+command: (.+)$", stack, re.MULTILINE)
    words = shlex.split(command)
    assert words[:2] == ["swarmdns", "watch"]
    port = free_port()
    words = [word.replace("0.0.0.0:9109", f"127.0.0.1:{port}") for word in words]
    assert f"127.0.0.1:{port}" in words
    swarm_dns.create_service("web", replicas=3)
    swarm_dns.create_service("api", replicas=1)
    read = sorted(set(re.findall(r"\bswarmdns_\w+", documented_file(_RULES))))
    assert read == ["swarmdns_consecutive_failures", "swarmdns_tasks"]

    processes(*SWARMDNS, *words[1:], cwd=tmp_path)
    eventually(
        MetricsShow(
            f"http://127.0.0.1:{port}/metrics",
            [
                'swarmdns_tasks{service="web"} 3.0',
                'swarmdns_tasks{service="api"} 1.0',
                'swarmdns_consecutive_failures{service="web"} 0.0',
                'swarmdns_consecutive_failures{service="api"} 0.0',
            ],
        ),
        tmp_path,
    )


class RulesEvaluatedAfter(Check):
    """Prometheus has evaluated its rules at a time after ``moment`` (seconds since the epoch)."""

    def __init__(self, url: str, moment: float) -> None:
        super().__init__(f"Prometheus evaluated its rules after {moment}")
        self.url, self.moment = f"{url}/api/v1/rules", moment

    def __call__(self) -> bool:
        data = api(self.url)
        if not isinstance(data, dict) or not data["groups"]:
            return False
        last = data["groups"][0]["lastEvaluation"]  # RFC 3339, with nanoseconds
        self.last = last
        whole, _, fraction = last.rstrip("Z").partition(".")
        at = datetime.fromisoformat(whole).replace(tzinfo=timezone.utc).timestamp()
        return at + float(f"0.{fraction or 0}") > self.moment


class Disagreeing(Check):
    """Prometheus's ``SwarmDNSNodeDisagrees`` alerts (firing) are these (instance, service)."""

    def __init__(self, url: str, wanted: set[tuple[str, str]]) -> None:
        super().__init__(f"SwarmDNSNodeDisagrees fires for exactly {sorted(wanted)}")
        self.url, self.wanted = f"{url}/api/v1/alerts", wanted

    def __call__(self) -> bool:
        data = api(self.url)
        if not isinstance(data, dict):
            return False
        alerts = [a for a in data["alerts"] if a["labels"]["alertname"] == "SwarmDNSNodeDisagrees"]
        self.last = json.dumps(alerts)
        firing = {(a["labels"]["instance"], a["labels"]["service"]) for a in alerts}
        return firing == self.wanted and all(a["state"] == "firing" for a in alerts)


@pytest.mark.swarm_dns(
    nodes=3, delays=NodeDelays(propagation=0.0, failure_detection=0.5, down=3600.0, rejoin=0.5)
)
def test_prometheus_names_the_node_whose_dns_disagrees_until_it_agrees_again(
    swarm_dns: FakeSwarm, tmp_path: Path, processes: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """The recipe's watch on each of three nodes, its rules, and a running Prometheus.

    The test's only changes: each watch's port, the targets listed (no engine
    DNS to find them through), scrapes and rules every second, and ``for:``
    of 2 s, not 2 min (promtool tests the documented rules above).
    """
    prometheus = program("prometheus", "prometheus")
    swarm_dns.create_service("web", replicas=3)  # one task on each node
    swarm_dns.create_service("api", replicas=1)
    (command,) = re.findall(
        r"^\s+command: (.+)$", documented_file("swarmdns-consistency.stack.yml"), re.MULTILINE
    )
    targets = []
    for node in swarm_dns.nodes:
        port = free_port()
        words = [w.replace("0.0.0.0:9109", f"127.0.0.1:{port}") for w in shlex.split(command)]
        env = {**os.environ, "SWARMDNS_NAMESERVER": node.nameserver}
        processes(*SWARMDNS, *words[1:], cwd=tmp_path, env=env)
        targets.append(f"127.0.0.1:{port}")
    config = documented_file("prometheus-consistency.yml")
    discovered = (
        "    dns_sd_configs:\n      - names: [tasks.dns_consistency]\n"
        "        type: A\n        port: 9109\n"
    )
    assert discovered in config
    config = config.replace(
        discovered, f"    static_configs:\n      - targets: {json.dumps(targets)}\n"
    )
    (tmp_path / "prometheus-consistency.yml").write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n" + config
    )
    rules = documented_file(_RULES)
    assert rules.count("for: 2m") == 1
    (tmp_path / _RULES).write_text(rules.replace("for: 2m", "for: 2s"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    processes(
        prometheus,
        "--config.file=prometheus-consistency.yml",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        cwd=tmp_path,
    )
    every_node_agrees = Disagreeing(url, set())
    eventually(
        Scraped(url, {"web": 3, "api": 1}, job="swarmdns-consistency", instances=3), tmp_path
    )
    # Long enough, with every node scraped, that a rule firing by mistake would (for: 2s).
    eventually(RulesEvaluatedAfter(url, time.time() + 3), tmp_path)
    assert every_node_agrees(), every_node_agrees.last

    swarm_dns.isolate("node-3", paused=False)  # it sees only its own task of web, the others 2
    eventually(Disagreeing(url, {(targets[2], "web"), (targets[2], "api")}), tmp_path)
    swarm_dns.rejoin("node-3")
    eventually(every_node_agrees, tmp_path)
