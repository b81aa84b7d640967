"""Order book snapshots (pure): exact levels, crossed books, cadence gaps."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

Level = tuple[Decimal, Decimal]  # price, amount


def exact(value: object) -> Decimal:
    """A price or amount as an exact decimal: the exchange's text as it is; a float (what
    ccxt parses) by its shortest repr, which is the exchange's text for up to 15 significant
    digits."""
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


@dataclass(frozen=True)
class OrderBook:
    """One snapshot of a market's book: the top levels of each side, best first."""

    symbol: str  # standard name
    ts: int  # exchange time of the snapshot, epoch ms
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]

    @classmethod
    def of(
        cls, symbol: str, ts: int, bids: Iterable[Sequence[object]], asks: Iterable[Sequence[object]],
        depth: int,
    ) -> OrderBook:  # fmt: skip
        def side(rows: Iterable[Sequence[object]]) -> tuple[Level, ...]:
            return tuple((exact(r[0]), exact(r[1])) for r in list(rows)[:depth])

        return cls(symbol, ts, side(bids), side(asks))

    @property
    def crossed(self) -> bool:
        """Best bid at or above the best ask: a book no exchange can have."""
        return bool(self.bids and self.asks and self.bids[0][0] >= self.asks[0][0])


def cadence_gaps(
    times: Sequence[int], interval_ms: int, since: int, until: int, slack: float = 0.5
) -> list[tuple[int, int]]:
    """Spans in [since, until) longer than ``interval_ms * (1 + slack)`` without a snapshot
    (``times`` sorted): (last snapshot before, next one or ``until``)."""
    allowed = interval_ms * (1 + slack)
    gaps = []
    previous = since
    for t in [*times, until]:
        if t - previous > allowed:
            gaps.append((previous, t))
        previous = max(previous, t)
    return gaps
