"""What differs between exchanges, kept in one table: page sizes and how to load only the
market types a run needs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


def ccxt_market_type(ccxt_symbol: str) -> str:
    """ccxt's family of a unified symbol: spot (BTC/USDT), linear (settled in the quote,
    BTC/USDT:USDT) or inverse (settled in the base, BTC/USD:BTC)."""
    pair, _, settle = ccxt_symbol.partition(":")
    if not settle:
        return "spot"
    quote = pair.partition("/")[2]
    return "linear" if settle.split("-")[0] == quote else "inverse"


@dataclass(frozen=True)
class Venue:
    #: largest page of candles per request (ccxt's cap where it has one)
    page_limit: int = 500
    #: ccxt option holding the market types load_markets fetches, with its known types; an
    #: exchange without one always loads everything
    types_option: str | None = None
    known_types: tuple[str, ...] = field(default=())

    def restrict_types(self, exchange: Any, symbols: Iterable[str]) -> None:
        """Make ``exchange.load_markets`` fetch only the types of ``symbols`` (e.g. Binance:
        spot pairs need exchangeInfo of /api/v3 alone, not the futures lists too)."""
        if self.types_option is None:
            return
        wanted = {ccxt_market_type(s) for s in symbols} & set(self.known_types)
        if wanted:
            option = dict(exchange.options.get(self.types_option) or {})
            option["types"] = [t for t in self.known_types if t in wanted]
            exchange.options[self.types_option] = option


VENUES: dict[str, Venue] = {
    "binance": Venue(1000, "fetchMarkets", ("spot", "linear", "inverse")),
}
DEFAULT_VENUE = Venue()


def venue(exchange_id: str) -> Venue:
    return VENUES.get(exchange_id, DEFAULT_VENUE)
