"""Kraken's public REST dialect, as ccxt's ``kraken`` client reads it.

- ``/0/public/Assets``, ``/0/public/AssetPairs`` (Kraken's names: XXBT for BTC, ZUSD for
  USD; pairs XXBTZUSD, XBTUSDT, XETHZUSD, ETHUSDT), ``/0/public/Time``.
- ``/0/public/OHLC?pair=&interval=<minutes>&since=<s>``: only the most recent 720 candles
  of the interval (the one in progress included), whatever ``since`` says; of those, the
  ones opening after ``since``. Rows ``[time s, open, high, low, close, vwap, volume,
  count]`` with values as text, and ``last``: the newest committed candle's time.
- ``/0/public/Trades?pair=&since=<ns>&count=<1..1000>``: every trade since the market's
  listing, oldest first after ``since`` (nanoseconds; seconds are taken too), and ``last``:
  the newest returned trade's time in nanoseconds, the cursor of the next page. Rows
  ``[price, volume, time s, "b"|"s", "l"|"m", "", trade id]``. Each minute with a candle
  has four trades, at 1, 15.25, 30.5 and 45.75 s: its open first, then its low and high (high
  and low when it closes down), its close last, each a quarter of its volume (two more
  decimals than the volume), so the trades of a minute aggregate exactly to its OHLC
  candle. The minute in progress has none yet (its trades come once it has closed).
- Errors come in the body, ``{"error": ["EAPI:Rate limit exceeded"]}``, a rate limit with
  HTTP 200; public requests: one a second (a burst of two).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from market_data.domain.timeframes import MINUTE_MS
from market_data.simulator.book import CandleBook
from market_data.simulator.dialect import (
    DialectError,
    Listed,
    Rate,
    decimal_text,
    int_param,
    listing,
    step_text,
)
from market_data.simulator.faults import Faults
from market_data.simulator.generator import Bars
from market_data.simulator.markets import SimMarket

INTERVALS = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)
TRADES_PAGE = 1000  # trades an answer holds at most
#: each minute's trades: offsets from its open in nanoseconds
TRADE_OFFSETS_NS = (1_000_000_000, 15_250_000_000, 30_500_000_000, 45_750_000_000)
MINUTE_NS = MINUTE_MS * 1_000_000
HISTORY = 720  # candles the OHLC endpoint serves, newest first
#: native pair -> (base asset, quote asset, altname, the book's market id)
PAIRS = {
    "XXBTZUSD": ("XXBT", "ZUSD", "XBTUSD", "BTCUSD"),
    "XBTUSDT": ("XXBT", "USDT", "XBTUSDT", "BTCUSDT"),
    "XETHZUSD": ("XETH", "ZUSD", "ETHUSD", "ETHUSD"),
    "ETHUSDT": ("XETH", "USDT", "ETHUSDT", "ETHUSDT"),
}
ASSETS = {"XXBT": ("XBT", 10), "XETH": ("ETH", 10), "ZUSD": ("USD", 4), "USDT": ("USDT", 8)}


def _error(status: int, *errors: str) -> DialectError:
    return DialectError(status, {"error": list(errors)})


def _asset(altname: str, decimals: int) -> dict[str, Any]:
    return {
        "aclass": "currency",
        "altname": altname,
        "decimals": decimals,
        "display_decimals": min(decimals, 5),
        "status": "enabled",
    }


def _ok(result: Any) -> dict[str, Any]:
    return {"error": [], "result": result}


@dataclass
class Kraken:
    book: CandleBook
    name: str = "kraken"
    rates: dict[str, Rate] = field(default_factory=lambda: {"public": Rate(2, 1.0)})

    def __post_init__(self) -> None:
        self.markets: dict[str, Listed] = listing(
            self.book, {k: (v[3], False) for k, v in PAIRS.items()}
        )
        self.altnames = {v[2]: k for k, v in PAIRS.items()}

    def budget(self, endpoint: str) -> str:
        return "public"

    def rate_limited(self, retry_after_s: float) -> tuple[DialectError, dict[str, str]]:
        return _error(200, "EAPI:Rate limit exceeded"), {}

    def failure(self, status: int, code: int | None, msg: str | None) -> DialectError:
        return _error(status, msg or "EService:Unavailable")

    def handle(
        self, endpoint: str, params: dict[str, str], now_ms: int, faults: Faults
    ) -> tuple[Any, int]:
        if endpoint == "/0/public/Time":
            return _ok({"unixtime": now_ms // 1000}), 0
        if endpoint == "/0/public/Assets":
            return _ok({code: _asset(alt, decimals) for code, (alt, decimals) in ASSETS.items()}), 0
        if endpoint == "/0/public/AssetPairs":
            return _ok({native: self.pair(native) for native in PAIRS}), 0
        if endpoint == "/0/public/OHLC":
            return self.ohlc(params, now_ms, faults)
        if endpoint == "/0/public/Trades":
            return self.trades(params, now_ms, faults), 0
        raise _error(404, "EGeneral:Unknown method")

    def pair(self, native: str) -> dict[str, Any]:
        base, quote, alt, _ = PAIRS[native]
        m = self.markets[native].market
        return {
            "altname": alt,
            "wsname": f"{ASSETS[base][0]}/{ASSETS[quote][0]}",
            "aclass_base": "currency",
            "base": base,
            "aclass_quote": "currency",
            "quote": quote,
            "lot": "unit",
            "cost_decimals": 5,
            "pair_decimals": m.price_decimals,
            "lot_decimals": m.lot_decimals,
            "lot_multiplier": 1,
            "leverage_buy": [],
            "leverage_sell": [],
            "fees": [[0, 0.4]],
            "fees_maker": [[0, 0.25]],
            "fee_volume_currency": "ZUSD",
            "margin_call": 80,
            "margin_stop": 40,
            "ordermin": "0.00005",
            "costmin": "0.5",
            "tick_size": step_text(m.price_decimals),
            "status": "online",
        }

    def native(self, params: dict[str, str]) -> str:
        pair = params.get("pair", "")
        native = pair if pair in self.markets else self.altnames.get(pair)
        if native is None:
            raise _error(200, "EQuery:Unknown asset pair")
        return native

    def ohlc(self, params: dict[str, str], now_ms: int, faults: Faults) -> tuple[Any, int]:
        native = self.native(params)
        interval = int_param(params, "interval") or 1
        if interval not in INTERVALS:
            raise _error(200, "EGeneral:Invalid arguments")
        tf_ms = interval * MINUTE_MS
        market = self.markets[native].market
        bars = self.book.klines(market, tf_ms, None, None, HISTORY, now_ms, faults)
        since = int_param(params, "since")
        if since is not None:
            bars = bars.select(bars.ts > since * 1000)
        pd, ld = market.price_decimals, market.lot_decimals
        vwap = bars.quote_volume // bars.volume.clip(min=1)
        columns = (
            (bars.ts // 1000).tolist(),
            decimal_text(bars.open, pd),
            decimal_text(bars.high, pd),
            decimal_text(bars.low, pd),
            decimal_text(bars.close, pd),
            decimal_text(vwap, pd),
            decimal_text(bars.volume, ld),
            bars.trades.tolist(),
        )
        rows = [list(row) for row in zip(*columns, strict=True)]
        committed = now_ms - now_ms % tf_ms - tf_ms  # the newest closed candle's open
        return _ok({native: rows, "last": committed // 1000}), len(bars)

    def trades(self, params: dict[str, str], now_ms: int, faults: Faults) -> dict[str, Any]:
        native = self.native(params)
        market = self.markets[native].market
        since = int_param(params, "since") or 0
        since_ns = since * 1_000_000_000 if since < 10**11 else since  # seconds, or ns
        count = min(max(int_param(params, "count") or TRADES_PAGE, 1), TRADES_PAGE)
        closed = now_ms - now_ms % MINUTE_MS  # the minute in progress has no trades yet
        if market.ends_ms is not None:
            closed = min(closed, market.ends_ms)
        cursor = max(
            since_ns // MINUTE_NS * MINUTE_MS, market.listed_ms - market.listed_ms % MINUTE_MS
        )
        rows: list[list[Any]] = []
        while len(rows) < count and cursor < closed:
            end = min(cursor + TRADES_PAGE * MINUTE_MS, closed)
            bars = self.book.minutes_until(market, cursor, end, now_ms, faults)
            # after `since` (each row's ns time is last: dropped from the answer below)
            rows += [r for r in minute_trades(bars, market) if r[-1] > since_ns]
            cursor = end
        rows = rows[:count]
        last = rows[-1][-1] if rows else since_ns
        return _ok({native: [r[:-1] for r in rows], "last": str(last)})


def minute_trades(bars: Bars, market: SimMarket) -> list[list[Any]]:
    """Four trades per minute (see the module's doc), each row with its time in ns last."""
    pd, ld = market.price_decimals, market.lot_decimals
    up = bars.close >= bars.open
    prices = np.stack(  # open, low, high, close going up; open, high, low, close going down
        [
            bars.open,
            np.where(up, bars.low, bars.high),
            np.where(up, bars.high, bars.low),
            bars.close,
        ],
        axis=1,
    ).ravel()
    volume = decimal_text(np.repeat(bars.volume * 25, 4), ld + 2)  # a quarter, exactly
    times_ns = (bars.ts[:, None] * 1_000_000 + np.array(TRADE_OFFSETS_NS)).ravel()
    ids = (bars.ts[:, None] // MINUTE_MS * 4 + np.arange(1, 5)).ravel()
    previous = np.concatenate([[0], prices[:-1]])
    sides = np.where(prices >= previous, "b", "s")
    return [
        [price, vol, round(t / 1e9, 4), side, "l" if i % 2 else "m", "", int(i), int(t)]
        for price, vol, t, side, i in zip(
            decimal_text(prices, pd),
            volume,
            times_ns.tolist(),
            sides.tolist(),
            ids.tolist(),
            strict=True,
        )
    ]
