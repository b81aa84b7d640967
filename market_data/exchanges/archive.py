"""Binance's public data archive (data.binance.vision): kline files per symbol, interval and
month or day, each with a ``.CHECKSUM``; they cost no request weight.

Which files a span needs (``files_for``), and one file downloaded, checked against its
SHA-256 and parsed (``download``). A file is published once its month (or day) has ended;
until then, and for a span in which the market did not trade, the archive answers 404
(``download`` returns None). A file whose checksum does not match, or that is not a sound
zip of kline rows, is tried again, then given up on (``ArchiveFileUnusable``): the caller
asks the candle endpoint for its span instead.

The rows: 12 columns as the REST klines, no header, except USD-M files from mid-2022 (a
header row); spot files from 2025 give times in microseconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import numpy as np
import pandas as pd

from market_data.domain.calendar import month_bounds, month_key_of
from market_data.domain.timeframes import Timeframe

DAY_MS = 86_400_000
#: daily files are used for timeframes up to this one (a day of 4h is six candles: the
#: candle endpoint serves months of them in one request)
DAILY_UP_TO_MS = 3_600_000
#: attempts per file before its span goes to the candle endpoint
ATTEMPTS = 3
RETRY_PAUSE_S = 0.5
#: a microsecond open time is larger than any millisecond one (year 5138 in ms)
_MICROSECONDS = 10**14


class ArchiveFileUnusable(Exception):
    """A file that, after every attempt, did not match its checksum or could not be read."""


@dataclass(frozen=True)
class ArchiveFile:
    """One file: its path below the archive's base URL and the span [start_ms, end_ms)."""

    path: str
    start_ms: int
    end_ms: int

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]


def family(ccxt_market_type: str) -> str | None:
    """The archive's directory for a ccxt market type: spot, USD-M futures; None: not
    archived here (coin-M)."""
    return {"spot": "spot", "linear": "futures/um"}.get(ccxt_market_type)


def _file(
    family_dir: str, period: str, symbol: str, interval: str, lo: int, hi: int
) -> ArchiveFile:
    when = datetime.fromtimestamp(lo / 1000, UTC).strftime(
        "%Y-%m-%d" if period == "daily" else "%Y-%m"
    )
    name = f"{symbol}-{interval}-{when}.zip"
    return ArchiveFile(f"data/{family_dir}/{period}/klines/{symbol}/{interval}/{name}", lo, hi)


def monthly_files(
    family_dir: str, symbol: str, timeframe: Timeframe, lo: int, hi: int, now_ms: int
) -> list[ArchiveFile]:
    """The monthly files of every month wholly inside [lo, hi) that has ended by ``now_ms``."""
    out = []
    key = month_key_of(lo)
    while True:
        start, end = month_bounds(key)
        if end > hi or end > now_ms:
            break
        if start >= lo:
            out.append(_file(family_dir, "monthly", symbol, timeframe.code, start, end))
        key = month_key_of(end)
    return out


def daily_files(
    family_dir: str, symbol: str, timeframe: Timeframe, lo: int, hi: int, now_ms: int
) -> list[ArchiveFile]:
    """The daily files of every day wholly inside [lo, hi) that has ended by ``now_ms`` (none
    for timeframes above DAILY_UP_TO_MS)."""
    if timeframe.ms > DAILY_UP_TO_MS:
        return []
    first = -(-lo // DAY_MS) * DAY_MS
    last = min(hi, now_ms) // DAY_MS * DAY_MS
    return [
        _file(family_dir, "daily", symbol, timeframe.code, d, d + DAY_MS)
        for d in range(first, last, DAY_MS)
    ]


def parse_klines(data: bytes) -> np.ndarray:
    """A file's CSV rows as a (n, 6) float64 table: open time (ms), open, high, low, close,
    volume. A header row is skipped; microsecond times become milliseconds."""
    header = 1 if data[:1].isalpha() else 0  # the header row of newer USD-M files
    if not data.strip() or (header and b"\n" not in data.strip()):
        return np.empty((0, 6), dtype=np.float64)
    table = pd.read_csv(
        io.BytesIO(data), header=None, skiprows=header, usecols=range(6), dtype=np.float64
    ).to_numpy()
    if not np.isfinite(table).all():
        raise ValueError("a row with an empty or non-numeric field")
    times = table[:, 0]
    table[:, 0] = np.where(times >= _MICROSECONDS, np.floor(times / 1000), times)
    return table


def _unzipped(body: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        members = z.namelist()
        csv = name.removesuffix(".zip") + ".csv"
        return z.read(csv if csv in members else members[0])


@dataclass(frozen=True)
class Downloaded:
    file: ArchiveFile
    table: np.ndarray
    sha256: str


async def _get(session: aiohttp.ClientSession, url: str) -> bytes | None:
    """The body; None for a 404; an error for anything else but a 200."""
    async with session.get(url) as response:
        if response.status == 404:
            return None
        response.raise_for_status()
        return await response.read()


async def download(
    session: aiohttp.ClientSession, base_url: str, file: ArchiveFile, attempts: int = ATTEMPTS
) -> Downloaded | None:
    """The file checked against its ``.CHECKSUM`` and parsed; None if the archive has no such
    file. ArchiveFileUnusable when every attempt failed (a checksum that does not match, a
    zip that cannot be read, rows that cannot be parsed, an HTTP error)."""
    url = f"{base_url}/{file.path}"
    problem = ""
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(RETRY_PAUSE_S * attempt)
        try:
            checksum = await _get(session, url + ".CHECKSUM")
            if checksum is None:
                return None
            body = await _get(session, url)
            if body is None:
                return None
            expected = checksum.decode("ascii", "replace").split()[0].lower()
            digest = hashlib.sha256(body).hexdigest()
            if digest != expected:
                problem = f"SHA-256 {digest[:12]}.. does not match its .CHECKSUM {expected[:12]}.."
                continue
            table = await asyncio.to_thread(lambda b=body: parse_klines(_unzipped(b, file.name)))
            return Downloaded(file, table, digest)
        except (zipfile.BadZipFile, ValueError, UnicodeDecodeError, KeyError) as e:
            problem = f"not a readable kline file: {e}"
        except (aiohttp.ClientError, TimeoutError) as e:
            problem = f"download failed: {e or type(e).__name__}"
    raise ArchiveFileUnusable(f"{file.name}: {problem} ({attempts} attempts)")
