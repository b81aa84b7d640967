"""The candle store: idempotent bulk upserts, fetch coverage, and the queries on them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from market_data.domain.intervals import merge_intervals
from market_data.store.gaps import GapStore
from market_data.store.instruments import InstrumentStore
from market_data.store.schema import apply_schema, normalise_url
from market_data.store.series import Series
from market_data.store.tables import (
    KEY_COLUMNS,
    VALUE_COLUMNS,
    candles,
    candles_in,
    fetch_coverage,
)

COLUMNS = ("ts", *VALUE_COLUMNS)


def _candle_upsert(dialect: Any, source: sa.Select | None = None) -> sa.Insert:
    """INSERT .. ON CONFLICT DO UPDATE that leaves unchanged rows alone, so a re-fetch
    writes nothing (and its row count says so)."""
    stmt = dialect.insert(candles)
    if source is not None:
        stmt = stmt.from_select([*KEY_COLUMNS, *VALUE_COLUMNS], source)
    changed = sa.tuple_(*(candles.c[c] for c in VALUE_COLUMNS)).is_distinct_from(
        sa.tuple_(*(stmt.excluded[c] for c in VALUE_COLUMNS))
    )
    if dialect is sqlite:
        changed = sa.or_(*(candles.c[c].is_distinct_from(stmt.excluded[c]) for c in VALUE_COLUMNS))
    return stmt.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS),
        set_={c: stmt.excluded[c] for c in VALUE_COLUMNS},
        where=changed,
    ).execution_options(preserve_rowcount=True)


class CandleStore:
    def __init__(self, url: str, *, create: bool = True) -> None:
        url = normalise_url(url)
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._dialect = postgresql if self.dialect == "postgresql" else sqlite
        self._upsert_rows = _candle_upsert(self._dialect)
        self._merge_copied = _candle_upsert(postgresql, sa.select(*candles_in.c))
        cover = self._dialect.insert(fetch_coverage)
        self._cover = cover.on_conflict_do_update(
            index_elements=["exchange", "symbol", "timeframe", "start_ts"],
            set_={c: cover.excluded[c] for c in ("end_ts", "candles", "fetched_at")},
        )
        self.instruments = InstrumentStore(self.engine, self._dialect)
        self.gaps = GapStore(self.engine, self._dialect)
        if create:
            apply_schema(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()

    # -- writes ------------------------------------------------------------------------
    def write_page(
        self, series: Series, frame: pd.DataFrame, covered: tuple[int, int] | None
    ) -> int:
        """Upsert a page of candles and, in the same transaction, record the interval it
        covered. Returns the rows inserted or changed."""
        with self.engine.begin() as conn:
            written = self._upsert(conn, series, frame) if len(frame) else 0
            if covered is not None:
                conn.execute(
                    self._cover,
                    series.params(
                        start_ts=covered[0],
                        end_ts=covered[1],
                        candles=len(frame),
                        fetched_at=int(time.time() * 1000),
                    ),
                )
        return written

    def _rows(self, series: Series, frame: pd.DataFrame) -> list[dict[str, object]]:
        cols = [frame[c].tolist() for c in COLUMNS]
        return [
            series.params(**dict(zip(COLUMNS, row, strict=True))) for row in zip(*cols, strict=True)
        ]

    def _upsert(self, conn: sa.Connection, series: Series, frame: pd.DataFrame) -> int:
        if self.dialect != "postgresql":
            return conn.execute(self._upsert_rows, self._rows(series, frame)).rowcount
        # COPY into a temporary table, then one INSERT .. SELECT .. ON CONFLICT.
        conn.execute(sa.schema.CreateTable(candles_in, if_not_exists=True))
        raw = conn.connection.driver_connection  # psycopg 3, inside this transaction
        head = (series.exchange, series.symbol, series.timeframe)
        cols = [frame[c].tolist() for c in COLUMNS]
        with raw.cursor() as cur, cur.copy(_COPY_SQL) as copy:
            for row in zip(*cols, strict=True):
                copy.write_row(head + row)
        written = conn.execute(self._merge_copied).rowcount
        conn.execute(candles_in.delete())
        return written

    # -- reads -------------------------------------------------------------------------
    def covered(self, series: Series, start: int, end: int) -> list[tuple[int, int]]:
        """Merged fetched intervals that overlap [start, end)."""
        c = fetch_coverage.c
        query = sa.select(c.start_ts, c.end_ts).where(
            series.where(fetch_coverage), c.end_ts > start, c.start_ts < end
        )
        with self.engine.connect() as conn:
            return merge_intervals((int(s), int(e)) for s, e in conn.execute(query))

    def candle_stats(
        self, series: Series, start: int, end: int
    ) -> tuple[int, int | None, int | None]:
        """(count, first ts, last ts) of stored candles in [start, end)."""
        c = candles.c
        query = sa.select(sa.func.count(), sa.func.min(c.ts), sa.func.max(c.ts)).where(
            series.where(candles), c.ts >= start, c.ts < end
        )
        with self.engine.connect() as conn:
            n, first, last = conn.execute(query).one()
        return int(n), first, last

    def last_ts(self, series: Series) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.max(candles.c.ts)).where(series.where(candles))
            ).scalar()

    def read_candles(self, series: Series, start: int, end: int) -> pd.DataFrame:
        query = (
            sa.select(*(candles.c[c] for c in COLUMNS))
            .where(series.where(candles), candles.c.ts >= start, candles.c.ts < end)
            .order_by(candles.c.ts)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return pd.DataFrame(rows, columns=list(COLUMNS)).astype({"ts": "int64"})


# psycopg's COPY statement: table and column names are module constants, never input.
_COPY_SQL = f"COPY candles_in ({', '.join((*KEY_COLUMNS, *VALUE_COLUMNS))}) FROM STDIN"


def _sqlite_pragmas(dbapi_conn: Any, _: object) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def series_stats(store: CandleStore, exchange: str) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(symbol, timeframe) -> (rows, first ts, last ts) of an exchange's stored candles."""
    c = candles.c
    query = (
        sa.select(c.symbol, c.timeframe, sa.func.count(), sa.func.min(c.ts), sa.func.max(c.ts))
        .where(c.exchange == exchange)
        .group_by(c.symbol, c.timeframe)
    )
    with store.engine.connect() as conn:
        return {(s, tf): (int(n), int(lo), int(hi)) for s, tf, n, lo, hi in conn.execute(query)}


def ping(store: CandleStore) -> float:
    """Seconds for a round trip to the database (raises if it is unreachable)."""
    started = time.perf_counter()
    with store.engine.connect() as conn:
        conn.execute(sa.select(1))
    return time.perf_counter() - started
