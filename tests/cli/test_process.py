"""``watch`` and ``serve`` end on an interrupt, whichever of their threads receives it."""

from __future__ import annotations

import signal
import sys

import pytest

from swarmdns.testing import FakeSwarm

from .helpers import Child

#: swarmdns, with SIGINT and SIGTERM blocked in its main thread and open in one idle thread
#: started before: the kernel hands them to that thread, so the main thread is never woken
#: by them, as when a signal comes just before it blocks on a lock or a queue.
DEAF_MAIN_THREAD = [
    sys.executable,
    "-c",
    "import signal, sys, threading\n"
    "threading.Thread(target=threading.Event().wait, daemon=True).start()\n"
    "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})\n"
    "from swarmdns._cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n",
]

INTERRUPTS = [signal.SIGINT, signal.SIGTERM]


@pytest.mark.parametrize("signum", INTERRUPTS, ids=lambda signum: signum.name)
def test_watch_ends_on_an_interrupt_its_main_thread_does_not_receive(
    swarm_dns: FakeSwarm, signum: signal.Signals
) -> None:
    web = swarm_dns.create_service("web", replicas=2)
    watch = Child("watch", "web", "--interval", "0.05", command=DEAF_MAIN_THREAD)
    try:
        first = watch.line()
        watch.popen.send_signal(signum)
        code, rest, err = watch.finish()
    finally:
        watch.close()

    assert first.endswith(" now: " + " ".join(str(ip) for ip in web.task_ips) + "\n")
    assert (code, rest, err) == (0, "", "")


@pytest.mark.parametrize("signum", INTERRUPTS, ids=lambda signum: signum.name)
def test_serve_ends_on_an_interrupt_its_main_thread_does_not_receive(
    signum: signal.Signals,
) -> None:
    serve = Child("serve", command=DEAF_MAIN_THREAD)
    try:
        serve.lines_until("Ctrl-C")
        serve.popen.send_signal(signum)
        code, rest, err = serve.finish()
    finally:
        serve.close()

    assert (code, rest, err) == (0, "", "")
