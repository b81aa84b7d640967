"""The project's few exchange error types, and the one place ccxt errors are mapped to them.

Temporary errors may succeed if retried (rate limits, bans, outages, broken responses);
permanent ones never will (unknown symbol, bad parameters). Retries act on temporary only.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

import ccxt


class ExchangeDataError(Exception):
    """Base of every error raised at the exchange boundary."""

    def with_context(self, context: str) -> ExchangeDataError:
        """The same error (type and attributes) with ``context`` before its message."""
        new = copy.copy(self)
        new.args = (f"{context}: {self}",)
        return new


class TemporaryExchangeError(ExchangeDataError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds the exchange asked us to wait, if it said


class RateLimitedError(TemporaryExchangeError):
    """429: slow down, then retry after ``retry_after`` seconds."""


class ExchangeBannedError(TemporaryExchangeError):
    """418: the exchange banned this client for ``retry_after`` seconds."""


class ExchangeUnavailableError(TemporaryExchangeError):
    """5xx, timeouts, connection failures, truncated or malformed responses."""


class PermanentExchangeError(ExchangeDataError):
    """Retrying will not help."""


class UnknownExchangeError(PermanentExchangeError):
    pass


class BadSymbolError(PermanentExchangeError):
    pass


class BadRequestError(PermanentExchangeError):
    pass


# Exchange error codes in response bodies, per exchange. ccxt maps them only for URLs on the
# exchange's own hosts; read from the body here, behaviour is the same against any URL.
_BODY_CODES: dict[str, dict[int, type[ExchangeDataError]]] = {
    "binance": {
        -1003: RateLimitedError,
        -1008: ExchangeUnavailableError,
        -1001: ExchangeUnavailableError,
        -1121: BadSymbolError,
        -1120: BadRequestError,
        -1100: BadRequestError,
        -1102: BadRequestError,
        -1130: BadRequestError,
        -1023: BadRequestError,
    },
}
_BODY = re.compile(r"\{.*\}", re.S)
_STATUS = re.compile(r"\s(4\d\d|5\d\d)\s")


def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds of a response's Retry-After header, if it has a number there."""
    raw = header(headers, "Retry-After")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def _body_code(message: str) -> int | None:
    match = _BODY.search(message)
    if match is None:
        return None
    try:
        code = json.loads(match.group(0)).get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, int) else None


def _describe(exchange_id: str, error: Exception, http_status: int | None) -> str:
    """The error's text with its key word first: the HTTP status, or what went wrong when
    no response came back (timed out, connection failed)."""
    if isinstance(error, ccxt.RequestTimeout):
        return f"{exchange_id}: timed out: {error}"
    if http_status is not None and http_status != 200:
        return f"{exchange_id}: HTTP {http_status}: {error}"
    if isinstance(error, ccxt.NetworkError) and http_status is None:
        return f"{exchange_id}: connection failed: {error}"
    return f"{exchange_id}: {error}"


def classify(
    exchange_id: str,
    error: Exception,
    headers: Mapping[str, Any] | None,
    http_status: int | None = None,
) -> ExchangeDataError:
    """The project error for a ccxt error raised by ``exchange_id``."""
    message = _describe(exchange_id, error, http_status)
    wait = retry_after(headers)
    status = _STATUS.search(f" {error} ")
    if http_status is not None and http_status >= 400:
        status = _STATUS.search(f" {http_status} ")
    code = _body_code(str(error))
    if (status and status.group(1) == "418") or "banned until" in str(error):
        return ExchangeBannedError(message, wait)
    kind = _BODY_CODES.get(exchange_id, {}).get(code) if code is not None else None
    if kind is not None:
        if issubclass(kind, TemporaryExchangeError):
            return kind(message, wait)
        return kind(message)
    if isinstance(error, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        return RateLimitedError(message, wait)
    if isinstance(error, ccxt.NetworkError | ccxt.BadResponse):
        return ExchangeUnavailableError(message, wait)
    if isinstance(error, ccxt.BadSymbol):
        return BadSymbolError(message)
    if isinstance(error, ccxt.BadRequest | ccxt.ArgumentsRequired | ccxt.NotSupported):
        return BadRequestError(message)
    if isinstance(error, ValueError):  # a body that is not the JSON it should be
        return ExchangeUnavailableError(message)
    if status and status.group(1).startswith("5"):
        return ExchangeUnavailableError(message, wait)
    return PermanentExchangeError(message)
