-- Order book snapshots: one row per snapshot, stored once per (exchange, symbol, ts); ts is
-- the exchange's time of the snapshot (epoch ms). The top levels of each side, best first,
-- as arrays of prices and of amounts; the best bid and ask also as columns (the crossed-book
-- check reads only them). Exact: the decimals as the exchange sent them.
CREATE TABLE IF NOT EXISTS orderbook_snapshots (
    exchange    VARCHAR(32) NOT NULL,
    symbol      VARCHAR(64) NOT NULL,       -- standard name
    ts          BIGINT      NOT NULL,
    best_bid    NUMERIC,
    best_ask    NUMERIC,
    bid_prices  NUMERIC[] NOT NULL,
    bid_amounts NUMERIC[] NOT NULL,
    ask_prices  NUMERIC[] NOT NULL,
    ask_amounts NUMERIC[] NOT NULL,
    PRIMARY KEY (exchange, symbol, ts)
);
