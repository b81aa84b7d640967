"""Half-open intervals [start, end) of epoch milliseconds."""

from __future__ import annotations

from collections.abc import Iterable


def merge_intervals(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def subtract_intervals(
    start: int, end: int, covered: Iterable[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Parts of [start, end) that ``covered`` (merged, sorted) does not cover."""
    out, cursor = [], start
    for s, e in covered:
        if e <= cursor:
            continue
        if s >= end:
            break
        if s > cursor:
            out.append((cursor, min(s, end)))
        cursor = max(cursor, e)
    if cursor < end:
        out.append((cursor, end))
    return out
