"""What the benchmarks share: a PostgreSQL database of their own, free ports, the simulator
as a process of its own."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

SERVER = os.environ.get("DATABASE_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """Yields the URL of a new database on SERVER (DATABASE_URL, else 127.0.0.1:5432)."""
    admin = sa.create_engine(SERVER, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield SERVER.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def instance_on(url: str, home: Path) -> Any:
    """A Dagster instance in ``home`` whose storage is the PostgreSQL database ``url``."""
    import dagster as dg

    pg = url.replace("postgresql+psycopg://", "postgresql+psycopg2://")
    (home / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: {pg}\ntelemetry:\n  enabled: false\n"
    )
    return dg.DagsterInstance.from_config(str(home))


def timed(fn, *args):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """The simulator's admin endpoints: GET without a body, POST with one."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/admin/{path}", data=data, method="POST" if data else "GET")  # noqa: S310
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback)
        return json.loads(resp.read())


@contextmanager
def simulator(fixed_clock: str, *options: str) -> Iterator[str]:
    """`market-data simulate` as a process of its own (its CPU is not the client's); yields
    its URL, stops it with SIGTERM."""
    port = free_port()
    exe = Path(sys.executable).with_name("market-data")
    proc = subprocess.Popen(
        [str(exe), "simulate", "--port", str(port), "--fixed-clock", fixed_clock, *options],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                admin(url, "stats")
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


class StoredCloses:
    """When the live service stored each closed candle: (symbol, timeframe, open time) ->
    the wall time (ms) its coverage was written. A stream's close extends its series'
    coverage row (its end moves to the close's end, its fetched_at to the write's time), so
    the rows changed since the last look, read every ``every_s``, name each close once
    while a series closes at most once between two looks (a 1m close comes every 6 s at a
    clock 10x). A REST fill's window ending within the look counts as its last candle."""

    def __init__(self, store: Any, exchange: str, timeframes: dict[str, int], since_ms: float):
        from market_data.store.tables import fetch_coverage

        c = fetch_coverage.c
        self.store, self.timeframes, self.since = store, timeframes, int(since_ms)
        self.query = sa.select(c.symbol, c.timeframe, c.end_ts, c.fetched_at).where(
            c.exchange == exchange, c.fetched_at >= sa.bindparam("since")
        )
        self.at: dict[tuple[str, str, int], int] = {}

    def look(self) -> None:
        with self.store.engine.connect() as conn:
            rows = conn.execute(self.query, {"since": self.since}).all()
        for symbol, tf, end, fetched in rows:
            self.at.setdefault((symbol, tf, int(end) - self.timeframes[tf]), int(fetched))
        if rows:  # read again from 10 s before the newest: a transaction that began
            # earlier (its fetched_at older) may commit after a newer one
            self.since = max(int(f) for *_, f in rows) - 10_000

    def until(self, wall_s: float, every_s: float = 1.0) -> None:
        """Look every ``every_s`` until wall time ``wall_s``."""
        while time.time() < wall_s:
            self.look()
            time.sleep(max(0.0, min(every_s, wall_s - time.time())))
        self.look()
