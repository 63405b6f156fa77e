"""The public facade: what `import swarmdns` offers, and what it costs."""

from __future__ import annotations

from typing import get_args

import swarmdns
import swarmdns.aio
import swarmdns.testing


def group(name: str) -> tuple[bool, bool, str]:
    """Sorted the way ruff (RUF022) keeps ``__all__``: constants, classes, then functions."""
    return (not name.isupper(), not name[0].isupper(), name)


def test_public_api_is_sorted_and_complete() -> None:
    assert swarmdns.__all__ == sorted(swarmdns.__all__, key=group)
    assert all(hasattr(swarmdns, name) for name in swarmdns.__all__)


def test_testing_api_is_sorted_and_complete() -> None:
    assert swarmdns.testing.__all__ == sorted(swarmdns.testing.__all__, key=group)
    assert all(hasattr(swarmdns.testing, name) for name in swarmdns.testing.__all__)


def test_the_literal_types_are_exported_with_their_values() -> None:
    exported = {
        (swarmdns, "RecordType"): ("A", "PTR"),
        (swarmdns.testing, "EndpointMode"): ("vip", "dnsrr"),
        (swarmdns.testing, "EngineVersion"): swarmdns.testing.ENGINES,
        (swarmdns.testing, "ServiceMode"): ("replicated", "global"),
        (swarmdns.testing, "Transport"): ("udp", "tcp"),
    }

    for (module, name), values in exported.items():
        assert name in module.__all__
        assert get_args(getattr(module, name)) == values, name


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
