"""The ``swarmdns`` command: look services up, watch them, run the fake.

``app`` assembles the parser and dispatches to one module per command;
``options`` holds every option type; ``common`` the exit codes and output
lines the commands share.
"""

from __future__ import annotations

from .app import main, run
from .common import EXIT_CODES

__all__ = ["EXIT_CODES", "main", "run"]
