"""The lock (requirements.lock) and pyproject.toml agree, and .venv holds what is locked.
Offline and fast: nothing is resolved or downloaded."""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

from market_data_tests.lockfile import LOCK, PYPROJECT, pins, problems, requirements, stamp


def test_the_lock_matches_pyproject() -> None:
    assert problems() == []


def test_the_venv_holds_exactly_the_locked_versions() -> None:
    """`make install` installs from the lock: every package locked for this Python is
    installed at its locked version."""
    wrong = []
    for name, versions in pins().items():
        for version, marker in versions:
            if marker and not Marker(marker).evaluate():
                continue
            try:
                installed = metadata.version(name)
            except metadata.PackageNotFoundError:
                installed = "missing"
            if installed != version:
                wrong.append(f"{name}: locked {version}, installed {installed}")
    assert wrong == []


def _copies(tmp_path: Path) -> tuple[Path, Path]:
    pyproject, lock = tmp_path / "pyproject.toml", tmp_path / "requirements.lock"
    shutil.copy(PYPROJECT, pyproject)
    shutil.copy(LOCK, lock)
    return pyproject, lock


def test_a_range_changed_without_relocking_is_caught_and_relocking_clears_it(
    tmp_path: Path,
) -> None:
    pyproject, lock = _copies(tmp_path)
    text = pyproject.read_text()
    assert '"pandas>=2.2,<4"' in text
    pyproject.write_text(text.replace('"pandas>=2.2,<4"', '"pandas>=2.3,<4"'))
    # the locked pandas still satisfies the new range, yet the lock was not made from it
    found = problems(pyproject, lock)
    assert len(found) == 1 and "make lock" in found[0], found
    stamp(lock, pyproject)  # what `make lock` ends with, after resolving
    assert problems(pyproject, lock) == []


def test_a_range_that_excludes_the_locked_version_names_both(tmp_path: Path) -> None:
    pyproject, lock = _copies(tmp_path)
    locked = pins(lock)["sqlalchemy"][0][0]
    text = pyproject.read_text()
    pyproject.write_text(text.replace('"sqlalchemy>=2.0.30,<2.2"', '"sqlalchemy<2"'))
    found = problems(pyproject, lock)
    assert f"sqlalchemy<2 excludes the locked sqlalchemy=={locked}" in found, found


def test_a_dependency_added_without_relocking_is_caught(tmp_path: Path) -> None:
    pyproject, lock = _copies(tmp_path)
    text = pyproject.read_text()
    pyproject.write_text(text.replace('"tabulate>=0.9",', '"tabulate>=0.9",\n    "tenacity>=9",'))
    assert "tenacity>=9" in {str(r) for r in requirements(pyproject)}
    found = problems(pyproject, lock)
    assert "tenacity>=9 is not in the lock" in found, found
    assert canonicalize_name("tenacity") not in pins(lock)
