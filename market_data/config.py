"""Reads the watchlist file named by MARKET_DATA_CONFIG (default: ./watchlist.yaml)."""

from __future__ import annotations

import os
from pathlib import Path

import ccxt
import yaml

from market_data.domain.watchlist import Watchlist, WatchlistError, parse_watchlist

CONFIG_ENV = "MARKET_DATA_CONFIG"
DEFAULT_CONFIG = Path("watchlist.yaml")


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_watchlist(path: Path | None = None) -> Watchlist:
    path = path or config_path()
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise WatchlistError(f"watchlist file {path} not found (set {CONFIG_ENV})") from e
    except yaml.YAMLError as e:
        raise WatchlistError(f"{path}: not valid YAML: {e}") from e
    try:
        return parse_watchlist(data, frozenset(ccxt.exchanges))
    except WatchlistError as e:
        raise WatchlistError(f"{path}: {e}") from e


DATABASE_ENV = "DATABASE_URL"
DEFAULT_DATABASE_URL = "sqlite:///.market_data/candles.sqlite"


def database_url() -> str:
    """The candle store: DATABASE_URL, else an embedded SQLite file under ./.market_data."""
    return os.environ.get(DATABASE_ENV) or DEFAULT_DATABASE_URL
