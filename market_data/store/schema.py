"""The schema: the ordered SQL files in sql/, each applied once, idempotently.

A file named NNN_name.sql applies to every database; NNN_name.postgresql.sql or
NNN_name.sqlite.sql to that dialect only.
"""

from __future__ import annotations

import re
import sqlite3
import time
from importlib.resources import files
from importlib.resources.abc import Traversable

import sqlalchemy as sa

#: The schema files: sql/ of the project, shipped in the package as ``market_data.sql``.
SQL_DIR: Traversable = files("market_data.sql")
#: a SQLite trigger's body, whose statements end with semicolons before its END
_TRIGGER_BODY = re.compile(r"CREATE\s+TRIGGER\b.*\bBEGIN\b", re.IGNORECASE | re.DOTALL)
_LOCK_ID = 4_611_686_018_427_387_903 % 2**31  # any constant: serialises concurrent migrations


def normalise_url(url: str) -> str:
    """SQLAlchemy URL for the candle store: psycopg 3 for PostgreSQL."""
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def migration_files(dialect: str, sql_dir: Traversable = SQL_DIR) -> list[Traversable]:
    out = []
    for path in sorted(sql_dir.iterdir(), key=lambda p: p.name):
        parts = path.name.split(".")
        if parts[-1] == "sql" and (len(parts) == 2 or parts[-2] == dialect):
            out.append(path)
    return out


def statements(sql: str) -> list[str]:
    """The file's statements, without comment lines. A semicolon inside a dollar-quoted
    body (PostgreSQL's functions) or a trigger's BEGIN .. END (SQLite's) does not end one."""
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    out, held = [], ""
    for part in "\n".join(lines).split(";"):
        held = f"{held};{part}" if held else part
        if held.count("$$") % 2 == 0 and (
            not _TRIGGER_BODY.search(held) or sqlite3.complete_statement(held + ";")
        ):
            if held.strip():
                out.append(held.strip())
            held = ""
    if held.strip():
        out.append(held.strip())
    return out


def apply_schema(engine: sa.Engine, sql_dir: Traversable = SQL_DIR) -> list[str]:
    """Apply the files not applied yet, in order; returns their names."""
    applied_now = []
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        conn.execute(
            sa.text(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version VARCHAR(128) PRIMARY KEY, applied_at BIGINT NOT NULL)"
            )
        )
        done = set(conn.execute(sa.text("SELECT version FROM schema_migrations")).scalars())
        for path in migration_files(engine.dialect.name, sql_dir):
            if path.name in done:
                continue
            for stmt in statements(path.read_text()):
                conn.execute(sa.text(stmt))
            conn.execute(
                sa.text("INSERT INTO schema_migrations (version, applied_at) VALUES (:v, :t)"),
                {"v": path.name, "t": int(time.time() * 1000)},
            )
            applied_now.append(path.name)
    return applied_now


def drop_all(engine: sa.Engine) -> None:
    """Drop every table the schema made (``market-data db reset``)."""
    meta = sa.MetaData()
    meta.reflect(engine)
    meta.drop_all(engine)
