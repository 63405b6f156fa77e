"""The pytest plugin, used the way a downstream project uses it."""

from __future__ import annotations

import os

import pytest

from swarmdns import NAMESERVER_VARIABLE
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


def test_variable_is_restored_after_the_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_env="""
        import os

        def test_uses_it(swarm_dns):
            assert os.environ["SWARMDNS_NAMESERVER"] == swarm_dns.nameserver

        def test_after():
            assert os.environ["SWARMDNS_NAMESERVER"] == "untouched"
        """
    )
    monkeypatch.setenv(NAMESERVER_VARIABLE, "untouched")

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
