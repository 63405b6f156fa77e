"""This container's own addresses, from the kernel's routing tables."""

from __future__ import annotations

import shutil
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from swarmdns import ConfigurationError
from swarmdns._own_addresses import (
    ContainerNetworks,
    local_addresses,
    parse_fib_trie,
    parse_routes,
)

# /proc/net/fib_trie in a Swarm task: lo, an overlay and docker_gwbridge.
FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.0.1.0/24 2 0 2
        +-- 10.0.1.0/28 2 0 2
           |-- 10.0.1.0
              /24 link UNICAST
           |-- 10.0.1.7
              /32 host LOCAL
        |-- 10.0.1.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
     |-- 172.18.0.5
        /32 link UNICAST
        /32 host LOCAL
     |-- 10.0.1.255
        /32 link BROADCAST
"""


def test_parses_every_local_host_entry() -> None:
    assert parse_fib_trie(FIB_TRIE) == {
        IPv4Address("10.0.1.7"),
        IPv4Address("127.0.0.1"),
        IPv4Address("172.18.0.5"),
    }


def test_finds_this_machines_addresses() -> None:
    found = local_addresses()

    assert IPv4Address("127.0.0.1") in found
    ip = shutil.which("ip")
    if ip is None:
        pytest.skip("iproute2 is not installed to compare with")
    listed = subprocess.run([ip, "-o", "-4", "addr"], capture_output=True, text=True, check=True)
    for line in listed.stdout.splitlines():
        assert IPv4Address(line.split()[3].split("/")[0]) in found


def test_without_proc_it_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"Pass exclude=\[\.\.\.\] instead"):
        local_addresses(str(tmp_path / "missing"))


def _hex(address: str) -> str:
    """An address as /proc/net/route prints it: its bytes read in this machine's order."""
    return f"{int.from_bytes(IPv4Address(address).packed, sys.byteorder):08X}"


#: A Swarm task's routes: an overlay network, docker_gwbridge, and the default route.
ROUTES = "\n".join(
    [
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT",
        f"eth1\t{_hex('0.0.0.0')}\t{_hex('172.18.0.1')}\t0003\t0\t0\t0\t{_hex('0.0.0.0')}\t0\t0\t0",
        f"eth0\t{_hex('10.0.1.0')}\t{_hex('0.0.0.0')}\t0001\t0\t0\t0\t{_hex('255.255.255.0')}\t0\t0\t0",
        f"eth1\t{_hex('172.18.0.0')}\t{_hex('0.0.0.0')}\t0001\t0\t0\t0\t{_hex('255.255.0.0')}\t0\t0\t0",
        f"eth2\t{_hex('10.0.9.0')}\t{_hex('0.0.0.0')}\t0000\t0\t0\t0\t{_hex('255.255.255.0')}\t0\t0\t0",
        f"lo\t{_hex('127.0.0.0')}\t{_hex('0.0.0.0')}\t0001\t0\t0\t0\t{_hex('255.0.0.0')}\t0\t0\t0",
        "garbage line",
    ]
)


def test_the_networks_are_the_routes_without_a_gateway_but_the_default_and_loopback() -> None:
    assert parse_routes(ROUTES) == (IPv4Network("10.0.1.0/24"), IPv4Network("172.18.0.0/16"))


def test_the_networks_are_read_again_once_older_than_the_refresh(tmp_path: Path) -> None:
    routes = tmp_path / "route"
    routes.write_text(ROUTES)
    now = [100.0]
    networks = ContainerNetworks(str(routes), refresh=1.0, clock=lambda: now[0])

    first = networks()
    routes.write_text(ROUTES.replace(_hex("10.0.1.0"), _hex("10.0.7.0")))
    now[0] += 0.5
    second = networks()
    now[0] += 0.5
    third = networks()

    assert first == second == (IPv4Network("10.0.1.0/24"), IPv4Network("172.18.0.0/16"))
    assert third == (IPv4Network("10.0.7.0/24"), IPv4Network("172.18.0.0/16"))


def test_without_the_kernels_table_there_are_no_networks(tmp_path: Path) -> None:
    assert ContainerNetworks(str(tmp_path / "missing"))() == ()


def test_this_machines_networks_are_the_link_routes_that_ip_lists() -> None:
    ip = shutil.which("ip")
    if ip is None:
        pytest.skip("no ip command to compare with")
    listed = subprocess.run(
        [ip, "-4", "route", "show", "table", "main", "scope", "link"],
        capture_output=True,
        text=True,
        check=True,
    )
    links = {IPv4Network(line.split()[0]) for line in listed.stdout.splitlines()}

    assert set(ContainerNetworks()()) == {net for net in links if net.prefixlen}
