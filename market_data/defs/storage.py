"""The Dagster instance's event log on PostgreSQL (dagster.postgres.yaml), with the market
partitions looked up in memory and the partitioned checks' status kept between page loads.

Every candle asset's market dimension is a dynamic partitions definition. Dagster 1.13
recomputes each partitioned check's status at every load of an asset's page, and asks
whether each partition with a result exists one key at a time (`has_dynamic_partition`: one
query, ~0.7 ms): 4,716 partitions x 2 checks made the 1d asset's page of a whole exchange
take ~8.5 s (bench/ui.py). Here a definition's keys are read in one query and kept for a
second (`KEYS_TTL_S`): a key among them exists; a key not among them is asked of the
database as before, so a key added by another process (the daemon adding a market, then
planning its run in a code server) never reads as absent. A key deleted by another process
may read as present for up to that second; this process's own additions and deletions
forget the keys at once.

The status itself is the second half of that cost: validating each result's partition key
walks the year dimension's cron (~0.5-1 ms a key: Dagster's fast path is for hourly and daily
windows only), ~5 s for the 1d asset's 9,432 results. Dagster's event log has the hook for
it, a checkpointed status (`get_checkpointed_asset_check_state`, empty in open-source
Dagster): here each partitioned check's computed status is kept in the instance's key-value
table (at most every `CHECKPOINT_EVERY_S` per process) and the next computation starts from
it, reading only the results and materializations stored since, by storage id as Dagster's
own materialization status cache does, less `MARGIN_IDS` (an event whose id was allocated
just before the checkpoint but committed just after it is still read; reading a result
again is harmless, each is the newest of its partition; each costs ~1 ms). A checkpoint is
used only while it is still true: deleting a dynamic partition, or adding back one deleted
before (by any process on this instance), starts a new generation, and every partition key
it holds must still exist (a code change of the dimensions); otherwise the status is
computed from scratch once, as Dagster does. Markets added for the first time change no
status (they have no results yet). Everything else is dagster-postgres's
`PostgresEventLogStorage`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from dagster._core.asset_graph_view.serializable_entity_subset import SerializableEntitySubset
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecordStatus,
    AssetCheckExecutionResolvedStatus,
)
from dagster._core.storage.asset_check_state import AssetCheckState
from dagster._core.storage.dagster_run import FINISHED_STATUSES
from dagster._serdes import deserialize_value, serialize_value
from dagster_postgres import PostgresEventLogStorage
from dagster_postgres.utils import pg_url_from_config

from market_data.defs.candles.partitions import KEY_SEPARATOR

#: how long a definition's keys, read in one query, answer existence questions
KEYS_TTL_S = 1.0
#: how often one process stores a check's status (when it changed)
CHECKPOINT_EVERY_S = 30.0
#: event ids read again below a checkpoint: events allocated before it, committed after
MARGIN_IDS = 100
#: the key-value entries: the checkpoints' generation, one status per check, deleted keys
GENERATION_KEY = "market_data/check_status/generation"
CHECKPOINT_PREFIX = "market_data/check_status/"
DELETED_PREFIX = "market_data/deleted_partitions/"


class MarketKeysCachedEventLogStorage(PostgresEventLogStorage):
    """dagster-postgres's event log storage; dynamic partition keys checked in memory, and
    partitioned checks' status computed from the previous load's checkpoint."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keys: dict[str, tuple[float, frozenset[str]]] = {}
        self._keys_lock = threading.Lock()
        self._saved: dict[dg.AssetCheckKey, tuple[float, int, str]] = {}  # when, id, generation

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
        # a key deleted before has results that no checkpoint since holds
        deleted = self._deleted(partitions_def_name)
        if deleted & set(partition_keys):
            self._set_deleted(partitions_def_name, deleted - set(partition_keys))

    def delete_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> None:
        super().delete_dynamic_partition(partitions_def_name, partition_key)
        self._forget(partitions_def_name)
        self._set_deleted(partitions_def_name, self._deleted(partitions_def_name) | {partition_key})

    def _deleted(self, partitions_def_name: str) -> set[str]:
        """The keys deleted from a definition (and not added again)."""
        name = DELETED_PREFIX + partitions_def_name
        return set(json.loads(self._instance.run_storage.get_cursor_values({name}).get(name, "[]")))

    def _set_deleted(self, partitions_def_name: str, keys: set[str]) -> None:
        """Record the deleted keys; the checkpoints, computed with or without them, expire."""
        self._instance.run_storage.set_cursor_values(
            {
                DELETED_PREFIX + partitions_def_name: json.dumps(sorted(keys)),
                GENERATION_KEY: uuid.uuid4().hex,
            }
        )

    def get_asset_check_state(
        self, keys: Sequence[tuple[dg.AssetCheckKey, dg.PartitionsDefinition | None]]
    ) -> Mapping[dg.AssetCheckKey, AssetCheckState]:
        generation, checkpoints = self._checkpoints(keys)
        states = {
            key: self._updated(key, partitions_def, checkpoints[key])
            for key, partitions_def in keys
        }
        multi = {key for key, d in keys if isinstance(d, dg.MultiPartitionsDefinition)}
        self._checkpoint(generation, {k: v for k, v in states.items() if k in multi})
        return states

    def _updated(
        self,
        key: dg.AssetCheckKey,
        partitions_def: dg.PartitionsDefinition | None,
        state: AssetCheckState,
    ) -> AssetCheckState:
        """``state`` brought up to date with Dagster's own rules, from the newest result and
        materialization of each partition stored after it. Each such partition is first taken
        out of every status (Dagster's update adds a partition's new status to what the state
        held: incrementally a partition whose result went from passed to failed would be
        both)."""
        infos = self.get_asset_check_partition_info([key], after_storage_id=state.latest_storage_id)
        run_ids = set(state.in_progress_runs)
        run_ids.update(
            info.latest_planned_run_id
            for info in infos
            if info.latest_execution_status == AssetCheckExecutionRecordStatus.PLANNED
        )
        finished = (
            self._instance.get_runs(
                filters=dg.RunsFilter(run_ids=sorted(run_ids), statuses=FINISHED_STATUSES)
            )
            if run_ids
            else []
        )
        touched = [info.partition_key for info in infos if info.partition_key is not None]
        if touched and partitions_def is not None and state.subsets:
            gone = SerializableEntitySubset(
                key=key, value=partitions_def.subset_with_partition_keys(touched)
            )
            state = AssetCheckState(
                latest_storage_id=state.latest_storage_id,
                subsets={s: sub.compute_difference(gone) for s, sub in state.subsets.items()},
                in_progress_runs={
                    run: sub.compute_difference(gone) for run, sub in state.in_progress_runs.items()
                },
            )
        return state.with_updates(
            key, partitions_def, infos, {r.run_id: r.status for r in finished}
        )

    def _checkpoints(
        self, keys: Sequence[tuple[dg.AssetCheckKey, dg.PartitionsDefinition | None]]
    ) -> tuple[str, dict[dg.AssetCheckKey, AssetCheckState]]:
        """The dynamic partitions' generation, and each check's checkpoint that is still true
        (else an empty state: computed from scratch)."""
        names = {_checkpoint_name(key) for key, _ in keys}
        values = self._instance.run_storage.get_cursor_values({GENERATION_KEY, *names})
        generation = values.get(GENERATION_KEY, "")
        states = {}
        with dg.partition_loading_context(dynamic_partitions_store=self._instance):
            for key, partitions_def in keys:
                state = _loaded(values.get(_checkpoint_name(key)), generation, partitions_def)
                states[key] = state or AssetCheckState.empty()
        return generation, states

    def _checkpoint(
        self, generation: str, states: Mapping[dg.AssetCheckKey, AssetCheckState]
    ) -> None:
        """Store ``states`` (those of multi-partitioned checks: the only ones loaded back)."""
        now = time.monotonic()
        pairs = {}
        with self._keys_lock:
            for key, state in states.items():
                saved = self._saved.get(key)
                if (
                    saved is None
                    or saved[2] != generation  # the stored one is of no use now
                    or (state.latest_storage_id > saved[1] and now - saved[0] >= CHECKPOINT_EVERY_S)
                ):
                    pairs[_checkpoint_name(key)] = _dumped(state, generation)
                    self._saved[key] = (now, state.latest_storage_id, generation)
        if pairs:
            self._instance.run_storage.set_cursor_values(pairs)


def _checkpoint_name(key: dg.AssetCheckKey) -> str:
    return CHECKPOINT_PREFIX + key.to_user_string()


def _dumped(state: AssetCheckState, generation: str) -> str:
    return serialize_value(
        {
            "generation": generation,
            "latest_storage_id": state.latest_storage_id,
            "subsets": {status.value: subset for status, subset in state.subsets.items()},
            "in_progress_runs": dict(state.in_progress_runs),
        }
    )


def _loaded(
    value: str | None, generation: str, partitions_def: dg.PartitionsDefinition | None
) -> AssetCheckState | None:
    """The checkpoint, if it is of this generation and every key it holds still exists."""
    if value is None or not isinstance(partitions_def, dg.MultiPartitionsDefinition):
        return None
    stored = deserialize_value(value, dict)
    if stored["generation"] != generation:
        return None
    subsets = stored["subsets"].values()
    in_progress = stored["in_progress_runs"].values()
    exists = _KeyCheck(partitions_def)
    for subset in (*subsets, *in_progress):
        if not all(exists(key) for key in subset.subset_value.get_partition_keys()):
            return None
    return AssetCheckState(
        latest_storage_id=max(0, stored["latest_storage_id"] - MARGIN_IDS),
        subsets={
            AssetCheckExecutionResolvedStatus(status): subset
            for status, subset in stored["subsets"].items()
        },
        in_progress_runs=stored["in_progress_runs"],
    )


class _KeyCheck:
    """Whether a multi-partition key exists, each dimension's value asked once."""

    def __init__(self, partitions_def: dg.MultiPartitionsDefinition) -> None:
        self._dimensions = partitions_def.partitions_defs  # in the order of the key's values
        self._known: dict[tuple[str, str], bool] = {}

    def __call__(self, key: str) -> bool:
        values = key.split(KEY_SEPARATOR)
        if len(values) != len(self._dimensions):
            return False
        for dimension, value in zip(self._dimensions, values, strict=True):
            known = self._known.get((dimension.name, value))
            if known is None:
                exists = dimension.partitions_def.has_partition_key(value)
                known = self._known[(dimension.name, value)] = exists
            if not known:
                return False
        return True
