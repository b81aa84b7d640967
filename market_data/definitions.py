"""The code location: assembles Definitions from the domain folders, nothing else."""

from __future__ import annotations

import os

import dagster as dg

from market_data.config import DATABASE_ENV, DEFAULT_DATABASE_URL, load_watchlist
from market_data.defs.candles.assets import candle_asset
from market_data.defs.candles.sensors import watchlist_partitions_sensor
from market_data.defs.resources import (
    STORE_KEY,
    CandleStoreResource,
    ExchangeResource,
    exchange_resource_key,
)
from market_data.domain.watchlist import Watchlist


def resources(watchlist: Watchlist) -> dict[str, dg.ConfigurableResource]:
    # The URL may hold a password: it reaches the resource through dg.EnvVar, never a log.
    url = dg.EnvVar(DATABASE_ENV) if os.environ.get(DATABASE_ENV) else DEFAULT_DATABASE_URL
    out: dict[str, dg.ConfigurableResource] = {STORE_KEY: CandleStoreResource(database_url=url)}
    for ex in watchlist.exchanges:
        out[exchange_resource_key(ex.name)] = ExchangeResource(
            name=ex.name,
            base_url=ex.base_url,
            rate_limit_ms=ex.rate_limit_ms,
            timeout_ms=ex.timeout_ms,
            retry_attempts=ex.retry_attempts,
            retry_base_s=ex.retry_base_s,
        )
    return out


def build_definitions(watchlist: Watchlist | None = None) -> dg.Definitions:
    watchlist = watchlist or load_watchlist()
    return dg.Definitions(
        assets=[candle_asset(ex.name, watchlist) for ex in watchlist.exchanges],
        sensors=[watchlist_partitions_sensor(watchlist)],
        resources=resources(watchlist),
    )


defs = build_definitions()
