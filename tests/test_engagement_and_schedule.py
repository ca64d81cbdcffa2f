"""Tracked engagement (``POST /v1/events/engagement``) and scheduled campaign starts, through
the API with a real worker on the time-skipping server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import col
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from tailor.db import Database
from tailor.demo.seed import seed_demo
from tailor.models import ConsentStatus, Contact, Engagement, Send, SendStatus, Tenant
from tailor.store.consent import record_consent
from tests.conftest import Sink, key_headers, other_tenant_headers, settings_for, task_queue
from worker import build_worker


class Client:
    def __init__(self, http: httpx.AsyncClient, db: Database, version_id: int) -> None:
        self.http = http
        self.db = db
        self.version_id = version_id

    async def campaign(self, **extra: Any) -> dict[str, Any]:
        body = {"name": "Weekend", "template_version_id": self.version_id, **extra}
        response = await self.http.post("/v1/campaigns", json=body)
        assert response.status_code == 202, response.text
        started: dict[str, Any] = response.json()
        return started

    async def status(self, campaign_id: str) -> dict[str, Any]:
        body: dict[str, Any] = (await self.http.get(f"/v1/campaigns/{campaign_id}")).json()
        return body

    async def until(self, campaign_id: str, *statuses: str) -> dict[str, Any]:
        async with asyncio.timeout(60):
            while (body := await self.status(campaign_id))["status"] not in statuses:
                await asyncio.sleep(0.1)
        return body

    async def engagement(
        self, headers: dict[str, str] | None = None, **body: Any
    ) -> httpx.Response:
        return await self.http.post("/v1/events/engagement", json=body, headers=headers)


@pytest.fixture
async def client(
    isolated_time_skipping_env: WorkflowEnvironment, db: Database, sink: Sink
) -> AsyncIterator[Client]:
    seeded = await seed_demo(db, contacts=30)
    settings = settings_for(db, sink, temporal_task_queue=task_queue())
    env = isolated_time_skipping_env
    app = create_app(settings, temporal_client=env.client)
    async with (
        build_worker(env.client, db, settings, settings.temporal_task_queue),
        app.router.lifespan_context(app),
    ):
        transport = httpx.ASGITransport(app=app)
        headers = await key_headers(db, "demo", "admin")
        async with httpx.AsyncClient(
            transport=transport, base_url="http://tailor", headers=headers
        ) as http:
            yield Client(http, db, seeded.template_version_id)


async def _sends(db: Database, campaign_id: str) -> list[Send]:
    async with db.read_session() as session:
        rows = await session.execute(
            select(Send).where(col(Send.campaign_id) == campaign_id).order_by(col(Send.id))
        )
        return list(rows.scalars())


async def test_engagement_counts_once_per_email_and_updates_the_person(client: Client) -> None:
    async with client.db.session() as session:  # one person will not be emailed
        first_contact = (await session.execute(select(func.min(Contact.id)))).scalar_one()
        assert first_contact is not None
        await record_consent(
            session=session, tenant_id="demo", contact_id=first_contact,
            status=ConsentStatus.REVOKED, source="test", method="api", wording_version="-",
            recorded_by="test",
        )  # fmt: skip
    started = await client.campaign()
    await client.until(started["id"], "completed")
    sends = await _sends(client.db, started["id"])
    sent = next(s for s in sends if s.status == SendStatus.SENT)
    suppressed = next(s for s in sends if s.status == SendStatus.SUPPRESSED)

    first = await client.engagement(type="open", message_id=sent.message_id)
    assert first.status_code == 200 and first.json()["recorded"] is True
    again = await client.engagement(type="open", message_id=sent.message_id)
    assert again.json()["recorded"] is False  # a second open of the same email counts once
    click = await client.engagement(
        type="click", campaign_id=started["id"], contact_id=sent.contact_id
    )
    assert click.json()["recorded"] is True
    async with client.db.read_session() as session:
        kinds = (
            await session.execute(
                select(Engagement.metric).where(col(Engagement.send_id) == sent.id)  # type: ignore[call-overload]
            )
        ).scalars()
        assert sorted(kinds) == ["click", "open"]
        contact = await session.get(Contact, sent.contact_id)
        assert contact is not None and contact.last_open_at is not None
        assert contact.last_click_at is not None

    unknown = await client.engagement(type="open", message_id="<nope@example.com>")
    assert unknown.status_code == 404 and "message_id" in unknown.text
    other_tenant = await client.engagement(
        await other_tenant_headers(client.db), type="open", message_id=sent.message_id
    )
    assert other_tenant.status_code == 404
    undelivered = await client.engagement(type="click", message_id=suppressed.message_id)
    assert undelivered.status_code == 409 and "suppressed" in undelivered.text
    neither = await client.engagement(type="open", campaign_id=started["id"])
    assert neither.status_code == 422 and "message_id" in neither.text


async def test_a_scheduled_campaign_waits_for_its_time_then_sends(
    client: Client, isolated_time_skipping_env: WorkflowEnvironment
) -> None:
    start_at = datetime.now(UTC) + timedelta(hours=2)
    started = await client.campaign(start_at=start_at.isoformat())
    assert started["status"] == "scheduled"
    waiting = await client.status(started["id"])
    assert waiting["status"] == "scheduled" and waiting["progress"]["status"] == "scheduled"
    assert not any(s.status == SendStatus.SENT for s in await _sends(client.db, started["id"]))
    paused = await client.http.post(f"/v1/campaigns/{started['id']}/pause")
    assert paused.status_code == 409 and "cancel" in paused.text

    await isolated_time_skipping_env.sleep(timedelta(hours=2, minutes=1))
    done = await client.until(started["id"], "completed")
    assert done["counts"].get("sent", 0) > 0


async def test_a_scheduled_campaign_cancelled_before_its_time_sends_nothing(
    client: Client,
) -> None:
    start_at = datetime.now(UTC) + timedelta(days=1)
    started = await client.campaign(start_at=start_at.isoformat())
    cancel = await client.http.post(f"/v1/campaigns/{started['id']}/cancel")
    assert cancel.status_code == 200, cancel.text
    done = await client.until(started["id"], "cancelled")
    assert done["counts"] == {} or not done["counts"].get("sent")
    assert await _sends(client.db, started["id"]) == []


async def test_a_start_time_needs_an_offset_and_a_sane_date(client: Client) -> None:
    odd_hour = await client.http.post(
        "/v1/campaigns",
        json={"name": "x", "template_version_id": client.version_id, "send_time": "09:30"},
    )
    assert odd_hour.status_code == 422 and "send_time" in odd_hour.text
    for start_at, named in (
        ("2030-01-01T09:00:00", "timezone"),
        ((datetime.now(UTC) + timedelta(days=400)).isoformat(), "within a year"),
    ):
        response = await client.http.post(
            "/v1/campaigns",
            json={"name": "x", "template_version_id": client.version_id, "start_at": start_at},
        )
        assert response.status_code == 422 and named in response.text, response.text


async def test_a_tenant_sets_its_provider_order_and_sending_rate(client: Client) -> None:
    before = (await client.http.get("/v1/tenant/delivery")).json()
    assert before["providers"] is None and before["effective_providers"] == ["smtp"]
    body = {"providers": ["sendgrid", "mailgun", "ses"], "send_rate_per_s": 200}
    put = await client.http.put("/v1/tenant/delivery", json=body)
    assert put.status_code == 200, put.text
    assert put.json()["effective_providers"] == ["sendgrid", "mailgun", "ses"]
    async with client.db.read_session() as session:
        tenant = await session.get(Tenant, "demo")
        assert tenant is not None and tenant.providers == ["sendgrid", "mailgun", "ses"]
        assert tenant.send_rate_per_s == 200
    for bad, named in (
        ({"providers": ["postmark"]}, "providers"),
        ({"providers": ["ses", "ses"]}, "once"),
        ({"send_rate_per_s": 0}, "send_rate_per_s"),
    ):
        response = await client.http.put("/v1/tenant/delivery", json=bad)
        assert response.status_code == 422 and named in response.text, response.text
