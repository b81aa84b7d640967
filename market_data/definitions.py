"""The code location: assembles Definitions from the domain folders, nothing else."""

from __future__ import annotations

import dagster as dg

from market_data.config import load_watchlist
from market_data.defs.candles.assets import candle_asset
from market_data.defs.candles.sensors import watchlist_partitions_sensor
from market_data.defs.resources import build_resources
from market_data.domain.watchlist import Watchlist


def build_definitions(watchlist: Watchlist | None = None) -> dg.Definitions:
    watchlist = watchlist or load_watchlist()
    return dg.Definitions(
        assets=[candle_asset(ex.name, watchlist) for ex in watchlist.exchanges],
        sensors=[watchlist_partitions_sensor(watchlist)],
        resources=build_resources(watchlist),
    )


defs = build_definitions()
