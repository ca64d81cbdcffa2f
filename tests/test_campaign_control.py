"""Pause, resume, cancel, consent signals and delivery failures, on the time-skipping server."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment

from tailor.db import Database
from tailor.devtools.smtp_sink import read_outbox, start_sink
from tailor.models import ConsentStatus, SendStatus
from tailor.payloads import CampaignOutcome, CampaignProgress
from tailor.store.campaigns import get_campaign, send_counts
from tailor.store.consent import current_consent
from tailor.store.contacts import find_contact
from tests.conftest import (
    Sink,
    seeded_campaign,
    settings_for,
    start_campaign,
    task_queue,
)
from worker import build_worker
from workflows.campaign import CampaignWorkflow


async def _progress(handle: WorkflowHandle[CampaignWorkflow, CampaignOutcome]) -> CampaignProgress:
    return await handle.query(CampaignWorkflow.progress)


async def test_paused_campaign_sends_nothing_until_resumed(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink
) -> None:
    campaign_id, consenting = await seeded_campaign(sqlite_db, 120)
    queue = task_queue()
    async with build_worker(
        time_skipping_env.client, sqlite_db, settings_for(sqlite_db, sink), queue
    ):
        handle = await start_campaign(time_skipping_env.client, campaign_id, queue, paused=True)
        await asyncio.sleep(1.0)  # real time: a running campaign would have sent by now
        progress = await _progress(handle)
        assert progress.status == "paused" and progress.total == 120
        assert read_outbox(sink.maildir, campaign_id) == []

        await handle.signal(CampaignWorkflow.resume)
        outcome = await handle.result()
    assert outcome.status == "completed" and outcome.sent == consenting
    assert len(read_outbox(sink.maildir, campaign_id)) == consenting


async def test_cancelled_campaign_stops_and_is_marked_cancelled(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink
) -> None:
    campaign_id, _ = await seeded_campaign(sqlite_db, 80)
    queue = task_queue()
    async with build_worker(
        time_skipping_env.client, sqlite_db, settings_for(sqlite_db, sink), queue
    ):
        handle = await start_campaign(time_skipping_env.client, campaign_id, queue, paused=True)
        await handle.signal(CampaignWorkflow.cancel)
        outcome = await handle.result()
    assert outcome.status == "cancelled"
    assert outcome.sent == 0
    assert read_outbox(sink.maildir, campaign_id) == []
    async with sqlite_db.read_session() as session:
        campaign = await get_campaign(session=session, campaign_id=campaign_id)
    assert campaign.status == "cancelled" and campaign.completed_at is not None


async def test_revoke_consent_signal_reaches_chunks_scheduled_after_it(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink
) -> None:
    """The signal alone (no ledger row yet, e.g. a lagging replica) keeps the email from going."""
    campaign_id, consenting = await seeded_campaign(sqlite_db, 100)
    async with sqlite_db.read() as conn:
        consent = await current_consent(conn, contact_ids=range(1, 101))
    victim = next(cid for cid, status in consent.items() if status == ConsentStatus.GRANTED)
    queue = task_queue()
    async with build_worker(
        time_skipping_env.client, sqlite_db, settings_for(sqlite_db, sink), queue
    ):
        handle = await start_campaign(time_skipping_env.client, campaign_id, queue, paused=True)
        await handle.signal(CampaignWorkflow.revoke_consent, victim)
        await handle.signal(CampaignWorkflow.resume)
        outcome = await handle.result()
    assert outcome.sent == consenting - 1
    async with sqlite_db.read_session() as session:
        victim_email = (await find_contact(session=session, contact_id=victim)).email
    assert victim_email not in {e.to for e in read_outbox(sink.maildir, campaign_id)}


async def test_deferred_sends_are_retried_and_nobody_gets_two(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink
) -> None:
    campaign_id, consenting = await seeded_campaign(sqlite_db, 150)
    sink.handler.faults.defer_first = 7  # the provider says 451 to the first seven messages
    queue = task_queue()
    async with build_worker(
        time_skipping_env.client, sqlite_db, settings_for(sqlite_db, sink), queue
    ):
        handle = await start_campaign(time_skipping_env.client, campaign_id, queue)
        outcome = await handle.result()
    assert sink.handler.faults.deferred == 7
    assert outcome.sent == consenting and outcome.failed == 0
    per_recipient = Counter(e.to for e in read_outbox(sink.maildir, campaign_id))
    assert len(per_recipient) == consenting and set(per_recipient.values()) == {1}
    history = await handle.fetch_history()
    retried = [
        e
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
        and e.activity_task_started_event_attributes.attempt > 1
    ]
    assert retried, "the deferred chunk should have been retried by Temporal"


async def test_reply_lost_after_end_of_data_is_never_resent(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink
) -> None:
    campaign_id, consenting = await seeded_campaign(sqlite_db, 90)
    sink.handler.faults.hang_up_first = 3  # accepted, but the connection drops before "250"
    queue = task_queue()
    async with build_worker(
        time_skipping_env.client, sqlite_db, settings_for(sqlite_db, sink), queue
    ):
        outcome = await (
            await start_campaign(time_skipping_env.client, campaign_id, queue)
        ).result()
    per_recipient = Counter(e.to for e in read_outbox(sink.maildir, campaign_id))
    assert set(per_recipient.values()) == {1} and len(per_recipient) == consenting
    assert outcome.sent == consenting
    async with sqlite_db.read() as conn:
        counts = await send_counts(conn, campaign_id=campaign_id)
    assert counts[SendStatus.DISPATCHED] == 3  # unconfirmed, counted as sent, never resent


async def test_smtp_outage_is_retried_until_the_server_is_back(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink
) -> None:
    campaign_id, consenting = await seeded_campaign(sqlite_db, 60)
    sink.controller.stop()
    queue = task_queue()
    async with build_worker(
        time_skipping_env.client, sqlite_db, settings_for(sqlite_db, sink), queue
    ):
        handle = await start_campaign(time_skipping_env.client, campaign_id, queue)
        await asyncio.sleep(1.5)
        assert read_outbox(sink.maildir, campaign_id) == []
        sink.controller, sink.handler = start_sink(sink.maildir, "127.0.0.1", sink.port)
        outcome = await handle.result()
    assert outcome.sent == consenting
    assert len(read_outbox(sink.maildir, campaign_id)) == consenting


async def test_large_campaign_continues_as_new_and_keeps_totals(
    isolated_time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink
) -> None:
    time_skipping_env = isolated_time_skipping_env
    campaign_id, consenting = await seeded_campaign(sqlite_db, 200)
    settings = settings_for(sqlite_db, sink, chunk_size=20, chunks_per_run=3)
    queue = task_queue()
    async with build_worker(time_skipping_env.client, sqlite_db, settings, queue):
        handle = await start_campaign(time_skipping_env.client, campaign_id, queue)
        outcome = await handle.result()
    assert outcome.sent == consenting and outcome.suppressed == 200 - consenting
    per_recipient = Counter(e.to for e in read_outbox(sink.maildir, campaign_id))
    assert set(per_recipient.values()) == {1} and len(per_recipient) == consenting
    first_run = time_skipping_env.client.get_workflow_handle(
        handle.id, run_id=handle.first_execution_run_id
    )
    assert (await first_run.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW


async def test_cancelling_through_temporal_records_the_campaign_as_cancelled(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink
) -> None:
    campaign_id, _ = await seeded_campaign(sqlite_db, 80)
    queue = task_queue()
    settings = settings_for(sqlite_db, sink)
    async with build_worker(time_skipping_env.client, sqlite_db, settings, queue):
        handle = await start_campaign(time_skipping_env.client, campaign_id, queue, paused=True)
        await handle.query(CampaignWorkflow.progress)  # the planner has run
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    async with sqlite_db.read_session() as session:
        campaign = await get_campaign(session=session, campaign_id=campaign_id)
    assert campaign.status == "cancelled"
    assert read_outbox(sink.maildir, campaign_id) == []
