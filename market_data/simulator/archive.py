"""Binance's public data archive (data.binance.vision) as the simulator serves it, under
``/binance-archive``: one zip of klines per symbol, interval and month (or day), each with a
``.CHECKSUM`` file, laid out as the real host lays them out::

    /data/spot/monthly/klines/{SYMBOL}/{interval}/{SYMBOL}-{interval}-{YYYY}-{MM}.zip
    /data/spot/daily/klines/{SYMBOL}/{interval}/{SYMBOL}-{interval}-{YYYY}-{MM}-{DD}.zip
    /data/futures/um/monthly/klines/...   (USD-M futures, the same below)
    <file>.CHECKSUM   ->   "<sha256 hex>  <file name>"

The candles come from the same candle book as the REST klines, so both agree to the last
digit. The real archive's quirks are kept: a zip holds one CSV of the 12 kline columns,
unquoted, no header, except USD-M files from ``FUTURES_HEADER_FROM`` on, which start with
one; spot files from 2025-01-01 give open and close times in microseconds; a month's file is
published once the month has ended, a day's file once the day has ended (404 before, and
for a span in which the market did not trade). Faults (``Faults``): ``archive_holes``
(candles a published file lacks while REST has them: the real short files),
``archive_bad_checksum`` (files whose ``.CHECKSUM`` does not match), and the Binance
fault rules and rates (latency, a 404 for one file, a truncated body). Archive requests
cost no request weight, as on the real host.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from market_data.domain.timeframes import MINUTE_MS
from market_data.simulator.binance import INTERVALS, format_klines
from market_data.simulator.book import CandleBook
from market_data.simulator.faults import Faults
from market_data.simulator.generator import aggregate
from market_data.simulator.markets import SimMarket

PREFIX = "/binance-archive"
#: spot files of days from this one on give times in microseconds (the real change)
SPOT_MICROSECONDS_FROM = 1_735_689_600_000  # 2025-01-01
#: USD-M files of months from this one on start with a header row
FUTURES_HEADER_FROM = 1_656_633_600_000  # 2022-07-01
HEADER = (
    b"open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    b"taker_buy_volume,taker_buy_quote_volume,ignore\n"
)
DAY_MS = 86_400_000
_PATH = re.compile(
    r"^/data/(?P<family>spot|futures/um)/(?P<period>monthly|daily)/klines/"
    r"(?P<symbol>[A-Z0-9_]+)/(?P<interval>[0-9a-zA-Z]+)/"
    r"(?P=symbol)-(?P=interval)-(?P<year>\d{4})-(?P<month>\d{2})(?:-(?P<day>\d{2}))?"
    r"\.zip(?P<checksum>\.CHECKSUM)?$"
)
#: bytes of built files kept, newest used first (a client asks for the .CHECKSUM, then the
#: zip; a benchmark warms the archive once, then downloads as from the real host's CDN)
CACHE_BYTES = 256 * 2**20


class NotPublished(Exception):
    """The archive has no such file (HTTP 404)."""


@dataclass(frozen=True)
class ArchiveFile:
    """One file of the archive, parsed from its path."""

    futures: bool
    symbol: str
    interval: str
    start_ms: int
    end_ms: int
    daily: bool
    checksum: bool

    @property
    def name(self) -> str:
        """The zip's file name, as ``.CHECKSUM`` names it."""
        day = datetime.fromtimestamp(self.start_ms / 1000, UTC)
        period = day.strftime("%Y-%m-%d" if self.daily else "%Y-%m")
        return f"{self.symbol}-{self.interval}-{period}.zip"

    @property
    def family(self) -> str:
        """The path's family part, counted in the simulator's stats (one entry per kind of
        file, not per file)."""
        family = "futures/um" if self.futures else "spot"
        return f"{PREFIX}/data/{family}/{'daily' if self.daily else 'monthly'}/klines"


def parse_path(path: str) -> ArchiveFile:
    """The file ``path`` (below the prefix) names; NotPublished for anything else."""
    match = _PATH.match(path)
    if match is None or match["interval"] not in INTERVALS:
        raise NotPublished(path)
    year, month = int(match["year"]), int(match["month"])
    try:
        if match["period"] == "daily":
            if match["day"] is None:
                raise NotPublished(path)
            start = datetime(year, month, int(match["day"]), tzinfo=UTC)
            end_ms = int(start.timestamp() * 1000) + DAY_MS
        else:
            if match["day"] is not None:
                raise NotPublished(path)
            start = datetime(year, month, 1, tzinfo=UTC)
            after = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            end_ms = int(after.timestamp() * 1000)
    except ValueError as e:  # a month 13, a February 30th
        raise NotPublished(path) from e
    return ArchiveFile(
        futures=match["family"] == "futures/um",
        symbol=match["symbol"],
        interval=match["interval"],
        start_ms=int(start.timestamp() * 1000),
        end_ms=end_ms,
        daily=match["period"] == "daily",
        checksum=match["checksum"] is not None,
    )


class Archive:
    """Builds the archive's files from the candle book, caches the newest few in memory and,
    with ``directory``, keeps every file built there (the real host serves prebuilt files:
    a benchmark builds them once, then downloads them as from the host)."""

    def __init__(
        self, book: CandleBook, cache_bytes: int = CACHE_BYTES, directory: Path | None = None
    ) -> None:
        self.book = book
        self.cache_bytes = cache_bytes
        self.directory = directory
        self._cache: OrderedDict[tuple[object, ...], tuple[bytes, str]] = OrderedDict()
        self._cached = 0  # bytes in _cache
        #: files are built in worker threads (the server's loop stays free), each file once:
        #: a lock per file, and one for the cache
        self._guard = threading.Lock()
        self._building: dict[tuple[object, ...], threading.Lock] = {}

    def get(self, file: ArchiveFile, now_ms: int, faults: Faults) -> bytes:
        """The file's body at ``now_ms`` (the zip, or its ``.CHECKSUM``)."""
        zipped, digest = self._zip(file, now_ms, faults)
        if file.checksum:
            if any(bad in file.name for bad in faults.archive_bad_checksum):
                digest = hashlib.sha256(digest.encode()).hexdigest()  # not the zip's
            return f"{digest}  {file.name}\n".encode()
        return zipped

    def _zip(self, file: ArchiveFile, now_ms: int, faults: Faults) -> tuple[bytes, str]:
        market = self.book.index.family(file.futures).get(file.symbol)
        if market is None or now_ms < file.end_ms:  # published once its span has ended
            raise NotPublished(file.name)
        if file.end_ms <= market.listed_ms or (
            market.ends_ms is not None and market.ends_ms <= file.start_ms
        ):
            raise NotPublished(file.name)  # no trading in the span: no file
        key = (
            file.futures, file.symbol, file.interval, file.start_ms, file.daily,
            faults.model_dump_json(include={"holes", "archive_holes", "price_offset_pct"}),
        )  # fmt: skip
        with self._guard:
            building = self._building.setdefault(key, threading.Lock())
        with building:
            with self._guard:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key]
            stored = None if self.directory is None else self.directory / _file_name(key)
            if stored is not None and stored.exists():
                zipped = stored.read_bytes()
            else:
                zipped = self._build(file, market, now_ms, faults)
                if stored is not None:
                    partial = stored.with_suffix(".partial")
                    partial.write_bytes(zipped)
                    partial.replace(stored)  # whole or absent
            built = (zipped, hashlib.sha256(zipped).hexdigest())
            with self._guard:
                self._cache[key] = built
                self._cached += len(zipped)
                while self._cached > self.cache_bytes and len(self._cache) > 1:
                    self._cached -= len(self._cache.popitem(last=False)[1][0])
                self._building.pop(key, None)
            return built

    def _build(self, file: ArchiveFile, market: SimMarket, now_ms: int, faults: Faults) -> bytes:
        tf_ms = INTERVALS[file.interval]
        minutes = self.book.minutes_until(market, file.start_ms, file.end_ms, now_ms, faults)
        for hole in faults.archive_holes:
            if hole.symbol in (None, market.id):
                minutes = minutes.select((minutes.ts < hole.start_ms) | (minutes.ts >= hole.end_ms))
        bars = aggregate(minutes, tf_ms) if tf_ms > MINUTE_MS else minutes
        microseconds = not file.futures and file.start_ms >= SPOT_MICROSECONDS_FROM
        body = format_klines(bars, market, tf_ms, time_scale=1000 if microseconds else 1)
        rows = b"" if len(bars) == 0 else body[2:-2].replace(b"],[", b"\n").replace(b'"', b"")
        header = HEADER if file.futures and file.start_ms >= FUTURES_HEADER_FROM else b""
        csv = header + rows + (b"\n" if rows else b"")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            archive.writestr(file.name.removesuffix(".zip") + ".csv", csv)
        return buffer.getvalue()


def _file_name(key: tuple[object, ...]) -> str:
    """A built file's name in the archive directory: its key (the file and the faults that
    shape it) hashed."""
    return hashlib.sha256(repr(key).encode()).hexdigest()[:32] + ".zip"


NOT_FOUND = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
    b"<Message>The specified key does not exist.</Message></Error>"
)
