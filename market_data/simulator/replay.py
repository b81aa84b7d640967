"""Replay mode: serve recorded 1m candles from a file instead of the generator.

A file holds rows [ms, open, high, low, close, volume] as CSV (an optional header line) or
as a JSON array of arrays. Missing minutes are exchange-side holes. Values are kept as
exact decimals (scaled integers), so what is served equals what the file says.
"""

from __future__ import annotations

import csv
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from market_data.domain.timeframes import MINUTE_MS
from market_data.simulator.generator import Bars


class ReplayFileError(ValueError):
    pass


def _decimals(values: list[str]) -> int:
    return max((len(v.split(".", 1)[1]) if "." in v else 0) for v in values)


def _scaled(values: list[str], decimals: int) -> np.ndarray:
    return np.array([int(Decimal(v).scaleb(decimals)) for v in values], dtype=np.int64)


FIELDS = ("timestamp", "open", "high", "low", "close", "volume")


def _is_number(text: str) -> bool:
    try:
        return Decimal(text).is_finite()
    except InvalidOperation:
        return False


def _check(path: Path, line: int, row: list[str]) -> list[str]:
    """The row's six fields, or ReplayFileError naming the file, line and field."""
    if len(row) < 6:
        raise ReplayFileError(f"{path}: line {line} has {len(row)} fields, expected 6 ({', '.join(FIELDS)})")  # fmt: skip
    cells = [c.strip() for c in row[:6]]
    if not (cells[0].isdigit() and len(cells[0]) <= 15):
        raise ReplayFileError(f"{path}: line {line}: timestamp {cells[0]!r} is not epoch milliseconds")  # fmt: skip
    for name, cell in zip(FIELDS[1:], cells[1:], strict=True):
        if not _is_number(cell) or Decimal(cell) < 0:
            raise ReplayFileError(f"{path}: line {line}: {name} {cell!r} is not a number >= 0")
    return cells


def _read_rows(path: Path) -> list[list[str]]:
    """Rows of [ms, open, high, low, close, volume] as text, every value checked. A CSV may
    start with a header line: one whose fields are all names, none a number."""
    text = path.read_text()
    if text.lstrip().startswith("["):
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise ReplayFileError(f"{path}: not valid JSON: {e}") from e
        if not isinstance(raw, list) or not all(isinstance(r, list) for r in raw):
            raise ReplayFileError(f"{path}: expected a JSON array of arrays")
        numbered = [(n, [str(x) for x in row]) for n, row in enumerate(raw, 1)]
    else:
        numbered = [(n, r) for n, r in enumerate(csv.reader(text.splitlines()), 1) if r]
        if numbered and not any(_is_number(c.strip()) for c in numbered[0][1]):
            numbered = numbered[1:]  # a header
    return [_check(path, n, row) for n, row in numbered]


class ReplaySeries:
    """One market's recorded 1m history."""

    def __init__(self, path: Path) -> None:
        rows = _read_rows(path)
        if not rows:
            raise ReplayFileError(f"{path}: no rows")
        rows.sort(key=lambda r: int(r[0]))
        ts = np.array([int(r[0]) for r in rows], dtype=np.int64)
        if np.any(ts % MINUTE_MS) or np.any(np.diff(ts) == 0):
            raise ReplayFileError(f"{path}: timestamps must be unique 1m open times in ms")
        prices = [r[c] for r in rows for c in (1, 2, 3, 4)]
        self.price_decimals = _decimals(prices)
        self.lot_decimals = _decimals([r[5] for r in rows])
        cols = [_scaled([r[c] for r in rows], self.price_decimals) for c in (1, 2, 3, 4)]
        volume = _scaled([r[5] for r in rows], self.lot_decimals)
        self.bars = Bars(ts, *cols, volume, np.ones_like(volume), volume // 2, volume * cols[3])
        self.first_ms = int(ts[0])

    def minute_bars(self, start_ms: int, end_ms: int) -> Bars:
        lo, hi = np.searchsorted(self.bars.ts, [start_ms, end_ms])
        return self.bars.select(slice(int(lo), int(hi)))
