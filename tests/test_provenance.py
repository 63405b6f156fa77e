"""``swarmdns.Provenance`` and the rule that tells the engine's own answers from forwarded ones."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from swarmdns import ConfigurationError, Provenance
from swarmdns._provenance import ENGINE_TTL, EngineRules

NETWORKS = (IPv4Network("10.0.1.0/24"), IPv4Network("172.18.0.0/16"))
INSIDE = (IPv4Address("10.0.1.3"), IPv4Address("172.18.0.5"))
RULES = EngineRules(networks=lambda: NETWORKS)


def test_an_answer_with_every_mark_of_the_engine_is_its_own() -> None:
    assert RULES.forwarded(opt=False, ttls=[ENGINE_TTL, ENGINE_TTL], addresses=INSIDE) is None


def test_an_opt_record_alone_says_forwarded() -> None:
    reason = RULES.forwarded(opt=True, ttls=[ENGINE_TTL], addresses=INSIDE)

    assert reason == "it carries an OPT record, which the engine's own answers never do"


def test_a_ttl_other_than_600_alone_says_forwarded() -> None:
    reason = RULES.forwarded(opt=False, ttls=[ENGINE_TTL, 300], addresses=INSIDE)

    assert reason == "its TTL is 300 s; the engine's own answers always say 600 s"


def test_an_address_outside_the_networks_alone_says_forwarded() -> None:
    addresses = (*INSIDE, IPv4Address("23.202.231.167"))

    reason = RULES.forwarded(opt=False, ttls=[ENGINE_TTL], addresses=addresses)

    assert reason == (
        "23.202.231.167 lies outside the engine's networks (10.0.1.0/24, 172.18.0.0/16)"
    )


def test_without_networks_to_check_the_addresses_the_other_marks_decide() -> None:
    rules = EngineRules(networks=tuple)

    assert rules.forwarded(opt=False, ttls=[600], addresses=[IPv4Address("1.2.3.4")]) is None
    assert rules.forwarded(opt=True, ttls=[600], addresses=[IPv4Address("1.2.3.4")]) is not None


def test_unchecked_rules_take_every_answer() -> None:
    rules = EngineRules(checked=False, networks=lambda: NETWORKS)

    assert rules.forwarded(opt=True, ttls=[1], addresses=[IPv4Address("1.2.3.4")]) is None
    assert rules.values_inside([1])


@pytest.mark.parametrize(
    ("addresses", "inside"),
    [
        ([], True),
        (["10.0.1.2", "10.0.1.254"], True),  # the ends of one network
        (["10.0.1.3", "172.18.0.5"], True),  # two networks: each value checked
        (["10.0.0.255", "10.0.1.3"], False),  # just below
        (["10.0.1.3", "10.0.2.0"], False),  # just above
        (["10.0.1.3", "23.202.231.167"], False),
    ],
)
def test_the_fast_check_of_sorted_values_agrees_with_the_full_one(
    addresses: list[str], inside: bool
) -> None:
    ips = sorted(IPv4Address(a) for a in addresses)

    assert RULES.values_inside([int(ip) for ip in ips]) is inside
    assert (RULES.outside(ips) is None) is inside


def test_auto_makes_only_127_0_0_11_the_engine_and_reads_the_kernels_networks() -> None:
    read = [0]

    def kernel() -> tuple[IPv4Network, ...]:
        read[0] += 1
        return NETWORKS

    rules = Provenance().engine_rules("127.0.0.11", kernel)

    assert Provenance().engine_rules("127.0.0.1", kernel) is None
    assert rules is not None
    assert rules.checked
    assert rules.outside([IPv4Address("8.8.8.8")]) is not None
    assert read == [1]


def test_off_keeps_127_0_0_11_the_engine_but_checks_nothing() -> None:
    rules = Provenance(mode="off").engine_rules("127.0.0.11", tuple)

    assert rules is not None
    assert not rules.checked
    assert Provenance(mode="off").engine_rules("127.0.0.1", tuple) is None


def test_engine_makes_every_nameserver_the_engine_with_the_networks_given() -> None:
    provenance = Provenance.engine(["10.0.0.0/8"], strict=True)

    rules = provenance.engine_rules("127.0.0.1", tuple)

    assert rules is not None
    assert rules.strict
    assert rules.networks() == (IPv4Network("10.0.0.0/8"),)
    assert rules.outside([IPv4Address("10.200.0.1")]) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Provenance()),
        ("auto", Provenance()),
        (" off ", Provenance(mode="off")),
        ("strict", Provenance(strict=True)),
        ("strict,auto", Provenance(strict=True)),
        ("10.0.0.0/8", Provenance.engine(["10.0.0.0/8"])),
        (
            "strict, 10.0.0.0/8, 172.16.0.0/12",
            Provenance.engine(["10.0.0.0/8", "172.16.0.0/12"], strict=True),
        ),
    ],
)
def test_the_variables_text(text: str, expected: Provenance) -> None:
    assert Provenance.parse(text) == expected


@pytest.mark.parametrize(
    "text", ["on", "strict,off", "10.0.0.1/8", "10.0.0.0/33", "auto,10.0.0.0/8"]
)
def test_a_bad_text_says_what_is_expected(text: str) -> None:
    with pytest.raises(ConfigurationError, match="expected 'auto', 'off', 'strict'") as caught:
        Provenance.parse(text)

    assert caught.value.source == "SWARMDNS_PROVENANCE"


def test_bad_arguments_name_the_problem() -> None:
    with pytest.raises(ConfigurationError, match="mode 'sometimes' is not one of"):
        Provenance(mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="give networks with mode 'engine'"):
        Provenance(mode="engine")
    with pytest.raises(ConfigurationError, match="give networks with mode 'engine'"):
        Provenance(networks=["10.0.0.0/8"])
    with pytest.raises(TypeError, match="a list of networks, not one"):
        Provenance.engine("10.0.0.0/8")
    with pytest.raises(ConfigurationError, match="not an IPv4 network"):
        Provenance.engine(["web"])
    with pytest.raises(TypeError, match="strict must be True or False"):
        Provenance(strict="yes")  # type: ignore[arg-type]


def test_provenance_is_a_frozen_value_that_reads_well() -> None:
    provenance = Provenance.engine(["10.0.0.0/8"])

    assert repr(provenance) == (
        "Provenance(mode='engine', networks=(IPv4Network('10.0.0.0/8'),), strict=False)"
    )
    assert hash(provenance) == hash(Provenance.engine(["10.0.0.0/8"]))
