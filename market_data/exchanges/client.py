"""ccxt clients (optionally pointed at a local simulator), called safely and concurrently.

`ExchangeClient` wraps one ``ccxt.async_support`` exchange: many requests may be in flight
at once, their starts spaced by ccxt's throttle (the exchange's own request costs), so one
client is one rate budget. Every call is retried on temporary errors, a 429 or 418 pauses
every request of the client, errors are mapped to the project's types, and requests are
counted. `SyncExchangeClient` runs the same client on an event loop of its own, for code
that makes one call at a time (the catalog, the command line, tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import ccxt
import ccxt.async_support as ccxt_async
import numpy as np

from market_data.domain.orderbooks import OrderBook
from market_data.domain.watchlist import ExchangeSettings
from market_data.exchanges.budget import WeightBudget
from market_data.exchanges.errors import (
    ExchangeBannedError,
    ExchangeUnavailableError,
    RateLimitedError,
    TemporaryExchangeError,
    UnknownExchangeError,
    classify,
    header,
)
from market_data.exchanges.retry import Backoff, Gate, OnRetry, Sleep, call_with_retry
from market_data.exchanges.venues import archive_url as archive_url_of
from market_data.exchanges.venues import depth, from_trades, venue

T = TypeVar("T")


def rewrite_urls(urls: Any, base_url: str) -> Any:
    """Every URL in ccxt's (nested) ``urls['api']`` with scheme and host taken from base_url."""
    if isinstance(urls, dict):
        return {k: rewrite_urls(v, base_url) for k, v in urls.items()}
    if isinstance(urls, str) and urls.startswith("http"):
        base = urlsplit(base_url)
        parts = urlsplit(urls)
        return urlunsplit(
            (
                base.scheme,
                base.netloc,
                base.path.rstrip("/") + parts.path,
                parts.query,
                parts.fragment,
            )
        )
    return urls


def build_exchange(settings: ExchangeSettings) -> ccxt_async.Exchange:
    """A ccxt (async) exchange by id; with a ``base_url`` every API URL points there."""
    name = settings.name
    if name not in ccxt.exchanges:
        raise UnknownExchangeError(f"unknown exchange {name!r}: ccxt has no exchange of that id")
    config: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": settings.timeout_ms,
        # ccxt's throttle looks at its queue every millisecond while requests wait in it;
        # every 5 ms keeps its spacing (tokens accrue by elapsed time) at a fifth of the CPU
        "tokenBucket": {"delay": 0.005},
    }
    if settings.rate_limit_ms is not None:  # ccxt's throttle: rateLimit x cost between requests
        config["rateLimit"] = settings.rate_limit_ms
    elif venue(name).reports_weight:
        # the exchange's own count paces every request (exchanges/budget.py), per API family
        # and at its real limits; ccxt's throttle would hold them to its model of the limits
        config["enableRateLimit"] = False
    exchange: ccxt_async.Exchange = getattr(ccxt_async, name)(config)
    if settings.base_url:
        exchange.urls["api"] = rewrite_urls(exchange.urls["api"], settings.base_url)
    return exchange


@dataclass
class Response:
    """What came back for one call (its own, whatever else is in flight)."""

    status: int | None = None
    headers: Any = None
    broken_body: str | None = None  # a body that is not a JSON document
    requests: int = 0


_RESPONSE: contextvars.ContextVar[Response | None] = contextvars.ContextVar(
    "market_data_response", default=None
)


@dataclass
class Tally:
    """Requests made on behalf of one thing (a market), whatever else is in flight."""

    requests: int = 0


_TALLY: contextvars.ContextVar[Tally | None] = contextvars.ContextVar(
    "market_data_tally", default=None
)


@contextlib.contextmanager
def counting(tally: Tally) -> Iterator[Tally]:
    """Count into ``tally`` the requests made by this task inside the block."""
    token = _TALLY.set(tally)
    try:
        yield tally
    finally:
        _TALLY.reset(token)


def _looks_like_json(body: str) -> bool:
    text = body.strip()
    return bool(text) and (text[0], text[-1]) in (("[", "]"), ("{", "}"))


#: Why a market list cannot be a true state of the exchange (None: it can).
Plausible = Callable[[dict[str, Any]], str | None]


@dataclass(frozen=True)
class MarketsRead:
    """A market list as read: when (our clock, ms) and how many markets it held."""

    at_ms: int
    markets: int


@dataclass
class ExchangeClient:
    """The few calls the project makes; each may run concurrently with others."""

    exchange: ccxt_async.Exchange
    backoff: Backoff = field(default_factory=Backoff)
    #: how a retry waits (the pipeline passes one that a stop cuts short)
    sleep: Sleep = asyncio.sleep
    on_retry: OnRetry | None = None
    #: HTTP responses received (any status)
    requests: int = 0
    #: the exchange asked for a pause (429/418): no request starts before this monotonic time
    paused_until: float = 0.0
    #: requests in flight at once, at most (halved on a 429/418, then grown back)
    max_in_flight: int = 16
    #: pause after a rate limit that says no Retry-After (the exchange's, venues.py)
    rate_limit_pause_s: float = 1.0
    #: the exchange's clock minus ours, as the last fetch_time measured it
    clock_offset_ms: int = 0
    #: when the market list in use was read, and how many markets it held
    markets_read: MarketsRead | None = None
    #: a market list delisting more than this share of the catalog's active instruments at
    #: once is not believed (the exchange's setting)
    max_delisted_share: float = 0.25
    #: the exchange's public data archive (exchanges/archive.py); None: not used
    archive_url: str | None = None
    #: history older than the candle endpoint serves is built from trades (venues.from_trades)
    trades: bool = False

    @classmethod
    def of(
        cls,
        settings: ExchangeSettings,
        sleep: Sleep = asyncio.sleep,
        on_retry: OnRetry | None = None,
    ) -> ExchangeClient:
        """A client whose every request is retried as the exchange's settings say."""
        pause = settings.rate_limit_pause_s
        if pause is None:
            pause = venue(settings.name).rate_limit_pause_s
        return cls(
            build_exchange(settings),
            Backoff.of(settings),
            sleep,
            on_retry,
            rate_limit_pause_s=pause,
            max_delisted_share=settings.max_delisted_share,
            archive_url=archive_url_of(settings),
            trades=from_trades(settings),
        )

    def __post_init__(self) -> None:
        self.gate = Gate(self.max_in_flight)
        parent = self.exchange.on_rest_response
        #: the exchange's own count of used weight, where it reports one (Binance)
        self.budget = WeightBudget(self.sleep) if venue(self.id).reports_weight else None
        if self.budget is not None:
            self._pace(self.budget)

        def observed(
            code: Any, reason: Any, url: Any, method: Any, headers: Any, body: Any, *rest: Any
        ) -> Any:
            self.requests += 1
            if self.budget is not None:
                self.budget.observe(url, headers, body)
            if (tally := _TALLY.get()) is not None:
                tally.requests += 1
            response = _RESPONSE.get()
            if response is not None:  # the call this response belongs to (its own task)
                response.requests += 1
                response.status = int(code) if str(code).isdigit() else None
                response.headers = headers
                if isinstance(body, str) and not _looks_like_json(body):
                    response.broken_body = body
            return parent(code, reason, url, method, headers, body, *rest)

        self.exchange.on_rest_response = observed

    def _pace(self, budget: WeightBudget) -> None:
        """Every HTTP request of ccxt's (after its throttle) first waits for room in the
        exchange's weight window."""
        send = self.exchange.fetch

        async def fetch(
            url: str, method: str = "GET", headers: Any = None, body: Any = None
        ) -> Any:
            ticket = await budget.acquire(url)
            try:
                return await send(url, method, headers, body)
            finally:
                budget.release(ticket)

        self.exchange.fetch = fetch

    @property
    def id(self) -> str:
        return str(self.exchange.id)

    @property
    def page_limit(self) -> int:
        return venue(self.id).page_limit

    @property
    def history_depth(self) -> int | None:
        """Closed candles of a timeframe served by any route this client takes (None: the
        whole history; Kraken without trades: its OHLC's newest)."""
        return depth(self.id, self.trades)

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    async def _call(
        self, method: str, *args: Any, check: Callable[[Any], None] | None = None
    ) -> Any:
        async def attempt() -> Any:
            result = await self.once(method, *args)
            if check is not None:
                check(result)  # raises a temporary error: retried as one
            return result

        return await call_with_retry(
            attempt, self.backoff, self.on_retry, self.sleep, on_pause=self.pause
        )

    async def call(
        self, method: str, *args: Any, check: Callable[[Any], None] | None = None
    ) -> Any:
        """Any ccxt method of the exchange (its implicit endpoints too), retried and its
        errors mapped like every other request; ``check`` raises a temporary error for an
        answer of the wrong shape (retried like a malformed body)."""
        return await self._call(method, *args, check=check)

    async def once(self, method: str, *args: Any) -> Any:
        """One attempt of ``method``; errors mapped to the project's types."""
        async with self.gate:
            while (wait := self.paused_until - time.monotonic()) > 0:
                await self.sleep(wait)
            response = Response()
            token = _RESPONSE.set(response)
            try:
                result = await getattr(self.exchange, method)(*args)
            except (ccxt.BaseError, ValueError) as e:
                error = classify(self.id, e, response.headers, response.status)
                if isinstance(error, RateLimitedError | ExchangeBannedError):
                    self.gate.refused()
                    if error.retry_after is None:  # the exchange's own pause (Bitfinex: 60 s)
                        error.retry_after = self.rate_limit_pause_s
                raise error from e
            finally:
                _RESPONSE.reset(token)
            self.gate.answered()
        if response.broken_body is not None:
            # ccxt hands an unparsable body on as a string, which parses as "no candles".
            raise ExchangeUnavailableError(
                f"{self.id}: response is not valid JSON: {response.broken_body[:60]!r}"
            )
        return result

    async def load_markets(
        self,
        reload: bool = False,
        symbols: list[str] | None = None,
        plausible: Plausible | None = None,
    ) -> dict[str, Any]:
        """The exchange's markets; with ``symbols``, only the market types they need.

        A list that cannot be a true state of the exchange is a temporary fault, retried like
        a 5xx with a fresh load: an answer that is not the exchange's JSON (HTML, truncated),
        a list without any market (JSON of the wrong shape parses to that), or one that
        ``plausible`` rejects (it returns why). ccxt keeps whatever it parsed as the loaded
        markets, so a failed attempt's list is forgotten before the next."""
        if symbols is not None:
            venue(self.id).restrict_types(self.exchange, symbols)
        fresh = reload

        async def attempt() -> dict[str, Any]:
            nonlocal fresh
            try:
                markets = dict(await self.once("load_markets", fresh))
                problem = "has no market" if not markets else plausible and plausible(markets)
                if problem:
                    raise ExchangeUnavailableError(f"{self.id}: the market list {problem}")
            except TemporaryExchangeError:
                self._forget_markets()
                fresh = True
                raise
            return markets

        markets = await call_with_retry(
            attempt, self.backoff, self.on_retry, self.sleep, on_pause=self.pause
        )
        if fresh or self.markets_read is None:
            self.markets_read = MarketsRead(int(time.time() * 1000), len(markets))
        return markets

    def _forget_markets(self) -> None:
        """Drop ccxt's cached market list (its load_markets hands the cached one back, even
        a broken one, until asked to reload)."""
        self.exchange.markets_loading = None
        self.exchange.reloading_markets = False
        self.exchange.markets = None

    async def fetch_time(self) -> int:
        """The exchange's clock: its time endpoint, or where it has none (Bitfinex) the Date
        header of a cheap request (whole seconds: never later than the exchange's time)."""
        method = venue(self.id).clock_method
        asked = time.time()
        if method is None:
            now = int(await self._call("fetch_time"))
        else:
            await self._call(method, {})
            date = header(self.exchange.last_response_headers, "Date")
            if date is None:
                raise ExchangeUnavailableError(f"{self.id}: no Date header to read the clock from")
            now = int(parsedate_to_datetime(date).timestamp() * 1000)
        self.clock_offset_ms = now - int((asked + time.time()) / 2 * 1000)
        return now

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: int | None, limit: int, until: int | None = None
    ) -> list[list[float]]:
        """ccxt's fetch_ohlcv; ``until`` (inclusive) is sent where the exchange takes one,
        else the candles after it are dropped here."""
        if not venue(self.id).takes_until:
            rows = list(await self._call("fetch_ohlcv", symbol, timeframe, since, limit, {}))
            return rows if until is None else [r for r in rows if r[0] <= until]
        params = {} if until is None else {"until": until}
        return list(await self._call("fetch_ohlcv", symbol, timeframe, since, limit, params))

    async def fetch_candles(
        self, symbol: str, timeframe: str, since: int, limit: int, until: int
    ) -> np.ndarray:
        """Candles opening in [since, until] as an (n, 6) array: open time, open, high, low,
        close, volume. Through the venue's klines endpoint directly where the venue table has
        it, else ccxt's fetch_ohlcv."""
        raw = venue(self.id).raw_klines
        if raw is None:
            rows = await self.fetch_ohlcv(symbol, timeframe, since, limit, until)
            return np.asarray(rows, dtype=np.float64).reshape(-1, 6) if rows else np.empty((0, 6))
        if not self.exchange.markets:
            await self.load_markets(symbols=[symbol])
        method, params = raw.request(self.exchange, symbol, timeframe, since, limit, until)
        return raw.table(await self._call(method, params))

    async def fetch_order_book(self, symbol: str, standard: str, depth: int) -> OrderBook:
        """The top ``depth`` levels a side, prices and amounts exact: the venue's depth
        endpoint as text where the venue table has it, else ccxt's fetch_order_book. The
        time is the exchange's where it sends one, else ``exchange_ms()`` (its clock)."""
        raw = venue(self.id).raw_depth
        if raw is None:
            book = await self._call("fetch_order_book", symbol, depth)
            ts = book.get("timestamp") or self.exchange_ms()
            return OrderBook.of(standard, int(ts), book["bids"], book["asks"], depth)
        if not self.exchange.markets:
            await self.load_markets(symbols=[symbol])
        method, params = raw.request(self.exchange, symbol, depth)
        body = await self._call(method, params)
        ts = body.get("T") or body.get("E") or self.exchange_ms()
        return OrderBook.of(standard, int(ts), body["bids"], body["asks"], depth)

    def exchange_ms(self) -> int:
        """The exchange's clock now, from the offset measured by the last ``fetch_time``
        (our own clock before any)."""
        return int(time.time() * 1000) + self.clock_offset_ms

    async def close(self) -> None:
        await self.exchange.close()


class SyncExchangeClient:
    """An ExchangeClient driven from plain code, on an event loop of its own."""

    def __init__(self, client: ExchangeClient) -> None:
        self.client = client
        self._loop = asyncio.new_event_loop()

    @classmethod
    def of(cls, settings: ExchangeSettings) -> SyncExchangeClient:
        return cls(ExchangeClient.of(settings))

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine of this client's (e.g. ``unlisted(client.client, ...)``)."""
        return self._loop.run_until_complete(work)

    @property
    def exchange(self) -> ccxt_async.Exchange:
        return self.client.exchange

    @property
    def requests(self) -> int:
        return self.client.requests

    @property
    def paused_until(self) -> float:
        return self.client.paused_until

    @property
    def page_limit(self) -> int:
        return self.client.page_limit

    def call(self, method: str, *args: Any) -> Any:
        """Any ccxt method of the exchange, retried and mapped like the others."""
        return self.run(self.client.call(method, *args))

    def load_markets(
        self,
        reload: bool = False,
        symbols: list[str] | None = None,
        plausible: Plausible | None = None,
    ) -> dict[str, Any]:
        return self.run(self.client.load_markets(reload, symbols, plausible))

    def fetch_time(self) -> int:
        return self.run(self.client.fetch_time())

    def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: int | None, limit: int, until: int | None = None
    ) -> list[list[float]]:
        return self.run(self.client.fetch_ohlcv(symbol, timeframe, since, limit, until))

    def close(self) -> None:
        if not self._loop.is_closed():
            self.run(self.client.close())
            self._loop.close()

    def __enter__(self) -> SyncExchangeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
