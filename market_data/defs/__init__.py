"""Dagster wiring: assets, checks, schedules, sensors and resources, one folder per domain.

Importing it silences the two warning categories Dagster raises on every load of this code
location (backfill_policy and pool are "beta", partitioned checks "preview"): they are
known and chosen, and would otherwise be printed by every process that loads the location
(webserver, daemon, code servers, every run worker).

It also turns on Dagster's batched writes of a step's asset events
(``DAGSTER_EVENT_BATCH_SIZE``, off by default in open-source Dagster): a ranged run records
one materialization per partition, and dagster-postgres opens a connection per event
otherwise. Every process that runs a step loads this package first (run workers, the
command line), so the setting reaches them all; a value set in the environment wins.
Measured: 1,000 partitions of one run on PostgreSQL, 18.4 s -> 7.4 s (BENCHMARKS.md).
"""

import os
import warnings

import dagster as dg

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "1000")
