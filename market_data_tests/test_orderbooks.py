"""Order book snapshots: the ``orderbooks/binance`` asset against the simulator (real ccxt
over HTTP), exact values, the cadence and crossed-book checks, the ``orderbooks`` sensor."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal
from typing import Any

import ccxt
import dagster as dg
import pytest

from market_data.config import timeframes_of
from market_data.defs.orderbooks.assets import orderbook_asset, orderbook_asset_key
from market_data.defs.orderbooks.checks import orderbook_checks
from market_data.defs.orderbooks.sensors import orderbooks_sensor
from market_data.defs.resources import STORE_KEY, CandleStoreResource, build_resources
from market_data.domain.watchlist import Watchlist, parse_watchlist
from market_data.exchanges.client import ExchangeClient
from market_data.pipeline.orderbooks import snapshot
from market_data.simulator.server import RunningSimulator
from market_data.store.candles import CandleStore
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import admin, http_get

SYMBOLS = {
    "BTC-USDT-SPOT": ("/api/v3/depth", "BTCUSDT"),
    "BTC-USDT-PERP": ("/fapi/v1/depth", "BTCUSDT"),
}


def book_watchlist(sim: RunningSimulator, interval_s: int = 60, depth: int = 100) -> Watchlist:
    data = {
        "start": "2026-11-01",
        "exchanges": {
            "binance": {
                "base_url": sim.url, "rate_limit_ms": 0, "retry_attempts": 1, "retry_base_s": 0.05,
                "markets": ["BTC/USDT/1h", "BTC-USDT-PERP/1h"],
                "orderbooks": {"interval_s": interval_s, "depth": depth},
            }
        },
    }  # fmt: skip
    return parse_watchlist(data, frozenset(ccxt.exchanges), date(2026, 11, 21), timeframes_of)


def resources(wl: Watchlist, store_url: str) -> dict[str, Any]:
    return build_resources(wl) | {STORE_KEY: CandleStoreResource(database_url=store_url)}


def materialize(wl: Watchlist, store_url: str) -> dict[str, dg.AssetCheckEvaluation]:
    result = dg.materialize(
        [orderbook_asset("binance", wl), orderbook_checks("binance", wl)],
        resources=resources(wl, store_url),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def exchange_book(sim: RunningSimulator, symbol: str) -> tuple[list[tuple[Decimal, Decimal]], ...]:
    path, native = SYMBOLS[symbol]
    _, _, body = http_get(sim.url, path, symbol=native, limit=100)
    return tuple([(Decimal(p), Decimal(q)) for p, q in body[side]] for side in ("bids", "asks"))


def test_snapshots_at_the_cadence_with_the_exchanges_exact_values(
    sim: RunningSimulator, store_url: str
) -> None:
    wl = book_watchlist(sim)
    store = CandleStore(store_url)
    for minute in range(3):
        if minute:
            admin(sim.url, "clock", {"advance_ms": 60_000})
        checks = materialize(wl, store_url)
        assert checks["cadence"].passed and checks["not_crossed"].passed, checks
        times = store.orderbooks.times("binance", 0, 2**62)
        for symbol in SYMBOLS:
            newest = times[symbol][-1]
            assert abs(newest - (NOW_MS + minute * 60_000)) < 5_000  # the exchange's time
            book = store.orderbooks.read("binance", symbol, newest)
            assert book is not None and len(book.bids) == len(book.asks) == 100
            bids, asks = exchange_book(sim, symbol)  # the clock is frozen: the same book
            assert list(book.bids) == bids and list(book.asks) == asks
            assert all(isinstance(p, Decimal) for p, _ in book.bids)
    times = store.orderbooks.times("binance", 0, 2**62)
    assert {s: len(t) for s, t in times.items()} == {"BTC-USDT-SPOT": 3, "BTC-USDT-PERP": 3}
    # a snapshot is stored once: writing it again changes nothing
    again = store.orderbooks.read("binance", "BTC-USDT-PERP", times["BTC-USDT-PERP"][0])
    assert again is not None and store.orderbooks.write("binance", [again]) == 0


def test_cadence_and_crossed_book_checks_fire_on_faults(
    sim: RunningSimulator, tmp_path: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'books.sqlite'}"
    wl = book_watchlist(sim, depth=20)
    assert all(materialize(wl, url)[c].passed for c in ("cadence", "not_crossed"))
    # spot's depth endpoint fails for one interval: that snapshot is missing
    admin(sim.url, "faults", {"fail": [{"path": "/api/v3/depth", "status": 503, "count": -1}]})
    admin(sim.url, "clock", {"advance_ms": 60_000})
    result = dg.materialize(
        [orderbook_asset("binance", wl)], resources=resources(wl, url),
        instance=dg.DagsterInstance.ephemeral(),
    )  # fmt: skip
    (mat,) = result.asset_materializations_for_node("orderbooks__binance")
    assert "BTC-USDT-SPOT" in mat.metadata["failed"].value
    admin(sim.url, "faults", {"fail": []})
    admin(sim.url, "clock", {"advance_ms": 60_000})
    checks = materialize(wl, url)
    assert not checks["cadence"].passed and checks["not_crossed"].passed
    assert checks["cadence"].metadata["late_symbols"].value == 1
    assert "BTC-USDT-SPOT" in checks["cadence"].metadata["gaps"].value
    assert "BTC-USDT-PERP" not in checks["cadence"].metadata["gaps"].value
    # a crossed book
    admin(sim.url, "faults", {"crossed_book": True})
    admin(sim.url, "clock", {"advance_ms": 60_000})
    checks = materialize(wl, url)
    assert not checks["not_crossed"].passed
    assert checks["not_crossed"].severity == dg.AssetCheckSeverity.ERROR
    assert checks["not_crossed"].metadata["crossed_snapshots"].value == 2


@pytest.mark.parametrize("interval_s", [60, 5])
def test_the_sensor_launches_a_run_per_interval_or_reports_the_live_services(
    sim: RunningSimulator, tmp_path: Any, interval_s: int
) -> None:
    """Every interval_s of a minute or more: one run (once per slot). Below a minute the
    live service takes them: the sensor reports what it stored, with both checks."""
    url = f"sqlite:///{tmp_path / 'books.sqlite'}"
    wl = book_watchlist(sim, interval_s=interval_s, depth=5)
    instance = dg.DagsterInstance.ephemeral()
    store = CandleStore(url)
    if interval_s < 60:  # what the live service does every interval_s
        for _ in range(3):
            client = ExchangeClient.of(wl.exchanges[0])
            symbols = {"BTC-USDT-SPOT": "BTC/USDT", "BTC-USDT-PERP": "BTC/USDT:USDT"}
            asyncio.run(_snapshot(client, store, symbols))
            admin(sim.url, "clock", {"advance_ms": interval_s * 1000})
    with dg.build_sensor_context(instance=instance, resources=resources(wl, url)) as ctx:
        first = orderbooks_sensor(wl)(ctx)
    assert isinstance(first, dg.SensorResult)
    cursor = first.cursor
    with dg.build_sensor_context(
        instance=instance, resources=resources(wl, url), cursor=cursor
    ) as ctx:
        second = orderbooks_sensor(wl)(ctx)
    assert isinstance(second, dg.SkipReason)  # the same slot is not taken twice
    if interval_s >= 60:
        (request,) = first.run_requests
        assert request.asset_selection == [orderbook_asset_key("binance")]
        assert not first.asset_events
        return
    assert not first.run_requests
    mat, *evaluations = first.asset_events
    assert isinstance(mat, dg.AssetMaterialization)
    assert mat.metadata["snapshots"].value == 6
    assert {e.check_name: e.passed for e in evaluations} == {"cadence": True, "not_crossed": True}


async def _snapshot(client: ExchangeClient, store: CandleStore, symbols: dict[str, str]) -> None:
    try:
        taken = await snapshot(client, store, symbols, 5)
        assert not taken.failed and len(taken.books) == 2
    finally:
        await client.close()
