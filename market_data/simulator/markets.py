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


#: the span listing dates of extra markets are spread over (Binance's first listings to today)
EXTRA_LISTED = (_ms("2017-08-17"), _ms("2026-10-01"))
#: one extra base in this many was delisted (its spot pair, and its perpetual if it has one)
EXTRA_DELISTED_EVERY = 20
_GOLDEN = 0.6180339887498949


def _extra_listed(i: int) -> int:
    """A listing moment for extra base ``i``: spread evenly (a low-discrepancy sequence, so any
    first N bases cover 2017..2026 alike), on a whole hour, as listings are."""
    first, last = EXTRA_LISTED
    ms = first + int(((i * _GOLDEN) % 1.0) * (last - first))
    return ms - ms % 3_600_000


def extra_pairs(n: int) -> tuple[SimMarket, ...]:
    """``n`` more bases for benchmarks of a whole exchange: X001, X002, ..., X1000, ... Each
    has a spot pair X<i>/USDT, every even one a USD-M perpetual as well (so 1,667 bases are
    about 2,500 markets, Binance's spot + USD-M size). Listing dates spread from 2017 to
    2026-10; one base in EXTRA_DELISTED_EVERY was delisted (its spot pair and perpetual stop
    trading at a date between its listing and 2026-11)."""
    out: list[SimMarket] = []
    for i in range(1, n + 1):
        base = f"X{i:03d}"
        listed = _extra_listed(i)
        ends = None
        if i % EXTRA_DELISTED_EVERY == EXTRA_DELISTED_EVERY // 2:
            until = _ms("2026-11-01")
            ends = listed + (until - listed) * 3 // 5
            ends -= ends % 3_600_000
        price, decimals = 1.0 + i % 997, 4
        out.append(
            SimMarket(
                f"{base}USDT", base, "USDT", Kind.SPOT, listed, price, decimals, 2, ends_ms=ends
            )
        )
        if i % 2 == 0:
            out.append(
                SimMarket(
                    f"{base}USDT", base, "USDT", Kind.PERP, listed, price, decimals, 1, ends_ms=ends
                )
            )
    return tuple(out)


def extra_symbols(n: int, at_ms: int, kind: Kind = Kind.SPOT) -> list[str]:
    """ccxt symbols of the extra markets of ``kind`` trading at ``at_ms`` (for benchmarks:
    X001/USDT, X002/USDT:USDT, ...)."""
    suffix = ":USDT" if kind is Kind.PERP else ""
    return [
        f"{m.base}/{m.quote}{suffix}"
        for m in extra_pairs(n)
        if m.kind is kind and m.trading_at(at_ms)
    ]
