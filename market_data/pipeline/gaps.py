"""Gap detection and repair planning for markets: the check, the repair runs, the sweep and
the command line share it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from market_data.domain.calendar import month_keys_between
from market_data.domain.expected import Listing, clip, expected_window
from market_data.domain.gaps import EXCHANGE_EMPTY, OPEN, GapCounts, repair_ranges, retry_due
from market_data.domain.watchlist import ExchangeSettings, GapSettings, Market
from market_data.exchanges.venues import history_depth
from market_data.store.candles import CandleStore
from market_data.store.gaps import GapRow
from market_data.store.series import Series


@dataclass
class MarketGaps:
    key: str
    open: list[GapRow] = field(default_factory=list)
    exchange_empty: list[GapRow] = field(default_factory=list)
    timeframe_ms: int = 60_000

    def counts(self, lo: int | None = None, hi: int | None = None) -> GapCounts:
        """Its gaps counted, or only their parts in [lo, hi) (a gap can span months)."""
        lo = -(2**62) if lo is None else lo
        hi = 2**62 if hi is None else hi
        return GapCounts.of(
            (
                (max(g.start, lo), min(g.end, hi), g.kind, g.status)
                for g in self.open + self.exchange_empty
                if g.start < hi and g.end > lo
            ),
            self.timeframe_ms,
        )


def with_venue(listing: Listing, exchange: ExchangeSettings) -> Listing:
    """The listing with what the exchange serves of it (how deep its history goes, by any
    route the settings allow: Kraken's through its trades, or only its newest candles)."""
    return replace(listing, history_candles=history_depth(exchange))


def stored_listing(store: CandleStore, exchange: ExchangeSettings, market: Market) -> Listing:
    """The market's listing as stored, with how deep the exchange's history goes."""
    listing = store.instruments.listing(market.exchange, market.symbol.standard)
    return with_venue(listing, exchange)


def expected_ranges(
    store: CandleStore, exchange: ExchangeSettings, market: Market, ranges: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """``ranges`` clipped to where the market's candles are expected, by its stored listing
    and the exchange clock as a run last read it (nothing is known to be missing after it)."""
    window = expected_window(
        market, stored_listing(store, exchange, market), store.gaps.clock(market.exchange)
    )
    return clip(ranges, window, market.timeframe)


def detect(
    store: CandleStore,
    exchange: ExchangeSettings,
    market: Market,
    ranges: list[tuple[int, int]],
    settings: GapSettings,
) -> MarketGaps:
    """Find the market's gaps in ``ranges``, record them, and return those open or empty."""
    tf = market.timeframe
    series = Series.of(market)
    out = MarketGaps(market.key, timeframe_ms=tf.ms)
    for lo, hi in expected_ranges(store, exchange, market, ranges):
        holes = store.gaps.find(series, tf.ms, lo, hi)
        rows = store.gaps.record(series, lo, hi, holes, settings.max_attempts)
        out.open += [r for r in rows if r.status == OPEN]
        out.exchange_empty += [r for r in rows if r.status == EXCHANGE_EMPTY]
    return out


def detect_tail(
    store: CandleStore,
    exchange: ExchangeSettings,
    market: Market,
    ranges: list[tuple[int, int]],
    settings: GapSettings,
    since_ms: int,
) -> MarketGaps:
    """Find (and record) the market's gaps in ``ranges`` from ``since_ms`` on only, and
    return every gap recorded in ``ranges``: what earlier detections (the backfill, the
    sweep, earlier ticks) found before ``since_ms`` stands as recorded. A freshness run's
    check: its cost follows the tail, not the year. ``since_ms`` moves back to the start of
    a recorded gap it would cut (a gap is one row)."""
    series = Series.of(market)
    for lo, hi in ranges:
        straddling = [g.start for g in store.gaps.recorded(series, since_ms, since_ms + 1)]
        tail = [(max(lo, min([since_ms, *straddling])), hi)]
        if tail[0][0] < hi:
            detect(store, exchange, market, tail, settings)
    out = MarketGaps(market.key, timeframe_ms=market.timeframe.ms)
    for lo, hi in ranges:
        rows = store.gaps.recorded(series, lo, hi)
        out.open += [r for r in rows if r.status == OPEN]
        out.exchange_empty += [r for r in rows if r.status == EXCHANGE_EMPTY]
    return out


def plan_repair(
    store: CandleStore, market: Market, ranges: list[tuple[int, int]], settings: GapSettings, page_span_ms: int,
    max_gaps: int | None = None,
) -> list[tuple[int, int]]:  # fmt: skip
    """The fetch ranges that repair the market's open gaps in ``ranges`` (attempts left),
    coalesced by page; each chosen gap's attempt is counted now, so a failed repair counts."""
    series = Series.of(market)
    rows = [
        g for g in store.gaps.open_gaps(series)
        if g["attempts"] < settings.max_attempts and any(s <= g["gap_start"] < e for s, e in ranges)
    ]  # fmt: skip
    rows = rows[:max_gaps] if max_gaps else rows
    store.gaps.mark_attempt(series, [g["gap_start"] for g in rows])
    return repair_ranges(((g["gap_start"], g["gap_end"]) for g in rows), page_span_ms)


def months_to_repair(store: CandleStore, market: Market, settings: GapSettings) -> list[str]:
    """Month keys of the market's open gaps that have repair attempts left, in order."""
    months: set[str] = set()
    for g in store.gaps.open_gaps(Series.of(market)):
        if g["attempts"] < settings.max_attempts:
            months.update(month_keys_between(g["gap_start"], g["gap_end"]))
    return sorted(months)


def due_gaps(store: CandleStore, settings: GapSettings, now_ms: int) -> list[dict]:
    """Open gaps with attempts left whose delay has passed."""
    return [
        g for g in store.gaps.open_gaps()
        if g["attempts"] < settings.max_attempts
        and retry_due(g["attempts"], g["last_attempt_at"], now_ms, int(settings.retry_delay_s * 1000))
    ]  # fmt: skip
