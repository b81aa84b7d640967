"""Order book snapshots: one row per level, exact prices; a snapshot is stored once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from market_data.domain.orderbooks import Level, OrderBook
from market_data.store.tables import orderbook_snapshots

SIDES = (("b", "bids"), ("a", "asks"))


class OrderbookStore:
    def __init__(self, engine: sa.Engine, dialect: Any) -> None:
        self.engine = engine
        self._insert = dialect.insert(orderbook_snapshots).on_conflict_do_nothing()

    def write(self, exchange: str, books: Sequence[OrderBook]) -> int:
        """Store snapshots in one transaction; one already stored (same exchange, symbol and
        ts) is left as it is. Returns the level rows written."""
        rows = [
            {
                "exchange": exchange, "symbol": b.symbol, "ts": b.ts, "side": side,
                "level": i, "price": price, "amount": amount,
            }
            for b in books
            for side, attr in SIDES
            for i, (price, amount) in enumerate(getattr(b, attr))
        ]  # fmt: skip
        if not rows:
            return 0
        c = orderbook_snapshots.c
        count = sa.select(sa.func.count()).where(
            c.exchange == exchange,
            c.symbol.in_({b.symbol for b in books}),
            c.ts.in_({b.ts for b in books}),
        )
        with self.engine.begin() as conn:  # the drivers' executemany counts no rows
            before = conn.execute(count).scalar_one()
            conn.execute(self._insert, rows)
            return int(conn.execute(count).scalar_one() - before)

    def times(self, exchange: str, since: int, until: int) -> dict[str, list[int]]:
        """Snapshot times per symbol in [since, until), oldest first."""
        c = orderbook_snapshots.c
        query = (
            sa.select(c.symbol, c.ts)
            .where(c.exchange == exchange, c.ts >= since, c.ts < until, c.side == "b", c.level == 0)
            .order_by(c.symbol, c.ts)
        )
        out: dict[str, list[int]] = defaultdict(list)
        with self.engine.connect() as conn:
            for symbol, ts in conn.execute(query):
                out[symbol].append(int(ts))
        return dict(out)

    def best(
        self, exchange: str, since: int, until: int
    ) -> list[tuple[str, int, Decimal, Decimal]]:
        """(symbol, ts, best bid, best ask) of each snapshot in [since, until)."""
        bid, ask = orderbook_snapshots.alias("bid"), orderbook_snapshots.alias("ask")
        query = (
            sa.select(bid.c.symbol, bid.c.ts, bid.c.price, ask.c.price)
            .join(
                ask,
                sa.and_(
                    ask.c.exchange == bid.c.exchange, ask.c.symbol == bid.c.symbol,
                    ask.c.ts == bid.c.ts, ask.c.side == "a", ask.c.level == 0,
                ),
            )
            .where(
                bid.c.exchange == exchange, bid.c.ts >= since, bid.c.ts < until,
                bid.c.side == "b", bid.c.level == 0,
            )
            .order_by(bid.c.symbol, bid.c.ts)
        )  # fmt: skip
        with self.engine.connect() as conn:
            return [(s, int(t), b, a) for s, t, b, a in conn.execute(query)]

    def read(self, exchange: str, symbol: str, ts: int) -> OrderBook | None:
        """One stored snapshot."""
        c = orderbook_snapshots.c
        query = (
            sa.select(c.side, c.price, c.amount)
            .where(c.exchange == exchange, c.symbol == symbol, c.ts == ts)
            .order_by(c.side, c.level)
        )
        sides: dict[str, list[Level]] = {"b": [], "a": []}
        with self.engine.connect() as conn:
            for side, price, amount in conn.execute(query):
                sides[side].append((price, amount))
        if not sides["b"] and not sides["a"]:
            return None
        return OrderBook(symbol, ts, tuple(sides["b"]), tuple(sides["a"]))

    def newest(self, exchange: str) -> int | None:
        c = orderbook_snapshots.c
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(c.ts)).where(c.exchange == exchange)).scalar()
