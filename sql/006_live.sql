-- The live service (`market-data live`): its state per exchange, written every few seconds
-- (the heartbeat), and per streamed market. Wall times are epoch ms of the service's host;
-- exchange times are the exchange's clock (the newest event time it sent).
CREATE TABLE IF NOT EXISTS live_service (
    exchange        VARCHAR(32)  PRIMARY KEY,
    host            VARCHAR(255) NOT NULL,
    pid             INTEGER      NOT NULL,
    started_at      BIGINT       NOT NULL,  -- wall
    heartbeat_at    BIGINT       NOT NULL,  -- wall
    connections     INTEGER      NOT NULL,  -- WebSocket connections wanted
    connected       INTEGER      NOT NULL,  -- ... of which open now
    streams         INTEGER      NOT NULL,  -- markets subscribed
    exchange_now    BIGINT,                 -- newest event time seen (exchange clock)
    reconnects      INTEGER      NOT NULL,
    closes_stored   BIGINT       NOT NULL,  -- closed candles written since start
    latency_p50_ms  INTEGER,                -- close event received -> stored, last 1000
    latency_p99_ms  INTEGER,
    last_error      VARCHAR(512)
);

CREATE TABLE IF NOT EXISTS live_streams (
    exchange      VARCHAR(32) NOT NULL,
    symbol        VARCHAR(64) NOT NULL,
    timeframe     VARCHAR(8)  NOT NULL,
    subscribed_at BIGINT      NOT NULL,     -- wall
    last_close_ts BIGINT,                   -- open time of the newest candle stored from it
    stored_at     BIGINT,                   -- wall, when that candle was stored
    lag_ms        BIGINT,                   -- exchange_now - close of the newest stored candle
    PRIMARY KEY (exchange, symbol, timeframe)
);
