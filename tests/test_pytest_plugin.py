"""The pytest plugin, used the way a downstream project uses it."""

from __future__ import annotations

import ast
import inspect
import os
from ipaddress import IPv4Network

import pytest

from swarmdns import NAMESERVER_VARIABLE, pytest_plugin
from swarmdns.testing import FakeSwarm

DOWNSTREAM_TESTS = '''
import os
import socket

import dns.message
import dns.query
import pytest

from swarmdns.testing import Fault


def resolve_tasks(service):
    """The downstream application's own discovery code."""
    host, port = os.environ["SWARMDNS_NAMESERVER"].rsplit(":", 1)
    query = dns.message.make_query(f"tasks.{service}", "A", use_edns=0, payload=4096)
    reply = dns.query.udp(query, host, port=int(port), timeout=2)
    return sorted(r.address for rrset in reply.answer for r in rrset)


def test_sees_every_replica(swarm_dns):
    web = swarm_dns.create_service("web", replicas=3)
    assert resolve_tasks("web") == sorted(str(ip) for ip in web.task_ips)


def test_starts_empty(swarm_dns):
    assert swarm_dns.services == ()
    assert swarm_dns.queries == ()
    assert resolve_tasks("web") == []


def test_faults_do_not_leak_into_the_next_test(swarm_dns):
    swarm_dns.create_service("web")
    swarm_dns.inject(Fault.SERVFAIL)


def test_after_a_fault(swarm_dns):
    swarm_dns.create_service("web")
    assert len(resolve_tasks("web")) == 1


def test_one_server_for_the_session(swarm_dns, request):
    assert swarm_dns is request.getfixturevalue("swarm_dns_server")


def test_stops_the_server(swarm_dns):
    swarm_dns.stop()


def test_after_a_stop(swarm_dns):
    swarm_dns.create_service("web")
    assert len(resolve_tasks("web")) == 1
'''


def test_fixture_is_available_without_configuration(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_downstream=DOWNSTREAM_TESTS)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")

    result.assert_outcomes(passed=7)


def test_fixture_is_listed_with_its_documentation(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures")

    result.stdout.fnmatch_lines(["swarm_dns*", "*An empty fake Swarm for this test*"])


def test_a_failing_downstream_assertion_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_wrong="""
        def test_wrong(swarm_dns):
            web = swarm_dns.create_service("web", replicas=2)
            assert len(web.task_ips) == 3
        """
    )

    result = pytester.runpytest_subprocess()

    result.assert_outcomes(failed=1)


def test_variable_points_at_the_fake_during_the_test(swarm_dns: FakeSwarm) -> None:
    assert os.environ[NAMESERVER_VARIABLE] == swarm_dns.nameserver


def test_provenance_names_the_fakes_networks_during_the_test(swarm_dns: FakeSwarm) -> None:
    web = swarm_dns.create_service("web", replicas=3)
    networks = [IPv4Network(n) for n in os.environ["SWARMDNS_PROVENANCE"].split(",")]

    assert networks == list(swarm_dns.engine_networks) == [IPv4Network("10.0.0.0/8")]
    assert all(any(ip in n for n in networks) for ip in (web.vip, *web.task_ips))


def test_variables_are_restored_after_the_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_env="""
        import os

        def test_uses_it(swarm_dns):
            assert os.environ["SWARMDNS_NAMESERVER"] == swarm_dns.nameserver
            assert os.environ["SWARMDNS_PROVENANCE"] == "10.0.0.0/8"

        def test_after():
            assert os.environ["SWARMDNS_NAMESERVER"] == "untouched"
            assert os.environ["SWARMDNS_PROVENANCE"] == "off"
        """
    )
    monkeypatch.setenv(NAMESERVER_VARIABLE, "untouched")
    monkeypatch.setenv("SWARMDNS_PROVENANCE", "off")

    result = pytester.runpytest_subprocess()

    result.assert_outcomes(passed=2)


def test_the_default_backend_is_the_built_in_one_and_is_restored(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_default="""
        import swarmdns

        MINE = swarmdns.StaticBackend({"tasks.web": ["10.9.9.9"]})
        swarmdns.set_default_backend(MINE)  # the project's own default, for all its tests

        def test_talks_to_the_fake(swarm_dns):
            assert swarmdns.get_default_backend() is not MINE
            web = swarm_dns.create_service("web", replicas=2)
            assert swarmdns.task_ips("web") == web.task_ips
            swarmdns.set_default_backend(swarmdns.StaticBackend())  # left behind by the test

        def test_the_projects_default_is_back():
            assert swarmdns.get_default_backend() is MINE
        """
    )

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")

    result.assert_outcomes(passed=2)


def test_the_fixture_moves_to_a_free_port_if_a_test_left_its_own_taken(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_downstream="""
        import os
        import socket

        import swarmdns

        taken = []


        def test_stops_the_fake_and_takes_its_port(swarm_dns):
            port = swarm_dns.port
            swarm_dns.stop()
            blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            blocker.bind(("127.0.0.1", port))
            taken.append(blocker)


        def test_gets_a_running_fake_anyway(swarm_dns):
            assert swarm_dns.port != taken[0].getsockname()[1]
            assert os.environ["SWARMDNS_NAMESERVER"] == swarm_dns.nameserver
            web = swarm_dns.create_service("web", replicas=2)
            assert swarmdns.task_ips("web", timeout=5) == web.task_ips
            taken.pop().close()
        """
    )

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")

    result.assert_outcomes(passed=2)


COMPOSE_TESTS = """
import os

import dns.message
import dns.query
import pytest


def resolve(name):
    host, port = os.environ["SWARMDNS_NAMESERVER"].rsplit(":", 1)
    reply = dns.query.udp(dns.message.make_query(name, "A"), host, port=int(port), timeout=2)
    return sorted(r.address for rrset in reply.answer for r in rrset)


def test_a_compose_project(compose_dns):
    web = compose_dns.create_service("web", scale=3)
    assert resolve("web") == sorted(str(ip) for ip in web.ips)
    assert resolve("proj-web-2") == [str(web.containers[1].ip)]
    assert resolve("tasks.web") == []
    assert os.environ["SWARMDNS_RUNTIME"] == "compose"
    assert os.environ["SWARMDNS_NAMESERVER"] == compose_dns.nameserver
    assert os.environ["SWARMDNS_PROVENANCE"] == "172.16.0.0/12,192.168.0.0/16"


def test_starts_empty(compose_dns):
    assert compose_dns.services == ()
    assert compose_dns.project == "proj"


@pytest.mark.swarm_dns(project="shop", engine="20.10")
def test_the_marker_names_the_project_and_the_engine(compose_dns):
    compose_dns.create_service("web")
    assert (compose_dns.project, compose_dns.engine) == ("shop", "20.10")
    assert len(resolve("shop-web-1.shop_default")) == 1


def test_the_project_and_engine_come_back(compose_dns):
    assert (compose_dns.project, compose_dns.engine) == ("proj", "28.5")


def test_a_swarm_says_so_too(swarm_dns):
    assert os.environ["SWARMDNS_RUNTIME"] == "swarm"


def test_inside_a_container(compose_dns):
    compose_dns.create_service("web", scale=2)
    with compose_dns.inside("proj-web-2") as web:
        assert os.environ["SWARMDNS_OWN_ADDRESSES"] == str(web.ip)
    assert "SWARMDNS_OWN_ADDRESSES" not in os.environ


def test_after():
    assert os.environ["SWARMDNS_RUNTIME"] == "untouched"
"""


def test_compose_fixture_is_available_without_configuration(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_compose=COMPOSE_TESTS)
    monkeypatch.setenv("SWARMDNS_RUNTIME", "untouched")
    monkeypatch.delenv("SWARMDNS_OWN_ADDRESSES", raising=False)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")

    result.assert_outcomes(passed=7)


def test_compose_fixture_is_listed_with_its_documentation(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures")

    result.stdout.fnmatch_lines(["compose_dns*", "*An empty fake Compose project for this test*"])


def test_a_marker_for_the_other_fixture_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_wrong="""
        import pytest

        @pytest.mark.swarm_dns(nodes=3)
        def test_nodes(compose_dns):
            pass

        @pytest.mark.swarm_dns(project="shop")
        def test_project(swarm_dns):
            pass

        def test_both(swarm_dns, compose_dns):
            pass
        """
    )

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        [
            "*swarm_dns(nodes=...) is for the swarm_dns fixture; this test uses compose_dns*",
            "*swarm_dns(project=...) is for the compose_dns fixture; this test uses swarm_dns*",
            "*a test uses either swarm_dns or compose_dns, not both*",
        ],
        consecutive=False,
    )


# -- the plugin uses the fake as any project would ---------------------------------------


#: What a fake is, as the plugin spells its type (``_Served``: either).
_FAKE_TYPES = ("FakeSwarm", "FakeCompose", "_Served")


def private_uses_of_the_fake(source: str) -> tuple[set[str], list[str]]:
    """The names a fake is bound to, and where the code uses its private attributes.

    A fake is a parameter annotated ``FakeSwarm`` (or ``FakeCompose``, or the
    plugin's ``_Served``) or a name bound to ``FakeSwarm(...)`` or
    ``FakeCompose(...)`` (assigned, or with ``with ... as``); a private use is
    ``fake._name`` or ``getattr(fake, "_name")`` (and ``setattr``, ``hasattr``).
    """
    tree = ast.parse(source)
    fakes: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            if ast.unparse(node.annotation) in _FAKE_TYPES:
                fakes.add(node.arg)
        elif isinstance(node, ast.withitem | ast.Assign):
            value = node.context_expr if isinstance(node, ast.withitem) else node.value
            targets = [node.optional_vars] if isinstance(node, ast.withitem) else node.targets
            if isinstance(value, ast.Call) and ast.unparse(value.func) in _FAKE_TYPES:
                fakes.update(t.id for t in targets if isinstance(t, ast.Name))

    def private(name: object) -> bool:
        return isinstance(name, str) and name.startswith("_") and not name.endswith("__")

    def on_a_fake(node: ast.expr) -> bool:
        return isinstance(node, ast.Name) and node.id in fakes

    def private_use(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute):
            return on_a_fake(node.value) and private(node.attr)
        return (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) > 1
            and on_a_fake(node.args[0])
            and isinstance(node.args[1], ast.Constant)
            and private(node.args[1].value)
        )

    found = sorted(
        (node.lineno, ast.unparse(node))
        for node in ast.walk(tree)
        if isinstance(node, ast.expr) and private_use(node)
    )
    uses = [f"line {line}: {code}" for line, code in found]
    return fakes, uses


def test_the_plugin_uses_only_the_fakes_public_api() -> None:
    fakes, uses = private_uses_of_the_fake(inspect.getsource(pytest_plugin))

    assert {"swarm", "swarm_dns_server", "compose", "compose_dns_server", "server"} <= fakes
    assert uses == []  # ...and used through their public methods only


def test_a_private_use_of_the_fake_would_be_found() -> None:
    source = """
def fixture(server: FakeSwarm) -> None:
    server._forget_ports()
    server.start()
    with FakeSwarm() as swarm:
        getattr(swarm, "_port")
    fake = FakeSwarm()
    fake._lock = None
    other._private()
    fake.__enter__()
"""

    fakes, uses = private_uses_of_the_fake(source)

    assert fakes == {"server", "swarm", "fake"}
    assert uses == [
        "line 3: server._forget_ports",
        "line 6: getattr(swarm, '_port')",
        "line 8: fake._lock",
    ]
