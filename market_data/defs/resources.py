"""Dagster resources: the exchange client and the candle store."""

from __future__ import annotations

import os
from functools import cache

import dagster as dg
from pydantic import Field

from market_data.config import DATABASE_ENV, DEFAULT_DATABASE_URL
from market_data.domain.watchlist import Watchlist
from market_data.exchanges.client import ExchangeClient, build_exchange
from market_data.exchanges.retry import Backoff
from market_data.store.candles import CandleStore


def base_url_env(exchange: str) -> str:
    return f"MARKET_DATA_{exchange.upper()}_URL"


def exchange_resource_key(exchange: str) -> str:
    return f"exchange_{exchange}"


STORE_KEY = "candle_store"


class ExchangeResource(dg.ConfigurableResource):
    """A ccxt client for one exchange; ``base_url`` points it at a simulator."""

    name: str = Field(description="ccxt exchange id, e.g. binance")
    base_url: str | None = Field(None, description="replace the host of every API URL")
    rate_limit_ms: float | None = Field(None, description="ccxt throttle between requests")
    timeout_ms: int = 10_000
    retry_attempts: int = Field(6, description="attempts per request on temporary errors")
    retry_base_s: float = Field(0.5, description="first backoff, doubling with jitter")

    def backoff(self) -> Backoff:
        return Backoff(attempts=self.retry_attempts, base_s=self.retry_base_s)

    def client(self) -> ExchangeClient:
        return ExchangeClient(
            build_exchange(self.name, self.base_url, self.rate_limit_ms, self.timeout_ms)
        )


@cache
def _store(url: str) -> CandleStore:
    return CandleStore(url)  # one engine (and one schema check) per process and database


class CandleStoreResource(dg.ConfigurableResource):
    """The candle database; the URL comes from DATABASE_URL (dg.EnvVar) or the default."""

    database_url: str = Field(description="SQLAlchemy URL: postgresql://... or sqlite:///...")

    def store(self) -> CandleStore:
        return _store(self.database_url)


def build_resources(watchlist: Watchlist) -> dict[str, dg.ConfigurableResource]:
    # The URL may hold a password: it reaches the resource through dg.EnvVar, never a log.
    url = dg.EnvVar(DATABASE_ENV) if os.environ.get(DATABASE_ENV) else DEFAULT_DATABASE_URL
    out: dict[str, dg.ConfigurableResource] = {STORE_KEY: CandleStoreResource(database_url=url)}
    for ex in watchlist.exchanges:
        # MARKET_DATA_<EXCHANGE>_URL, when set, overrides the watchlist's base_url.
        env_url = base_url_env(ex.name)
        out[exchange_resource_key(ex.name)] = ExchangeResource(
            name=ex.name,
            base_url=dg.EnvVar(env_url) if os.environ.get(env_url) else ex.base_url,
            rate_limit_ms=ex.rate_limit_ms,
            timeout_ms=ex.timeout_ms,
            retry_attempts=ex.retry_attempts,
            retry_base_s=ex.retry_base_s,
        )
    return out
