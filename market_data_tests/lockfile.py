"""The lock's bond to pyproject.toml: `make lock` stamps requirements.lock with a fingerprint
of the requirements it was resolved from, and test_lock.py checks that it still matches.

Run as `python -m market_data_tests.lockfile stamp requirements.lock` (what `make lock` does).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements.lock"
#: The extras the lock resolves besides the package's own dependencies.
EXTRAS = ("dev",)
STAMP = "# pyproject.toml requirements sha256: "
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$")


def requirements(pyproject: Path = PYPROJECT) -> list[Requirement]:
    """Every requirement the lock must satisfy: the dependencies and the locked extras."""
    project = tomllib.loads(pyproject.read_text())["project"]
    raw = list(project["dependencies"])
    for extra in EXTRAS:
        raw += project["optional-dependencies"][extra]
    return [Requirement(r) for r in raw]


def fingerprint(pyproject: Path = PYPROJECT) -> str:
    """A digest of what the lock was resolved from: requires-python and every requirement in
    normal form, so a changed range or an added package changes it; comments and order do
    not."""
    project = tomllib.loads(pyproject.read_text())["project"]
    spec = {
        "requires-python": project.get("requires-python", ""),
        "requirements": sorted(str(r) for r in requirements(pyproject)),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def stamped(lock: Path = LOCK) -> str | None:
    """The fingerprint the lock carries, if any."""
    for line in lock.read_text().splitlines():
        if line.startswith(STAMP):
            return line.removeprefix(STAMP).strip()
    return None


def pins(lock: Path = LOCK) -> dict[str, list[tuple[str, str]]]:
    """name -> [(version, environment marker)]: a universal lock may pin one package twice,
    for different Pythons."""
    found: dict[str, list[tuple[str, str]]] = {}
    for line in lock.read_text().splitlines():
        m = _PIN.match(line)
        if m:
            found.setdefault(canonicalize_name(m[1]), []).append((m[2], (m[3] or "").strip()))
    return found


def problems(pyproject: Path = PYPROJECT, lock: Path = LOCK) -> list[str]:
    """Where the lock and pyproject.toml disagree, one line each; empty when they agree."""
    found: list[str] = []
    if stamped(lock) != fingerprint(pyproject):
        found.append(
            "pyproject.toml changed since the lock was made (its requirements' fingerprint "
            "differs): run `make lock`, then `make test`"
        )
    locked = pins(lock)
    for req in requirements(pyproject):
        name = canonicalize_name(req.name)
        if name not in locked:
            found.append(f"{req} is not in the lock")
            continue
        found += [
            f"{req} excludes the locked {name}=={version}"
            for version, _marker in locked[name]
            if not req.specifier.contains(version, prereleases=True)
        ]
    return found


def stamp(lock: Path = LOCK, pyproject: Path = PYPROJECT) -> None:
    """Write the fingerprint of pyproject.toml into the lock, after its header comment."""
    lines = [x for x in lock.read_text().splitlines() if not x.startswith(STAMP)]
    at = next((i for i, x in enumerate(lines) if not x.startswith("#")), len(lines))
    lines.insert(at, STAMP + fingerprint(pyproject))
    lock.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] != ["stamp"]:
        sys.exit("usage: python -m market_data_tests.lockfile stamp [requirements.lock]")
    stamp(Path(sys.argv[2]) if len(sys.argv) > 2 else LOCK)
    print(f"stamped {sys.argv[2] if len(sys.argv) > 2 else LOCK} with {fingerprint()}")
