"""The markets being kept: the watchlist resolved against the stored catalogs, as the
watchlist sensor resolves it (the live service and the order books read it too)."""

from __future__ import annotations

from collections.abc import Mapping

from market_data.domain.catalog import Instrument
from market_data.domain.selection import resolve
from market_data.domain.watchlist import Market, Watchlist
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
