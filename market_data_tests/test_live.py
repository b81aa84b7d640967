"""`market-data live` as a process, over real WebSocket connections to the simulator, whose
clock runs 30 times faster than real time (a 1m candle closes every 2 s): closed candles
stored once each and soon, none in progress; dropped connections, a kill -9 and a restart
leave no gap; a watchlist change subscribes without a restart; Dagster sees the service."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa
import yaml

from market_data.config import load_watchlist
from market_data.defs.candles.sensors import freshness_sensor
from market_data.defs.live.sensors import live_sensor
from market_data.defs.resources import STORE_KEY, CandleStoreResource, build_resources
from market_data.domain.intervals import merge_intervals
from market_data.domain.watchlist import Watchlist
from market_data.exchanges.client import ExchangeClient
from market_data.exchanges.streams import Kline
from market_data.pipeline.live import ExchangeLive, LiveService
from market_data.pipeline.status import live_state
from market_data.simulator.book import Clock
from market_data.simulator.faults import Faults
from market_data.simulator.server import RunningSimulator, Simulator
from market_data.store.candles import CandleStore
from market_data.store.live import live_health
from market_data.store.series import Series
from market_data.store.tables import fetch_coverage
from market_data_tests.candle_harness import clear
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import add_markets, admin, cli, cli_env, cli_process, http_get

RATE = 30.0  # exchange ms per wall ms
MINUTE = 60_000
CLOSE_S = MINUTE / RATE / 1000  # wall seconds between two 1m closes
MARKETS = [
    {"symbol": "BTC/USDT", "timeframes": ["1m"]},
    {"symbol": "ETH/USDT", "timeframes": ["1m", "5m"]},
    {"symbol": "BTC-USDT-PERP", "timeframes": ["1m"]},  # same stream name as BTC/USDT
]
SERIES = [
    (Series("binance", "BTC-USDT-SPOT", "1m"), "/api/v3/klines", "BTCUSDT"),
    (Series("binance", "ETH-USDT-SPOT", "1m"), "/api/v3/klines", "ETHUSDT"),
    (Series("binance", "BTC-USDT-PERP", "1m"), "/fapi/v1/klines", "BTCUSDT"),
]


@pytest.fixture
def running_sim() -> Iterator[RunningSimulator]:
    """The simulator with a clock running RATE times real time from 20 s before a close."""
    with RunningSimulator(Simulator(Faults(), Clock(fixed_ms=NOW_MS))) as running:
        start = NOW_MS - NOW_MS % MINUTE + 40_000
        admin(running.url, "clock", {"run_from_ms": start, "rate": RATE})
        yield running


@pytest.fixture
def pg_store(pg_database: str) -> str:
    """This run's PostgreSQL database, emptied first: the session's database is shared, and
    another test's candles of the same clock (every simulator starts at NOW_MS) would be
    counted as this one's."""
    clear(pg_database)
    return pg_database


def live_env(
    tmp_path: Path, sim: RunningSimulator, store_url: str, **exchange: Any
) -> dict[str, str]:
    env = cli_env(
        tmp_path, sim.url, store_url, MARKETS, start="2026-11-01", retry_base_s=0.1, **exchange
    )
    config = Path(env["MARKET_DATA_CONFIG"])
    data = yaml.safe_load(config.read_text())
    data["live"] = {"refresh_s": 1, "heartbeat_s": 1, "stale_after_s": 5}
    config.write_text(yaml.safe_dump(data))
    return env


def start_live(env: dict[str, str]) -> subprocess.Popen[str]:
    return cli_process(env, "live")


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def streaming(store: CandleStore, n: int) -> bool:
    service = store.live.service("binance")
    return service is not None and service.connected >= 1 and service.streams == n


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> str:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return out


def freeze(sim: RunningSimulator) -> int:
    """Stop the exchange's clock mid-minute (no close pending), and say when."""
    now = admin(sim.url, "clock")["now_ms"]
    if now % MINUTE > MINUTE - 10_000:  # too near a close: let it pass first
        time.sleep(0.5)
        now = admin(sim.url, "clock")["now_ms"]
    admin(sim.url, "clock", {"fixed_ms": now})
    time.sleep(1.0)  # the last close's events are written
    return now


def assert_complete(sim: RunningSimulator, store: CandleStore, frozen: int, since: int) -> None:
    """Every 1m candle from ``since`` to the last one closed at ``frozen`` is stored once
    with REST's values, and none in progress."""
    last_closed = frozen - frozen % MINUTE - MINUTE
    for series, path, symbol in SERIES:
        stored = store.read_candles(series, since, 2**62)
        expected = np.arange(since, last_closed + 1, MINUTE)
        assert stored["ts"].tolist() == expected.tolist(), series
        _, _, rows = http_get(
            sim.url, path, symbol=symbol, interval="1m", startTime=since, limit=1000
        )
        rest = np.asarray([r[1:6] for r in rows if r[0] <= last_closed], dtype=np.float64)
        values = stored[["open", "high", "low", "close", "volume"]].to_numpy()
        assert np.array_equal(values, rest), series


def streamed_spans(store: CandleStore, since: int) -> dict[str, list[tuple[int, int]]]:
    """Per 1m series, the spans after ``since`` whose candles the streams stored (coverage
    of source "stream": consecutive closes extend one row)."""
    c = fetch_coverage.c
    query = sa.select(c.symbol, c.start_ts, c.end_ts).where(
        c.timeframe == "1m", c.end_ts > since, c.source == "stream"
    )
    spans: dict[str, list[tuple[int, int]]] = {}
    with store.engine.connect() as conn:
        for symbol, lo, hi in conn.execute(query):
            spans.setdefault(symbol, []).append((max(int(lo), since), int(hi)))
    return {s: merge_intervals(v) for s, v in spans.items()}


def test_closed_candles_stored_once_soon_and_seen_by_dagster(
    running_sim: RunningSimulator, store_url: str, tmp_path: Path
) -> None:
    sim = running_sim
    env = live_env(tmp_path, sim, store_url)
    store = CandleStore(store_url)
    proc = start_live(env)
    try:
        wait_for(lambda: streaming(store, 4), 60, "the live service to stream")
        since = admin(sim.url, "clock")["now_ms"]
        since -= since % MINUTE
        time.sleep(6 * CLOSE_S)  # six closes
        watchlist = load_watchlist(Path(env["MARKET_DATA_CONFIG"]))
        instance = dg.DagsterInstance.ephemeral()
        keys = ["BTC-USDT-SPOT:1m", "ETH-USDT-SPOT:1m", "ETH-USDT-SPOT:5m", "BTC-USDT-PERP:1m"]
        add_markets(instance, "binance", keys)
        resources = build_resources(watchlist) | {
            STORE_KEY: CandleStoreResource(database_url=store_url)
        }
        fresh: Any = None
        seen: Any = None

        def settled() -> bool:  # (on a loaded machine a close may be a moment from stored)
            nonlocal fresh, seen
            with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
                fresh = freshness_sensor(watchlist)(ctx)
            with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
                seen = live_sensor(watchlist)(ctx)
            return isinstance(fresh, dg.SkipReason) and all(
                e.metadata["live_behind"].value == 0 for e in seen.asset_events
            )

        with contextlib.suppress(AssertionError):
            wait_for(settled, 10, "the sensors to see every market current")
        status = json.loads(cli(env, "status", "--json").stdout)
        frozen = freeze(sim)
    finally:
        out = stop(proc)
    assert "live: stopped" in out
    # Dagster: freshness has nothing to do while every market is current; the UI is told
    assert isinstance(fresh, dg.SkipReason), fresh
    # one observation per timeframe's asset, each of its own markets
    observations = {e.asset_key.path[-1]: e for e in seen.asset_events}
    assert [k.path for k in (e.asset_key for e in seen.asset_events)] == [
        ["candles", "binance", "1m"], ["candles", "binance", "5m"],
    ]  # fmt: skip
    for tf, markets in (("1m", 3), ("5m", 1)):
        observation = observations[tf]
        assert observation.metadata["live_state"].value == "streaming"
        assert observation.metadata["live_markets"].value == 4  # the service's, in all
        assert f"{markets} of 4 market(s) at {tf}, 0 behind" in (observation.description or "")
        assert observation.metadata["live_behind"].value == 0
    live = status["live"]["binance"]  # and `market-data status` says the same
    assert live["state"] == "streaming" and live["markets"] == 4 and live["connections"] == "2/2"
    assert_complete(sim, store, frozen, since)
    stats = admin(sim.url, "ws")
    closes = [(c["futures"], c["stream"], c["t"]) for c in admin(sim.url, "ws/closes")]
    assert len(closes) == len(set(closes)) == stats["closes_sent"]  # each close sent once
    # the streams, not REST, stored the candles after `since` (six closed: at least five
    # each; a close missed on a slow machine is REST's, and assert_complete saw it stored)
    spans = streamed_spans(store, since)
    assert set(spans) == {"BTC-USDT-SPOT", "ETH-USDT-SPOT", "BTC-USDT-PERP"}
    assert all(sum(hi - lo for lo, hi in s) >= 5 * MINUTE for s in spans.values()), spans
    # stopped: the heartbeat says so, and freshness takes over again
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        after = freshness_sensor(watchlist)(ctx)
    assert isinstance(after, dg.SensorResult) and after.run_requests


def test_dropped_connections_leave_no_gap_nor_duplicate(
    running_sim: RunningSimulator, pg_store: str, tmp_path: Path
) -> None:
    """Every connection cut twice: mid-minute, and just before a close (the reconnect comes
    after it: the missed candle is fetched over REST before the stream resumes)."""
    sim = running_sim
    store = CandleStore(pg_store)
    proc = start_live(live_env(tmp_path, sim, pg_store))
    try:
        wait_for(lambda: streaming(store, 4), 60, "the live service to stream")
        since = admin(sim.url, "clock")["now_ms"]
        since -= since % MINUTE
        for offset in (30_000, MINUTE - 3_000):
            wait_for(lambda o=offset: abs(admin(sim.url, "clock")["now_ms"] % MINUTE - o) < 2_000,
                     10, "the moment to drop")  # fmt: skip
            assert admin(sim.url, "ws/drop", {})["dropped"] == 2  # spot and futures
            time.sleep(3 * CLOSE_S)
        wait_for(lambda: streaming(store, 4), 30, "the reconnection")
        frozen = freeze(sim)
        service = store.live.service("binance")
    finally:
        out = stop(proc)
    assert_complete(sim, store, frozen, since)
    assert service is not None and service.reconnects >= 4
    assert "REST fill" in out and "reconnecting" in out


def test_a_watchlist_change_subscribes_without_a_restart(
    running_sim: RunningSimulator, tmp_path: Path
) -> None:
    """... and order book snapshots a second apart are the live service's."""
    sim = running_sim
    url = f"sqlite:///{tmp_path / 'candles.sqlite'}"
    books = {"interval_s": 1, "depth": 5, "symbols": ["BTC-USDT-SPOT"]}
    env = live_env(tmp_path, sim, url, orderbooks=books)
    store = CandleStore(url)
    proc = start_live(env)
    try:
        wait_for(lambda: streaming(store, 4), 60, "the live service to stream")
        opened = admin(sim.url, "ws")["connections_opened"]
        config = Path(env["MARKET_DATA_CONFIG"])
        data = yaml.safe_load(config.read_text())
        data["exchanges"]["binance"]["markets"].append({"symbol": "SOL/USDT", "timeframes": ["1m"]})
        config.write_text(yaml.safe_dump(data))
        wait_for(lambda: streaming(store, 5), 30, "the new market's subscription")
        sol = Series("binance", "SOL-USDT-SPOT", "1m")
        first = admin(sim.url, "clock")["now_ms"]
        time.sleep(3 * CLOSE_S)
        frozen = freeze(sim)
        after = admin(sim.url, "ws")
    finally:
        stop(proc)
    assert after["connections_opened"] == opened  # subscribed on the open connection
    assert "solusdt@kline_1m" in {c["stream"] for c in admin(sim.url, "ws/closes")}
    stored = store.read_candles(sol, first - first % MINUTE, 2**62)["ts"].tolist()
    last_closed = frozen - frozen % MINUTE - MINUTE
    assert stored and stored[-1] == last_closed
    assert stored == list(range(stored[0], last_closed + 1, MINUTE))
    times = store.orderbooks.times("binance", 0, 2**62)
    assert set(times) == {"BTC-USDT-SPOT"} and len(times["BTC-USDT-SPOT"]) >= 3
    book = store.orderbooks.read("binance", "BTC-USDT-SPOT", times["BTC-USDT-SPOT"][-1])
    assert book is not None and len(book.bids) == len(book.asks) == 5 and not book.crossed


def test_kill_9_and_a_restart_leave_no_gap(running_sim: RunningSimulator, tmp_path: Path) -> None:
    sim = running_sim
    url = f"sqlite:///{tmp_path / 'candles.sqlite'}"
    env = live_env(tmp_path, sim, url)
    store = CandleStore(url)
    proc = start_live(env)
    wait_for(lambda: streaming(store, 4), 60, "the live service to stream")
    since = admin(sim.url, "clock")["now_ms"]
    since -= since % MINUTE
    time.sleep(2 * CLOSE_S)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    time.sleep(3 * CLOSE_S)  # three candles close while nothing listens
    proc = start_live(env)
    try:
        wait_for(lambda: (s := store.live.service("binance")) is not None and s.pid == proc.pid
                 and s.connected >= 1, 60, "the restarted service")  # fmt: skip
        time.sleep(2 * CLOSE_S)
        frozen = freeze(sim)
    finally:
        out = stop(proc)
    assert "REST fill" in out
    assert_complete(sim, store, frozen, since)


def test_a_close_written_before_the_restart_fill_reads_the_store_leaves_no_gap(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    """A restart subscribes while its reader already runs, so a close can be written before
    the fill of the candles missed while down looks for the newest stored one. The candles
    in between are fetched all the same (the race a kill -9 and restart can hit)."""
    store, watchlist, series = _btc_1m(sim, tmp_path)
    last_closed = NOW_MS - NOW_MS % MINUTE - MINUTE
    down_at = last_closed - 5 * MINUTE  # the service stopped with this candle stored
    admin(sim.url, "clock", {"fixed_ms": down_at + MINUTE + 1})
    asyncio.run(_restart(store, watchlist, close_at=None))
    assert store.last_ts(series) == down_at
    admin(sim.url, "clock", {"fixed_ms": NOW_MS})
    _, _, rows = http_get(sim.url, "/api/v3/klines", symbol="BTCUSDT", interval="1m",
                          startTime=down_at, limit=10)  # fmt: skip
    row = next(r for r in rows if r[0] == last_closed)
    asyncio.run(_restart(store, watchlist, close_at=(last_closed, row)))
    assert_stored_as_rest(store, series, down_at, down_at, last_closed, rows)


def test_a_first_close_written_before_the_start_fill_reads_the_store_leaves_no_gap(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    """A new market (nothing stored): its first close can be written before the start's
    fill looks for the newest stored candle (at 15,030 streams most were). Today's candles
    before it are fetched all the same; the fill does not start after the close."""
    store, watchlist, series = _btc_1m(sim, tmp_path)
    last_closed = NOW_MS - NOW_MS % MINUTE - MINUTE
    day = NOW_MS - NOW_MS % (1440 * MINUTE)
    _, _, rows = http_get(sim.url, "/api/v3/klines", symbol="BTCUSDT", interval="1m",
                          startTime=day, limit=1000)  # fmt: skip
    row = next(r for r in rows if r[0] == last_closed)
    asyncio.run(_restart(store, watchlist, close_at=(last_closed, row)))
    assert_stored_as_rest(store, series, 0, day, last_closed, rows)


def _btc_1m(sim: RunningSimulator, tmp_path: Path) -> tuple[CandleStore, Watchlist, Series]:
    """A SQLite store and a watchlist of BTC/USDT 1m on the simulator."""
    store = CandleStore(f"sqlite:///{tmp_path / 'candles.sqlite'}")
    env = cli_env(tmp_path, sim.url, str(store.engine.url), [{"symbol": "BTC/USDT",
                  "timeframes": ["1m"]}], start="2026-11-01")  # fmt: skip
    watchlist = load_watchlist(Path(env["MARKET_DATA_CONFIG"]))
    return store, watchlist, Series("binance", "BTC-USDT-SPOT", "1m")


def assert_stored_as_rest(
    store: CandleStore, series: Series, read_from: int, first: int, last: int, rows: list[Any]
) -> None:
    """Read from ``read_from``, the store holds every candle from ``first`` to ``last`` and
    nothing else, each with the values of REST's ``rows``."""
    stored = store.read_candles(series, read_from, 2**62)
    assert stored["ts"].tolist() == list(range(first, last + 1, MINUTE))
    rest = np.asarray([r[1:6] for r in rows if first <= r[0] <= last], dtype=np.float64)
    assert np.array_equal(stored[["open", "high", "low", "close", "volume"]].to_numpy(), rest)


async def _restart(
    store: CandleStore, watchlist: Watchlist, close_at: tuple[int, list[Any]] | None
) -> None:
    """A fresh service for the watchlist's Binance markets: the close ``close_at`` (its
    open time and REST row) written first, then the fills its start asked for."""
    service = LiveService(store, lambda: watchlist, lambda w, n: ExchangeClient.of(w.exchange(n)))
    try:
        markets = service.markets(watchlist, await service.catalogs(watchlist))["binance"]
        async with aiohttp.ClientSession() as session:
            live = ExchangeLive(service.clients["binance"], store, watchlist, session, print)
            await live.update(watchlist, markets)
            (name,) = live.markets
            if close_at is not None:
                ts, row = close_at
                o, h, low, c, v = (float(x) for x in row[1:6])
                await live.write([Kline(name, ts, (o, h, low, c, v), True, NOW_MS, time.time())])
            live.fills.setdefault(name, None)  # what the subscription's confirmation asks
            await live.fill(live.fills)
            await live.close()
    finally:
        for client in service.clients.values():
            await client.close()


def down(store: CandleStore) -> list[str]:
    """The markets `market-data status` shows live "down" (their connection not open)."""
    health = live_health(store.live, "binance", 5)
    return [k for k in health.streams if live_state(health, k, MINUTE) == "down"]


def test_an_incident_that_refuses_connections_ends_without_a_ban_nor_a_gap(
    running_sim: RunningSimulator, pg_store: str, tmp_path: Path
) -> None:
    """Every connection cut, then every handshake refused for 12 s (each attempt counts
    against the address), with the host allowing 4 attempts per 20 s and banning after one
    refusal past that. Retrying on its own backoff (0.5, 1, 2, 4, 8 s) a connection makes
    5 or 6 attempts in that time and is banned (checked by hand with connect_limit 1000:
    both hosts stay away); the service takes at most 3 per 20 s per host
    (live.connect_limit): no attempt is refused for the limit, nobody is banned, both hosts
    come back, and no candle is missing."""
    sim = running_sim
    store = CandleStore(pg_store)
    env = live_env(tmp_path, sim, pg_store)
    config = Path(env["MARKET_DATA_CONFIG"])
    data = yaml.safe_load(config.read_text())
    data["live"] |= {"connect_limit": 3, "connect_window_s": 20}
    config.write_text(yaml.safe_dump(data))
    proc = start_live(env)
    try:
        wait_for(lambda: streaming(store, 4), 60, "the live service to stream")
        since = admin(sim.url, "clock")["now_ms"]
        since -= since % MINUTE
        limits = {"connect_limit": 4, "connect_window_s": 20, "ban_after": 1, "ban_s": 600}
        admin(sim.url, "ws/settings", limits | {"down_s": 12})
        assert admin(sim.url, "ws/drop", {})["dropped"] == 2
        wait_for(lambda: len(down(store)) == 4, 10, "the status to say which markets are down")
        time.sleep(12)
        wait_for(lambda: len(admin(sim.url, "ws")["connections"]) == 2, 40, "both hosts back")
        wait_for(lambda: streaming(store, 4) and not down(store), 30, "the service to say so")
        time.sleep(3 * CLOSE_S)
        frozen = freeze(sim)
        stats = admin(sim.url, "ws")
    finally:
        out = stop(proc)
    assert stats["down"] >= 2  # the incident was met
    assert (stats["limited"], stats["banned"], stats["bans"]) == (0, 0, 0)
    assert_complete(sim, store, frozen, since)
    assert "handshake refused: HTTP 503" in out or "reconnecting" in out
