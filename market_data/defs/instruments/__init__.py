"""The instrument catalog: one asset per exchange, refreshed daily."""
