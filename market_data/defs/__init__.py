"""Dagster wiring: assets, checks, schedules, sensors and resources, one folder per domain."""
