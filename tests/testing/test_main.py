"""``python -m swarmdns.testing``: the README's first command."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys

import dns.message
import dns.query
import pytest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarmdns.testing", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_demo_shows_vip_tasks_changes_and_vanishing() -> None:
    result = run("--seed", "1")

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"^    web +10\.0\.1\.2$", out, re.MULTILINE)
    assert re.search(r"^    tasks\.web +10\.0\.1\.3 10\.0\.1\.4 10\.0\.1\.5$", out, re.MULTILINE)
    assert re.search(r"PTR 10\.0\.1\.3 +web\.1\.\w{25}\.proxy\.$", out, re.MULTILINE)
    assert re.search(r"^    db +10\.0\.1\.10 10\.0\.1\.11$", out, re.MULTILINE)
    assert re.search(r"^    web +NXDOMAIN$", out, re.MULTILINE)
    assert re.search(r"^    tasks\.web +NXDOMAIN$", out, re.MULTILINE)
    assert result.stderr == ""


def test_demo_output_repeats_with_a_seed() -> None:
    def without_port(text: str) -> str:
        return re.sub(r"127\.0\.0\.1:\d+", "ADDRESS", text)

    assert without_port(run("--seed", "5").stdout) == without_port(run("--seed", "5").stdout)


def test_serve_answers_until_interrupted() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "swarmdns.testing", "--serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", first)
        assert match, first
        for line in process.stdout:
            if "Ctrl-C" in line:
                break
        else:
            pytest.fail(f"the server ended early: {process.stderr and process.stderr.read()}")
        query = dns.message.make_query("tasks.web", "A")
        reply = dns.query.udp(query, "127.0.0.1", port=int(match.group(1)), timeout=5)
        assert len(reply.answer[0]) == 3
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stopped" in out


def test_a_bad_port_is_a_usage_error() -> None:
    result = run("--port", "70000")

    assert result.returncode == 2
    assert "'70000' is not a port number from 0 to 65535" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_reported_without_a_traceback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        result = run("--port", str(taken.getsockname()[1]))

    assert result.returncode == 1
    assert result.stderr.startswith("cannot listen on 127.0.0.1:")
    assert "Traceback" not in result.stderr
