"""Checks of ``orderbooks/<exchange>``: ``cadence`` (every symbol snapshotted every
``interval_s``) and ``not_crossed`` (no best bid at or above the best ask), over the last
hour or 30 intervals, whichever is longer, up to the newest snapshot."""

import dagster as dg

from market_data.defs.orderbooks.assets import (
    orderbook_asset_key,
    orderbook_settings,
    watched_symbols,
)
from market_data.defs.resources import CandleStoreResource
from market_data.domain.watchlist import Watchlist
from market_data.pipeline.orderbooks import Verdict, cadence, crossed
from market_data.store.candles import CandleStore

CADENCE, NOT_CROSSED = "cadence", "not_crossed"


def _metadata(verdict: Verdict) -> dict[str, dg.MetadataValue]:
    return {
        k: dg.MetadataValue.int(v) if isinstance(v, int) else dg.MetadataValue.md(str(v))
        for k, v in verdict.metadata.items()
    }


def verdicts(store: CandleStore, watchlist: Watchlist, exchange: str) -> dict[str, Verdict] | None:
    """Both checks' verdicts up to the newest snapshot; None before the first snapshot."""
    newest = store.orderbooks.newest(exchange)
    if newest is None:
        return None
    interval = orderbook_settings(watchlist, exchange).interval_s
    symbols = sorted(watched_symbols(watchlist, exchange, store))
    return {
        CADENCE: cadence(store, exchange, symbols, interval, newest),
        NOT_CROSSED: crossed(store, exchange, interval, newest),
    }


def evaluation(exchange: str, name: str, verdict: Verdict) -> dg.AssetCheckEvaluation:
    """A verdict as an evaluation (the sensor reports the live service's snapshots so)."""
    return dg.AssetCheckEvaluation(
        asset_key=orderbook_asset_key(exchange),
        check_name=name,
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.ERROR if name == NOT_CROSSED else dg.AssetCheckSeverity.WARN,
        description=verdict.description,
        metadata=_metadata(verdict),
    )


def orderbook_checks(exchange: str, watchlist: Watchlist) -> dg.AssetChecksDefinition:
    key = orderbook_asset_key(exchange)

    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(CADENCE, asset=key, description="every symbol snapshotted "
                              "every interval_s (half an interval of slack)"),
            dg.AssetCheckSpec(NOT_CROSSED, asset=key, description="no snapshot whose best "
                              "bid is at or above its best ask"),
        ],
        name=f"orderbook_checks_{exchange}",
    )  # fmt: skip
    def checks(candle_store: CandleStoreResource):
        found = verdicts(candle_store.store(), watchlist, exchange)
        for name in (CADENCE, NOT_CROSSED):
            if found is None:
                yield dg.AssetCheckResult(
                    asset_key=key, check_name=name, passed=False, description="no snapshot yet"
                )
                continue
            e = evaluation(exchange, name, found[name])
            yield dg.AssetCheckResult(
                asset_key=key, check_name=name, passed=e.passed, severity=e.severity,
                description=e.description, metadata=e.metadata,
            )  # fmt: skip

    return checks
