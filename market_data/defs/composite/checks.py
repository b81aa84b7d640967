"""The ``divergence`` check on composite/candles: per partition, sources whose close is
further than ``divergence_pct`` from the composite close, and sources stale relative to the
others; a warning, with exchange, candle and size."""

from collections import Counter

import dagster as dg

from market_data.defs.candles.evaluations import (
    evaluation,
    latest_materializations,
    partition_check,
)
from market_data.defs.candles.partitions import split_partition_key
from market_data.defs.composite.assets import (
    COMPOSITE_KEY,
    composite_partitions,
    cross_of,
    source_finder,
)
from market_data.domain.calendar import month_bounds, utc_text
from market_data.domain.composite import CompositeMarket
from market_data.domain.watchlist import Watchlist
from market_data.store.candles import CandleStore
from market_data.store.composite import Divergence

DIVERGENCE_CHECK = "divergence"
SHOWN = 10


def divergence_check_key() -> dg.AssetCheckKey:
    return dg.AssetCheckKey(COMPOSITE_KEY, DIVERGENCE_CHECK)


def _table(found: list[Divergence]) -> str:
    lines = [
        "| exchange | candle | close | composite close | deviation |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {d.exchange} | {utc_text(d.ts)} | {d.close:g} | {d.composite_close:.8g} | {d.pct:+.3f}% |"
        for d in found[:SHOWN]
    ]  # fmt: skip
    return "\n".join(lines)


def stale_sources(newest: dict[str, int | None], behind_ms: float) -> dict[str, int | None]:
    """Sources whose newest candle is more than ``behind_ms`` older than the newest of all
    (or which have none while others do)."""
    known = [t for t in newest.values() if t is not None]
    if not known:
        return {}
    top = max(known)
    return {e: t for e, t in newest.items() if t is None or top - t > behind_ms}


def divergence_evaluations(
    store: CandleStore, instance: dg.DagsterInstance, watchlist: Watchlist, keys: list[str]
) -> list[dg.AssetCheckEvaluation]:
    cross = cross_of(watchlist)
    targets = latest_materializations(instance, COMPOSITE_KEY, keys)
    sources_of = source_finder(instance, watchlist)
    out = []
    for pk in keys:
        key, month = split_partition_key(pk)
        market = CompositeMarket.parse(key)
        srcs = sources_of(market)
        lo, hi = month_bounds(month)
        found = store.composite.divergences(market, srcs, lo, hi, cross.divergence_pct)
        # behind by more than the stale limit in timeframes, and by more than one freshness
        # interval (exchanges are refreshed at different moments of it)
        behind = max(
            cross.stale_after_timeframes * market.timeframe.ms,
            watchlist.freshness.interval_s * 1000,
        )
        stale = stale_sources(store.composite.newest(market, srcs, lo, hi), behind)
        per_exchange = Counter(d.exchange for d in found)
        metadata: dict[str, dg.MetadataValue] = {
            "divergence_pct": dg.MetadataValue.float(cross.divergence_pct),
            "divergent_candles": dg.MetadataValue.int(len(found)),
            "divergent_by_exchange": dg.MetadataValue.json(dict(sorted(per_exchange.items()))),
            "stale_sources": dg.MetadataValue.json({e: utc_text(t) for e, t in sorted(stale.items())}),
        }  # fmt: skip
        parts = []
        if found:
            worst = found[0]
            metadata["largest_deviation_pct"] = dg.MetadataValue.float(round(worst.pct, 6))
            metadata["first_divergences"] = dg.MetadataValue.md(_table(found))
            parts.append(
                f"{len(found)} source candle(s) more than {cross.divergence_pct:g}% from the "
                f"composite close ({', '.join(f'{e}: {n}' for e, n in sorted(per_exchange.items()))}); "
                f"largest {worst.exchange} {utc_text(worst.ts)} {worst.pct:+.2f}%"
            )  # fmt: skip
        if stale:
            parts.append(
                "stale: "
                + ", ".join(f"{e} (newest {utc_text(t) or 'none'})" for e, t in sorted(stale.items()))
            )  # fmt: skip
        description = "; ".join(parts) or (
            f"every source within {cross.divergence_pct:g}% of the composite close, none stale"
        )
        out.append(
            evaluation(
                divergence_check_key(), pk, not parts, targets=targets,
                severity=dg.AssetCheckSeverity.WARN, description=description, metadata=metadata,
            )
        )  # fmt: skip
    return out


def divergence_check(watchlist: Watchlist) -> dg.AssetChecksDefinition:
    cross = cross_of(watchlist)
    return partition_check(
        COMPOSITE_KEY,
        composite_partitions(watchlist),
        DIVERGENCE_CHECK,
        f"No source close is more than {cross.divergence_pct:g}% from the composite close, and "
        f"no source's newest candle is more than {cross.stale_after_timeframes:g} timeframes "
        "(and one freshness interval) behind the others'. One result per partition; a warning "
        "naming exchange, candle and size.",
        lambda store, instance, keys, _: divergence_evaluations(store, instance, watchlist, keys),
    )
