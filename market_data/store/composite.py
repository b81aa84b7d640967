"""Composite candles, computed set-based in SQL from the candle store: per timestamp the
volume-weighted open/high/low/close of the sources that have it, their summed volume, the
plain extremes and the list of sources. One upsert per partition (plus a delete of rows a
raised minimum no longer allows), idempotent: a rerun over the same candles changes nothing.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from market_data.domain.composite import CompositeMarket, Source
from market_data.store.tables import COMPOSITE_VALUES, candles, composite_candles

_PRICES = ("open", "high", "low", "close")


@dataclass(frozen=True)
class CompositeFigures:
    """One partition's composite: timestamps emitted, and those below the minimum."""

    emitted: int
    below_minimum: int
    rows_changed: int
    first_ts: int | None
    last_ts: int | None


@dataclass(frozen=True)
class Divergence:
    exchange: str
    ts: int
    close: float
    composite_close: float

    @property
    def pct(self) -> float:
        return (self.close / self.composite_close - 1.0) * 100.0


def _of_sources(sources: Sequence[Source]) -> sa.ColumnElement[bool]:
    c = candles.c
    return sa.or_(*(sa.and_(c.exchange == s.exchange, c.symbol == s.symbol) for s in sources))


def _in_range(market: CompositeMarket, lo: int, hi: int) -> list[sa.ColumnElement[bool]]:
    c = candles.c
    return [c.timeframe == market.timeframe.code, c.ts >= lo, c.ts < hi]


def _grouped(market: CompositeMarket, sources: Sequence[Source], lo: int, hi: int) -> sa.Select:
    """Per timestamp of [lo, hi): the composite row of the sources that have it, and n."""
    c = candles.c
    volume = sa.func.sum(c.volume)

    def vwap(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.case(
            (volume > 0, sa.func.sum(column * c.volume) / volume), else_=sa.func.avg(column)
        )

    listed = [  # 'binance,' when binance has the timestamp, '' otherwise; in name order
        sa.func.coalesce(sa.func.max(sa.case((c.exchange == s.exchange, sa.literal(f"{s.exchange},")))), "")
        for s in sorted(sources, key=lambda s: s.exchange)
    ]  # fmt: skip
    return (
        sa.select(
            sa.literal(market.symbol).label("symbol"),
            sa.literal(market.timeframe.code).label("timeframe"),
            c.ts,
            *(vwap(c[p]).label(p) for p in _PRICES),
            volume.label("volume"),
            sa.func.max(c.high).label("max_high"),
            sa.func.min(c.low).label("min_low"),
            sa.func.count().label("source_count"),
            sa.func.rtrim(functools.reduce(operator.add, listed), ",").label("sources"),
        )
        .where(_of_sources(sources), *_in_range(market, lo, hi))
        .group_by(c.ts)
    )


class CompositeStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._dialect = postgresql if engine.dialect.name == "postgresql" else sqlite

    def build(
        self, market: CompositeMarket, sources: Sequence[Source], lo: int, hi: int, needed: int
    ) -> CompositeFigures:
        """The composite of [lo, hi): timestamps with at least ``needed`` sources upserted."""
        k = composite_candles.c
        where = [
            k.symbol == market.symbol,
            k.timeframe == market.timeframe.code,
            k.ts >= lo,
            k.ts < hi,
        ]
        changed = 0
        with self.engine.begin() as conn:
            if sources:
                if self._dialect is postgresql:  # one scan order: float sums repeat exactly
                    conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
                grouped = _grouped(market, sources, lo, hi)
                stmt = self._dialect.insert(composite_candles).from_select(
                    ["symbol", "timeframe", "ts", *COMPOSITE_VALUES],
                    grouped.having(sa.func.count() >= needed),
                )
                stmt = stmt.on_conflict_do_update(
                    index_elements=["symbol", "timeframe", "ts"],
                    set_={col: stmt.excluded[col] for col in COMPOSITE_VALUES},
                    where=sa.or_(*(k[col].is_distinct_from(stmt.excluded[col]) for col in COMPOSITE_VALUES)),
                ).execution_options(preserve_rowcount=True)  # fmt: skip
                changed = conn.execute(stmt).rowcount
            # a raised minimum (or a source gone) leaves no row it no longer allows
            changed += conn.execute(
                sa.delete(composite_candles).where(*where, k.source_count < needed)
            ).rowcount
            emitted, first, last = conn.execute(
                sa.select(sa.func.count(), sa.func.min(k.ts), sa.func.max(k.ts)).where(*where)
            ).one()
            below = 0
            if sources:  # timestamps some source has, too few of them
                c = candles.c
                short = (
                    sa.select(c.ts).where(_of_sources(sources), *_in_range(market, lo, hi))
                    .group_by(c.ts).having(sa.func.count() < needed).subquery()
                )  # fmt: skip
                below = conn.execute(sa.select(sa.func.count()).select_from(short)).scalar_one()
        return CompositeFigures(int(emitted), int(below), int(changed), first, last)

    def read(self, market: CompositeMarket, lo: int, hi: int) -> list[dict[str, Any]]:
        k = composite_candles.c
        query = (
            sa.select(k.ts, *(k[col] for col in COMPOSITE_VALUES))
            .where(k.symbol == market.symbol, k.timeframe == market.timeframe.code, k.ts >= lo, k.ts < hi)
            .order_by(k.ts)
        )  # fmt: skip
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def divergences(
        self, market: CompositeMarket, sources: Sequence[Source], lo: int, hi: int, pct: float
    ) -> list[Divergence]:
        """Source closes more than ``pct`` percent from the composite close, largest first."""
        c, k = candles.c, composite_candles.c
        gap = sa.func.abs(c.close - k.close)
        query = (
            sa.select(c.exchange, c.ts, c.close, k.close)
            .join_from(candles, composite_candles, k.ts == c.ts)
            # the composite's own key spelled out, so each probe is one primary-key lookup
            .where(_of_sources(sources), *_in_range(market, lo, hi), k.symbol == market.symbol,
                   k.timeframe == market.timeframe.code, k.ts >= lo, k.ts < hi,
                   gap > sa.func.abs(k.close) * (pct / 100.0))
            .order_by((gap / sa.func.abs(k.close)).desc(), c.ts, c.exchange)
        )  # fmt: skip
        if not sources:
            return []
        with self.engine.begin() as conn:
            if self._dialect is postgresql:
                # a month of a few sources against as many composite rows: a hash join. With
                # the statistics of freshly written tables (one row, says the planner) it
                # would pick a nested loop over the whole range, minutes instead of 0.1 s.
                conn.exec_driver_sql("SET LOCAL enable_nestloop = off")
            return [Divergence(e, int(t), float(a), float(b)) for e, t, a, b in conn.execute(query)]

    def newest(
        self, market: CompositeMarket, sources: Sequence[Source], lo: int, hi: int
    ) -> dict[str, int | None]:
        """Each source's newest candle in [lo, hi) (None: it has none there)."""
        c = candles.c
        found: dict[str, int | None] = {s.exchange: None for s in sources}
        if not sources:
            return found
        query = (
            sa.select(c.exchange, sa.func.max(c.ts))
            .where(_of_sources(sources), *_in_range(market, lo, hi))
            .group_by(c.exchange)
        )
        with self.engine.connect() as conn:
            found.update({e: int(t) for e, t in conn.execute(query)})
        return found
