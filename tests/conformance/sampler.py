"""What a task's DNS answers, sampled at a steady pace: the timeline of an operation.

The conformance drivers run this in the probe task's network namespace (real
Swarm: the engine's 127.0.0.11) or with SWARMDNS_NAMESERVER pointing at the
fake, and stop it with SIGTERM. Usage:

    python sampler.py '{"names": ["tasks.web", "web"], "interval": 0.05, "deadline": 0.25}'

Every ``interval`` seconds it asks each name once (an A query, given up after
``deadline`` seconds) and prints one JSON line per answer: ``[at, name,
rcode, addresses]``, with ``at`` the monotonic time the query was sent (the
system's CLOCK_MONOTONIC, the same in every network namespace), ``rcode``
"NOERROR", "NXDOMAIN", another rcode's name or "no reply", and the addresses
sorted. A late tick is skipped, not caught up on.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from swarmdns._backends.nameserver import configured_nameservers


def ask(host: str, port: int, name: str, deadline: float) -> tuple[str, list[str]]:
    """One A query for ``name``: its rcode and the addresses it answered."""
    query = dns.message.make_query(name, "A")
    try:
        reply = dns.query.udp(query, host, port=port, timeout=deadline)
    except dns.exception.Timeout:
        return "no reply", []
    addresses = sorted(
        rdata.to_text()
        for rrset in reply.answer
        if rrset.rdtype == dns.rdatatype.A
        for rdata in rrset
    )
    return dns.rcode.to_text(reply.rcode()), addresses


def main(options: dict[str, Any]) -> None:
    """Sample until stopped."""
    names = [str(name) for name in options["names"]]
    interval = float(options.get("interval", 0.05))
    deadline = float(options.get("deadline", 0.25))
    (server, *_) = configured_nameservers()
    tick = time.monotonic()
    while True:
        for name in names:
            sent = time.monotonic()
            rcode, addresses = ask(server.host, server.port, name, deadline)
            print(json.dumps([sent, name, rcode, addresses]), flush=True)
        now = time.monotonic()
        tick += interval
        if tick < now:  # late: the next tick from now
            tick = now + interval - (now - tick) % interval
        time.sleep(tick - now)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
