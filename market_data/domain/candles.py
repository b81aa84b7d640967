"""Candle pages: from exchange rows to closed candles, and the contract they keep.

The contract (pandera), checked before anything is written: open times in UTC on the
timeframe grid, unique, inside the requested window and closed at the exchange's clock;
high >= max(open, close), low <= min(open, close), prices > 0, volume >= 0.

Pages are kept as numpy arrays (no frame per page); the contract is checked once per batch
of pages, on one frame of all their rows, so validation costs one vectorised pass however
the pages were cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

COLUMNS = ["ts", "open", "high", "low", "close", "volume"]
VALUES = COLUMNS[1:]


class CandleContractError(ValueError):
    """Rows that break the candle contract; ``failures`` lists them."""

    def __init__(self, message: str, failures: pd.DataFrame) -> None:
        super().__init__(message)
        self.failures = failures


@dataclass(frozen=True)
class CandlePage:
    """The closed candles an exchange returned for one window [start_ms, end_ms) of a
    market (``key``): open times and the five values, as arrays."""

    key: str
    timeframe_ms: int
    start_ms: int
    end_ms: int
    ts: np.ndarray  # int64, candle open times (UTC epoch ms)
    values: np.ndarray  # float64, shape (n, 5): open, high, low, close, volume
    #: where they came from: "rest" (the candle endpoint), "archive" (a file of the
    #: exchange's public data archive, ``checksum`` its SHA-256), "trades" (built from the
    #: exchange's trades) or "stream" (closes of the live service's streams)
    source: str = "rest"
    checksum: str | None = None

    def __len__(self) -> int:
        return int(self.ts.shape[0])


def page_from_table(
    key: str, table: np.ndarray, timeframe_ms: int, start_ms: int, end_ms: int, now_ms: int
) -> CandlePage:
    """Candles ((n, 6): open time, open, high, low, close, volume) as a page of closed ones: a
    candle whose close time (open + timeframe) is after ``now_ms`` is dropped, by time, never
    by position (the last row is not always the open one)."""
    ts = table[:, 0].astype(np.int64)
    closed = ts + timeframe_ms <= now_ms
    return CandlePage(key, timeframe_ms, start_ms, end_ms, ts[closed], table[closed, 1:])


def _schema(now_ms: int) -> pa.DataFrameSchema:
    price = [pa.Check.gt(0)]
    return pa.DataFrameSchema(
        {
            "ts": pa.Column("int64"),
            "open": pa.Column("float64", checks=price),
            "high": pa.Column("float64", checks=price),
            "low": pa.Column("float64", checks=price),
            "close": pa.Column("float64", checks=price),
            "volume": pa.Column("float64", checks=[pa.Check.ge(0)]),
            # bookkeeping of the page each row came from
            "page": pa.Column("int64"),
            "timeframe_ms": pa.Column("int64"),
            "start_ms": pa.Column("int64"),
            "end_ms": pa.Column("int64"),
        },
        checks=[
            pa.Check(lambda f: f["ts"] % f["timeframe_ms"] == 0, error="on the timeframe grid"),
            pa.Check(
                lambda f: (f["ts"] >= f["start_ms"]) & (f["ts"] < f["end_ms"]),
                error="inside the requested window",
            ),
            pa.Check(
                lambda f: f["ts"] + f["timeframe_ms"] <= now_ms, error="closed (not in the future)"
            ),
            pa.Check(
                lambda f: ~f.duplicated(["page", "ts"], keep=False), error="unique open times"
            ),
            pa.Check(
                lambda f: f["high"] >= np.maximum(f["open"], f["close"]),
                error="high >= max(open, close)",
            ),
            pa.Check(
                lambda f: f["low"] <= np.minimum(f["open"], f["close"]),
                error="low <= min(open, close)",
            ),
        ],
        strict=True,
        coerce=False,
    )


def frame_of(pages: Sequence[CandlePage]) -> pd.DataFrame:
    """One frame of every row of ``pages``, with the page each row came from."""
    sizes = [len(p) for p in pages]
    ts = np.concatenate([p.ts for p in pages]) if pages else np.empty(0, np.int64)
    values = np.concatenate([p.values for p in pages]) if pages else np.empty((0, 5))
    frame = pd.DataFrame(values, columns=VALUES)
    frame.insert(0, "ts", ts)

    def per_row(field: str) -> np.ndarray:
        return np.repeat(np.array([getattr(p, field) for p in pages], dtype=np.int64), sizes)

    frame["page"] = np.repeat(np.arange(len(pages), dtype=np.int64), sizes)
    for field in ("timeframe_ms", "start_ms", "end_ms"):
        frame[field] = per_row(field)
    return frame


def validate_pages(pages: Sequence[CandlePage], now_ms: int) -> None:
    """Every row of ``pages`` keeps the contract; else CandleContractError with the rows."""
    if not any(len(p) for p in pages):
        return
    frame = frame_of(pages)
    try:
        _schema(now_ms).validate(frame, lazy=True)
    except SchemaErrors as e:
        cases = e.failure_cases
        rows = frame.loc[[i for i in cases["index"].dropna().unique() if i in frame.index]]
        rows = rows.assign(market=[pages[int(i)].key for i in rows["page"]])
        checks = ", ".join(sorted({str(c) for c in cases["check"].unique()}))
        shown = rows[["market", *COLUMNS]].head(10).to_string()
        raise CandleContractError(
            f"{len(rows)} candle(s) break the contract ({checks}):\n{shown}", rows
        ) from e
