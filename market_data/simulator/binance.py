"""Binance's REST dialect (spot /api/v3 and USD-M futures /fapi/v1): parameters, weights,
bodies and error codes as the real exchange has them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from market_data.domain.timeframes import SUPPORTED_TIMEFRAMES, Timeframe
from market_data.domain.weights import DEFAULT_LIMITS, binance_weight, interval_of
from market_data.simulator.book import CandleBook
from market_data.simulator.encode import Column, encode_rows, rescale, row_values
from market_data.simulator.faults import Faults
from market_data.simulator.generator import Bars, uniform
from market_data.simulator.markets import Kind, SimMarket

PERPETUAL_DELIVERY = 4133404800000  # what Binance sends as deliveryDate of perpetuals
INTERVALS = {code: Timeframe.parse(code).ms for code in SUPPORTED_TIMEFRAMES}

FAMILIES = {"/api/v3": False, "/fapi/v1": True}  # prefix -> is USD-M futures
KLINE_LIMITS = {False: (500, 1000), True: (500, 1500)}  # (default, maximum)
FUTURES_DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)


class BinanceError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg}


def mandatory(name: str) -> BinanceError:
    return BinanceError(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def too_many_requests(limit: int, banned_until_ms: int | None) -> BinanceError:
    if banned_until_ms is not None:
        return BinanceError(
            418,
            -1003,
            f"Way too many requests; IP(127.0.0.1) banned until {banned_until_ms}. "
            "Please use WebSocket Streams for live updates to avoid bans.",
        )
    return BinanceError(
        429,
        -1003,
        f"Too many requests; current limit of IP(127.0.0.1) is {limit} requests per "
        "minute. Please use WebSocket Streams for live updates to avoid polling the API.",
    )


#: Binance's messages for the error codes a fault rule may send without its own message
MESSAGES = {
    -1000: "An unknown error occurred while processing the request.",
    -1003: "Too many requests.",
    -1008: "Server is currently overloaded with other requests. Please try again in a few minutes.",
    -1100: "Illegal characters found in a parameter.",
    -1102: "A mandatory parameter was not sent, was empty/null, or malformed.",
    -1121: "Invalid symbol.",
    -1130: "Invalid data sent for a parameter.",
}


def server_error(status: int, code: int | None = None, msg: str | None = None) -> BinanceError:
    """A failure as Binance sends it: by default -1008 (overloaded)."""
    code = -1008 if code is None else code
    return BinanceError(status, code, msg or MESSAGES.get(code, MESSAGES[-1000]))


def _int_param(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 20:
        raise BinanceError(
            400,
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    return int(raw)


def _limit(params: Mapping[str, str], default: int, maximum: int) -> int:
    limit = _int_param(params, "limit")
    if limit is None:
        return default
    if limit < 1 or limit > maximum:
        raise BinanceError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    return limit


def weight(endpoint: str, params: Mapping[str, str], futures: bool) -> int:
    """Request weight as Binance documents it (what X-MBX-USED-WEIGHT-1M adds up)."""
    limit = params.get("limit", "")
    return binance_weight(endpoint, int(limit) if limit.isdigit() else None, futures)


def _dec(value: float, places: int) -> str:
    return f"{value:.{places}f}"


@dataclass
class Binance:
    book: CandleBook

    def market(self, params: Mapping[str, str], futures: bool) -> SimMarket:
        symbol = params.get("symbol")
        if not symbol:
            raise mandatory("symbol")
        market = self.book.index.family(futures).get(symbol)
        if market is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return market

    # -- endpoints -----------------------------------------------------------------------
    def handle(
        self,
        endpoint: str,
        params: Mapping[str, str],
        futures: bool,
        now_ms: int,
        faults: Faults,
    ) -> tuple[Any, int]:
        """Returns (JSON body, or bytes already encoded; candles served)."""
        if endpoint in ("ping",):
            return {}, 0
        if endpoint == "time":
            return {"serverTime": now_ms}, 0
        if endpoint == "exchangeInfo":
            return self.exchange_info(futures, now_ms, faults), 0
        if endpoint == "depth":
            return self.depth(params, futures, now_ms, faults.crossed_book), 0
        if endpoint == "klines":
            bars, market, tf_ms = self.klines(params, futures, now_ms, faults)
            return format_klines(bars, market, tf_ms), len(bars)
        raise BinanceError(404, -1000, "Unknown endpoint.")

    def klines(
        self, params: Mapping[str, str], futures: bool, now_ms: int, faults: Faults
    ) -> tuple[Bars, SimMarket, int]:
        if not params.get("symbol"):
            raise mandatory("symbol")
        interval = params.get("interval")
        if not interval:
            raise mandatory("interval")
        if interval not in INTERVALS:
            raise BinanceError(400, -1120, "Invalid interval.")
        market = self.market(params, futures)
        limit = _limit(params, *KLINE_LIMITS[futures])
        start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
        if start is not None and end is not None and start > end:
            raise BinanceError(400, -1023, "Start time is greater than end time.")
        tf_ms = INTERVALS[interval]
        return self.book.klines(market, tf_ms, start, end, limit, now_ms, faults), market, tf_ms

    def depth(
        self, params: Mapping[str, str], futures: bool, now_ms: int, crossed: bool = False
    ) -> dict[str, Any]:
        """The top ``limit`` levels a side around the mid price, one tick apart, sizes
        changing every second; ``crossed``: the bids start two ticks higher (best bid above
        the best ask)."""
        market = self.market(params, futures)
        if futures:
            limit = _int_param(params, "limit") or 500
            if limit not in FUTURES_DEPTH_LIMITS:
                raise BinanceError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        else:
            limit = _limit(params, 100, 5000)
        mid = self.book.mid_price(market, now_ms)
        tick = 10.0**-market.price_decimals
        places = market.price_decimals if futures else 8
        qplaces = market.lot_decimals if futures else 8
        steps = np.arange(1, limit + 1, dtype=np.int64)
        sizes = (uniform(steps + now_ms // 1000 * 10_000, market.seed) * 5 + 0.001).round(
            max(market.lot_decimals, 0)
        )
        sizes = np.maximum(sizes, 10.0**-market.lot_decimals)
        base = round(mid / tick)
        bid_base = base + 2 if crossed else base
        bids = [
            [_dec((bid_base - i) * tick, places), _dec(q, qplaces)]
            for i, q in zip(steps, sizes, strict=True)
        ]
        asks = [
            [_dec((base + i) * tick, places), _dec(q, qplaces)]
            for i, q in zip(steps, sizes, strict=True)
        ]
        body: dict[str, Any] = {"lastUpdateId": now_ms // 100}
        if futures:
            body |= {"E": now_ms, "T": now_ms}
        return body | {"bids": bids, "asks": asks}

    def exchange_info(self, futures: bool, now_ms: int, faults: Faults) -> dict[str, Any]:
        markets = self.book.index.family(futures).values()
        limit = faults.weight_limit or DEFAULT_LIMITS[futures]
        interval, num = interval_of(faults.weight_window_s)
        info: dict[str, Any] = {
            "timezone": "UTC",
            "serverTime": now_ms,
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": interval,
                    "intervalNum": num,
                    "limit": limit,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            ],
            "exchangeFilters": [],
        }
        if futures:
            info["futuresType"] = "U_MARGINED"
            info["assets"] = []
            info["symbols"] = [_futures_symbol(m, now_ms) for m in markets]
        else:
            info["symbols"] = [_spot_symbol(m, now_ms) for m in markets]
        return info


def format_klines(bars: Bars, market: SimMarket, tf_ms: int, time_scale: int = 1) -> bytes:
    """Kline rows as Binance sends them: spot with 8 decimals, futures with the market's;
    ``time_scale`` 1000: open and close times in microseconds (the archive's spot files
    from 2025)."""
    return encode_rows(_kline_columns(bars, market, tf_ms, time_scale))


def kline_row(bars: Bars, market: SimMarket, tf_ms: int, i: int = 0) -> list[Any]:
    """Row ``i`` of ``format_klines`` as JSON parses it back (the streams' one candle)."""
    return row_values(_kline_columns(bars.select(slice(i, i + 1)), market, tf_ms, 1), 0)


def _kline_columns(
    bars: Bars, market: SimMarket, tf_ms: int, time_scale: int
) -> list[Column | bytes]:
    pd, ld = market.price_decimals, market.lot_decimals
    places = pd if market.futures else 8
    vplaces = ld if market.futures else 8
    price = [
        Column(rescale(col, pd, places), places)
        for col in (bars.open, bars.high, bars.low, bars.close)
    ]
    return [
        Column(bars.ts * time_scale),
        *price,
        Column(rescale(bars.volume, ld, vplaces), vplaces),
        Column((bars.ts + tf_ms) * time_scale - 1),
        Column(rescale(bars.quote_volume, pd + ld, 8), 8),
        Column(bars.trades),
        Column(rescale(bars.taker_buy, ld, vplaces), vplaces),
        Column(rescale(bars.taker_buy * bars.close, pd + ld, 8), 8),
        b'"0"',
    ]


def _filters(m: SimMarket) -> list[dict[str, Any]]:
    tick = _dec(10.0**-m.price_decimals, 8)
    step = _dec(10.0**-m.lot_decimals, 8)
    return [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": tick,
            "maxPrice": "1000000.00000000",
            "tickSize": tick,
        },
        {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000000.00000000", "stepSize": step},
        {
            "filterType": "MARKET_LOT_SIZE",
            "minQty": "0.00000000",
            "maxQty": "1000.00000000",
            "stepSize": "0.00000000",
        },
        {
            "filterType": "NOTIONAL",
            "minNotional": "5.00000000",
            "applyMinToMarket": True,
            "maxNotional": "9000000.00000000",
            "applyMaxToMarket": False,
            "avgPriceMins": 5,
        },
    ]


def _spot_symbol(m: SimMarket, now_ms: int) -> dict[str, Any]:
    return {
        "symbol": m.id,
        "status": "TRADING" if m.trading_at(now_ms) else "BREAK",
        "baseAsset": m.base,
        "baseAssetPrecision": 8,
        "quoteAsset": m.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": _filters(m),
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def _futures_symbol(m: SimMarket, now_ms: int) -> dict[str, Any]:
    dated = m.kind is Kind.FUTURE
    if m.trading_at(now_ms):
        status = "TRADING"
    else:
        status = "SETTLING" if dated and now_ms >= (m.ends_ms or 0) else "PENDING_TRADING"
    filters = _filters(m)
    filters[3] = {"filterType": "MIN_NOTIONAL", "notional": "100"}
    return {
        "symbol": m.id,
        "pair": f"{m.base}{m.quote}",
        "contractType": "CURRENT_QUARTER" if dated else "PERPETUAL",
        "deliveryDate": m.ends_ms if dated else PERPETUAL_DELIVERY,
        "onboardDate": m.listed_ms,
        "status": status,
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": m.base,
        "quoteAsset": m.quote,
        "marginAsset": m.quote,
        "pricePrecision": m.price_decimals,
        "quantityPrecision": m.lot_decimals,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "settlePlan": 0,
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": filters,
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }
