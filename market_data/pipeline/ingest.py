"""Fetch markets' candles for some time ranges and write them, page by page, concurrently.

It joins the exchange client and the store. For every market: what is already covered is
skipped, the rest is cut into windows of one page (known in advance). Then:

    fetchers (as many requests at once as the client lets in flight, their starts spaced by
    its throttle: one rate budget for every market of the run)
      -> a bounded queue of pages (backpressure: memory stays bounded)
        -> the writer: batches of pages, the contract checked once per batch, each batch
           written with the coverage of its pages in one transaction, in a thread, while
           the next pages are fetched.

A kill loses at most the pages in flight or queued; a rerun fetches only what coverage
lacks. A window that still fails after its retries stops the run: the pages already
fetched are written first, then the error is raised (nothing is skipped silently).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from market_data.domain.calendar import (
    count_by_month,
    month_bounds,
    month_key_of,
    month_keys_between,
    utc_text,
)
from market_data.domain.candles import CandlePage, page_from_table, validate_pages
from market_data.domain.catalog import Instrument, instrument_from_ccxt
from market_data.domain.expected import (
    Listing,
    clip,
    expected_count,
    expected_window,
    unserved,
)
from market_data.domain.freshness import lag_seconds
from market_data.domain.intervals import subtract_intervals
from market_data.domain.timeframes import MINUTE_MS
from market_data.domain.watchlist import GapSettings, Market
from market_data.exchanges.client import ExchangeClient, Tally, counting
from market_data.exchanges.errors import (
    BadSymbolError,
    PermanentExchangeError,
    TemporaryExchangeError,
)
from market_data.exchanges.paging import fetch_window, first_candle, first_served_candle, windows
from market_data.exchanges.trades import candles_from_trades, first_trade
from market_data.exchanges.venues import ccxt_market_type, venue
from market_data.pipeline import archive
from market_data.pipeline.archive import ArchiveUse
from market_data.pipeline.gaps import plan_repair
from market_data.pipeline.stop import Stopped, Stopper
from market_data.pipeline.watched import plausible_markets
from market_data.store.candles import CandleStore
from market_data.store.instruments import StoredInstrument
from market_data.store.series import Series

Log = Callable[[str], None]
LOG_EVERY_S = 5.0  # progress lines while paging: at most one per this many seconds
QUEUE_PAGES = 64  # fetched pages waiting for the writer, at most
BATCH_PAGES = 32  # pages per write transaction, at most
MAX_FAILED_WINDOWS = 3  # windows that used all their retries before the run stops fetching


@dataclass
class Figures:
    """Candles fetched, written, expected and present in a span (a month, or a market's run)."""

    candles_fetched: int = 0
    rows_written: int = 0
    expected: int = 0
    present: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    #: candles the exchange no longer serves (history deeper than it keeps) and not stored
    unavailable: int = 0
    #: the first and last candle this run wrote (None: it wrote none)
    written_first: int | None = None
    written_last: int | None = None
    #: of the candles fetched, those read from the exchange's archive files
    from_archive: int = 0
    #: of the candles fetched, those built from the exchange's trades
    from_trades: int = 0

    @property
    def absent(self) -> int:
        """Expected candles not stored (domain/gaps.py: whatever the reason)."""
        return max(0, self.expected - self.present)

    def add_present(self, n: int, first: int | None, last: int | None) -> None:
        self.present += n
        if first is not None and last is not None:
            self.first_ts = first if self.first_ts is None else min(self.first_ts, first)
            self.last_ts = last if self.last_ts is None else max(self.last_ts, last)

    def wrote(self, first: int, last: int) -> None:
        self.written_first = min(first, self.written_first or first)
        self.written_last = max(last, self.written_last or last)

    def __add__(self, other: Figures) -> Figures:
        out = Figures(
            self.candles_fetched + other.candles_fetched,
            self.rows_written + other.rows_written,
            self.expected + other.expected,
            unavailable=self.unavailable + other.unavailable,
            from_archive=self.from_archive + other.from_archive,
            from_trades=self.from_trades + other.from_trades,
        )
        out.add_present(self.present, self.first_ts, self.last_ts)
        out.add_present(other.present, other.first_ts, other.last_ts)
        for f in (self, other):
            if f.written_first is not None and f.written_last is not None:
                out.wrote(f.written_first, f.written_last)
        return out


@dataclass
class MarketReport(Figures):
    """What one market's fetch did, in all and per month; becomes materialization metadata
    (per partition: the market's month)."""

    key: str = ""
    requests: int = 0
    bounds: list[tuple[int, int]] = field(default_factory=list)
    #: per month key (YYYY-MM-01)
    months: dict[str, Figures] = field(default_factory=dict)
    #: seconds from the newest stored candle's close to the exchange clock (None: no candle)
    lag_s: float | None = None
    #: [lo, hi) the exchange had candles in but serves no more (Kraken), None: none
    unserved: tuple[int, int] | None = None
    #: the parts of the ranges asked for inside ``unserved``
    unserved_parts: list[tuple[int, int]] = field(default_factory=list)
    #: why the market could not be fetched at all (a permanent error: unlisted, refused);
    #: the run's other markets go on
    error: str | None = None
    cause: PermanentExchangeError | None = None
    #: what the exchange's public data archive gave (None: not asked)
    archive: ArchiveUse | None = None
    #: building from trades stopped at the run's time bound with spans left
    trades_pending: bool = False

    def refused(self, error: PermanentExchangeError, text: str | None = None) -> None:
        self.error, self.cause = text or str(error), error

    def month(self, key: str) -> Figures:
        return self.months.setdefault(key, Figures())

    def year(self, key: str) -> Figures:
        """The figures of a year (its months summed)."""
        return sum((f for m, f in self.months.items() if m.startswith(key)), Figures())


@dataclass(frozen=True)
class Job:
    """One window of one market: one request."""

    market: Market
    series: Series
    lo: int
    hi: int


def instrument(client: ExchangeClient, markets: dict[str, Any], market: Market) -> dict[str, Any]:
    """The exchange's listing of ``market`` (ccxt market dict), or a clear error."""
    found = markets.get(market.symbol.ccxt)
    if found is None:
        kind = ccxt_market_type(market.symbol.ccxt)
        of_kind = sum(ccxt_market_type(s) == kind for s in markets)
        read = client.markets_read
        when = f" read {utc_text(read.at_ms)} UTC" if read else ""
        raise BadSymbolError(
            f"{market.symbol.standard} ({market.symbol.ccxt}) is not listed on {client.id}: "
            f"its {kind} market list{when} ({of_kind} markets) lacks it; "
            "fix or remove this watchlist entry"
        )
    return found


async def load_listed(
    client: ExchangeClient, store: CandleStore | None, markets: Iterable[Market]
) -> dict[str, Any]:
    """The exchange's markets of the types ``markets`` need; with a store, a list the stored
    catalog says cannot be true is retried, never believed (watched.plausible_markets)."""
    symbols = [m.symbol.ccxt for m in markets]
    plausible = (
        None
        if store is None
        else plausible_markets(store, client.id, symbols, client.max_delisted_share)
    )
    return await client.load_markets(symbols=symbols, plausible=plausible)


async def unlisted(
    client: ExchangeClient, markets: list[Market], store: CandleStore | None = None
) -> list[str]:
    """Why each of ``markets`` the exchange does not list cannot be fetched (empty: all listed)."""
    listed = await load_listed(client, store, markets)
    problems = []
    for market in markets:
        try:
            instrument(client, listed, market)
        except BadSymbolError as e:
            problems.append(str(e))
    return problems


async def discover_listing(
    client: ExchangeClient, store: CandleStore, inst: Instrument, stored: StoredInstrument | None
) -> Listing:
    """The market's first candle and, if it no longer trades, the end of its last one: each
    discovered once (a request from time 0, one for the newest candle) and kept in the
    catalog. A market without any candle yet is looked at again next time. ``stored``: the
    catalog's row of ``inst`` (None: it has none yet)."""
    listed = stored.listed_at if stored else None
    by_candles = venue(client.id).first_candle != "none"  # Kraken's OHLC is too short
    findable = by_candles or client.trades  # its first trade is not
    if listed is None and findable:
        if by_candles:
            listed = await first_candle(client, inst.ccxt_symbol)
        else:
            listed = await first_trade(client, inst.ccxt_symbol)
        await asyncio.to_thread(store.instruments.save_listing, inst, listed)
    delisted = stored.delisted_at if stored else None
    if delisted is None and inst.expiry is not None:
        delisted = inst.expiry
    if delisted is None and not inst.active:
        last = await client.fetch_ohlcv(inst.ccxt_symbol, "1m", None, 1)
        if last:
            delisted = int(last[-1][0]) + MINUTE_MS
            await asyncio.to_thread(
                store.instruments.save_delisting, inst.exchange, inst.symbol, delisted
            )
    return Listing(listed, delisted, checked=findable, history_candles=client.history_depth)


@dataclass
class _Progress:
    """A line at most every LOG_EVERY_S (and at the end) while work advances."""

    log: Log
    total: int
    unit: str = "pages"
    done: int = 0
    candles: int = 0
    started: float = field(default_factory=time.monotonic)
    next_log: float = 0.0

    def advance(self, n: int, candles: int, where: str = "") -> None:
        self.done += n
        self.candles += candles
        now = time.monotonic()
        if now >= self.next_log or self.done >= self.total:  # progress, not a flood
            self.next_log = now + LOG_EVERY_S
            rate = self.done / max(now - self.started, 1e-9)
            self.log(
                f"{self.done}/{self.total} {self.unit}, {self.candles} candles "
                f"({rate:.1f} {self.unit}/s){where}"
            )


@dataclass
class _Run:
    """What every step of one run's fetch shares."""

    client: ExchangeClient
    store: CandleStore
    reports: dict[str, MarketReport]
    tallies: dict[str, Tally]
    now_ms: int
    dry_run: bool
    refetch: bool
    log: Log
    stop: Stopper


async def ingest(
    client: ExchangeClient,
    store: CandleStore,
    ranges: dict[Market, list[tuple[int, int]]],
    ccxt_markets: dict[str, Any],
    now_ms: int,
    *,
    dry_run: bool = False,
    refetch: bool = False,
    log: Log = lambda _: None,
    stop: Stopper | None = None,
    trades_until: float | None = None,
) -> dict[str, MarketReport]:
    """Fetch and write the candles of every market in its ``ranges`` (clipped to where they
    are expected). Returns a report per market key. ``trades_until``: a monotonic time after
    which no more candles are built from trades (``MarketReport.trades_pending``)."""
    stop = stop or Stopper()
    reports = {m.key: MarketReport(key=m.key) for m in ranges}
    tallies = {m.key: Tally() for m in ranges}

    # the catalog's rows in one query; a symbol's listing discovered once for all of its
    # timeframes (15,000 series are 2,500 symbols)
    exchanges = {m.exchange for m in ranges}
    catalog = {
        (ex, sym): row
        for ex in exchanges
        for sym, row in (await asyncio.to_thread(store.instruments.stored, ex)).items()
    }
    shared: dict[tuple[str, str], asyncio.Task[Listing]] = {}

    async def listing(market: Market) -> Listing | None:
        try:
            with counting(tallies[market.key]):
                inst = instrument_from_ccxt(
                    market.exchange, instrument(client, ccxt_markets, market)
                )
                assert inst is not None, (
                    f"{market.symbol.ccxt} is not a spot, perpetual or dated future market"
                )
                key = (market.exchange, inst.symbol)
                if key not in shared:
                    shared[key] = asyncio.ensure_future(
                        discover_listing(client, store, inst, catalog.get(key))
                    )
                return await shared[key]
        except PermanentExchangeError as e:  # this market only: the others go on
            reports[market.key].refused(e)
            return None

    listings = await asyncio.gather(*(listing(m) for m in ranges))

    def plan() -> dict[Market, list[tuple[int, int]]]:
        """What is left to fetch of each market (its coverage read: a thread's work, so a
        plan of 15,000 series does not hold the event loop, and the live service's streams
        with it)."""
        todo: dict[Market, list[tuple[int, int]]] = {}
        for (market, wanted), known in zip(ranges.items(), listings, strict=True):
            stop.check()  # a thread is not cancelled with its caller: it asks
            series = Series.of(market)
            report = reports[market.key]
            for lo, hi in wanted:  # every month asked for has figures, if only zeros
                for key in month_keys_between(lo, hi):
                    report.month(key)
            if known is None:
                continue
            _bound(report, market, wanted, known, now_ms)
            todo[market] = [
                part
                for start, end in report.bounds
                for part in (
                    [(start, end)]
                    if refetch
                    else subtract_intervals(start, end, store.covered(series, start, end))
                )
            ]
        return todo

    todo = await asyncio.to_thread(plan)
    run = _Run(client, store, reports, tallies, now_ms, dry_run, refetch, log, stop)
    if client.archive_url and not refetch:
        await _from_archive(run, todo, ccxt_markets)
    trades_failed: list[TemporaryExchangeError] = []
    if client.trades:
        trades_failed = await _from_trades(run, todo, trades_until)
    jobs: list[Job] = []
    for market, parts in todo.items():
        series, tf = Series.of(market), market.timeframe
        for s, e in parts:
            jobs += [
                Job(market, series, lo, hi) for lo, hi in windows(s, e, tf.ms, client.page_limit)
            ]
    if jobs:
        log(f"{len(jobs)} page(s) to fetch for {len(ranges)} market(s)")
        await _pipeline(run, jobs)
    if trades_failed:  # the markets' other spans were fetched first
        raise trades_failed[0].with_context(
            f"{len(trades_failed)} market(s)' trades failed, the first"
        )
    for (market, wanted), known in zip(ranges.items(), listings, strict=True):
        if known is None or reports[market.key].error is not None:
            continue
        if not dry_run and _history_starts_late(store, market, known, reports[market.key]):
            with counting(tallies[market.key]):
                await _listing_from_history(client, store, market, ccxt_markets)
            listing = store.instruments.listing(market.exchange, market.symbol.standard)
            listing = replace(listing, history_candles=client.history_depth)
            _bound(reports[market.key], market, wanted, listing, now_ms)

    def finish() -> None:
        for market in ranges:
            stop.check()
            _finish(store, market, reports[market.key], now_ms)
            reports[market.key].requests = tallies[market.key].requests

    await asyncio.to_thread(finish)  # the figures' queries: off the event loop, as plan's
    return reports


def _bound(
    report: MarketReport, market: Market, wanted: list[tuple[int, int]], known: Listing, now_ms: int
) -> None:
    """Where the market's candles are expected in ``wanted``, and what is unavailable."""
    tf = market.timeframe
    report.bounds = clip(wanted, expected_window(market, known, now_ms), tf)
    report.unserved = unserved(market, known, now_ms)
    report.unserved_parts = clip(wanted, report.unserved, tf)


def _history_starts_late(
    store: CandleStore, market: Market, known: Listing, report: MarketReport
) -> bool:
    """An exchange whose listing cannot be looked up (Kraken) answered a span that begins
    before its first candle: nothing stored before the first expected candle, nor at it."""
    if known.listed_at is not None or venue(market.exchange).served_rows is None:
        return False
    if not report.bounds:
        return False
    first = store.first_ts(Series.of(market))
    return first is None or first > report.bounds[0][0]


async def _listing_from_history(
    client: ExchangeClient,
    store: CandleStore,
    market: Market,
    ccxt_markets: dict[str, Any],
) -> None:
    """Record the first candle as the listing when the exchange's answer holds the market's
    whole history (paging.first_served_candle), as Binance's is discovered."""
    listed = await first_served_candle(client, market.symbol.ccxt, market.timeframe.code)
    if listed is None:
        return
    inst = instrument_from_ccxt(market.exchange, instrument(client, ccxt_markets, market))
    assert inst is not None
    store.instruments.save_listing(inst, listed)


async def _pipeline(run: _Run, jobs: list[Job]) -> None:
    client, reports, tallies = run.client, run.reports, run.tallies
    now_ms, stop = run.now_ms, run.stop
    queue: asyncio.Queue[tuple[Series, CandlePage] | None] = asyncio.Queue(QUEUE_PAGES)
    todo: Iterator[Job] = iter(jobs)
    progress = _Progress(run.log, len(jobs))
    failed: list[TemporaryExchangeError] = []  # windows that used all their attempts

    async def fetcher() -> None:
        for job in todo:
            tf = job.market.timeframe
            report = reports[job.market.key]
            if report.error is not None:
                continue  # the market was refused: its other windows are not asked for
            try:
                with counting(tallies[job.market.key]):
                    page = await fetch_window(
                        client, job.market.symbol.ccxt, tf.code, job.lo, job.hi
                    )
            except PermanentExchangeError as e:  # this market only: the others go on
                report.refused(e, f"{job.market.key}: {e}")
                continue
            except TemporaryExchangeError as e:
                # the other windows go on (the failed one stays missing, the run will fail);
                # past a few such windows the exchange is down: stop
                failed.append(e)
                if len(failed) >= MAX_FAILED_WINDOWS:
                    raise
                continue
            candles = page_from_table(job.market.key, page.table, tf.ms, job.lo, job.hi, now_ms)
            await queue.put((job.series, candles))

    def write(batch: list[tuple[Series, CandlePage]]) -> dict[Series, np.ndarray]:
        return _write(run.store, batch, now_ms, run.dry_run, new=not run.refetch)

    async def writer() -> None:
        while (item := await queue.get()) is not None:
            batch = [item]
            while len(batch) < BATCH_PAGES and not queue.empty():
                more = queue.get_nowait()
                if more is None:
                    queue.put_nowait(None)  # seen again by the loop, after this batch
                    break
                batch.append(more)
            written = await asyncio.to_thread(write, batch)
            _account(reports, batch, written)
            for _, page in batch:
                progress.advance(1, len(page))

    raised: BaseException | None = None
    writing = asyncio.create_task(writer())
    fetching = {asyncio.create_task(fetcher()) for _ in range(min(client.max_in_flight, len(jobs)))}
    watching = asyncio.create_task(stop.watch())
    try:
        pending = set(fetching)
        while pending:
            done, pending = await asyncio.wait(
                pending | {watching, writing}, return_when=asyncio.FIRST_COMPLETED
            )
            errors = [t.exception() for t in done & fetching if t.exception() is not None]
            if errors or watching in done or writing in done:
                raised = errors[0] if errors else None
                break  # too many windows failed, a window cannot be fetched at all, a stop
                # was asked for, or the writer failed
            pending -= {watching, writing}
    finally:
        watching.cancel()
        for task in fetching:
            task.cancel()  # nothing more is fetched
        await asyncio.gather(*fetching, return_exceptions=True)
        if not writing.done():
            await queue.put(None)  # what was fetched is written first
        await writing  # raises the writer's error, if it had one
    if raised is not None and not isinstance(raised, TemporaryExchangeError):
        raise raised  # permanent: e.g. the exchange refuses the symbol
    if failed:
        raise failed[0].with_context(f"{len(failed)} window(s) failed, the first")
    if stop.stopping():
        raise Stopped(f"stopped on request after {progress.done} of {len(jobs)} page(s)")


def _write(
    store: CandleStore,
    batch: list[tuple[Series, CandlePage]],
    now_ms: int,
    dry_run: bool,
    new: bool,
) -> dict[Series, np.ndarray]:
    """The candle contract checked once for the batch, then its pages written with their
    coverage (a dry run writes nothing)."""
    validate_pages([p for _, p in batch], now_ms)
    return {} if dry_run else store.write_pages(batch, new=new)


def _account(
    reports: dict[str, MarketReport],
    batch: list[tuple[Series, CandlePage]],
    written: dict[Series, np.ndarray],
) -> None:
    """A written batch in its markets' figures, in all and per month."""
    keys = {series: page.key for series, page in batch}
    for _, page in batch:
        report = reports[page.key]
        archived, built = page.source == "archive", page.source == "trades"
        report.candles_fetched += len(page)
        report.from_archive += len(page) if archived else 0
        report.from_trades += len(page) if built else 0
        for month, n in count_by_month(page.ts).items():
            figures = report.month(month)
            figures.candles_fetched += n
            figures.from_archive += n if archived else 0
            figures.from_trades += n if built else 0
    for series, ts in written.items():
        report = reports[keys[series]]
        report.rows_written += len(ts)
        for month, n in count_by_month(ts).items():
            figures = report.month(month)
            figures.rows_written += n
            lo, hi = month_bounds(month)
            inside = ts[(ts >= lo) & (ts < hi)]
            figures.wrote(int(inside.min()), int(inside.max()))
        if len(ts):
            report.wrote(int(ts.min()), int(ts.max()))


async def _from_archive(
    run: _Run, todo: dict[Market, list[tuple[int, int]]], ccxt_markets: dict[str, Any]
) -> None:
    """What the exchange's archive holds of ``todo`` (pipeline/archive.py), written; ``todo``
    keeps what the candle endpoint must still be asked for."""
    client, reports, now_ms = run.client, run.reports, run.now_ms
    assert client.archive_url is not None
    plans = [
        found
        for market, parts in todo.items()
        if reports[market.key].error is None
        and (found := archive.plan(market, str(ccxt_markets[market.symbol.ccxt]["id"]), parts))
    ]
    if not plans:
        return

    async def deliver(batch: list[tuple[Series, CandlePage]]) -> None:
        written = await asyncio.to_thread(_write, run.store, batch, now_ms, run.dry_run, True)
        _account(reports, batch, written)

    uses = await archive.from_archive(client.archive_url, plans, now_ms, deliver, run.stop, run.log)
    for p in plans:
        use = reports[p.market.key].archive = uses[p.market.key]
        span = client.page_limit * p.market.timeframe.ms
        left = [part for s, e in todo[p.market] for part in subtract_intervals(s, e, use.covered)]
        todo[p.market] = archive.coalesce(left, span) if use.files else left


async def _from_trades(
    run: _Run, todo: dict[Market, list[tuple[int, int]]], until: float | None = None
) -> list[TemporaryExchangeError]:
    """The parts of ``todo`` older than the candle endpoint serves (Kraken's OHLC: its
    newest candles), built from the exchange's trades (exchanges/trades.py) and written
    span by span with coverage: what was built stays written whatever comes after. ``todo``
    keeps what the candle endpoint must still be asked for. Markets are paged concurrently
    (one cursor each), within the client's one rate budget. Returns the markets whose trades
    failed after their retries (their other spans go on; the run fails after them). Past
    ``until`` (monotonic), a market stops after the span it is building (``trades_pending``):
    a run then frees the exchange's pool slot for a while (defs/candles/assets.py)."""
    client, reports, now_ms = run.client, run.reports, run.now_ms
    served = venue(client.id).history_candles
    assert served is not None
    spans: dict[Market, list[tuple[int, int]]] = {}
    for market, parts in todo.items():
        tf = market.timeframe
        horizon = tf.floor(now_ms) - served * tf.ms
        older = clip(parts, (0, horizon), tf)
        if older and reports[market.key].error is None:
            spans[market] = older
            todo[market] = clip(parts, (horizon, 2**62), tf)
    failed: list[TemporaryExchangeError] = []
    if not spans:
        return failed
    total = sum(market.timeframe.count(s, e) for parts in spans.values() for s, e in parts)
    progress = _Progress(run.log, total, "candle times from trades")
    run.log(f"{total} candle time(s) of {len(spans)} market(s) to build from trades")

    async def build(market: Market, parts: list[tuple[int, int]]) -> None:
        report, series, tf = reports[market.key], Series.of(market), market.timeframe
        try:
            for lo, hi in parts:
                with counting(run.tallies[market.key]):
                    async for built in candles_from_trades(
                        client, market.symbol.ccxt, tf.ms, lo, hi, now_ms
                    ):
                        page = page_from_table(
                            market.key, built.table.reshape(-1, 6), tf.ms,
                            built.start_ms, built.end_ms, now_ms,
                        )  # fmt: skip
                        page = replace(page, source="trades")
                        written = await asyncio.to_thread(
                            _write, run.store, [(series, page)], now_ms, run.dry_run,
                            not run.refetch,
                        )  # fmt: skip
                        _account(reports, [(series, page)], written)
                        progress.advance(
                            tf.count(built.start_ms, built.end_ms), len(page),
                            f", {market.key} up to {utc_text(built.end_ms)}",
                        )  # fmt: skip
                        run.stop.check()
                        if until is not None and time.monotonic() >= until:
                            report.trades_pending = True
                            return
        except PermanentExchangeError as e:  # this market only: the others go on
            report.refused(e, f"{market.key}: {e}")
        except TemporaryExchangeError as e:
            failed.append(e.with_context(market.key))

    tasks = [asyncio.create_task(build(m, parts)) for m, parts in spans.items()]
    try:
        await asyncio.gather(*tasks)
    except BaseException:  # a stop, a broken contract: the other markets stop too
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return failed


def _finish(store: CandleStore, market: Market, report: MarketReport, now_ms: int) -> None:
    """Expected and present candles in the market's bounds, per month and in all, first and
    last candle, and the market's lag."""
    tf, series = market.timeframe, Series.of(market)
    for start, end in report.bounds:
        for key in month_keys_between(start, end):
            report.month(key)
    for key, figures in report.months.items():
        lo, hi = month_bounds(key)
        parts = clip(report.bounds, (lo, hi), tf)
        figures.expected = expected_count(parts, tf)
        for start, end in parts:
            figures.add_present(*store.candle_stats(series, start, end))
        for s, e in clip(report.unserved_parts, (lo, hi), tf):  # history no more served
            figures.unavailable += (
                expected_count([(s, e)], tf) - store.candle_stats(series, s, e)[0]
            )
        report.expected += figures.expected
        report.unavailable += figures.unavailable
        report.add_present(figures.present, figures.first_ts, figures.last_ts)
    report.lag_s = lag_seconds(store.last_ts(series), tf.ms, now_ms)


async def exchange_now(client: ExchangeClient) -> int:
    """The exchange's clock: candles are closed by it, not by ours."""
    return await client.fetch_time()


@dataclass(frozen=True)
class FetchOptions:
    dry_run: bool = False  # fetch and validate, write nothing (not even the clock reading)
    refetch: bool = False  # fetch again what coverage says was fetched
    not_before_ms: int = 0  # fetch nothing earlier
    not_after_ms: int = 2**62  # fetch nothing from then on
    repair: bool = False  # fetch only the open gaps
    max_gaps: int | None = None  # with repair: at most this many gaps per market
    gaps: GapSettings = field(default_factory=GapSettings)
    #: freshness: only what follows each market's newest stored candle (a market with none:
    #: from the month in progress), never a year's history (backfills and repairs do that)
    tail: bool = False
    #: build candles from trades (Kraken's older history) for at most this long, then leave
    #: the rest for the next attempt of the step (``Fetched.trades_pending``); None: no bound
    trades_slice_s: float | None = None


@dataclass(frozen=True)
class Fetched:
    """A run's fetch: the exchange clock it read, and a report per market key."""

    now_ms: int
    markets: dict[str, MarketReport]
    #: markets whose history from trades was cut at the run's trades slice: the rest is
    #: for the step's next attempt
    trades_pending: list[str] = field(default_factory=list)

    @property
    def failed(self) -> dict[str, str]:
        """Markets that could not be fetched at all, and why."""
        return {k: r.error for k, r in self.markets.items() if r.error is not None}


class MarketsFailed(PermanentExchangeError):
    """Some markets of a run were refused for good (unlisted, a permanent 4xx); every other
    market of the run was fetched and written (``fetched``). When every market was refused,
    the first error itself is raised instead."""

    def __init__(self, fetched: Fetched) -> None:
        failed = fetched.failed
        first = next(iter(failed.values()))
        more = f" (and {len(failed) - 1} more market(s))" if len(failed) > 1 else ""
        super().__init__(f"{first}{more}")
        self.fetched = fetched


async def fetch_markets(
    client: ExchangeClient,
    store: CandleStore,
    wanted: dict[Market, list[tuple[int, int]]],
    options: FetchOptions | None = None,
    log: Log = lambda _: None,
    stop: Stopper | None = None,
) -> Fetched:
    """One run's fetch: the markets' listings from the exchange (only the market types they
    need), the exchange clock, then every market's ``wanted`` ranges (or, repairing, only
    their open gaps) through one pipeline."""
    options = options or FetchOptions()
    ccxt_markets = await load_listed(client, store, wanted)
    now = await exchange_now(client)
    lo, hi = options.not_before_ms, options.not_after_ms

    def clip_ranges() -> dict[Market, list[tuple[int, int]]]:
        """The ranges asked for, cut to the options (store reads: run in a thread)."""
        if not options.dry_run:  # a dry run leaves no trace, not even the clock reading
            store.gaps.save_clock(client.id, now)
        ranges: dict[Market, list[tuple[int, int]]] = {}
        for market, bounds in wanted.items():
            clipped = [(max(s, lo), min(e, hi)) for s, e in bounds if max(s, lo) < min(e, hi)]
            if options.tail:
                last = store.last_ts(Series.of(market))
                after = month_bounds(month_key_of(now))[0] if last is None else last
                clipped = [(max(s, after), e) for s, e in clipped if max(s, after) < e]
            if options.repair:
                span = client.page_limit * market.timeframe.ms
                clipped = plan_repair(store, market, clipped, options.gaps, span, options.max_gaps)
                log(f"{market.key}: repairing {len(clipped)} range(s)")
            ranges[market] = clipped
        return ranges

    ranges = await asyncio.to_thread(clip_ranges)
    reports = await ingest(
        client,
        store,
        ranges,
        ccxt_markets,
        now,
        dry_run=options.dry_run,
        refetch=options.refetch or options.repair,
        log=log,
        stop=stop,
        trades_until=(
            None if options.trades_slice_s is None else time.monotonic() + options.trades_slice_s
        ),
    )
    for market, bounds in wanted.items():  # every month of the run has figures
        for lo, hi in bounds:
            for key in month_keys_between(lo, hi):
                reports[market.key].month(key)
    fetched = Fetched(now, reports, [k for k, r in reports.items() if r.trades_pending])
    causes = [r.cause for r in reports.values() if r.cause is not None]
    if causes and len(causes) == len(reports):
        raise causes[0]  # nothing was fetched: the error itself (a run of one market)
    if causes:
        raise MarketsFailed(fetched)
    return fetched


def describe(report: MarketReport) -> str:
    """One line of a market's fetch."""
    span = f"{utc_text(report.first_ts) or '-'}..{utc_text(report.last_ts) or '-'}"
    return (
        f"{report.key}: {report.rows_written} rows written, {report.requests} requests, "
        f"{report.present}/{report.expected} candles present ({span})"
    )
