-- Order book snapshots: one row per snapshot, stored once per (exchange, symbol, ts); ts is
-- the exchange's time of the snapshot (epoch ms). The top levels of each side, best first,
-- as arrays of prices and of amounts; the best bid and ask also as columns (the crossed-book
-- check reads only them). Exact: SQLite has no exact decimal type: decimal text, the levels as JSON arrays of it.
CREATE TABLE IF NOT EXISTS orderbook_snapshots (
    exchange    VARCHAR(32) NOT NULL,
    symbol      VARCHAR(64) NOT NULL,       -- standard name
    ts          BIGINT      NOT NULL,
    best_bid    TEXT,
    best_ask    TEXT,
    bid_prices  TEXT NOT NULL,
    bid_amounts TEXT NOT NULL,
    ask_prices  TEXT NOT NULL,
    ask_amounts TEXT NOT NULL,
    PRIMARY KEY (exchange, symbol, ts)
);
