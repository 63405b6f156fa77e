"""This container's own addresses, from the kernel's routing tables."""

from __future__ import annotations

import shutil
import subprocess
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from swarmdns import ConfigurationError
from swarmdns._own_addresses import local_addresses, parse_fib_trie

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
