"""Show the fake Swarm DNS at work: ``python -m swarmdns.testing``.

Without options it starts a fake Swarm, runs a sample service through a few
changes and prints what DNS answers after each, then exits. With ``--serve``
it keeps the fake running, with the sample service, for ``dig`` and friends.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename

from . import FakeSwarm


def _ask(swarm: FakeSwarm, name: str, rdtype: str = "A") -> str:
    """One query to the fake, the way a client in a Swarm task would send it."""
    query = dns.message.make_query(name, rdtype, use_edns=0, payload=4096)
    try:
        reply = dns.query.udp(query, swarm.host, port=swarm.port, timeout=2.0)
    except dns.exception.Timeout:
        return "no reply"
    if reply.rcode() != dns.rcode.NOERROR:
        return dns.rcode.to_text(reply.rcode())
    values = sorted(
        (rdata.to_text() for rrset in reply.answer for rdata in rrset),
        key=lambda text: [int(p) if p.isdigit() else p for p in text.split(".")],
    )
    return " ".join(values) or "NOERROR, no records"


def _show(swarm: FakeSwarm, *names: str) -> None:
    for name in names:
        print(f"    {name:<24} {_ask(swarm, name)}")


def demo(swarm: FakeSwarm) -> None:
    """Walk a sample service through the changes a Swarm sees every day."""
    print(f"Fake Swarm DNS listening on {swarm.nameserver} (UDP and TCP)\n")

    web = swarm.create_service("web", replicas=3, network="proxy")
    print("Service web, 3 replicas on network proxy:")
    _show(swarm, "web", "tasks.web", "tasks.web.proxy")
    first = web.tasks[0]
    reverse = dns.reversename.from_address(str(first.ip)).to_text(omit_final_dot=True)
    print(f"    PTR {first.ip!s:<20} {_ask(swarm, reverse, 'PTR')}")
    print("    ('web' is one virtual IP; 'tasks.web' lists every task)\n")

    swarm.scale("web", 5)
    print("Scaled to 5:")
    _show(swarm, "tasks.web")

    replacement = swarm.replace_task(first)
    print(f"\nTask {first.name} killed, replaced by {replacement.name}:")
    _show(swarm, "tasks.web")

    swarm.create_service("db", replicas=2, network="proxy", endpoint_mode="dnsrr")
    print("\nService db in dnsrr mode: no virtual IP, the name lists the tasks:")
    _show(swarm, "db", "tasks.db")

    swarm.scale("web", 0)
    print("\nweb scaled to 0: the engine removes every name of an empty service:")
    _show(swarm, "web", "tasks.web")


def serve(swarm: FakeSwarm) -> None:
    """Keep the fake running with a sample service until interrupted."""
    swarm.create_service("web", replicas=3, network="proxy")
    print(f"Fake Swarm DNS listening on {swarm.nameserver} (UDP and TCP)")
    print("Service web runs 3 replicas on network proxy. Try:")
    print(f"    dig @{swarm.host} -p {swarm.port} tasks.web")
    print(f"    SWARMDNS_NAMESERVER={swarm.nameserver} <your program>")
    print("Press Ctrl-C to stop.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("\nstopped")


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number from 0 to 65535")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demonstration, or serve until interrupted with ``--serve``."""
    parser = argparse.ArgumentParser(
        prog="python -m swarmdns.testing",
        description="Run the fake Swarm DNS server (answers like Docker's 127.0.0.11).",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="keep serving a sample service until Ctrl-C",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port",
        type=_port,
        default=0,
        help="port for UDP and TCP (default: any free port)",
    )
    parser.add_argument("--seed", type=int, default=None, help="make the output repeatable")
    options = parser.parse_args(argv)
    try:
        swarm = FakeSwarm(host=options.host, port=options.port, seed=options.seed).start()
    except OSError as error:
        print(
            f"cannot listen on {options.host}:{options.port}: {error.strerror}",
            file=sys.stderr,
        )
        return 1
    try:
        (serve if options.serve else demo)(swarm)
    finally:
        swarm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
