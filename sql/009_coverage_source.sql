-- Where a covered interval's candles came from: 'rest' (the exchange's candle endpoint; the
-- rows written before this file have NULL, which means the same), 'archive' (a file of the
-- exchange's public data archive, whose SHA-256 is kept in checksum) or 'trades' (candles
-- built from the exchange's trades).
ALTER TABLE fetch_coverage ADD COLUMN source VARCHAR(16);
ALTER TABLE fetch_coverage ADD COLUMN checksum VARCHAR(64);
