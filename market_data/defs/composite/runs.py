"""The composite run the command line launches: the same materialization (and divergence
check) the sensor and the UI launch, over one composite market's months, recorded in the
Dagster instance (DAGSTER_HOME)."""

import uuid
from collections.abc import Callable

import dagster as dg

from market_data.defs.candles.cli_runs import cli_run_tags, failure_reasons
from market_data.defs.candles.partitions import range_tags
from market_data.defs.composite.assets import composite_asset
from market_data.defs.composite.checks import divergence_check
from market_data.domain.composite import CompositeMarket
from market_data.domain.watchlist import Watchlist


def run_composite(
    market: CompositeMarket,
    months: list[str],
    watchlist: Watchlist,
    resources: dict[str, dg.ConfigurableResource],
    instance: dg.DagsterInstance,
    echo: Callable[[str], None],
) -> bool:
    """One ranged run over ``months`` of ``market``; prints each month's figures and the
    divergence check's finding. True when the run succeeded."""
    asset = composite_asset(watchlist)
    result = dg.materialize(
        [asset, divergence_check(watchlist)],
        instance=instance,
        resources=resources,
        tags={
            **range_tags((market.key, months[0]), (market.key, months[-1])),
            **cli_run_tags(uuid.uuid4().hex),
        },
        raise_on_error=False,
    )
    if not result.success:
        echo(f"FAILED (run {result.run_id}):")
        for reason in failure_reasons(result):
            echo(f"  {reason}")
        return False
    checks = {str(e.partition): e for e in result.get_asset_check_evaluations()}
    for m in sorted(
        result.asset_materializations_for_node(asset.op.name), key=lambda m: str(m.partition)
    ):
        meta = {k: v.value for k, v in m.metadata.items()}
        pk = str(m.partition)
        echo(
            f"{pk}: {meta['timestamps']} timestamps ({meta['below_minimum']} below the minimum "
            f"of {meta['min_exchanges_required']}), {meta['rows_changed']} rows changed; "
            f"sources {meta['sources']}"
        )
        if (check := checks.get(pk)) is not None and not check.passed:
            echo(f"  divergence: {check.description}")
    echo(f"run {result.run_id[:8]}")
    return True
