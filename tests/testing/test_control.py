"""The control channel: another process drives a running fake over loopback."""

from __future__ import annotations

import json
import pathlib
import select
import selectors
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import get_args

import attrs
import pytest

import swarmdns
from swarmdns.testing import (
    ControlError,
    Delay,
    EndpointMode,
    FakeControl,
    FakeSwarm,
    Fault,
    NodeDelays,
    OperationDelays,
    Outcome,
    ServiceMode,
    SwarmError,
    TaskState,
    TimelineEvent,
    UpdateOrder,
    UpdateSettings,
    _control_requests,
    _control_server,
)
from swarmdns.testing._responder import MAX_FAULT_NAMES, MAX_QUEUED_FAULTS

from .dns_clients import NoReply, ask_dnspython


@pytest.fixture
def control(swarm_dns: FakeSwarm) -> FakeControl:
    return FakeControl(swarm_dns.serve_control())


class Line:
    """One raw connection to the channel, speaking JSON lines."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> dict[str, object]:
        line = self.file.readline()
        assert line.endswith(b"\n"), line
        reply: dict[str, object] = json.loads(line)
        return reply

    def ask(self, data: bytes) -> dict[str, object]:
        self.send(data + b"\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def line(swarm_dns: FakeSwarm) -> Iterator[Line]:
    connection = Line(swarm_dns.serve_control())
    yield connection
    connection.close()


# -- every operation -----------------------------------------------------------------


def test_services_are_created_scaled_and_removed(
    swarm_dns: FakeSwarm, control: FakeControl
) -> None:
    created = control.create_service(
        "web", 2, network=["front", "back"], aliases=["www"], stack="shop"
    )
    assert created == swarm_dns.service("shop_web")
    assert (created.networks, created.aliases, created.stack) == (
        ("front", "back"),
        ("web", "www"),
        "shop",
    )
    assert control.create_service("db", mode="global", endpoint_mode="dnsrr").vip is None

    scaled = control.scale("shop_web", 4)

    assert scaled == swarm_dns.service("shop_web")
    assert swarmdns.task_ips("www", network="front") == scaled.task_ips
    control.remove_service("shop_web")
    assert [s.name for s in swarm_dns.services] == ["db"]
    assert ask_dnspython(swarm_dns, "tasks.www").rcode == "NXDOMAIN"


def test_a_task_is_killed_by_address_and_rescheduled(
    swarm_dns: FakeSwarm, control: FakeControl
) -> None:
    web = swarm_dns.create_service("web", replicas=3)
    victim, other, third = web.tasks

    after = control.kill_task(str(victim.ip))
    assert after == swarm_dns.service("web")
    assert victim.ip not in swarmdns.task_ips("web")
    assert control.kill_task(other.ip).tasks == (third,)  # an IPv4Address
    dns_task = swarmdns.tasks("web")[0]
    assert control.kill_task(dns_task).tasks == ()  # a swarmdns.Task

    restarted = control.reschedule("web")

    assert [t.slot for t in restarted] == [1, 2, 3]
    assert swarmdns.task_ips("web") == swarm_dns.service("web").task_ips
    replacement = control.replace_task(restarted[0])  # the fake's Task
    assert replacement == swarm_dns.task(replacement.id)
    assert replacement.ip in swarmdns.task_ips("web")


def test_tasks_are_marked_healthy_and_unhealthy(
    swarm_dns: FakeSwarm, control: FakeControl
) -> None:
    (task,) = swarm_dns.create_service("web", healthcheck=True).tasks
    assert ask_dnspython(swarm_dns, "tasks.web").rcode == "NXDOMAIN"

    assert control.mark_healthy(task.name).state is TaskState.RUNNING
    assert swarmdns.task_ips("web") == (task.ip,)
    assert control.mark_unhealthy(str(task.ip)).state is TaskState.UNHEALTHY
    assert ask_dnspython(swarm_dns, "tasks.web").rcode == "NXDOMAIN"


def test_faults_are_injected_and_cleared(swarm_dns: FakeSwarm, control: FakeControl) -> None:
    swarm_dns.create_service("web")

    control.inject(Fault.SERVFAIL, name="tasks.web")
    control.inject(["REFUSED", "no-reply"], name="web", qtype="A")
    assert ask_dnspython(swarm_dns, "tasks.web").rcode == "SERVFAIL"
    assert ask_dnspython(swarm_dns, "web").rcode == "REFUSED"
    with pytest.raises(NoReply):
        ask_dnspython(swarm_dns, "web", timeout=0.5)
    assert ask_dnspython(swarm_dns, "web").rcode == "NOERROR"  # the list is used up
    control.clear_faults("tasks.web")
    assert ask_dnspython(swarm_dns, "tasks.web").rcode == "NOERROR"

    control.inject([Delay(0.01), 0.02, Fault.GARBAGE])
    control.clear_faults()
    assert ask_dnspython(swarm_dns, "web").rcode == "NOERROR"
    assert [q.outcome for q in swarm_dns.queries[-1:]] == [Outcome.NOERROR]


def test_a_delay_is_injected_in_seconds(swarm_dns: FakeSwarm, control: FakeControl) -> None:
    swarm_dns.create_service("web")

    control.inject(0.05, name="web")

    ask_dnspython(swarm_dns, "web")
    assert swarm_dns.queries[-1].delay == 0.05


def test_state_is_the_fakes_own(swarm_dns: FakeSwarm, control: FakeControl) -> None:
    swarm_dns.create_service("web", replicas=2, network="front")
    swarm_dns.create_service("db", healthcheck=True)

    state = control.state()

    assert state == swarm_dns.state()
    assert state.nameserver == swarm_dns.nameserver
    assert state.engine == "28.5"
    assert state.service("web").vip == swarm_dns.service("web").vip
    assert [t.visible for t in state.tasks] == [True, True, False]
    assert [n.name for n in state.networks] == ["front", "default"]
    with pytest.raises(SwarmError, match=r"no service named 'api' \(services: web, db\)"):
        state.service("api")


@pytest.mark.swarm_dns(nodes=2, delays=NodeDelays.INSTANT)
def test_state_has_every_node(swarm_dns: FakeSwarm, control: FakeControl) -> None:
    assert control.state().nodes == swarm_dns.nodes


def test_reset_empties_the_fake(swarm_dns: FakeSwarm, control: FakeControl) -> None:
    swarm_dns.create_service("web")
    swarm_dns.inject(Fault.SERVFAIL)

    control.reset()

    assert control.state().services == ()
    assert ask_dnspython(swarm_dns, "web").rcode == "NXDOMAIN"
    assert swarm_dns.control_address is not None  # still open


@pytest.mark.parametrize("mode", get_args(ServiceMode))
@pytest.mark.parametrize("endpoint_mode", get_args(EndpointMode))
def test_every_mode_and_endpoint_mode_is_taken(
    swarm_dns: FakeSwarm, control: FakeControl, mode: ServiceMode, endpoint_mode: EndpointMode
) -> None:
    created = control.create_service("web", mode=mode, endpoint_mode=endpoint_mode)

    assert created == swarm_dns.service("web")
    assert (created.mode, created.endpoint_mode) == (mode, endpoint_mode)


def test_null_modes_are_the_defaults(swarm_dns: FakeSwarm, line: Line) -> None:
    reply = line.ask(
        b'{"op": "create_service", "name": "web", "mode": null, "endpoint_mode": null}'
    )

    assert reply["ok"], reply
    assert (swarm_dns.service("web").mode, swarm_dns.service("web").endpoint_mode) == (
        "replicated",
        "vip",
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"endpoint_mode": "round-robin"},
            "create_service: endpoint mode must be 'vip' or 'dnsrr', not 'round-robin'",
        ),
        (
            {"mode": "daemon"},
            "create_service: mode must be 'replicated' or 'global', not 'daemon'",
        ),
        # The mode is checked first, as FakeSwarm.create_service() checks it.
        (
            {"mode": "daemon", "endpoint_mode": "rr"},
            "create_service: mode must be 'replicated' or 'global', not 'daemon'",
        ),
    ],
)
def test_a_wrong_mode_is_the_fakes_refusal(
    swarm_dns: FakeSwarm, line: Line, fields: dict[str, str], message: str
) -> None:
    reply = line.ask(json.dumps({"op": "create_service", "name": "web", **fields}).encode())

    assert (reply["ok"], reply["error"], reply["message"]) == (False, "SwarmError", message)
    assert swarm_dns.services == ()


def test_a_wrong_mode_is_sent_and_refused_by_the_fake(control: FakeControl) -> None:
    with pytest.raises(SwarmError, match=r"^create_service: endpoint mode must be 'vip' or"):
        control.create_service("web", endpoint_mode="rr")  # type: ignore[arg-type]


def test_the_fake_refusing_is_a_swarm_error(swarm_dns: FakeSwarm, control: FakeControl) -> None:
    swarm_dns.create_service("web")

    with pytest.raises(SwarmError, match=r"^scale: no service named 'wbe' \(services: web\)"):
        control.scale("wbe", 2)
    with pytest.raises(SwarmError, match=r"kill_task: no task has address 10\.0\.9\.9"):
        control.kill_task("10.0.9.9")
    with pytest.raises(SwarmError, match="already exists"):
        control.create_service("web")
    with pytest.raises(SwarmError, match="has no healthcheck"):
        control.mark_healthy(swarm_dns.service("web").tasks[0])


def test_replicas_beyond_the_networks_room_are_refused_as_the_api_refuses_them(
    swarm_dns: FakeSwarm, control: FakeControl
) -> None:
    room = r"'default', which has 253 free: no address left"

    with pytest.raises(SwarmError, match=rf"^create_service: service 'web' \(5000 tasks.*{room}"):
        control.create_service("web", 5000)
    control.create_service("web", 2)
    with pytest.raises(SwarmError, match=r"^scale: scaling service 'web' from 2 to 300"):
        control.scale("web", 300)
    assert len(swarm_dns.service("web").tasks) == 2


# -- the wire ------------------------------------------------------------------------


def test_requests_on_one_connection_are_answered_in_order(
    swarm_dns: FakeSwarm, line: Line
) -> None:
    line.send(
        b'{"op": "create_service", "name": "web", "replicas": 2}\n'
        b"\n"  # blank lines are skipped
        b'{"op": "scale", "name": "web", "replicas": 3}\n'
        b'{"op": "state"}\n'
    )

    created, scaled, state = line.reply(), line.reply(), line.reply()

    assert [created["ok"], scaled["ok"], state["ok"]] == [True, True, True]
    assert len(created["result"]["tasks"]) == 2  # type: ignore[index]
    assert scaled["result"]["task_ips"] == [str(ip) for ip in swarm_dns.service("web").task_ips]  # type: ignore[index]
    assert [s["name"] for s in state["result"]["services"]] == ["web"]  # type: ignore[index]


def test_a_client_that_reads_late_gets_every_reply(swarm_dns: FakeSwarm, line: Line) -> None:
    swarm_dns.create_service("web", replicas=200, network="big")
    count = 300  # replies of about 30 KB each: far more than the socket buffers hold

    sender = threading.Thread(target=line.send, args=(b'{"op": "state"}\n' * count,))
    sender.start()
    replies = [line.reply() for _ in range(count)]
    sender.join()

    assert all(r["ok"] for r in replies)
    assert swarm_dns.internal_errors == ()


BAD_REQUESTS = [
    (b"{", "a request is one line of JSON"),
    (b"\xff\xfe", "a request is one line of JSON"),
    (b"[" * 30_000 + b"]" * 30_000, "RecursionError"),
    (b'["state"]', 'a JSON object with an "op"'),
    (b"{}", "unknown op null; the ops are activate, clear_faults, create_service, drain"),
    (b'{"op": "scal"}', 'unknown op "scal"'),
    (b'{"op": "scale", "name": "web"}', "scale needs 'replicas'"),
    (b'{"op": "scale", "name": "web", "replica": 2, "replicas": 2}', "scale takes name,"),
    (b'{"op": "scale", "name": "web", "replicas": "2"}', "'replicas' must be a whole number"),
    (b'{"op": "scale", "name": "web", "replicas": true}', "'replicas' must be a whole number"),
    (b'{"op": "scale", "name": "web", "replicas": 1e400}', "'replicas' must be a whole number"),
    (b'{"op": "scale", "name": "web", "replicas": 99999999}', "'replicas' must be at most"),
    (b'{"op": "scale", "name": 5, "replicas": 1}', "'name' must be a string, not 5"),
    (b'{"op": "state", "verbose": true}', "state takes no fields; not 'verbose'"),
    (b'{"op": "create_service", "name": "x", "aliases": "www"}', "a list of strings"),
    (b'{"op": "create_service", "name": "x", "healthcheck": 1}', "true or false"),
    (b'{"op": "create_service", "name": "x", "mode": 1}', "'mode' must be a string, not 1"),
    (b'{"op": "create_service", "name": "x", "endpoint_mode": ["vip"]}', "must be a string"),
    # Every field is read before the fake checks the modes.
    (b'{"op": "create_service", "name": "x", "mode": "rr", "healthcheck": 1}', "true or false"),
    (b'{"op": "inject", "fault": "servfal"}', "a fault (SERVFAIL, REFUSED, NO_REPLY"),
    (b'{"op": "inject", "fault": []}', "a list of 1 to 1000 faults"),
    (b'{"op": "inject", "fault": -1}', "a delay from 0 to 3600 seconds"),
    (b'{"op": "inject", "fault": NaN}', "a delay from 0 to 3600 seconds"),
    (b'{"op": "inject", "fault": {"x": 1}}', "a fault (SERVFAIL"),
    (b'{"op": "update_service", "name": "web", "delays": "fast"}', "'delays' must be \"instant\""),
    (b'{"op": "update_service", "name": "web", "delays": {"stop": 1, "scale": 2}}', "(the others"),
    (b'{"op": "update_service", "name": "web", "delays": {"stpo": 1}}', "any of stop, exit,"),
    (b'{"op": "update_service", "name": "web", "delays": {"stop": -1}}', "'delays': stop must"),
    (b'{"op": "update_service", "name": "web", "delays": {"scale": "x"}}', "factor is a number"),
    (b'{"op": "update_service", "name": "web", "order": "stop"}', '"stop-first" or "start-f'),
    (b'{"op": "update_service", "name": "web", "parallelism": -1}', "'parallelism' must be"),
    (b'{"op": "update_service", "name": "web", "delay": 1e9}', "from 0 to 3600"),
    (b'{"op": "update_service", "name": "web", "wait": "yes"}', "'wait' must be true or"),
    (b'{"op": "update_service", "name": "web", "wait": true, "timeout": -1}', "'timeout' must"),
    (b'{"op": "rollback", "name": "web", "setting": 1}', "rollback takes name, order,"),
    (b'{"op": "drain", "delays": "instant"}', "drain needs 'node'"),
    (b'{"op": "operation", "id": "1"}', "'id' must be a whole number of at least 1"),
    (b'{"op": "operation", "id": 0}', "'id' must be a whole number of at least 1"),
    (b'{"op": "inject", "fault": "SERVFAIL", "qtype": "AAAAA"}', "unknown record type"),
    (b'{"op": "kill_task"}', "kill_task needs 'task'"),
]


def test_a_bad_request_gets_an_error_reply_and_the_fake_goes_on(
    swarm_dns: FakeSwarm, line: Line
) -> None:
    swarm_dns.create_service("web")

    for request, words in BAD_REQUESTS:
        reply = line.ask(request)
        assert (reply["ok"], reply["error"]) == (False, "BadRequest"), request
        assert words in str(reply["message"]), reply

    assert line.ask(b'{"op": "state"}')["ok"]  # the same connection still serves
    assert ask_dnspython(swarm_dns, "web").rcode == "NOERROR"
    assert swarm_dns.internal_errors == ()


def test_a_request_too_long_is_refused_and_skipped(swarm_dns: FakeSwarm, line: Line) -> None:
    limit = _control_server.MAX_REQUEST_BYTES
    padding = b" " * limit
    line.send(b'{"op": "state",' + padding)  # no end of line yet: too long already
    too_long = line.reply()
    line.send(padding + b'"more": 1}\n{"op": "state"}\n')  # the rest is skipped

    assert (too_long["ok"], too_long["error"]) == (False, "RequestTooLarge")
    assert f"at most {limit} bytes" in str(too_long["message"])
    assert line.reply()["ok"]
    whole = line.ask(b'{"op": "state"' + padding + b"}")  # one whole line, too long
    assert whole["error"] == "RequestTooLarge"
    assert line.ask(b'{"op": "state"}')["ok"]
    assert swarm_dns.internal_errors == ()


def test_connections_beyond_the_limit_wait_their_turn(swarm_dns: FakeSwarm) -> None:
    address = swarm_dns.serve_control()
    served = [Line(address) for _ in range(_control_server.MAX_CONNECTIONS)]
    try:
        for connection in served:
            assert connection.ask(b'{"op": "state"}')["ok"]  # each accepted, in turn
        waiting = Line(address)
        waiting.send(b'{"op": "state"}\n')
        assert select.select([waiting.sock], [], [], 0.2)[0] == []  # not served yet

        served.pop().close()

        assert waiting.reply()["ok"]
        waiting.close()
    finally:
        for connection in served:
            connection.close()


def test_a_bug_in_the_fake_is_an_error_reply_not_the_end_of_the_channel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeSwarm() as swarm:
        control = FakeControl(swarm.serve_control())

        def broken(name: str, replicas: int) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(swarm, "scale", broken)

        with pytest.raises(
            ControlError, match=r"scale failed inside the fake \(RuntimeError: boom"
        ) as raised:
            control.scale("web", 1)

        assert raised.value.kind == "InternalError"
        assert [str(e) for e in swarm.internal_errors] == ["boom"]
        assert control.state().services == ()


# -- life cycle ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "::", "example.com", ""])
def test_the_channel_listens_on_loopback_only(swarm_dns: FakeSwarm, host: str) -> None:
    with pytest.raises(ValueError, match="listens on loopback only") as raised:
        swarm_dns.serve_control(host=host)

    assert repr(host) in str(raised.value)
    assert "use 127.0.0.1 or ::1" in str(raised.value)
    assert swarm_dns.control_address is None


@pytest.mark.parametrize(
    ("host", "shown"), [("localhost", "127.0.0.1"), ("127.0.0.2", "127.0.0.2")]
)
def test_any_loopback_address_will_do(swarm_dns: FakeSwarm, host: str, shown: str) -> None:
    address = swarm_dns.serve_control(host=host)

    assert address.startswith(f"{shown}:")
    assert FakeControl(address).state().services == ()


def test_ipv6_loopback_will_do(swarm_dns: FakeSwarm) -> None:
    try:
        socket.socket(socket.AF_INET6).close()
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")

    address = swarm_dns.serve_control(host="::1")

    assert address.startswith("[::1]:")
    assert FakeControl(address).state().services == ()


def test_the_channel_needs_a_running_fake_and_opens_once(swarm_dns: FakeSwarm) -> None:
    address = swarm_dns.serve_control()

    with pytest.raises(RuntimeError, match=f"already open at {address}; close_control"):
        swarm_dns.serve_control()
    swarm_dns.close_control()
    swarm_dns.close_control()  # idempotent
    assert swarm_dns.control_address is None
    with pytest.raises(
        ControlError, match=f"cannot reach the fake's control channel at {address}"
    ):
        FakeControl(address).state()
    with pytest.raises(RuntimeError, match=r"stopped: call start\(\) before serve_control"):
        FakeSwarm().serve_control()


def test_stop_closes_the_channel_and_start_opens_it_again_on_the_same_port() -> None:
    threads = set(threading.enumerate())
    swarm = FakeSwarm().start()
    address = swarm.serve_control()
    control = FakeControl(address)
    idle = Line(address)
    assert idle.ask(b'{"op": "state"}')["ok"]

    swarm.stop()

    assert set(threading.enumerate()) == threads
    assert idle.sock.recv(1) == b""  # the channel closed the connection
    idle.close()
    assert [swarm.control_address] == [None]
    with pytest.raises(ControlError, match="is the fake running") as raised:
        control.state()
    assert raised.value.kind == "Unreachable"

    with swarm:
        assert swarm.control_address == address
        assert control.create_service("web").name == "web"
    host, port = address.rsplit(":", 1)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the channel's own
        sock.bind((host, int(port)))  # free again


def test_a_restart_whose_control_port_was_taken_names_it_and_starts_nothing() -> None:
    swarm = FakeSwarm().start()
    address = swarm.serve_control()
    swarm.stop()
    threads = set(threading.enumerate())
    host, port = address.rsplit(":", 1)

    with socket.socket() as blocker:
        blocker.bind((host, int(port)))
        blocker.listen()
        with pytest.raises(OSError, match="control channel again on " + address):
            swarm.start()

    assert not swarm.running
    assert set(threading.enumerate()) == threads


def test_close_control_keeps_it_closed_across_a_restart() -> None:
    swarm = FakeSwarm().start()
    swarm.serve_control()
    swarm.close_control()
    swarm.stop()

    with swarm:
        assert swarm.control_address is None


def test_shutdown_leaves_no_warning_behind(tmp_path: pathlib.Path) -> None:
    script = tmp_path / "control.py"
    script.write_text(
        textwrap.dedent(
            """
            import socket
            from swarmdns.testing import FakeControl, FakeSwarm

            for _ in range(5):
                with FakeSwarm() as swarm:
                    address = swarm.serve_control()
                    control = FakeControl(address)
                    control.create_service("web", replicas=2)
                    control.kill_task(control.state().tasks[0].ip)
                    host, port = address.rsplit(":", 1)
                    idle = socket.create_connection((host, int(port)))
                    half = socket.create_connection((host, int(port)))
                    half.sendall(b'{"op": "sta')
                    swarm.stop()
                    swarm.start()
                    control.state()
                for sock in (idle, half):
                    sock.close()
            print("done")
            """
        )
    )

    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert (result.returncode, result.stdout, result.stderr) == (0, "done\n", "")


def test_the_fixture_closes_a_channel_a_test_opened(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_downstream="""
        from swarmdns.testing import FakeControl

        def test_opens(swarm_dns):
            FakeControl(swarm_dns.serve_control()).create_service("web")

        def test_opens_again(swarm_dns):
            assert swarm_dns.control_address is None
            assert FakeControl(swarm_dns.serve_control()).state().services == ()
        """
    )

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")

    result.assert_outcomes(passed=2)


# -- the client ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "error", "words"),
    [
        ("127.0.0.1", ValueError, "host:port, such as 127.0.0.1:5353"),
        ("127.0.0.1:http", ValueError, "host:port"),
        ("127.0.0.1:0", ValueError, "from 1 to 65535, not 0"),
        ("127.0.0.1:70000", ValueError, "from 1 to 65535, not 70000"),
        (5353, TypeError, "'host:port' or \\(host, port\\)"),
    ],
)
def test_the_client_checks_the_address(
    address: object, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        FakeControl(address)  # type: ignore[arg-type]


def test_the_client_takes_a_host_and_port_pair(swarm_dns: FakeSwarm) -> None:
    host, port = swarm_dns.serve_control().rsplit(":", 1)

    control = FakeControl((host, int(port)))

    assert repr(control) == f"<FakeControl {host}:{port}>"
    assert control.state().services == ()


def test_a_silent_channel_is_a_timeout() -> None:
    with socket.socket() as silent:  # listens, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        control = FakeControl(silent.getsockname(), timeout=0.2)

        with pytest.raises(ControlError, match=r"did not reply within 0\.2 s") as raised:
            control.state()

    assert raised.value.kind == "Timeout"


def test_the_client_checks_what_it_sends() -> None:
    control = FakeControl("127.0.0.1:9")

    with pytest.raises(TypeError, match="not one string"):
        control.create_service("web", aliases="www")
    with pytest.raises(TypeError, match=r"a swarmdns\.Task, its address"):
        control.kill_task(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        FakeControl("127.0.0.1:9", timeout=0)


def test_addresses_in_results_are_addresses(swarm_dns: FakeSwarm, control: FakeControl) -> None:
    web = control.create_service("web", replicas=2)

    assert isinstance(web.vip, IPv4Address)
    assert all(isinstance(ip, IPv4Address) for ip in web.task_ips)


# -- bounds ------------------------------------------------------------------------


def test_a_client_trickling_a_request_gets_a_deadline_that_bytes_do_not_move(
    swarm_dns: FakeSwarm,
) -> None:
    # The handlers are driven in the test's thread; the channel's loop never runs.
    server = _control_server.ControlServer(swarm_dns, host="127.0.0.1", port=0)
    client, end = socket.socketpair()
    try:
        end.setblocking(False)
        connection = _control_server._Connection(end, 0.0)
        server._connections[end] = connection
        server._selector.register(end, selectors.EVENT_READ, server._on_event)
        deadlines = []
        for byte in b'{"op": "st':  # one byte at a time, as slowly as the client likes
            client.send(bytes([byte]))
            server._on_event(end, selectors.EVENT_READ)
            deadlines.append(connection.deadline)

        # Each byte used to push the deadline IDLE_TIMEOUT (60 s) further: 16 such
        # clients, a byte every 20 s, kept every other client out for ever.
        assert len(set(deadlines)) == 1
        started = connection.busy_since
        assert started is not None
        assert deadlines[0] == started + _control_server.REQUEST_TIMEOUT
        client.send(b'ate"}\n')
        server._on_event(end, selectors.EVENT_READ)
        client.settimeout(30)
        assert json.loads(client.recv(1 << 20))["ok"]
        assert connection.busy_since is None  # answered and read: idle again
        assert connection.deadline > deadlines[0]  # IDLE_TIMEOUT from the reply on
    finally:
        client.close()
        server.stop()


def test_faults_are_bounded_in_names_and_in_queued_faults(
    swarm_dns: FakeSwarm, control: FakeControl
) -> None:
    for number in range(MAX_FAULT_NAMES):
        swarm_dns.inject(Fault.SERVFAIL, name=f"name-{number}")
    with pytest.raises(ControlError, match=f"faults for {MAX_FAULT_NAMES} names already"):
        control.inject("SERVFAIL", name="one-more")
    control.inject("REFUSED", name="name-7")  # a name that has faults may change them
    swarm_dns.clear_faults()

    for number in range(MAX_QUEUED_FAULTS // _control_requests.MAX_FAULTS):
        control.inject(["SERVFAIL"] * _control_requests.MAX_FAULTS, name=f"name-{number}")
    with pytest.raises(ValueError, match=f"more than the fake keeps \\({MAX_QUEUED_FAULTS}\\)"):
        swarm_dns.inject([Fault.SERVFAIL], name="one-more")
    control.inject(["SERVFAIL"], name="name-0")  # replaces 1,000 with 1
    swarm_dns.inject([Fault.SERVFAIL] * 999, name="one-more")
    assert ask_dnspython(swarm_dns, "name-0").rcode == "SERVFAIL"
    swarm_dns.inject([Fault.SERVFAIL], name="another")  # the one used up made room


@pytest.mark.swarm_dns(nodes=3, delays=NodeDelays.INSTANT)
def test_a_nodes_stale_flag_goes_over_the_channel(
    swarm_dns: FakeSwarm, control: FakeControl
) -> None:
    swarm_dns.isolate("node-3")
    swarm_dns.rejoin("node-3", stale=True)

    assert [node.stale for node in control.state().nodes] == [False, False, True]
    assert control.state() == swarm_dns.state()


# -- operations over time --------------------------------------------------------------

#: A delay no test outlives: an operation with it stays under way.
NEVER = OperationDelays(stop=3600)


@pytest.fixture
def cluster() -> Iterator[FakeSwarm]:
    with FakeSwarm(seed=7, nodes=3, delays=NodeDelays.INSTANT) as fake:
        yield fake


def steps(timeline: tuple[TimelineEvent, ...]) -> list[tuple[str, str, str, IPv4Address]]:
    """A timeline without its moments, which differ from run to run even when instant."""
    return [(e.step, e.service, e.task, e.ip) for e in timeline]


def fields_of(reply: dict[str, object]) -> dict[str, object]:
    result = reply["result"]
    assert isinstance(result, dict), reply
    return result


@pytest.mark.parametrize(
    ("order", "parallelism"),
    [("stop-first", 1), ("stop-first", 2), ("start-first", 1), ("start-first", 2)],
)
def test_an_update_over_the_channel_is_the_fakes_own(order: UpdateOrder, parallelism: int) -> None:
    with FakeSwarm(seed=7) as remote, FakeSwarm(seed=7) as local:
        for fake in (remote, local):
            fake.create_service("web", replicas=3)
        control = FakeControl(remote.serve_control())
        vip = remote.service("web").vip

        got = control.update_service(
            "web", order=order, parallelism=parallelism, delays=OperationDelays.INSTANT
        )
        expected = local.update_service(
            "web", order=order, parallelism=parallelism, delays=OperationDelays.INSTANT
        )

        assert (got.kind, got.target, got.settings, got.delays) == (
            "update",
            "web",
            UpdateSettings(order=order, parallelism=parallelism),
            OperationDelays.INSTANT,
        )
        assert (got.done, got.cancelled, got.took is not None) == (True, False, True)
        assert steps(got.timeline) == steps(expected.timeline)
        assert got.fewest == {"web": expected.fewest()}
        assert got.most == {"web": expected.most()}
        # As the model has it: stop-first drops a batch, start-first adds one.
        assert (got.fewest["web"], got.most["web"]) == (
            (3 - parallelism, 3) if order == "stop-first" else (3, 3 + parallelism)
        )
        assert remote.service("web").vip == vip
        assert control.operation(got.id) == got


def test_a_timed_update_with_wait_replies_at_its_end(
    swarm_dns: FakeSwarm, control: FakeControl
) -> None:
    before = swarm_dns.create_service("web", replicas=2)

    operation = control.update_service(
        "web", order="start-first", delays=OperationDelays().scaled(0.005), wait=True
    )

    assert operation.done
    assert operation.took is not None
    assert operation.took >= operation.timeline[-1].at
    assert [e.at for e in operation.timeline] == sorted(e.at for e in operation.timeline)
    assert [e.step for e in operation.timeline].count("entered") == 2
    after = swarm_dns.service("web")
    assert not set(after.task_ips) & set(before.task_ips)
    assert swarmdns.task_ips("web") == after.task_ips
    assert control.operation(operation.id, wait=True) == operation


def test_a_wait_holds_only_its_own_connection_and_a_reset_cancels_it(
    swarm_dns: FakeSwarm, line: Line
) -> None:
    swarm_dns.create_service("web", replicas=2)
    assert swarm_dns.control_address is not None
    other = Line(swarm_dns.control_address)
    try:
        started = fields_of(
            other.ask(b'{"op": "update_service", "name": "web", "delays": {"stop": 3600}}')
        )
        line.send(json.dumps({"op": "operation", "id": started["id"], "wait": True}).encode())
        line.send(b'\n{"op": "state"}\n')  # answered once the wait is over, in order

        assert other.ask(b'{"op": "state"}')["ok"], "another connection is served meanwhile"
        assert ask_dnspython(swarm_dns, "tasks.web").rcode == "NOERROR"
        assert other.ask(b'{"op": "reset"}') == {"ok": True, "result": None}
    finally:
        other.close()
    waited = fields_of(line.reply())
    state = fields_of(line.reply())

    assert (waited["id"], waited["done"], waited["cancelled"]) == (started["id"], False, True)
    assert waited["timeline"] == []
    assert state["services"] == []
    assert swarm_dns.internal_errors == ()


def test_a_wait_past_its_timeout_is_a_timeout_and_the_operation_goes_on(
    swarm_dns: FakeSwarm, control: FakeControl
) -> None:
    web = swarm_dns.create_service("web")
    swarm_dns.create_service("db")
    started = control.update_service("web", delays=NEVER)

    with pytest.raises(ControlError, match=r"\(operation \d+\) is still running after 0 s"):
        control.operation(started.id, wait=True, timeout=0)
    with pytest.raises(ControlError, match=r"the update of db .* wait=true\)") as error:
        control.update_service("db", delays=NEVER, wait=True, timeout=0)

    assert error.value.kind == "Timeout"
    assert not control.operation(started.id).done
    assert swarm_dns.service("web").task_ips == web.task_ips


def test_a_drain_moves_tasks_and_empties_a_service_pinned_to_the_node(
    cluster: FakeSwarm,
) -> None:
    control = FakeControl(cluster.serve_control())
    control.create_service("web", replicas=3)
    pinned = control.create_service("pinned", placement=["node-3"])
    node_3 = cluster.node("node-3")
    moving = [t for t in cluster.service("web").tasks if t.node_id == node_3.id]
    assert pinned.placement == (node_3.id,)
    assert control.state().service("pinned") == cluster.service("pinned")

    drained = control.drain("node-3", delays=OperationDelays.INSTANT)

    assert (drained.kind, drained.target, drained.settings) == ("drain", "node-3", None)
    assert drained.fewest == {"web": 3 - len(moving), "pinned": 0}
    assert drained.most == {"web": 3, "pinned": 1}
    assert [n.drained for n in control.state().nodes] == [False, False, True]
    assert ask_dnspython(cluster, "pinned").rcode == "NXDOMAIN"
    web = cluster.service("web")
    assert not {t.ip for t in moving} & set(web.task_ips)
    assert len(web.task_ips) == 3

    activated = control.activate(node_3.id, delays=OperationDelays.INSTANT, wait=True)

    assert activated.fewest == {"pinned": 0}
    assert activated.most == {"pinned": 1}
    assert cluster.service("web") == web, "nothing moves back"
    assert cluster.service("pinned").tasks[0].node_id == node_3.id
    with pytest.raises(SwarmError, match=r"activate: .*not drained"):
        control.activate("node-3")


def test_an_operation_the_channel_does_not_know_is_refused(
    swarm_dns: FakeSwarm, control: FakeControl
) -> None:
    swarm_dns.create_service("web")
    first = control.update_service("web", delays=OperationDelays.INSTANT)
    with pytest.raises(SwarmError, match=rf"no operation {first.id + 1} \(known: {first.id}\)"):
        control.operation(first.id + 1)

    control.reset()

    with pytest.raises(SwarmError, match=rf"no operation {first.id} \(known: none\).*reset"):
        control.operation(first.id)
    swarm_dns.create_service("web")
    again = control.update_service("web", delays=OperationDelays.INSTANT)
    assert again.id > first.id, "an ID is never given twice"
    assert control.operation(again.id) == again


def test_the_channel_keeps_the_newest_finished_operations(
    swarm_dns: FakeSwarm, control: FakeControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_control_requests, "KEPT_OPERATIONS", 2)
    swarm_dns.create_service("web")
    swarm_dns.create_service("db")
    running = control.update_service("db", delays=NEVER)
    finished = [control.update_service("web", delays=OperationDelays.INSTANT) for _ in range(3)]

    with pytest.raises(SwarmError, match=rf"no operation {finished[0].id} "):
        control.operation(finished[0].id)
    assert [control.operation(o.id) for o in finished[1:]] == finished[1:]
    assert not control.operation(running.id).done, "a running one is kept"


def test_a_rollback_goes_over_the_channel_with_its_own_settings(
    swarm_dns: FakeSwarm, control: FakeControl
) -> None:
    swarm_dns.create_service("web", replicas=2)
    with pytest.raises(SwarmError, match="rollback: service 'web' has no previous spec"):
        control.rollback("web")
    control.update_service(
        "web", order="start-first", parallelism=2, delays=OperationDelays.INSTANT
    )

    undone = control.rollback("web", delays=OperationDelays.INSTANT)

    assert (undone.kind, undone.settings) == ("rollback", UpdateSettings())
    assert (undone.fewest, undone.most) == ({"web": 1}, {"web": 2})


def test_a_malformed_operation_request_starts_nothing(
    swarm_dns: FakeSwarm, control: FakeControl
) -> None:
    web = swarm_dns.create_service("web")

    with pytest.raises(ControlError, match="'timeout' must be a number of seconds"):
        control.request("update_service", name="web", delays="instant", wait=True, timeout=-1)
    with pytest.raises(ControlError, match="'delays' must be"):
        control.request("drain", node="node-1", delays=1)

    assert swarm_dns.service("web") == web
    assert not swarm_dns.nodes[0].drained


def test_the_client_checks_the_delays_and_placement_it_sends(control: FakeControl) -> None:
    with pytest.raises(TypeError, match="delays takes an OperationDelays"):
        control.update_service("web", delays="instant")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="placement takes a sequence of nodes"):
        control.create_service("web", placement="node-1")


@pytest.mark.parametrize(
    ("delays", "expected"),
    [
        ("instant", OperationDelays.INSTANT),
        ({"scale": 0.5}, OperationDelays().scaled(0.5)),
        ({"stop": 0, "healthy": 0.25}, OperationDelays(stop=0, healthy=0.25)),
        ({}, OperationDelays()),
    ],
)
def test_delays_are_instant_scaled_or_some_steps_in_seconds(
    swarm_dns: FakeSwarm, control: FakeControl, delays: object, expected: OperationDelays
) -> None:
    swarm_dns.create_service("web", replicas=0)

    result = control.request("update_service", name="web", delays=delays)

    assert result["delays"] == attrs.asdict(expected)


def test_a_client_gone_while_its_reply_waits_leaves_the_channel_serving(
    swarm_dns: FakeSwarm, line: Line
) -> None:
    swarm_dns.create_service("web")
    assert swarm_dns.control_address is not None
    gone = Line(swarm_dns.control_address)
    gone.send(b'{"op": "update_service", "name": "web", "delays": {"stop": 3600}, "wait": true}\n')
    assert other_reply_is_ok(line)
    gone.close()

    assert other_reply_is_ok(line)
    assert swarm_dns.internal_errors == ()


def other_reply_is_ok(line: Line) -> bool:
    return line.ask(b'{"op": "state"}')["ok"] is True
