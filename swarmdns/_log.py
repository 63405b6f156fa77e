"""The library's logger: ``swarmdns`` and its children, imported only when used."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging


def logger(part: str = "") -> logging.Logger:
    """The ``swarmdns`` logger, or its child ``swarmdns.<part>``.

    Logging is imported only when there is something to log.
    """
    import logging  # noqa: PLC0415 - slow to import, needed only on trouble

    _library_logger()
    return logging.getLogger(f"swarmdns.{part}" if part else "swarmdns")


@functools.cache
def _library_logger() -> logging.Logger:
    """The ``swarmdns`` logger, given a ``NullHandler`` once, before its first record.

    A library leaves where its records go to the application. Without any
    handler, Python would print its warnings on stderr (``logging.lastResort``)
    in a program that configured no logging.
    """
    import logging  # noqa: PLC0415 - see logger()

    library = logging.getLogger("swarmdns")
    library.addHandler(logging.NullHandler())
    return library
