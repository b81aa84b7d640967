"""From the watchlist and the exchanges' catalogs to the markets to keep (pure).

Explicit markets are checked against the catalog: one the exchange does not list, or lists
inactive, is reported and skipped, unless it is already kept (it was delisted after it was
watched: its history stays, it is no longer refreshed). Selections and the cross-exchange
list need the catalog; until an exchange's catalog is loaded they select nothing there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from market_data.domain.catalog import Instrument
from market_data.domain.symbols import parse_symbol
from market_data.domain.watchlist import Market, Watchlist


@dataclass
class Resolution:
    markets: dict[str, dict[str, Market]] = field(default_factory=dict)  # exchange -> key -> market
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, market: Market) -> None:
        self.markets.setdefault(market.exchange, {}).setdefault(market.key, market)


def resolve(
    watchlist: Watchlist,
    catalogs: Mapping[str, Mapping[str, Instrument]],
    existing: Mapping[str, set[str]] | None = None,
) -> Resolution:
    existing = existing or {}
    out = Resolution(markets={ex.name: {} for ex in watchlist.exchanges})
    for market in watchlist.markets:
        catalog = catalogs.get(market.exchange) or {}
        inst = catalog.get(market.symbol.standard)
        kept = market.key in existing.get(market.exchange, set())
        if not catalog or (inst is not None and inst.active):
            out.add(market)
        elif inst is None:
            out.problems.append(
                f"{market.exchange}: {market.symbol.standard} is not listed; {market.key} skipped"
            )
        elif kept:
            out.add(market)
            out.notes.append(
                f"{market.exchange}: {market.key} is delisted: history kept, not refreshed"
            )
        else:
            out.problems.append(
                f"{market.exchange}: {market.symbol.standard} is listed as inactive; {market.key} skipped"
            )
    for exchange, selector in watchlist.selectors:
        catalog = catalogs.get(exchange) or {}
        if not catalog:
            out.problems.append(
                f"{exchange}: catalog not loaded yet (materialize instruments/{exchange}); selections wait"
            )
            continue
        chosen = sorted(
            i.symbol
            for i in catalog.values()
            if i.active and selector.matches(i.symbol, i.base, i.quote, i.kind)
        )
        for name in chosen:
            for tf in selector.timeframes:
                out.add(Market(exchange, parse_symbol(name), tf, selector.start or watchlist.start))
        out.notes.append(f"{exchange}: a selection chose {len(chosen)} instrument(s)")
    cross = watchlist.cross_exchange
    if cross is not None:
        names = [ex.name for ex in watchlist.exchanges]
        needed = cross.needed(len(names))
        qualified = 0
        for name in cross.symbols:
            # per exchange, the symbol or else its first listed quote equivalent
            listing = [
                (ex, found)
                for ex in names
                if (found := _first_listed(catalogs.get(ex) or {}, cross.candidates(name)))
            ]
            if len(listing) < needed:
                continue
            qualified += 1
            for ex, symbol in listing:
                for tf in cross.timeframes:
                    out.add(Market(ex, parse_symbol(symbol), tf, cross.start or watchlist.start))
        out.notes.append(
            f"{qualified}/{len(cross.symbols)} symbols meet the minimum of {needed} exchange(s)"
        )
    return out


def _first_listed(catalog: Mapping[str, Instrument], candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if (i := catalog.get(c)) is not None and i.active), None)
