"""The ``swarm_dns`` fixture answers like the engine a test, or the run, asks for."""

from __future__ import annotations

import pytest

#: A downstream project's tests: the engine is told by truncation, as a
#: client sees it (19 records on 20.10, 30 on newer engines).
DOWNSTREAM_TESTS = """
import dns.message
import dns.query
import pytest


def records_in_512_bytes(swarm):
    swarm.create_service("web", replicas=45)
    query = dns.message.make_query("tasks.web", "A")  # no EDNS: 512 bytes
    reply = dns.query.udp(query, swarm.host, port=swarm.port, timeout=2)
    assert reply.flags & dns.flags.TC
    return len(reply.answer[0])


def test_unmarked(swarm_dns, request):
    expected = request.config.getoption("--swarm-dns-engine") or "28.5"
    assert swarm_dns.engine == expected
    assert records_in_512_bytes(swarm_dns) == (19 if expected == "20.10" else 30)


@pytest.mark.swarm_dns(engine="20.10")
def test_marked_20_10(swarm_dns):
    assert swarm_dns.engine == "20.10"
    assert records_in_512_bytes(swarm_dns) == 19


@pytest.mark.swarm_dns(engine="26.1")
def test_marked_26_1(swarm_dns):
    assert swarm_dns.engine == "26.1"
    assert records_in_512_bytes(swarm_dns) == 30


def test_unmarked_again(swarm_dns, request):
    expected = request.config.getoption("--swarm-dns-engine") or "28.5"
    assert swarm_dns.engine == expected


def test_switched_by_hand(swarm_dns):
    swarm_dns.use_engine("20.10")
    assert records_in_512_bytes(swarm_dns) == 19


def test_after_the_switch_by_hand(swarm_dns, request):
    expected = request.config.getoption("--swarm-dns-engine") or "28.5"
    assert swarm_dns.engine == expected


@pytest.mark.swarm_dns(engine="20.10")
class TestAClassOfOldEngineTests:
    def test_one(self, swarm_dns):
        assert swarm_dns.engine == "20.10"

    @pytest.mark.swarm_dns(engine="28.5")
    def test_the_closest_marker_wins(self, swarm_dns):
        assert swarm_dns.engine == "28.5"


def test_one_server_for_every_engine(swarm_dns, swarm_dns_server):
    assert swarm_dns is swarm_dns_server
"""


def run(pytester: pytest.Pytester, *arguments: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-W", "error", "--strict-markers", *arguments
    )


def test_the_marker_picks_the_engine_and_the_default_comes_back(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_downstream=DOWNSTREAM_TESTS)

    run(pytester).assert_outcomes(passed=9)


@pytest.mark.parametrize("engine", ["20.10", "26.1", "28.5"])
def test_the_run_can_choose_the_default_engine(pytester: pytest.Pytester, engine: str) -> None:
    pytester.makepyfile(test_downstream=DOWNSTREAM_TESTS)

    run(pytester, f"--swarm-dns-engine={engine}").assert_outcomes(passed=9)


def test_a_module_marker_applies_to_every_test_of_the_module(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_old="""
        import pytest

        pytestmark = pytest.mark.swarm_dns(engine="20.10")

        def test_one(swarm_dns):
            assert swarm_dns.engine == "20.10"

        def test_two(swarm_dns):
            assert swarm_dns.resolv_conf() == "nameserver 127.0.0.11\\noptions ndots:0\\n"
        """,
        test_new="""
        def test_default(swarm_dns):
            assert swarm_dns.engine == "28.5"
        """,
    )

    run(pytester).assert_outcomes(passed=3)


def test_an_unknown_engine_is_an_error_naming_the_choices(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.swarm_dns(engine="24.0")
        def test_bad(swarm_dns):
            pass
        """
    )

    result = run(pytester)

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*engine must be one of '20.10', '26.1', '28.5'*not '24.0'*"])


def test_the_marker_takes_keyword_arguments_it_knows(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.swarm_dns("20.10")
        def test_positional(swarm_dns):
            pass

        @pytest.mark.swarm_dns(engin="20.10")
        def test_misspelt(swarm_dns):
            pass
        """
    )

    result = run(pytester)

    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        ["*takes keyword arguments only (*engine*), not '20.10'*", "*), not engin"]
    )


def test_an_unknown_engine_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--swarm-dns-engine=24.0")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--swarm-dns-engine*invalid choice*'24.0'*"])


def test_the_marker_and_the_option_are_documented(pytester: pytest.Pytester) -> None:
    markers = run(pytester, "--markers")
    options = run(pytester, "--help")

    markers.stdout.fnmatch_lines(["@pytest.mark.swarm_dns(engine=VERSION): *20.10, 26.1, 28.5*"])
    options.stdout.fnmatch_lines(["*--swarm-dns-engine=VERSION*"])
