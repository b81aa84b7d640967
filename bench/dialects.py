"""A year of 1h and a month of 1m of BTC per exchange: requests, seconds, share of the
exchange's rate ceiling.

The simulator runs as a process of its own (Binance at its root, Bitfinex, Coinbase and
Kraken under /<name>) at a fixed clock; the client is the project's ExchangeClient with
ccxt's own throttle for each exchange (no rate_limit_ms override), fetching through
fetch_markets into PostgreSQL, first on loopback and then with 100 ms of simulated latency
(real exchanges are 50-300 ms away). The listing is found once before each measurement.
The rate ceiling is the candle endpoint's, as the simulator enforces it:

    binance   6000 weight a minute, a 1000-candle klines page weighs 2: 50 requests/s
    bitfinex  90 requests a minute (then a 60 s block): 1.5 requests/s
    coinbase  10 requests a second (public endpoints)
    kraken    about 1 request a second (public counter); OHLC serves the newest 720 candles

    python bench/dialects.py       # PostgreSQL: DATABASE_URL, else 127.0.0.1:5432
"""

from __future__ import annotations

import asyncio
import math
import time
import warnings
from datetime import date, datetime

from common import admin, scratch_database, simulator  # bench/, on sys.path as a script

from market_data.domain.symbols import parse_symbol
from market_data.domain.timeframes import Timeframe
from market_data.domain.watchlist import ExchangeSettings, Market
from market_data.exchanges.client import ExchangeClient
from market_data.exchanges.venues import venue
from market_data.pipeline.ingest import fetch_markets
from market_data.store.candles import CandleStore

warnings.simplefilter("ignore")
NOW = "2026-11-22T00:00:00+00:00"
NOW_MS = int(datetime.fromisoformat(NOW).timestamp() * 1000)
EXCHANGES = {  # symbol, candle path prefix (as the simulator counts it), ceiling requests/s
    "binance": ("BTC/USDT", "/api/v3/klines", 50.0),
    "bitfinex": ("BTC/USD", "/bitfinex/v2/candles/", 1.5),
    "coinbase": ("BTC/USD", "/coinbase/api/v3/brokerage/market/products/", 10.0),
    "kraken": ("BTC/USD", "/kraken/0/public/OHLC", 1.0),
}
CASES = {"1 year of 1h": ("1h", 365 * 24), "1 month of 1m": ("1m", 30 * 1440)}


def root(url: str, name: str) -> str:
    return url if name == "binance" else f"{url}/{name}"


async def timed_fetch(url: str, name: str, market: Market, span: int, db: str) -> tuple[int, float]:
    """Candles stored by a fetch of the ``span`` closed candles before the clock, and its
    seconds; the client's markets and the listing are loaded first, outside the timing."""
    client = ExchangeClient.of(ExchangeSettings(name, root(url, name)))
    store = CandleStore(db)
    current = market.timeframe.floor(NOW_MS)
    try:
        await client.load_markets()
        await fetch_markets(client, store, {market: [(current - market.timeframe.ms, current)]})
        admin(root(url, name), "reset", {})
        started = time.perf_counter()
        wanted = {market: [(current - span * market.timeframe.ms, current)]}
        fetched = await fetch_markets(client, store, wanted)
        return fetched.markets[market.key].present, time.perf_counter() - started
    finally:
        await client.close()
        store.dispose()


def measure(url: str, name: str, timeframe: str, span: int) -> dict[str, float | int | str]:
    symbol, path, ceiling = EXCHANGES[name]
    market = Market(name, parse_symbol(symbol), Timeframe.parse(timeframe), date(2015, 1, 1))
    with scratch_database(f"md_bench_{name}") as db:
        stored, seconds = asyncio.run(timed_fetch(url, name, market, span, db))
    rows = [r for r in admin(root(url, name), "timeline") if r["path"].startswith(path)]
    limited = sum(1 for r in admin(root(url, name), "timeline") if r["status"] in (418, 429))
    paced = len(rows) - 1  # requests after the first, over the time they took
    window = rows[-1]["t"] - rows[0]["t"] if paced else 0.0
    share = f"{paced / window / ceiling:.0%}" if paced and window > 0 else "one request"
    history = venue(name).history_candles
    expected = span if history is None else min(span, history)
    return {
        "requests": len(rows),
        "minimum": math.ceil(expected / venue(name).page_limit),
        "stored": stored,
        "expected": expected,
        "seconds": seconds,
        "share": share,
        "refused": limited,
    }


def main() -> None:
    with simulator(NOW) as url:
        for latency in (0, 100):
            print(f"\n## latency {latency} ms")
            print(f"{'exchange':9} {'case':14} {'requests':>9} {'minimum':>8} {'stored':>14} "
                  f"{'seconds':>8} {'of ceiling':>12} {'429/418':>8}")  # fmt: skip
            for name in EXCHANGES:
                admin(root(url, name), "faults", {"latency_ms": latency})
                for case, (timeframe, span) in CASES.items():
                    r = measure(url, name, timeframe, span)
                    print(f"{name:9} {case:14} {r['requests']:>9} {r['minimum']:>8} "
                          f"{r['stored']:>6}/{r['expected']:<7} {r['seconds']:>8.1f} "
                          f"{r['share']:>12} {r['refused']:>8}")  # fmt: skip


if __name__ == "__main__":
    main()
