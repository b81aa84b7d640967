"""Timeframes: parsing, durations and grid arithmetic (all times are UTC epoch milliseconds)."""

from __future__ import annotations

import re
from dataclasses import dataclass

MINUTE_MS = 60_000
_UNIT_MS = {"m": MINUTE_MS, "h": 60 * MINUTE_MS, "d": 1440 * MINUTE_MS, "w": 7 * 1440 * MINUTE_MS}
_PATTERN = re.compile(r"^(\d+)([mhdw])$")

#: Every timeframe the project (and the simulator) supports, shortest first.
SUPPORTED_TIMEFRAMES: tuple[str, ...] = (
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "8h",
    "12h",
    "1d",
)


class UnknownTimeframeError(ValueError):
    """A timeframe string that is not one of SUPPORTED_TIMEFRAMES."""


@dataclass(frozen=True, order=True)
class Timeframe:
    """A candle duration such as ``1m`` or ``4h``; candles open on multiples of it since epoch."""

    ms: int
    code: str

    @classmethod
    def parse(cls, code: str) -> Timeframe:
        match = _PATTERN.match(code.strip()) if isinstance(code, str) else None
        if match is None or code.strip() not in SUPPORTED_TIMEFRAMES:
            raise UnknownTimeframeError(
                f"unknown timeframe {code!r}; supported: {', '.join(SUPPORTED_TIMEFRAMES)}"
            )
        return cls(ms=int(match.group(1)) * _UNIT_MS[match.group(2)], code=code.strip())

    def floor(self, ts_ms: int) -> int:
        """Open time of the candle that contains ``ts_ms``."""
        return ts_ms - ts_ms % self.ms

    def ceil(self, ts_ms: int) -> int:
        """First candle open time at or after ``ts_ms``."""
        return -(-ts_ms // self.ms) * self.ms

    def count(self, start_ms: int, end_ms: int) -> int:
        """Number of grid points in ``[start_ms, end_ms)``."""
        return max(0, (self.ceil(end_ms) - self.ceil(start_ms)) // self.ms)

    def __str__(self) -> str:
        return self.code
