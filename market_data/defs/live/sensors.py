"""The ``live_status`` sensor: the live service's heartbeat, each minute, as an observation
on each ``candles/<exchange>/<timeframe>`` it streams (connected, markets, lag per market),
so the UI shows whether candles are arriving over WebSocket. It launches nothing."""

from dataclasses import replace

import dagster as dg

from market_data.defs.candles.assets import candle_asset_key
from market_data.defs.candles.partitions import timeframe_of
from market_data.defs.resources import CandleStoreResource
from market_data.domain.watchlist import Watchlist, split_key
from market_data.pipeline.live import streaming_exchanges
from market_data.pipeline.status import live_summary
from market_data.store.live import LiveHealth, live_health

SHOWN = 50  # markets listed in the observation, at most


def observations(exchange: str, health: LiveHealth) -> list[dg.AssetObservation]:
    """One observation per timeframe streamed, on that timeframe's asset."""
    frames = sorted({timeframe_of(k) for k in health.streams})
    return [
        observation(
            exchange,
            tf,
            replace(
                health, streams={k: s for k, s in health.streams.items() if k.endswith(f":{tf}")}
            ),
        )
        for tf in frames
    ]


def observation(exchange: str, timeframe: str, health: LiveHealth) -> dg.AssetObservation:
    service = health.service
    assert service is not None
    keys = {k: split_key(k)[1].ms for k in health.streams}
    behind = health.behind(keys)
    lags = sorted(
        ((s.lag_ms / 1000, k) for k, s in health.streams.items() if s.lag_ms is not None),
        reverse=True,
    )
    rows = [
        f"| {k} | {lag:.1f} | {'yes' if k not in behind else 'BEHIND'} |" for lag, k in lags[:SHOWN]
    ]
    table = "| market | lag (s) | current |\n|---|---|---|\n" + "\n".join(rows)
    summary = live_summary(health)  # what `market-data status` prints, the same names
    return dg.AssetObservation(
        asset_key=candle_asset_key(exchange, timeframe),
        description=f"live: {summary['state']}, {len(health.streams)} of {service.streams} "
        f"market(s) at {timeframe}, {len(behind)} behind",
        metadata={
            **{f"live_{k}": v for k, v in summary.items() if v is not None},
            "live_behind": dg.MetadataValue.int(len(behind)),
            "live_max_lag_s": dg.MetadataValue.float(lags[0][0] if lags else 0.0),
            "live_lag_by_market": dg.MetadataValue.md(table),
        },
    )


def live_sensor(watchlist: Watchlist) -> dg.SensorDefinition:
    names = streaming_exchanges(watchlist)

    @dg.sensor(
        name="live_status",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Each minute, the live service's heartbeat (`market-data live`) as an "
        "observation on candles/<exchange>/<timeframe>: streaming or down, connections, "
        "markets, lag.",
    )
    def sensor(
        context: dg.SensorEvaluationContext, candle_store: CandleStoreResource
    ) -> dg.SensorResult | dg.SkipReason:
        store = candle_store.store()
        events = []
        for name in names:
            health = live_health(store.live, name, watchlist.live.stale_after_s)
            if health.service is None:
                context.log.info(f"{name}: the live service has not run")
                continue
            events += observations(name, health)
        if not events:
            return dg.SkipReason("the live service has not run (market-data live)")
        return dg.SensorResult(asset_events=events)

    return sensor
