"""``swarmdns control``, run as a subprocess against the fake."""

from __future__ import annotations

import json
import signal

import pytest

from .helpers import (
    Spawn,
    addresses,
    assert_one_line_error,
    run,
    serve_address,
)


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


def test_a_served_compose_project_is_driven_through_its_control_channel(spawn: Spawn) -> None:
    serve = spawn("serve", "--compose", "proj", "--service", "web=2", "--control", "0")
    lines = serve.lines_until("Ctrl-C")
    (announced,) = [line for line in lines if line.startswith("control channel on ")]
    control = announced.split()[3]

    scaled = run("control", "--address", control, "scale", "name=web", "replicas=3")
    killed = run("control", "--address", control, "kill_task", "task=proj-web-1")
    refused = run("control", "--address", control, "scale", "name=nosuch", "replicas=1")
    state = run("control", "--address", control, "state")
    serve.popen.send_signal(signal.SIGINT)

    assert scaled.returncode == 0, scaled
    assert [c["name"] for c in json.loads(scaled.stdout)["containers"]] == [
        "proj-web-1",
        "proj-web-2",
        "proj-web-3",
    ]
    assert json.loads(killed.stdout)["state"] == "exited"
    assert_one_line_error(refused, 1, "no service named 'nosuch' in project 'proj'")
    (web,) = json.loads(state.stdout)["services"]
    assert len(web["ips"]) == 2
    assert serve.finish() == (0, "", "")
