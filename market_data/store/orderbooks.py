"""Order book snapshots: one row per snapshot with its levels as arrays, exact decimals; a
snapshot is stored once (exchange, symbol, ts)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from market_data.domain.orderbooks import OrderBook
from market_data.store.tables import orderbook_snapshots

_c = orderbook_snapshots.c


def _row(exchange: str, book: OrderBook) -> dict[str, Any]:
    return {
        "exchange": exchange,
        "symbol": book.symbol,
        "ts": book.ts,
        "best_bid": book.bids[0][0] if book.bids else None,
        "best_ask": book.asks[0][0] if book.asks else None,
        "bid_prices": [p for p, _ in book.bids],
        "bid_amounts": [a for _, a in book.bids],
        "ask_prices": [p for p, _ in book.asks],
        "ask_amounts": [a for _, a in book.asks],
    }


class OrderbookStore:
    def __init__(self, engine: sa.Engine, dialect: Any) -> None:
        self.engine = engine
        self._insert = dialect.insert(orderbook_snapshots).on_conflict_do_nothing()

    def write(self, exchange: str, books: Sequence[OrderBook]) -> int:
        """Store snapshots in one transaction; one already stored (same exchange, symbol and
        ts) is left as it is. Returns the snapshots written."""
        if not books:
            return 0
        count = sa.select(sa.func.count()).where(
            _c.exchange == exchange,
            _c.symbol.in_({b.symbol for b in books}),
            _c.ts.in_({b.ts for b in books}),
        )
        with self.engine.begin() as conn:  # the drivers' executemany counts no rows
            before = conn.execute(count).scalar_one()
            conn.execute(self._insert, [_row(exchange, b) for b in books])
            return int(conn.execute(count).scalar_one() - before)

    def times(self, exchange: str, since: int, until: int) -> dict[str, list[int]]:
        """Snapshot times per symbol in [since, until), oldest first."""
        query = (
            sa.select(_c.symbol, _c.ts)
            .where(_c.exchange == exchange, _c.ts >= since, _c.ts < until)
            .order_by(_c.symbol, _c.ts)
        )
        out: dict[str, list[int]] = defaultdict(list)
        with self.engine.connect() as conn:
            for symbol, ts in conn.execute(query):
                out[symbol].append(int(ts))
        return dict(out)

    def best(
        self, exchange: str, since: int, until: int
    ) -> list[tuple[str, int, Decimal | None, Decimal | None]]:
        """(symbol, ts, best bid, best ask) of each snapshot in [since, until)."""
        query = (
            sa.select(_c.symbol, _c.ts, _c.best_bid, _c.best_ask)
            .where(_c.exchange == exchange, _c.ts >= since, _c.ts < until)
            .order_by(_c.symbol, _c.ts)
        )
        with self.engine.connect() as conn:
            return [(s, int(t), b, a) for s, t, b, a in conn.execute(query)]

    def read(self, exchange: str, symbol: str, ts: int) -> OrderBook | None:
        """One stored snapshot."""
        query = sa.select(orderbook_snapshots).where(
            _c.exchange == exchange, _c.symbol == symbol, _c.ts == ts
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        bids = tuple(zip(row.bid_prices, row.bid_amounts, strict=True))
        asks = tuple(zip(row.ask_prices, row.ask_amounts, strict=True))
        return OrderBook(symbol, ts, bids, asks)

    def newest(self, exchange: str) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.max(_c.ts)).where(_c.exchange == exchange)
            ).scalar()
