"""Gap detection over stored candles (a window-function query over the months that are not
whole) and the candle_gaps table."""

from __future__ import annotations

import bisect
import itertools
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from market_data.domain.gaps import (
    EMPTY,
    EXCHANGE_EMPTY,
    OPEN,
    REPAIRED,
    GapCounts,
    Hole,
    classify,
    holes_from_breaks,
    joined,
    not_whole,
)
from market_data.domain.intervals import merge_intervals, subtract_intervals
from market_data.domain.timeframes import Timeframe
from market_data.store.series import Series
from market_data.store.tables import (
    candle_gaps,
    candle_months,
    candles,
    exchange_clock,
    fetch_coverage,
)

_MONTH_MS = 32 * 86_400_000  # more than a month: the months around a range
_SETTLED_MAX = 256  # settled holes a gap check looks at (one statement of ranges)
_MONTH_MIN_MS = 28 * 86_400_000  # shorter ranges hold no whole month


@dataclass(frozen=True)
class GapRow:
    start: int
    end: int
    kind: str
    status: str
    attempts: int
    last_attempt_at: int | None


class GapStore:
    def __init__(self, engine: sa.Engine, dialect: Any) -> None:
        self.engine, self._dialect = engine, dialect

    def save_clock(self, exchange: str, now_ms: int) -> None:
        """Remember the exchange's clock as a run read it (never moving it back)."""
        values = {"exchange": exchange, "now_ms": now_ms, "read_at": int(time.time() * 1000)}
        stmt = self._dialect.insert(exchange_clock).values(**values)
        newest = sa.case(
            (stmt.excluded.now_ms > exchange_clock.c.now_ms, stmt.excluded.now_ms),
            else_=exchange_clock.c.now_ms,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["exchange"], set_={"now_ms": newest, "read_at": stmt.excluded.read_at}
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def clock(self, exchange: str) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(exchange_clock.c.now_ms).where(exchange_clock.c.exchange == exchange)
            ).scalar()

    def find(self, series: Series, tf_ms: int, lo: int, hi: int) -> list[Hole]:
        """Holes of the series in [lo, hi) (a window where candles are expected), classified
        by fetch coverage. In a range of a month or more, months whose candles are all
        stored but those of its settled holes (candle_months, kept by the database;
        candle_gaps' exchange_empty rows with no candle in them) are not read: their holes
        are the settled ones. The cost follows the months that changed, not the history's
        length; a shorter range (a freshness run's tail) is read as it is, without the two
        lookups."""
        if hi - lo < _MONTH_MIN_MS:  # no month to skip (a freshness run's tail, a repair)
            return self._find(series, tf_ms, lo, hi) if lo < hi else []
        m = candle_months.c
        counted = sa.select(m.month_ts, m.candles).where(
            series.where(candle_months), m.month_ts > lo - _MONTH_MS, m.month_ts < hi
        )
        with self.engine.connect() as conn:
            stored = {int(t): int(n) for t, n in conn.execute(counted)}
        settled = self._settled(series, lo - _MONTH_MS, hi + _MONTH_MS)
        parts = not_whole(lo, hi, tf_ms, stored, settled)
        holes = [h for part in parts for h in self._find(series, tf_ms, *part)]
        for a, b in settled:  # a settled hole's span in the months not read
            for x, y in subtract_intervals(max(a, lo), min(b, hi), parts):
                holes.append(Hole(x, y, EMPTY))
        return joined(holes)

    def _settled(self, series: Series, lo: int, hi: int) -> list[tuple[int, int]]:
        """The series' exchange_empty gaps touching [lo, hi) that hold no candle (none has
        come since they were confirmed), up to _SETTLED_MAX of them (past that, none: the
        months are read, as an illiquid market's would be anyway)."""
        g, c = candle_gaps.c, candles.c
        query = sa.select(g.gap_start, g.gap_end).where(
            series.where(candle_gaps), g.status == EXCHANGE_EMPTY, g.gap_start < hi, g.gap_end > lo
        )
        with self.engine.connect() as conn:
            gaps = [(int(a), int(b)) for a, b in conn.execute(query.limit(_SETTLED_MAX + 1))]
            if not gaps or len(gaps) > _SETTLED_MAX:
                return []
            # the series in each branch: a range of the primary key each (SQLite cannot use
            # the key for an OR of ts ranges alone, and read the whole series)
            ranges = (sa.and_(series.where(candles), c.ts >= a, c.ts < b) for a, b in gaps)
            found = conn.execute(sa.select(c.ts).where(sa.or_(*ranges))).scalars()
            taken = sorted(int(t) for t in found)
        return [
            (a, b) for a, b in gaps if bisect.bisect_left(taken, a) == bisect.bisect_left(taken, b)
        ]

    def _find(self, series: Series, tf_ms: int, lo: int, hi: int) -> list[Hole]:
        """find's query over [lo, hi): the stored candles' breaks, edges and coverage."""
        c = candles.c
        ordered = (
            sa.select(c.ts, sa.func.lead(c.ts).over(order_by=c.ts).label("next_ts"))
            .where(series.where(candles), c.ts >= lo, c.ts < hi)
            .subquery()
        )
        breaks_q = sa.select(ordered.c.ts, ordered.c.next_ts).where(
            ordered.c.next_ts - ordered.c.ts > tf_ms
        )
        edges_q = sa.select(sa.func.min(c.ts), sa.func.max(c.ts)).where(
            series.where(candles), c.ts >= lo, c.ts < hi
        )
        cov = fetch_coverage.c
        cov_q = sa.select(cov.start_ts, cov.end_ts).where(
            series.where(fetch_coverage), cov.end_ts > lo, cov.start_ts < hi
        )
        with self.engine.connect() as conn:
            first, last = conn.execute(edges_q).one()
            breaks = [(int(a), int(b)) for a, b in conn.execute(breaks_q)]
            covered = merge_intervals((int(s), int(e)) for s, e in conn.execute(cov_q))
        return classify(holes_from_breaks(lo, hi, tf_ms, first, last, breaks), covered)

    def record(
        self, series: Series, lo: int, hi: int, holes: list[Hole], max_attempts: int
    ) -> list[GapRow]:
        """Make candle_gaps in [lo, hi) match ``holes``: new ones opened, vanished ones marked
        repaired, empty ones confirmed ``max_attempts`` times marked exchange_empty. Returns
        the rows now open or exchange_empty there."""
        now = int(time.time() * 1000)
        g = candle_gaps.c
        where = sa.and_(series.where(candle_gaps), g.gap_start >= lo, g.gap_start < hi)
        with self.engine.begin() as conn:
            before = {
                r.gap_start: r
                for r in conn.execute(sa.select(candle_gaps).where(where, g.status != REPAIRED))
            }
            kept = {h.start for h in holes}
            vanished = [s for s in before if s not in kept]
            if vanished:
                conn.execute(
                    sa.update(candle_gaps)
                    .where(where, g.gap_start.in_(vanished))
                    .values(status=REPAIRED, repaired_at=now)
                )
            ordered = sorted(before.values(), key=lambda r: r.gap_start)
            starts = [r.gap_start for r in ordered]
            rows, changed = [], []
            for h in holes:
                # Attempts carry over from the earlier rows this hole overlaps (sorted, disjoint).
                overlapping = []
                j = bisect.bisect_left(starts, h.end) - 1
                while j >= 0 and ordered[j].gap_end > h.start:
                    overlapping.append(ordered[j])
                    j -= 1
                attempts = max((r.attempts for r in overlapping), default=0)
                last_at = max((r.last_attempt_at or 0 for r in overlapping), default=0) or None
                status = EXCHANGE_EMPTY if h.kind == EMPTY and attempts >= max_attempts else OPEN
                old = before.get(h.start)
                rows.append(GapRow(h.start, h.end, h.kind, status, attempts, last_at))
                if old is not None and (old.gap_end, old.kind, old.status, old.attempts) == (
                    h.end,
                    h.kind,
                    status,
                    attempts,
                ):
                    continue  # unchanged: nothing to write
                changed.append(series.params(
                    gap_start=h.start, gap_end=h.end, kind=h.kind,
                    detected_at=old.detected_at if old else now, repaired_at=None, status=status,
                    attempts=attempts, last_attempt_at=last_at,
                ))  # fmt: skip
            if changed:
                stmt = self._dialect.insert(candle_gaps)
                update = [
                    k
                    for k in changed[0]
                    if k not in ("exchange", "symbol", "timeframe", "gap_start")
                ]
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["exchange", "symbol", "timeframe", "gap_start"],
                        set_={k: stmt.excluded[k] for k in update},
                    ),
                    changed,
                )
        return rows

    def recorded(self, series: Series, lo: int, hi: int) -> list[GapRow]:
        """The series' rows open or exchange_empty that touch [lo, hi), in time order."""
        g = candle_gaps.c
        q = sa.select(candle_gaps).where(
            series.where(candle_gaps), g.status != REPAIRED, g.gap_start < hi, g.gap_end > lo
        )
        with self.engine.connect() as conn:
            return [
                GapRow(r.gap_start, r.gap_end, r.kind, r.status, r.attempts, r.last_attempt_at)
                for r in conn.execute(q.order_by(g.gap_start))
            ]

    def open_gaps(self, series: Series | None = None) -> list[dict[str, Any]]:
        """Open gaps (of one series, or all), in series and time order."""
        g = candle_gaps.c
        q = sa.select(candle_gaps).where(g.status == OPEN)
        if series is not None:
            q = q.where(series.where(candle_gaps))
        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(
                    q.order_by(g.exchange, g.symbol, g.timeframe, g.gap_start)
                ).mappings()
            ]

    def spent(self, kind: str, min_attempts: int) -> list[dict[str, Any]]:
        """Open gaps of ``kind`` with at least ``min_attempts`` repair attempts (the alerts'
        gaps: their repairs are used up)."""
        g = candle_gaps.c
        q = sa.select(candle_gaps).where(
            g.status == OPEN, g.kind == kind, g.attempts >= min_attempts
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q.order_by(g.exchange, g.symbol)).mappings()]

    def all_gaps(
        self,
        only_open: bool = False,
        limit: int = 1000,
        *,
        status: str | None = None,
        exchange: str | None = None,
        symbols: list[str] | None = None,
        timeframe: str | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of candle_gaps, in series and time order, optionally only those of a status,
        an exchange, some symbols (standard names) or a timeframe."""
        g = candle_gaps.c
        q = sa.select(candle_gaps)
        if only_open or status is not None:
            q = q.where(g.status == (status or OPEN))
        if exchange is not None:
            q = q.where(g.exchange == exchange)
        if symbols is not None:
            q = q.where(g.symbol.in_(symbols))
        if timeframe is not None:
            q = q.where(g.timeframe == timeframe)
        q = q.order_by(g.exchange, g.symbol, g.timeframe, g.gap_start).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def totals(self, exchange: str) -> dict[tuple[str, str], GapCounts]:
        """(symbol, timeframe) -> its open and exchange-empty gaps, counted, of an exchange."""
        g = candle_gaps.c
        query = (
            sa.select(g.symbol, g.timeframe, g.gap_start, g.gap_end, g.kind, g.status)
            .where(g.exchange == exchange, g.status != REPAIRED)
            .order_by(g.symbol, g.timeframe)
        )
        out: dict[tuple[str, str], GapCounts] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        for (symbol, tf), group in itertools.groupby(rows, key=lambda r: (r[0], r[1])):
            out[(symbol, tf)] = GapCounts.of(
                ((r[2], r[3], r[4], r[5]) for r in group), Timeframe.parse(tf).ms
            )
        return out

    def mark_attempt(self, series: Series, starts: list[int]) -> None:
        if not starts:
            return
        g = candle_gaps.c
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(candle_gaps)
                .where(series.where(candle_gaps), g.gap_start.in_(starts))
                .values(attempts=g.attempts + 1, last_attempt_at=int(time.time() * 1000))
            )
