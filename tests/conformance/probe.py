"""What an application in a Swarm task does with swarmdns, with no configuration.

The conformance drivers run this inside a task's network namespace (real
Swarm) or with SWARMDNS_NAMESERVER pointing at the fake. Usage:

    python probe.py '[{"op": "task_ips", "args": ["web"]}, ...]'   # prints a JSON list
    python probe.py watch '{"service": "web", "interval": 0.2}'   # prints one JSON line per change

A request ``{"op": "cli", "args": ["tasks", "web", "--min", "0"]}`` runs the
``swarmdns`` command (``python -m swarmdns``) there, as a script in the task would.
"""

from __future__ import annotations

import json
import selectors
import socket
import subprocess
import sys
import time
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


def burst(count: int, *, spread: float = 1.0, wait: float = 10.0) -> dict[str, Any]:
    """Send ``count`` queries for names no one owns, spread over ``spread`` seconds.

    Returns how many replies came back with each rcode (and RA or not), how
    many never came within ``wait`` seconds of the last query, the median
    delay of each rcode, and how long the sending took (``sent_in``: more
    than ``spread`` when this process was too slow for it).
    """
    (server, *_) = configured_nameservers()
    delays: dict[str, list[float]] = {}
    sent: dict[int, float] = {}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock, selectors.DefaultSelector() as sel:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.connect((server.host, server.port))
        sel.register(sock, selectors.EVENT_READ)

        def drain(until: float) -> None:
            while sent and (timeout := until - time.monotonic()) > 0:
                if not sel.select(timeout):
                    continue
                reply = dns.message.from_wire(sock.recv(4096))
                asked = sent.pop(reply.id, None)
                if asked is not None:
                    ra = "+ra" if reply.flags & dns.flags.RA else "-ra"
                    key = f"{dns.rcode.to_text(reply.rcode())} {ra}"
                    delays.setdefault(key, []).append(time.monotonic() - asked)

        # Made first: sending is then all the loop does, fast even on a busy machine.
        queries = [
            dns.message.make_query(f"tasks.burst{number}", "A", id=number).to_wire()
            for number in range(count)
        ]
        start = time.monotonic()
        for number, query in enumerate(queries):
            sent[number] = time.monotonic()
            sock.send(query)
            drain(start + spread * (number + 1) / count)
        sent_in = time.monotonic() - start
        drain(time.monotonic() + wait)
    return {
        "counts": {key: len(values) for key, values in sorted(delays.items())},
        "no reply": len(sent),
        "delays": {key: sorted(values)[len(values) // 2] for key, values in delays.items()},
        "sent_in": sent_in,
    }


def cli(*arguments: str) -> dict[str, Any]:
    """Run the ``swarmdns`` command with ``arguments``: its exit code and output."""
    done = subprocess.run(
        [sys.executable, "-m", "swarmdns", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def handle(request: dict[str, Any]) -> dict[str, Any]:  # noqa: PLR0911 - one return per op
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
        if op == "burst":
            return {"ok": burst(*args, **kwargs)}
        if op == "cli":
            return {"ok": cli(*args)}
    except swarmdns.SwarmDNSError as error:
        addresses = [str(ip) for ip in getattr(error, "addresses", ())]
        return {"error": type(error).__name__, "message": str(error), "addresses": addresses}
    raise ValueError(f"unknown request {request!r}")


def watch(options: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Follow a service (or, given ``services``, several at once), one description per change."""
    follow = swarmdns.watch_services if "services" in options else swarmdns.watch_tasks
    with follow(**options) as changes:
        for change in changes:
            yield {
                "service": change.service,
                # In address order, as "current" is (not as strings: 10.0.1.9 first).
                "added": [str(ip) for ip in sorted(change.added)],
                "removed": [str(ip) for ip in sorted(change.removed)],
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
