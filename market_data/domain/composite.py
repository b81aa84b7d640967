"""Composite markets: one symbol (with its quote equivalents) and timeframe over every
exchange that has it, from the watchlist's ``cross_exchange`` block (pure)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from market_data.domain.symbols import parse_symbol
from market_data.domain.timeframes import Timeframe
from market_data.domain.watchlist import KEY_SEPARATOR, CrossExchange, Watchlist


@dataclass(frozen=True)
class CompositeMarket:
    """E.g. BTC-USD-SPOT at 1m: its key ``BTC-USD-SPOT:1m`` reads like a market key."""

    symbol: str
    timeframe: Timeframe

    @property
    def key(self) -> str:
        return f"{self.symbol}{KEY_SEPARATOR}{self.timeframe.code}"

    @classmethod
    def parse(cls, key: str) -> CompositeMarket:
        symbol, _, tf = key.partition(KEY_SEPARATOR)
        return cls(parse_symbol(symbol).standard, Timeframe.parse(tf))


@dataclass(frozen=True)
class Source:
    """One exchange's series in a composite."""

    exchange: str
    symbol: str


def composite_markets(watchlist: Watchlist) -> list[CompositeMarket]:
    cross = watchlist.cross_exchange
    if cross is None:
        return []
    return [CompositeMarket(s, tf) for s in cross.symbols for tf in cross.timeframes]


def sources(
    cross: CrossExchange, market: CompositeMarket, watched: Mapping[str, Collection[str]]
) -> list[Source]:
    """Per exchange (``watched``: exchange -> its market keys), the composite's symbol or
    else its first quote equivalent watched at the timeframe; one source per exchange."""
    out = []
    for exchange, keys in watched.items():
        for symbol in cross.candidates(market.symbol):
            if f"{symbol}{KEY_SEPARATOR}{market.timeframe.code}" in keys:
                out.append(Source(exchange, symbol))
                break
    return out


def fed_by(cross: CrossExchange, market_key: str) -> list[CompositeMarket]:
    """The composite markets a candle market (``BTC-USDT-SPOT:1h``) may feed."""
    symbol, _, tf = market_key.partition(KEY_SEPARATOR)
    return [
        CompositeMarket(name, t)
        for name in cross.symbols
        for t in cross.timeframes
        if t.code == tf and symbol in cross.candidates(name)
    ]
