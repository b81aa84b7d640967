"""The instrument catalog, watchlist selections, and the watchlist sensor."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import ccxt
import dagster as dg
import pytest

from market_data.defs.candles.partitions import RANGE_END, RANGE_START
from market_data.defs.candles.sensors import watchlist_sensor
from market_data.defs.instruments.assets import instruments_asset
from market_data.defs.resources import STORE_KEY
from market_data.domain.catalog import Instrument, build_catalog, instrument_from_ccxt
from market_data.domain.selection import resolve
from market_data.domain.watchlist import parse_watchlist
from market_data.exchanges.client import SyncExchangeClient
from market_data.simulator.markets import DELIVERY_261225
from market_data.simulator.server import RunningSimulator
from market_data_tests.candle_harness import Harness, watchlist
from market_data_tests.helpers import admin

TODAY = date(2026, 11, 21)


def _market(symbol: str, **kw: object) -> dict:
    base, rest = symbol.split("/")
    quote = rest.split(":")[0]
    settle = rest.split(":")[1].split("-")[0] if ":" in rest else None
    return {"symbol": symbol, "id": symbol.replace("/", ""), "base": base, "quote": quote, "settle": settle,
            "spot": settle is None, "swap": settle is not None and "-" not in rest,
            "future": "-" in rest, "active": True, "precision": {"price": 0.01, "amount": 0.001}, **kw}  # fmt: skip


@pytest.mark.parametrize(
    ("market", "standard", "kind"),
    [
        (_market("BTC/USDT"), "BTC-USDT-SPOT", "spot"),
        (_market("XBT/USD"), "BTC-USD-SPOT", "spot"),
        (_market("ETH/USDT:USDT"), "ETH-USDT-PERP", "perp"),
        (_market("BTC/USD:BTC"), "BTC-USD-PERP", "perp"),
        (
            _market("BTC/USDT:USDT-261225", expiry=DELIVERY_261225),
            "BTC-USDT-FUTURE_261225",
            "future",
        ),
    ],
)
def test_standard_names_from_ccxt_markets(market: dict, standard: str, kind: str) -> None:
    inst = instrument_from_ccxt("x", market)
    assert inst is not None and (inst.symbol, inst.kind) == (standard, kind)


def test_options_are_not_kept() -> None:
    assert instrument_from_ccxt("x", {**_market("BTC/USDT"), "spot": False, "option": True}) is None


def test_one_listing_per_standard_name_by_the_documented_rule() -> None:
    catalog = build_catalog("x", [
        _market("XBT/USD"), _market("BTC/USD"),                        # alias loses
        _market("BTC/USD:BTC"), _market("BTC/USD:USD"),                # linear wins
        _market("ETH/USDT", active=False), _market("ETH/USDT", id="ETHUSDT2"),  # active wins
    ])  # fmt: skip
    assert catalog["BTC-USD-SPOT"].ccxt_symbol == "BTC/USD"
    assert catalog["BTC-USD-PERP"].ccxt_symbol == "BTC/USD:USD"
    assert catalog["ETH-USDT-SPOT"].exchange_symbol == "ETHUSDT2"


def test_the_simulators_catalog(client: SyncExchangeClient) -> None:
    catalog = build_catalog("binance", client.load_markets().values())
    assert {"BTC-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP", "BTC-USDT-FUTURE_261225"} <= set(
        catalog
    )
    assert catalog["BTC-USDT-FUTURE_261225"].expiry == DELIVERY_261225
    assert not catalog["BTC-USDT-FUTURE_260925"].active and not catalog["OLD-USDT-SPOT"].active
    assert (
        catalog["BTC-USDT-SPOT"].tick_size == 0.01
        and catalog["BTC-USDT-SPOT"].exchange_symbol == "BTCUSDT"
    )


def test_instruments_asset_stores_the_catalog_and_reports_changes(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    h = Harness(
        watchlist(sim.url, []), f"sqlite:///{tmp_path}/c.sqlite", dg.DagsterInstance.ephemeral()
    )
    asset = instruments_asset("binance")

    def refresh() -> dict:
        result = dg.materialize([asset], instance=h.instance, resources=h.resources)
        return {
            k: v.value
            for k, v in result.asset_materializations_for_node(asset.op.name)[0].metadata.items()
        }

    first = refresh()
    assert first["added"] == first["instruments"] == 29
    assert (first["active_spot"], first["active_perp"], first["active_future"]) == (23, 3, 1)
    assert refresh()["added"] == 0
    admin(sim.url, "clock", {"fixed_ms": DELIVERY_261225 + 1})  # the December future delivers
    third = refresh()
    assert third["delisted"] == 1 and third["delisted_symbols"] == "BTC-USDT-FUTURE_261225"
    row = h.store.instruments.stored("binance")["BTC-USDT-FUTURE_261225"]
    assert not row.instrument.active and row.delisted_at == DELIVERY_261225


def _catalog(exchange: str, *names: str, inactive: tuple[str, ...] = ()) -> dict[str, Instrument]:
    out = {}
    for name in names + inactive:
        base, quote, kind = name.split("-")
        out[name] = Instrument(exchange, name, "", None, base, quote, None, kind.lower().split("_")[0],
                               name not in inactive)  # fmt: skip
    return out


def test_selection_by_filters_and_validation() -> None:
    wl = parse_watchlist({
        "exchanges": {"binance": {
            "markets": ["BTC/USDT/1h", "NOPE/USDT/1h", "OLD/USDT/1h", "GONE/USDT/1h"],
            "select": [{"quote": "USDT", "type": "perp", "timeframes": ["1h", "1d"]}],
        }},
    }, frozenset(ccxt.exchanges), TODAY)  # fmt: skip
    catalogs = {"binance": _catalog("binance", "BTC-USDT-SPOT", "BTC-USDT-PERP", "ETH-USDT-PERP", "ETH-BTC-PERP",
                                    inactive=("OLD-USDT-SPOT", "SOL-USDT-PERP", "GONE-USDT-SPOT"))}  # fmt: skip
    res = resolve(wl, catalogs, existing={"binance": {"GONE-USDT-SPOT:1h"}})
    assert sorted(res.markets["binance"]) == [
        "BTC-USDT-PERP:1d", "BTC-USDT-PERP:1h", "BTC-USDT-SPOT:1h", "ETH-USDT-PERP:1d", "ETH-USDT-PERP:1h",
        "GONE-USDT-SPOT:1h",  # delisted after it was watched: history kept
    ]  # fmt: skip
    assert "binance: NOPE-USDT-SPOT is not listed; NOPE-USDT-SPOT:1h skipped" in res.problems
    assert "binance: OLD-USDT-SPOT is listed as inactive; OLD-USDT-SPOT:1h skipped" in res.problems
    assert any("GONE-USDT-SPOT:1h is delisted" in n for n in res.notes)


def test_cross_exchange_minimum() -> None:
    wl = parse_watchlist({
        "exchanges": {"binance": {}, "kraken": {}, "okx": {}},
        "cross_exchange": {"symbols": ["BTC/USDT", "ETH-USDT-SPOT", "SOL/USDT"], "timeframes": ["1h"],
                           "min_exchanges_required": 2},
    }, frozenset(ccxt.exchanges), TODAY)  # fmt: skip
    catalogs = {
        "binance": _catalog("binance", "BTC-USDT-SPOT", "ETH-USDT-SPOT", "SOL-USDT-SPOT"),
        "kraken": _catalog("kraken", "BTC-USDT-SPOT", "ETH-USDT-SPOT", inactive=("SOL-USDT-SPOT",)),
        "okx": _catalog("okx", "BTC-USDT-SPOT"),
    }
    res = resolve(wl, catalogs)
    assert "2/3 symbols meet the minimum of 2 exchange(s)" in res.notes
    assert sorted(res.markets["okx"]) == ["BTC-USDT-SPOT:1h"]
    assert sorted(res.markets["kraken"]) == ["BTC-USDT-SPOT:1h", "ETH-USDT-SPOT:1h"]
    everyone = parse_watchlist({"exchanges": {"binance": {}, "kraken": {}, "okx": {}},
                                "cross_exchange": {"symbols": ["BTC/USDT", "ETH/USDT"], "min_exchanges_required": 0}},
                               frozenset(ccxt.exchanges), TODAY)  # fmt: skip
    assert "1/2 symbols meet the minimum of 3 exchange(s)" in resolve(everyone, catalogs).notes


def test_sensor_adds_partitions_launches_ranged_backfills_and_drops_removed(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/c.sqlite"
    wl = parse_watchlist(
        {"start": "2025-06-01", "exchanges": {"binance": {
            "base_url": sim.url, "rate_limit_ms": 0, "step_retries": 0,
            "markets": ["BTC/USDT/1d", "NOPE/USDT/1h"], "select": [{"type": "perp", "quote": "USDT", "timeframes": ["1d"], "base": ["ETH"]}],
        }}}, frozenset(ccxt.exchanges), TODAY)  # fmt: skip
    h = Harness(wl, url, dg.DagsterInstance.ephemeral())
    dg.materialize([instruments_asset("binance")], instance=h.instance, resources=h.resources)
    h.instance.delete_dynamic_partition("markets_binance_1h", "NOPE-USDT-SPOT:1h")
    h.instance.delete_dynamic_partition("markets_binance_1d", "BTC-USDT-SPOT:1d")
    sensor = watchlist_sensor(wl)
    with dg.build_sensor_context(
        instance=h.instance, resources={STORE_KEY: h.resources[STORE_KEY]}
    ) as ctx:
        result = sensor(ctx)
    added = [k for r in result.dynamic_partitions_requests for k in r.partition_keys]
    assert sorted(added) == ["BTC-USDT-SPOT:1d", "ETH-USDT-PERP:1d"]  # NOPE is reported, not added
    # From 2025-06 to this year (the sensor plans by today's date): both new markets' history
    # is a few pages, so one ranged run over both markets x every year, not a run per
    # market or partition.
    (run,) = result.run_requests
    order = sorted(added, key=lambda k: (k != "BTC-USDT-SPOT:1d", k))  # same first month
    this_year = datetime.now(UTC).year
    assert (run.tags[RANGE_START], run.tags[RANGE_END]) == (
        f"{order[0]}|2025", f"{order[-1]}|{this_year}"
    )  # fmt: skip
    assert run.tags["market_data/reason"] == "2 new markets"
    # Apply the partitions as the daemon would, then run the requested backfill.
    for req in result.dynamic_partitions_requests:
        h.instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    assert h.run(run.tags[RANGE_START], run.tags[RANGE_END]).success
    assert len(h.stored("ETH-USDT-PERP", "1d")) > 300
    stored = h.stored("BTC-USDT-SPOT", "1d")
    assert (
        stored[0][0] == 1_748_736_000_000
        and len(stored) == (1_795_132_800_000 - 1_748_736_000_000) // 86_400_000
    )
    # A market taken out of the watchlist loses its partition; its candles stay.
    smaller = parse_watchlist({"start": "2025-06-01", "exchanges": {"binance": {"base_url": sim.url, "markets": []}}},
                              frozenset(ccxt.exchanges), TODAY)  # fmt: skip
    with dg.build_sensor_context(
        instance=h.instance, resources={STORE_KEY: h.resources[STORE_KEY]}
    ) as ctx:
        result = watchlist_sensor(smaller)(ctx)
    assert sorted(result.dynamic_partitions_requests[0].partition_keys) == [
        "BTC-USDT-SPOT:1d",
        "ETH-USDT-PERP:1d",
    ]
    assert not result.run_requests and len(h.stored("BTC-USDT-SPOT", "1d")) == len(stored)


def test_a_delisted_market_is_complete_up_to_its_delisting(harness_wl_old: Harness) -> None:
    h = harness_wl_old
    result = h.run_months("OLD-USDT-SPOT:1h", "2026-05", "2026-07")
    meta = h.metadata(result)
    stored = h.stored("OLD-USDT-SPOT", "1h")
    assert stored[-1][0] == 1_780_272_000_000 - 3_600_000  # the last hour before 2026-06-01
    assert meta["absent"] == 0 and meta["expected"] == meta["present"] == 31 * 24
    assert h.store.instruments.stored("binance")["OLD-USDT-SPOT"].delisted_at == 1_780_272_000_000


@pytest.fixture
def harness_wl_old(sim: RunningSimulator, tmp_path: Path) -> Harness:
    return Harness(
        watchlist(sim.url, ["OLD/USDT/1h"]),
        f"sqlite:///{tmp_path}/o.sqlite",
        dg.DagsterInstance.ephemeral(),
    )


def test_the_sensor_loads_a_missing_catalog_at_once(sim: RunningSimulator, tmp_path: Path) -> None:
    h = Harness(
        watchlist(sim.url, ["BTC/USDT/1d"]),
        f"sqlite:///{tmp_path}/e.sqlite",
        dg.DagsterInstance.ephemeral(),
    )
    with dg.build_sensor_context(
        instance=h.instance, resources={STORE_KEY: h.resources[STORE_KEY]}
    ) as ctx:
        result = watchlist_sensor(h.wl)(ctx)
    catalog_runs = [r for r in result.run_requests if r.run_key.startswith("catalog:")]
    assert [r.asset_selection for r in catalog_runs] == [[dg.AssetKey(["instruments", "binance"])]]
    dg.materialize([instruments_asset("binance")], instance=h.instance, resources=h.resources)
    with dg.build_sensor_context(
        instance=h.instance, resources={STORE_KEY: h.resources[STORE_KEY]}
    ) as ctx:
        again = watchlist_sensor(h.wl)(ctx)
    assert not [r for r in again.run_requests if r.run_key.startswith("catalog:")]
