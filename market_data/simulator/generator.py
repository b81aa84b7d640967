"""Deterministic 1m candles as a pure function of (market, time), and exact aggregation.

Prices are integers in ticks and sizes integers in lots, so every higher timeframe is the
exact aggregate of its 1m candles. A window of N minutes costs O(N), whatever its date:
the price path is layered value noise evaluated at each minute, not a walk from listing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from market_data.domain.timeframes import MINUTE_MS
from market_data.simulator.markets import SimMarket

_U64 = np.uint64
_M1, _M2, _GOLD = _U64(0xBF58476D1CE4E5B9), _U64(0x94D049BB133111EB), _U64(0x9E3779B97F4A7C15)
# Layers of value noise: (knot spacing in minutes, amplitude in log-price).
_LAYERS = ((15, 0.0015), (240, 0.006), (4320, 0.03), (43200, 0.1), (525600, 0.3))
_VOLUME_NOTIONAL = 20_000.0  # mean traded value per minute, in quote units


_MASK = 0xFFFFFFFFFFFFFFFF
_SMALL = 8  # up to this many keys, Python integers beat numpy's per-call overhead


def uniform(keys: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of int64 keys: uniform floats in [0, 1). A few keys (one candle of the
    streams: ~14 calls of one or two keys) take the same arithmetic on Python integers,
    bit for bit the same numbers, at a tenth of the cost."""
    if keys.size <= _SMALL:
        return np.array([_splitmix(int(k), salt) for k in keys.ravel()], dtype=np.float64).reshape(
            keys.shape
        )
    return _uniform_array(keys, salt)


def _splitmix(key: int, salt: int) -> float:
    z = (key * 0x9E3779B97F4A7C15 + salt) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    z ^= z >> 31
    return (z >> 11) * (1.0 / (1 << 53))


def _uniform_array(keys: np.ndarray, salt: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = keys.astype(_U64) * _GOLD + _U64(salt & 0xFFFFFFFFFFFFFFFF)
        z = (z ^ (z >> _U64(30))) * _M1
        z = (z ^ (z >> _U64(27))) * _M2
        z = z ^ (z >> _U64(31))
    return (z >> _U64(11)).astype(np.float64) * (1.0 / (1 << 53))


def log_price(market: SimMarket, t_ms: np.ndarray) -> np.ndarray:
    """Log price at arbitrary instants (ms): a smooth, deterministic function of time."""
    t_min = t_ms.astype(np.float64) / MINUTE_MS
    out = np.full(t_min.shape, np.log(market.base_price))
    for layer, (spacing, amplitude) in enumerate(_LAYERS):
        knot = np.floor(t_min / spacing)
        frac = t_min / spacing - knot
        knot = knot.astype(np.int64)
        salt = (market.seed if layer == 0 else market.pair_seed) + 7919 * (layer + 1)
        v0 = uniform(knot, salt) * 2.0 - 1.0
        v1 = uniform(knot + 1, salt) * 2.0 - 1.0
        smooth = frac * frac * (3.0 - 2.0 * frac)
        out += amplitude * (v0 + (v1 - v0) * smooth)
    return out


def price_ticks(market: SimMarket, t_ms: np.ndarray) -> np.ndarray:
    ticks = np.rint(np.exp(log_price(market, t_ms)) * 10.0**market.price_decimals)
    return np.maximum(ticks, 1).astype(np.int64)


@dataclass(frozen=True)
class Bars:
    """Candles as integer columns: open time (ms), prices in ticks, sizes in lots."""

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    trades: np.ndarray
    taker_buy: np.ndarray
    #: traded value in units of tick x lot
    quote_volume: np.ndarray

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def select(self, mask_or_index: np.ndarray | slice) -> Bars:
        return Bars(*(getattr(self, f)[mask_or_index] for f in _FIELDS))

    @staticmethod
    def concat(parts: list[Bars]) -> Bars:
        if not parts:
            return empty_bars()
        return Bars(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))


_FIELDS = tuple(Bars.__dataclass_fields__)


def empty_bars() -> Bars:
    return Bars(*(np.empty(0, dtype=np.int64) for _ in _FIELDS))


def minute_bars(market: SimMarket, start_ms: int, end_ms: int) -> Bars:
    """Every 1m candle of ``market`` opening in [start_ms, end_ms), both on the minute grid.

    Listing, delivery and illiquid minutes are applied; exchange-side holes and the clock
    are not (the server applies those).
    """
    lo = max(start_ms, -(-market.listed_ms // MINUTE_MS) * MINUTE_MS)
    hi = end_ms if market.ends_ms is None else min(end_ms, market.ends_ms)
    if hi <= lo:
        return empty_bars()
    minutes = np.arange(lo // MINUTE_MS, hi // MINUTE_MS, dtype=np.int64)
    edges = price_ticks(market, np.append(minutes, minutes[-1] + 1) * MINUTE_MS)
    open_, close = edges[:-1], edges[1:]
    salt = market.seed
    wick = np.maximum(open_, close) * 0.0004
    high = np.maximum(open_, close) + np.floor(uniform(minutes, salt + 1) * wick).astype(np.int64)
    low = np.minimum(open_, close) - np.floor(uniform(minutes, salt + 2) * wick).astype(np.int64)
    low = np.maximum(low, 1)
    price = close.astype(np.float64) / 10.0**market.price_decimals
    mean_lots = _VOLUME_NOTIONAL / price * 10.0**market.lot_decimals
    volume = np.floor(-np.log1p(-uniform(minutes, salt + 3)) * mean_lots).astype(np.int64) + 1
    trades = (volume % 97) + 1
    taker_buy = np.floor(volume * uniform(minutes, salt + 4)).astype(np.int64)
    bars = Bars(
        minutes * MINUTE_MS, open_, high, low, close, volume, trades, taker_buy, volume * close
    )
    if market.empty_share > 0:
        bars = bars.select(uniform(minutes, salt + 5) >= market.empty_share)
    return bars


def partial_minute(market: SimMarket, minute_ms: int, now_ms: int, full: Bars) -> Bars:
    """The 1m candle in progress at ``now_ms``: open so far, close at now, part of the volume.

    ``full`` is that minute's finished candle (one row, or empty if it has no trade).
    """
    if len(full) == 0:
        return full
    close = price_ticks(market, np.array([now_ms], dtype=np.int64))
    open_ = full.open
    share = (now_ms - minute_ms) / MINUTE_MS
    volume = np.floor(full.volume * share).astype(np.int64)
    return Bars(
        full.ts,
        open_,
        np.maximum(open_, close),
        np.minimum(open_, close),
        close,
        volume,
        np.floor(full.trades * share).astype(np.int64),
        np.minimum(full.taker_buy, volume),
        volume * close,
    )


def aggregate(bars: Bars, timeframe_ms: int) -> Bars:
    """Exact aggregation of sorted 1m bars into ``timeframe_ms`` bars (epoch-aligned)."""
    if len(bars) == 0 or timeframe_ms == MINUTE_MS:
        return bars
    group = bars.ts // timeframe_ms
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[starts[1:], len(bars)] - 1
    return Bars(
        group[starts] * timeframe_ms,
        bars.open[starts],
        np.maximum.reduceat(bars.high, starts),
        np.minimum.reduceat(bars.low, starts),
        bars.close[ends],
        np.add.reduceat(bars.volume, starts),
        np.add.reduceat(bars.trades, starts),
        np.add.reduceat(bars.taker_buy, starts),
        np.add.reduceat(bars.quote_volume, starts),
    )
