"""The code location: assembles Definitions from the domain folders, nothing else."""

from __future__ import annotations

import dagster as dg

from market_data.config import load_watchlist
from market_data.defs.alerts.sensors import alerts_sensor
from market_data.defs.candles.assets import candle_asset
from market_data.defs.candles.checks import (
    consistency_check,
    fresh_check,
    gap_check,
    gap_check_job,
    has_consistency_check,
    recent_check,
)
from market_data.defs.candles.consistency import consistency_sensor
from market_data.defs.candles.schedules import gap_sweep_schedule
from market_data.defs.candles.sensors import freshness_sensor, gap_repair_sensor, watchlist_sensor
from market_data.defs.composite.assets import composite_asset
from market_data.defs.composite.checks import divergence_check
from market_data.defs.composite.sensors import composites_sensor
from market_data.defs.instruments.assets import instruments_asset
from market_data.defs.instruments.schedules import instruments_refresh_schedule
from market_data.defs.live.sensors import live_sensor
from market_data.defs.orderbooks.assets import orderbook_asset
from market_data.defs.orderbooks.checks import orderbook_checks
from market_data.defs.orderbooks.sensors import orderbooks_sensor
from market_data.defs.reports.assets import status_asset, status_schedule
from market_data.defs.resources import build_resources
from market_data.domain.composite import composite_markets
from market_data.domain.watchlist import Watchlist


def build_definitions(watchlist: Watchlist | None = None) -> dg.Definitions:
    watchlist = watchlist or load_watchlist()
    # composite candles when the watchlist has a cross_exchange block
    composite = bool(composite_markets(watchlist))
    # order book snapshots of the exchanges whose settings ask for them
    books = [ex for ex in watchlist.exchanges if watchlist.orderbooks_of(ex.name)]
    # one candle asset per exchange and timeframe of its watchlist
    candle_assets = [
        (ex.name, tf.code) for ex in watchlist.exchanges for tf in watchlist.timeframes_of(ex.name)
    ]
    return dg.Definitions(
        assets=[
            *(instruments_asset(ex.name) for ex in watchlist.exchanges),
            *(candle_asset(ex, tf, watchlist) for ex, tf in candle_assets),
            *([composite_asset(watchlist)] if composite else []),
            *(orderbook_asset(ex.name, watchlist) for ex in books),
            status_asset(watchlist),
        ],
        asset_checks=[
            *(
                check(ex, tf, watchlist)
                for ex, tf in candle_assets
                for check in (gap_check, fresh_check, recent_check)
            ),
            *(
                consistency_check(ex, tf, watchlist)
                for ex, tf in candle_assets
                if has_consistency_check(tf)
            ),
            *([divergence_check(watchlist)] if composite else []),
            *(orderbook_checks(ex.name, watchlist) for ex in books),
        ],
        jobs=[gap_check_job(ex, tf, watchlist) for ex, tf in candle_assets],
        schedules=[
            instruments_refresh_schedule(),
            gap_sweep_schedule(watchlist),
            status_schedule(),
        ],
        sensors=[
            watchlist_sensor(watchlist),
            gap_repair_sensor(watchlist),
            freshness_sensor(watchlist),
            *([consistency] if (consistency := consistency_sensor(watchlist)) else []),
            *([composites_sensor(watchlist)] if composite else []),
            live_sensor(watchlist),
            alerts_sensor(watchlist),
            *([orderbooks_sensor(watchlist)] if books else []),
        ],
        resources=build_resources(watchlist),
        # A run's steps (fetch, then check) are sequential: one process per run, not one per step.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
