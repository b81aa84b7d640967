"""Candle frames: from exchange rows to a validated frame of closed candles.

The contract (pandera), checked before anything is written: open times in UTC on the
timeframe grid, unique, inside the requested window and closed at the exchange's clock;
high >= max(open, close), low <= min(open, close), prices > 0, volume >= 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

COLUMNS = ["ts", "open", "high", "low", "close", "volume"]


class CandleContractError(ValueError):
    """Rows that break the candle contract; ``failures`` lists them."""

    def __init__(self, message: str, failures: pd.DataFrame) -> None:
        super().__init__(message)
        self.failures = failures


def to_frame(rows: Sequence[Sequence[float]]) -> pd.DataFrame:
    """ccxt OHLCV rows ([ms, o, h, l, c, v]) as a frame with int64 ts and float prices."""
    frame = pd.DataFrame([list(r[:6]) for r in rows], columns=COLUMNS)
    return frame.astype({"ts": "int64", **dict.fromkeys(COLUMNS[1:], "float64")})


def closed_only(frame: pd.DataFrame, timeframe_ms: int, now_ms: int) -> pd.DataFrame:
    """Drop candles whose close time (open + timeframe) is after ``now_ms``: by time, never
    by position (the last row is not always the open one)."""
    return frame[frame["ts"] + timeframe_ms <= now_ms]


def schema(timeframe_ms: int, start_ms: int, end_ms: int, now_ms: int) -> pa.DataFrameSchema:
    price = [pa.Check.gt(0)]
    return pa.DataFrameSchema(
        {
            "ts": pa.Column(
                "int64",
                checks=[
                    pa.Check(lambda s: s % timeframe_ms == 0, error="on the timeframe grid"),
                    pa.Check.in_range(start_ms, end_ms - 1, error="inside the requested window"),
                    pa.Check(
                        lambda s: s + timeframe_ms <= now_ms, error="closed (not in the future)"
                    ),
                ],
                unique=True,
            ),
            "open": pa.Column("float64", checks=price),
            "high": pa.Column("float64", checks=price),
            "low": pa.Column("float64", checks=price),
            "close": pa.Column("float64", checks=price),
            "volume": pa.Column("float64", checks=[pa.Check.ge(0)]),
        },
        checks=[
            pa.Check(
                lambda f: f["high"] >= f[["open", "close"]].max(axis=1),
                error="high >= max(open, close)",
            ),
            pa.Check(
                lambda f: f["low"] <= f[["open", "close"]].min(axis=1),
                error="low <= min(open, close)",
            ),
        ],
        strict=True,
        coerce=False,
    )


def validate(
    frame: pd.DataFrame, timeframe_ms: int, start_ms: int, end_ms: int, now_ms: int
) -> pd.DataFrame:
    """The frame if every row keeps the contract; else CandleContractError with the rows."""
    try:
        return schema(timeframe_ms, start_ms, end_ms, now_ms).validate(frame, lazy=True)
    except SchemaErrors as e:
        cases = e.failure_cases
        rows = frame.loc[[i for i in cases["index"].dropna().unique() if i in frame.index]]
        checks = ", ".join(sorted({str(c) for c in cases["check"].unique()}))
        raise CandleContractError(
            f"{len(rows)} candle(s) break the contract ({checks}):\n{rows.head(10).to_string()}",
            rows,
        ) from e
