"""What every exchange dialect of the simulator shares: its errors, its rate rule (a token
bucket per budget, the way Bitfinex, Coinbase and Kraken meter public requests), the
markets it lists (a native id for a market of the shared candle book) and decimal text."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from market_data.simulator.book import CandleBook
from market_data.simulator.faults import Faults
from market_data.simulator.markets import SimMarket


class DialectError(Exception):
    """An answer other than success, as the exchange sends it (status and body)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(str(body))
        self.status, self.body = status, body


@dataclass(frozen=True)
class Rate:
    """A budget of requests: ``capacity`` at once, refilled at ``per_s``; a request that finds
    it empty is refused, and with ``block_s`` the address is refused that long (Bitfinex)."""

    capacity: float
    per_s: float
    block_s: float = 0.0


@dataclass
class _Bucket:
    tokens: float
    at: float
    blocked_until: float = 0.0


@dataclass
class Buckets:
    """The token buckets of one dialect, one per budget name."""

    rates: dict[str, Rate]
    _state: dict[str, _Bucket] = field(default_factory=dict)

    def admit(self, budget: str) -> float | None:
        """None: let in (one token taken); else the seconds until a request would be."""
        rate = self.rates[budget]
        now = time.monotonic()
        b = self._state.setdefault(budget, _Bucket(rate.capacity, now))
        if now < b.blocked_until:
            return b.blocked_until - now
        b.tokens = min(rate.capacity, b.tokens + (now - b.at) * rate.per_s)
        b.at = now
        if b.tokens >= 1:
            b.tokens -= 1
            return None
        if rate.block_s:
            b.blocked_until = now + rate.block_s
            return rate.block_s
        return (1 - b.tokens) / rate.per_s


@dataclass(frozen=True)
class Listed:
    """A market as one exchange lists it: its native id for a market of the candle book."""

    native: str
    market: SimMarket


class Dialect(Protocol):
    """One exchange's public REST API over the shared candle book."""

    name: str
    rates: dict[str, Rate]

    def budget(self, endpoint: str) -> str:
        """Which of ``rates`` a request to ``endpoint`` draws on."""
        ...

    def handle(
        self, endpoint: str, params: dict[str, str], now_ms: int, faults: Faults
    ) -> tuple[Any, int]:
        """(JSON body, candles served) or DialectError."""
        ...

    def rate_limited(self, retry_after_s: float) -> tuple[DialectError, dict[str, str]]:
        """The exchange's answer to one request too many, and its headers."""
        ...

    def failure(self, status: int, code: int | None, msg: str | None) -> DialectError:
        """A server-side failure in the exchange's style."""
        ...


def listing(book: CandleBook, table: dict[str, tuple[str, bool]]) -> dict[str, Listed]:
    """Native id -> Listed, from native id -> (the book's market id, is futures)."""
    return {
        native: Listed(native, book.market(sim_id, futures))
        for native, (sim_id, futures) in table.items()
    }


def decimal_text(values: np.ndarray, decimals: int) -> list[str]:
    """Fixed-point integers (value x 10**decimals) as exact decimal text."""
    if decimals <= 0:
        return [str(int(v) * 10**-decimals) for v in values]
    scale = 10**decimals
    return [f"{int(v) // scale}.{int(v) % scale:0{decimals}d}" for v in values]


def step_text(decimals: int) -> str:
    """One unit of the last decimal place as text: 2 -> "0.01"."""
    return decimal_text(np.array([1]), decimals)[0]


def decimal_numbers(values: np.ndarray, decimals: int) -> list[float]:
    """Fixed-point integers as JSON numbers (the shortest float that reads back exactly)."""
    return (values.astype(np.float64) / 10.0**decimals).round(max(decimals, 0)).tolist()


def int_param(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        return None
