"""Campaigns through the HTTP providers' real adapters and the loopback provider stub: failover
when the primary fails, traffic back when it recovers, refusals, unclear outcomes, slowness.
Nothing is sent twice, whatever the provider does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlmodel import col
from temporalio.testing import WorkflowEnvironment

from tailor.config import Settings
from tailor.db import Database
from tailor.delivery.providers.base import OutgoingEmail
from tailor.delivery.providers.router import ProviderRouter
from tailor.delivery.providers.sendgrid import SendGridProvider
from tailor.delivery.providers.setup import build_router
from tailor.demo.seed import seed_demo
from tailor.devtools.esp_stub import (
    STUB_MAILGUN_DOMAIN,
    STUB_MAILGUN_KEY,
    STUB_SENDGRID_KEY,
    STUB_SES_ACCESS_KEY,
    STUB_SES_SECRET,
    EspStub,
    running_esp_stub,
)
from tailor.models import ConsentRecord, Contact, Send, SendStatus, Tenant, utcnow
from tailor.store.campaigns import create_campaign
from tailor.store.consent import consenting_contacts
from tailor.store.sends import ensure_send_rows
from tests.conftest import Sink, run_campaign, settings_for, task_queue
from worker import build_worker

CONTACTS = 160


@pytest.fixture
def esp() -> Iterator[EspStub]:
    with running_esp_stub() as stub:
        yield stub


def provider_settings(db: Database, sink: Sink, esp: EspStub, **extra: Any) -> Settings:
    return settings_for(
        db,
        sink,
        providers=["sendgrid", "mailgun", "ses"],
        sendgrid_api_key=STUB_SENDGRID_KEY,
        sendgrid_base_url=esp.url,
        mailgun_api_key=STUB_MAILGUN_KEY,
        mailgun_domain=STUB_MAILGUN_DOMAIN,
        mailgun_base_url=esp.url,
        ses_access_key_id=STUB_SES_ACCESS_KEY,
        ses_secret_access_key=STUB_SES_SECRET,
        ses_endpoint_url=esp.url,
        provider_timeout_s=5.0,
        **extra,
    )


@asynccontextmanager
async def provider_worker(
    env: WorkflowEnvironment, db: Database, settings: Settings, queue: str
) -> AsyncIterator[ProviderRouter]:
    """A worker whose router (and the providers' HTTP clients) is closed afterwards."""
    router = build_router(settings)
    try:
        async with build_worker(env.client, db, settings, queue, router):
            yield router
    finally:
        await router.close()


async def _campaign(db: Database, version_id: int) -> str:
    async with db.session() as session:
        campaign = await create_campaign(
            session=session, tenant_id="demo", name="Failover", template_version_id=version_id,
            segment={},
        )  # fmt: skip
    return campaign.id


async def _sends(db: Database, campaign_id: str) -> list[Send]:
    async with db.read_session() as session:
        rows = await session.execute(select(Send).where(col(Send.campaign_id) == campaign_id))
        return list(rows.scalars())


def _by_provider(sends: list[Send]) -> dict[str, int]:
    out: dict[str, int] = {}
    for send in sends:
        if send.status in (SendStatus.SENT, SendStatus.DISPATCHED):
            out[send.provider or "?"] = out.get(send.provider or "?", 0) + 1
    return out


async def test_a_failing_primary_fails_over_and_traffic_returns_when_it_recovers(
    time_skipping_env: WorkflowEnvironment, db: Database, sink: Sink, esp: EspStub
) -> None:
    seeded = await seed_demo(db, contacts=CONTACTS)
    settings = provider_settings(db, sink, esp, provider_health_interval_s=0.3)
    esp.sendgrid.fail_status = 503  # the primary is down...
    esp.sendgrid.fail_until = time.monotonic() + 4.0  # ...for a few seconds
    queue = task_queue()
    async with provider_worker(time_skipping_env, db, settings, queue) as router:
        health = asyncio.create_task(router.health_loop())
        try:
            during = await _campaign(db, seeded.template_version_id)
            outcome = await run_campaign(time_skipping_env.client, during, queue)
            assert outcome.sent == seeded.consenting
            # Every email went through the secondary, and the primary saw only the requests it
            # took to open its breaker (one per chunk in flight at most).
            sends = await _sends(db, during)
            assert _by_provider(sends) == {"mailgun": seeded.consenting}
            assert all(
                s.explain and s.explain["delivery"] == {"provider": "mailgun"}
                for s in sends
                if s.status == SendStatus.SENT
            )  # "why this email" says who delivered it
            failed = esp.stats()["providers"]["sendgrid"]["failed"]
            assert 3 <= failed <= 3 + settings.chunk_concurrency
            assert router.is_open("sendgrid")

            async with asyncio.timeout(15):  # the health check closes it once 503s stop
                while router.is_open("sendgrid"):
                    await asyncio.sleep(0.1)
            after = await _campaign(db, seeded.template_version_id)
            await run_campaign(time_skipping_env.client, after, queue)
            assert _by_provider(await _sends(db, after)) == {"sendgrid": seeded.consenting}
        finally:
            health.cancel()
    stats = esp.stats()
    assert stats["duplicates"] == 0
    assert stats["messages"] == 2 * seeded.consenting


async def test_a_refused_address_is_suppressed_and_the_rest_are_delivered(
    time_skipping_env: WorkflowEnvironment, db: Database, sink: Sink, esp: EspStub
) -> None:
    seeded = await seed_demo(db, contacts=CONTACTS)
    async with db.read_session() as session:
        bouncing = (await session.execute(select(Contact).order_by(col(Contact.id)))).scalars()
        contact = next(iter(bouncing))
    esp.sendgrid.reject_addresses = {contact.email}
    settings = provider_settings(db, sink, esp)
    queue = task_queue()
    async with provider_worker(time_skipping_env, db, settings, queue):
        first = await _campaign(db, seeded.template_version_id)
        outcome = await run_campaign(time_skipping_env.client, first, queue)
        second = await _campaign(db, seeded.template_version_id)
        await run_campaign(time_skipping_env.client, second, queue)

    sends = {s.contact_id: s for s in await _sends(db, first)}
    assert sends[contact.id].status == SendStatus.FAILED  # type: ignore[index]
    assert "valid address" in (sends[contact.id].error or "")  # type: ignore[index]
    # The others in that request were not refused: they went on the same provider.
    assert outcome.sent == seeded.consenting - 1
    assert _by_provider(list(sends.values())) == {"sendgrid": seeded.consenting - 1}
    async with db.read_session() as session:
        ledger = (
            await session.execute(
                select(ConsentRecord).where(col(ConsentRecord.contact_id) == contact.id)
                .order_by(col(ConsentRecord.id).desc())
            )
        ).scalars().first()  # fmt: skip
    assert ledger is not None and ledger.status == "suppressed"
    assert ledger.source == "hard-bounce"
    # The next campaign does not try the address again.
    later = {s.contact_id: s for s in await _sends(db, second)}
    assert later[contact.id].status == SendStatus.SUPPRESSED  # type: ignore[index]
    assert esp.stats()["duplicates"] == 0


async def test_an_unanswered_request_is_never_resent_anywhere(
    time_skipping_env: WorkflowEnvironment, db: Database, sink: Sink, esp: EspStub
) -> None:
    """The primary takes the messages and hangs up without an answer: they may have gone, so
    they stay dispatched and no provider gets them again."""
    seeded = await seed_demo(db, contacts=CONTACTS)
    esp.sendgrid.drop_after_read = True
    settings = provider_settings(db, sink, esp)
    queue = task_queue()
    async with provider_worker(time_skipping_env, db, settings, queue):
        campaign = await _campaign(db, seeded.template_version_id)
        await run_campaign(time_skipping_env.client, campaign, queue)
    sends = await _sends(db, campaign)
    dispatched = [s for s in sends if s.status == SendStatus.DISPATCHED]
    assert dispatched and all(s.provider == "sendgrid" for s in dispatched)
    stats = esp.stats()
    assert stats["duplicates"] == 0
    # Everything the stub accepted is one email per person; the rest went to the secondary.
    assert stats["messages"] == seeded.consenting


async def test_a_slow_provider_slows_the_campaign_instead_of_queueing_emails(
    time_skipping_env: WorkflowEnvironment, db: Database, sink: Sink, esp: EspStub
) -> None:
    """Each chunk has one request in flight: with 1 s per request, 4 batches over 2 chunks in
    flight take at least 2 s, and nothing is composed ahead of the provider."""
    seeded = await seed_demo(db, contacts=CONTACTS)
    esp.sendgrid.latency_s = 1.0
    settings = provider_settings(db, sink, esp, chunk_size=40, chunk_concurrency=2)
    queue = task_queue()
    async with provider_worker(time_skipping_env, db, settings, queue):
        campaign = await _campaign(db, seeded.template_version_id)
        started = time.monotonic()
        outcome = await run_campaign(time_skipping_env.client, campaign, queue)
        elapsed = time.monotonic() - started
    assert outcome.sent == seeded.consenting
    requests = esp.stats()["providers"]["sendgrid"]["requests"]
    assert requests == -(-CONTACTS // 40)  # one request per chunk, none repeated
    assert elapsed >= requests / 2 * 1.0


async def test_a_tenant_rate_limit_paces_its_sending(
    time_skipping_env: WorkflowEnvironment, db: Database, sink: Sink, esp: EspStub
) -> None:
    """50 emails a second at most: the first second's 50 go at once, the rest follow."""
    seeded = await seed_demo(db, contacts=CONTACTS)
    async with db.write() as conn:
        await conn.execute(update(Tenant).values(send_rate_per_s=50))
    settings = provider_settings(db, sink, esp, chunk_size=25)
    queue = task_queue()
    async with provider_worker(time_skipping_env, db, settings, queue):
        campaign = await _campaign(db, seeded.template_version_id)
        started = time.monotonic()
        outcome = await run_campaign(time_skipping_env.client, campaign, queue)
        elapsed = time.monotonic() - started
    assert outcome.sent == seeded.consenting
    assert elapsed >= (seeded.consenting - 50) / 50


async def test_sends_left_unclear_by_a_dead_attempt_are_looked_up_not_guessed(
    time_skipping_env: WorkflowEnvironment, db: Database, sink: Sink, esp: EspStub
) -> None:
    """An earlier attempt claimed 20 sends and died: 10 reached the provider, 10 did not. The
    next attempt asks the provider, marks the 10 sent, and sends only the other 10."""
    seeded = await seed_demo(db, contacts=CONTACTS)
    campaign = await _campaign(db, seeded.template_version_id)
    async with db.read_session() as session:
        granted = await consenting_contacts(await session.connection(), tenant_id="demo", limit=20)
    async with db.write() as conn:
        await ensure_send_rows(
            conn, campaign_id=campaign, contact_ids=[c.id for c in granted],
            domain="northwind.example.com",
        )  # fmt: skip
        await conn.execute(
            update(Send)
            .where(col(Send.campaign_id) == campaign)
            .values(status="dispatched", provider="sendgrid",
                    dispatched_at=utcnow() - timedelta(hours=1))
        )  # fmt: skip
    unclear = await _sends(db, campaign)
    reached = unclear[:10]
    provider = SendGridProvider(api_key=STUB_SENDGRID_KEY, base_url=esp.url, timeout_s=5)
    try:
        posted = await provider.send_batch([
            OutgoingEmail(send_id=s.id or 0, tenant_id="demo", campaign_id=campaign,
                          to_email=f"person{s.contact_id}@example.com",
                          from_email="news@northwind.example.com", from_name="Northwind",
                          subject="Hello", text="Hi", html="<p>Hi</p>",
                          headers={"Message-ID": s.message_id})
            for s in reached
        ])  # fmt: skip
    finally:
        await provider.close()
    assert all(r.verdict.value == "accepted" for r in posted.results)

    settings = provider_settings(db, sink, esp, provider_reconcile_after_s=60)
    queue = task_queue()
    async with provider_worker(time_skipping_env, db, settings, queue):
        outcome = await run_campaign(time_skipping_env.client, campaign, queue)

    assert outcome.sent == seeded.consenting
    after = {s.id: s for s in await _sends(db, campaign)}
    for send in reached:
        assert after[send.id].provider_message_id == "reconciled:sendgrid"
    stats = esp.stats()
    assert stats["duplicates"] == 0
    assert stats["unique"] == seeded.consenting  # the 10 that never arrived were sent now
