"""Configuration from the environment: the watchlist file (MARKET_DATA_CONFIG, with
MARKET_DATA_<EXCHANGE>_URL overrides) and the candle store (DATABASE_URL)."""

from __future__ import annotations

import functools
import os
from dataclasses import replace
from pathlib import Path

import ccxt
import yaml

from market_data.domain.watchlist import Watchlist, WatchlistError, parse_watchlist

CONFIG_ENV = "MARKET_DATA_CONFIG"
DEFAULT_CONFIG = Path("watchlist.yaml")


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def base_url_env(exchange: str) -> str:
    """The variable that points one exchange's API at another host (e.g. a simulator)."""
    return f"MARKET_DATA_{exchange.upper()}_URL"


def archive_url_env(exchange: str) -> str:
    """The variable that points one exchange's public data archive at another host."""
    return f"MARKET_DATA_{exchange.upper()}_ARCHIVE_URL"


@functools.cache
def timeframes_of(exchange: str) -> frozenset[str] | None:
    """The timeframes ccxt knows ``exchange`` to serve (None: ccxt does not say). Cached: an
    exchange object costs milliseconds, and a watchlist of 2,500 markets asks 2,500 times."""
    known = getattr(ccxt, exchange)().timeframes if exchange in ccxt.exchanges else None
    return frozenset(known) if known else None


def load_watchlist(path: Path | None = None) -> Watchlist:
    path = path or config_path()
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise WatchlistError(f"watchlist file {path} not found (set {CONFIG_ENV})") from e
    except yaml.YAMLError as e:
        raise WatchlistError(f"{path}: not valid YAML: {e}") from e
    try:
        watchlist = parse_watchlist(data, frozenset(ccxt.exchanges), timeframes_of=timeframes_of)
    except WatchlistError as e:
        raise WatchlistError(f"{path}: {e}") from e
    # MARKET_DATA_<EXCHANGE>_URL and MARKET_DATA_<EXCHANGE>_ARCHIVE_URL, when set, override
    # the watchlist's base_url and archive_url.
    exchanges = tuple(
        replace(
            ex,
            base_url=os.environ.get(base_url_env(ex.name)) or ex.base_url,
            archive_url=os.environ.get(archive_url_env(ex.name)) or ex.archive_url,
        )
        for ex in watchlist.exchanges
    )
    return replace(watchlist, exchanges=exchanges)


DATABASE_ENV = "DATABASE_URL"
DEFAULT_DATABASE_URL = "sqlite:///.market_data/candles.sqlite"


def database_url() -> str:
    """The candle store: DATABASE_URL, else an embedded SQLite file under ./.market_data."""
    return os.environ.get(DATABASE_ENV) or DEFAULT_DATABASE_URL


def ensure_database_env() -> None:
    """Give DATABASE_URL the embedded default when it is unset, so that the store resource's
    ``dg.EnvVar(DATABASE_URL)`` resolves in every process that loads the code location."""
    if not os.environ.get(DATABASE_ENV):
        os.environ[DATABASE_ENV] = DEFAULT_DATABASE_URL
