"""How ``watch`` lives in its process: signals, the reader of its output, the log on stderr."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TextIO

from .._actions import ACTIONS_LOGGER

#: What stops ``watch``: Ctrl-C, and ``docker stop``'s SIGTERM.
_INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class Interrupts:
    """SIGINT and SIGTERM as one KeyboardInterrupt in the main thread; see ``interrupted_once``.

    The first interrupt is claimed once, by whichever comes first: the
    handler in the main thread, which raises, or the thread of ``waking()``,
    which calls its ``wake``. Later ones are ignored.
    """

    def __init__(self) -> None:
        self._claimed = threading.Lock()
        self.signum: int | None = None  # the interrupt that came, once claimed

    @property
    def came(self) -> bool:
        """Whether an interrupt came."""
        return self._claimed.locked()

    def _claim(self) -> bool:
        return self._claimed.acquire(blocking=False)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The signals' handler: raise KeyboardInterrupt for the first interrupt only."""
        if self._claim():
            self.signum = signum
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def waking(
        self, wake: Callable[[], object], *, hangup: Callable[[], object] | None = None
    ) -> Iterator[None]:
        """Within the block, an interrupt not yet handled calls ``wake()``, from a thread.

        Python runs a handler in the main thread between bytecodes. A signal
        that comes just before the main thread blocks (on a lock, a queue,
        an event) is handled only when something else wakes it, which may
        be never. The signal's number is also written, at once and from any
        thread, to a socket (``signal.set_wakeup_fd``); a thread reading it
        claims the interrupt and calls ``wake()``, which must end the main
        thread's wait (a ``KeyboardInterrupt`` put in the queue it reads).
        The wakeup descriptor before is put back afterwards. Outside the main
        thread, this does nothing.

        With ``hangup``, SIGHUP no longer ends the process: the same thread
        calls ``hangup()`` for each (``watch`` then acts again); the handler
        before is put back afterwards.
        """
        if not _in_main_thread():
            yield
            return
        reading, writing = socket.socketpair()
        writing.setblocking(False)
        previous = signal.set_wakeup_fd(writing.fileno(), warn_on_full_buffer=False)
        # Only noted: the wakeup descriptor, read below, is what acts on it.
        hangups = None if hangup is None else signal.signal(signal.SIGHUP, _noted)

        def read() -> None:
            while numbers := reading.recv(64):
                for number in numbers:
                    if number in _INTERRUPTS and self._claim():
                        self.signum = number
                        wake()
                    elif number == signal.SIGHUP and hangup is not None:
                        hangup()

        thread = threading.Thread(target=read, name="swarmdns-interrupts", daemon=True)
        thread.start()
        try:
            yield
        finally:
            if hangup is not None:
                signal.signal(signal.SIGHUP, signal.SIG_DFL if hangups is None else hangups)
            signal.set_wakeup_fd(previous)
            writing.close()  # the reader sees the end of the stream
            thread.join()
            reading.close()


def _noted(signum: int, frame: FrameType | None) -> None:
    """A handler that does nothing, so that the signal reaches the wakeup descriptor."""


@contextlib.contextmanager
def interrupted_once() -> Iterator[Interrupts]:
    """Within the block, SIGTERM interrupts as Ctrl-C does, and only the first interrupt counts.

    SIGTERM raises KeyboardInterrupt in the main thread, so ``docker stop``
    (SIGTERM, then SIGKILL 10 s later) ends ``watch`` cleanly: the command
    under way is stopped with its process group, threads and sockets are
    closed, and the exit status is Ctrl-C's. Any SIGTERM or SIGINT after the
    first is ignored, so that it does not cut the stopping short, which would
    leave the command running (SIGKILL still ends everything). The handlers
    before are put back afterwards (for ``main()`` called in a program's own
    process). Outside the main thread, where Python runs no signal handler,
    this does nothing. Where the main thread blocks, wake it with
    ``Interrupts.waking()``.
    """
    interrupts = Interrupts()
    if not _in_main_thread():
        yield interrupts
        return
    previous = {signum: signal.signal(signum, interrupts.handle) for signum in _INTERRUPTS}
    try:
        yield interrupts
    finally:
        for signum, handler in previous.items():
            # None: a handler not set from Python, which cannot be put back; the default then.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def action_failures_shown() -> contextlib.AbstractContextManager[None]:
    """Print on stderr how a command or a rendering failed, as ``swarmdns: <message>`` lines.

    The library's other warnings (lookups) stay off stderr, as a library's
    do (its logger has a ``NullHandler``): ``watch`` prints failures and
    recoveries itself.
    """
    return warnings_shown(ACTIONS_LOGGER, "swarmdns: %(message)s")


@contextlib.contextmanager
def warnings_shown(part: str, form: str) -> Iterator[None]:
    """Within the block, print the warnings of logger ``swarmdns.<part>`` on stderr as ``form``."""
    import logging  # noqa: PLC0415 - slow to import, needed only by watch and serve

    shown = logging.StreamHandler(sys.stderr)
    shown.setLevel(logging.WARNING)
    shown.setFormatter(logging.Formatter(form))
    library = logging.getLogger(f"swarmdns.{part}")
    library.addHandler(shown)
    try:
        yield
    finally:
        library.removeHandler(shown)


@contextlib.contextmanager
def when_reader_leaves(out: TextIO, notify: Callable[[], object]) -> Iterator[None]:
    """Call ``notify()`` (from a thread) if ``out`` is a pipe whose reader goes away.

    So that ``swarmdns watch web | head -1`` ends when ``head`` does, not when
    the next change comes (which may be hours later) and fails to be written.
    """
    try:
        fd = out.fileno()
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except (OSError, ValueError):  # no file behind it (io.StringIO)
        is_pipe = False
    if not is_pipe or not hasattr(select, "poll"):
        yield
        return
    stop_reading, stop_writing = os.pipe()

    def wait_for_reader_to_leave() -> None:
        poller = select.poll()
        poller.register(fd, 0)  # errors only: POLLERR once the pipe has no reader
        poller.register(stop_reading, select.POLLIN)
        if any(ready == fd for ready, _ in poller.poll()):
            notify()

    thread = threading.Thread(
        target=wait_for_reader_to_leave, name="swarmdns-output-reader", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        os.write(stop_writing, b"x")
        thread.join()
        os.close(stop_reading)
        os.close(stop_writing)
