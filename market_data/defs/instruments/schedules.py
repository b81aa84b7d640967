"""The daily catalog refresh."""

import dagster as dg

REFRESH_CRON = "0 1 * * *"  # 01:00 UTC, before the 02:00 gap sweep


def instruments_refresh_schedule(cron: str = REFRESH_CRON) -> dg.ScheduleDefinition:
    job = dg.define_asset_job(
        "refresh_instruments",
        selection=dg.AssetSelection.groups("instruments"),
        description="Reloads every exchange's market list (instruments/<exchange>).",
    )
    return dg.ScheduleDefinition(
        name="instruments_daily",
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Reload every exchange's market list into the instrument catalog.",
    )
