"""The library's logger: ``swarmdns`` and its children, imported only when used."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging


def logger(part: str = "") -> logging.Logger:
    """The ``swarmdns`` logger, or its child ``swarmdns.<part>``.

    Logging is imported only when there is something to log.
    """
    import logging  # noqa: PLC0415 - slow to import, needed only on trouble

    return logging.getLogger(f"swarmdns.{part}" if part else "swarmdns")
