"""Calendar arithmetic in UTC: days and months as epoch milliseconds, month partition keys,
year partition keys, and the one text form of a time the project prints."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np


def day_ms(day: date) -> int:
    """Epoch milliseconds of ``day`` at 00:00 UTC."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def ms_day(ms: int) -> date:
    """The UTC day ``ms`` falls on."""
    return datetime.fromtimestamp(ms / 1000, UTC).date()


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    """The first day of the month after ``day``'s."""
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def previous_month(day: date) -> date:
    """The first day of the month before ``day``'s."""
    return date(day.year - (day.month == 1), (day.month - 2) % 12 + 1, 1)


def month_keys(first: date, last: date) -> list[str]:
    """Month keys (``YYYY-MM-01``) of every month from ``first``'s to ``last``'s, inclusive."""
    keys, cursor = [], month_start(first)
    while cursor <= last:
        keys.append(cursor.isoformat())
        cursor = next_month(cursor)
    return keys


def month_key_of(ms: int) -> str:
    """The month key of the month ``ms`` falls in."""
    return month_start(ms_day(ms)).isoformat()


def month_bounds(month_key: str) -> tuple[int, int]:
    """[start, end) of a month key in epoch ms."""
    first = date.fromisoformat(month_key)
    return day_ms(first), day_ms(next_month(first))


def utc_text(ms: int | float | None) -> str | None:
    """``YYYY-MM-DD HH:MM`` (UTC) of epoch ms: the form every report and log line uses."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def month_keys_between(lo_ms: int, hi_ms: int) -> list[str]:
    """Month keys of every month that [lo_ms, hi_ms) touches."""
    if hi_ms <= lo_ms:
        return []
    return month_keys(ms_day(lo_ms), ms_day(hi_ms - 1))


def count_by_month(ts: np.ndarray) -> dict[str, int]:
    """How many of the (sorted or not) epoch-ms times ``ts`` fall in each month."""
    if not len(ts):
        return {}
    out = {}
    ordered = np.sort(ts)
    for key in month_keys_between(int(ordered[0]), int(ordered[-1]) + 1):
        lo, hi = month_bounds(key)
        n = int(np.searchsorted(ordered, hi) - np.searchsorted(ordered, lo))
        if n:
            out[key] = n
    return out


def year_key_of(ms: int) -> str:
    """The year key (``YYYY``) of the year ``ms`` falls in."""
    return str(ms_day(ms).year)


def year_bounds(year_key: str) -> tuple[int, int]:
    """[start, end) of a year key in epoch ms."""
    year = int(year_key)
    return day_ms(date(year, 1, 1)), day_ms(date(year + 1, 1, 1))


def year_keys(first: date, last: date) -> list[str]:
    """Year keys of every year from ``first``'s to ``last``'s, inclusive."""
    return [str(y) for y in range(first.year, last.year + 1)]


def year_keys_between(lo_ms: int, hi_ms: int) -> list[str]:
    """Year keys of every year that [lo_ms, hi_ms) touches."""
    if hi_ms <= lo_ms:
        return []
    return year_keys(ms_day(lo_ms), ms_day(hi_ms - 1))
