"""``swarmdns demo``: a tour of swarmdns on a fake Swarm."""

from __future__ import annotations

import argparse
import queue
from collections.abc import Callable
from typing import TextIO

from .._backends.direct import DirectBackend
from .._sync import service_vip, tasks
from .._values import TaskSetChange
from .._watcher import TaskWatcher
from .common import EXIT_OK, change_line

HELP = "show swarmdns at work on a fake Swarm (no Swarm needed)"
DESCRIPTION = (
    "Start a fake Swarm with a sample service and show its virtual IP, its tasks, and a"
    " watch while it scales, loses a task and gets it replaced."
)


def add_options(parser: argparse.ArgumentParser) -> None:
    """``demo`` takes no option."""


def run(options: argparse.Namespace, out: TextIO) -> int:
    from ..testing import FakeSwarm  # noqa: PLC0415 - the fake only when asked

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    with FakeSwarm() as swarm:
        backend = DirectBackend([swarm.nameserver])
        web = swarm.create_service("web", replicas=3, network="proxy")
        say(f"A fake Swarm (Docker's embedded DNS, on {swarm.nameserver}) runs service 'web'.")
        say()
        say("$ swarmdns vip web            # the virtual IP: one address, load-balanced")
        say(str(service_vip("web", backend=backend)))
        say("$ swarmdns tasks web --names  # tasks.web: every task, with its PTR identity")
        for task in tasks("web", backend=backend):
            say(f"{task.ip}\t{task.name}")
        say()
        say("$ swarmdns watch web           # meanwhile, the service changes:")
        changes: queue.Queue[TaskSetChange] = queue.Queue()
        with TaskWatcher("web", backend=backend, interval=0.1, on_change=changes.put):
            steps: list[tuple[str, Callable[[], object]]] = [
                ("scale web to 5", lambda: swarm.scale("web", 5)),
                ("a task dies", lambda: swarm.kill_task(web.tasks[0])),
                ("Swarm starts its replacement", lambda: swarm.reschedule("web")),
                ("scale web to 0: every name of 'web' vanishes", lambda: swarm.scale("web", 0)),
            ]
            say("  " + change_line(changes.get(timeout=10), False))
            for description, step in steps:
                say(f"# {description}")
                step()
                say("  " + change_line(changes.get(timeout=10), False))
        say()
        say("No Swarm was needed. Inside a task, the same commands talk to 127.0.0.11.")
    return EXIT_OK
