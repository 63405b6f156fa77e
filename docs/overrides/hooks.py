"""MkDocs hook: put the installed swarmdns version in ``config.extra.swarmdns_version``.

The version is the one the build of the package computed from git (hatch-vcs),
so the docs built in CI, right after ``pip install -e``, show the commit's
version. The local part (``+g<hash>...``) is left out: it is noise in a header.
"""

from __future__ import annotations

import contextlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any


def on_config(config: Any) -> Any:  # noqa: ANN401 - MkDocsConfig, untyped here
    """Record the version of swarmdns, or nothing when it is not installed."""
    with contextlib.suppress(PackageNotFoundError):
        config.extra["swarmdns_version"] = version("swarmdns").split("+")[0]
    return config
