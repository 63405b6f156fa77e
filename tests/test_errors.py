"""The exceptions: one base class, each also a matching built-in."""

from __future__ import annotations

import pickle
from ipaddress import IPv4Address

import swarmdns
import swarmdns.aio
from swarmdns import (
    NoVirtualIP,
    SwarmDNSError,
)


def test_errors_derive_from_the_base_and_the_matching_builtin() -> None:
    assert issubclass(swarmdns.ServiceNotFound, LookupError)
    assert issubclass(swarmdns.NoVirtualIP, LookupError)
    assert issubclass(swarmdns.ResolutionTimeout, TimeoutError)
    assert issubclass(swarmdns.InvalidName, ValueError)
    assert issubclass(swarmdns.ConfigurationError, ValueError)
    for error in (
        swarmdns.ServiceNotFound,
        swarmdns.NoVirtualIP,
        swarmdns.ResolutionTimeout,
        swarmdns.ResolutionError,
        swarmdns.InvalidName,
        swarmdns.ConfigurationError,
    ):
        assert issubclass(error, SwarmDNSError)


def test_errors_survive_pickling() -> None:
    error = NoVirtualIP(
        "m", name="db.", nameserver="127.0.0.11:53", addresses=[IPv4Address("10.0.0.5")]
    )

    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes

    assert (type(copy), str(copy), copy.name, copy.nameserver, copy.addresses) == (
        NoVirtualIP,
        "m",
        "db.",
        "127.0.0.11:53",
        (IPv4Address("10.0.0.5"),),
    )
