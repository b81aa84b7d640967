"""One stored series: exchange, standard symbol, timeframe."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from market_data.domain.watchlist import Market


@dataclass(frozen=True)
class Series:
    exchange: str
    symbol: str
    timeframe: str

    @classmethod
    def of(cls, market: Market) -> Series:
        return cls(market.exchange, market.symbol.standard, market.timeframe.code)

    def params(self, **extra: object) -> dict[str, object]:
        return {
            "exchange": self.exchange,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            **extra,
        }

    def where(self, table: sa.Table) -> sa.ColumnElement[bool]:
        return sa.and_(
            table.c.exchange == self.exchange,
            table.c.symbol == self.symbol,
            table.c.timeframe == self.timeframe,
        )
