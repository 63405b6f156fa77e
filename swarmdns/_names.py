"""Checking service and network names, and building the names to query. No I/O."""

from __future__ import annotations

import re
from collections.abc import Callable
from ipaddress import IPv4Address

from . import _memo
from ._errors import InvalidName

#: Swarmkit's rule for service names: letters and digits, with '-' or '_'
#: only between them.
SERVICE = re.compile(r"[a-zA-Z0-9](?:[-_]*[a-zA-Z0-9])*")
#: Docker's rule for network names, without a trailing '.' or '-' (which would
#: make the DNS name ambiguous or invalid) and without empty labels.
_NETWORK_LABEL = r"[a-zA-Z0-9_](?:[a-zA-Z0-9_-]*[a-zA-Z0-9_])?"
NETWORK = re.compile(rf"[a-zA-Z0-9](?:[a-zA-Z0-9_-]*[a-zA-Z0-9_])?(?:\.{_NETWORK_LABEL})*")
_MAX_LABEL = 63
_MAX_NAME = 253  # a DNS name in text form, without the root dot
_TASKS_PREFIX = "tasks."


def _check(kind: str, value: object, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"the {kind} name must be a str, not {type(value).__name__}: {value!r}")
    if pattern.fullmatch(value) and all(len(label) <= _MAX_LABEL for label in value.split(".")):
        return value
    raise InvalidName(f"invalid {kind} name {value!r}: {_why(kind, value)}", name=value)


def _why(kind: str, value: str) -> str:  # noqa: PLR0911 - one return per rule
    """Say which of Docker's (or DNS's) rules ``value`` breaks."""
    bad = sorted({c for c in value if not (c.isascii() and (c.isalnum() or c in "-_."))})
    long_label = next((label for label in value.split(".") if len(label) > _MAX_LABEL), None)
    if not value:
        return "it is empty"
    if value.startswith(".") or value.endswith("."):
        return "it starts or ends with a dot; pass the bare name, swarmdns makes it absolute"
    if bad:
        return f"Docker does not allow {', '.join(repr(c) for c in bad)} in {kind} names"
    if long_label is not None:
        return (
            f"{long_label[:12]!r}... is {len(long_label)} characters long,"
            f" over DNS's limit of {_MAX_LABEL} per label"
        )
    if ".." in value:
        return "labels must not be empty ('..')"
    if kind == "service" and "." in value:
        return "service names cannot contain '.'; pass the network with network=..."
    if kind == "service":
        return "Docker does not allow '-' or '_' at either end, or '-_' runs before the end"
    return "it must start with a letter or digit and must not end with '-'"


def check_service(service: object) -> str:
    """Return ``service`` if Docker could have named a service so.

    Raises:
        TypeError: ``service`` is not a string.
        InvalidName: It breaks Docker's rules, or is given as ``tasks.<name>``.
    """
    if isinstance(service, str) and service.lower().startswith(_TASKS_PREFIX):
        bare = service[len(_TASKS_PREFIX) :]
        raise InvalidName(
            f"invalid service name {service!r}: pass the service's own name, {bare!r};"
            " task_ips() and tasks() add the 'tasks.' prefix themselves",
            name=service,
        )
    return _check("service", service, SERVICE)


def check_network(network: object) -> str:
    """Return ``network`` if Docker could have named an overlay network so."""
    return _check("network", network, NETWORK)


def _absolute(*labels: str) -> str:
    name = ".".join(labels) + "."
    if len(name) - 1 > _MAX_NAME:
        raise InvalidName(
            f"the name {name!r} is {len(name) - 1} characters long, over DNS's limit of"
            f" {_MAX_NAME}: use shorter service or network names",
            name=name,
        )
    return name


def _cached_for_text(
    build: Callable[[str, str | None], str],
) -> Callable[[str, str | None], str]:
    """``build``, remembering its answers for text arguments (errors are not kept).

    A watch asks for the same name again and again.
    """
    cached = _memo.memoize(maxsize=1024)(build)

    def name(service: str, network: str | None) -> str:
        if type(service) is str and (network is None or type(network) is str):
            return cached(service, network)
        return build(service, network)  # whatever is wrong with the arguments, said once

    name.__doc__ = build.__doc__
    return name


@_cached_for_text
def service_name(service: str, network: str | None) -> str:
    """The absolute name of a service's VIP (or dnsrr list): ``web.`` or ``web.net.``."""
    checked = check_service(service)
    if network is None:
        return _absolute(checked)
    return _absolute(checked, check_network(network))


@_cached_for_text
def tasks_name(service: str, network: str | None) -> str:
    """The absolute name listing a service's tasks: ``tasks.web.`` or ``tasks.web.net.``."""
    checked = check_service(service)
    if network is None:
        return _absolute("tasks", checked)
    return _absolute("tasks", checked, check_network(network))


def reverse_name(address: IPv4Address) -> str:
    """The PTR name of an address: ``3.1.0.10.in-addr.arpa.``."""
    return ".".join(reversed(str(address).split("."))) + ".in-addr.arpa."
