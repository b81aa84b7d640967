"""Kraken's trades: the simulator's /0/public/Trades agrees with its OHLC to the last digit,
and pages by the nanosecond cursor in ``last``."""

from __future__ import annotations

import asyncio
import itertools
import time
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from market_data.domain.timeframes import MINUTE_MS, Timeframe
from market_data.domain.watchlist import ExchangeSettings
from market_data.exchanges.client import ExchangeClient
from market_data.exchanges.trades import Built, candles_from_trades
from market_data.simulator.book import CandleBook
from market_data.simulator.faults import Faults
from market_data.simulator.server import RunningSimulator
from market_data_tests.candle_harness import parse_like_a_client
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import http_get

KRAKEN = "/kraken/0/public"
NS = 1_000_000
HOUR = 3_600_000


def kraken(sim: RunningSimulator, endpoint: str, **params: Any) -> dict[str, Any]:
    """One public request, paced to Kraken's one a second (a burst of two)."""
    for _ in range(5):
        status, _, body = http_get(sim.url, f"{KRAKEN}/{endpoint}", **params)
        assert status == 200
        if body["error"] != ["EAPI:Rate limit exceeded"]:
            return body
        time.sleep(1.0)
    raise AssertionError("rate limited five times")


def all_trades(sim: RunningSimulator, pair: str, since_ns: int) -> list[list[Any]]:
    """Every trade after ``since_ns``, page by page along ``last``."""
    out: list[list[Any]] = []
    while True:
        body = kraken(sim, "Trades", pair=pair, since=since_ns)
        page = body["result"][pair]
        out += page
        if len(page) < 1000:
            return out
        since_ns = int(body["result"]["last"])


def candles(trades: list[list[Any]], tf_ms: int) -> dict[int, tuple[Decimal, ...]]:
    """OHLCV per candle open time (s), in exact decimals, from trades in time order."""
    out: dict[int, list[Decimal]] = {}
    for price, volume, t, *_ in trades:
        p, v = Decimal(price), Decimal(volume)
        ts = int(Decimal(str(t)) * 1000) // tf_ms * tf_ms // 1000
        c = out.get(ts)
        out[ts] = [p, p, p, p, v] if c is None else [c[0], max(c[1], p), min(c[2], p), p, c[4] + v]
    return {ts: tuple(c) for ts, c in out.items()}


def ohlc(rows: list[list[Any]]) -> dict[int, tuple[Decimal, ...]]:
    return {r[0]: tuple(Decimal(x) for x in (r[1], r[2], r[3], r[4], r[6])) for r in rows}


def test_trades_aggregate_to_the_ohlc_candles_over_the_served_window(
    sim: RunningSimulator,
) -> None:
    minute = NOW_MS - NOW_MS % MINUTE_MS
    served = ohlc(kraken(sim, "OHLC", pair="XXBTZUSD", interval=1)["result"]["XXBTZUSD"])
    first = min(served)  # the newest 720 minutes, the one in progress included
    trades = all_trades(sim, "XXBTZUSD", first * 1000 * NS - 1)
    built = candles(trades, MINUTE_MS)
    assert len(built) == 719 and minute // 1000 not in built  # the minute in progress: none yet
    assert built == {ts: c for ts, c in served.items() if ts != minute // 1000}
    # an hour from its trades is the hour's candle too (the whole hours of those trades)
    hours = ohlc(kraken(sim, "OHLC", pair="XXBTZUSD", interval=60)["result"]["XXBTZUSD"])
    whole = {ts: c for ts, c in candles(trades, HOUR).items()
             if ts >= first and (ts * 1000 + HOUR) <= minute}  # fmt: skip
    assert len(whole) == 11 and all(hours[ts] == c for ts, c in whole.items())


def test_trades_page_along_the_nanosecond_cursor_without_a_repeat_or_a_miss(
    sim: RunningSimulator,
) -> None:
    start_ns = (NOW_MS - 12 * 60 * MINUTE_MS) * NS
    body = kraken(sim, "Trades", pair="XBTUSD", since=start_ns)  # the altname works too
    (pair,) = [k for k in body["result"] if k != "last"]
    assert pair == "XXBTZUSD"
    page = body["result"][pair]
    assert len(page) == 1000
    price, volume, t, side, kind, misc, trade_id = page[0]
    assert isinstance(trade_id, int)
    assert isinstance(price, str) and isinstance(volume, str) and side in "bs" and kind in "lm"
    assert Decimal(str(t)) * 10**9 > start_ns and misc == ""
    last = int(body["result"]["last"])
    assert last == Decimal(str(page[-1][2])) * 10**9  # the newest trade's time, in nanoseconds
    following = kraken(sim, "Trades", pair=pair, since=last, count=10)["result"][pair]
    assert len(following) == 10  # count bounds a page
    ids = [r[6] for r in page + following]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # consecutive: none repeated, none missed
    in_seconds = kraken(sim, "Trades", pair=pair, since=start_ns // 10**9)["result"][pair]
    assert in_seconds[0] == page[0]  # `since` in seconds, as Kraken takes it too


def test_trades_begin_at_the_listing_and_an_unknown_pair_is_refused(
    sim: RunningSimulator,
) -> None:
    first = kraken(sim, "Trades", pair="XBTUSDT", since=0, count=4)["result"]["XBTUSDT"]
    listed_s = 1_502_928_000  # BTC/USDT's listing in the simulator: 2017-08-17 00:00 UTC
    assert [r[2] for r in first] == [
        listed_s + 1,
        listed_s + 15.25,
        listed_s + 30.5,
        listed_s + 45.75,
    ]
    assert kraken(sim, "Trades", pair="NOPEUSD")["error"] == ["EQuery:Unknown asset pair"]


def built(sim: RunningSimulator, symbol: str, tf: str, lo: int, hi: int) -> list[Built]:
    """What the product's builder makes of the trades of [lo, hi), span by span."""

    async def go() -> list[Built]:
        client = ExchangeClient.of(ExchangeSettings("kraken", f"{sim.url}/kraken"))
        try:
            ms = Timeframe.parse(tf).ms
            return [
                b async for b in candles_from_trades(client, symbol, ms, lo, hi, NOW_MS, batch=2)
            ]
        finally:
            await client.close()

    return asyncio.run(go())


def truth(sim_id: str, tf: str, lo: int, hi: int) -> list[list[float]]:
    """The book's closed candles opening in [lo, hi), as a client parses Kraken's text."""
    book = CandleBook()
    market = book.market(sim_id)
    ms = Timeframe.parse(tf).ms
    bars = book.klines(market, ms, lo, min(hi, NOW_MS - NOW_MS % ms) - 1, 10**9, NOW_MS, Faults())
    return parse_like_a_client(bars, market)


@pytest.mark.parametrize("tf", ["1m", "1h"])
def test_candles_built_from_trades_are_the_exchanges_candles(
    sim: RunningSimulator, tf: str
) -> None:
    """A day of trades (6 pages, paced by Kraken's rate limit), beyond the 720 minutes its
    OHLC serves: every candle equals the book's to the last float, the spans yielded follow
    each other, and the minute in progress is not built."""
    hi = NOW_MS - NOW_MS % MINUTE_MS + MINUTE_MS  # up to the minute in progress
    lo = hi - 86_400_000 - (hi - 86_400_000) % HOUR
    spans = built(sim, "BTC/USD", tf, lo, hi)
    assert spans[0].start_ms == lo and all(
        a.end_ms == b.start_ms for a, b in itertools.pairwise(spans)
    )
    ms = Timeframe.parse(tf).ms
    assert spans[-1].end_ms == NOW_MS - NOW_MS % ms  # complete up to the exchange clock
    table = np.concatenate([b.table for b in spans])
    assert table.tolist() == truth("BTCUSD", tf, lo, hi)
