"""The instrument catalog table: refreshes, listing and delisting dates."""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa

from market_data.domain.catalog import CatalogChange, Instrument, diff
from market_data.domain.expected import Listing
from market_data.store.tables import instruments

_CATALOG_COLUMNS = [f.name for f in fields(Instrument) if f.name not in ("kind",)]


@dataclass(frozen=True)
class StoredInstrument:
    instrument: Instrument
    listed_at: int | None
    delisted_at: int | None
    listing_checked_at: int | None = None

    @property
    def listing(self) -> Listing:
        return Listing(self.listed_at, self.delisted_at, self.listing_checked_at is not None)


def _now() -> int:
    return int(time.time() * 1000)


class InstrumentStore:
    def __init__(self, engine: sa.Engine, dialect: Any) -> None:
        self.engine, self._dialect = engine, dialect

    def _upsert(self, values: dict[str, Any], update: list[str]) -> sa.Insert:
        stmt = self._dialect.insert(instruments).values(**values)
        return stmt.on_conflict_do_update(
            index_elements=["exchange", "symbol"], set_={c: stmt.excluded[c] for c in update}
        )

    def save_catalog(self, exchange: str, catalog: dict[str, Instrument]) -> CatalogChange:
        """Store a fresh catalog: new instruments added, changed ones updated, instruments the
        exchange no longer lists (or lists inactive) marked delisted. Returns what changed."""
        now = _now()
        c = instruments.c
        with self.engine.begin() as conn:
            before = dict(
                conn.execute(sa.select(c.symbol, c.active).where(c.exchange == exchange)).all()
            )
            for inst in catalog.values():
                values = {k: getattr(inst, k) for k in _CATALOG_COLUMNS} | {
                    "type": inst.kind, "updated_at": now, "first_seen_at": now,
                }  # fmt: skip
                conn.execute(
                    self._upsert(
                        values,
                        [
                            *(k for k in _CATALOG_COLUMNS if k not in ("exchange", "symbol")),
                            "type",
                            "updated_at",
                        ],
                    )
                )
            gone = [s for s in before if s not in catalog]
            if gone:
                conn.execute(
                    sa.update(instruments)
                    .where(c.exchange == exchange, c.symbol.in_(gone))
                    .values(active=False, updated_at=now)
                )
            # A future is delisted at its delivery; a spot pair's date is the end of its last
            # candle, which ingest discovers when it first fetches the pair delisted.
            conn.execute(
                sa.update(instruments)
                .where(c.exchange == exchange, sa.not_(c.active), c.delisted_at.is_(None))
                .values(delisted_at=c.expiry)
            )
        return diff(before, catalog)

    def stored(self, exchange: str, symbol: str | None = None) -> dict[str, StoredInstrument]:
        """The exchange's catalog by standard name (only ``symbol``'s row, if given)."""
        c = instruments.c
        query = sa.select(instruments).where(c.exchange == exchange)
        if symbol is not None:
            query = query.where(c.symbol == symbol)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        out = {}
        for r in rows:
            inst = Instrument(
                exchange=r["exchange"], symbol=r["symbol"], ccxt_symbol=r["ccxt_symbol"],
                exchange_symbol=r["exchange_symbol"], base=r["base"] or "", quote=r["quote"] or "",
                settle=r["settle"], kind=r["type"], active=bool(r["active"]), expiry=r["expiry"],
                tick_size=r["tick_size"], lot_size=r["lot_size"],
            )  # fmt: skip
            out[r["symbol"]] = StoredInstrument(
                inst, r["listed_at"], r["delisted_at"], r["listing_checked_at"]
            )
        return out

    def get(self, exchange: str, symbol: str) -> StoredInstrument | None:
        return self.stored(exchange, symbol).get(symbol)

    def listing(self, exchange: str, symbol: str) -> Listing:
        """What is known of the market's listing (nothing, if it has no row)."""
        row = self.get(exchange, symbol)
        return row.listing if row is not None else Listing()

    def save_listing(self, inst: Instrument, listed_at: int | None) -> None:
        """The first candle's open time (None: the exchange has none yet), discovered once;
        the row is created if the catalog has not been loaded yet."""
        now = _now()
        values = {k: getattr(inst, k) for k in _CATALOG_COLUMNS} | {
            "type": inst.kind, "updated_at": now, "first_seen_at": now, "listed_at": listed_at,
            "listing_checked_at": now,
        }  # fmt: skip
        with self.engine.begin() as conn:
            conn.execute(self._upsert(values, ["listed_at", "listing_checked_at", "updated_at"]))

    def save_delisting(self, exchange: str, symbol: str, delisted_at: int) -> None:
        c = instruments.c
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(instruments)
                .where(c.exchange == exchange, c.symbol == symbol)
                .values(delisted_at=delisted_at, updated_at=_now())
            )
