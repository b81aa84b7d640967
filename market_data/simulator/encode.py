"""Vectorised JSON encoding of kline rows: integers and fixed-point decimals to ASCII with
numpy, so a page of 1000 candles costs a few array operations instead of 10,000 string
formats. The output is what Binance sends: no leading zeros, a fixed number of decimals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

# "0000" .. "9999" as one uint32 each (4 ASCII bytes), gathered with np.take.
_TABLE = np.frombuffer(b"".join(f"{i:04d}".encode() for i in range(10_000)), dtype=np.uint32)
_POW10 = 10 ** np.arange(19, dtype=np.int64)


@dataclass(frozen=True)
class Column:
    """An int64 column; ``decimals`` None = a bare integer, else a quoted fixed-point
    decimal whose value is ``values / 10**decimals``."""

    values: np.ndarray
    decimals: int | None = None


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n, k) non-negative ints -> (n, k, width) ASCII digits, zero-padded."""
    chunks = -(-width // 4)
    out = np.empty((*values.shape, chunks), dtype=np.uint32)
    rest = values
    for c in range(chunks - 1, -1, -1):  # scalar divisors: numpy's fast integer division
        rest, quad = np.divmod(rest, 10_000)
        out[..., c] = np.take(_TABLE, quad)
    return out.view(np.uint8)[..., -width:]


def encode_rows(columns: list[Column | bytes]) -> bytes:
    """A JSON array of arrays; ``bytes`` items are literal JSON values (same in every row)."""
    numeric = [c for c in columns if isinstance(c, Column)]
    n = len(numeric[0].values)
    if n == 0:
        return b"[]"
    scales = [10 ** (c.decimals or 0) for c in numeric]
    whole = np.stack([c.values // s for c, s in zip(numeric, scales, strict=True)], axis=1)
    width = len(str(int(whole.max())))
    int_digits = _digits(whole, width)
    # Leading zeros are dropped: a value keeps as many digits as it has (0 keeps one).
    ndigits = np.searchsorted(_POW10, whole, side="right").clip(min=1)
    int_keep = np.arange(width) >= (width - ndigits)[..., None]
    fractions = {
        d: _digits(np.stack([c.values % 10**d for c in numeric if c.decimals == d], axis=1), d)
        for d in {c.decimals for c in numeric if c.decimals}
    }
    # Lay the row out: pieces are (data, keep) blocks of shape (n, w).
    pieces: list[tuple[np.ndarray | bytes, np.ndarray | None]] = [(b"[", None)]
    seen = {d: 0 for d in fractions}
    j = 0
    for i, col in enumerate(columns):
        if i:
            pieces.append((b",", None))
        if isinstance(col, bytes):
            pieces.append((col, None))
            continue
        quoted = col.decimals is not None
        if quoted:
            pieces.append((b'"', None))
        pieces.append((int_digits[:, j], int_keep[:, j]))
        if col.decimals:
            pieces.append((b".", None))
            pieces.append((fractions[col.decimals][:, seen[col.decimals]], None))
            seen[col.decimals] += 1
        if quoted:
            pieces.append((b'"', None))
        j += 1
    pieces.append((b"],", None))
    total = sum(len(p) if isinstance(p, bytes) else p.shape[1] for p, _ in pieces)
    out = np.empty((n, total), dtype=np.uint8)
    keep = np.ones((n, total), dtype=bool)
    at = 0
    for data, mask in pieces:
        w = len(data) if isinstance(data, bytes) else data.shape[1]
        out[:, at : at + w] = (
            np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
        )
        if mask is not None:
            keep[:, at : at + w] = mask
        at += w
    keep[-1, -1] = False  # no comma after the last row
    return b"[" + np.compress(keep.ravel(), out.ravel()).tobytes() + b"]"


def row_values(columns: list[Column | bytes], i: int) -> list[Any]:
    """Row ``i`` of what ``encode_rows`` encodes, as the values JSON parses it back to
    (decimals as strings, integers as ints): one row without the array machinery, which
    costs ~0.2 ms whatever the row count (the streams send one candle per event)."""
    out: list[Any] = []
    for col in columns:
        if isinstance(col, bytes):
            out.append(orjson.loads(col))
            continue
        v = int(col.values[i])
        if col.decimals is None:
            out.append(v)
        elif col.decimals == 0:
            out.append(str(v))
        else:
            whole, frac = divmod(v, 10**col.decimals)
            out.append(f"{whole}.{frac:0{col.decimals}d}")
    return out


def rescale(values: np.ndarray, from_decimals: int, to_decimals: int) -> np.ndarray:
    """Fixed-point integers with one number of decimals to another (rounding half up)."""
    if to_decimals >= from_decimals:
        return values * 10 ** (to_decimals - from_decimals)
    div = 10 ** (from_decimals - to_decimals)
    return (values + div // 2) // div
