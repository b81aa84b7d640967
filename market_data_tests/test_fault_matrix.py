"""The fault matrix: one `market-data backfill` process per fault (the simulator injecting it)
into a PostgreSQL cluster of the test's own (so the store itself can be stopped), each case
compared candle by candle with the exchange. The table it prints is in docs/DEPLOYMENT.md.

    pytest market_data_tests/test_fault_matrix.py -s      # prints the table
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from market_data.simulator.markets import Kind
from market_data.simulator.server import RunningSimulator
from market_data_tests.candle_harness import exchange_truth
from market_data_tests.conftest import NOW_MS, Cluster, throwaway_cluster
from market_data_tests.helpers import admin, cli, cli_env

JAN, FEB = 1_767_225_600_000, 1_769_904_000_000  # 2026-01-01, 2026-02-01
EXPECTED = (FEB - JAN) // 60_000  # 44,640 1m candles, 45 pages
BACKFILL = ("backfill", "--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1m",
            "--start", "2026-01-01", "--end", "2026-02-01")  # fmt: skip
TRUTH: list[list[float]] = []


@dataclass
class Case:
    name: str
    faults: dict[str, Any]
    exchange: dict[str, Any]
    #: done to the store while the run goes on (the cluster, the database URL)
    during: Callable[[Cluster, str], None] | None = None
    exit_code: int = 0
    #: klines requests answered per status, where the case fixes them
    klines: dict[str, int] | None = None


def _store_restart(cluster: Cluster, url: str) -> None:
    deadline = time.monotonic() + 120
    while _pages(url) < 5 and time.monotonic() < deadline:  # some pages in
        time.sleep(0.05)
    cluster.stop("fast")
    time.sleep(3)
    cluster.start()


CASES = [
    Case("no fault", {}, {}),
    Case(
        "weight limit 40 per 2 s, then a 418 ban",
        {
            "weight_limit": 40,
            "weight_window_s": 2,
            # repeated overruns would earn a ban, as on Binance; 10 s instead of the
            # simulator's 120 s keeps the case short if one came
            "ban_seconds": 10,
            "fail": [{"path": "/api/v3/klines", "status": 418, "skip": 20, "retry_after_s": 2}],
        },
        {},
        # paced by the used weight the exchange reports: no 429; the one forced ban, its
        # page fetched again: the minimum of requests, the same every time
        klines={"200": 45 + 1, "418": 1},
    ),
    Case("5xx on 20% of requests", {"error_rate": 0.2, "error_status": 503, "seed": 7}, {}),
    Case(
        "10% answered past the timeout",
        {"slow_rate": 0.1, "slow_ms": 2500, "seed": 3},
        {"timeout_ms": 1000},
    ),
    Case("20% truncated bodies", {"truncate_rate": 0.2, "seed": 5}, {}),
    Case("20% malformed bodies (HTML)", {"malformed_rate": 0.2, "seed": 9}, {}),
    Case(
        "permanent 4xx mid-run (-1121)",
        {"fail": [{"path": "/api/v3/klines", "status": 400, "code": -1121, "skip": 20}]},
        {},
        exit_code=1,
    ),
    Case("rerun after the permanent 4xx", {}, {}),
    Case(
        "store stopped and restarted mid-run",
        {"latency_ms": 60},
        {"step_retries": 2},
        during=_store_restart,
    ),
]
ROWS: list[str] = []


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def database(cluster: Cluster) -> Iterator[str]:
    """One database for the whole matrix: the 4xx case's rerun continues its run."""
    name = f"md_faults_{uuid.uuid4().hex[:8]}"
    admin_engine = sa.create_engine(cluster.url, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin_engine.dispose()
    yield cluster.url.rsplit("/", 1)[0] + f"/{name}"


def _clear(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        if sa.inspect(conn).has_table("candles"):
            for table in ("candles", "fetch_coverage", "candle_gaps", "instruments"):
                conn.execute(sa.text(f"DELETE FROM {table}"))  # noqa: S608 (constant names)
    engine.dispose()


def _pages(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM fetch_coverage")).scalar() or 0)
    except sa.exc.DBAPIError:
        return 0
    finally:
        engine.dispose()


def _stored(url: str) -> tuple[list[list[float]], int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT ts, open, high, low, close, volume FROM candles "
                                    "ORDER BY ts")).all()  # fmt: skip
        dup = conn.execute(sa.text("SELECT count(*) - count(DISTINCT ts) FROM candles")).scalar()
    engine.dispose()
    return [list(r) for r in rows], int(dup or 0)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault_matrix(
    case: Case, cluster: Cluster, database: str, sim: RunningSimulator, tmp_path: Path
) -> None:
    if not TRUTH:
        TRUTH.extend(exchange_truth("BTCUSDT", Kind.SPOT, "1m", JAN, FEB, NOW_MS))
    if not case.name.startswith("rerun"):
        _clear(database)
    settings = {"retry_base_s": 0.05, **case.exchange}
    env = cli_env(tmp_path, sim.url, database, ["BTC/USDT/1m"], **settings)
    admin(sim.url, "faults", {"seed": 0, **case.faults})
    side = threading.Thread(target=case.during, args=(cluster, database)) if case.during else None
    if side is not None:
        side.start()
    done = cli(env, *BACKFILL)
    if side is not None:
        side.join()
    stats = admin(sim.url, "stats")["requests"].get("/api/v3/klines", {})
    stored, duplicated = _stored(database)
    truth = {row[0]: row for row in TRUTH}
    wrong = sum(1 for row in stored if truth.get(row[0]) != row)
    ROWS.append(
        f"| {case.name} | {EXPECTED} | {len(stored)} | {duplicated} | {wrong} | "
        f"{sum(stats.values())} ({', '.join(f'{n}x{s}' for s, n in sorted(stats.items()))}) "
        f"| {done.returncode} |"
    )
    print("\n".join(["", "| case | expected | stored | duplicated | differing | klines requests "
                     "| exit |", "| --- | --- | --- | --- | --- | --- | --- |", *ROWS]))  # fmt: skip
    assert done.returncode == case.exit_code, done.stdout + done.stderr
    assert duplicated == 0 and wrong == 0  # what is stored is exactly what the exchange has
    if case.klines is not None:
        assert stats == case.klines
    if case.exit_code == 0:
        assert len(stored) == EXPECTED
    else:  # the failure is said by the command itself, and the pages before it are kept
        assert "FAILED" in done.stdout and "Invalid symbol" in done.stdout
        assert 0 < len(stored) < EXPECTED
    assert "Traceback" not in done.stderr


def test_the_matrix_left_no_process_behind(database: str) -> None:
    """No `market-data backfill` of the matrix's database is running (other test files,
    on another worker, may run backfills of their own)."""
    out = subprocess.run(["pgrep", "-f", "market-data backfill"], capture_output=True, text=True)
    left = [pid for pid in out.stdout.split() if database.encode() in _environ(int(pid))]
    assert left == []


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # ended meanwhile
        return b""
