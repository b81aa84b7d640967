"""The candle cursor: windows of limit x timeframe over [start, end), one request each.

ccxt's own ``paginate`` is not used: without ``until`` it silently fetches only the last
pages. Each window is requested with ``since`` = its start and ``until`` = its end - 1, so
a page covers exactly its window whatever the exchange returns in it (holes, illiquid
minutes), and the number of requests is the minimum, ceil(span / (limit x timeframe)).
The windows of a range are known in advance, so they can be fetched concurrently.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from market_data.domain.calendar import utc_text
from market_data.domain.candles import CandleContractError
from market_data.exchanges.client import ExchangeClient
from market_data.exchanges.errors import ExchangeDataError


@dataclass(frozen=True)
class Page:
    start_ms: int  # the window [start_ms, end_ms) this page covers
    end_ms: int
    table: np.ndarray  # (n, 6): open time, open, high, low, close, volume


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
    try:
        table = await client.fetch_candles(symbol, timeframe, lo, client.page_limit, hi - 1)
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
