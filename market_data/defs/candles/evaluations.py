"""Check results per partition, recorded so that the UI shows each partition's own state.

Dagster counts a partition's check result as current only when it names that partition's
latest materialization; so each evaluation here carries it. They are logged as events of
the run that produced them (a check evaluated in a ranged run would otherwise leave one
result without a partition, and every planned partition "Skipped").
"""

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import dagster as dg

# No public home: the materialization a check evaluation is about (its storage id, run and
# time), which AssetCheckEvaluation takes as an argument.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData as Target,
)

from market_data.defs.resources import CandleStoreResource
from market_data.store.candles import CandleStore

#: how a partitioned check judges the partitions of its run: (store, instance, keys, the
#: run's tags)
Judge = Callable[
    [CandleStore, dg.DagsterInstance, list[str], Mapping[str, str]], list[dg.AssetCheckEvaluation]
]


def partition_check(
    asset_key: dg.AssetKey,
    partitions_def: dg.PartitionsDefinition,
    name: str,
    description: str,
    judge: Judge,
) -> dg.AssetChecksDefinition:
    """A check on ``asset_key``, partitioned like it, that logs one evaluation per partition
    of its run (the module's docstring says why) and returns no result of its own."""

    @dg.asset_check(
        asset=asset_key, name=name, partitions_def=partitions_def, description=description
    )
    def check(context: dg.AssetCheckExecutionContext, candle_store: CandleStoreResource) -> None:
        op = context.op_execution_context
        keys = [str(k) for k in op.partition_keys]
        for e in judge(candle_store.store(), context.instance, keys, op.run.tags):
            op.log_event(e)

    return check


def latest_materializations(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions: Iterable[str] | None
) -> dict[str, Target]:
    """The latest materialization of each of ``partitions`` (None: of every partition)
    that has one (two queries)."""
    ids = instance.event_log_storage.get_latest_storage_id_by_partition(
        asset_key,
        dg.DagsterEventType.ASSET_MATERIALIZATION,
        None if partitions is None else set(partitions),
    )
    if not ids:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=list(ids.values())), limit=len(ids)
    ).records
    by_id = {r.storage_id: r for r in records}
    return {
        pk: Target(storage_id=sid, run_id=by_id[sid].run_id, timestamp=by_id[sid].timestamp)
        for pk, sid in ids.items()
        if sid in by_id
    }


def evaluation(
    check_key: dg.AssetCheckKey,
    partition: str,
    passed: bool,
    *,
    targets: Mapping[str, Target],
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=check_key.asset_key,
        check_name=check_key.name,
        passed=passed,
        severity=severity,
        description=description,
        metadata=dict(metadata or {}),
        partition=partition,
        target_materialization_data=targets.get(partition),
    )
