-- candle_months (sql/013) kept on PostgreSQL: statement triggers over the rows a statement
-- added or removed (as sql/011 keeps candle_series). A month emptied keeps its row at 0.

-- The first millisecond of the UTC month of an open time (epoch ms).
CREATE OR REPLACE FUNCTION candle_month(ts BIGINT) RETURNS BIGINT LANGUAGE sql IMMUTABLE
    PARALLEL SAFE RETURN
    (extract(epoch FROM date_trunc('month', to_timestamp(ts / 1000.0) AT TIME ZONE 'UTC'))
     * 1000)::BIGINT;

CREATE OR REPLACE FUNCTION candle_months_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO candle_months AS m (exchange, symbol, timeframe, month_ts, candles)
    SELECT exchange, symbol, timeframe, candle_month(ts), count(*) FROM added
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (exchange, symbol, timeframe, month_ts) DO UPDATE SET
        candles = m.candles + EXCLUDED.candles;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION candle_months_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE candle_months AS m SET candles = m.candles - r.n
    FROM (SELECT exchange, symbol, timeframe, candle_month(ts) AS month_ts, count(*) AS n
          FROM removed GROUP BY 1, 2, 3, 4) AS r
    WHERE m.exchange = r.exchange AND m.symbol = r.symbol AND m.timeframe = r.timeframe
      AND m.month_ts = r.month_ts;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION candle_months_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM candle_months;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER candle_months_added AFTER INSERT ON candles
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION candle_months_added();
CREATE OR REPLACE TRIGGER candle_months_removed AFTER DELETE ON candles
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION candle_months_removed();
CREATE OR REPLACE TRIGGER candle_months_truncated AFTER TRUNCATE ON candles
    FOR EACH STATEMENT EXECUTE FUNCTION candle_months_truncated();
