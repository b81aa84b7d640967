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


def compare(built: pd.DataFrame, coarse: pd.DataFrame, timeframe: Timeframe) -> Consistency:
    """``coarse`` (stored candles of ``timeframe``) against ``built``, the aggregate of the
    1m candles per span (store.aggregate: ts, open, high, low, close, volume, minutes)."""
    if built.empty:
        return Consistency(has_fine=False)
    joined = coarse.set_index("ts").join(built.set_index("ts"), suffixes=("", "_1m"), how="left")
    complete = joined["minutes"].fillna(0).to_numpy() == timeframe.ms // MINUTE_MS
    out = Consistency(not_checkable=[int(t) for t in joined.index[~complete]])
    rows = joined[complete]
    out.compared = len(rows)
    differs = {name: rows[name].to_numpy() != rows[f"{name}_1m"].to_numpy() for name in _PRICES}
    differs["volume"] = ~np.isclose(
        rows["volume"].to_numpy(), rows["volume_1m"].to_numpy(), rtol=VOLUME_RTOL, atol=0.0
    )
    bad = np.logical_or.reduce(list(differs.values()))
    for i in np.flatnonzero(bad):
        fields = {
            name: (float(rows[name].iloc[i]), float(rows[f"{name}_1m"].iloc[i]))
            for name, mask in differs.items()
            if mask[i]
        }
        out.mismatches.append(Mismatch(int(rows.index[i]), fields))
    return out


def check_market(store: CandleStore, series: Series, lo: int, hi: int) -> Consistency | None:
    """``series`` (a higher timeframe) in [lo, hi) against the same market's stored 1m
    candles; None for a 1m series (it is the reference)."""
    if series.timeframe == FINE:
        return None
    timeframe = Timeframe.parse(series.timeframe)
    coarse = store.read_candles(series, lo, hi)
    built = store.aggregate(Series(series.exchange, series.symbol, FINE), timeframe.ms, lo, hi)
    return compare(built, coarse, timeframe)
