"""The logger of the actions: ``swarmdns.actions`` says what they did and how they failed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._log import logger

if TYPE_CHECKING:
    import logging

#: The child of the ``swarmdns`` logger that reports what actions did and how they failed.
ACTIONS_LOGGER = "actions"


def _log() -> logging.Logger:
    return logger(ACTIONS_LOGGER)
