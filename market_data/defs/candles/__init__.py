"""Candles: one partitioned asset per exchange, its partitions, sensors and checks."""
