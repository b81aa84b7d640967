"""Build ccxt clients (optionally pointed at a local simulator) and call them safely."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import ccxt

from market_data.domain.watchlist import ExchangeSettings
from market_data.exchanges.errors import (
    ExchangeUnavailableError,
    UnknownExchangeError,
    mapped_errors,
)
from market_data.exchanges.retry import Backoff, OnRetry, call_with_retry

#: Largest page of candles per request, by exchange (ccxt's cap where it has one).
PAGE_LIMITS: dict[str, int] = {"binance": 1000}
DEFAULT_PAGE_LIMIT = 500


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


def build_exchange(settings: ExchangeSettings) -> ccxt.Exchange:
    """A ccxt exchange by id; with a ``base_url`` every API URL points there instead."""
    name = settings.name
    if name not in ccxt.exchanges:
        raise UnknownExchangeError(f"unknown exchange {name!r}: ccxt has no exchange of that id")
    config: dict[str, Any] = {"enableRateLimit": True, "timeout": settings.timeout_ms}
    if settings.rate_limit_ms is not None:  # ccxt's throttle: rateLimit x cost between requests
        config["rateLimit"] = settings.rate_limit_ms
    exchange: ccxt.Exchange = getattr(ccxt, name)(config)
    if settings.base_url:
        exchange.urls["api"] = rewrite_urls(exchange.urls["api"], settings.base_url)
    return exchange


@dataclass
class ExchangeClient:
    """The few calls the project makes: each retried on temporary errors (backoff, jitter,
    Retry-After, bans), errors mapped, HTTP requests counted."""

    exchange: ccxt.Exchange
    backoff: Backoff = field(default_factory=Backoff)
    #: how a retry waits (the pipeline passes one that an interrupt cuts short)
    sleep: Callable[[float], None] = time.sleep
    on_retry: OnRetry | None = None
    #: HTTP responses received (any status), counted by ccxt's on_rest_response hook
    requests: int = 0
    #: the exchange asked for a pause (418): no request before this monotonic time
    paused_until: float = field(default=0.0)
    #: HTTP status of the last response (None: no response, e.g. a timeout)
    last_status: int | None = None

    @classmethod
    def of(
        cls,
        settings: ExchangeSettings,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: OnRetry | None = None,
    ) -> ExchangeClient:
        """A client whose every request is retried as the exchange's settings say."""
        return cls(build_exchange(settings), Backoff.of(settings), sleep, on_retry)

    def __post_init__(self) -> None:
        self.exchange.enableLastJsonResponse = True
        parent = self.exchange.on_rest_response

        def counted(
            code: Any, reason: Any, url: Any, method: Any, headers: Any, body: Any, *rest: Any
        ) -> Any:
            self.requests += 1
            self.last_status = int(code) if str(code).isdigit() else None
            return parent(code, reason, url, method, headers, body, *rest)

        self.exchange.on_rest_response = counted

    @property
    def id(self) -> str:
        return str(self.exchange.id)

    @property
    def page_limit(self) -> int:
        return PAGE_LIMITS.get(self.id, DEFAULT_PAGE_LIMIT)

    def _pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    def _call(self, method: str, *args: Any) -> Any:
        return call_with_retry(
            lambda: self._once(method, *args),
            self.backoff,
            self.on_retry,
            self.sleep,
            on_ban=self._pause,
        )

    def _once(self, method: str, *args: Any) -> Any:
        wait = self.paused_until - time.monotonic()
        if wait > 0:
            self.sleep(wait)
        self.last_status = None
        with mapped_errors(self.exchange, lambda: self.last_status):
            self.exchange.last_http_response = None
            result = getattr(self.exchange, method)(*args)
            body = self.exchange.last_http_response
            if body and self.exchange.last_json_response is None:
                # ccxt hands an unparsable body on as a string, which parses as "no candles".
                raise ExchangeUnavailableError(
                    f"{self.id}: response is not valid JSON: {body[:60]!r}"
                )
        return result

    def load_markets(self, reload: bool = False) -> dict[str, Any]:
        return dict(self._call("load_markets", reload))

    def fetch_time(self) -> int:
        return int(self._call("fetch_time"))

    def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: int | None, limit: int, until: int | None = None
    ) -> list[list[float]]:
        params = {} if until is None else {"until": until}
        return list(self._call("fetch_ohlcv", symbol, timeframe, since, limit, params))
