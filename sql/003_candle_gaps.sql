-- Gaps: expected candle times without a candle, found by the gap check or the daily sweep.
-- status: open (missing, or empty at the exchange but not yet confirmed), repaired,
-- exchange_empty (the exchange returned nothing there on every attempt, up to the bound).
CREATE TABLE IF NOT EXISTS candle_gaps (
    exchange        VARCHAR(32) NOT NULL,
    symbol          VARCHAR(64) NOT NULL,
    timeframe       VARCHAR(8)  NOT NULL,
    gap_start       BIGINT      NOT NULL,   -- first missing open time, epoch ms
    gap_end         BIGINT      NOT NULL,   -- after the last missing open time (exclusive)
    kind            VARCHAR(16) NOT NULL,   -- missing | empty (fetched, nothing came back)
    detected_at     BIGINT      NOT NULL,
    repaired_at     BIGINT,
    status          VARCHAR(16) NOT NULL,
    attempts        INTEGER     NOT NULL DEFAULT 0,
    last_attempt_at BIGINT,
    PRIMARY KEY (exchange, symbol, timeframe, gap_start)
);
CREATE INDEX IF NOT EXISTS candle_gaps_status ON candle_gaps (status, exchange);

-- The exchange's clock as last read by a candle run: candles closed before it are expected.
CREATE TABLE IF NOT EXISTS exchange_clock (
    exchange VARCHAR(32) PRIMARY KEY,
    now_ms   BIGINT NOT NULL,
    read_at  BIGINT NOT NULL
);
