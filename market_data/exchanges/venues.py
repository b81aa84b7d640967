"""What differs between exchanges, kept in one table: page sizes, how deep history goes, how
the first candle and the clock are found, how a rate limit is honoured, and how to load only
the market types a run needs. Which timeframes exist is ccxt's ``timeframes`` of the
exchange (the watchlist refuses the others when it loads)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from market_data.domain.watchlist import ExchangeSettings


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
class RawDepth:
    """A venue's order book endpoint through ccxt's implicit API, its numbers kept as the
    exact text the exchange sent (ccxt's fetch_order_book turns them into floats)."""

    #: ccxt market type -> implicit API method
    methods: Mapping[str, str]
    #: ccxt market type -> the only limits the endpoint takes (None: any up to the maximum)
    limits: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def request(self, exchange: Any, symbol: str, depth: int) -> tuple[str, dict[str, Any]]:
        kind = ccxt_market_type(symbol)
        allowed = self.limits.get(kind)
        limit = depth if not allowed else min((n for n in allowed if n >= depth), default=depth)
        return self.methods[kind], {"symbol": exchange.market(symbol)["id"], "limit": limit}


@dataclass(frozen=True)
class Streams:
    """Where a venue's WebSocket kline streams are (Binance: one host per market type)."""

    #: ccxt market type -> the stream host (wss://...)
    hosts: Mapping[str, str]
    #: with a base URL (the simulator: one port for every host): market type -> its path
    local_paths: Mapping[str, str]
    #: streams per connection, at most, by market type
    max_streams: Mapping[str, int]


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
    #: closed candles the exchange serves at most, newest first, whatever the start asked
    #: (Kraken's OHLC: 720, less a margin for the clock moving during a run); None: all
    history_candles: int | None = None
    #: rows one answer of the candles endpoint holds when the market's history reaches back
    #: past what it serves (Kraken: 720, the one in progress included): a shorter answer
    #: holds the market's whole history, so its first candle is the listing
    served_rows: int | None = None
    #: how the first candle is found: "since_zero" (one request from time 0, oldest first),
    #: "scan" (windows of daily candles from ``scan_from_ms``: the exchange needs an end
    #: within a page of the start), or "none" (history too short to tell)
    first_candle: Literal["since_zero", "scan", "none"] = "since_zero"
    scan_from_ms: int = 0
    #: ccxt's fetch_ohlcv takes ``until`` for this exchange
    takes_until: bool = True
    #: ccxt method whose response's Date header is the clock, where ccxt has no fetch_time
    clock_method: str | None = None
    #: seconds to pause after a rate limit that says no Retry-After
    rate_limit_pause_s: float = 1.0
    #: the order book endpoint called directly (exact text); None: ccxt's fetch_order_book
    raw_depth: RawDepth | None = None
    #: WebSocket kline streams the live service reads; None: the venue is not streamed
    streams: Streams | None = None
    #: the exchange reports the weight used in the window on every answer (Binance's
    #: X-MBX-USED-WEIGHT-1M): requests are paced by it (exchanges/budget.py)
    reports_weight: bool = False
    #: the exchange's public data archive of candle files (exchanges/archive.py); None: none
    archive_url: str | None = None
    #: the exchange serves every trade since a market's listing (Kraken's /0/public/Trades):
    #: history older than ``history_candles`` is built from them (exchanges/trades.py)
    trades: bool = False

    @property
    def pool_limit(self) -> int:
        """Runs that may fetch from the exchange at once: two where the exchange reports the
        weight used (a backfill and a freshness run pace together by it), else one (each
        process spends the whole rate budget ccxt's throttle allows)."""
        return 2 if self.reports_weight else 1

    def all_types(self, exchange: Any) -> None:
        """Make ``exchange.load_markets`` fetch every market type again."""
        if self.types_option is not None:
            option = dict(exchange.options.get(self.types_option) or {})
            option["types"] = list(self.known_types)
            exchange.options[self.types_option] = option

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
        reports_weight=True,
        raw_depth=RawDepth(
            {"spot": "publicGetDepth", "linear": "fapiPublicGetDepth"},
            {"linear": (5, 10, 20, 50, 100, 500, 1000)},
        ),
        streams=Streams(
            {"spot": "wss://stream.binance.com:9443", "linear": "wss://fstream.binance.com"},
            {"spot": "", "linear": "/fstream"},
            {"spot": 1024, "linear": 200},
        ),
        archive_url="https://data.binance.vision",
    ),
    # candles: 90 requests a minute; a rate limit blocks the address for 60 s
    "bitfinex": Venue(10_000, clock_method="publicGetPlatformStatus", rate_limit_pause_s=60),
    # candles: the end must be within 350 candles of the start (ccxt asks for 300 at most)
    "coinbase": Venue(300, first_candle="scan", scan_from_ms=1_420_070_400_000),
    # OHLC: only the newest 720 candles of any interval; no end parameter
    # trades: every one since the listing, 1,000 per request
    "kraken": Venue(720, history_candles=710, served_rows=720, first_candle="none",
                    takes_until=False, rate_limit_pause_s=2, trades=True),
}  # fmt: skip
DEFAULT_VENUE = Venue()


def venue(exchange_id: str) -> Venue:
    return VENUES.get(exchange_id, DEFAULT_VENUE)


def archive_url(settings: ExchangeSettings) -> str | None:
    """Where the exchange's archive files are read from: the setting, else the exchange's own
    archive when its API is the exchange's own too (``base_url`` unset: an API pointed
    elsewhere, a simulator or a proxy, says nothing of where its archive is); None: off."""
    if not settings.archive:
        return None
    if settings.archive_url:
        return settings.archive_url.rstrip("/")
    return None if settings.base_url else venue(settings.name).archive_url


def from_trades(settings: ExchangeSettings) -> bool:
    """History older than the candle endpoint serves is built from the exchange's trades."""
    return settings.trades and venue(settings.name).trades


def history_depth(settings: ExchangeSettings) -> int | None:
    """Closed candles of a timeframe the exchange serves, newest first, by any route (None:
    its whole history: every candle endpoint's, or Kraken's through its trades)."""
    return depth(settings.name, from_trades(settings))


def depth(exchange_id: str, trades: bool) -> int | None:
    """``history_depth`` of an exchange whose trades are (or are not) taken."""
    return None if trades else venue(exchange_id).history_candles
