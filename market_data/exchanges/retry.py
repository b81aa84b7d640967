"""Retrying one exchange call: exponential backoff with jitter, honouring Retry-After.

Only temporary errors are retried; a 418 ban pauses the whole client (every later call
waits) for the time the exchange asked. When attempts run out the last error is raised:
nothing is skipped silently.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from market_data.domain.watchlist import ExchangeSettings
from market_data.exchanges.errors import ExchangeBannedError, TemporaryExchangeError

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    attempts: int = ExchangeSettings.retry_attempts
    base_s: float = ExchangeSettings.retry_base_s
    cap_s: float = 60.0
    jitter: float = 0.25  # +/- this share of the delay
    #: longest Retry-After honoured; a longer ban fails the call instead of sleeping for hours
    max_wait_s: float = 900.0

    @classmethod
    def of(cls, settings: ExchangeSettings) -> Backoff:
        return cls(attempts=settings.retry_attempts, base_s=settings.retry_base_s)

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        backoff = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        backoff *= 1 + rng.uniform(-self.jitter, self.jitter)
        return max(backoff, retry_after or 0.0)


OnRetry = Callable[[int, TemporaryExchangeError, float], None]


def call_with_retry(
    call: Callable[[], T],
    backoff: Backoff = Backoff(),
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    on_ban: Callable[[float], None] | None = None,
) -> T:
    """``call()``, retried on temporary errors; a ban (418) is passed to ``on_ban`` with the
    time it lasts, so the whole client pauses, not only this call."""
    rng = rng or random.Random()
    for attempt in range(1, backoff.attempts + 1):
        try:
            return call()
        except TemporaryExchangeError as e:
            wait = backoff.delay(attempt, e.retry_after, rng)
            if attempt == backoff.attempts or wait > backoff.max_wait_s:
                raise
            if isinstance(e, ExchangeBannedError) and on_ban is not None:
                on_ban(wait)
            if on_retry is not None:
                on_retry(attempt, e, wait)
            sleep(wait)
    raise AssertionError("unreachable")
