"""The status report as Prometheus metrics, made when scraped from the API's status report
(refreshed in the background). Label cardinality stays bounded at a whole exchange: per
series only the lag; per series and only where something is wrong, stale and the open gaps
(by kind); per exchange and timeframe the sums (series, rows, expected, absent, ...); the
store's health; the runs of the last 24 hours."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from market_data.pipeline.status import MarketStatus, StatusReport

LABELS = ["exchange", "market", "symbol", "timeframe"]
GROUP = ["exchange", "timeframe"]

#: Per series, every series: its lag (the one figure each series needs watching by, and
#: what the live alert reads). 15,000 series (a whole exchange x 6 timeframes) are 15,000
#: lines of this one metric.
PER_SERIES: dict[str, tuple[str, Callable[[MarketStatus], float | None]]] = {
    "market_data_lag_seconds": (
        "Seconds from the newest stored candle's close to the exchange clock",
        lambda m: m.lag_s,
    ),
}
#: Per series, only where nonzero: the problems, named (stale, gaps); bounded by how much is
#: wrong, not by how much is watched, and what the alert rules name markets by
PER_PROBLEM: dict[str, tuple[str, Callable[[MarketStatus], float]]] = {
    "market_data_stale": (
        "1 when the market lags more than max_lag_timeframes (stale markets only)",
        lambda m: m.stale,
    ),
    "market_data_open_gaps": (
        "Open gaps (to repair; markets with some only)",
        lambda m: m.open_gaps,
    ),
    "market_data_missing_candles": (
        "Candles in open gaps of kind missing, never fetched (markets with some only)",
        lambda m: m.missing,
    ),
    "market_data_empty_candles": (
        "Candles in open gaps of kind empty, fetched, none returned, unconfirmed (markets with some only)",
        lambda m: m.empty,
    ),
}
#: Per exchange and timeframe, summed over its series (the per-series figures are in
#: /ingestion/status)
PER_GROUP: dict[str, tuple[str, Callable[[MarketStatus], float]]] = {
    "market_data_series": ("Watched series (market x timeframe)", lambda m: 1),
    "market_data_rows": ("Candles stored", lambda m: m.rows),
    "market_data_expected_candles": ("Candles expected (listing to the exchange clock)", lambda m: m.expected),
    "market_data_absent_candles": ("Expected candles not stored, whatever the reason", lambda m: m.absent),
    "market_data_exchange_empty_candles": ("Candles the exchange confirmed it does not have", lambda m: m.exchange_empty),
    "market_data_unavailable_candles": ("Candles older than the history the exchange serves (Kraken: its newest 720), not stored", lambda m: m.unavailable),
    "market_data_stale_series": ("Series lagging more than max_lag_timeframes", lambda m: m.stale),
    "market_data_series_with_gaps": ("Series with open gaps", lambda m: m.open_gaps > 0),
}  # fmt: skip


class StatusCollector(Collector):
    def __init__(
        self, report: Callable[[], StatusReport], age: Callable[[], float | None] = lambda: None
    ) -> None:
        self._report, self._age = report, age

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report = self._report()
        yield GaugeMetricFamily(
            "market_data_database_up", "1 when the candle store answers", value=report.database_ok
        )
        if (age := self._age()) is not None:
            yield GaugeMetricFamily(
                "market_data_status_age_seconds",
                "Age of the status report these figures come from",
                value=round(age, 3),
            )
        if report.database_latency_ms is not None:
            yield GaugeMetricFamily(
                "market_data_database_latency_seconds",
                "Round trip to the candle store",
                value=report.database_latency_ms / 1000,
            )
        for name, (text, value_of) in PER_SERIES.items():
            family = GaugeMetricFamily(name, text, labels=LABELS)
            for m in report.markets:
                value = value_of(m)
                if value is not None:
                    family.add_metric([m.exchange, m.market, m.symbol, m.timeframe], float(value))
            yield family
        for name, (text, value_of) in PER_PROBLEM.items():
            family = GaugeMetricFamily(name, text, labels=LABELS)
            for m in report.markets:
                if value := value_of(m):
                    family.add_metric([m.exchange, m.market, m.symbol, m.timeframe], float(value))
            yield family
        sums: dict[tuple[str, str], list[float]] = {}
        for m in report.markets:
            group = sums.setdefault((m.exchange, m.timeframe), [0.0] * len(PER_GROUP))
            for i, (_, value_of) in enumerate(PER_GROUP.values()):
                group[i] += float(value_of(m))
        for i, (name, (text, _)) in enumerate(PER_GROUP.items()):
            family = GaugeMetricFamily(name, text, labels=GROUP)
            for (exchange, timeframe), values in sorted(sums.items()):
                family.add_metric([exchange, timeframe], values[i])
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
