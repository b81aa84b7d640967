"""The live service's state: one heartbeat row per exchange, one row per streamed market."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from market_data.domain.timeframes import Timeframe
from market_data.store.bulk import column_arrays, unnest_rows
from market_data.store.series import Series
from market_data.store.tables import live_service, live_streams


@dataclass(frozen=True)
class ServiceState:
    exchange: str
    host: str
    pid: int
    started_at: int
    heartbeat_at: int
    connections: int
    connected: int
    streams: int
    exchange_now: int | None
    reconnects: int
    closes_stored: int
    latency_p50_ms: int | None
    latency_p99_ms: int | None
    last_error: str | None

    def healthy(self, stale_after_s: int, now_ms: int | None = None) -> bool:
        """Beating recently, with every wanted connection open."""
        now_ms = now_ms or int(time.time() * 1000)
        return (
            now_ms - self.heartbeat_at <= stale_after_s * 1000
            and self.connections > 0
            and self.connected == self.connections
        )


@dataclass(frozen=True)
class StreamState:
    symbol: str
    timeframe: str
    subscribed_at: int
    last_close_ts: int | None
    stored_at: int | None
    lag_ms: int | None
    #: the connection carrying it open with it subscribed (None: not said)
    connected: bool | None = None

    @property
    def key(self) -> str:
        return f"{self.symbol}:{self.timeframe}"


_STREAM_COLUMNS = ("subscribed_at", "last_close_ts", "stored_at", "lag_ms", "connected")


def _row_changed(before: tuple[Any, ...] | None, after: tuple[Any, ...]) -> bool:
    """A stream's row differs in more than its lag (which ``streams`` reads afresh)."""
    return before is None or before[:3] != after[:3] or before[4] != after[4]


_KEY = ("exchange", "symbol", "timeframe")


class LiveStore:
    def __init__(self, engine: sa.Engine, dialect: Any) -> None:
        self.engine, self._dialect = engine, dialect
        #: per exchange, the stream rows this process' last heartbeat wrote
        self._written: dict[str, dict[Series, tuple[Any, ...]]] = {}
        #: PostgreSQL: a beat's changed and gone rows in one statement each (store.bulk)
        self._bulk = dialect is postgresql
        c = live_streams.c
        insert = dialect.insert(live_streams)
        if self._bulk:
            names = [*_KEY, *_STREAM_COLUMNS]
            insert = insert.from_select(names, unnest_rows(live_streams, names))
            gone = unnest_rows(live_streams, _KEY).subquery()
            key = sa.tuple_(*(c[k] for k in _KEY))
            self._delete = sa.delete(live_streams).where(
                key.in_(sa.select(*(gone.c[k] for k in _KEY)))
            )
        else:
            self._delete = sa.delete(live_streams).where(*(c[k] == sa.bindparam(k) for k in _KEY))
        self._upsert = insert.on_conflict_do_update(
            index_elements=list(_KEY), set_={k: insert.excluded[k] for k in _STREAM_COLUMNS}
        )

    def _rows(self, rows: list[dict[str, Any]]) -> Any:
        """``rows`` as the parameters of _upsert / _delete."""
        return column_arrays(rows) if self._bulk else rows

    def beat(
        self,
        state: Mapping[str, Any],
        streams: Iterable[tuple[Series, int, int | None, int | None, int | None, bool]],
    ) -> None:
        """The service's heartbeat for one exchange (``state``: live_service's columns) and
        its markets (series, subscribed_at, last_close_ts, stored_at, lag_ms, connected);
        markets no longer streamed are removed.

        Only what changed since this process' last beat is written (the first beat replaces
        the exchange's rows: a previous process may have left others): at 15,000 streams
        rewriting every row each beat was most of the service's database work, while a
        beat changes the rows of the candles closed since the last one. A row's lag is
        as of its writing; ``streams`` reads it as of the newest heartbeat."""
        insert = self._dialect.insert(live_service).values(**state)
        service = insert.on_conflict_do_update(
            index_elements=["exchange"],
            set_={k: insert.excluded[k] for k in state if k != "exchange"},
        )
        exchange = state["exchange"]
        written = self._written.get(exchange)
        now = {s: (sub, last, at, lag, up) for s, sub, last, at, lag, up in streams}
        changed = [
            s.params(subscribed_at=sub, last_close_ts=last, stored_at=at, lag_ms=lag, connected=up)
            for s, (sub, last, at, lag, up) in now.items()
            if written is None or _row_changed(written.get(s), (sub, last, at, lag, up))
        ]
        gone = [s.params() for s in written or () if s not in now]
        with self.engine.begin() as conn:
            conn.execute(service)
            if written is None:
                c = live_streams.c
                conn.execute(sa.delete(live_streams).where(c.exchange == exchange))
            elif gone:
                conn.execute(self._delete, self._rows(gone))
            if changed:
                conn.execute(self._upsert, self._rows(changed))
        self._written[exchange] = now

    def service(self, exchange: str) -> ServiceState | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(live_service).where(live_service.c.exchange == exchange)
            ).first()
        return None if row is None else ServiceState(**row._asdict())

    def streams(self, exchange: str) -> dict[str, StreamState]:
        """The streamed markets of ``exchange`` by partition key (SYMBOL:TIMEFRAME)."""
        c = live_streams.c
        query = sa.select(
            c.symbol,
            c.timeframe,
            c.subscribed_at,
            c.last_close_ts,
            c.stored_at,
            c.lag_ms,
            c.connected,
        ).where(c.exchange == exchange)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            clock = conn.execute(
                sa.select(live_service.c.exchange_now).where(live_service.c.exchange == exchange)
            ).scalar()
        states = []
        for symbol, timeframe, sub, last, at, lag, up in rows:
            if clock is not None and last is not None:  # the lag as of the newest heartbeat
                lag = clock - (last + Timeframe.parse(timeframe).ms)
            states.append(StreamState(symbol, timeframe, sub, last, at, lag, up))
        return {s.key: s for s in states}

    def stop(self, exchange: str) -> None:
        """The service stopped: nothing is connected any more (its rows stay, for history)."""
        self._written.pop(exchange, None)  # a start again rewrites them all
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(live_service)
                .where(live_service.c.exchange == exchange)
                .values(connected=0, heartbeat_at=int(time.time() * 1000))
            )


#: a streamed market is current when its newest candle closed at most this long before the
#: exchange's clock, beyond one timeframe (the next close is not due yet)
GRACE_MS = 10_000


@dataclass(frozen=True)
class LiveHealth:
    """What the live service says of one exchange, read from its heartbeat."""

    service: ServiceState | None
    streams: dict[str, StreamState]
    stale_after_s: int

    @property
    def healthy(self) -> bool:
        return self.service is not None and self.service.healthy(self.stale_after_s)

    @property
    def beating(self) -> bool:
        """The service is running (its heartbeat is recent), whatever its connections."""
        s = self.service
        return s is not None and time.time() * 1000 - s.heartbeat_at <= self.stale_after_s * 1000

    def down(self) -> list[str]:
        """Keys of the streamed markets whose connection is not open (all, if the service is
        not beating)."""
        return sorted(
            k for k, s in self.streams.items() if not self.beating or s.connected is False
        )

    def current(self, key: str, tf_ms: int) -> bool:
        """The market is streamed and its newest closed candle is stored."""
        s = self.streams.get(key)
        return s is not None and s.lag_ms is not None and s.lag_ms <= tf_ms + GRACE_MS

    def covers(self, keys: Mapping[str, int]) -> bool:
        """Healthy, and every market (key -> timeframe ms) current: REST has nothing to add."""
        return bool(keys) and self.healthy and all(self.current(k, tf) for k, tf in keys.items())

    def behind(self, keys: Mapping[str, int]) -> list[str]:
        return sorted(k for k, tf in keys.items() if k in self.streams and not self.current(k, tf))


def live_health(store: LiveStore, exchange: str, stale_after_s: int) -> LiveHealth:
    return LiveHealth(store.service(exchange), store.streams(exchange), stale_after_s)
