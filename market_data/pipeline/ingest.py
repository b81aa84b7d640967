"""Fetch a market's candles for some time ranges and write them page by page.

It joins the exchange client and the store: what is already covered is skipped, each page
is validated and written (with its coverage) as soon as it arrives, so a kill loses at most
one page and a rerun fetches only what is missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from market_data.domain.calendar import utc_text
from market_data.domain.candles import closed_only, to_frame, validate
from market_data.domain.catalog import instrument_from_ccxt
from market_data.domain.expected import Listing, clip, expected_count, expected_window
from market_data.domain.freshness import lag_seconds
from market_data.domain.intervals import subtract_intervals
from market_data.domain.timeframes import MINUTE_MS
from market_data.domain.watchlist import Market
from market_data.exchanges.client import ExchangeClient
from market_data.exchanges.errors import BadSymbolError
from market_data.exchanges.paging import fetch_pages
from market_data.pipeline.stop import Stopper
from market_data.store.candles import CandleStore
from market_data.store.series import Series

Log = Callable[[str], None]
LOG_EVERY_S = 5.0  # progress lines while paging: at most one per this many seconds


@dataclass
class MarketReport:
    """What one market's fetch did; becomes materialization metadata."""

    key: str
    requests: int = 0
    candles_fetched: int = 0
    rows_written: int = 0
    expected: int = 0
    present: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    bounds: list[tuple[int, int]] = field(default_factory=list)
    #: seconds from the newest stored candle's close to the exchange clock (None: no candle)
    lag_s: float | None = None

    @property
    def missing(self) -> int:
        return max(0, self.expected - self.present)


def instrument(client: ExchangeClient, markets: dict[str, Any], market: Market) -> dict[str, Any]:
    """The exchange's listing of ``market`` (ccxt market dict), or a clear error."""
    found = markets.get(market.symbol.ccxt)
    if found is None:
        raise BadSymbolError(
            f"{market.symbol.standard} ({market.symbol.ccxt}) is not listed on {client.id}: "
            "fix or remove this watchlist entry"
        )
    return found


def unlisted(client: ExchangeClient, markets: list[Market]) -> list[str]:
    """Why each of ``markets`` the exchange does not list cannot be fetched (empty: all listed)."""
    listed = client.load_markets()
    problems = []
    for market in markets:
        try:
            instrument(client, listed, market)
        except BadSymbolError as e:
            problems.append(str(e))
    return problems


def discover_listing(
    client: ExchangeClient, store: CandleStore, market: Market, ccxt_market: dict[str, Any]
) -> Listing:
    """The market's first candle and, if it no longer trades, the end of its last one: each
    discovered once (a request from time 0, one for the newest candle) and kept in the
    catalog. A market without any candle yet is looked at again next time."""
    inst = instrument_from_ccxt(market.exchange, ccxt_market)
    assert inst is not None, f"{market.symbol.ccxt} is not a spot, perpetual or dated future market"
    stored = store.instruments.get(market.exchange, inst.symbol)
    listed = stored.listed_at if stored else None
    if listed is None:
        first = client.fetch_ohlcv(inst.ccxt_symbol, "1m", 0, 1)
        listed = int(first[0][0]) if first else None
        store.instruments.save_listing(inst, listed)
    delisted = stored.delisted_at if stored else None
    if delisted is None and inst.expiry is not None:
        delisted = inst.expiry
    if delisted is None and not inst.active:
        last = client.fetch_ohlcv(inst.ccxt_symbol, "1m", None, 1)
        if last:
            delisted = int(last[-1][0]) + MINUTE_MS
            store.instruments.save_delisting(market.exchange, inst.symbol, delisted)
    return Listing(listed, delisted, checked=True)


def ingest_market(
    client: ExchangeClient,
    store: CandleStore,
    market: Market,
    ccxt_market: dict[str, Any],
    ranges: list[tuple[int, int]],
    now_ms: int,
    *,
    dry_run: bool = False,
    refetch: bool = False,
    log: Log = lambda _: None,
    stop: Stopper | None = None,
) -> MarketReport:
    """Fetch and write the market's candles in ``ranges`` (clipped to where they are
    expected), page by page; ``stop`` is checked before each page."""
    stop = stop or Stopper()
    report = MarketReport(market.key)
    before = client.requests
    tf = market.timeframe
    series = Series.of(market)
    listing = discover_listing(client, store, market, ccxt_market)
    report.bounds = clip(ranges, expected_window(market, listing, now_ms), tf)
    for start, end in report.bounds:
        todo = (
            [(start, end)]
            if refetch
            else subtract_intervals(start, end, store.covered(series, start, end))
        )
        total = expected_count(todo, tf)
        done, next_log = 0, 0.0
        for s, e in todo:
            stop.check()
            for page in fetch_pages(client, market.symbol.ccxt, tf.code, tf.ms, s, e):
                frame = validate(
                    closed_only(to_frame(page.rows), tf.ms, now_ms),
                    tf.ms,
                    page.start_ms,
                    page.end_ms,
                    now_ms,
                )
                report.candles_fetched += len(frame)
                if not dry_run:
                    report.rows_written += store.write_page(
                        series, frame, (page.start_ms, page.end_ms)
                    )
                done += tf.count(page.start_ms, page.end_ms)
                stop.check()
                if time.monotonic() >= next_log or done == total:  # progress, not a flood
                    next_log = time.monotonic() + LOG_EVERY_S
                    log(
                        f"{market.key}: {utc_text(page.start_ms)}..{utc_text(page.end_ms)} "
                        f"{len(frame)} candles ({done}/{total} slots)"
                    )
    report.expected = expected_count(report.bounds, tf)
    for start, end in report.bounds:
        n, first, last = store.candle_stats(series, start, end)
        report.present += n
        if first is not None:
            report.first_ts = first if report.first_ts is None else min(report.first_ts, first)
            report.last_ts = last if report.last_ts is None else max(report.last_ts, last)
    report.lag_s = lag_seconds(store.last_ts(series), tf.ms, now_ms)
    report.requests = client.requests - before
    return report


def exchange_now(client: ExchangeClient) -> int:
    """The exchange's clock: candles are closed by it, not by ours."""
    return client.fetch_time()
