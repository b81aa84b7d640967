"""Bitfinex's public REST dialect (API v2), as ccxt's ``bitfinex`` client reads it.

- ``/v2/conf/<key>,<key>,...``: one list per key (the pairs, futures pairs, margin pairs and
  currency lists ccxt's ``load_markets`` asks for in two requests).
- ``/v2/candles/trade:<tf>:<symbol>/hist``: rows ``[MTS, OPEN, CLOSE, HIGH, LOW, VOLUME]``
  as numbers; ``start``/``end`` in ms (both inclusive), ``limit`` default 100, at most
  10,000; ``sort=1`` oldest first from ``start``, else newest first back from ``end``.
- Symbols: ``t`` + pair: tBTCUSD, tBTCUST (UST is Bitfinex's USDT), perpetuals
  tBTCF0:USTF0.
- Errors: ``["error", code, "text"]``; too many requests is HTTP 429
  ``["error", 11010, "ratelimit: error"]`` and the address is then refused for 60 s. The
  candles and conf endpoints each allow 90 requests a minute.
- No time endpoint: the clock is the HTTP ``Date`` header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from market_data.domain.timeframes import MINUTE_MS
from market_data.simulator.book import CandleBook
from market_data.simulator.dialect import (
    DialectError,
    Listed,
    Rate,
    decimal_numbers,
    int_param,
    listing,
)
from market_data.simulator.faults import Faults

TIMEFRAMES = {
    "1m": 1, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "3h": 180, "4h": 240, "6h": 360,
    "12h": 720, "1D": 1440,
}  # fmt: skip
MAX_LIMIT = 10_000
SPOT = {"BTCUSD": "BTCUSD", "BTCUST": "BTCUSDT", "ETHUSD": "ETHUSD", "ETHUST": "ETHUSDT"}
PERPETUALS = {"BTCF0:USTF0": "BTCUSDT", "ETHF0:USTF0": "ETHUSDT"}
CURRENCIES = ["BTC", "ETH", "USD", "UST", "BTCF0", "ETHF0", "USTF0"]


def _error(status: int, code: int, text: str) -> DialectError:
    return DialectError(status, ["error", code, text])


@dataclass
class Bitfinex:
    book: CandleBook
    name: str = "bitfinex"
    rates: dict[str, Rate] = field(
        default_factory=lambda: {
            "candles": Rate(90, 1.5, block_s=60),
            "conf": Rate(90, 1.5, block_s=60),
            "other": Rate(90, 1.5, block_s=60),
        }
    )

    def __post_init__(self) -> None:
        self.markets: dict[str, Listed] = listing(
            self.book,
            {f"t{k}": (v, False) for k, v in SPOT.items()}
            | {f"t{k}": (v, True) for k, v in PERPETUALS.items()},
        )

    def budget(self, endpoint: str) -> str:
        if endpoint.startswith("/v2/candles/"):
            return "candles"
        return "conf" if endpoint.startswith("/v2/conf/") else "other"

    def rate_limited(self, retry_after_s: float) -> tuple[DialectError, dict[str, str]]:
        return _error(429, 11010, "ratelimit: error"), {}

    def failure(self, status: int, code: int | None, msg: str | None) -> DialectError:
        return _error(status, code or 10020, msg or "temporarily_unavailable")

    def handle(
        self, endpoint: str, params: dict[str, str], now_ms: int, faults: Faults
    ) -> tuple[Any, int]:
        if endpoint == "/v2/platform/status":
            return [1], 0
        if endpoint.startswith("/v2/conf/"):
            return [self.conf(key) for key in endpoint.removeprefix("/v2/conf/").split(",")], 0
        if endpoint.startswith("/v2/candles/trade:") and endpoint.endswith("/hist"):
            return self.candles(endpoint, params, now_ms, faults)
        raise _error(404, 10020, "endpoint: invalid")

    def conf(self, key: str) -> Any:
        info = [None, None, None, "0.0002", "2000.0", None, None, None, None, None, None, None]
        if key == "pub:info:pair":
            return [[k, info] for k in SPOT]
        if key == "pub:info:pair:futures":
            return [[k, [*info[:8], 0.01, 0.005]] for k in PERPETUALS]
        if key == "pub:list:pair:margin":
            return list(SPOT)
        if key == "pub:list:currency":
            return CURRENCIES
        if key == "pub:map:currency:sym":
            return [["UST", "USDt"], ["USTF0", "USDt0"]]
        if key == "pub:map:currency:label":
            return [["BTC", "Bitcoin"], ["ETH", "Ethereum"], ["USD", "US Dollar"]]
        if key == "pub:map:currency:undl":
            return [["USTF0", "UST"], ["BTCF0", "BTC"], ["ETHF0", "ETH"]]
        return []

    def candles(
        self, endpoint: str, params: dict[str, str], now_ms: int, faults: Faults
    ) -> tuple[Any, int]:
        key = endpoint.removeprefix("/v2/candles/trade:").removesuffix("/hist")
        tf, _, symbol = key.partition(":")
        if tf not in TIMEFRAMES:
            raise _error(500, 10020, "time_frame: invalid")
        listed = self.markets.get(symbol)
        if listed is None:
            raise _error(500, 10020, "symbol: invalid")
        limit = min(int_param(params, "limit") or 100, MAX_LIMIT)
        start, end = int_param(params, "start"), int_param(params, "end")
        tf_ms = TIMEFRAMES[tf] * MINUTE_MS
        market = listed.market
        if params.get("sort") == "1":
            bars = self.book.klines(market, tf_ms, start or 0, end, limit, now_ms, faults)
        else:
            bars = self.book.klines(market, tf_ms, None, end, limit, now_ms, faults)
            if start is not None:
                bars = bars.select(bars.ts >= start)
            bars = bars.select(slice(None, None, -1))
        pd, ld = market.price_decimals, market.lot_decimals
        columns = (
            bars.ts.tolist(),
            decimal_numbers(bars.open, pd),
            decimal_numbers(bars.close, pd),
            decimal_numbers(bars.high, pd),
            decimal_numbers(bars.low, pd),
            decimal_numbers(bars.volume, ld),
        )
        return [list(row) for row in zip(*columns, strict=True)], len(bars)
