"""Timeframes that must agree: a stored higher-timeframe candle is the exact aggregate of
the stored 1m candles of its span (first open, highest high, lowest low, last close; volume
summed, equal within 1e-9 relative). A span whose 1m candles are not all stored cannot be
checked, and is reported as such, never as a mismatch."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from market_data.domain.timeframes import MINUTE_MS, Timeframe
from market_data.store.candles import CandleStore
from market_data.store.series import Series

FINE = "1m"
VOLUME_RTOL = 1e-9
_PRICES = ("open", "high", "low", "close")


@dataclass(frozen=True)
class Mismatch:
    ts: int
    #: field -> (stored, aggregated from 1m)
    fields: dict[str, tuple[float, float]]


@dataclass
class Consistency:
    """One market's higher-timeframe candles in a span against its 1m candles."""

    compared: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    #: open times of candles whose 1m candles are not all stored
    not_checkable: list[int] = field(default_factory=list)
    #: False: no 1m candle of the market is stored in the span: nothing to compare with
    has_fine: bool = True


def aggregate(fine: pd.DataFrame, timeframe: Timeframe) -> pd.DataFrame:
    """1m candles (ts, open, high, low, close, volume; ts ascending) per span of
    ``timeframe``: the aggregate and how many 1m candles made it, indexed by open time."""
    bucket = fine["ts"].to_numpy() // timeframe.ms * timeframe.ms
    grouped = fine.groupby(bucket, sort=True)
    return pd.DataFrame(
        {
            "open": grouped["open"].first(),
            "high": grouped["high"].max(),
            "low": grouped["low"].min(),
            "close": grouped["close"].last(),
            "volume": grouped["volume"].sum(),
            "minutes": grouped["ts"].count(),
        }
    )


def compare(fine: pd.DataFrame, coarse: pd.DataFrame, timeframe: Timeframe) -> Consistency:
    """``coarse`` (stored candles of ``timeframe``) against the aggregate of ``fine``."""
    if fine.empty:
        return Consistency(has_fine=False)
    built = aggregate(fine, timeframe)
    stored = coarse.set_index("ts")
    joined = stored.join(built, rsuffix="_1m", how="left")
    complete = joined["minutes"].fillna(0).to_numpy() == timeframe.ms // MINUTE_MS
    out = Consistency(not_checkable=[int(t) for t in joined.index[~complete]])
    rows = joined[complete]
    out.compared = len(rows)
    bad = np.zeros(len(rows), dtype=bool)
    for name in _PRICES:
        bad |= rows[name].to_numpy() != rows[f"{name}_1m"].to_numpy()
    volume, summed = rows["volume"].to_numpy(), rows["volume_1m"].to_numpy()
    bad |= ~np.isclose(volume, summed, rtol=VOLUME_RTOL, atol=0.0)
    for ts, row in rows[bad].iterrows():
        fields = {
            name: (float(row[name]), float(row[f"{name}_1m"]))
            for name in (*_PRICES, "volume")
            if (row[name] != row[f"{name}_1m"] if name != "volume"
                else not np.isclose(row[name], row[f"{name}_1m"], rtol=VOLUME_RTOL, atol=0.0))
        }  # fmt: skip
        out.mismatches.append(Mismatch(int(ts), fields))  # type: ignore[arg-type]
    return out


def check_market(store: CandleStore, series: Series, lo: int, hi: int) -> Consistency | None:
    """``series`` (a higher timeframe) in [lo, hi) against the same market's stored 1m
    candles; None for a 1m series (it is the reference)."""
    if series.timeframe == FINE:
        return None
    timeframe = Timeframe.parse(series.timeframe)
    coarse = store.read_candles(series, lo, hi)
    fine = store.read_candles(Series(series.exchange, series.symbol, FINE), lo, hi)
    return compare(fine, coarse, timeframe)
