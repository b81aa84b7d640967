"""Candles built from an exchange's trades, for history its candle endpoint no longer serves
(Kraken's OHLC: the newest 720 candles; its Trades endpoint: every trade since listing).

Kraken's ``/0/public/Trades`` pages by a cursor: ``since`` (nanoseconds), answered with at
most 1,000 trades after it, oldest first, and ``last``, the cursor of the next page. Trades
become candles exactly: open is the first trade's price, high the highest, low the lowest,
close the last, volume the sum of the trades' volumes added as exact decimals (integers of
the smallest unit the page uses), so a candle built from trades reads back as the same
floats as the exchange's own candle text. A candle is built only once it is complete: a
trade after its end has been seen, or the exchange had no trade after it up to ``until``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from market_data.domain.calendar import utc_text
from market_data.domain.candles import CandleContractError
from market_data.domain.timeframes import MINUTE_MS
from market_data.exchanges.client import ExchangeClient
from market_data.exchanges.errors import ExchangeDataError, ExchangeUnavailableError

NS_PER_MS = 1_000_000
PAGE = 1000  # trades per answer, at most


@dataclass(frozen=True)
class Trades:
    """Trades in time order: time (ms), price, and volume as an exact decimal: integer
    ``units`` of 10**-``scale``."""

    ts: np.ndarray  # int64 ms
    price: np.ndarray  # float64
    units: list[int]
    scale: int

    def __len__(self) -> int:
        return int(self.ts.shape[0])


@dataclass(frozen=True)
class TradesPage:
    trades: Trades
    #: the cursor of the next page (nanoseconds)
    last_ns: int
    #: the answer was full: more trades may follow at once
    full: bool


def parse_trades(rows: list[list[Any]]) -> Trades:
    """Kraken's trade rows ``[price, volume, time s, side, type, misc, id]`` (text prices and
    volumes, time a JSON number with up to 4 decimals)."""
    if not rows:
        return Trades(np.empty(0, np.int64), np.empty(0), [], 0)
    try:
        seconds = np.array([float(r[2]) for r in rows])
        price = np.array([float(r[0]) for r in rows])
        volumes = [str(r[1]) for r in rows]
    except (TypeError, ValueError, IndexError) as e:
        raise ExchangeDataError(f"a trade has a missing or non-numeric value ({e})") from e
    scale = max((len(v) - v.index(".") - 1 for v in volumes if "." in v), default=0)
    units = []
    for v in volumes:
        whole, _, frac = v.partition(".")
        units.append(int(whole + frac.ljust(scale, "0")))
    # milliseconds, rounded from the seconds' 4 decimals (a float 1795174501.0001 is not exact)
    ts = np.floor(np.round(seconds * 10_000) / 10).astype(np.int64)
    if (np.diff(ts) < 0).any():
        raise ExchangeDataError("trades out of time order")
    return Trades(ts, price, units, scale)


def candles(trades: Trades, tf_ms: int, complete_before: int) -> np.ndarray:
    """(n, 6) candles (open time, open, high, low, close, volume) of the trades' candles that
    open before ``complete_before`` (those whose trades are all here)."""
    keep = trades.ts < complete_before - complete_before % tf_ms
    n = int(keep.sum())  # trades are in time order: the kept ones come first
    if n == 0:
        return np.empty((0, 6))
    bucket = trades.ts[:n] - trades.ts[:n] % tf_ms
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], n]
    price = trades.price[:n]
    volume = np.add.reduceat(np.array(trades.units[:n], dtype=object), starts)
    out = np.empty((len(starts), 6))
    out[:, 0] = bucket[starts]
    out[:, 1] = price[starts]
    out[:, 2] = np.maximum.reduceat(price, starts)
    out[:, 3] = np.minimum.reduceat(price, starts)
    out[:, 4] = price[ends - 1]
    out[:, 5] = [int(v) / 10**trades.scale for v in volume]  # correctly rounded, as its text
    return out


def concat(parts: list[Trades]) -> Trades:
    parts = [p for p in parts if len(p)]
    if not parts:
        return Trades(np.empty(0, np.int64), np.empty(0), [], 0)
    scale = max(p.scale for p in parts)
    units = [u * 10 ** (scale - p.scale) for p in parts for u in p.units]
    return Trades(
        np.concatenate([p.ts for p in parts]),
        np.concatenate([p.price for p in parts]),
        units,
        scale,
    )


async def fetch_trades(client: ExchangeClient, symbol: str, since_ns: int) -> TradesPage:
    """One page of the market's trades after ``since_ns`` (retried as the client does). An
    answer of another shape is the exchange's fault of the moment (retried like a malformed
    candle page); a trade without a number breaks the candle contract, as a candle would."""
    if not client.exchange.markets:
        await client.load_markets(symbols=[symbol])
    pair = client.exchange.market(symbol)["id"]
    where = f"{symbol} trades after {utc_text(since_ns // NS_PER_MS)}"

    def shaped(body: Any) -> None:
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, dict) or "last" not in result or len(result) != 2:
            raise ExchangeUnavailableError(f"{where}: an answer without trades or cursor")

    body = await client.call(
        "publicGetTrades", {"pair": pair, "since": str(since_ns)}, check=shaped
    )
    result = body["result"]
    rows = next(v for k, v in result.items() if k != "last")
    try:
        if not isinstance(rows, list):
            raise TypeError(f"trades are a {type(rows).__name__}, not a list")
        trades = parse_trades(rows)
        last_ns = int(result["last"])
    except (ExchangeDataError, TypeError, ValueError) as e:
        raise CandleContractError(f"{where}: {e}", pd.DataFrame()) from e
    return TradesPage(trades, last_ns, len(rows) >= PAGE)


async def first_trade(client: ExchangeClient, symbol: str) -> int | None:
    """Open time of the market's first 1m candle: the minute of its first trade, one
    request from time 0 (None: it has no trade yet)."""
    page = await fetch_trades(client, symbol, 0)
    if not len(page.trades):
        return None
    first = int(page.trades.ts[0])
    return first - first % MINUTE_MS


@dataclass(frozen=True)
class Built:
    """Candles built from the trades of [start_ms, end_ms): every candle of the span whose
    trades were all seen (a candle absent from ``table`` had no trade)."""

    start_ms: int
    end_ms: int
    table: np.ndarray


async def candles_from_trades(
    client: ExchangeClient,
    symbol: str,
    tf_ms: int,
    start_ms: int,
    end_ms: int,
    until_ms: int,
    batch: int = 10,
) -> AsyncIterator[Built]:
    """The market's candles of [start_ms, end_ms) (both on the timeframe's grid) from its
    trades, page after page, yielded every ``batch`` pages as spans that are complete;
    ``until_ms``: the exchange's clock (a candle ending later is not complete)."""
    since_ns = start_ms * NS_PER_MS - 1
    held: list[Trades] = []
    done = start_ms  # candles before this are yielded
    pages = 0
    while done < end_ms:
        page = await fetch_trades(client, symbol, since_ns)
        pages += 1
        held.append(page.trades)
        since_ns = max(page.last_ns, since_ns)
        newest = int(page.trades.ts[-1]) if len(page.trades) else None
        if page.full and newest is not None and newest < end_ms and pages % batch:
            continue
        # complete up to the candle of the newest trade (a later one may still come), or,
        # with no trade after it, up to the exchange's clock
        complete = (newest - newest % tf_ms) if page.full and newest is not None else until_ms
        complete = min(complete - complete % tf_ms, end_ms)
        if complete <= done:
            if not page.full:
                break  # nothing more to come before the clock
            continue
        trades = concat(held)
        table = candles(trades, tf_ms, complete)
        table = table[table[:, 0] >= done] if len(table) else table
        yield Built(done, complete, table)
        keep = trades.ts >= complete
        held = [Trades(trades.ts[keep], trades.price[keep],
                       [u for u, k in zip(trades.units, keep, strict=True) if k], trades.scale)]  # fmt: skip
        done = complete
        if not page.full:
            break
