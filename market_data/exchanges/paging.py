"""The candle cursor: windows of limit x timeframe over [start, end), one request each.

ccxt's own ``paginate`` is not used: without ``until`` it silently fetches only the last
pages. Each window is requested with ``since`` = its start and ``until`` = its end - 1, so
a page covers exactly its window whatever the exchange returns in it (holes, illiquid
minutes), and the number of requests is the minimum, ceil(span / (limit x timeframe)).
The windows of a range are known in advance, so they can be fetched concurrently.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from market_data.domain.calendar import utc_text
from market_data.domain.candles import CandleContractError
from market_data.domain.timeframes import MINUTE_MS, Timeframe
from market_data.exchanges.client import ExchangeClient
from market_data.exchanges.errors import ExchangeDataError
from market_data.exchanges.venues import venue

DAY_MS = 1440 * MINUTE_MS


@dataclass(frozen=True)
class Page:
    start_ms: int  # the window [start_ms, end_ms) this page covers
    end_ms: int
    table: np.ndarray  # (n, 6): open time, open, high, low, close, volume


async def first_candle(client: ExchangeClient, symbol: str) -> int | None:
    """Open time of the market's first 1m candle (None: the exchange has none), found the
    way the exchange allows (venues.py): one request from time 0, or a scan of daily
    windows then of the first day's minutes (an exchange that needs an end near the start)."""
    v = venue(client.id)
    limit = client.page_limit
    if v.first_candle == "since_zero":
        rows = await client.fetch_ohlcv(symbol, "1m", 0, 1)
        return int(rows[0][0]) if rows else None
    first_day: int | None = None
    for lo, hi in windows(v.scan_from_ms, int(time.time() * 1000), DAY_MS, limit):
        if rows := await client.fetch_ohlcv(symbol, "1d", lo, limit, hi - 1):
            first_day = int(rows[0][0])
            break
    if first_day is None:
        return None
    for lo, hi in windows(first_day, first_day + DAY_MS, MINUTE_MS, limit):
        if rows := await client.fetch_ohlcv(symbol, "1m", lo, limit, hi - 1):
            return int(rows[0][0])
    return first_day


async def first_served_candle(client: ExchangeClient, symbol: str, timeframe: str) -> int | None:
    """Where an exchange that serves only its newest candles (Kraken) shows a market's
    whole history, that history's first candle: the listing (None: its history reaches back
    past what it serves, or it has no candle). One request for the newest candles; then, for
    a timeframe above 1m, one of 1m candles, whose first is exact if it is served at all."""
    served = venue(client.id).served_rows
    if served is None:
        return None
    rows = await client.fetch_ohlcv(symbol, timeframe, None, served)
    if not rows or len(rows) >= served:
        return None
    first = int(rows[0][0])
    if timeframe != "1m":
        minutes = await client.fetch_ohlcv(symbol, "1m", None, served)
        if minutes and len(minutes) < served:
            first = int(minutes[0][0])
    return first


def windows(start_ms: int, end_ms: int, timeframe_ms: int, limit: int) -> Iterator[tuple[int, int]]:
    span = timeframe_ms * limit
    cursor = start_ms
    while cursor < end_ms:
        yield cursor, min(cursor + span, end_ms)
        cursor += span


async def fetch_window(
    client: ExchangeClient, symbol: str, timeframe: str, lo: int, hi: int
) -> Page:
    """The page of window [lo, hi), requested (and retried) as the client does; an error
    names the window."""
    limit = client.page_limit
    if venue(client.id).reports_weight:
        # Binance weighs USD-M klines by the limit asked (1000: 5, under 100: 1): ask for
        # what the window can hold (a freshness tail is a candle or two)
        limit = min(limit, max(1, -(-(hi - lo) // Timeframe.parse(timeframe).ms)))
    try:
        table = await client.fetch_candles(symbol, timeframe, lo, limit, hi - 1)
    except ExchangeDataError as e:
        raise e.with_context(_where(symbol, timeframe, lo, hi)) from e
    except (TypeError, ValueError) as e:  # a null or non-numeric value: the exchange's data
        raise CandleContractError(
            f"{_where(symbol, timeframe, lo, hi)}: a candle has a missing or non-numeric value ({e})",
            pd.DataFrame(),
        ) from e
    return Page(lo, hi, table)


def _where(symbol: str, timeframe: str, lo: int, hi: int) -> str:
    return f"{symbol} {timeframe} window {utc_text(lo)}..{utc_text(hi)}"
