-- Per series and calendar month (UTC): how many candles are stored, kept by the database on
-- every insert and delete (sql/014's triggers) like candle_series. month_ts is the month's
-- first millisecond. A month holding a candle at every open time of its timeframe's grid
-- has no hole (the candle contract keeps every stored open time on the grid), so the gap
-- check and the daily sweep read the candles of the other months only: a sweep of the
-- whole history reads this table's rows (one per series-month) and the candles of the
-- months that are not whole, not every candle stored.
CREATE TABLE IF NOT EXISTS candle_months (
    exchange  VARCHAR(32) NOT NULL,
    symbol    VARCHAR(64) NOT NULL,
    timeframe VARCHAR(8)  NOT NULL,
    month_ts  BIGINT      NOT NULL,
    candles   BIGINT      NOT NULL,
    PRIMARY KEY (exchange, symbol, timeframe, month_ts)
);
