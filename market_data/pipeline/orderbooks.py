"""Order book snapshots without Dagster: take them, store them, judge them.

The ``orderbooks/<exchange>`` asset takes one snapshot of every symbol per run (every
``interval_s`` of a minute or more); the live service takes them below a minute. Both call
``snapshot``; the asset's checks and the live sensor call ``cadence`` and ``crossed``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from market_data.domain.calendar import utc_text
from market_data.domain.orderbooks import OrderBook, cadence_gaps
from market_data.domain.symbols import parse_symbol
from market_data.domain.watchlist import Market, OrderbookSettings
from market_data.exchanges.client import ExchangeClient
from market_data.pipeline.status import one_line
from market_data.store.candles import CandleStore

#: how far back the checks look, in snapshot intervals (at least an hour)
CHECK_INTERVALS = 30
MIN_CHECK_WINDOW_MS = 3_600_000


def book_symbols(settings: OrderbookSettings, markets: list[Market]) -> dict[str, str]:
    """Standard name -> ccxt symbol of the symbols to snapshot: the settings' own list, else
    every symbol of the exchange's watched markets."""
    if settings.symbols is not None:
        return {name: parse_symbol(name).ccxt for name in settings.symbols}
    return {m.symbol.standard: m.symbol.ccxt for m in sorted(markets, key=lambda m: m.key)}


@dataclass
class Snapshots:
    books: list[OrderBook] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> error
    stored: int = 0  # snapshots written (one already stored is not written again)


async def snapshot(
    client: ExchangeClient,
    store: CandleStore,
    symbols: Mapping[str, str],
    depth: int,
    read_clock: bool = True,
) -> Snapshots:
    """One snapshot of every symbol (concurrently, within the client's rate budget), stored
    in one transaction. A symbol whose request failed after its retries is reported in
    ``failed``, the others are stored."""
    if read_clock:  # snapshots without an exchange time are stamped with its clock
        await client.fetch_time()
    known = client.exchange.markets or {}
    if any(s not in known for s in symbols.values()):  # every type the symbols need, at once
        await client.load_markets(reload=bool(known), symbols=list(symbols.values()))
    names = list(symbols)
    results = await asyncio.gather(
        *(client.fetch_order_book(symbols[n], n, depth) for n in names), return_exceptions=True
    )
    out = Snapshots()
    for name, result in zip(names, results, strict=True):
        if isinstance(result, OrderBook):
            out.books.append(result)
        elif isinstance(result, Exception):
            out.failed[name] = one_line(result)
        else:
            raise result  # cancelled, interrupted: not an exchange error
    out.stored = await asyncio.to_thread(store.orderbooks.write, client.id, out.books)
    return out


@dataclass(frozen=True)
class Verdict:
    passed: bool
    description: str
    metadata: dict[str, Any]


def check_window_ms(interval_s: int) -> int:
    return max(MIN_CHECK_WINDOW_MS, CHECK_INTERVALS * interval_s * 1000)


def cadence(
    store: CandleStore, exchange: str, symbols: list[str], interval_s: int, until: int
) -> Verdict:
    """Every symbol snapshotted at least every ``interval_s`` (with half an interval of
    slack) over the check window up to ``until``; a symbol's window starts at its first
    snapshot when that is later."""
    interval = interval_s * 1000
    window = check_window_ms(interval_s)
    times = store.orderbooks.times(exchange, until - window - 2 * interval, until + 1)
    gaps: dict[str, list[tuple[int, int]]] = {}
    for symbol in symbols:
        seen = times.get(symbol, [])
        if not seen:
            gaps[symbol] = [(until - window, until)]
            continue
        since = max(until - window, seen[0])
        found = cadence_gaps([t for t in seen if t >= since], interval, since, until)
        if found:
            gaps[symbol] = found
    lines = [
        f"{symbol}: {utc_text(a)} .. {utc_text(b)} ({(b - a) / 1000:.0f}s)"
        for symbol, spans in sorted(gaps.items())
        for a, b in spans[:5]
    ]
    return Verdict(
        not gaps,
        f"{len(gaps)} of {len(symbols)} symbol(s) missed the {interval_s}s cadence"
        if gaps
        else f"{len(symbols)} symbol(s) snapshotted every {interval_s}s",
        {
            "symbols": len(symbols),
            "late_symbols": len(gaps),
            "gaps": "\n".join(lines[:50]) or "none",
            "window_until": utc_text(until),
        },
    )


def crossed(store: CandleStore, exchange: str, interval_s: int, until: int) -> Verdict:
    """No snapshot in the check window whose best bid is at or above its best ask."""
    since = until - check_window_ms(interval_s)
    bad = [
        (symbol, ts, bid, ask)
        for symbol, ts, bid, ask in store.orderbooks.best(exchange, since, until + 1)
        if bid is not None and ask is not None and bid >= ask
    ]
    lines = [f"{s} at {utc_text(t)}: bid {b} >= ask {a}" for s, t, b, a in bad[:20]]
    return Verdict(
        not bad,
        f"{len(bad)} crossed snapshot(s)" if bad else "no crossed book",
        {"crossed_snapshots": len(bad), "crossed": "\n".join(lines) or "none"},
    )
