"""The ``live_status`` sensor: the live service's heartbeat, each minute, as an observation
on ``candles/<exchange>`` (connected, markets, lag per market), so the UI shows whether
candles are arriving over WebSocket. It launches nothing."""

import time

import dagster as dg

from market_data.defs.candles.assets import candle_asset_key
from market_data.defs.resources import CandleStoreResource
from market_data.domain.watchlist import Watchlist, split_key
from market_data.pipeline.live import streaming_exchanges
from market_data.store.live import LiveHealth, live_health

SHOWN = 50  # markets listed in the observation, at most


def observation(exchange: str, health: LiveHealth) -> dg.AssetObservation:
    service = health.service
    assert service is not None
    keys = {k: split_key(k)[1].ms for k in health.streams}
    behind = health.behind(keys)
    lags = sorted((s.lag_ms / 1000, k) for k, s in health.streams.items() if s.lag_ms is not None)
    rows = [
        f"| {k} | {f'{lag:.1f}'} | {'yes' if k not in behind else 'BEHIND'} |"
        for lag, k in sorted(lags, reverse=True)[:SHOWN]
    ]
    table = "| market | lag (s) | current |\n|---|---|---|\n" + "\n".join(rows)
    state = "streaming" if health.healthy else "DOWN"
    return dg.AssetObservation(
        asset_key=candle_asset_key(exchange),
        description=f"live: {state}, {service.streams} market(s), {len(behind)} behind",
        metadata={
            "live_state": dg.MetadataValue.text(state),
            "live_connections": dg.MetadataValue.text(f"{service.connected}/{service.connections}"),
            "live_markets": dg.MetadataValue.int(service.streams),
            "live_behind": dg.MetadataValue.int(len(behind)),
            "live_heartbeat_age_s": dg.MetadataValue.float(
                round(time.time() - service.heartbeat_at / 1000, 1)
            ),
            "live_max_lag_s": dg.MetadataValue.float(lags[-1][0] if lags else 0.0),
            "live_latency_p99_ms": dg.MetadataValue.int(service.latency_p99_ms or 0),
            "live_reconnects": dg.MetadataValue.int(service.reconnects),
            "live_closes_stored": dg.MetadataValue.int(service.closes_stored),
            "live_last_error": dg.MetadataValue.text(service.last_error or "none"),
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
        "observation on candles/<exchange>: streaming or down, connections, markets, lag.",
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
            events.append(observation(name, health))
        if not events:
            return dg.SkipReason("the live service has not run (market-data live)")
        return dg.SensorResult(asset_events=events)

    return sensor
