"""``orderbooks/<exchange>``: one snapshot of every watched symbol's book per run (the
``orderbooks`` sensor launches a run every ``interval_s``), top ``depth`` levels a side,
prices and amounts exact, in ``orderbook_snapshots``."""

import asyncio

import dagster as dg

from market_data.defs.instruments.assets import instruments_asset_key
from market_data.defs.resources import CandleStoreResource, ExchangesResource
from market_data.domain.calendar import utc_text
from market_data.domain.watchlist import OrderbookSettings, Watchlist
from market_data.exchanges.errors import ExchangeDataError
from market_data.pipeline.orderbooks import Snapshots, book_symbols, snapshot
from market_data.pipeline.watched import watched_markets
from market_data.store.candles import CandleStore


def orderbook_asset_key(exchange: str) -> dg.AssetKey:
    return dg.AssetKey(["orderbooks", exchange])


def orderbook_settings(watchlist: Watchlist, exchange: str) -> OrderbookSettings:
    settings = watchlist.orderbooks_of(exchange)
    assert settings is not None, f"{exchange} takes no order book snapshots"
    return settings


def watched_symbols(watchlist: Watchlist, exchange: str, store: CandleStore) -> dict[str, str]:
    """Standard name -> ccxt symbol: the settings' list, else the watched markets' symbols."""
    markets = watched_markets(store, watchlist)[exchange]
    return book_symbols(orderbook_settings(watchlist, exchange), markets)


def orderbook_asset(exchange: str, watchlist: Watchlist) -> dg.AssetsDefinition:
    settings = orderbook_settings(watchlist, exchange)
    who = "the live service" if settings.by_live else "the orderbooks sensor"

    @dg.asset(
        key=orderbook_asset_key(exchange),
        deps=[instruments_asset_key(exchange)],
        group_name="orderbooks",
        kinds={"ccxt", "sql"},
        pool=f"exchange:{exchange}",
        description=f"Order book snapshots of {exchange}'s watched symbols every "
        f"{settings.interval_s}s ({who}), top {settings.depth} levels a side, exact prices "
        "and amounts (orderbook_snapshots).",
    )
    def orderbooks(
        context: dg.AssetExecutionContext,
        exchanges: ExchangesResource,
        candle_store: CandleStoreResource,
    ) -> dg.MaterializeResult:
        store = candle_store.store()
        symbols = watched_symbols(watchlist, exchange, store)

        async def take() -> Snapshots:
            client = exchanges.client(exchange)
            try:
                return await snapshot(client, store, symbols, settings.depth)
            finally:
                await client.close()

        try:
            taken = asyncio.run(take())
        except ExchangeDataError as e:
            raise dg.Failure(description=f"{exchange}: no snapshot taken: {e}") from e
        for symbol, error in taken.failed.items():
            context.log.warning(f"{exchange}: order book of {symbol} not taken: {error}")
        books = taken.books
        newest = max((b.ts for b in books), default=None)
        return dg.MaterializeResult(
            metadata={
                "symbols": dg.MetadataValue.int(len(symbols)),
                "snapshots": dg.MetadataValue.int(len(books)),
                "stored": dg.MetadataValue.int(taken.stored),
                "depth": dg.MetadataValue.int(settings.depth),
                "snapshot_time": dg.MetadataValue.text(utc_text(newest) if newest else "-"),
                "failed": dg.MetadataValue.md(
                    "\n".join(f"- {s}: {e}" for s, e in taken.failed.items()) or "none"
                ),
            }
        )

    return orderbooks
