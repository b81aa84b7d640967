"""The code location: assembles Definitions from the domain folders, nothing else."""

from __future__ import annotations

import dagster as dg

from market_data.config import load_watchlist
from market_data.defs.resources import ExchangeResource


def build_definitions() -> dg.Definitions:
    watchlist = load_watchlist()
    resources = {
        f"exchange_{ex.name}": ExchangeResource(
            name=ex.name,
            base_url=ex.base_url,
            rate_limit_ms=ex.rate_limit_ms,
            timeout_ms=ex.timeout_ms,
        )
        for ex in watchlist.exchanges
    }
    return dg.Definitions(resources=resources)


defs = build_definitions()
