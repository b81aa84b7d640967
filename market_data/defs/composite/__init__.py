"""The composite candles: cross-exchange VWAP candles, their checks and automation."""
