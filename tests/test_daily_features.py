"""Derived features and send-time optimisation: the daily job (a workflow on real Temporal),
its schedule, and the best-hour choice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, select, update
from sqlmodel import col
from temporalio.client import ScheduleActionStartWorkflow
from temporalio.testing import WorkflowEnvironment

from tailor.db import Database
from tailor.demo.seed import seed_demo
from tailor.journeys.definitions import journey_workflow_id
from tailor.models import Contact, Event, JourneyRun, utcnow
from tailor.payloads import FeaturesOutcome, FeaturesRun
from tailor.profiles.derived import History, avg_time_to_open, engagement_score
from tailor.send_time import best_hour, delay_until_hour, until_next_local_day
from tailor.store.journeys import install_builtins
from tailor.temporal.schedules import ensure_schedules
from tests.conftest import Sink, settings_for
from tests.conftest import task_queue as new_queue
from worker import build_worker
from workflows.features import SCHEDULE_ID, DailyFeaturesWorkflow

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)


def test_engagement_rewards_recent_frequent_openers() -> None:
    active = History(
        opens=[NOW - timedelta(days=d) for d in range(1, 12)],
        clicks=[NOW - timedelta(days=2)] * 5,
        orders=[NOW - timedelta(days=9)],
    )
    lapsed = History(opens=[NOW - timedelta(days=80)])
    assert engagement_score(active, NOW) > 80 > 20 > engagement_score(lapsed, NOW)
    assert engagement_score(History(), NOW) == 0


def test_time_to_open_pairs_each_email_with_the_next_open() -> None:
    sent = NOW - timedelta(days=3)
    history = History(
        sends=[sent, sent + timedelta(days=1)],
        opens=[sent + timedelta(minutes=30), sent + timedelta(days=1, hours=2)],
    )
    assert avg_time_to_open(history) == (30 * 60 + 2 * 3600) / 2
    assert avg_time_to_open(History(sends=[sent])) is None  # never opened


def test_best_hour_follows_the_persons_opens_and_falls_back_to_a_prior() -> None:
    thin = best_hour([21], peers=[])
    assert thin.hour == 10 and "default" in thin.reason  # one open cannot beat the prior
    habit = best_hour([21] * 8 + [9], peers=[])
    assert habit.hour == 21 and "8 of 9 opens at 21:00" in habit.reason
    peers = best_hour([], peers=[18] * 30 + [8] * 10)
    assert peers.hour == 18 and "same timezone" in peers.reason


def test_the_delay_to_the_best_hour_is_in_local_time_across_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    before_change = datetime(2026, 3, 28, 12, tzinfo=UTC)  # 13:00 CET; clocks go forward at 2:00
    delay = delay_until_hour(before_change, berlin, 10)
    assert (before_change + delay).astimezone(berlin).hour == 10
    assert delay == timedelta(hours=20)  # 13:00 CET to 10:00 CEST the next day
    assert delay_until_hour(datetime(2026, 3, 28, 9, 30, tzinfo=UTC), berlin, 10) == timedelta()


def test_a_person_over_their_daily_limit_waits_for_their_next_day_even_just_after_midnight() -> (
    None
):
    """Mailed at 00:10 local, the next email waits for the next midnight, not "now" (which
    made a throttled journey ask again every second until 01:00)."""
    new_york = ZoneInfo("America/New_York")
    just_after = datetime(2026, 12, 2, 5, 10, tzinfo=UTC)  # 00:10 EST
    assert until_next_local_day(just_after, new_york) == timedelta(hours=23, minutes=50)
    evening = datetime(2026, 12, 2, 22, 0, tzinfo=UTC)  # 17:00 EST
    assert until_next_local_day(evening, new_york) == timedelta(hours=7)
    berlin = ZoneInfo("Europe/Berlin")  # the night the clocks go forward has 23 hours
    before_change = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)  # 00:30 CET on the 29th
    assert until_next_local_day(before_change, berlin) == timedelta(hours=22, minutes=30)


async def _events(
    db: Database,
    contact_id: int,
    name: str,
    times: list[datetime],
    context: tuple[str | None, str | None] = (None, None),
    **properties: object,
) -> None:
    async with db.write() as conn:
        await conn.execute(
            insert(Event),
            [
                {
                    "tenant_id": "demo",
                    "contact_id": contact_id,
                    "kind": "track",
                    "type": name,
                    "properties": properties,
                    "device": context[0],
                    "timezone": context[1],
                    "message_id": f"{name}-{contact_id}-{t.timestamp()}-{i}",
                    "occurred_at": t,
                    "received_at": t,
                }
                for i, t in enumerate(times)
            ],
        )


async def test_the_daily_job_derives_features_and_starts_re_engagement(
    isolated_time_skipping_env: WorkflowEnvironment, db: Database, sink: Sink
) -> None:
    await seed_demo(db, contacts=30)
    async with db.session() as session:
        await install_builtins(session=session, tenant_id="demo")
    async with db.read() as conn:
        ids = list(
            (await conn.execute(select(col(Contact.id)).order_by(col(Contact.id)))).scalars()
        )
        granted = list(
            (
                await conn.exec_driver_sql(
                    "SELECT contact_id FROM consent_record WHERE status = 'granted' "
                    "ORDER BY contact_id"
                )
            ).scalars()
        )
    now = utcnow()
    active, lapsed, traveller = granted[0], granted[1], granted[2]
    evening = now.replace(hour=19, minute=5, second=0, microsecond=0)
    await _events(db, active, "email.opened", [evening - timedelta(days=d) for d in range(1, 9)])
    await _events(db, active, "order.completed", [now - timedelta(days=3)], category="garden")
    await _events(db, active, "product.viewed", [now - timedelta(days=2)] * 2, category="garden")
    # Seen on their phone twice and a laptop once, in Paris last week and in Tokyo yesterday.
    await _events(
        db, traveller, "page.viewed", [now - timedelta(days=6)], ("mobile", "Europe/Paris")
    )
    await _events(db, traveller, "page.viewed", [now - timedelta(days=1)], ("mobile", "Asia/Tokyo"))
    await _events(db, traveller, "page.viewed", [now - timedelta(days=3)], ("desktop", None))
    async with db.write() as conn:
        await conn.execute(update(Contact).values(last_open_at=now - timedelta(days=1)))
        await conn.execute(
            update(Contact)
            .where(col(Contact.id) == active)
            .values(timezone="UTC", engagement_score=5)
        )
        await conn.execute(
            update(Contact)
            .where(col(Contact.id) == lapsed)
            .values(last_open_at=now - timedelta(days=40))
        )
    untouched = next(i for i in ids if i not in (active, lapsed, traveller))

    # A server of its own: the journey ids repeat across the two databases' runs.
    features_env = isolated_time_skipping_env
    queue = new_queue()
    settings = settings_for(db, sink, temporal_task_queue=queue)
    async with build_worker(features_env.client, db, settings, queue):
        first: FeaturesOutcome = await features_env.client.execute_workflow(
            DailyFeaturesWorkflow.run,
            FeaturesRun(page_size=7),
            id=f"features-{queue}",
            task_queue=queue,
        )
        again: FeaturesOutcome = await features_env.client.execute_workflow(
            DailyFeaturesWorkflow.run,
            FeaturesRun(page_size=7),
            id=f"features-{queue}-2",
            task_queue=queue,
        )
        journey = features_env.client.get_workflow_handle(
            journey_workflow_id("demo", "re_engagement", lapsed)
        )
        assert (await journey.describe()).status is not None  # started by the lapse event
        for _ in range(100):  # its first activity records the run
            async with db.read() as conn:
                if await conn.scalar(select(func.count()).select_from(JourneyRun)):
                    break
            await asyncio.sleep(0.05)

    assert first.updated == 2 and first.emitted == 1
    assert again.emitted == 0  # the lapse is emitted once, not every day
    async with db.read_session() as session:
        person = await session.get(Contact, active)
        other = await session.get(Contact, untouched)
        assert person is not None and other is not None
        assert person.engagement_score > 50 and person.best_send_hour == 19
        assert person.preferred_categories[0] == "garden"
        seen = await session.get(Contact, traveller)
        assert seen is not None
        assert (seen.device, seen.timezone) == ("mobile", "Asia/Tokyo")
        assert person.purchase_frequency == pytest.approx(1 / 6, abs=0.01)
        assert other.engagement_score != 0  # no events: the imported score stays
        runs = (await session.execute(select(JourneyRun))).scalars().all()
    assert [(r.contact_id, r.journey_key) for r in runs] == [(lapsed, "re_engagement")]


async def test_the_worker_keeps_a_daily_schedule(
    dev_server_env: WorkflowEnvironment, db: Database, sink: Sink
) -> None:
    settings = settings_for(db, sink, features_cron="30 4 * * *")
    await ensure_schedules(dev_server_env.client, settings)
    await ensure_schedules(
        dev_server_env.client, settings.model_copy(update={"features_cron": "15 5 * * *"})
    )
    described = await dev_server_env.client.get_schedule_handle(SCHEDULE_ID).describe()
    (calendar,) = described.schedule.spec.calendars  # updated in place, not duplicated
    assert (calendar.hour[0].start, calendar.minute[0].start) == (5, 15)
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "DailyFeaturesWorkflow"
    assert action.task_queue == settings.temporal_task_queue
    await dev_server_env.client.get_schedule_handle(SCHEDULE_ID).delete()
