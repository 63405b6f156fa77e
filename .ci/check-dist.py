"""Check a built sdist and wheel of swarmdns; print their version.

Usage: python .ci/check-dist.py SDIST WHEEL

- The version came from git (hatch-vcs), not from a fallback, and is the same
  in the sdist, the wheel and the wheel's swarmdns/_version.py.
- The sdist holds what a packager needs (sources, tests, docs, licence) and
  the generated swarmdns/_version.py, and nothing private (.ci, virtual
  environments, caches).
- Every Python the classifiers name is allowed by Requires-Python.
- The README (the package index's page) has no relative links.
- The project's addresses are all there; placeholders (.example) fail a
  release version and only warn on a development one.
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import tomllib
from packaging.specifiers import SpecifierSet
from packaging.version import Version

sdist_path, wheel_path = map(Path, sys.argv[1:3])
problems: list[str] = []

with zipfile.ZipFile(wheel_path) as wheel:
    names = wheel.namelist()
    (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    metadata = Parser().parsestr(wheel.read(metadata_name).decode())
    version_file = wheel.read("swarmdns/_version.py").decode()
version = Version(metadata["Version"])

with tarfile.open(sdist_path) as sdist:
    members = [m.split("/", 1)[1] for m in sdist.getnames() if "/" in m]
    (pkg_info,) = [m for m in sdist.getnames() if re.fullmatch(r"[^/]+/PKG-INFO", m)]
    pkg_info_file = sdist.extractfile(pkg_info)
    if pkg_info_file is None:
        sys.exit(f"check-dist: {pkg_info} in the sdist is not a file")
    sdist_metadata = Parser().parsestr(pkg_info_file.read().decode())

if sdist_metadata["Version"] != str(version):
    problems.append(f"sdist version {sdist_metadata['Version']} != wheel version {version}")
if f'__version__ = "{version}"' not in version_file:
    problems.append(f"swarmdns/_version.py does not say {version}")
with Path("pyproject.toml").open("rb") as file:
    pyproject = tomllib.load(file)
fallback = pyproject["tool"]["hatch"]["version"]["raw-options"]["fallback_version"]
if version == Version(fallback):
    problems.append(f"version {version} is the fallback: was git missing?")
for needed in (
    "swarmdns/__init__.py",
    "swarmdns/_version.py",
    "swarmdns/py.typed",
    "tests/test_docs.py",
    "docs/index.md",
    "mkdocs.yml",
    "CHANGELOG.md",
    "README.md",
    "LICENSE",
    "pyproject.toml",
):
    if needed not in members:
        problems.append(f"the sdist lacks {needed}")
for member in members:
    if re.match(r"(\.ci|\.venv[^/]*|\.git|site|dist)/|.*__pycache__", member):
        problems.append(f"the sdist holds {member}")

requires_python = SpecifierSet(metadata["Requires-Python"])
for classifier in metadata.get_all("Classifier") or []:
    claimed = re.fullmatch(r"Programming Language :: Python :: (3\.\d+)", classifier)
    if claimed and f"{claimed[1]}.0" not in requires_python:
        problems.append(f"Python {claimed[1]} is claimed but Requires-Python is {requires_python}")

readme = metadata.get_payload()
for target in re.findall(r"\]\(([^)]+)\)", readme):
    if not re.match(r"https?://", target):
        problems.append(f"the README links to {target!r}, which does not work on the index")

urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])
for label in ("Documentation", "Source", "Changelog", "Issues"):
    if label not in urls:
        problems.append(f"no {label} address in [project.urls]")
placeholders = [
    u for u in [*urls.values(), *re.findall(r"https?://[^\s)>\]]+", readme)] if ".example/" in u
]
if placeholders:
    hosts = sorted({u.split("/")[2] for u in placeholders})
    message = f"{len(placeholders)} placeholder addresses (on {', '.join(hosts)})"
    if version.is_devrelease:
        print(f"check-dist: warning: {message}; a release needs real ones", file=sys.stderr)
    else:
        problems.append(message)

if problems:
    print(
        "check-dist: " + "\n  ".join(["the distributions are not ready:", *problems]),
        file=sys.stderr,
    )
    sys.exit(1)
print(version)
