"""CampaignWorkflow on the time-skipping test server with the real activities, store and SMTP."""

from __future__ import annotations

import re
from collections import Counter

from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from tailor.db import Database
from tailor.devtools.smtp_sink import read_outbox
from tailor.models import ConsentStatus, SendStatus
from tailor.payloads import CampaignOutcome
from tailor.store.campaigns import send_counts
from tailor.store.consent import current_consent, record_consent
from tailor.store.contacts import find_contact
from tests.conftest import (
    Sink,
    run_campaign,
    seeded_campaign,
    settings_for,
    start_campaign,
    task_queue,
)
from worker import build_worker


async def test_campaign_sends_one_compliant_email_per_consenting_contact(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink
) -> None:
    campaign_id, consenting = await seeded_campaign(sqlite_db, 230)
    settings = settings_for(sqlite_db, sink)
    queue = task_queue()
    async with build_worker(time_skipping_env.client, sqlite_db, settings, queue):
        outcome: CampaignOutcome = await (
            await start_campaign(time_skipping_env.client, campaign_id, queue)
        ).result()
    assert outcome.status == "completed"
    assert outcome.sent == consenting
    assert outcome.suppressed == 230 - consenting
    assert outcome.failed == 0

    emails = read_outbox(sink.maildir, campaign_id)
    assert len(emails) == consenting
    per_recipient = Counter(e.to for e in emails)
    assert max(per_recipient.values()) == 1
    for email in emails[:25]:
        assert email.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert re.search(
            r"<http://127\.0\.0\.1:8000/v1/unsubscribe/[^>]+>", email.headers["List-Unsubscribe"]
        )
        assert "mailto:" not in email.headers["List-Unsubscribe"]  # nothing would read it
        text = email.full().get_body(preferencelist=("plain",))
        assert text is not None
        body = text.get_content()
        assert "500 Market Street" in body and "Unsubscribe: http" in body


async def test_revoked_contact_is_suppressed_not_sent(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink
) -> None:
    campaign_id, _ = await seeded_campaign(sqlite_db, 60)
    async with sqlite_db.read() as conn:
        consent = await current_consent(conn, contact_ids=range(1, 61))
    victim = next(cid for cid, status in consent.items() if status == ConsentStatus.GRANTED)
    async with sqlite_db.session() as session:
        await record_consent(
            session=session,
            tenant_id="demo",
            contact_id=victim,
            status=ConsentStatus.REVOKED,
            source="api",
            method="preference-center",
            wording_version="newsletter-v2",
            recorded_by="test",
        )
    settings = settings_for(sqlite_db, sink)
    queue = task_queue()
    async with build_worker(time_skipping_env.client, sqlite_db, settings, queue):
        await run_campaign(time_skipping_env.client, campaign_id, queue)
    async with sqlite_db.read() as conn:
        counts = await send_counts(conn, campaign_id=campaign_id)
    assert counts[SendStatus.SUPPRESSED] >= 1
    recipients = {e.to for e in read_outbox(sink.maildir, campaign_id)}
    async with sqlite_db.read_session() as session:
        victim_email = (await find_contact(session=session, contact_id=victim)).email
    assert victim_email not in recipients


async def test_unknown_campaign_fails_without_retrying_forever(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink
) -> None:
    settings = settings_for(sqlite_db, sink)
    queue = task_queue()
    async with build_worker(time_skipping_env.client, sqlite_db, settings, queue):
        try:
            await run_campaign(time_skipping_env.client, "cmp_missing", queue)
        except WorkflowFailureError as exc:
            assert exc.cause is not None and "not found" in str(exc.cause.__cause__ or exc.cause)
        else:
            raise AssertionError("workflow should fail")


async def test_no_contact_data_reaches_the_workflow_history(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink
) -> None:
    campaign_id, _ = await seeded_campaign(sqlite_db, 120)
    settings = settings_for(sqlite_db, sink)
    queue = task_queue()
    async with build_worker(time_skipping_env.client, sqlite_db, settings, queue):
        handle = await start_campaign(time_skipping_env.client, campaign_id, queue)
        await handle.result()
        history = (await handle.fetch_history()).to_json()
    async with sqlite_db.read() as conn:
        rows = (
            await conn.exec_driver_sql("SELECT email, first_name, last_name FROM contact")
        ).all()
    assert len(rows) == 120
    leaked = [
        value for row in rows for value in row if value and len(value) > 3 and value in history
    ]
    assert leaked == []
    assert "500 Market Street" not in history  # nor rendered content
