"""Gap detection and repair planning for markets (plain Python; the check, the repair runs,
the sweep and the command line share it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from market_data.domain.gaps import EXCHANGE_EMPTY, OPEN, repair_ranges, retry_due
from market_data.domain.watchlist import GapSettings, Market
from market_data.store.candles import CandleStore
from market_data.store.gaps import GapRow

FAR_FUTURE = 2**62


@dataclass
class MarketGaps:
    key: str
    open: list[GapRow] = field(default_factory=list)
    exchange_empty: list[GapRow] = field(default_factory=list)
    timeframe_ms: int = 60_000

    @property
    def missing_candles(self) -> int:
        return sum((g.end - g.start) // self.timeframe_ms for g in self.open)

    @property
    def empty_candles(self) -> int:
        return sum((g.end - g.start) // self.timeframe_ms for g in self.exchange_empty)


def expected_bounds(
    store: CandleStore, market: Market, ranges: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """``ranges`` clipped to where candles are expected: from the market's start and listing,
    until its delisting (the newest known point bounds it further, in the store)."""
    row = store.instruments.get(market.exchange, market.symbol.standard)
    tf = market.timeframe
    lo = market.start_ms
    hi = FAR_FUTURE
    if row is not None and row.listed_at is not None:
        lo = max(lo, tf.floor(row.listed_at))
    if row is not None and row.delisted_at is not None:
        hi = tf.ceil(row.delisted_at)
    return [(tf.ceil(max(s, lo)), min(e, hi)) for s, e in ranges if max(s, lo) < min(e, hi)]


def detect(
    store: CandleStore, market: Market, ranges: list[tuple[int, int]], settings: GapSettings
) -> MarketGaps:
    """Find the market's gaps in ``ranges``, record them, and return those open or empty."""
    tf = market.timeframe
    out = MarketGaps(market.key, timeframe_ms=tf.ms)
    for lo, hi in expected_bounds(store, market, ranges):
        holes, _ = store.gaps.find(market.exchange, market.symbol.standard, tf.code, tf.ms, lo, hi)
        rows = store.gaps.record(
            market.exchange, market.symbol.standard, tf.code, lo, hi, holes, settings.max_attempts
        )
        out.open += [r for r in rows if r.status == OPEN]
        out.exchange_empty += [r for r in rows if r.status == EXCHANGE_EMPTY]
    return out


def plan_repair(
    store: CandleStore, market: Market, ranges: list[tuple[int, int]], settings: GapSettings, page_span_ms: int,
    max_gaps: int | None = None,
) -> list[tuple[int, int]]:  # fmt: skip
    """The fetch ranges that repair the market's open gaps in ``ranges`` (attempts left),
    coalesced by page; each chosen gap's attempt is counted now, so a failed repair counts."""
    rows = [
        g for g in store.gaps.open_gaps(market.exchange, market.symbol.standard, market.timeframe.code)
        if g["attempts"] < settings.max_attempts and any(s <= g["gap_start"] < e for s, e in ranges)
    ]  # fmt: skip
    rows = rows[:max_gaps] if max_gaps else rows
    store.gaps.mark_attempt(
        market.exchange,
        market.symbol.standard,
        market.timeframe.code,
        [g["gap_start"] for g in rows],
    )
    return repair_ranges(((g["gap_start"], g["gap_end"]) for g in rows), page_span_ms)


def due_gaps(store: CandleStore, settings: GapSettings, now_ms: int) -> list[dict]:
    """Open gaps with attempts left whose delay has passed."""
    return [
        g for g in store.gaps.open_gaps()
        if g["attempts"] < settings.max_attempts
        and retry_due(g["attempts"], g["last_attempt_at"], now_ms, int(settings.retry_delay_s * 1000))
    ]  # fmt: skip
