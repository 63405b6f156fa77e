"""What an application in a Swarm task does with swarmdns, with no configuration.

The conformance drivers run this inside a task's network namespace (real
Swarm) or with SWARMDNS_NAMESERVER pointing at the fake. Usage:

    python probe.py '[{"op": "task_ips", "args": ["web"]}, ...]'   # prints a JSON list
    python probe.py watch '{"service": "web", "interval": 0.2}'   # prints one JSON line per change
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import attrs
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

import swarmdns
from swarmdns._backends.nameserver import configured_nameservers


def _task(task: swarmdns.Task) -> dict[str, Any]:
    return {**attrs.asdict(task), "ip": str(task.ip)}


def query(
    name: str, rdtype: str = "A", *, edns: bool = True, tcp: bool = False, timeout: float = 3
) -> dict[str, Any]:
    """One raw query to the configured nameserver, as dig would send it."""
    (server, *_) = configured_nameservers()
    message = dns.message.make_query(name, rdtype, use_edns=0 if edns else False, payload=4096)
    send = dns.query.tcp if tcp else dns.query.udp
    try:
        reply = send(message, server.host, port=server.port, timeout=timeout)
    except dns.exception.Timeout:
        return {"rcode": "no reply"}
    return {
        "rcode": dns.rcode.to_text(reply.rcode()),
        "flags": sorted(dns.flags.to_text(reply.flags).lower().split()),
        "records": [
            [rrset.name.to_text(), rrset.ttl, dns.rdatatype.to_text(rrset.rdtype), rdata.to_text()]
            for rrset in reply.answer
            for rdata in rrset
        ],
        "opt": reply.opt is not None,
        "size": len(reply.to_wire()) if not reply.flags & dns.flags.TC else None,
    }


def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Carry out one request; describe the result or the error."""
    op, args, kwargs = request["op"], request.get("args", []), request.get("kwargs", {})
    try:
        if op == "service_vip":
            return {"ok": str(swarmdns.service_vip(*args, **kwargs))}
        if op == "task_ips":
            return {"ok": [str(ip) for ip in swarmdns.task_ips(*args, **kwargs)]}
        if op == "tasks":
            return {"ok": [_task(t) for t in swarmdns.tasks(*args, **kwargs)]}
        if op == "query":
            return {"ok": query(*args, **kwargs)}
    except swarmdns.SwarmDNSError as error:
        addresses = [str(ip) for ip in getattr(error, "addresses", ())]
        return {"error": type(error).__name__, "message": str(error), "addresses": addresses}
    raise ValueError(f"unknown request {request!r}")


def watch(options: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Follow a service, one description per change."""
    with swarmdns.watch_tasks(**options) as changes:
        for change in changes:
            yield {
                "added": sorted(str(ip) for ip in change.added),
                "removed": sorted(str(ip) for ip in change.removed),
                "current": [str(ip) for ip in change.current],
            }


def main(argv: list[str]) -> None:
    """Run the requests given on the command line."""
    if argv[1] == "watch":
        for event in watch(json.loads(argv[2])):
            print(json.dumps(event), flush=True)
    else:
        print(json.dumps([handle(r) for r in json.loads(argv[1])]))


if __name__ == "__main__":
    main(sys.argv)
