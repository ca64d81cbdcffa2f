"""Faults on the real stack (Temporal dev server, worker process, SendGrid-format stub): a
worker killed with SIGKILL mid-campaign and the Temporal server restarted mid-campaign. Every
consenting person gets exactly one email: none lost, none twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from tailor.cli.stack import LocalStack, Ports
from tailor.config import Settings
from tailor.db import Database, migrate
from tailor.demo.seed import SeededTenant, seed_demo
from tailor.devtools.esp_stub import STUB_SENDGRID_KEY, EspStub, running_esp_stub
from tailor.models import Campaign, SendStatus
from tailor.payloads import CampaignOutcome
from tailor.store.campaigns import create_campaign, send_counts
from tailor.temporal.campaigns import CampaignControl
from tailor.temporal.client import connect
from tests.conftest import free_port

pytestmark = [pytest.mark.devserver, pytest.mark.slow]
CONTACTS = 10_000


@dataclass
class Stack:
    local: LocalStack
    settings: Settings
    db: Database
    client: Client
    seeded: SeededTenant
    esp: EspStub

    async def campaign(self) -> Campaign:
        async with self.db.session() as session:
            campaign = await create_campaign(
                session=session, tenant_id="demo", name="Faults",
                template_version_id=self.seeded.template_version_id, segment={},
            )  # fmt: skip
        await CampaignControl(self.client, self.settings).start(campaign)
        return campaign

    async def settled(self, campaign_id: str) -> int:
        async with self.db.read() as conn:
            counts = await send_counts(conn, campaign_id=campaign_id)
        return sum(n for status, n in counts.items() if status != SendStatus.PENDING)

    async def until_settled(self, campaign_id: str, at_least: int) -> None:
        async with asyncio.timeout(120):
            while await self.settled(campaign_id) < at_least:
                await asyncio.sleep(0.05)

    async def result(self, campaign: Campaign) -> CampaignOutcome:
        handle = CampaignControl(self.client, self.settings).handle(campaign)
        async with asyncio.timeout(300):
            while True:
                try:
                    return await handle.result()
                except RPCError:  # the server is restarting: ask again
                    await asyncio.sleep(0.5)

    def assert_each_person_got_one_email(self, outcome: CampaignOutcome) -> None:
        stats = self.esp.stats()
        assert stats["duplicates"] == 0, stats["duplicate_ids"][:5]
        assert outcome.status == "completed" and outcome.failed == 0
        assert outcome.sent == self.seeded.consenting
        assert stats["unique"] == self.seeded.consenting  # none lost


@pytest.fixture
def esp() -> Iterator[EspStub]:
    with running_esp_stub() as stub:
        stub.sendgrid.latency_s = 0.2  # so a kill usually finds a batch in flight
        yield stub


@pytest.fixture
async def stack(
    tmp_path: Path, esp: EspStub, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Stack]:
    for name, value in {
        "TAILOR_PROVIDERS": '["sendgrid"]',
        "TAILOR_SENDGRID_API_KEY": STUB_SENDGRID_KEY,
        "TAILOR_SENDGRID_BASE_URL": esp.url,
        "TAILOR_PROVIDER_TIMEOUT_S": "5",
        # Unclear sends of a killed worker are looked up this soon (the stub's records are
        # immediate; a real provider's lag is why the default is ten minutes).
        "TAILOR_PROVIDER_RECONCILE_AFTER_S": "8",
        "TAILOR_RAG_ENABLED": "false",
    }.items():
        monkeypatch.setenv(name, value)
    ports = Ports(temporal=free_port(), ui=free_port(), api=free_port(), smtp=free_port())
    local = LocalStack(tmp_path / "home", ports, with_ui=False)
    local.home.mkdir(parents=True)
    settings = local.settings()
    await migrate(settings.resolved_database_url)
    local.start_temporal()
    local.start_worker()
    db = Database(settings.resolved_database_url)
    try:
        seeded = await seed_demo(db, contacts=CONTACTS)
        client = await connect(settings)
        await local.wait_for_worker(client, settings.temporal_task_queue)
        yield Stack(local, settings, db, client, seeded, esp)
    finally:
        local.group.stop()
        await db.dispose()


async def test_worker_killed_mid_campaign_loses_nothing_and_sends_nothing_twice(
    stack: Stack,
) -> None:
    campaign = await stack.campaign()
    await stack.until_settled(campaign.id, CONTACTS // 4)
    stack.local.group.kill("worker")
    assert await stack.settled(campaign.id) < CONTACTS, "the campaign finished before the kill"
    stack.local.start_worker("worker-2")
    outcome = await stack.result(campaign)
    stack.assert_each_person_got_one_email(outcome)


async def test_temporal_server_restarted_mid_campaign_completes(stack: Stack) -> None:
    campaign = await stack.campaign()
    await stack.until_settled(campaign.id, CONTACTS // 4)
    stack.local.group.kill("temporal")  # its state is in SQLite under the stack's home
    await asyncio.sleep(1)
    stack.local.start_temporal()
    outcome = await stack.result(campaign)
    stack.assert_each_person_got_one_email(outcome)
