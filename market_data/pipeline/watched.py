"""The markets being kept: the watchlist resolved against the stored catalogs, as the
watchlist sensor resolves it (the live service and the order books read it too)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from market_data.domain.catalog import Instrument, build_catalog, implausible
from market_data.domain.selection import resolve
from market_data.domain.watchlist import Market, Watchlist
from market_data.exchanges.client import Plausible
from market_data.exchanges.venues import ccxt_market_type
from market_data.store.candles import CandleStore


def watched_markets(
    store: CandleStore,
    watchlist: Watchlist,
    loaded: Mapping[str, Mapping[str, Instrument]] | None = None,
) -> dict[str, list[Market]]:
    """Exchange -> its watched markets (explicit ones, selections, the cross-exchange list).
    ``loaded``: catalogs just read from exchanges, used instead of the stored ones."""
    loaded = loaded or {}
    catalogs = {
        ex.name: loaded.get(ex.name)
        or {s: row.instrument for s, row in store.instruments.stored(ex.name).items()}
        for ex in watchlist.exchanges
    }
    resolution = resolve(watchlist, catalogs)
    return {
        ex.name: sorted(resolution.markets.get(ex.name, {}).values(), key=lambda m: m.key)
        for ex in watchlist.exchanges
    }


def plausible_markets(
    store: CandleStore, exchange: str, symbols: list[str] | None, max_delisted_share: float
) -> Plausible:
    """The check a fresh market list must pass against the stored catalog (its active
    instruments of the market types loaded: those of ``symbols``, or all): a list that lost a
    whole kind or more than ``max_delisted_share`` of them is not believed (retried), so it
    neither marks instruments delisted nor makes a listed symbol "not listed"."""
    types = {ccxt_market_type(s) for s in symbols} if symbols else None
    before = {
        name: row.instrument.kind
        for name, row in store.instruments.stored(exchange).items()
        if row.instrument.active
        and (types is None or ccxt_market_type(row.instrument.ccxt_symbol) in types)
    }

    def check(markets: dict[str, Any]) -> str | None:
        return implausible(before, build_catalog(exchange, markets.values()), max_delisted_share)

    return check
