"""What the exchange knows: candles per market (generated or replayed), the clock, holes."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from market_data.domain.timeframes import MINUTE_MS
from market_data.simulator.faults import Faults
from market_data.simulator.generator import (
    Bars,
    aggregate,
    log_price,
    minute_bars,
    partial_minute,
)
from market_data.simulator.markets import (
    MARKETS,
    USD_MARKETS,
    MarketIndex,
    SimMarket,
    extra_pairs,
)
from market_data.simulator.replay import ReplaySeries


@dataclass
class Clock:
    """Real time by default; ``offset_ms`` shifts it, ``fixed_ms`` freezes it, ``rate``
    makes it run faster (``run_from``: from an instant, ``rate`` exchange ms per wall ms)."""

    offset_ms: int = 0
    fixed_ms: int | None = None
    rate: float = 1.0

    def now_ms(self) -> int:
        if self.fixed_ms is not None:
            return self.fixed_ms
        return int(time.time() * 1000 * self.rate) + self.offset_ms

    def run_from(self, start_ms: int, rate: float = 1.0) -> None:
        """Let the clock run from ``start_ms`` now, at ``rate`` times real time."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.fixed_ms, self.rate = None, rate
        self.offset_ms = start_ms - int(time.time() * 1000 * rate)

    def rate_per_ms(self) -> float | None:
        """Exchange ms per wall ms; None while frozen."""
        return None if self.fixed_ms is not None else self.rate

    def wall_at(self, t_ms: int) -> float | None:
        """When (wall time, s) the running clock reads ``t_ms``; None while frozen."""
        if self.fixed_ms is not None:
            return None
        return (t_ms - self.offset_ms) / self.rate / 1000


def shifted(bars: Bars, pct: float) -> Bars:
    """Prices moved by ``pct`` percent, rounded to whole ticks per minute (a monotonic map,
    so every timeframe is still the exact aggregate of its minutes); sizes unchanged."""
    factor = 1.0 + pct / 100.0

    def scale(ticks: np.ndarray) -> np.ndarray:
        return np.rint(ticks * factor).astype(ticks.dtype)

    return replace(
        bars, open=scale(bars.open), high=scale(bars.high), low=scale(bars.low),
        close=scale(bars.close), quote_volume=scale(bars.quote_volume),
    )  # fmt: skip


class CandleBook:
    """Every simulated market's candles, shared by every exchange dialect: a market listed on
    several exchanges has one price history (replayed, when a file is given for its id)."""

    def __init__(self, replay: dict[str, Path] | None = None, extra: int = 0) -> None:
        self.replay = {sym: ReplaySeries(path) for sym, path in (replay or {}).items()}
        markets = []
        for m in MARKETS + USD_MARKETS + extra_pairs(extra):
            series = self.replay.get(m.id) if not m.futures else None
            if series is not None:  # the file decides listing date and precision
                m = replace(
                    m,
                    listed_ms=series.first_ms,
                    price_decimals=series.price_decimals,
                    lot_decimals=series.lot_decimals,
                    ends_ms=None,
                )
            markets.append(m)
        #: Binance's markets (its exchangeInfo), by family and native id
        usd = {m.id for m in USD_MARKETS}
        self.index = MarketIndex(tuple(m for m in markets if m.futures or m.id not in usd))
        self._all = {(m.futures, m.id): m for m in markets}

    def market(self, sim_id: str, futures: bool = False) -> SimMarket:
        """A market by the simulator's id (Binance-style: BTCUSDT, BTCUSD) and family."""
        return self._all[(futures, sim_id)]

    def _minutes(self, market: SimMarket, start_ms: int, end_ms: int) -> Bars:
        series = None if market.futures else self.replay.get(market.id)
        if series is not None:
            return series.minute_bars(start_ms, end_ms)
        return minute_bars(market, start_ms, end_ms)

    def minutes_until(
        self, market: SimMarket, start_ms: int, end_ms: int, now_ms: int, faults: Faults
    ) -> Bars:
        """1m candles opening in [start_ms, end_ms) as the exchange shows them at ``now_ms``:
        nothing opening after now, the minute in progress partial, holes removed, prices
        shifted by the exchange's ``price_offset_pct``."""
        end_ms = min(end_ms, now_ms - now_ms % MINUTE_MS + MINUTE_MS)
        if end_ms <= start_ms:
            return self._minutes(market, start_ms, start_ms)
        bars = self._minutes(market, start_ms, end_ms)
        current = now_ms - now_ms % MINUTE_MS
        if len(bars) and bars.ts[-1] == current and now_ms > current:
            last = bars.select(slice(len(bars) - 1, None))
            if market.futures or market.id not in self.replay:
                last = partial_minute(market, current, now_ms, last)
            bars = Bars.concat([bars.select(slice(0, len(bars) - 1)), last])
        elif len(bars) and bars.ts[-1] == current:  # now is exactly the minute's open
            bars = bars.select(slice(0, len(bars) - 1))
        for hole in faults.holes:
            if hole.symbol in (None, market.id):
                bars = bars.select((bars.ts < hole.start_ms) | (bars.ts >= hole.end_ms))
        if faults.price_offset_pct:
            bars = shifted(bars, faults.price_offset_pct)
        return bars

    def klines(
        self,
        market: SimMarket,
        tf_ms: int,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        now_ms: int,
        faults: Faults,
    ) -> Bars:
        """Binance semantics: candles with open time in [startTime, endTime], at most
        ``limit``; the oldest first from startTime, else the newest up to endTime (or now)."""
        first = market.listed_ms - market.listed_ms % tf_ms
        last = now_ms - now_ms % tf_ms  # the candle in progress
        if market.ends_ms is not None:
            last = min(last, (market.ends_ms - 1) - (market.ends_ms - 1) % tf_ms)
        if end_ms is not None:
            last = min(last, end_ms - end_ms % tf_ms)
        if start_ms is not None:
            first = max(first, -(-start_ms // tf_ms) * tf_ms)
        span = limit * tf_ms
        parts: list[Bars] = []
        got = 0
        if start_ms is not None:
            cursor = first
            while cursor <= last and got < limit:
                chunk_end = min(cursor + span, last + tf_ms)
                bars = aggregate(
                    self.minutes_until(market, cursor, chunk_end, now_ms, faults), tf_ms
                )
                parts.append(bars)
                got += len(bars)
                cursor = chunk_end
            return Bars.concat(parts).select(slice(0, limit))
        cursor = last + tf_ms
        while cursor > first and got < limit:
            chunk_start = max(cursor - span, first)
            bars = aggregate(self.minutes_until(market, chunk_start, cursor, now_ms, faults), tf_ms)
            parts.insert(0, bars)
            got += len(bars)
            cursor = chunk_start
        out = Bars.concat(parts)
        return out.select(slice(max(0, len(out) - limit), None))

    def mid_price(self, market: SimMarket, now_ms: int) -> float:
        series = None if market.futures else self.replay.get(market.id)
        if series is not None:
            bars = series.minute_bars(series.first_ms, now_ms + 1)
            ticks = float(bars.close[-1]) if len(bars) else float(series.bars.open[0])
            return ticks / 10.0**market.price_decimals
        return float(np.exp(log_price(market, np.array([now_ms], dtype=np.int64))[0]))
