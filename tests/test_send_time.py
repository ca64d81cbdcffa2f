"""Send-time optimisation in batch campaigns: each recipient's email goes in the hour that is
their best local hour, over 24 hourly passes (time-skipping Temporal), and says why."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlmodel import col
from temporalio.testing import WorkflowEnvironment

from tailor.db import Database
from tailor.demo.seed import seed_demo
from tailor.models import Contact, Send, SendStatus
from tailor.send_time import DEFAULT_HOUR
from tailor.store.campaigns import create_campaign
from tests.conftest import Sink, run_campaign, settings_for
from tests.conftest import task_queue as new_queue
from worker import build_worker


async def test_each_recipient_gets_the_email_at_their_best_local_hour(
    isolated_time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink
) -> None:
    env, db = isolated_time_skipping_env, sqlite_db
    seeded = await seed_demo(db, contacts=40)
    async with db.write() as conn:
        ids = list(
            (await conn.execute(select(col(Contact.id)).order_by(col(Contact.id)))).scalars()
        )
        # A third learned an evening hour, a third a morning one, the rest have no history.
        for i, contact_id in enumerate(ids):
            hour = (19, 7, None)[i % 3]
            zone = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC")[i % 4]
            await conn.execute(update(Contact).where(col(Contact.id) == contact_id)
                               .values(best_send_hour=hour, timezone=zone))  # fmt: skip
    async with db.session() as session:
        campaign = await create_campaign(
            session=session, tenant_id="demo", name="At their best hour",
            template_version_id=seeded.template_version_id, segment={}, send_time="best_hour",
        )  # fmt: skip

    queue = new_queue()
    async with build_worker(env.client, db, settings_for(db, sink), queue):
        outcome = await run_campaign(env.client, campaign.id, queue)  # skips the 24 hours

    assert outcome.status == "completed" and outcome.sent == seeded.consenting
    async with db.read() as conn:
        sends = (await conn.execute(
            select(Send.contact_id, Send.status, Send.explain)  # type: ignore[call-overload]
            .where(col(Send.campaign_id) == campaign.id))).all()  # fmt: skip
        contacts = {
            c.id: c
            for c in (
                Contact.model_validate(dict(r._mapping))
                for r in await conn.execute(select(Contact))
            )
        }
    sent = [(cid, json.loads(e) if isinstance(e, str) else e) for cid, s, e in sends
            if s == SendStatus.SENT]  # fmt: skip
    assert len(sent) == seeded.consenting  # one email each, over the rounds
    rounds = set()
    for contact_id, why in sent:
        contact = contacts[contact_id]
        timing = why["send_time"]
        expected = contact.best_send_hour if contact.best_send_hour is not None else DEFAULT_HOUR
        assert timing["local_hour"] == expected
        sent_in = datetime.fromisoformat(timing["round_utc"]).astimezone(ZoneInfo(contact.timezone))
        assert sent_in.hour == expected, (contact.timezone, timing)
        rounds.add(timing["round_utc"])
        if contact.best_send_hour is None:
            assert "no open history" in timing["why"]
        else:
            assert "learned" in timing["why"]
    assert len(rounds) > 3  # spread over the day, not sent at once


async def test_a_campaign_at_nine_reaches_everyone_at_nine_their_time(
    isolated_time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink
) -> None:
    env, db = isolated_time_skipping_env, sqlite_db
    seeded = await seed_demo(db, contacts=40)
    zones = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC")
    async with db.write() as conn:
        ids = list(
            (await conn.execute(select(col(Contact.id)).order_by(col(Contact.id)))).scalars()
        )
        for i, contact_id in enumerate(ids):  # a learned best hour does not matter here
            await conn.execute(update(Contact).where(col(Contact.id) == contact_id)
                               .values(best_send_hour=19, timezone=zones[i % 4]))  # fmt: skip
    async with db.session() as session:
        campaign = await create_campaign(
            session=session, tenant_id="demo", name="Nine o'clock",
            template_version_id=seeded.template_version_id, segment={}, send_time="09:00",
        )  # fmt: skip

    queue = new_queue()
    async with build_worker(env.client, db, settings_for(db, sink), queue):
        outcome = await run_campaign(env.client, campaign.id, queue)

    assert outcome.status == "completed" and outcome.sent == seeded.consenting
    async with db.read() as conn:
        rows = (await conn.execute(
            select(Contact.timezone, Send.explain)  # type: ignore[call-overload]
            .join(Contact, col(Contact.id) == col(Send.contact_id))
            .where(col(Send.campaign_id) == campaign.id, col(Send.status) == "sent")
        )).all()  # fmt: skip
    assert len(rows) == seeded.consenting
    for timezone, explain in rows:
        timing = (json.loads(explain) if isinstance(explain, str) else explain)["send_time"]
        sent_in = datetime.fromisoformat(timing["round_utc"]).astimezone(ZoneInfo(timezone))
        assert sent_in.hour == 9 and timing["local_hour"] == 9, (timezone, timing)
        assert "own timezone" in timing["why"]
