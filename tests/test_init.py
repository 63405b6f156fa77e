"""The public facade: what `import swarmdns` offers, and what it costs."""

from __future__ import annotations

import swarmdns
import swarmdns.aio


def test_public_api_is_sorted_and_complete() -> None:
    # Sorted the way ruff (RUF022) keeps it: constants, classes, then functions.
    def group(name: str) -> tuple[bool, bool, str]:
        return (not name.isupper(), not name[0].isupper(), name)

    assert swarmdns.__all__ == sorted(swarmdns.__all__, key=group)
    assert all(hasattr(swarmdns, name) for name in swarmdns.__all__)


def test_importing_swarmdns_leaves_heavy_modules_alone() -> None:
    # Import time is measured in tests/benchmarks; this guards the reason it is low.
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = (
        "import sys, swarmdns; print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('dns', 'asyncio', 'logging', 'concurrent')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]"
