"""``swarmdns control``, run as a subprocess against the fake."""

from __future__ import annotations

import json
import signal
from ipaddress import IPv4Address

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


def test_a_served_fake_is_put_through_updates_and_a_drain(spawn: Spawn) -> None:
    serve = spawn("serve", "--nodes", "3", "--service", "web=3", "--control", "0")
    lines = serve.lines_until("Ctrl-C")
    (announced,) = [line for line in lines if line.startswith("control channel on ")]
    control = ("control", "--address", announced.split()[3])
    # The model, not node-1's DNS: tasks on other nodes reach it after a gossip delay.
    before = json.loads(run(*control, "state").stdout)

    instant = run(
        *control,
        "update_service",
        "name=web",
        "order=start-first",
        "parallelism=2",
        "delays=instant",
    )
    timed = run(*control, "update_service", "name=web", 'delays={"scale": 0.01}', "wait=true")
    updated = json.loads(run(*control, "state").stdout)
    pinned = run(*control, "create_service", "name=pinned", 'placement=["node-3"]')
    drained = run(*control, "drain", "node=node-3", "delays=instant")
    again = run(*control, "operation", f"id={json.loads(drained.stdout)['id']}")
    activated = run(*control, "activate", "node=node-3", "delays=instant", "wait=true")
    state = json.loads(run(*control, "state").stdout)
    serve.popen.send_signal(signal.SIGINT)

    assert (instant.returncode, instant.stderr) == (0, ""), instant
    first = json.loads(instant.stdout)
    assert (first["kind"], first["done"], first["settings"]) == (
        "update",
        True,
        {"order": "start-first", "parallelism": 2, "delay": 0.0},
    )
    assert (first["fewest"], first["most"]) == ({"web": 3}, {"web": 5})
    assert timed.returncode == 0, timed
    second = json.loads(timed.stdout)
    assert (second["done"], second["cancelled"], second["fewest"]) == (True, False, {"web": 2})
    assert second["id"] != first["id"]
    (web_before,) = before["services"]
    (web_after,) = updated["services"]
    assert len(web_after["task_ips"]) == 3
    assert not set(web_after["task_ips"]) & set(web_before["task_ips"]), "new addresses"
    assert web_after["vip"] == web_before["vip"]
    node_3 = state["nodes"][2]
    assert json.loads(pinned.stdout)["placement"] == [node_3["id"]]
    drain = json.loads(drained.stdout)
    assert (drain["kind"], drain["target"], drain["fewest"]["pinned"]) == ("drain", "node-3", 0)
    assert json.loads(again.stdout) == drain
    back = json.loads(activated.stdout)
    assert (back["done"], back["most"]) == (True, {"pinned": 1})
    (task,) = state["services"][1]["tasks"]
    assert (task["node_id"], task["ip"]) == (node_3["id"], back["timeline"][-1]["ip"])
    assert [n["drained"] for n in state["nodes"]] == [False, False, False]
    assert serve.finish() == (0, "", "")


def test_a_served_fake_answers_dns_through_an_update(spawn: Spawn) -> None:
    serve = spawn("serve", "--service", "web=2", "--control", "0")
    lines = serve.lines_until("Ctrl-C")
    host, port = serve_address(lines[0])
    (announced,) = [line for line in lines if line.startswith("control channel on ")]
    control = ("control", "--address", announced.split()[3])
    before = addresses("tasks.web", host, port)
    (vip,) = addresses("web", host, port)

    updated = run(*control, "update_service", "name=web", "delays=instant")
    after = addresses("tasks.web", host, port)
    (vip_after,) = addresses("web", host, port)
    serve.popen.send_signal(signal.SIGINT)

    assert updated.returncode == 0, updated
    timeline = json.loads(updated.stdout)["timeline"]
    assert after == sorted(IPv4Address(e["ip"]) for e in timeline if e["step"] == "entered")
    assert not set(after) & set(before)
    assert vip_after == vip
    assert serve.finish() == (0, "", "")


def test_operations_that_cannot_be_done_exit_as_other_refusals(spawn: Spawn) -> None:
    serve = spawn("serve", "--service", "web=1", "--control", "0")
    lines = serve.lines_until("Ctrl-C")
    (announced,) = [line for line in lines if line.startswith("control channel on ")]
    control = ("control", "--address", announced.split()[3])

    bad_delays = run(*control, "update_service", "name=web", "delays=fast")
    unknown = run(*control, "operation", "id=999999999")
    slow = run(*control, "update_service", "name=web")
    waited = run(
        *control, "operation", f"id={json.loads(slow.stdout)['id']}", "wait=true", "timeout=0"
    )
    busy = run(*control, "update_service", "name=web")
    serve.popen.send_signal(signal.SIGINT)

    assert_one_line_error(bad_delays, 2, "update_service: 'delays' must be \"instant\"")
    assert_one_line_error(unknown, 1, "the fake refused: operation: no operation 999999999")
    assert_one_line_error(waited, 3, "is still running after 0 s")
    assert_one_line_error(busy, 1, "the fake refused: update_service: service 'web' is being")
    assert serve.finish() == (0, "", "")
