"""The dependency rules of docs/ARCHITECTURE.md, read from the imports themselves."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "market_data"

#: part -> the parts it may import (besides itself); a part is a folder or a top-level module
ALLOWED: dict[str, set[str]] = {
    "domain": set(),
    "exchanges": {"domain"},
    "store": {"domain"},
    "simulator": {"domain"},
    "pipeline": {"domain", "exchanges", "store"},
    "config": {"domain"},
    "defs": {"config", "domain", "exchanges", "pipeline", "store"},
    "api": {"domain", "pipeline", "store"},
    "definitions": {"config", "defs", "domain"},
    # the Celery workers' app (`celery -A market_data.workers`): an entry point, as
    # definitions is Dagster's and cli the command line's
    "workers": {"definitions", "defs"},
    "cli": {
        "api",
        "config",
        "defs",
        "domain",
        "exchanges",
        "pipeline",
        "signals",
        "simulator",
        "store",
    },
    "signals": set(),
    "sql": set(),
    "__init__": set(),
}


def _part(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imports() -> dict[str, set[str]]:
    """part -> the parts of market_data its modules import."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        part = _part(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("market_data."):
                    found.setdefault(part, set()).add(name.split(".")[1])
    return found


def test_every_part_imports_only_what_the_architecture_allows() -> None:
    imports = _imports()
    assert set(imports) <= set(ALLOWED), (
        f"parts missing from the rules: {set(imports) - set(ALLOWED)}"
    )
    wrong = {part: used - ALLOWED[part] - {part} for part, used in imports.items()}
    assert not {p: w for p, w in wrong.items() if w}


def test_only_the_entry_points_reach_into_defs() -> None:
    users = {part for part, used in _imports().items() if "defs" in used and part != "defs"}
    assert users == {"definitions", "cli", "workers"}


def test_domain_needs_no_dagster_and_no_io() -> None:
    banned = ("dagster", "sqlalchemy", "ccxt", "aiohttp", "requests", "psycopg")
    for path in (PACKAGE / "domain").glob("*.py"):
        text = path.read_text()
        assert not [b for b in banned if f"import {b}" in text or f"from {b}" in text], path


def test_dagster_is_wired_only_in_defs_and_the_entry_points() -> None:
    wired = {
        _part(path)
        for path in PACKAGE.rglob("*.py")
        if "import dagster" in path.read_text() or "from dagster" in path.read_text()
    }
    assert wired == {"defs", "definitions", "cli", "workers"}
