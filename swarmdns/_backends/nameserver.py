"""Where queries go: SWARMDNS_NAMESERVER, else the system's resolv.conf. No sockets."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable

from attrs import field, frozen

from .. import _memo
from .._errors import ConfigurationError
from .._model import listed
from .._provenance import PROVENANCE_VARIABLE, EngineRules, Provenance

#: The variable that points swarmdns at a nameserver (``host`` or ``host:port``).
NAMESERVER_VARIABLE = "SWARMDNS_NAMESERVER"
RESOLV_CONF = "/etc/resolv.conf"
DNS_PORT = 53
_BRACKETED = re.compile(r"\[(?P<host>[^\]]+)\](?::(?P<port>[^:]*))?")


@frozen
class Nameserver:
    """One nameserver's address.

    Attributes:
        host: Its IP address, as text.
        port: Its port, for UDP and TCP alike.
        engine: How to read its answers, when it is Docker's engine; None
            when it is not (``Provenance.engine_rules``).
    """

    host: str
    port: int = DNS_PORT
    engine: EngineRules | None = field(default=None, eq=False, repr=False)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_nameservers(values: str | Iterable[str], *, source: str) -> tuple[Nameserver, ...]:
    """Parse ``DirectBackend``'s ``nameservers``: one string, or a list of them.

    Raises:
        TypeError: ``values`` is not a string or a list of strings.
        ValueError: It is an empty list.
        ConfigurationError: A string is not an IP address with an optional port.
    """
    given = [values] if isinstance(values, str) else values
    if not listed(given):
        raise TypeError(
            f"{source} must be a list of 'host' or 'host:port' strings, not {values!r}"
        )
    servers = tuple(parse_nameserver(text, source=source) for text in given)
    if not servers:
        raise ValueError(f"{source} must name at least one nameserver, or be None")
    return servers


def parse_nameserver(text: str, *, source: str) -> Nameserver:
    """Parse ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``; the port in ASCII digits.

    Raises:
        TypeError: ``text`` is not a string.
        ConfigurationError: The text is not an IP address with an optional port.
    """
    if not isinstance(text, str):
        raise TypeError(f"a nameserver of {source} must be a 'host:port' string, not {text!r}")
    value = text.strip()
    bracketed = _BRACKETED.fullmatch(value)
    if bracketed:
        host, port = bracketed["host"], bracketed["port"]
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, None  # an IPv4 address, or an IPv6 one without a port
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigurationError(
            f"{source} is {text!r}, which is not an IP address with an optional port;"
            " expected host, host:port or [IPv6]:port, such as 127.0.0.11 or 127.0.0.1:5353",
            source=source,
        ) from None
    number = DNS_PORT if port is None else _port(port)
    if number is None:
        raise ConfigurationError(
            f"{source} is {text!r}, whose port {port!r} is not a number from 1 to 65535",
            source=source,
        )
    return Nameserver(str(address), number)


def _port(text: str) -> int | None:
    """A port from 1 to 65535 in ASCII digits (``str.isdigit()`` takes ``²`` too), or None."""
    if not (0 < len(text) <= 5 and text.isascii() and text.isdigit()):
        return None
    return int(text) if 0 < int(text) < 65536 else None


def nameservers_from_resolv_conf(text: str) -> tuple[Nameserver, ...]:
    """The ``nameserver`` lines of a resolv.conf, in order."""
    found = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            host = fields[1].split("%", 1)[0]  # drop an IPv6 zone
            try:
                found.append(Nameserver(str(ipaddress.ip_address(host))))
            except ValueError:
                continue  # the C library skips such lines too
    return tuple(found)


def configured_nameservers(resolv_conf: str = RESOLV_CONF) -> tuple[Nameserver, ...]:
    """The nameservers to ask now: ``SWARMDNS_NAMESERVER``, else resolv.conf's.

    Both are looked at on every call, so that a test fixture can redirect
    them; resolv.conf is read again only when it changed (its inode, size or
    modification time), as the C library does.

    Raises:
        ConfigurationError: Neither names a nameserver.
    """
    configured = os.environ.get(NAMESERVER_VARIABLE)
    if configured:
        return (_parse_variable(configured),)
    try:
        status = os.stat(resolv_conf)
        servers = _read_resolv_conf(resolv_conf, status.st_ino, status.st_size, status.st_mtime_ns)
    except OSError as error:
        raise ConfigurationError(
            f"no nameserver to ask: {NAMESERVER_VARIABLE} is not set and {resolv_conf}"
            f" cannot be read ({error.strerror}); in a Swarm task it names 127.0.0.11",
            source=resolv_conf,
        ) from error
    if not servers:
        raise ConfigurationError(
            f"no nameserver to ask: {NAMESERVER_VARIABLE} is not set and {resolv_conf}"
            " has no nameserver line; in a Swarm task it names 127.0.0.11",
            source=resolv_conf,
        )
    return servers


@_memo.memoize(maxsize=1)  # one version of one file is all a process uses
def _read_resolv_conf(path: str, inode: int, size: int, mtime_ns: int) -> tuple[Nameserver, ...]:
    """The nameservers of the file at ``path``, read once per version of it."""
    with open(path, encoding="utf-8", errors="replace") as file:
        return nameservers_from_resolv_conf(file.read())


@_memo.memoize(maxsize=16)
def _parse_variable(value: str) -> Nameserver:
    """``SWARMDNS_NAMESERVER``'s value, read (a bad value raises every time)."""
    return parse_nameserver(value, source=NAMESERVER_VARIABLE)


def provenance_from_environment() -> Provenance:
    """``SWARMDNS_PROVENANCE``'s provenance, read now; ``auto`` when it is not set.

    Raises:
        ConfigurationError: The variable holds something else.
    """
    return _parsed_provenance(os.environ.get(PROVENANCE_VARIABLE, ""))


@_memo.memoize(maxsize=16)
def _parsed_provenance(text: str) -> Provenance:
    return Provenance.parse(text)


def system_nameserver(resolv_conf: str = RESOLV_CONF) -> str | None:
    """The host of resolv.conf's first nameserver, which the C library asks; None if none."""
    try:
        status = os.stat(resolv_conf)
        servers = _read_resolv_conf(resolv_conf, status.st_ino, status.st_size, status.st_mtime_ns)
    except OSError:
        return None
    return servers[0].host if servers else None
