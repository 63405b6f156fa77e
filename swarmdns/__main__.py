"""``python -m swarmdns``: the same as the ``swarmdns`` command."""

from __future__ import annotations

from ._cli import run

if __name__ == "__main__":
    run()
