"""Dagster resources: the exchange client and the candle store."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from market_data.exchanges.client import ExchangeClient, build_exchange


class ExchangeResource(dg.ConfigurableResource):
    """A ccxt client for one exchange; ``base_url`` points it at a simulator."""

    name: str = Field(description="ccxt exchange id, e.g. binance")
    base_url: str | None = Field(None, description="replace the host of every API URL")
    rate_limit_ms: float | None = Field(None, description="ccxt throttle between requests")
    timeout_ms: int = 10_000

    def client(self) -> ExchangeClient:
        return ExchangeClient(
            build_exchange(self.name, self.base_url, self.rate_limit_ms, self.timeout_ms)
        )
