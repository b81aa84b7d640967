"""Gap math (pure): holes in a candle series, classified by fetch coverage.

One vocabulary, used by the check, the command line, the status report and the API:

- a *gap* is a run of expected open times (on the timeframe grid) without a candle;
- its *kind* is ``missing`` where no fetch covered it (never fetched, or the fetch failed),
  or ``empty`` where a fetch covered it and the exchange returned nothing (illiquid minutes,
  outages) but that is not yet confirmed;
- its *status* is ``open`` (to repair; the check fails), ``repaired``, or ``exchange_empty``
  (empty confirmed by ``max_attempts`` fetches: explained, the check passes with a warning);
- *absent* candles are expected ones not stored, whatever the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from market_data.domain.calendar import month_bounds, month_key_of

MISSING, EMPTY = "missing", "empty"
OPEN, REPAIRED, EXCHANGE_EMPTY = "open", "repaired", "exchange_empty"


@dataclass(frozen=True)
class GapCounts:
    """Gaps and the candles in them, by kind and status."""

    open_gaps: int = 0
    #: candles in open gaps of kind ``missing``
    missing: int = 0
    #: candles in open gaps of kind ``empty`` (not yet confirmed)
    empty: int = 0
    #: candles in gaps confirmed ``exchange_empty``
    exchange_empty: int = 0

    @classmethod
    def of(cls, gaps: Iterable[tuple[int, int, str, str]], timeframe_ms: int) -> GapCounts:
        """From (start, end, kind, status) of gaps that are open or exchange-empty."""
        n, by = 0, {MISSING: 0, EMPTY: 0, EXCHANGE_EMPTY: 0}
        for start, end, kind, status in gaps:
            candles = (end - start) // timeframe_ms
            if status == OPEN:
                n += 1
                by[kind] += candles
            elif status == EXCHANGE_EMPTY:
                by[EXCHANGE_EMPTY] += candles
        return cls(n, by[MISSING], by[EMPTY], by[EXCHANGE_EMPTY])

    def __add__(self, other: GapCounts) -> GapCounts:
        return GapCounts(
            self.open_gaps + other.open_gaps,
            self.missing + other.missing,
            self.empty + other.empty,
            self.exchange_empty + other.exchange_empty,
        )

    @property
    def open_candles(self) -> int:
        return self.missing + self.empty

    def describe(self) -> str:
        """``2 open gap(s): 3 missing, 717 empty (unconfirmed); 10 exchange-empty``"""
        text = f"{self.open_gaps} open gap(s)"
        if self.open_gaps:
            text += f": {self.missing} missing, {self.empty} empty (unconfirmed)"
        return text + f"; {self.exchange_empty} exchange-empty"


@dataclass(frozen=True)
class Hole:
    start: int  # first missing open time
    end: int  # exclusive: after the last missing open time
    kind: str


def holes_from_breaks(
    lo: int,
    hi: int,
    timeframe_ms: int,
    first: int | None,
    last: int | None,
    breaks: Iterable[tuple[int, int]],
) -> list[tuple[int, int]]:
    """Missing ranges in [lo, hi) given the first and last stored open time there and the
    ``breaks``: consecutive stored candles (ts, next_ts) more than one timeframe apart."""
    if first is None or last is None:
        return [(lo, hi)] if lo < hi else []
    out = []
    if first > lo:
        out.append((lo, first))
    out += [(ts + timeframe_ms, nxt) for ts, nxt in breaks]
    if last + timeframe_ms < hi:
        out.append((last + timeframe_ms, hi))
    return out


DAY_MS = 86_400_000


def not_whole(
    lo: int,
    hi: int,
    timeframe_ms: int,
    stored: Mapping[int, int],
    settled: Iterable[tuple[int, int]] = (),
) -> list[tuple[int, int]]:
    """The parts of [lo, hi) that may hold a hole not known yet: [lo, hi) without its whole
    months. A UTC month is whole when its stored candles (``stored``: month start ->
    candles) number every open time of the timeframe's grid in it but those of the
    ``settled`` holes (confirmed empty at the exchange, no candle in them): stored open
    times are on the grid and unique, so such a month lacks exactly the settled holes. Only
    timeframes that divide a day meet every month's edges; for the others the whole of
    [lo, hi)."""
    if lo >= hi:
        return []
    holes = sorted(settled)
    out, cursor = [], lo
    for start in sorted(stored) if DAY_MS % timeframe_ms == 0 else []:
        begin, end = month_bounds(month_key_of(start))
        known = sum(max(0, min(b, end) - max(a, begin)) for a, b in holes) // timeframe_ms
        if stored[start] != (end - begin) // timeframe_ms - known or end <= cursor or begin >= hi:
            continue
        if begin > cursor:
            out.append((cursor, begin))
        cursor = end
    if cursor < hi:
        out.append((cursor, hi))
    return out


def joined(holes: Iterable[Hole]) -> list[Hole]:
    """Holes in time order, those that touch and are of one kind made one (a hole found in
    parts, e.g. across the edge of a month that was not read)."""
    return _merge_adjacent(sorted(holes, key=lambda h: h.start))


def classify(ranges: Iterable[tuple[int, int]], covered: list[tuple[int, int]]) -> list[Hole]:
    """Split missing ranges at coverage edges: covered parts are ``empty``, others ``missing``.
    ``covered`` is merged and sorted."""
    out: list[Hole] = []
    for start, end in ranges:
        cursor = start
        for cs, ce in covered:
            if ce <= cursor or cs >= end:
                continue
            if cs > cursor:
                out.append(Hole(cursor, cs, MISSING))
            out.append(Hole(max(cs, cursor), min(ce, end), EMPTY))
            cursor = min(ce, end)
        if cursor < end:
            out.append(Hole(cursor, end, MISSING))
    return _merge_adjacent(out)


def _merge_adjacent(holes: list[Hole]) -> list[Hole]:
    merged: list[Hole] = []
    for h in holes:
        if merged and merged[-1].end == h.start and merged[-1].kind == h.kind:
            merged[-1] = Hole(merged[-1].start, h.end, h.kind)
        else:
            merged.append(h)
    return merged


def repair_ranges(holes: Iterable[tuple[int, int]], span_ms: int) -> list[tuple[int, int]]:
    """Coalesce gap ranges closer than one page (``span_ms``) so a repair costs about one
    request per page of gaps, not one per gap."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(holes):
        if out:
            s, e = out[-1]
            fetched_until = s + -(-(e - s) // span_ms) * span_ms  # end of the last page of s..e
            if start < fetched_until:  # starts inside a page fetched anyway
                out[-1] = (s, max(e, end))
                continue
        out.append((start, end))
    return out


def retry_due(attempts: int, last_attempt_at: int | None, now_ms: int, base_delay_ms: int) -> bool:
    """Growing delays between repair attempts: base, 2 x base, 4 x base, ..."""
    if last_attempt_at is None or attempts == 0:
        return True
    return now_ms - last_attempt_at >= base_delay_ms * 2 ** (attempts - 1)
