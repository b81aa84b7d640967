"""The watchlist: which markets of which exchanges to keep, validated with precise errors."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from market_data.domain.alerts import AlertSettings, Target
from market_data.domain.calendar import day_ms
from market_data.domain.symbols import MalformedSymbolError, Symbol, normalise_asset, parse_symbol
from market_data.domain.timeframes import (
    SUPPORTED_TIMEFRAMES,
    Timeframe,
    UnknownTimeframeError,
)

B = TypeVar("B")
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
        return day_ms(self.start)


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
    #: pause after a rate limit that says no Retry-After; None = the exchange's (venues.py)
    rate_limit_pause_s: float | None = None
    #: a catalog refresh that would delist more than this share of the active instruments at
    #: once is not believed (retried, then failed; nothing is marked delisted)
    max_delisted_share: float = 0.25
    #: deep history from the exchange's public data archive where it has one (Binance);
    #: False: candle endpoints only
    archive: bool = True
    #: the archive's base URL; None: the exchange's own (data.binance.vision), unless
    #: ``base_url`` points the API elsewhere (a simulator, a proxy): then name it here
    archive_url: str | None = None
    #: history older than the candle endpoint serves (Kraken's OHLC: its newest 720) built
    #: from the exchange's trades, where it serves them all (exchanges/trades.py); False:
    #: that span is unavailable
    trades: bool = True


@dataclass(frozen=True)
class OrderbookSettings:
    interval_s: int = 60  # one snapshot of every symbol this often (< 60: the live service)
    depth: int = 100  # levels per side
    #: standard names; None = every symbol of the exchange's watched markets
    symbols: tuple[str, ...] | None = None

    @property
    def by_live(self) -> bool:
        """Below a minute, snapshots are the live service's (Dagster runs are per minute)."""
        return self.interval_s < 60


@dataclass(frozen=True)
class LiveSettings:
    """The live service (`market-data live`): closed candles over WebSocket."""

    refresh_s: int = 10  # the watchlist is read again this often (new markets subscribed)
    heartbeat_s: int = 5  # its state is written this often
    stale_after_s: int = 30  # a heartbeat older than this: the service is down
    #: new stream connections per host in any connect_window_s (Binance allows 300 per 300 s
    #: per address: a margin for other clients on the address)
    connect_limit: int = 250
    connect_window_s: float = 300.0
    #: exchanges to stream; None = every exchange of the watchlist that streams
    exchanges: tuple[str, ...] | None = None


_SETTING_TYPES = {"base_url": str, "rate_limit_ms": float, "timeout_ms": int, "retry_attempts": int,
                  "retry_base_s": float, "step_retries": int,
                  "rate_limit_pause_s": float, "max_delisted_share": float, "archive": bool,
                  "archive_url": str, "trades": bool}  # fmt: skip


def _exchange_settings(name: str, settings: dict[str, Any]) -> ExchangeSettings:
    values: dict[str, Any] = {}
    for key, value in settings.items():
        if key in ("markets", "select", "orderbooks"):
            continue
        if key not in _SETTING_TYPES:
            raise WatchlistError(
                f"exchanges.{name}: unknown setting {key!r}; known: {sorted(_SETTING_TYPES)}"
            )
        if _SETTING_TYPES[key] is bool and not isinstance(value, bool):
            raise WatchlistError(f"exchanges.{name}.{key}: {value!r} is not true or false")
        try:
            values[key] = None if value is None else _SETTING_TYPES[key](value)
        except (TypeError, ValueError) as e:
            raise WatchlistError(
                f"exchanges.{name}.{key}: {value!r} is not a {_SETTING_TYPES[key].__name__}"
            ) from e
    return ExchangeSettings(name=name, **values)


@dataclass(frozen=True)
class Selector:
    """Markets chosen from an exchange's catalog by filters (None = any)."""

    quotes: frozenset[str] | None = None
    kinds: frozenset[str] | None = None  # spot, perp, future
    bases: frozenset[str] | None = None
    symbols: frozenset[str] | None = None  # standard names
    timeframes: tuple[Timeframe, ...] = ()
    start: date | None = None

    def matches(self, symbol: str, base: str, quote: str, kind: str) -> bool:
        return (
            (self.quotes is None or quote in self.quotes)
            and (self.kinds is None or kind in self.kinds)
            and (self.bases is None or base in self.bases)
            and (self.symbols is None or symbol in self.symbols)
        )


@dataclass(frozen=True)
class CrossExchange:
    """Symbols kept on every exchange that lists them, if at least ``min_exchanges_required``
    do (0 = every configured exchange), and combined into composite candles."""

    symbols: tuple[str, ...]
    timeframes: tuple[Timeframe, ...]
    min_exchanges_required: int = 0
    start: date | None = None
    #: quote -> the quotes that count as it, in preference order (USD: USDT, USDC); an
    #: exchange without the symbol itself takes its first equivalent. None by default.
    quote_equivalents: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: the divergence check: a source close this far (percent) from the composite's
    divergence_pct: float = 1.0
    #: ... or a source whose newest candle is this many timeframes behind the others'
    stale_after_timeframes: float = 2.0

    def needed(self, n_exchanges: int) -> int:
        """Exchanges a symbol (and a composite timestamp) needs: 0 means every one."""
        return self.min_exchanges_required or n_exchanges

    def candidates(self, standard: str) -> tuple[str, ...]:
        """``standard`` and the same market in each equivalent quote, in preference order
        (BTC-USD-SPOT, BTC-USDT-SPOT, BTC-USDC-SPOT)."""
        symbol = parse_symbol(standard)
        quotes = dict(self.quote_equivalents).get(symbol.quote, ())
        same_settle = symbol.settle == symbol.quote
        return (standard, *(
            replace(symbol, quote=q, settle=q if same_settle else symbol.settle).standard
            for q in quotes
        ))  # fmt: skip


@dataclass(frozen=True)
class GapSettings:
    max_attempts: int = 3  # automatic repairs per gap; then exchange_empty (or left open)
    retry_delay_s: float = 300.0  # before the 2nd attempt; doubles for each further one
    sweep_cron: str = "0 2 * * *"  # the daily full-history sweep, UTC


@dataclass(frozen=True)
class FreshnessSettings:
    interval_s: int = 300  # how often the month in progress of every market is brought up to date
    warn_after_s: int = 900  # the candle assets show "warning" when not materialized for this long
    fail_after_s: int = 1800  # ... and "failing" after this long
    max_lag_timeframes: float = 2.0  # a market whose newest candle is older is flagged stale
    final_fetch_hours: int = 6  # this long into a month, ticks also finish the previous month


@dataclass(frozen=True)
class Watchlist:
    start: date
    exchanges: tuple[ExchangeSettings, ...]
    markets: tuple[Market, ...]
    selectors: tuple[tuple[str, Selector], ...] = ()  # (exchange, selector)
    cross_exchange: CrossExchange | None = None
    gaps: GapSettings = GapSettings()
    freshness: FreshnessSettings = FreshnessSettings()
    live: LiveSettings = LiveSettings()
    #: exchange -> its order book snapshot settings (exchanges that take snapshots)
    orderbooks: tuple[tuple[str, OrderbookSettings], ...] = ()
    alerts: AlertSettings = field(default_factory=AlertSettings)

    def orderbooks_of(self, exchange: str) -> OrderbookSettings | None:
        return dict(self.orderbooks).get(exchange)

    def exchange(self, name: str) -> ExchangeSettings:
        for ex in self.exchanges:
            if ex.name == name:
                return ex
        raise WatchlistError(f"exchange {name!r} is not in the watchlist")

    def markets_of(self, exchange: str) -> tuple[Market, ...]:
        return tuple(m for m in self.markets if m.exchange == exchange)

    def timeframes_of(self, exchange: str) -> tuple[Timeframe, ...]:
        """Every timeframe the exchange's markets can have (its explicit markets, its
        selections, the cross-exchange list), shortest first: one candle asset each."""
        frames = {m.timeframe for m in self.markets_of(exchange)}
        frames |= {tf for ex, sel in self.selectors if ex == exchange for tf in sel.timeframes}
        if self.cross_exchange is not None:
            frames |= set(self.cross_exchange.timeframes)
        return tuple(sorted(frames, key=lambda tf: tf.ms))

    def market(self, exchange: str, key: str) -> Market:
        for m in self.markets_of(exchange):
            if m.key == key:
                return m
        raise WatchlistError(f"market {key!r} on {exchange} is not in the watchlist")

    def market_or_default(self, exchange: str, key: str) -> Market:
        """The watched market of a partition key; a key not listed explicitly (a selection's,
        or one the command line added) starts at the watchlist's start date."""
        try:
            return self.market(exchange, key)
        except WatchlistError:
            symbol, timeframe = split_key(key)
            return Market(exchange, symbol, timeframe, self.start)


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


def no_candles(
    name: str, frames: Iterable[Timeframe], native: Collection[str] | None
) -> str | None:
    """Why ``name`` cannot serve one of ``frames`` (None: it serves them all)."""
    missing = [tf.code for tf in frames if native is not None and tf.code not in native]
    if not missing:
        return None
    has = ", ".join(tf for tf in SUPPORTED_TIMEFRAMES if tf in native)
    return (
        f"{name} has no {', '.join(missing)} candles (it serves {has}); remove "
        f"{'it' if len(missing) == 1 else 'them'} or list this market's timeframes"
    )


def parse_watchlist(
    data: Any,
    known_exchanges: set[str] | frozenset[str],
    today: date | None = None,
    timeframes_of: Callable[[str], Collection[str] | None] = lambda _: None,
) -> Watchlist:
    """Validate a watchlist mapping (as read from YAML). ``timeframes_of(exchange)``: the
    timeframes the exchange serves (None: any), so a market on a timeframe its exchange
    lacks (Coinbase 4h) is refused here, saying why."""
    today = today or datetime.now(UTC).date()
    if not isinstance(data, dict):
        raise WatchlistError("the watchlist must be a mapping with 'start' and 'exchanges'")
    unknown = set(data) - {
        "start",
        "default_timeframes",
        "exchanges",
        "cross_exchange",
        "gaps",
        "freshness",
        "live",
        "alerts",
    }
    if unknown:
        raise WatchlistError(f"unknown top-level keys: {sorted(unknown)}")
    start = _date(data.get("start", "2024-01-01"), "start", today)
    defaults = data.get("default_timeframes", list(DEFAULT_TIMEFRAMES))
    exchanges_raw = data.get("exchanges")
    if not isinstance(exchanges_raw, dict) or not exchanges_raw:
        raise WatchlistError("'exchanges' must map exchange names to their settings")
    exchanges: list[ExchangeSettings] = []
    markets: dict[tuple[str, str], Market] = {}
    selectors: list[tuple[str, Selector]] = []
    orderbooks: list[tuple[str, OrderbookSettings]] = []
    for name, settings in exchanges_raw.items():
        settings = settings or {}
        if name not in known_exchanges:
            raise WatchlistError(f"exchanges.{name}: unknown exchange {name!r}")
        if not isinstance(settings, dict):
            raise WatchlistError(f"exchanges.{name}: settings must be a mapping")
        exchanges.append(_exchange_settings(name, settings))
        books = _orderbook_settings(settings.get("orderbooks"), f"exchanges.{name}.orderbooks")
        if books is not None:
            orderbooks.append((name, books))
        for i, entry in enumerate(settings.get("markets") or []):
            where = f"exchanges.{name}.markets[{i}] ({entry!r})"
            for text, tfs, own_start in _entries(entry, where):
                try:
                    symbol = parse_symbol(text)
                    frames = [Timeframe.parse(tf) for tf in (tfs or defaults)]
                except (MalformedSymbolError, UnknownTimeframeError) as e:
                    raise WatchlistError(f"{where}: {e}") from e
                if why := no_candles(name, frames, timeframes_of(name)):
                    raise WatchlistError(f"{where}: {why}")
                day = _date(own_start, where, today) if own_start is not None else start
                for tf in frames:
                    market = Market(name, symbol, tf, day)
                    markets[(name, market.key)] = market
        for i, raw in enumerate(settings.get("select") or []):
            where = f"exchanges.{name}.select[{i}]"
            selector = _selector(raw, where, defaults, today)
            if why := no_candles(name, selector.timeframes, timeframes_of(name)):
                raise WatchlistError(f"{where}: {why}")
            selectors.append((name, selector))
    cross = _cross(data.get("cross_exchange"), defaults, today, len(exchanges))
    for ex in exchanges:
        if cross is not None and (
            why := no_candles(ex.name, cross.timeframes, timeframes_of(ex.name))
        ):
            raise WatchlistError(f"cross_exchange.timeframes: {why}")
    gaps = _gap_settings(data.get("gaps"))
    freshness = _freshness_settings(data.get("freshness"))
    live = _live_settings(data.get("live"))
    alerts = _alert_settings(data.get("alerts"))
    unknown = sorted(set(live.exchanges or ()) - {ex.name for ex in exchanges})
    if unknown:
        raise WatchlistError(
            f"live.exchanges: {', '.join(unknown)} not among this watchlist's exchanges "
            f"({', '.join(ex.name for ex in exchanges)})"
        )
    return Watchlist(
        start,
        tuple(exchanges),
        tuple(markets.values()),
        tuple(selectors),
        cross,
        gaps,
        freshness,
        live,
        tuple(orderbooks),
        alerts,
    )


def _block(cls: type[B], raw: Any, where: str) -> B:
    """A settings dataclass from an optional mapping, each value cast to its default's type."""
    if raw is None:
        return cls()
    types = {f.name: type(f.default) for f in fields(cls)}  # type: ignore[arg-type]
    if not isinstance(raw, dict) or set(raw) - set(types):
        raise WatchlistError(f"{where}: a mapping of {sorted(types)}")
    try:
        return cls(**{k: types[k](v) for k, v in raw.items()})
    except (TypeError, ValueError) as e:
        raise WatchlistError(f"{where}: {e}") from e


def _orderbook_settings(raw: Any, where: str) -> OrderbookSettings | None:
    if raw is None or raw is False:
        return None
    if raw is True:
        return OrderbookSettings()
    if not isinstance(raw, dict):
        raise WatchlistError(f"{where}: true, or a mapping of interval_s, depth, symbols")
    symbols = raw.get("symbols")
    names = _standard_names(symbols, f"{where}.symbols") if symbols is not None else None
    settings = _block(OrderbookSettings, {k: v for k, v in raw.items() if k != "symbols"}, where)
    if settings.interval_s < 1 or not 1 <= settings.depth <= 5000:
        raise WatchlistError(f"{where}: interval_s >= 1 and 1 <= depth <= 5000")
    return replace(settings, symbols=tuple(sorted(names)) if names is not None else None)


def _live_settings(raw: Any) -> LiveSettings:
    names = None
    if isinstance(raw, dict) and raw.get("exchanges") is not None:
        names = _names(raw["exchanges"], "live.exchanges", upper=False)
        raw = {k: v for k, v in raw.items() if k != "exchanges"}
    settings = _block(LiveSettings, raw, "live")
    if min(settings.refresh_s, settings.heartbeat_s) < 1 or settings.stale_after_s <= (
        settings.heartbeat_s
    ):
        raise WatchlistError("live: refresh_s, heartbeat_s >= 1 and stale_after_s > heartbeat_s")
    if settings.connect_limit < 1 or settings.connect_window_s <= 0:
        raise WatchlistError("live: connect_limit >= 1 and connect_window_s > 0")
    return replace(settings, exchanges=tuple(sorted(names)) if names is not None else None)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _alert_settings(raw: Any) -> AlertSettings:
    """The alerts block: targets (name, kind json|slack, url_env: the environment variable
    holding the webhook URL, a secret never written in the file) and the knobs."""
    if raw is None:
        return AlertSettings()
    if not isinstance(raw, dict):
        raise WatchlistError("alerts: a mapping with targets and settings")
    targets = []
    for i, t in enumerate(raw.get("targets") or []):
        where = f"alerts.targets[{i}]"
        if not isinstance(t, dict) or set(t) - {"name", "kind", "url_env"} or "url_env" not in t:
            raise WatchlistError(f"{where}: a mapping of name, kind (json or slack), url_env")
        env = str(t["url_env"])
        if not _ENV_NAME.match(env):
            raise WatchlistError(
                f"{where}.url_env: the name of an environment variable that holds the webhook "
                "URL (the URL is a secret: never in this file)"
            )
        kind = str(t.get("kind", "json"))
        if kind not in ("json", "slack"):
            raise WatchlistError(f"{where}.kind: json or slack, not {kind!r}")
        targets.append(Target(str(t.get("name") or env.lower()), kind, env))  # type: ignore[arg-type]
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise WatchlistError("alerts.targets: each target needs a name of its own")
    rest = {k: v for k, v in raw.items() if k not in ("targets", "ui_url")}
    settings = _block(AlertSettings, rest, "alerts")
    if settings.repeat_after_s < 60 or settings.timeout_s <= 0 or settings.storm_after < 1:
        raise WatchlistError("alerts: repeat_after_s >= 60, timeout_s > 0, storm_after >= 1")
    ui = raw.get("ui_url")
    return replace(settings, targets=tuple(targets), ui_url=str(ui).rstrip("/") if ui else None)


def _freshness_settings(raw: Any) -> FreshnessSettings:
    settings = _block(FreshnessSettings, raw, "freshness")
    if settings.interval_s < 1 or settings.warn_after_s > settings.fail_after_s:
        raise WatchlistError("freshness: interval_s >= 1 and warn_after_s <= fail_after_s")
    return settings


def _gap_settings(raw: Any) -> GapSettings:
    settings = _block(GapSettings, raw, "gaps")
    if settings.max_attempts < 1:
        raise WatchlistError("gaps.max_attempts: at least 1")
    if len(settings.sweep_cron.split()) != 5:
        raise WatchlistError(
            f"gaps.sweep_cron: {settings.sweep_cron!r} is not a 5-field cron expression"
        )
    return settings


def _names(raw: Any, where: str, upper: bool = True) -> frozenset[str] | None:
    if raw is None:
        return None
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise WatchlistError(f"{where}: expected a name or a list of names")
    return frozenset(x.upper() if upper else x.lower() for x in items)


def _frames(raw: Any, defaults: list[str], where: str) -> tuple[Timeframe, ...]:
    try:
        return tuple(
            Timeframe.parse(tf) for tf in ([raw] if isinstance(raw, str) else raw or defaults)
        )
    except UnknownTimeframeError as e:
        raise WatchlistError(f"{where}: {e}") from e


def _standard_names(raw: Any, where: str) -> frozenset[str] | None:
    names = _names(raw, where)
    if names is None:
        return None
    try:
        return frozenset(parse_symbol(n).standard for n in names)
    except MalformedSymbolError as e:
        raise WatchlistError(f"{where}: {e}") from e


def _selector(raw: Any, where: str, defaults: list[str], today: date) -> Selector:
    allowed = {"quote", "type", "base", "symbols", "timeframes", "start"}
    if not isinstance(raw, dict) or set(raw) - allowed:
        raise WatchlistError(f"{where}: a selection is a mapping of {sorted(allowed)}")
    kinds = _names(raw.get("type"), f"{where}.type", upper=False)
    if kinds is not None and kinds - {"spot", "perp", "future"}:
        raise WatchlistError(f"{where}.type: {sorted(kinds)}: use spot, perp or future")
    return Selector(
        quotes=_names(raw.get("quote"), f"{where}.quote"),
        kinds=kinds,
        bases=_names(raw.get("base"), f"{where}.base"),
        symbols=_standard_names(raw.get("symbols"), f"{where}.symbols"),
        timeframes=_frames(raw.get("timeframes"), defaults, where),
        start=_date(raw["start"], where, today) if raw.get("start") is not None else None,
    )


def _cross(raw: Any, defaults: list[str], today: date, n_exchanges: int) -> CrossExchange | None:
    where = "cross_exchange"
    if raw is None:
        return None
    allowed = {"symbols", "timeframes", "min_exchanges_required", "start", "quote_equivalents",
               "divergence_pct", "stale_after_timeframes"}  # fmt: skip
    if not isinstance(raw, dict) or set(raw) - allowed or "symbols" not in raw:
        raise WatchlistError(
            f"{where}: a mapping with 'symbols' and optional {sorted(allowed - {'symbols'})}"
        )
    needed = raw.get("min_exchanges_required", 0)
    if not isinstance(needed, int) or needed < 0 or needed > n_exchanges:
        raise WatchlistError(
            f"{where}.min_exchanges_required: {needed!r} must be 0 (all) to {n_exchanges} (the exchanges configured)"
        )
    numbers = {}
    for name, default in (("divergence_pct", 1.0), ("stale_after_timeframes", 2.0)):
        value = raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise WatchlistError(f"{where}.{name}: {value!r} must be a number above 0")
        numbers[name] = float(value)
    return CrossExchange(
        symbols=tuple(sorted(_standard_names(raw["symbols"], f"{where}.symbols") or ())),
        timeframes=_frames(raw.get("timeframes"), defaults, where),
        min_exchanges_required=needed,
        start=_date(raw["start"], where, today) if raw.get("start") is not None else None,
        quote_equivalents=_equivalents(raw.get("quote_equivalents"), f"{where}.quote_equivalents"),
        **numbers,
    )


def _equivalents(raw: Any, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """{USD: [USDT, USDC]} as ((USD, (USDT, USDC)),), codes normalised."""
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) for x in v)
        for k, v in raw.items()
    ):
        raise WatchlistError(
            f"{where}: a mapping of quote to a list of quotes, e.g. {{USD: [USDT]}}"
        )
    out = []
    for key, values in raw.items():
        quote = normalise_asset(key)
        others = tuple(dict.fromkeys(normalise_asset(v) for v in values))
        if quote in others:
            raise WatchlistError(f"{where}.{key}: lists {quote} as its own equivalent")
        out.append((quote, others))
    return tuple(out)
