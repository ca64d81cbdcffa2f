"""A revocation means what it says: after the API answers, no email reaches the person except
one the answer names as already on its way, and the answer is what the provider received.

Revocations are driven into the claim window: the provider (the SendGrid stub) takes 1.5 s
to answer, and people are revoked the moment their send is claimed, beside others whose send is
not reached yet. On both databases: PostgreSQL orders claims and revocations by an advisory lock,
SQLite by its write lock.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from tailor.db import Database
from tailor.delivery.providers.setup import build_router
from tailor.devtools.esp_stub import STUB_SENDGRID_KEY, EspStub, running_esp_stub
from tailor.models import ConsentStatus, Send, utcnow
from tailor.store.consent import current_consent, order_against_claims
from tailor.store.esp_events import LedgerChange, append_consent_changes
from tailor.store.sends import claim_for_dispatch, ensure_send_rows
from tests.conftest import (
    Sink,
    key_headers,
    seeded_campaign,
    settings_for,
    start_campaign,
    task_queue,
)
from worker import build_worker

CONTACTS = 160
REVOKE_EACH = 4  # people revoked while their send is claimed, and as many while it is pending


@dataclass
class Answered:
    on_its_way: list[dict[str, Any]]
    seq_before: int  # the provider's last message when the revocation was asked for
    seq_after: int  # and when it was answered
    recorded_at: datetime  # the revocation's ledger row


@dataclass
class SendNow:
    status: str
    claimed_s_ago: float | None
    sent_at: datetime | None


def _last_seq(esp: EspStub) -> int:
    return max((m.seq for m in esp.messages()), default=0)


async def _sends(db: Database, campaign_id: str) -> dict[int, SendNow]:
    """Contact id -> where its send stands."""
    async with db.read() as conn:
        rows = await conn.execute(
            select(Send.contact_id, Send.status, Send.dispatched_at, Send.sent_at).where(  # type: ignore[call-overload]
                col(Send.campaign_id) == campaign_id
            )
        )
    now = utcnow()
    return {
        int(contact_id): SendNow(
            str(status), (now - claimed).total_seconds() if claimed else None, sent_at
        )
        for contact_id, status, claimed, sent_at in rows.all()
    }


async def test_a_revocation_names_the_emails_already_on_their_way_and_no_other_arrives(
    db: Database, time_skipping_env: WorkflowEnvironment, sink: Sink
) -> None:
    env = time_skipping_env
    campaign_id, _ = await seeded_campaign(db, CONTACTS)
    async with db.read() as conn:
        rows = await conn.exec_driver_sql("SELECT id, email FROM contact")
        emails = {int(row.id): str(row.email) for row in rows}
        consent = await current_consent(conn, contact_ids=emails)
    later = sorted(c for c, status in consent.items() if status == "granted")[-40:]
    with running_esp_stub() as esp:
        esp.sendgrid.latency_s = 1.5  # every claimed batch waits this long for its answer
        queue = task_queue()
        settings = settings_for(
            db, sink, temporal_task_queue=queue, providers=["sendgrid"],
            sendgrid_api_key=STUB_SENDGRID_KEY, sendgrid_base_url=esp.url, chunk_size=10,
            chunk_concurrency=2,
        )  # fmt: skip
        app = create_app(settings, temporal_client=env.client)
        router = build_router(settings)
        answers: dict[int, Answered] = {}
        claimed_when_revoked: set[int] = set()
        try:
            async with (
                build_worker(env.client, db, settings, queue, router),
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://t",
                    headers=await key_headers(db, "demo", "marketer"), timeout=30,
                ) as http,
            ):  # fmt: skip
                handle = await start_campaign(env.client, campaign_id, queue)

                async def revoke(contact_id: int) -> None:
                    before = _last_seq(esp)
                    answer = await http.post(
                        f"/v1/contacts/{contact_id}/consent",
                        json={"status": "revoked", "source": "test", "method": "api",
                              "wording_version": "v1"},
                    )  # fmt: skip
                    assert answer.status_code == 200, answer.text
                    body = answer.json()
                    answers[contact_id] = Answered(
                        body["on_its_way"], before, _last_seq(esp),
                        datetime.fromisoformat(body["record"]["recorded_at"]),
                    )  # fmt: skip

                async with asyncio.timeout(120):
                    while (
                        len(claimed_when_revoked) < REVOKE_EACH
                        and not (await handle.describe()).close_time
                    ):
                        sends = await _sends(db, campaign_id)
                        # Claimed a moment ago: the provider has a second and a half to go.
                        claimed = [
                            c for c, s in sends.items()
                            if s.status == "dispatched" and (s.claimed_s_ago or 0) < 0.3
                        ]  # fmt: skip
                        # People the campaign has not reached yet, from the end of the list.
                        pending = [c for c in later if c not in sends and c not in answers]
                        fresh = [c for c in claimed if c not in answers]
                        if fresh and pending:
                            now = fresh[:2]  # two of a batch in flight, two still pending
                            claimed_when_revoked.update(now)
                            await asyncio.gather(*map(revoke, now + pending[-len(now) :]))
                        await asyncio.sleep(0.01)
                    await handle.result()
        finally:
            await router.close()
        messages = esp.messages("sendgrid")
        sent = await _sends(db, campaign_id)

    assert len(claimed_when_revoked) >= REVOKE_EACH, "the campaign ended before the window"
    assert len(answers) == 2 * len(claimed_when_revoked)
    accepted = {m.send_id for m in messages}
    for contact_id, answered in answers.items():
        mine = [m for m in messages if m.to == emails[contact_id]]
        # The promise: nothing reaches them after the answer...
        assert not [m for m in mine if m.seq > answered.seq_after], (contact_id, answered)
        # ...and what the answer names as sent, the provider has; nothing else came while the
        # revocation was being answered.
        assert all(e["status"] in {"sent", "failed"} for e in answered.on_its_way), answered
        named = {e["send_id"] for e in answered.on_its_way if e["status"] == "sent"}
        assert named <= accepted
        during = {m.send_id for m in mine if m.seq > answered.seq_before}
        accepted_before = {  # by the provider, before the revocation was written
            m.send_id for m in mine
            if (at := sent[contact_id].sent_at) is not None and at <= answered.recorded_at
        }  # fmt: skip
        assert during <= named | accepted_before, (contact_id, answered)
        assert all(e["campaign_id"] == campaign_id for e in answered.on_its_way)
    # Revoked within 0.3 s of their claim: their email is named (the provider takes 1.5 s to
    # answer, so it cannot have been accepted before the revocation was read).
    assert all(
        [e["status"] for e in answers[c].on_its_way] == ["sent"] for c in claimed_when_revoked
    ), {c: answers[c] for c in claimed_when_revoked}
    # Revoked before the campaign reached them: nothing on its way, and nothing came.
    for contact_id in set(answers) - claimed_when_revoked:
        assert answers[contact_id].on_its_way == []
        assert not [m for m in messages if m.to == emails[contact_id]]


@pytest.mark.postgres
async def test_an_esp_unsubscribe_is_ordered_against_claims_as_an_api_revocation_is(
    postgres_url: str,
) -> None:
    """A webhook's unsubscribe holds the tenant's consent lock from before it touches send rows
    to its commit: a claim that starts meanwhile waits for it, then sees the revocation."""
    from tests.conftest import empty_postgres

    await empty_postgres(postgres_url)
    db = Database(postgres_url)
    try:
        campaign_id, _ = await seeded_campaign(db, 6)
        async with db.read() as conn:
            contact = min(
                c for c, s in (await current_consent(
                    conn, contact_ids=range(1, 7))).items() if s == "granted"
            )  # fmt: skip
        async with db.write() as conn:
            await ensure_send_rows(conn, campaign_id=campaign_id, contact_ids=[contact],
                                   domain="shop.example")  # fmt: skip
            send_id = int(await conn.scalar(select(col(Send.id))) or 0)
        webhook_holding = asyncio.Event()
        release = asyncio.Event()

        async def webhook() -> None:
            async with db.write() as conn:
                await order_against_claims(conn, tenant_ids={"demo"})
                webhook_holding.set()
                await release.wait()  # the rest of the batch: send states, rollups...
                await append_consent_changes(conn, changes=[LedgerChange(
                    "demo", contact, ConsentStatus.REVOKED, "esp:sendgrid", "unsubscribe",
                    "esp:sendgrid")])  # fmt: skip

        async def claim() -> set[int]:
            async with db.write() as conn:
                return await claim_for_dispatch(conn, send_ids=[send_id], provider="sendgrid")

        hook = asyncio.create_task(webhook())
        await webhook_holding.wait()
        claiming = asyncio.create_task(claim())
        await asyncio.sleep(0.3)
        assert not claiming.done(), "the claim must wait for the webhook's transaction"
        release.set()
        await hook
        assert await claiming == set()
    finally:
        await db.dispose()
