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

from market_data.domain.calendar import utc_text
from market_data.exchanges.client import ExchangeClient
from market_data.exchanges.errors import ExchangeDataError


@dataclass(frozen=True)
class Page:
    start_ms: int  # the window [start_ms, end_ms) this page covers
    end_ms: int
    rows: list[list[float]]


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
        rows = await client.fetch_ohlcv(symbol, timeframe, lo, client.page_limit, until=hi - 1)
    except ExchangeDataError as e:
        raise e.with_context(f"{symbol} {timeframe} window {utc_text(lo)}..{utc_text(hi)}") from e
    return Page(lo, hi, rows)
