"""The watchlist: which markets of which exchanges to keep, validated with precise errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from market_data.domain.symbols import MalformedSymbolError, Symbol, parse_symbol
from market_data.domain.timeframes import Timeframe, UnknownTimeframeError

DEFAULT_TIMEFRAMES: tuple[str, ...] = ("1m", "5m", "15m", "1h", "4h", "1d")
KEY_SEPARATOR = ":"


class WatchlistError(ValueError):
    """An invalid watchlist; the message names the entry and what is wrong with it."""


@dataclass(frozen=True, order=True)
class Market:
    """One watched series: a symbol at a timeframe, on one exchange."""

    exchange: str
    symbol: Symbol
    timeframe: Timeframe
    start: date

    @property
    def key(self) -> str:
        """The dynamic partition key, e.g. ``BTC-USDT-SPOT:1h`` (never contains ``|``)."""
        return f"{self.symbol.standard}{KEY_SEPARATOR}{self.timeframe.code}"

    @property
    def start_ms(self) -> int:
        return int(
            datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC).timestamp()
            * 1000
        )


def split_key(key: str) -> tuple[Symbol, Timeframe]:
    symbol, sep, tf = key.rpartition(KEY_SEPARATOR)
    if not sep:
        raise WatchlistError(f"market key {key!r} is not SYMBOL{KEY_SEPARATOR}TIMEFRAME")
    return parse_symbol(symbol), Timeframe.parse(tf)


@dataclass(frozen=True)
class ExchangeSettings:
    name: str
    base_url: str | None = None  # replaces the host of every API URL (a simulator)
    rate_limit_ms: float | None = None  # ccxt's throttle; None = ccxt's default for the exchange
    timeout_ms: int = 10_000
    retry_attempts: int = 6  # per request, on temporary errors
    retry_base_s: float = 0.5  # first backoff; doubles each attempt, with jitter
    step_retries: int = 2  # Dagster step retries after a request has used all its attempts


_SETTING_TYPES = {"base_url": str, "rate_limit_ms": float, "timeout_ms": int, "retry_attempts": int,
                  "retry_base_s": float, "step_retries": int}  # fmt: skip


def _exchange_settings(name: str, settings: dict[str, Any]) -> ExchangeSettings:
    values: dict[str, Any] = {}
    for key, value in settings.items():
        if key == "markets":
            continue
        if key not in _SETTING_TYPES:
            raise WatchlistError(
                f"exchanges.{name}: unknown setting {key!r}; known: {sorted(_SETTING_TYPES)}"
            )
        try:
            values[key] = None if value is None else _SETTING_TYPES[key](value)
        except (TypeError, ValueError) as e:
            raise WatchlistError(
                f"exchanges.{name}.{key}: {value!r} is not a {_SETTING_TYPES[key].__name__}"
            ) from e
    return ExchangeSettings(name=name, **values)


@dataclass(frozen=True)
class Watchlist:
    start: date
    exchanges: tuple[ExchangeSettings, ...]
    markets: tuple[Market, ...]

    def exchange(self, name: str) -> ExchangeSettings:
        for ex in self.exchanges:
            if ex.name == name:
                return ex
        raise WatchlistError(f"exchange {name!r} is not in the watchlist")

    def markets_of(self, exchange: str) -> tuple[Market, ...]:
        return tuple(m for m in self.markets if m.exchange == exchange)

    def market(self, exchange: str, key: str) -> Market:
        for m in self.markets_of(exchange):
            if m.key == key:
                return m
        raise WatchlistError(f"market {key!r} on {exchange} is not in the watchlist")


def _date(value: Any, where: str, today: date) -> date:
    try:
        day = value if isinstance(value, date) else date.fromisoformat(str(value))
    except ValueError as e:
        raise WatchlistError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from e
    if isinstance(day, datetime):
        day = day.date()
    if day > today:
        raise WatchlistError(f"{where}: start date {day} is in the future")
    return day


def _entries(raw: Any, where: str) -> list[tuple[str, list[str] | None, Any]]:
    """(symbol text, timeframes or None for the defaults, own start) of one market entry."""
    if isinstance(raw, dict):
        unknown = set(raw) - {"symbol", "timeframe", "timeframes", "start"}
        if unknown or "symbol" not in raw:
            raise WatchlistError(
                f"{where}: a market mapping needs 'symbol' and may have 'timeframe(s)', "
                f"'start'; got {sorted(raw)}"
            )
        tfs = raw.get("timeframes", raw.get("timeframe"))
        if isinstance(tfs, str):
            tfs = [tfs]
        return [(str(raw["symbol"]), tfs, raw.get("start"))]
    if not isinstance(raw, str):
        raise WatchlistError(
            f"{where}: expected 'SYMBOL/timeframe', 'SYMBOL-timeframe' or a mapping"
        )
    text = raw.strip()
    for sep in ("/", "-"):
        head, found, tail = text.rpartition(sep)
        if found and head and tail and tail[0].isdigit():
            return [(head, [tail], None)]
    return [(text, None, None)]


def parse_watchlist(
    data: Any, known_exchanges: set[str] | frozenset[str], today: date | None = None
) -> Watchlist:
    """Validate a watchlist mapping (as read from YAML)."""
    today = today or datetime.now(UTC).date()
    if not isinstance(data, dict):
        raise WatchlistError("the watchlist must be a mapping with 'start' and 'exchanges'")
    unknown = set(data) - {"start", "default_timeframes", "exchanges"}
    if unknown:
        raise WatchlistError(f"unknown top-level keys: {sorted(unknown)}")
    start = _date(data.get("start", "2024-01-01"), "start", today)
    defaults = data.get("default_timeframes", list(DEFAULT_TIMEFRAMES))
    exchanges_raw = data.get("exchanges")
    if not isinstance(exchanges_raw, dict) or not exchanges_raw:
        raise WatchlistError("'exchanges' must map exchange names to their settings")
    exchanges: list[ExchangeSettings] = []
    markets: dict[tuple[str, str], Market] = {}
    for name, settings in exchanges_raw.items():
        settings = settings or {}
        if name not in known_exchanges:
            raise WatchlistError(f"exchanges.{name}: unknown exchange {name!r}")
        if not isinstance(settings, dict):
            raise WatchlistError(f"exchanges.{name}: settings must be a mapping")
        exchanges.append(_exchange_settings(name, settings))
        for i, entry in enumerate(settings.get("markets") or []):
            where = f"exchanges.{name}.markets[{i}] ({entry!r})"
            for text, tfs, own_start in _entries(entry, where):
                try:
                    symbol = parse_symbol(text)
                    frames = [Timeframe.parse(tf) for tf in (tfs or defaults)]
                except (MalformedSymbolError, UnknownTimeframeError) as e:
                    raise WatchlistError(f"{where}: {e}") from e
                day = _date(own_start, where, today) if own_start is not None else start
                for tf in frames:
                    market = Market(name, symbol, tf, day)
                    markets[(name, market.key)] = market
    return Watchlist(start, tuple(exchanges), tuple(markets.values()))
