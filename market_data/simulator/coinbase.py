"""Coinbase's public REST dialect (Advanced Trade market endpoints and the v2 currency
endpoints), as ccxt's ``coinbase`` client reads it.

- ``/api/v3/brokerage/market/products`` (``product_type=FUTURE``: none listed here),
  ``/v2/currencies``, ``/v2/currencies/crypto``, ``/v2/exchange-rates``, ``/v2/time``.
- ``/api/v3/brokerage/market/products/<id>/candles``: ``start``/``end`` in seconds,
  ``granularity`` ONE_MINUTE..ONE_DAY (no four hours), at most 350 candles per request,
  newest first, values as text.
- Products: BTC-USD, BTC-USDT, ETH-USD, ETH-USDT.
- Errors: ``{"error": ..., "error_details": ..., "message": ...}``; too many requests is
  HTTP 429 ``rate_limit_exceeded``; 10 public requests a second per address.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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

GRANULARITIES = {
    "ONE_MINUTE": 60, "FIVE_MINUTE": 300, "FIFTEEN_MINUTE": 900, "THIRTY_MINUTE": 1800,
    "ONE_HOUR": 3600, "TWO_HOUR": 7200, "SIX_HOUR": 21600, "ONE_DAY": 86400,
}  # fmt: skip
MAX_CANDLES = 350
PRODUCTS = {"BTC-USD": "BTCUSD", "BTC-USDT": "BTCUSDT", "ETH-USD": "ETHUSD", "ETH-USDT": "ETHUSDT"}
CANDLES = "/api/v3/brokerage/market/products/"


def _error(status: int, error: str, message: str) -> DialectError:
    return DialectError(status, {"error": error, "error_details": message, "message": message})


@dataclass
class Coinbase:
    book: CandleBook
    name: str = "coinbase"
    rates: dict[str, Rate] = field(
        default_factory=lambda: {"v3": Rate(10, 10.0), "v2": Rate(30, 10000 / 3600)}
    )

    def __post_init__(self) -> None:
        self.markets: dict[str, Listed] = listing(
            self.book, {k: (v, False) for k, v in PRODUCTS.items()}
        )

    def budget(self, endpoint: str) -> str:
        return "v2" if endpoint.startswith("/v2/") else "v3"

    def rate_limited(self, retry_after_s: float) -> tuple[DialectError, dict[str, str]]:
        return _error(429, "rate_limit_exceeded", "Too many requests"), {}

    def failure(self, status: int, code: int | None, msg: str | None) -> DialectError:
        return _error(status, "internal_server_error", msg or "Internal server error")

    def handle(
        self, endpoint: str, params: dict[str, str], now_ms: int, faults: Faults
    ) -> tuple[Any, int]:
        if endpoint == "/v2/time":
            iso = datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return {"data": {"iso": iso, "epoch": now_ms // 1000}}, 0
        if endpoint == "/v2/currencies":
            return {"data": [{"id": "USD", "name": "US Dollar", "min_size": "0.01"}]}, 0
        if endpoint == "/v2/currencies/crypto":
            data = [
                {"asset_id": f"{code.lower()}-asset", "code": code, "name": name, "exponent": 8}
                for code, name in (("BTC", "Bitcoin"), ("ETH", "Ethereum"), ("USDT", "Tether"))
            ]
            return {"data": data}, 0
        if endpoint == "/v2/exchange-rates":
            rates = {"BTC": "0.0000166", "ETH": "0.00033", "USDT": "1.0", "USD": "1.0"}
            return {"data": {"currency": "USD", "rates": rates}}, 0
        if endpoint == CANDLES.rstrip("/"):
            if params.get("product_type") == "FUTURE":
                return {"products": [], "num_products": 0}, 0
            products = [self.product(p) for p in self.markets.values()]
            return {"products": products, "num_products": len(products)}, 0
        if endpoint.startswith(CANDLES) and endpoint.endswith("/candles"):
            product = endpoint.removeprefix(CANDLES).removesuffix("/candles")
            return self.candles(product, params, now_ms, faults)
        raise _error(404, "NOT_FOUND", "Not Found")

    def product(self, listed: Listed) -> dict[str, Any]:
        m = listed.market
        tick, lot = step_text(m.price_decimals), step_text(m.lot_decimals)
        return {
            "product_id": listed.native,
            "base_currency_id": m.base,
            "quote_currency_id": m.quote,
            "base_increment": lot,
            "quote_increment": tick,
            "price_increment": tick,
            "base_min_size": lot,
            "base_max_size": "3400",
            "quote_min_size": "1",
            "quote_max_size": "150000000",
            "status": "online",
            "trading_disabled": False,
            "product_type": "SPOT",
            "alias": "",
            "alias_to": [],
        }

    def candles(
        self, product: str, params: dict[str, str], now_ms: int, faults: Faults
    ) -> tuple[Any, int]:
        listed = self.markets.get(product)
        if listed is None:
            raise _error(404, "NOT_FOUND", "ProductID is invalid")
        granularity = params.get("granularity", "")
        if granularity not in GRANULARITIES:
            raise _error(400, "INVALID_ARGUMENT", f"Invalid granularity {granularity!r}")
        start, end = int_param(params, "start"), int_param(params, "end")
        if start is None or end is None or end < start:
            raise _error(400, "INVALID_ARGUMENT", "start and end are required, start <= end")
        step = GRANULARITIES[granularity]
        if (end - start) // step > MAX_CANDLES:
            raise _error(
                400,
                "INVALID_ARGUMENT",
                f"number of candles requested should be less than {MAX_CANDLES}",
            )
        market = listed.market
        bars = self.book.klines(
            market, step * 1000, start * 1000, end * 1000, MAX_CANDLES, now_ms, faults
        ).select(slice(None, None, -1))
        pd, ld = market.price_decimals, market.lot_decimals
        columns = (
            [str(t // 1000) for t in bars.ts.tolist()],
            decimal_text(bars.low, pd),
            decimal_text(bars.high, pd),
            decimal_text(bars.open, pd),
            decimal_text(bars.close, pd),
            decimal_text(bars.volume, ld),
        )
        names = ("start", "low", "high", "open", "close", "volume")
        rows = [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
        return {"candles": rows}, len(bars)
