"""When the profile store fails, recipients with a profile cached in the last 24 hours are sent
from it (marked stale in "why this email"); the others wait for the store, then go out live.
The profile store here is a real PostgreSQL database whose contact table another session
locks; the campaign store is SQLite."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
from sqlalchemy import insert
from sqlmodel import col
from temporalio.testing import WorkflowEnvironment

from tailor.consent.ledger import LedgerEntry
from tailor.db import Database
from tailor.demo.seed import seed_demo
from tailor.devtools.smtp_sink import read_outbox
from tailor.models import Contact, utcnow
from tailor.store.campaigns import create_campaign
from tailor.store.consent import append_to_ledger
from tests.conftest import (
    Sink,
    empty_postgres,
    run_campaign,
    seeded_campaign,
    settings_for,
    start_campaign,
    task_queue,
)
from worker import build_worker

pytestmark = pytest.mark.postgres


async def _add_contact(db: Database, *, consent: bool) -> int:
    async with db.write() as conn:
        contact_id = (
            await conn.execute(
                insert(Contact).values(tenant_id="demo", email="late.signup@example.com",
                                       first_name="Imogen", preferred_categories=["kitchen"],
                                       cart_items=[], browse_items=[], created_at=utcnow(),
                                       updated_at=utcnow())
                .returning(col(Contact.id))
            )
        ).scalar_one()  # fmt: skip
        if consent:
            await append_to_ledger(conn, [LedgerEntry(
                tenant_id="demo", contact_id=int(contact_id or 0), status="granted", source="test",
                method="test", wording_version="v1", recorded_by="test", recorded_at=utcnow(),
            )])  # fmt: skip
    return int(contact_id or 0)


async def test_profile_store_outage_uses_cached_profiles_then_waits_for_the_rest(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink, postgres_url: str
) -> None:
    await empty_postgres(postgres_url)
    replica = Database(postgres_url)
    first_id, consenting = await seeded_campaign(sqlite_db, 40)
    await seed_demo(replica, contacts=40)
    settings = settings_for(
        sqlite_db, sink, features_database_url=postgres_url, profile_timeout_s=0.5
    )
    queue = task_queue()
    lock = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        async with build_worker(time_skipping_env.client, sqlite_db, settings, queue):
            # A first campaign reads every profile live, which also caches them.
            assert (
                await run_campaign(time_skipping_env.client, first_id, queue)
            ).sent == consenting

            # A contact joins after that (so no cached profile), then the profile store locks up.
            late_id = await _add_contact(sqlite_db, consent=True)
            assert await _add_contact(replica, consent=False) == late_id
            async with sqlite_db.session() as session:
                second = await create_campaign(session=session, tenant_id="demo", name="second",
                                               template_version_id=1, segment={})  # fmt: skip
            await lock.execute("BEGIN; LOCK TABLE contact IN ACCESS EXCLUSIVE MODE")
            handle = await start_campaign(time_skipping_env.client, second.id, queue)
            async with asyncio.timeout(60):
                while len(read_outbox(sink.maildir, second.id)) < consenting:
                    await asyncio.sleep(0.1)
            await asyncio.sleep(1)  # the chunk's retry runs against the locked store again
            sent_to = {e.to for e in read_outbox(sink.maildir, second.id)}
            assert "late.signup@example.com" not in sent_to, "no profile, no email yet"

            await lock.execute("ROLLBACK")  # the store is back
            outcome = await handle.result()
    finally:
        await lock.close()
        await replica.dispose()
    assert outcome.sent == consenting + 1
    async with sqlite_db.read() as conn:
        rows: list[Any] = list((await conn.exec_driver_sql(
            f"SELECT contact_id, explain FROM send WHERE campaign_id = '{second.id}' "
            "AND status = 'sent'")).all())  # fmt: skip
    profiles = {cid: json.loads(e)["profile"] if isinstance(e, str) else e["profile"]
                for cid, e in rows}  # fmt: skip
    assert profiles.pop(late_id) == {"source": "live"}
    assert {p["source"] for p in profiles.values()} == {"cache"}
    assert all(p["stale"] is True and 0 <= p["age_s"] < 24 * 3600 for p in profiles.values())
    late = [e for e in read_outbox(sink.maildir, second.id) if e.to == "late.signup@example.com"]
    assert len(late) == 1 and "Imogen" in str(late[0].full()["Subject"])
