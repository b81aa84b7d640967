"""A killed or interrupted `market-data` process never wedges an exchange, and every failure is
visible: the command line as a process, candles in PostgreSQL, the simulator over HTTP."""

from __future__ import annotations

import select
import signal
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from market_data.simulator.markets import Kind
from market_data.simulator.server import RunningSimulator
from market_data.store.candles import CandleStore
from market_data.store.series import Series
from market_data.store.tables import fetch_coverage
from market_data_tests.candle_harness import exchange_truth
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import admin, cli, cli_env, cli_process, free_port

START, JAN = 1_735_689_600_000, 1_767_225_600_000  # 2025-01-01, 2026-01-01
PAGES = -(-(JAN - START) // 60_000 // 1000)  # 526 pages of 1000 1m candles
BACKFILL = ("backfill", "--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1m",
            "--start", "2025-01-01", "--end", "2026-01-01")  # fmt: skip
BTC = Series("binance", "BTC-USDT-SPOT", "1m")


@pytest.fixture
def env(tmp_path: Path, sim: RunningSimulator, store_url: str) -> dict[str, str]:
    return cli_env(tmp_path, sim.url, store_url, ["BTC/USDT/1m"], start="2025-01-01")


@pytest.fixture
def store_url(pg_database: str) -> str:
    from market_data_tests.candle_harness import clear

    clear(pg_database)
    return pg_database


def _pages_written(url: str) -> int:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            q = sa.select(sa.func.count()).select_from(fetch_coverage)
            return int(conn.execute(q).scalar() or 0)
    except sa.exc.ProgrammingError:
        return 0  # no schema yet
    finally:
        engine.dispose()


def _wait_for_pages(url: str, at_least: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (n := _pages_written(url)) >= at_least:
            return n
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} pages written in {timeout} s")


def _klines_200(sim: RunningSimulator) -> int:
    return admin(sim.url, "stats")["requests"].get("/api/v3/klines", {}).get("200", 0)


def _runs(env: dict[str, str]) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return list(instance.get_runs())


def test_a_killed_backfill_does_not_wedge_the_exchange_and_a_plain_rerun_completes(
    env: dict[str, str], sim: RunningSimulator, store_url: str
) -> None:
    admin(sim.url, "faults", {"latency_ms": 200})  # slow pages, so the kill lands mid-run
    proc = cli_process(env, *BACKFILL)
    written = _wait_for_pages(store_url, PAGES * 3 // 10)  # ~30%
    proc.kill()  # kill -9: no cleanup of any kind
    proc.wait(10)
    written = _pages_written(store_url)
    (killed,) = _runs(env)
    assert killed.status == dg.DagsterRunStatus.STARTED  # left behind, holding the pool slot
    admin(sim.url, "faults", {"latency_ms": 0})
    time.sleep(0.5)  # requests the killed process had in flight are answered (and counted)
    before = _klines_200(sim)

    rerun = cli(env, *BACKFILL)  # the same command, no manual clean-up

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"run {killed.run_id[:8]} was left STARTED but its process" in rerun.stdout
    assert _klines_200(sim) - before == PAGES - written  # only the pages never written
    stored = CandleStore(store_url).read_candles(BTC, 0, 2**62).values.tolist()
    assert stored == exchange_truth("BTCUSDT", Kind.SPOT, "1m", START, JAN, NOW_MS)
    statuses = {r.run_id: r.status for r in _runs(env)}
    assert statuses.pop(killed.run_id) == dg.DagsterRunStatus.FAILURE
    assert list(statuses.values()) == [dg.DagsterRunStatus.SUCCESS]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_cancels_the_run_keeps_its_pages_and_exits_non_zero(
    env: dict[str, str], sim: RunningSimulator, store_url: str, signum: int
) -> None:
    config = Path(env["MARKET_DATA_CONFIG"])  # step retries on: an interrupt must still stop
    config.write_text(config.read_text().replace("step_retries: 0", "step_retries: 2"))
    admin(sim.url, "faults", {"latency_ms": 200})
    proc = cli_process(env, *BACKFILL)
    _wait_for_pages(store_url, 5)
    proc.send_signal(signum)
    sent = time.monotonic()
    out, _ = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 10
    assert proc.returncode == 128 + signum, out
    assert "CANCELED" in out and "run the same command again" in out
    (run,) = _runs(env)
    assert run.status == dg.DagsterRunStatus.CANCELED
    written = _pages_written(store_url)
    assert 5 <= written < PAGES
    assert CandleStore(store_url).candle_stats(BTC, 0, 2**62)[0] == written * 1000  # kept
    time.sleep(1)
    assert _pages_written(store_url) == written  # nothing goes on after the exit


def test_an_unlisted_symbol_is_refused_before_anything_is_recorded(env: dict[str, str]) -> None:
    done = cli(env, "backfill", "--exchange", "binance", "--symbol", "FOO/USDT", "--start", "2026-01-01")  # fmt: skip
    assert done.returncode == 2
    assert "FOO-USDT-SPOT (FOO/USDT) is not listed on binance" in done.stderr
    assert "Traceback" not in done.stderr
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert not any(
            instance.get_dynamic_partitions(f"markets_binance_{tf}")
            for tf in ("1m", "5m", "15m", "1h", "4h", "1d")
        )
        assert instance.get_runs() == []
    status = cli(env, "status", "--json")
    assert "FOO" not in status.stdout


def test_an_unreachable_database_is_one_line_with_the_password_hidden(
    env: dict[str, str],
) -> None:
    env["DATABASE_URL"] = f"postgresql://md:s3cret@127.0.0.1:{free_port()}/candles"
    for args in (("db", "init"), (*BACKFILL, "--resume"), ("gaps", "list")):
        done = cli(env, *args)
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr and "s3cret" not in done.stderr + done.stdout
        assert done.stderr.strip().count("\n") == 0, done.stderr
        assert "cannot reach the candle database postgresql://md:***@127.0.0.1" in done.stderr


def test_a_busy_exchange_is_waited_for_politely_and_ctrl_c_still_works(
    env: dict[str, str],
) -> None:
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("exchange:binance", 1)
        claim = storage.claim_concurrency_slot("exchange:binance", "a-live-run-elsewhere", "step")
        assert claim.is_claimed
    proc = cli_process(env, *BACKFILL)
    try:
        said = _read_until(proc, "waiting for pool exchange:binance (held by run a-live-r)")
        time.sleep(2)  # it waits (sleeping), launching nothing
        assert proc.poll() is None and _runs(env) == []
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 130, said


def _read_until(proc: subprocess.Popen[str], text: str, timeout: float = 60) -> str:
    """The process's output up to the line holding ``text``."""
    assert proc.stdout is not None
    seen, deadline = "", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            seen += line
            if text in line:
                return seen
            if not line:
                break
    raise AssertionError(f"{text!r} not printed; output: {seen}")
