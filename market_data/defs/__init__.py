"""Dagster wiring: assets, checks, schedules, sensors and resources, one folder per domain.

Importing it silences the two warning categories Dagster raises on every load of this code
location (backfill_policy and pool are "beta", partitioned checks "preview"): they are
known and chosen, and would otherwise be printed by every process that loads the location
(webserver, daemon, code servers, every run worker).
"""

import warnings

import dagster as dg

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
