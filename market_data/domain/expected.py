"""Where a market's candles are expected: the one rule the fetch, the gap check and the
status report share.

A candle is expected at every open time on the market's timeframe grid from the market's
start (the watchlist's) and its listing (the exchange's first candle), while it is closed at
the exchange clock, and before the market's delisting (or a future's delivery). An exchange
that serves only its newest candles (Kraken: 720) expects none before that horizon: the
span before it is unavailable, reported as such, never as gaps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from market_data.domain.timeframes import Timeframe
from market_data.domain.watchlist import Market

#: every time there is: a market's whole history
ALL_TIME: list[tuple[int, int]] = [(0, 2**62)]


@dataclass(frozen=True)
class Listing:
    """What is known of a market's life at its exchange."""

    #: open time of the first 1m candle; None = not known
    listed_at: int | None = None
    #: end of the last candle (a delisting, or a future's delivery); None = still trading
    delisted_at: int | None = None
    #: the first candle was looked for: with ``listed_at`` None, the exchange had none
    checked: bool = False
    #: the exchange serves only its newest this many closed candles of a timeframe (Kraken);
    #: None: all of its history
    history_candles: int | None = None


def served_from(market: Market, listing: Listing, now_ms: int) -> int | None:
    """Where the exchange's history of ``market`` begins at ``now_ms`` when it serves only
    its newest candles (None: it serves all)."""
    if listing.history_candles is None:
        return None
    tf = market.timeframe
    return tf.floor(now_ms) - listing.history_candles * tf.ms


def unserved(market: Market, listing: Listing, now_ms: int | None) -> tuple[int, int] | None:
    """[lo, hi) of the open times the market had candles in but the exchange no longer
    serves (before ``served_from``): not expected, neither gaps nor failures; shown as
    unavailable."""
    if now_ms is None or (horizon := served_from(market, listing, now_ms)) is None:
        return None
    lo = market.timeframe.ceil(max(market.start_ms, listing.listed_at or 0))
    return (lo, horizon) if lo < horizon else None


def expected_window(market: Market, listing: Listing, now_ms: int | None) -> tuple[int, int] | None:
    """[lo, hi) of the open times where candles of ``market`` are expected, given the exchange
    clock ``now_ms`` (None: never read, so nothing is known to have closed)."""
    if now_ms is None:
        return None
    tf = market.timeframe
    lo = market.start_ms
    if listing.listed_at is not None:
        lo = max(lo, tf.floor(listing.listed_at))
    elif listing.checked:
        return None  # the exchange has no candle of this market (yet)
    if (horizon := served_from(market, listing, now_ms)) is not None:
        lo = max(lo, horizon)
    hi = tf.floor(now_ms)  # candles opening before this have closed
    if listing.delisted_at is not None:
        hi = min(hi, tf.ceil(listing.delisted_at))
    lo = tf.ceil(lo)
    return (lo, hi) if lo < hi else None


def clip(
    ranges: Iterable[tuple[int, int]], window: tuple[int, int] | None, timeframe: Timeframe
) -> list[tuple[int, int]]:
    """The parts of ``ranges`` inside ``window``, each starting on the timeframe grid."""
    if window is None:
        return []
    lo, hi = window
    out = []
    for start, end in ranges:
        s, e = timeframe.ceil(max(start, lo)), min(end, hi)
        if s < e:
            out.append((s, e))
    return out


def expected_count(ranges: Iterable[tuple[int, int]], timeframe: Timeframe) -> int:
    """Number of grid points in (clipped) ``ranges``."""
    return sum(timeframe.count(s, e) for s, e in ranges)
