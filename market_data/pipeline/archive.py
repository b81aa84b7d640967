"""Deep history from the exchange's public data archive (exchanges/archive.py), before the
candle endpoint: the files cost no request weight, so a year of 1m is 12 downloads instead of
527 requests of the exchange's rate budget.

For each market's spans still to fetch: the monthly file of every whole month that has
ended, the daily files of the whole days of a month without one (not yet published, or
missing), the candle endpoint for the rest. Files download concurrently (ARCHIVE_DOWNLOADS
at once: they cost no weight; memory is what bounds them) and go to the run's writer as they
arrive. A file is trusted for the candles it holds and nothing more: its coverage is the runs
of consecutive candles in it, so whatever it lacks (a short file, a missing day) is asked of
the candle endpoint before it can count as a gap. A file that does not match its checksum
or cannot be read, after its retries, writes nothing: its span goes to the candle endpoint,
and the run says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import numpy as np

from market_data.domain.candles import CandlePage, page_from_table
from market_data.domain.intervals import merge_intervals, subtract_intervals
from market_data.domain.watchlist import Market
from market_data.exchanges.archive import (
    DAILY_UP_TO_MS,
    ArchiveFile,
    ArchiveFileUnusable,
    daily_files,
    download,
    family,
    monthly_files,
)
from market_data.exchanges.venues import ccxt_market_type
from market_data.pipeline.stop import Stopper
from market_data.store.series import Series

#: files downloaded at once
ARCHIVE_DOWNLOADS = 8
#: seconds a file may take to download
DOWNLOAD_TIMEOUT_S = 120

Deliver = Callable[[list[tuple[Series, CandlePage]]], Awaitable[None]]


@dataclass
class ArchiveUse:
    """What the archive gave one market in a run."""

    files: int = 0
    candles: int = 0
    #: files given up on (their spans went to the candle endpoint), with why
    unusable: list[str] = field(default_factory=list)
    #: [lo, hi) the archive's candles cover
    covered: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class ArchivePlan:
    """One market's spans to fetch, and its id and directory in the archive."""

    market: Market
    series: Series
    symbol: str  # the exchange's own id, e.g. BTCUSDT
    family_dir: str
    spans: list[tuple[int, int]]


def plan(market: Market, symbol: str, spans: list[tuple[int, int]]) -> ArchivePlan | None:
    """The market's archive plan, or None when the archive is not for it (a timeframe above
    DAILY_UP_TO_MS: a year of it is a few requests of the candle endpoint; a market type the
    archive does not hold here)."""
    directory = family(ccxt_market_type(market.symbol.ccxt))
    if directory is None or market.timeframe.ms > DAILY_UP_TO_MS or not spans:
        return None
    return ArchivePlan(market, Series.of(market), symbol, directory, spans)


def runs(ts: np.ndarray, tf_ms: int) -> list[tuple[int, int]]:
    """[first, last + tf) of each run of consecutive open times (sorted)."""
    if not len(ts):
        return []
    breaks = np.flatnonzero(np.diff(ts) != tf_ms)
    starts = np.r_[0, breaks + 1]
    ends = np.r_[breaks, len(ts) - 1]
    return [(int(ts[a]), int(ts[b]) + tf_ms) for a, b in zip(starts, ends, strict=True)]


def coalesce(intervals: list[tuple[int, int]], span_ms: int) -> list[tuple[int, int]]:
    """Neighbouring intervals joined while the whole fits in ``span_ms`` (one page of the
    candle endpoint): the holes of a short file cost a request per page, not per hole."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(intervals):
        if out and hi - out[-1][0] <= span_ms:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


async def from_archive(
    base_url: str,
    plans: list[ArchivePlan],
    now_ms: int,
    deliver: Deliver,
    stop: Stopper,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, ArchiveUse]:
    """Download every plan's files and ``deliver`` their candles as pages; returns what the
    archive gave per market key."""
    uses = {p.market.key: ArchiveUse() for p in plans}
    gate = asyncio.Semaphore(ARCHIVE_DOWNLOADS)
    timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S)

    async def one(session: aiohttp.ClientSession, p: ArchivePlan, file: ArchiveFile) -> bool:
        """False: the archive has no such file."""
        use = uses[p.market.key]
        if stop.stopping():
            return True
        async with gate:
            try:
                got = await download(session, base_url, file)
            except ArchiveFileUnusable as e:
                use.unusable.append(str(e))
                log(f"{p.market.key}: {e}; its span goes to the candle endpoint")
                return True
        if got is None:
            return False
        tf_ms = p.market.timeframe.ms
        table = got.table[(got.table[:, 0] >= file.start_ms) & (got.table[:, 0] < file.end_ms)]
        page = page_from_table(p.market.key, table, tf_ms, file.start_ms, file.end_ms, now_ms)
        held = runs(page.ts, tf_ms)
        pages = []
        for lo, hi in held:
            inside = (page.ts >= lo) & (page.ts < hi)
            pages.append(
                (p.series, CandlePage(p.market.key, tf_ms, lo, hi, page.ts[inside],
                                      page.values[inside], "archive", got.sha256))
            )  # fmt: skip
        await deliver(pages)
        use.files += 1
        use.candles += len(page)
        use.covered = merge_intervals([*use.covered, *held])
        return True

    async def market(session: aiohttp.ClientSession, p: ArchivePlan) -> None:
        tf = p.market.timeframe
        for lo, hi in p.spans:
            months = monthly_files(p.family_dir, p.symbol, tf, lo, hi, now_ms)
            found = await asyncio.gather(*(one(session, p, f) for f in months))
            # days of the span outside a month that has a file: the month in progress, a
            # month not yet published or missing
            held = [(f.start_ms, f.end_ms) for f, ok in zip(months, found, strict=True) if ok]
            days = [
                d
                for s, e in subtract_intervals(lo, hi, held)
                for d in daily_files(p.family_dir, p.symbol, tf, s, e, now_ms)
            ]
            await asyncio.gather(*(one(session, p, f) for f in days))

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(market(session, p) for p in plans))
    for p in plans:
        use = uses[p.market.key]
        use.unusable.sort()  # by file name (they end in any order)
        if use.files or use.unusable:
            log(
                f"{p.market.key}: {use.candles} candles from {use.files} archive file(s)"
                + (f", {len(use.unusable)} file(s) unusable" if use.unusable else "")
            )
    return uses
