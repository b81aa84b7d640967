"""The instrument catalog: an exchange's markets under standard names (pure functions).

When several listings of one exchange map to one standard name (an alias such as XBT next
to BTC, or a linear and an inverse perpetual of one pair), one is kept by this rule, in
order: active before inactive; settled in the quote asset (linear) before other settlement;
named without an alias before with one; then the smallest ccxt symbol.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from market_data.domain.symbols import Symbol, normalise_asset

KINDS = ("spot", "perp", "future")


@dataclass(frozen=True)
class Instrument:
    exchange: str
    symbol: str  # standard name
    ccxt_symbol: str
    exchange_symbol: str | None
    base: str
    quote: str
    settle: str | None
    kind: str  # spot | perp | future
    active: bool
    expiry: int | None = None
    tick_size: float | None = None
    lot_size: float | None = None


def instrument_from_ccxt(exchange: str, market: Mapping[str, Any]) -> Instrument | None:
    """The catalog entry for a ccxt market; None for kinds the project does not keep (options)."""
    base, quote = normalise_asset(market["base"]), normalise_asset(market["quote"])
    settle = normalise_asset(market["settle"]) if market.get("settle") else None
    if market.get("spot"):
        symbol, kind = Symbol(base, quote, "SPOT"), "spot"
    elif market.get("swap"):
        symbol, kind = Symbol(base, quote, "PERP", settle=settle), "perp"
    elif market.get("future") and market.get("expiry"):
        yymmdd = datetime.fromtimestamp(market["expiry"] / 1000, UTC).strftime("%y%m%d")
        symbol, kind = Symbol(base, quote, "FUTURE", yymmdd, settle), "future"
    else:
        return None
    precision = market.get("precision") or {}
    return Instrument(
        exchange=exchange,
        symbol=symbol.standard,
        ccxt_symbol=market["symbol"],
        exchange_symbol=market.get("id"),
        base=base,
        quote=quote,
        settle=settle,
        kind=kind,
        active=market.get("active") is not False,
        expiry=market.get("expiry"),
        tick_size=precision.get("price"),
        lot_size=precision.get("amount"),
    )


def _preference(i: Instrument) -> tuple[Any, ...]:
    aliased = (
        i.ccxt_symbol.split("/")[0] != i.base
        or i.ccxt_symbol.split("/")[1][: len(i.quote)] != i.quote
    )
    return (not i.active, (i.settle or i.quote) != i.quote, aliased, i.ccxt_symbol)


def build_catalog(exchange: str, markets: Iterable[Mapping[str, Any]]) -> dict[str, Instrument]:
    """Standard name -> instrument, one per name by the documented rule."""
    catalog: dict[str, Instrument] = {}
    for market in markets:
        inst = instrument_from_ccxt(exchange, market)
        if inst is None:
            continue
        kept = catalog.get(inst.symbol)
        if kept is None or _preference(inst) < _preference(kept):
            catalog[inst.symbol] = inst
    return catalog


@dataclass(frozen=True)
class CatalogChange:
    added: list[str]
    delisted: list[str]  # active before, inactive or gone now
    relisted: list[str]


def diff(before: Mapping[str, bool], after: Mapping[str, Instrument]) -> CatalogChange:
    """``before``: standard name -> active, as stored before this refresh."""
    added = sorted(s for s in after if s not in before)
    delisted = sorted(
        s for s, active in before.items() if active and (s not in after or not after[s].active)
    )
    relisted = sorted(
        s for s, active in before.items() if not active and s in after and after[s].active
    )
    return CatalogChange(added, delisted, relisted)


def counts_by_kind(catalog: Mapping[str, Instrument]) -> dict[str, int]:
    counts = Counter(i.kind for i in catalog.values() if i.active)
    return {kind: counts.get(kind, 0) for kind in KINDS}


#: A kind (spot, perp, future) this large before cannot vanish from one refresh.
WHOLE_KIND_MIN = 3
#: Fewer delistings than this are never doubted, whatever the share (small catalogs).
DELISTED_MIN = 5


def implausible(
    before: Mapping[str, str], after: Mapping[str, Instrument], max_delisted_share: float
) -> str | None:
    """Why a fresh catalog cannot be a true state of the exchange (None: it can).

    ``before``: standard name -> kind of each instrument active as stored. Real exchanges
    delist a handful at a time (Binance's largest batches are a few dozen of ~2,500, about
    1 %); a list that lost a whole kind, or more than ``max_delisted_share`` of the active
    instruments at once, is a broken or partial answer (a lost sub-list, a proxy's page),
    and believing it would mark good instruments delisted."""
    if not before:
        return None
    active = {s: i.kind for s, i in after.items() if i.active}
    if not active:
        return f"has no active instrument ({len(before)} active before)"
    for kind in KINDS:
        had = sum(k == kind for k in before.values())
        if had >= WHOLE_KIND_MIN and not any(k == kind for k in active.values()):
            return f"lost every {kind} instrument ({had} active before)"
    gone = sum(s not in active for s in before)
    if gone >= DELISTED_MIN and gone > max_delisted_share * len(before):
        return (
            f"would delist {gone} of {len(before)} active instruments at once "
            f"(more than max_delisted_share {max_delisted_share:.0%})"
        )
    return None
