"""Gap math (pure): holes in a candle series, classified by fetch coverage.

A hole is a run of expected open times (on the timeframe grid) without a candle. Its kind:
``missing`` where no fetch covered it (never fetched, or the fetch failed), ``empty`` where
a fetch covered it and the exchange returned nothing (illiquid minutes, outages).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MISSING, EMPTY = "missing", "empty"
OPEN, REPAIRED, EXCHANGE_EMPTY = "open", "repaired", "exchange_empty"


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
