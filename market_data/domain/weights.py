"""Binance's request weights, as it documents them: what each request adds to the weight an
address used in the current window (reported back as ``X-MBX-USED-WEIGHT-1M``). The
simulator charges them; the client reserves them before sending (exchanges/budget.py)."""

from __future__ import annotations

#: each API family's own weight budget per minute (spot /api, USD-M futures /fapi)
DEFAULT_LIMITS = {False: 6000, True: 2400}  # by "is futures"


def binance_weight(endpoint: str, limit: int | None, futures: bool) -> int:
    """The weight of one request to ``endpoint`` (the last path segment: klines, depth,
    exchangeInfo, time, ...) with that ``limit`` parameter (None: not sent)."""
    if endpoint == "exchangeInfo":
        return 1 if futures else 20
    if endpoint == "klines":
        if not futures:
            return 2
        n = limit or 500
        return 1 if n < 100 else 2 if n < 500 else 5 if n <= 1000 else 10
    if endpoint == "depth":
        n = limit or (500 if futures else 100)
        if futures:
            return 2 if n <= 50 else 5 if n <= 100 else 10 if n <= 500 else 20
        return 5 if n <= 100 else 25 if n <= 500 else 50 if n <= 1000 else 250
    return 1


#: Binance's rate-limit intervals: the name in exchangeInfo, its letter in header names
INTERVALS = {"SECOND": ("S", 1), "MINUTE": ("M", 60), "HOUR": ("H", 3600), "DAY": ("D", 86400)}
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-"


def interval_of(window_s: int) -> tuple[str, int]:
    """(interval, intervalNum) naming a window of ``window_s`` whole seconds, the largest
    unit that divides it: 60 -> (MINUTE, 1), 10 -> (SECOND, 10)."""
    for name, (_, unit) in sorted(INTERVALS.items(), key=lambda kv: -kv[1][1]):
        if window_s % unit == 0:
            return name, window_s // unit
    raise ValueError(f"not a whole number of seconds: {window_s}")


def header_suffix(window_s: int) -> str:
    """The header's suffix for a window: 60 -> "1M" (X-MBX-USED-WEIGHT-1M), 10 -> "10S"."""
    name, num = interval_of(window_s)
    return f"{num}{INTERVALS[name][0]}"


def window_seconds(interval: str, num: int) -> int:
    """The window's length from exchangeInfo's (interval, intervalNum) or a header suffix's
    letter and number."""
    unit = next(u for n, (letter, u) in INTERVALS.items() if interval.upper() in (n, letter))
    return unit * num
