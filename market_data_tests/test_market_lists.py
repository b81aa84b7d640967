"""Market lists that cannot be a true state of the exchange (a proxy's HTML page, a truncated
body, JSON of the wrong shape, a list that lost a whole kind) are retried, never believed:
no "not listed" verdict and no delisting comes from them. Real ccxt against the simulator's
four dialects."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from market_data.defs.instruments.assets import instruments_asset
from market_data.defs.resources import STORE_KEY, CandleStoreResource, build_resources
from market_data.domain.catalog import Instrument, implausible
from market_data.domain.symbols import parse_symbol
from market_data.domain.timeframes import Timeframe
from market_data.domain.watchlist import ExchangeSettings, Market
from market_data.exchanges.client import ExchangeClient
from market_data.exchanges.errors import BadSymbolError
from market_data.pipeline.ingest import fetch_markets
from market_data.simulator.server import RunningSimulator
from market_data.store.candles import CandleStore
from market_data.store.series import Series
from market_data_tests.candle_harness import watchlist
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import admin

DAY = 86_400_000
#: each exchange's market list endpoint(s), as the simulator counts paths, and a symbol
MARKET_LISTS = {
    "binance": ("/api/v3/exchangeInfo", "BTC/USDT"),
    "bitfinex": ("/bitfinex/v2/conf/", "BTC/USD"),
    "coinbase": ("/coinbase/api/v3/brokerage/market/products", "BTC/USD"),
    "kraken": ("/kraken/0/public/AssetPairs", "BTC/USD"),
}


def _faults(sim: RunningSimulator, name: str, faults: dict) -> None:
    base = sim.url if name == "binance" else f"{sim.url}/{name}"
    admin(base, "reset", {"faults": True})
    admin(base, "faults", faults)


def _backfill(sim: RunningSimulator, name: str, symbol: str, store: CandleStore) -> list:
    market = Market(name, parse_symbol(symbol), Timeframe.parse("1h"), date(2026, 11, 1))
    url = sim.url if name == "binance" else f"{sim.url}/{name}"
    settings = ExchangeSettings(name, url, retry_base_s=0.05, rate_limit_pause_s=0.5)

    async def go() -> None:
        client = ExchangeClient.of(settings)
        try:
            await fetch_markets(client, store, {market: [(NOW_MS - 3 * DAY, NOW_MS)]})
        finally:
            await client.close()

    asyncio.run(go())
    return store.read_candles(Series.of(market), 0, 2**62).values.tolist()


@pytest.mark.parametrize("name", MARKET_LISTS)
def test_a_garbled_market_list_is_retried_and_the_backfill_completes_identically(
    sim: RunningSimulator, tmp_path: Path, name: str
) -> None:
    path, symbol = MARKET_LISTS[name]
    _faults(sim, name, {})
    clean = _backfill(sim, name, symbol, CandleStore(f"sqlite:///{tmp_path}/clean.sqlite"))
    # the first three market-list answers: an HTML error page, half a body, a `{}` / `[]`
    rules = [{"path": path, "skip": i, "count": 1, "garble": how}
             for i, how in enumerate(("html", "truncated", "empty"))]  # fmt: skip
    _faults(sim, name, {"fail": rules})
    garbled = _backfill(sim, name, symbol, CandleStore(f"sqlite:///{tmp_path}/garbled.sqlite"))
    assert len(clean) == 71 and garbled == clean  # 3 days to 12:34: 71 closed hours


def test_not_listed_is_said_of_a_well_formed_list_and_names_it(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    _faults(sim, "binance", {})
    with pytest.raises(BadSymbolError) as raised:
        _backfill(sim, "binance", "FOO/USDT", CandleStore(f"sqlite:///{tmp_path}/c.sqlite"))
    message = str(raised.value)
    assert message.startswith("FOO-USDT-SPOT (FOO/USDT) is not listed on binance: its spot")
    assert "market list read 20" in message and " UTC (" in message, message


def test_a_list_garbled_on_every_attempt_fails_as_temporary_not_as_not_listed(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    _faults(sim, "binance", {"fail": [{"path": "/api/v3/exchangeInfo", "count": -1,
                                       "garble": "html"}]})  # fmt: skip
    with pytest.raises(Exception) as raised:
        _backfill(sim, "binance", "BTC/USDT", CandleStore(f"sqlite:///{tmp_path}/c.sqlite"))
    assert not isinstance(raised.value, BadSymbolError)
    assert "not valid JSON" in str(raised.value), raised.value


# -- the catalog --------------------------------------------------------------------------


def _refresh_catalog(sim: RunningSimulator, store_url: str) -> dg.ExecuteInProcessResult:
    wl = watchlist(sim.url, ["BTC/USDT/1h"])
    resources = build_resources(wl) | {STORE_KEY: CandleStoreResource(database_url=store_url)}
    return dg.materialize(
        [instruments_asset("binance")],
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _active(store_url: str) -> set[str]:
    stored = CandleStore(store_url).instruments.stored("binance")
    return {s for s, row in stored.items() if row.instrument.active}


@pytest.mark.parametrize(
    "fault",
    [
        {"path": "/api/v3/exchangeInfo", "garble": "empty"},  # no spot market at all
        {"path": "/fapi/v1/exchangeInfo", "garble": "empty"},  # every perpetual gone
        {"path": "/api/v3/exchangeInfo", "garble": "html"},
    ],
    ids=["spot-list-empty", "futures-list-empty", "spot-list-html"],
)
def test_a_garbled_catalog_answer_marks_nothing_delisted(
    sim: RunningSimulator, store_url: str, fault: dict
) -> None:
    _faults(sim, "binance", {})
    assert _refresh_catalog(sim, store_url).success
    before = _active(store_url)
    assert len(before) > 20

    _faults(sim, "binance", {"fail": [{**fault, "count": -1}]})
    failed = _refresh_catalog(sim, store_url)
    assert not failed.success
    assert _active(store_url) == before  # nothing marked delisted
    _faults(sim, "binance", {})
    assert _refresh_catalog(sim, store_url).success and _active(store_url) == before


def _inst(symbol: str, kind: str, active: bool = True) -> Instrument:
    base, quote = symbol.split("-")[:2]
    return Instrument("binance", symbol, symbol, None, base, quote, None, kind, active)


BEFORE = {f"C{i}-USDT-SPOT": "spot" for i in range(40)} | {
    f"C{i}-USDT-PERP": "perp" for i in range(10)
}


@pytest.mark.parametrize(
    ("after", "verdict"),
    [
        (dict(BEFORE), None),
        ({s: k for s, k in BEFORE.items() if s not in {"C1-USDT-SPOT", "C2-USDT-SPOT"}}, None),
        ({}, "has no active instrument (50 active before)"),
        ({s: k for s, k in BEFORE.items() if k == "spot"}, "lost every perp instrument"),
        (
            {s: k for s, k in BEFORE.items() if not s.startswith(("C1", "C2"))},
            "would delist 24 of 50 active instruments at once",
        ),
    ],
    ids=["same", "two-delisted", "empty", "perps-lost", "mass-delisting"],
)
def test_a_catalog_is_doubted_only_when_it_cannot_be_true(
    after: dict[str, str], verdict: str | None
) -> None:
    found = implausible(BEFORE, {s: _inst(s, k) for s, k in after.items()}, 0.25)
    assert (found is None) if verdict is None else (verdict in (found or "")), found


def test_a_catalog_refresh_may_delist_more_when_allowed() -> None:
    after = {s: _inst(s, k) for s, k in BEFORE.items() if not s.startswith(("C1", "C2"))}
    assert implausible(BEFORE, after, 0.5) is None


def test_a_market_list_that_lost_most_of_the_catalog_is_retried_not_believed(
    sim: RunningSimulator, store_url: str
) -> None:
    """Well-formed JSON, but most of the spot pairs the catalog holds active are gone: a
    backfill of a pair that vanished retries instead of saying "not listed", then fails as
    a temporary fault if it persists."""
    _faults(sim, "binance", {})
    assert _refresh_catalog(sim, store_url).success
    store = CandleStore(store_url)
    clean = _backfill(sim, "binance", "SOL/USDT", store)
    assert len(clean) == 71
    partial = {"path": "/api/v3/exchangeInfo", "garble": "partial"}
    _faults(sim, "binance", {"fail": [{**partial, "count": 2}]})  # two answers lose SOL
    assert _backfill(sim, "binance", "SOL/USDT", store) == clean

    _faults(sim, "binance", {"fail": [{**partial, "count": -1}]})
    with pytest.raises(Exception) as raised:
        _backfill(sim, "binance", "SOL/USDT", store)
    assert not isinstance(raised.value, BadSymbolError), raised.value
    assert "market list would delist" in str(raised.value), raised.value
