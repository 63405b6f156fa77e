"""``swarmdns watch --render``: names that do not flicker; PTR names that are no identity."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmdns.testing import FakeSwarm, Fault

from ..backends.hostile import HostileServer, Query, Script, add, addresses, response
from .helpers import Fifo, Spawn, run

#: Each task by its name, or its address when it has none, and whether its name is stale.
NAMES_TEMPLATE = (
    "{% for t in tasks %}{{ t.name or t.ip }}{% if t.ip|string in stale %} stale{% endif %}\n"
    "{% endfor %}"
)


def test_watch_keeps_the_last_names_while_ptr_lookups_fail_then_names_every_task_again(
    swarm_dns: FakeSwarm, spawn: Spawn, tmp_path: Path
) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    template = tmp_path / "names.j2"
    template.write_text(NAMES_TEMPLATE)
    dest = tmp_path / "names"
    fifo = Fifo(tmp_path / "runs")
    try:
        watch = spawn("watch", "web", "--interval", "0.05", "--render", f"{template}:{dest}",
                      "--exec", f"cat {dest} > {fifo.path}")  # fmt: skip
        first = fifo.next_run()
        swarm_dns.inject(Fault.SERVFAIL, qtype="PTR")
        during = swarm_dns.scale("web", 3)
        second = fifo.next_run()
        swarm_dns.clear_faults()
        third = fifo.next_run()  # without a change: the names are looked up again
        after = swarm_dns.scale("web", 4)
        fourth = fifo.next_run()
        watch.popen.terminate()
        code, _, err = watch.finish()
    finally:
        fifo.close()

    names = {t.ip: t.name for t in web.tasks + after.tasks}
    new = set(during.task_ips) - set(web.task_ips)
    assert first == "".join(f"{names[ip]}\n" for ip in web.task_ips)
    assert second == "".join(
        f"{ip}\n" if ip in new else f"{names[ip]} stale\n" for ip in during.task_ips
    )
    assert third == "".join(f"{names[ip]}\n" for ip in during.task_ips)
    assert fourth == "".join(f"{names[ip]}\n" for ip in after.task_ips)
    assert code == 0
    stale = ", ".join(str(ip) for ip in web.task_ips)
    assert f"swarmdns: no name for {stale} of web from the engine this time" in err


TASK_ID = "k3j5l7m9n1p3q5r7s9t1v3x5z"
#: What a hostile nameserver answers for each task's address, and whether it is an identity.
PTR_NAMES = [
    (f"web.1.{TASK_ID}.net.", True),
    (f"shop_web.2.{TASK_ID}.net.", True),  # the service deployed in a stack
    (f"web#.3.{TASK_ID}.net.", False),
    (f"{{web}}.4.{TASK_ID}.net.", False),
    (f"web\\032x.5.{TASK_ID}.net.", False),  # a space, as dnspython writes it
    (f"web.6.{TASK_ID}.n\\;et.", False),
    (f"evil.7.{TASK_ID}.net.", False),  # another service's name
    ("web.8.short.net.", False),
    (f"web.0.{TASK_ID}.net.", False),
]
WEB = addresses(len(PTR_NAMES), "10.0.1.3")


def reverse(ip: object) -> str:
    return ".".join(reversed(str(ip).split("."))) + ".in-addr.arpa."


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    ptr = {reverse(ip): target for ip, (target, _) in zip(WEB, PTR_NAMES, strict=True)}

    def handler(query: Query) -> Script:
        message = response(query, edns=False)
        if query.name == "tasks.web.":
            add(message, query.name, "A", *(str(ip) for ip in WEB))
        elif query.name in ptr:
            add(message, query.name, "PTR", ptr[query.name])
        return [message]

    with HostileServer(handler) as server:
        yield server


def test_watch_renders_only_ptr_names_in_dockers_grammar_for_the_service_as_identities(
    hostile: HostileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWARMDNS_NAMESERVER", hostile.nameserver)
    template = tmp_path / "targets.j2"
    template.write_text("{{ tasks | map(attribute='name') | list | tojson }}")
    dest = tmp_path / "targets.json"

    done = run("watch", "web", "--once", "--runtime", "swarm", "--render", f"{template}:{dest}")

    assert done.returncode == 0, done.stderr
    expected = [".".join(target.split(".")[:3]) if fits else None for target, fits in PTR_NAMES]
    assert json.loads(dest.read_text()) == expected


def test_tasks_names_gives_no_identity_for_a_ptr_name_out_of_grammar(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWARMDNS_NAMESERVER", hostile.nameserver)

    done = run("tasks", "web", "--names", "--json", "--runtime", "swarm")

    assert done.returncode == 0, done.stderr
    names = [task["name"] for task in json.loads(done.stdout)]
    assert names == [f"web.1.{TASK_ID}", f"shop_web.2.{TASK_ID}"] + [None] * 7
