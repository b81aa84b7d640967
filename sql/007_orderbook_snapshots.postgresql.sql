-- Order book snapshots: the top levels of each side, one row per level. ts is the
-- exchange's time of the snapshot (epoch ms); a snapshot is stored once per (exchange,
-- symbol, ts). Prices and amounts are exact: NUMERIC (the decimal as the exchange sent it).
CREATE TABLE IF NOT EXISTS orderbook_snapshots (
    exchange VARCHAR(32) NOT NULL,
    symbol   VARCHAR(64) NOT NULL,          -- standard name
    ts       BIGINT      NOT NULL,
    side     CHAR(1)     NOT NULL,          -- b (bid) | a (ask)
    level    SMALLINT    NOT NULL,          -- 0 = best
    price    NUMERIC     NOT NULL,
    amount   NUMERIC     NOT NULL,
    PRIMARY KEY (exchange, symbol, ts, side, level)
);
