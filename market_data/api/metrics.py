"""The status report as Prometheus metrics, collected when scraped (nothing is kept between
scrapes). Per market: lag, rows, expected, absent, open gaps and the candles in them by kind,
exchange-empty candles, stale; the store's health; the runs of the last 24 hours."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from market_data.pipeline.status import MarketStatus, StatusReport

LABELS = ["exchange", "market", "symbol", "timeframe"]

#: metric name -> (help, the market's value)
PER_MARKET: dict[str, tuple[str, Callable[[MarketStatus], float | None]]] = {
    "market_data_lag_seconds": (
        "Seconds from the newest stored candle's close to the exchange clock", lambda m: m.lag_s
    ),
    "market_data_stale": ("1 when the market lags more than max_lag_timeframes", lambda m: m.stale),
    "market_data_rows": ("Candles stored", lambda m: m.rows),
    "market_data_expected_candles": ("Candles expected (listing to the exchange clock)", lambda m: m.expected),
    "market_data_absent_candles": ("Expected candles not stored, whatever the reason", lambda m: m.absent),
    "market_data_open_gaps": ("Open gaps (to repair)", lambda m: m.open_gaps),
    "market_data_missing_candles": ("Candles in open gaps of kind missing (never fetched)", lambda m: m.missing),
    "market_data_empty_candles": ("Candles in open gaps of kind empty (fetched, none returned, unconfirmed)", lambda m: m.empty),
    "market_data_exchange_empty_candles": ("Candles the exchange confirmed it does not have", lambda m: m.exchange_empty),
    "market_data_unavailable_candles": ("Candles older than the history the exchange serves (Kraken: its newest 720), not stored", lambda m: m.unavailable),
}  # fmt: skip


class StatusCollector(Collector):
    def __init__(self, report: Callable[[], StatusReport]) -> None:
        self._report = report

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report = self._report()
        yield GaugeMetricFamily(
            "market_data_database_up", "1 when the candle store answers", value=report.database_ok
        )
        if report.database_latency_ms is not None:
            yield GaugeMetricFamily(
                "market_data_database_latency_seconds",
                "Round trip to the candle store",
                value=report.database_latency_ms / 1000,
            )
        for name, (text, value_of) in PER_MARKET.items():
            family = GaugeMetricFamily(name, text, labels=LABELS)
            for m in report.markets:
                value = value_of(m)
                if value is not None:
                    family.add_metric([m.exchange, m.market, m.symbol, m.timeframe], float(value))
            yield family
        runs = GaugeMetricFamily(
            "market_data_runs_24h",
            "Runs created in the last 24 hours",
            labels=["exchange", "status"],
        )
        for exchange, counts in report.runs_24h.items():
            for status, n in counts.items():
                runs.add_metric([exchange, status], n)
        yield runs
