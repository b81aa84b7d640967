"""Retrying one exchange call: exponential backoff with jitter, honouring Retry-After.

Only temporary errors are retried; a 418 ban or a 429 pauses the whole client (every
request of that exchange waits) for the time the exchange asked. When attempts run out the
last error is raised: nothing is skipped silently.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from market_data.domain.watchlist import ExchangeSettings
from market_data.exchanges.errors import (
    ExchangeBannedError,
    RateLimitedError,
    TemporaryExchangeError,
)

T = TypeVar("T")
OnRetry = Callable[[int, TemporaryExchangeError, float], None]
Sleep = Callable[[float], Awaitable[None]]


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


async def call_with_retry(
    call: Callable[[], Awaitable[T]],
    backoff: Backoff = Backoff(),
    on_retry: OnRetry | None = None,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
    on_pause: Callable[[float], None] | None = None,
) -> T:
    """``await call()``, retried on temporary errors. A rate limit (429) or ban (418) the
    exchange answered with Retry-After is passed to ``on_pause``, so every request of the
    client waits, not only this one."""
    rng = rng or random.Random()
    for attempt in range(1, backoff.attempts + 1):
        try:
            return await call()
        except TemporaryExchangeError as e:
            wait = backoff.delay(attempt, e.retry_after, rng)
            if attempt == backoff.attempts or wait > backoff.max_wait_s:
                raise
            if isinstance(e, ExchangeBannedError | RateLimitedError) and on_pause is not None:
                on_pause(max(wait, e.retry_after or 0.0))
            if on_retry is not None:
                on_retry(attempt, e, wait)
            await sleep(wait)
    raise AssertionError("unreachable")


class Gate:
    """How many requests of a client may be in flight: at most ``limit``; halved by each
    rate limit or ban (one 429 slows the whole exchange, not just one request), grown back
    by one after ``GROW_AFTER`` times as many successes in a row as the current limit (AIMD,
    as TCP does). The throttle keeps a well-configured client under the limit; this keeps a
    client without one (or sharing the address with another) from hammering."""

    GROW_AFTER = 4

    def __init__(self, limit: int) -> None:
        self.max = self.limit = max(1, limit)
        self.active = 0
        self._streak = 0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> Gate:
        async with self._changed:
            await self._changed.wait_for(lambda: self.active < self.limit)
            self.active += 1
        return self

    async def __aexit__(self, *_: object) -> None:
        async with self._changed:
            self.active -= 1
            # as many waiters as there are free slots, not all of them: with thousands
            # waiting (a fill of 15,000 series), waking all at every release is quadratic
            self._changed.notify(max(1, self.limit - self.active))

    def refused(self) -> None:
        self.limit = max(1, self.limit // 2)
        self._streak = 0

    def answered(self) -> None:
        self._streak += 1
        if self._streak >= self.GROW_AFTER * self.limit and self.limit < self.max:
            self.limit += 1
            self._streak = 0
