"""What differs between exchanges, kept in one table: page sizes and how to load only the
market types a run needs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def ccxt_market_type(ccxt_symbol: str) -> str:
    """ccxt's family of a unified symbol: spot (BTC/USDT), linear (settled in the quote,
    BTC/USDT:USDT) or inverse (settled in the base, BTC/USD:BTC)."""
    pair, _, settle = ccxt_symbol.partition(":")
    if not settle:
        return "spot"
    quote = pair.partition("/")[2]
    return "linear" if settle.split("-")[0] == quote else "inverse"


@dataclass(frozen=True)
class RawKlines:
    """A venue's candles endpoint called through ccxt's implicit API (ccxt still builds the
    URL, throttles, parses the JSON and maps errors), the rows turned into an array by numpy
    instead of ccxt's per-row parse (its ``parse_ohlcv`` was a third of a page's CPU)."""

    #: ccxt market type -> implicit API method of the klines endpoint
    methods: Mapping[str, str]

    def request(
        self, exchange: Any, symbol: str, timeframe: str, since: int, limit: int, until: int
    ) -> tuple[str, dict[str, Any]]:
        """The method and parameters ccxt's own fetch_ohlcv would send (Binance's)."""
        market = exchange.market(symbol)
        params = {
            "symbol": market["id"],
            "interval": exchange.timeframes.get(timeframe, timeframe),
            "startTime": since,
            "endTime": until,
            "limit": limit,
        }
        return self.methods[ccxt_market_type(symbol)], params

    @staticmethod
    def table(rows: list[list[Any]]) -> np.ndarray:
        """Rows [open time, open, high, low, close, volume, ...] (numbers as text) as an
        (n, 6) float64 array."""
        if not rows:
            return np.empty((0, 6))
        return np.asarray(rows, dtype=object)[:, :6].astype(np.float64)


@dataclass(frozen=True)
class Venue:
    #: largest page of candles per request (ccxt's cap where it has one)
    page_limit: int = 500
    #: ccxt option holding the market types load_markets fetches, with its known types; an
    #: exchange without one always loads everything
    types_option: str | None = None
    known_types: tuple[str, ...] = field(default=())
    #: the candles endpoint called directly; None: ccxt's fetch_ohlcv
    raw_klines: RawKlines | None = None

    def restrict_types(self, exchange: Any, symbols: Iterable[str]) -> None:
        """Make ``exchange.load_markets`` fetch only the types of ``symbols`` (e.g. Binance:
        spot pairs need exchangeInfo of /api/v3 alone, not the futures lists too)."""
        if self.types_option is None:
            return
        wanted = {ccxt_market_type(s) for s in symbols} & set(self.known_types)
        if wanted:
            option = dict(exchange.options.get(self.types_option) or {})
            option["types"] = [t for t in self.known_types if t in wanted]
            exchange.options[self.types_option] = option


VENUES: dict[str, Venue] = {
    "binance": Venue(
        1000,
        "fetchMarkets",
        ("spot", "linear", "inverse"),
        RawKlines(
            {
                "spot": "publicGetKlines",
                "linear": "fapiPublicGetKlines",
                "inverse": "dapiPublicGetKlines",
            }
        ),
    ),
}
DEFAULT_VENUE = Venue()


def venue(exchange_id: str) -> Venue:
    return VENUES.get(exchange_id, DEFAULT_VENUE)
