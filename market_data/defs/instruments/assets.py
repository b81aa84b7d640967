"""``instruments/<exchange>``: the exchange's markets under standard names, in the store."""

import dagster as dg

from market_data.defs.resources import CandleStoreResource, ExchangesResource
from market_data.domain.catalog import build_catalog, counts_by_kind
from market_data.exchanges.errors import ExchangeDataError
from market_data.pipeline.watched import plausible_markets

LISTED_IN_METADATA = 50


def instruments_asset_key(exchange: str) -> dg.AssetKey:
    return dg.AssetKey(["instruments", exchange])


def _names(names: list[str]) -> dg.MetadataValue:
    shown = ", ".join(names[:LISTED_IN_METADATA])
    more = f" and {len(names) - LISTED_IN_METADATA} more" if len(names) > LISTED_IN_METADATA else ""
    return dg.MetadataValue.md(shown + more if names else "none")


def instruments_asset(exchange: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=instruments_asset_key(exchange),
        group_name="instruments",
        kinds={"ccxt", "sql"},
        pool=f"exchange:{exchange}",
        description=f"Every spot, perpetual and dated-future market {exchange} lists, with "
        "standard names (BTC-USDT-SPOT, -PERP, -FUTURE_YYMMDD), precision and listing dates.",
    )
    def instruments(
        context: dg.AssetExecutionContext,
        exchanges: ExchangesResource,
        candle_store: CandleStoreResource,
    ) -> dg.MaterializeResult:
        store = candle_store.store()
        share = exchanges.settings(exchange).max_delisted_share
        plausible = plausible_markets(store, exchange, None, share)
        try:
            with exchanges.sync_client(exchange) as client:
                markets = client.load_markets(reload=True, plausible=plausible)
        except ExchangeDataError as e:  # nothing stored: no instrument is marked delisted
            raise dg.Failure(description=f"{exchange}: could not load markets: {e}") from e
        catalog = build_catalog(exchange, markets.values())
        change = store.instruments.save_catalog(exchange, catalog)
        counts = counts_by_kind(catalog)
        context.log.info(
            f"{exchange}: {len(catalog)} instruments ({counts}); {len(change.added)} added, "
            f"{len(change.delisted)} delisted"
        )
        return dg.MaterializeResult(
            metadata={
                "instruments": dg.MetadataValue.int(len(catalog)),
                **{f"active_{kind}": dg.MetadataValue.int(n) for kind, n in counts.items()},
                "added": dg.MetadataValue.int(len(change.added)),
                "delisted": dg.MetadataValue.int(len(change.delisted)),
                "added_symbols": _names(change.added),
                "delisted_symbols": _names(change.delisted),
                "relisted_symbols": _names(change.relisted),
            }
        )

    return instruments
