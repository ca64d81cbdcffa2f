"""The Temporal Schedules Tailor runs: the daily derived-features job."""

from __future__ import annotations

import logging

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError

from tailor.config import Settings
from tailor.payloads import FeaturesRun
from workflows.features import SCHEDULE_ID, DailyFeaturesWorkflow

log = logging.getLogger(__name__)


def daily_features_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            DailyFeaturesWorkflow.run,
            FeaturesRun(),
            id="daily-features",
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(cron_expressions=[settings.features_cron]),
        # A run still going when the next is due (a very large audience): skip the next.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """Create the schedule, or bring an existing one in line with the settings."""
    schedule = daily_features_schedule(settings)
    try:
        await client.create_schedule(SCHEDULE_ID, schedule)
        log.info("created schedule %s (%s)", SCHEDULE_ID, settings.features_cron)
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        try:
            await client.get_schedule_handle(SCHEDULE_ID).update(replace)
        except RPCError as exc:
            log.warning("schedule %s not updated: %s", SCHEDULE_ID, exc.message)
