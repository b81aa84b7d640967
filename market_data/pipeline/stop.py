"""Stopping work at a safe point: between pages, and during a retry's wait.

A page is written with its coverage in one transaction, so stopping between pages loses
nothing; a retry's wait (Retry-After can be a minute) is cut short too, so an interrupted
run ends within about a second, not after the exchange's ban.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class Stopped(Exception):
    """The work was asked to stop (its run is being canceled, or the process interrupted)."""


@dataclass
class Stopper:
    #: whether a stop was asked for; may be slow (a database query), so it is asked at most
    #: once per ``every_s``
    requested: Callable[[], bool] = lambda: False
    every_s: float = 0.5
    _asked_at: float = field(default=float("-inf"), repr=False)
    _stop: bool = field(default=False, repr=False)

    def stopping(self) -> bool:
        now = time.monotonic()
        if not self._stop and now - self._asked_at >= self.every_s:
            self._asked_at = now
            self._stop = bool(self.requested())
        return self._stop

    def check(self) -> None:
        if self.stopping():
            raise Stopped("stopped on request")

    async def sleep(self, seconds: float) -> None:
        """Sleep, but raise Stopped as soon as a stop is asked for."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.check()
            await asyncio.sleep(min(left, self.every_s))
        self.check()

    async def watch(self) -> None:
        """Return when a stop is asked for (a task to race the work against)."""
        while not self.stopping():
            await asyncio.sleep(self.every_s)
