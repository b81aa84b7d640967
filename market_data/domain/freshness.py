"""Freshness of a series: its lag behind the exchange clock, and when that lag is stale."""

from __future__ import annotations


def lag_seconds(newest_open_ms: int | None, timeframe_ms: int, now_ms: int | None) -> float | None:
    """Seconds from the close of the newest stored candle to the exchange clock ``now_ms``
    (None when there is no candle or no clock reading)."""
    if newest_open_ms is None or now_ms is None:
        return None
    return max(0.0, (now_ms - (newest_open_ms + timeframe_ms)) / 1000)


def is_stale(lag_s: float | None, timeframe_ms: int, max_lag_timeframes: float) -> bool:
    """A series is stale when it lags more than ``max_lag_timeframes`` of its timeframe."""
    return lag_s is not None and lag_s > max_lag_timeframes * timeframe_ms / 1000
