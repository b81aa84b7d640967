"""Replay mode: serve recorded 1m candles from a file instead of the generator.

A file holds rows [ms, open, high, low, close, volume] as CSV (an optional header line) or
as a JSON array of arrays. Missing minutes are exchange-side holes. Values are kept as
exact decimals (scaled integers), so what is served equals what the file says.
"""

from __future__ import annotations

import csv
import json
from decimal import Decimal
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


def _read_rows(path: Path) -> list[list[str]]:
    text = path.read_text()
    if text.lstrip().startswith("["):
        rows = [[str(x) for x in row] for row in json.loads(text)]
    else:
        rows = [r for r in csv.reader(text.splitlines()) if r]
        if rows and not rows[0][0].strip().lstrip("-").isdigit():
            rows = rows[1:]  # header
    for n, row in enumerate(rows, 1):
        if len(row) < 6:
            raise ReplayFileError(f"{path}: row {n} has {len(row)} fields, expected 6")
    return [[c.strip() for c in row[:6]] for row in rows]


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
