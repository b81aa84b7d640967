"""The Dagster instance's event log on PostgreSQL (dagster.postgres.yaml), with the market
partitions looked up in memory.

Every candle asset's market dimension is a dynamic partitions definition. Dagster 1.13
recomputes each partitioned check's status at every load of an asset's page, and asks
whether each partition with a result exists one key at a time (`has_dynamic_partition`: one
query, ~0.7 ms): 4,716 partitions x 2 checks made the 1d asset's page of a whole exchange
take ~8.5 s (bench/ui.py). Here a definition's keys are read in one query and kept for a
second (`KEYS_TTL_S`): a key among them exists; a key not among them is asked of the
database as before, so a key added by another process (the daemon adding a market, then
planning its run in a code server) never reads as absent. A key deleted by another process
may read as present for up to that second; this process's own additions and deletions
forget the keys at once. Everything else is dagster-postgres's `PostgresEventLogStorage`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from dagster_postgres import PostgresEventLogStorage
from dagster_postgres.utils import pg_url_from_config

#: how long a definition's keys, read in one query, answer existence questions
KEYS_TTL_S = 1.0


class MarketKeysCachedEventLogStorage(PostgresEventLogStorage):
    """dagster-postgres's event log storage; dynamic partition keys checked in memory."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keys: dict[str, tuple[float, frozenset[str]]] = {}
        self._keys_lock = threading.Lock()

    @classmethod
    def from_config_value(
        cls, inst_data: Any, config_value: Mapping[str, Any]
    ) -> MarketKeysCachedEventLogStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
        )

    def _keys_of(self, partitions_def_name: str) -> frozenset[str]:
        now = time.monotonic()
        with self._keys_lock:
            read = self._keys.get(partitions_def_name)
        if read is not None and now - read[0] < KEYS_TTL_S:
            return read[1]
        keys = frozenset(self.get_dynamic_partitions(partitions_def_name))
        with self._keys_lock:
            self._keys[partitions_def_name] = (now, keys)
        return keys

    def _forget(self, partitions_def_name: str) -> None:
        with self._keys_lock:
            self._keys.pop(partitions_def_name, None)

    def has_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> bool:
        if partition_key in self._keys_of(partitions_def_name):
            return True
        return super().has_dynamic_partition(partitions_def_name, partition_key)

    def add_dynamic_partitions(
        self, partitions_def_name: str, partition_keys: Sequence[str]
    ) -> None:
        super().add_dynamic_partitions(partitions_def_name, partition_keys)
        self._forget(partitions_def_name)

    def delete_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> None:
        super().delete_dynamic_partition(partitions_def_name, partition_key)
        self._forget(partitions_def_name)
