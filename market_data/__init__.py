"""market-data: crypto OHLCV candle history kept complete and fresh with Dagster."""
