"""Deliverability guard rails: a running campaign whose complaint (or bounce) rate passes its
tenant's limit after the minimum sample is paused through its real workflow (a pause signal in
its Temporal history), with the reason on the campaign, in its report and in the audit log;
once, and never below the sample."""

from __future__ import annotations

import uuid
from dataclasses import replace

from sqlalchemy import select, update
from sqlmodel import col
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tailor.db import Database
from tailor.delivery.guard import breach
from tailor.models import AuditEntry, Campaign, Tenant
from tailor.payloads import CampaignInput, CampaignRun
from tailor.store.reports import CampaignHealth
from tests.conftest import key_headers
from tests.test_esp_webhook_api import post_sendgrid
from tests.test_reports import api, report, sent
from workflows.campaign import CampaignWorkflow

HEALTHY = CampaignHealth(
    campaign_id="c", tenant_id="t", kind="batch", status="running", paused_reason=None,
    sent=10_000, bounced=100, complained=10, complaint_limit=0.003, bounce_limit=0.05,
    min_sent=1000,
)  # fmt: skip


def test_the_rule_judges_rates_only_after_the_sample_and_only_once() -> None:
    assert breach(HEALTHY) is None  # 0.10% complaints, 1% bounces
    over = replace(HEALTHY, complained=40)  # 40 / 9,900 = 0.40%
    assert breach(over) == "complaint rate 0.40% passed the 0.30% limit after 10,000 emails"
    assert breach(replace(HEALTHY, bounced=600)) == (
        "bounce rate 6.00% passed the 5.00% limit after 10,000 emails"
    )
    assert breach(replace(over, sent=999, bounced=0)) is None  # too few to judge
    assert breach(replace(over, paused_reason="earlier")) is None  # resumed by a person
    assert breach(replace(over, status="paused")) is None
    assert breach(replace(over, kind="journey")) is None  # journeys are not batch sends
    assert breach(replace(over, complaint_limit=0.005)) is None  # the tenant's own limit


async def _signals(client: Client, workflow_id: str) -> list[str]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]


async def test_complaints_past_the_limit_pause_the_running_campaign(
    db: Database, time_skipping_env: WorkflowEnvironment
) -> None:
    client = time_skipping_env.client
    m = await sent(db, contacts=10)
    async with db.write() as conn:
        await conn.execute(update(Tenant).values(pause_min_sent=8))
    async with db.read_session() as session:
        campaign = await session.get(Campaign, m.campaign_id)
    assert campaign is not None
    # The campaign's workflow, running (on a queue no worker polls: it only collects signals).
    await client.start_workflow(
        CampaignWorkflow.run, CampaignRun(CampaignInput(m.campaign_id, "demo")),
        id=campaign.workflow_id, task_queue=f"idle-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    headers = await key_headers(db)
    async with api(db, client) as http:
        key = http.sendgrid_key  # type: ignore[attr-defined]
        delivered = [m.event(i, "delivered", f"d-{i}") for i in range(6)]
        assert (await post_sendgrid(http, key, delivered)).status_code == 200
        assert await _signals(client, campaign.workflow_id) == []  # no bounce, no complaint
        complaint = [m.event(1, "spamreport", "c-1")]
        assert (await post_sendgrid(http, key, complaint)).status_code == 200
        got = await report(http, headers, m.campaign_id)
        # Another complaint later: paused already, so no second signal.
        assert (
            await post_sendgrid(http, key, [m.event(2, "spamreport", "c-2")])
        ).status_code == 200
    n = len(m.sends)
    assert got["status"] == "paused"
    assert got["paused_reason"] == (
        f"complaint rate {1 / n:.2%} passed the 0.30% limit after {n:,} emails"
    )
    assert await _signals(client, campaign.workflow_id) == ["pause"]
    async with db.read_session() as session:
        entries = (
            await session.execute(
                select(AuditEntry).where(col(AuditEntry.actor) == "deliverability-guard")
            )
        ).scalars().all()  # fmt: skip
    assert [(e.tenant_id, e.targets, e.detail["reason"]) for e in entries] == [
        ("demo", {"campaign_id": m.campaign_id}, got["paused_reason"])
    ]
