"""The candle store: idempotent bulk upserts, fetch coverage, and the queries on them."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from market_data.domain.candles import CandlePage
from market_data.domain.intervals import merge_intervals
from market_data.store.alerts import AlertStore
from market_data.store.bulk import column_arrays, unnest_rows
from market_data.store.composite import CompositeStore
from market_data.store.gaps import GapStore
from market_data.store.instruments import InstrumentStore
from market_data.store.live import LiveStore
from market_data.store.orderbooks import OrderbookStore
from market_data.store.schema import apply_schema, normalise_url
from market_data.store.series import Series
from market_data.store.tables import (
    KEY_COLUMNS,
    VALUE_COLUMNS,
    candle_series,
    candles,
    fetch_coverage,
)

COLUMNS = ("ts", *VALUE_COLUMNS)


_ALL = [*KEY_COLUMNS, *VALUE_COLUMNS]


# The PostgreSQL bulk path: a session-local table the rows are COPYed into (emptied at each
# commit), merged from there. Names are module constants, never input.
_CANDLES_IN = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS candles_in (ts BIGINT, open DOUBLE PRECISION, "
    "high DOUBLE PRECISION, low DOUBLE PRECISION, close DOUBLE PRECISION, "
    "volume DOUBLE PRECISION) ON COMMIT DELETE ROWS"
)
_COPY_IN = f"COPY candles_in ({', '.join(COLUMNS)}) FROM STDIN WITH (FORMAT BINARY)"
_COPY_NEW = f"COPY candles ({', '.join(_ALL)}) FROM STDIN WITH (FORMAT BINARY)"
_copied = sa.table("candles_in", *(sa.column(c) for c in COLUMNS))

# PostgreSQL's binary COPY format: a header, then per row a field count and each field as its
# length and its value, all big-endian (text as its UTF-8 bytes), then a trailer. Rows are
# built with numpy: a structured array of fixed-size fields, no per-row Python.
_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_TRAILER = b"\xff\xff"


def copy_binary(ts: np.ndarray, values: np.ndarray, head: tuple[str, ...] = ()) -> bytes:
    """Rows (*head, ts, open, high, low, close, volume) in PostgreSQL's binary COPY format;
    ``head`` holds text values shared by every row (exchange, symbol, timeframe)."""
    texts = [h.encode() for h in head]
    row = np.dtype(
        [("fields", ">i2")]
        + [f for i, t in enumerate(texts) for f in ((f"h{i}_len", ">i4"), (f"h{i}", f"S{len(t)}"))]
        + [("ts_len", ">i4"), ("ts", ">i8")]
        + [f for c in VALUE_COLUMNS for f in ((f"{c}_len", ">i4"), (c, ">f8"))]
    )
    rows = np.empty(len(ts), dtype=row)
    rows["fields"] = len(texts) + len(COLUMNS)
    for i, t in enumerate(texts):
        rows[f"h{i}_len"] = len(t)
        rows[f"h{i}"] = t
    rows["ts_len"] = 8
    rows["ts"] = ts
    for i, c in enumerate(VALUE_COLUMNS):
        rows[f"{c}_len"] = 8
        rows[c] = values[:, i]
    return _HEADER + rows.tobytes() + _TRAILER


def _copied_source() -> sa.Select:
    """SELECT :exchange, :symbol, :timeframe, ts, open, ... FROM candles_in."""
    head = [sa.bindparam(c, type_=sa.String) for c in ("exchange", "symbol", "timeframe")]
    return sa.select(*head, *(_copied.c[c] for c in COLUMNS))


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


_COVER = [c.name for c in fetch_coverage.c]


def _cover_upsert(dialect: Any, source: sa.Select | None = None) -> sa.Insert:
    """INSERT .. ON CONFLICT DO UPDATE of fetch_coverage rows: a window fetched again
    takes its new count, time and source."""
    stmt = dialect.insert(fetch_coverage)
    if source is not None:
        stmt = stmt.from_select(_COVER, source)
    return stmt.on_conflict_do_update(
        index_elements=["exchange", "symbol", "timeframe", "start_ts"],
        set_={
            c: stmt.excluded[c] for c in ("end_ts", "candles", "fetched_at", "source", "checksum")
        },
    )


def _lock_series_statement() -> sa.Select:
    """SELECT .. FROM candle_series JOIN unnest(the keys) .. ORDER BY the key FOR UPDATE:
    the rows of the series given, locked in key order, in one statement (an IN list of key
    tuples, a statement per 1,000, took ~0.4 s for 5,010 series; this ~12 ms)."""
    c = candle_series.c
    keys = unnest_rows(candle_series, ["exchange", "symbol", "timeframe"]).subquery()
    on = sa.and_(*(c[n] == keys.c[n] for n in ("exchange", "symbol", "timeframe")))
    return (
        sa.select(c.exchange)
        .join_from(candle_series, keys, on)
        .order_by(c.exchange, c.symbol, c.timeframe)
        .with_for_update(of=candle_series)
    )


_LOCK_SERIES = _lock_series_statement()


def _new_series_statement() -> sa.Insert:
    """INSERT .. SELECT FROM unnest(the keys) ORDER BY the key ON CONFLICT DO NOTHING: a row
    of no candles for each series given that has none yet, so that _LOCK_SERIES has a row
    to lock (a second writer of the same new series waits here for the first to end)."""
    names = ["exchange", "symbol", "timeframe"]
    keys = unnest_rows(candle_series, names).subquery()
    rows = sa.select(*(keys.c[n] for n in names), sa.literal(0)).order_by(
        *(keys.c[n] for n in names)
    )
    insert = postgresql.insert(candle_series).from_select([*names, "candles"], rows)
    return insert.on_conflict_do_nothing()


_NEW_SERIES = _new_series_statement()

# PostgreSQL: each window (bound arrays, as store.bulk) extends the coverage row of its series
# that ends where it starts (the row at or before its start: one index lookup each), is left
# out when that row covers it already (a close given again), or else is inserted
_EXTEND_COVERAGE = sa.text("""
WITH k AS (
    SELECT * FROM unnest(
        CAST(:exchange AS text[]), CAST(:symbol AS text[]), CAST(:timeframe AS text[]),
        CAST(:start_ts AS bigint[]), CAST(:end_ts AS bigint[]), CAST(:candles AS integer[]),
        CAST(:fetched_at AS bigint[]), CAST(:source AS text[]), CAST(:checksum AS text[])
    ) AS k(exchange, symbol, timeframe, start_ts, end_ts, candles, fetched_at, source, checksum)
), prev AS (
    SELECT k.*, f.start_ts AS row_start, f.end_ts >= k.end_ts AS inside,
        f.end_ts = k.start_ts AND f.source IS NOT DISTINCT FROM k.source
        AND f.checksum IS NULL AND k.checksum IS NULL
        -- a row the insert below rewrites stays put: one statement may not change a row twice
        AND again.start_ts IS NULL AS extends
    FROM k CROSS JOIN LATERAL (
        SELECT f.start_ts, f.end_ts, f.source, f.checksum FROM fetch_coverage f
        WHERE f.exchange = k.exchange AND f.symbol = k.symbol AND f.timeframe = k.timeframe
            AND f.start_ts <= k.start_ts
        ORDER BY f.start_ts DESC LIMIT 1
    ) f
    LEFT JOIN k AS again ON again.exchange = k.exchange AND again.symbol = k.symbol
        AND again.timeframe = k.timeframe AND again.start_ts = f.start_ts
), extended AS (
    UPDATE fetch_coverage f SET
        end_ts = p.end_ts, candles = f.candles + p.candles, fetched_at = p.fetched_at
    FROM prev p
    WHERE p.extends AND f.exchange = p.exchange AND f.symbol = p.symbol
        AND f.timeframe = p.timeframe AND f.start_ts = p.row_start
)
INSERT INTO fetch_coverage
    (exchange, symbol, timeframe, start_ts, end_ts, candles, fetched_at, source, checksum)
SELECT k.* FROM k WHERE NOT EXISTS (
    SELECT 1 FROM prev p WHERE p.exchange = k.exchange AND p.symbol = k.symbol
        AND p.timeframe = k.timeframe AND p.start_ts = k.start_ts AND (p.extends OR p.inside)
)
ON CONFLICT (exchange, symbol, timeframe, start_ts) DO UPDATE SET
    end_ts = EXCLUDED.end_ts, candles = EXCLUDED.candles, fetched_at = EXCLUDED.fetched_at,
    source = EXCLUDED.source, checksum = EXCLUDED.checksum
""")

# SQLite (a window at a time, in _extend_coverage): the row of the window's series at or
# before its start; extended by _EXTEND_ROW when it ends where the window starts
_ROW_BEFORE = sa.text("""
SELECT start_ts, end_ts, source, checksum FROM fetch_coverage
WHERE exchange = :exchange AND symbol = :symbol AND timeframe = :timeframe
    AND start_ts <= :start_ts
ORDER BY start_ts DESC LIMIT 1
""")
_EXTEND_ROW = sa.text("""
UPDATE fetch_coverage SET end_ts = :end_ts, candles = candles + :candles, fetched_at = :fetched_at
WHERE exchange = :exchange AND symbol = :symbol AND timeframe = :timeframe AND start_ts = :row
""")


class CandleStore:
    def __init__(self, url: str, *, create: bool = True) -> None:
        url = normalise_url(url)
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._dialect = postgresql if self.dialect == "postgresql" else sqlite
        if self.dialect == "postgresql":
            self._merge_copied = _candle_upsert(postgresql, _copied_source()).returning(
                candles.c.ts
            )
        else:  # compiled once, executed with the driver's own executemany
            upsert = _candle_upsert(sqlite).returning(candles.c.ts)
            self._upsert_sql = str(upsert.compile(dialect=self.engine.dialect, column_keys=_ALL))
        self._bulk = self.dialect == "postgresql"
        if self._bulk:  # many rows as one array per column (store.bulk)
            self._upsert_many = _candle_upsert(postgresql, unnest_rows(candles, _ALL))
            self._cover = _cover_upsert(postgresql, unnest_rows(fetch_coverage, _COVER))
        else:  # executemany
            self._upsert_many = _candle_upsert(sqlite)
            self._cover = _cover_upsert(sqlite)
        self._has_series_table = False
        self.instruments = InstrumentStore(self.engine, self._dialect)
        self.gaps = GapStore(self.engine, self._dialect)
        self.composite = CompositeStore(self.engine)
        self.live = LiveStore(self.engine, self._dialect)
        self.orderbooks = OrderbookStore(self.engine, self._dialect)
        self.alerts = AlertStore(self.engine, self._dialect)
        if create:
            apply_schema(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()

    # -- writes ------------------------------------------------------------------------
    def write_pages(
        self, pages: Sequence[tuple[Series, CandlePage]], new: bool = False
    ) -> dict[Series, np.ndarray]:
        """Upsert pages of candles and record the window each covered, all in one
        transaction (a page is never stored without its coverage, nor the reverse). Returns
        the open times of the rows inserted or changed, per series (a re-fetch of what is
        stored already writes nothing, and says so). ``new``: the windows were never fetched,
        so on PostgreSQL the rows are first COPYed straight into candles (a third of the
        database's work); a row that is there after all falls back to the upsert."""
        by_series: dict[Series, list[CandlePage]] = defaultdict(list)
        for series, page in pages:
            by_series[series].append(page)
        written: dict[Series, np.ndarray] = {}
        with self.engine.begin() as conn:
            self._lock_series(conn, by_series)
            for series in sorted(by_series, key=_head):
                written[series] = self._upsert(conn, series, by_series[series], new)
            self._write_coverage(conn, pages)
        return written

    def write_closed(self, pages: Sequence[tuple[Series, CandlePage]]) -> None:
        """Small pages of many series (the live service: one closed candle each) with their
        coverage, in one transaction of two multi-row statements (write_pages' per-series
        COPY would cost a round trip per series). A candle given twice (a close received
        twice) is written once, the last given: one statement may not change a row twice."""
        latest = {
            (_head(series), t): dict(zip(VALUE_COLUMNS, values, strict=True))
            for series, page in pages
            for t, values in zip(page.ts.tolist(), page.values.tolist(), strict=True)
        }
        rows = [
            dict(zip(KEY_COLUMNS, (*head, t), strict=True), **values)
            for (head, t), values in sorted(latest.items(), key=lambda kv: kv[0])
        ]
        with self.engine.begin() as conn:
            self._lock_series(conn, [series for series, _ in pages])
            if rows:
                conn.execute(self._upsert_many, self._rows(rows))
            self._extend_coverage(conn, pages)

    def _extend_coverage(
        self, conn: sa.Connection, pages: Sequence[tuple[Series, CandlePage]]
    ) -> None:
        """write_closed's coverage: a window that begins where its series' newest coverage
        row ends (the stream's next close; same source, neither an archive file) extends
        that row; others get a row of their own. One row per close would make
        fetch_coverage as large as the candles of every series kept live (~190 bytes each,
        table and key, as a candle) and the gap check read a row per candle."""
        rows = _coverage(pages)
        if self._bulk:
            conn.execute(_EXTEND_COVERAGE, column_arrays(rows))
            return
        for row in rows:  # SQLite (small watchlists): a statement or two per window
            before = conn.execute(_ROW_BEFORE, row).one_or_none()
            if before is not None and before.end_ts >= row["end_ts"]:
                continue  # covered already (a close given again)
            same = before is not None and (before.source, before.checksum) == (row["source"], None)
            if same and before.end_ts == row["start_ts"] and row["checksum"] is None:
                conn.execute(_EXTEND_ROW, {**row, "row": before.start_ts})
            else:
                conn.execute(self._cover, row)

    def _write_coverage(
        self, conn: sa.Connection, pages: Sequence[tuple[Series, CandlePage]]
    ) -> None:
        rows = _coverage(pages)
        conn.execute(self._cover, self._rows(rows))

    def _rows(self, rows: list[dict[str, object]]) -> Any:
        """``rows`` as the parameters of _upsert_many / _cover."""
        return column_arrays(rows) if self._bulk else rows

    def _lock_series(self, conn: sa.Connection, many: Iterable[Series]) -> None:
        """PostgreSQL: the series' candle_series rows locked in key order, first thing in a
        write's transaction. The triggers of sql/011 and sql/014 lock them only after each
        statement, so a transaction of one statement for many series (the live writer)
        took every candle first and the series rows after, while one of a statement per
        series (a fill) alternated the two: writing the same newest candle, each waited for
        the other (a deadlock, seen at 15,000 streams). Taken first, in one order, a second
        writer of a series waits before it writes anything. A series without a row gets one
        of no candles first (_NEW_SERIES): two writers of the same new series (an archive's
        daily files written concurrently) deadlocked over the rows their triggers created
        in candle_series and candle_months."""
        if self.dialect != "postgresql" or not self._series_table(conn):
            return
        names = ("exchange", "symbol", "timeframe")
        keys = [dict(zip(names, head, strict=True)) for head in {_head(s) for s in many}]
        if keys:
            conn.execute(_NEW_SERIES, column_arrays(keys))
            conn.execute(_LOCK_SERIES, column_arrays(keys))

    def _series_table(self, conn: sa.Connection) -> bool:
        """candle_series exists (a store from before sql/010 writes until it is migrated;
        once seen, it is not looked for again)."""
        if not self._has_series_table:
            self._has_series_table = sa.inspect(conn).has_table("candle_series")
        return self._has_series_table

    def write_page(self, series: Series, page: CandlePage) -> int:
        """One page with its coverage (see write_pages); the rows inserted or changed."""
        return len(self.write_pages([(series, page)]).get(series, ()))

    def _upsert(
        self, conn: sa.Connection, series: Series, pages: list[CandlePage], new: bool
    ) -> np.ndarray:
        ts = np.concatenate([p.ts for p in pages])
        if not len(ts):
            return ts
        values = np.concatenate([p.values for p in pages])
        if self.dialect == "postgresql" and new:
            try:
                with conn.begin_nested():  # a savepoint: a conflict undoes this COPY only
                    raw = conn.connection.driver_connection
                    with raw.cursor() as cur, cur.copy(_COPY_NEW) as copy:
                        copy.write(copy_binary(ts, values, head=_head(series)))
                    return ts
            except (sa.exc.IntegrityError, psycopg.errors.UniqueViolation):
                pass  # some of these candles are stored already: merge them
        if self.dialect == "postgresql":
            # binary COPY of the series' rows into a temporary table (built with numpy, no
            # per-row Python), then one INSERT .. SELECT .. ON CONFLICT into candles
            conn.exec_driver_sql(_CANDLES_IN)
            raw = conn.connection.driver_connection  # psycopg 3, inside this transaction
            with raw.cursor() as cur, cur.copy(_COPY_IN) as copy:
                copy.write(copy_binary(ts, values))
            written = conn.execute(self._merge_copied, series.params()).scalars().all()
            conn.exec_driver_sql("TRUNCATE candles_in")  # the next series of this batch
            return np.asarray(written, dtype=np.int64)
        # SQLite: the driver's own statement per row, each saying whether it wrote
        rows = zip(ts.tolist(), *values.T.tolist(), strict=True)
        cursor = conn.connection.driver_connection.cursor()
        written = []
        for row in rows:
            cursor.execute(self._upsert_sql, _head(series) + row)
            written += cursor.fetchall()
        cursor.close()
        return np.asarray([w[0] for w in written], dtype=np.int64)

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

    def first_ts(self, series: Series) -> int | None:
        """The series' oldest stored candle (one index lookup)."""
        query = _edge(series, candles.c.ts.asc())
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else int(found)

    def last_ts(self, series: Series) -> int | None:
        return self.last_ts_of([series])[series]

    def last_ts_of(self, many: list[Series]) -> dict[Series, int | None]:
        """Each series' newest stored candle: one statement of index lookups per 100 series
        (a GROUP BY would read every row of them). Each is an explicit ``ORDER BY ts DESC
        LIMIT 1``: PostgreSQL plans ``max(ts)`` that way only when its statistics say the
        series is large; with statistics taken while it was empty (a new store, autovacuum
        off) it read every row of the series: 0.29 s for a year of 1m instead of ~0.1 ms."""
        out: dict[Series, int | None] = {}
        if not many:  # (the live writer asks on every write; mostly for none)
            return out
        with self.engine.connect() as conn:
            for i in range(0, len(many), 100):
                chunk = many[i : i + 100]
                newest = [_edge(s, candles.c.ts.desc()).scalar_subquery() for s in chunk]
                out |= dict(zip(chunk, conn.execute(sa.select(*newest)).one(), strict=True))
        return out

    def by_source(self, exchange: str) -> dict[tuple[str, str], dict[str, int]]:
        """(symbol, timeframe) -> source ("archive": the exchange's archive files, "trades":
        built from its trades) -> candles written from it (their coverage's count), for the
        series that have any not from the candle endpoint."""
        c = fetch_coverage.c
        query = (
            sa.select(c.symbol, c.timeframe, c.source, sa.func.sum(c.candles))
            .where(c.exchange == exchange, c.source.in_(("archive", "trades")))
            .group_by(c.symbol, c.timeframe, c.source)
        )
        out: dict[tuple[str, str], dict[str, int]] = {}
        with self.engine.connect() as conn:
            for s, tf, source, n in conn.execute(query):
                out.setdefault((s, tf), {})[source] = int(n)
        return out

    def aggregate(self, series: Series, span_ms: int, start: int, end: int) -> pd.DataFrame:
        """``series``' candles in [start, end) aggregated per span of ``span_ms`` (epoch-
        aligned), in SQL: per span its open time (ts), first open, highest high, lowest
        low, last close, summed volume and how many candles made it (``minutes``).

        PostgreSQL groups the spans (the first open and last close by ordered ``array_agg``):
        a year of 1m into 5m in 0.30 s against 1.07 s for the window functions below (into
        1d: 0.28 against 0.50 s; psql, this machine). SQLite has no ordered array
        aggregate: one ordered pass with window functions, no join for the planner to get
        wrong."""
        c = candles.c
        bucket = c.ts - c.ts % span_ms
        where = (series.where(candles), c.ts >= start, c.ts < end)
        columns = ["ts", "open", "high", "low", "close", "volume", "minutes"]
        if self.dialect == "postgresql":
            query = (
                sa.select(
                    bucket.label("ts"),
                    postgresql.array_agg(postgresql.aggregate_order_by(c.open, c.ts))[1],
                    sa.func.max(c.high),
                    sa.func.min(c.low),
                    postgresql.array_agg(postgresql.aggregate_order_by(c.close, c.ts.desc()))[1],
                    sa.func.sum(c.volume),
                    sa.func.count(),
                )
                .where(*where)
                .group_by(bucket)
                .order_by(bucket)
            )
        else:
            span = {"partition_by": bucket}
            ordered = {"partition_by": bucket, "order_by": c.ts}
            rows_ = (
                sa.select(
                    bucket.label("ts"),
                    sa.func.first_value(c.open).over(**ordered).label("open"),
                    sa.func.max(c.high).over(**span).label("high"),
                    sa.func.min(c.low).over(**span).label("low"),
                    c.close,
                    sa.func.sum(c.volume).over(**span).label("volume"),
                    sa.func.count().over(**span).label("minutes"),
                    sa.func.row_number()
                    .over(partition_by=bucket, order_by=c.ts.desc())
                    .label("nth"),
                )
                .where(*where)
                .subquery()
            )
            query = (
                sa.select(*(rows_.c[name] for name in columns))
                .where(rows_.c.nth == 1)  # each span's last candle: its close is the span's
                .order_by(rows_.c.ts)
            )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return pd.DataFrame(rows, columns=columns).astype({"ts": "int64", "minutes": "int64"})

    def read_candles(self, series: Series, start: int, end: int) -> pd.DataFrame:
        query = (
            sa.select(*(candles.c[c] for c in COLUMNS))
            .where(series.where(candles), candles.c.ts >= start, candles.c.ts < end)
            .order_by(candles.c.ts)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return pd.DataFrame(rows, columns=list(COLUMNS)).astype({"ts": "int64"})


def _edge(series: Series, order: sa.UnaryExpression[Any]) -> sa.Select[tuple[int]]:
    """The open time of ``series``' first candle in ``order``: one index lookup."""
    return sa.select(candles.c.ts).where(series.where(candles)).order_by(order).limit(1)


def _coverage(pages: Sequence[tuple[Series, CandlePage]]) -> list[dict[str, object]]:
    """fetch_coverage rows of ``pages``: each page's window, its candles, fetched now, and
    where from."""
    now = int(time.time() * 1000)
    rows = {}  # a window given twice: the last (one statement may not change a row twice)
    for series, p in pages:
        window = {"start_ts": p.start_ms, "end_ts": p.end_ms, "candles": len(p)}
        source = {"source": p.source, "checksum": p.checksum}
        rows[(series, p.start_ms)] = series.params(**window, fetched_at=now, **source)
    return list(rows.values())


def _sqlite_pragmas(dbapi_conn: Any, _: object) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def series_stats(store: CandleStore, exchange: str) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(symbol, timeframe) -> (rows, first ts, last ts) of an exchange's stored candles: one
    row per series of ``candle_series`` (the database keeps it on every insert and delete,
    sql/010-012), not a count of the candle table."""
    c = candle_series.c
    query = sa.select(c.symbol, c.timeframe, c.candles, c.first_ts, c.last_ts).where(
        c.exchange == exchange, c.candles > 0
    )
    with store.engine.connect() as conn:
        return {(s, tf): (int(n), int(lo), int(hi)) for s, tf, n, lo, hi in conn.execute(query)}


#: Candles the embedded SQLite store serves well (its single writer, its per-row upserts and
#: triggers, the gap check's scans: BENCHMARKS.md "The candle store at scale"); a watchlist
#: that stores or expects more belongs on PostgreSQL, and the status report says so.
SQLITE_MAX_CANDLES = 20_000_000


def stored_candles(store: CandleStore) -> int:
    """Candles stored, all series: the sum of ``candle_series`` (not a count of candles)."""
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.sum(candle_series.c.candles))).scalar() or 0)


def store_advice(dialect: str, stored: int, expected: int) -> str | None:
    """What to tell a user whose watchlist outgrows the embedded SQLite store; None if not."""
    if dialect != "sqlite" or max(stored, expected) <= SQLITE_MAX_CANDLES:
        return None
    return (
        f"the SQLite store holds {stored:,} candles and the watchlist expects {expected:,}; "
        f"SQLite serves up to {SQLITE_MAX_CANDLES:,} well: use PostgreSQL "
        "(DATABASE_URL, docs/DEPLOYMENT.md)"
    )


def ping(store: CandleStore) -> float:
    """Seconds for a round trip to the database (raises if it is unreachable)."""
    started = time.perf_counter()
    with store.engine.connect() as conn:
        conn.execute(sa.select(1))
    return time.perf_counter() - started


def _head(series: Series) -> tuple[str, str, str]:
    return (series.exchange, series.symbol, series.timeframe)
