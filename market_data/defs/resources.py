"""Dagster resources: the exchanges of the watchlist and the candle store.

Assets, checks and ops take them as typed parameters named after their keys
(``exchanges: ExchangesResource``, ``candle_store: CandleStoreResource``).
"""

from __future__ import annotations

import asyncio
from functools import cache

import dagster as dg
from pydantic import Field

from market_data.config import DATABASE_ENV, ensure_database_env
from market_data.domain.watchlist import ExchangeSettings, Watchlist
from market_data.exchanges.client import ExchangeClient, SyncExchangeClient
from market_data.exchanges.retry import OnRetry, Sleep
from market_data.store.candles import CandleStore

EXCHANGES_KEY = "exchanges"
STORE_KEY = "candle_store"
ALERTS_KEY = "alerts"

_DEFAULTS = ExchangeSettings(name="")


class ExchangeConfig(dg.Config):
    """One exchange's settings, as the watchlist gives them (defaults: ExchangeSettings)."""

    name: str = Field(description="ccxt exchange id, e.g. binance")
    base_url: str | None = Field(None, description="replace the host of every API URL")
    rate_limit_ms: float | None = Field(None, description="ccxt throttle between requests")
    timeout_ms: int = _DEFAULTS.timeout_ms
    retry_attempts: int = Field(_DEFAULTS.retry_attempts, description="per request")
    retry_base_s: float = Field(_DEFAULTS.retry_base_s, description="first backoff")
    step_retries: int = _DEFAULTS.step_retries
    rate_limit_pause_s: float | None = Field(
        None, description="pause after a rate limit without Retry-After (None: the exchange's)"
    )
    max_delisted_share: float = Field(
        _DEFAULTS.max_delisted_share,
        description="a catalog refresh delisting more than this share at once is not believed",
    )
    archive: bool = Field(
        _DEFAULTS.archive, description="deep history from the exchange's public data archive"
    )
    archive_url: str | None = Field(
        None, description="the archive's base URL (None: the exchange's own, if base_url is unset)"
    )
    trades: bool = Field(
        _DEFAULTS.trades,
        description="history older than the candle endpoint serves built from trades (Kraken)",
    )

    @classmethod
    def of(cls, settings: ExchangeSettings) -> ExchangeConfig:
        return cls(**{f: getattr(settings, f) for f in cls.model_fields})

    def settings(self) -> ExchangeSettings:
        return ExchangeSettings(**{f: getattr(self, f) for f in type(self).model_fields})


class ExchangesResource(dg.ConfigurableResource):
    """ccxt clients for the watchlist's exchanges."""

    exchanges: list[ExchangeConfig] = Field(description="one entry per exchange")

    def settings(self, name: str) -> ExchangeSettings:
        for ex in self.exchanges:
            if ex.name == name:
                return ex.settings()
        raise KeyError(f"exchange {name!r} is not configured")

    def client(
        self, name: str, sleep: Sleep = asyncio.sleep, on_retry: OnRetry | None = None
    ) -> ExchangeClient:
        """A client (async: one rate budget for every request of a run) whose every request
        is retried as the exchange's settings say."""
        return ExchangeClient.of(self.settings(name), sleep, on_retry)

    def sync_client(self, name: str) -> SyncExchangeClient:
        """The same, for one call at a time from plain code."""
        return SyncExchangeClient.of(self.settings(name))


@cache
def _store(url: str) -> CandleStore:
    return CandleStore(url)  # one engine (and one schema check) per process and database


class CandleStoreResource(dg.ConfigurableResource):
    """The candle database, from DATABASE_URL (dg.EnvVar)."""

    database_url: str = Field(description="SQLAlchemy URL: postgresql://... or sqlite:///...")

    def store(self) -> CandleStore:
        return _store(self.database_url)


class AlertTargetConfig(dg.Config):
    """A webhook: its name and the environment variable holding its URL (a secret)."""

    name: str
    url_env: str = Field(description="environment variable holding the webhook URL")


class AlertsResource(dg.ConfigurableResource):
    """The alert webhooks. Their URLs are secrets: the config names only the environment
    variables, read through dg.EnvVar when a message is sent (an unset one keeps that
    target's messages queued, and says so), never logged or stored."""

    targets: list[AlertTargetConfig] = Field(default_factory=list)

    def urls(self) -> dict[str, str]:
        found = {t.name: dg.EnvVar(t.url_env).get_value() for t in self.targets}
        return {name: url for name, url in found.items() if url}


def build_resources(watchlist: Watchlist) -> dict[str, dg.ConfigurableResource]:
    # The URL may hold a password: it reaches the resource through dg.EnvVar, never a log.
    ensure_database_env()
    return {
        STORE_KEY: CandleStoreResource(database_url=dg.EnvVar(DATABASE_ENV)),
        EXCHANGES_KEY: ExchangesResource(
            exchanges=[ExchangeConfig.of(ex) for ex in watchlist.exchanges]
        ),
        ALERTS_KEY: AlertsResource(
            targets=[
                AlertTargetConfig(name=t.name, url_env=t.url_env) for t in watchlist.alerts.targets
            ]
        ),
    }
