"""The simulator's market list: what its exchangeInfo endpoints advertise."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class Kind(StrEnum):
    SPOT = "spot"
    PERP = "perp"
    FUTURE = "future"


def _ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True)
class SimMarket:
    """One market: its native id, listing date and the scale of its integer prices and sizes."""

    id: str  # exchange-native symbol, e.g. BTCUSDT or BTCUSDT_261225
    base: str
    quote: str
    kind: Kind
    listed_ms: int
    base_price: float
    price_decimals: int  # tick = 10 ** -price_decimals
    lot_decimals: int  # lot = 10 ** -lot_decimals
    #: share of minutes without trades (no candle), as on an illiquid pair
    empty_share: float = 0.0
    #: last trading moment: delivery of a dated future, or a delisting
    ends_ms: int | None = None
    #: the pair whose price path this market follows (BTC/USD follows BTC/USDT, apart from
    #: the fastest layer of noise: a small per-market offset); None = its own pair
    follows: str | None = None

    @property
    def seed(self) -> int:
        # Stable across processes (unlike hash()): a function of kind and id only.
        digest = hashlib.blake2b(f"{self.kind}:{self.id}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") >> 1

    @property
    def pair_seed(self) -> int:
        """Shared by every market of one pair (spot, perpetual, futures): their prices move
        together, as on a real exchange, and differ only in the fastest layer of noise."""
        pair = self.follows or f"{self.base}/{self.quote}"
        digest = hashlib.blake2b(pair.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") >> 1

    @property
    def futures(self) -> bool:
        return self.kind is not Kind.SPOT

    def trading_at(self, now_ms: int) -> bool:
        return self.listed_ms <= now_ms and (self.ends_ms is None or now_ms < self.ends_ms)


def _spot(base: str, quote: str, listed: str, price: float, pd: int, ld: int, **kw) -> SimMarket:
    return SimMarket(f"{base}{quote}", base, quote, Kind.SPOT, _ms(listed), price, pd, ld, **kw)


DELIVERY_260925 = _ms("2026-09-25T08:00:00")
DELIVERY_261225 = _ms("2026-12-25T08:00:00")

MARKETS: tuple[SimMarket, ...] = (
    _spot("BTC", "USDT", "2017-08-17", 60000.0, 2, 5),
    _spot("ETH", "USDT", "2017-08-17", 3000.0, 2, 4),
    _spot("BNB", "USDT", "2017-11-06", 500.0, 2, 3),
    _spot("SOL", "USDT", "2020-08-11", 150.0, 2, 3),
    _spot("XRP", "USDT", "2019-05-04", 0.6, 4, 0),
    _spot("ADA", "USDT", "2018-04-17", 0.5, 4, 1),
    _spot("DOGE", "USDT", "2019-07-05", 0.15, 5, 0),
    _spot("AVAX", "USDT", "2020-09-22", 30.0, 2, 2),
    _spot("DOT", "USDT", "2020-08-18", 7.0, 3, 2),
    _spot("LINK", "USDT", "2019-01-16", 15.0, 3, 2),
    _spot("LTC", "USDT", "2017-12-13", 80.0, 2, 3),
    _spot("TRX", "USDT", "2018-06-11", 0.12, 5, 1),
    _spot("ATOM", "USDT", "2019-04-29", 8.0, 3, 2),
    _spot("UNI", "USDT", "2020-09-17", 8.0, 3, 2),
    _spot("XLM", "USDT", "2018-05-31", 0.11, 5, 0),
    _spot("NEAR", "USDT", "2020-10-14", 5.0, 3, 1),
    _spot("APT", "USDT", "2022-10-19", 9.0, 3, 2),
    _spot("ARB", "USDT", "2023-03-23", 1.1, 4, 1),
    _spot("FIL", "USDT", "2020-10-15", 5.0, 3, 2),
    _spot("ETH", "BTC", "2017-07-14", 0.05, 5, 4),
    _spot("BTC", "USDC", "2018-12-15", 60000.0, 2, 5),
    # Listed recently: history before this date does not exist.
    _spot("NEWT", "USDT", "2026-10-15T12:00:00", 2.0, 4, 1),
    # Illiquid: about a third of its minutes have no trade, hence no candle.
    _spot("ZEN", "BTC", "2019-01-23", 0.0001, 7, 2, empty_share=0.35),
    # Delisted: trades no more after this date.
    _spot("OLD", "USDT", "2020-01-01", 1.0, 4, 1, ends_ms=_ms("2026-06-01")),
    SimMarket("BTCUSDT", "BTC", "USDT", Kind.PERP, _ms("2019-09-08"), 60000.0, 1, 3),
    SimMarket("ETHUSDT", "ETH", "USDT", Kind.PERP, _ms("2019-11-27"), 3000.0, 2, 3),
    SimMarket("SOLUSDT", "SOL", "USDT", Kind.PERP, _ms("2020-09-14"), 150.0, 3, 0),
    SimMarket(
        "BTCUSDT_260925",
        "BTC",
        "USDT",
        Kind.FUTURE,
        _ms("2026-06-26T08:00:00"),
        60500.0,
        1,
        3,
        ends_ms=DELIVERY_260925,
    ),
    SimMarket(
        "BTCUSDT_261225",
        "BTC",
        "USDT",
        Kind.FUTURE,
        _ms("2026-09-26T08:00:00"),
        61000.0,
        1,
        3,
        ends_ms=DELIVERY_261225,
    ),
)


#: Markets other exchanges list and Binance does not: USD pairs. Their prices follow the
#: USDT pair's, so one market has consistent prices on every simulated exchange.
USD_MARKETS: tuple[SimMarket, ...] = (
    _spot("BTC", "USD", "2015-01-14", 60000.0, 2, 8, follows="BTC/USDT"),
    _spot("ETH", "USD", "2016-05-18", 3000.0, 2, 8, follows="ETH/USDT"),
)


class MarketIndex:
    """Lookup of markets by API family (spot or USD-M futures) and native id."""

    def __init__(self, markets: tuple[SimMarket, ...] = MARKETS) -> None:
        self.spot = {m.id: m for m in markets if not m.futures}
        self.futures = {m.id: m for m in markets if m.futures}

    def family(self, futures: bool) -> dict[str, SimMarket]:
        return self.futures if futures else self.spot


def extra_pairs(n: int) -> tuple[SimMarket, ...]:
    """``n`` more spot pairs (X001/USDT, X002/USDT, ...) for benchmarks of many markets."""
    return tuple(_spot(f"X{i:03d}", "USDT", "2024-01-01", 1.0 + i, 4, 2) for i in range(1, n + 1))
