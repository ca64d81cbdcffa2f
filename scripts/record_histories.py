"""Regenerate the committed workflow histories that the replay tests replay.

    python scripts/record_histories.py            # records the scenarios with no history yet
    python scripts/record_histories.py NAME ...   # (re)records these

Run it after an intentional, patched change to a workflow, and commit the new files next to
the old ones (keep the old ones: they prove that running workflows still replay).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import tempfile
import threading
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlmodel import col
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tailor.config import Settings  # noqa: E402
from tailor.db import Database, migrate  # noqa: E402
from tailor.demo.seed import seed_demo  # noqa: E402
from tailor.devtools.llm_stub import StubLlm, needs_review_answer, running_stub  # noqa: E402
from tailor.devtools.smtp_sink import start_sink  # noqa: E402
from tailor.models import (  # noqa: E402
    Campaign,
    ConsentRecord,
    Contact,
    Event,
    ReviewItem,
    ReviewStatus,
    Send,
    Tenant,
    WebhookEndpoint,
    utcnow,
)
from tailor.outbound import engagement_event, publish  # noqa: E402
from tailor.payloads import (  # noqa: E402
    AbTestInput,
    CampaignInput,
    CampaignOutcome,
    CampaignRun,
    ErasureInput,
    FeaturesRun,
    JourneyEnd,
    JourneyInput,
    JourneySignal,
)
from tailor.store.ab_tests import VariantSpec, create_ab_test  # noqa: E402
from tailor.store.campaigns import create_campaign  # noqa: E402
from tailor.store.erasure import request_erasure  # noqa: E402
from tailor.store.journeys import install_builtins  # noqa: E402
from tailor.store.reviews import decide  # noqa: E402
from tailor.temporal.journeys import JourneyControl  # noqa: E402
from tailor.temporal.outbound import OutboundRelay  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows.ab_test import AbTestWorkflow  # noqa: E402
from workflows.campaign import CampaignWorkflow  # noqa: E402
from workflows.erasure import ErasureWorkflow, erasure_workflow_id  # noqa: E402
from workflows.features import DailyFeaturesWorkflow  # noqa: E402
from workflows.journey import JourneyWorkflow  # noqa: E402
from workflows.outbound import OutboundWebhookWorkflow, outbound_workflow_id  # noqa: E402

OUT = ROOT / "tests" / "histories"
Handle = WorkflowHandle[CampaignWorkflow, CampaignOutcome]


async def _new_campaign(db: Database, version_id: int) -> str:
    async with db.session() as session:
        campaign = await create_campaign(
            session=session, tenant_id="demo", name="history", template_version_id=version_id,
            segment={},
        )  # fmt: skip
    return campaign.id


async def _start(client: Client, queue: str, campaign_id: str, *, paused: bool = False) -> Handle:
    return await client.start_workflow(
        CampaignWorkflow.run,
        CampaignRun(CampaignInput(campaign_id, "demo")),
        id=f"campaign-{campaign_id}",
        task_queue=queue,
        start_signal="pause" if paused else None,
    )


async def completed(client: Client, queue: str, campaign_id: str, _: Database) -> Handle:
    handle = await _start(client, queue, campaign_id)
    await handle.result()
    return handle


async def paused_revoked_resumed(
    client: Client, queue: str, campaign_id: str, _: Database
) -> Handle:
    handle = await _start(client, queue, campaign_id, paused=True)
    await handle.query(CampaignWorkflow.progress)
    await handle.signal(CampaignWorkflow.revoke_consent, 3)
    await handle.signal(CampaignWorkflow.resume)
    await handle.result()
    return handle


async def cancelled(client: Client, queue: str, campaign_id: str, _: Database) -> Handle:
    handle = await _start(client, queue, campaign_id, paused=True)
    await handle.signal(CampaignWorkflow.cancel)
    await handle.result()
    return handle


async def cancelled_through_temporal(
    client: Client, queue: str, campaign_id: str, _: Database
) -> Handle:
    handle = await _start(client, queue, campaign_id, paused=True)
    await handle.query(CampaignWorkflow.progress)
    await handle.cancel()
    try:
        await handle.result()
    except WorkflowFailureError:
        pass
    return handle


async def continued_as_new(client: Client, queue: str, campaign_id: str, _: Database) -> Handle:
    handle = await completed(client, queue, campaign_id, _)
    # The first run of the chain: the one that ends in continue-as-new.
    return client.get_workflow_handle_for(
        CampaignWorkflow.run, handle.id, run_id=handle.first_execution_run_id
    )


async def reviewed(client: Client, queue: str, campaign_id: str, db: Database) -> Handle:
    """Content held for review: one review approved (signalled), the rest expire."""
    handle = await _start(client, queue, campaign_id)
    while (await handle.query(CampaignWorkflow.progress)).open_reviews == 0:
        await asyncio.sleep(0.1)
    async with db.write() as conn:
        first: int = (await conn.execute(select(func.min(ReviewItem.id)))).scalar_one() or 0
        await decide(conn, review_id=first, status=ReviewStatus.APPROVED, reviewer="history",
                     note=None)  # fmt: skip
    await handle.signal(CampaignWorkflow.review_decided, first)
    await handle.result()
    return handle


async def send_time_rounds(client: Client, queue: str, campaign_id: str, db: Database) -> Handle:
    """A campaign sent at each recipient's best hour: 24 hourly passes, then the sweep."""
    async with db.write() as conn:
        await conn.execute(
            update(Campaign).where(col(Campaign.id) == campaign_id).values(send_time="best_hour")
        )
    return await completed(client, queue, campaign_id, db)


async def scheduled_start(client: Client, queue: str, campaign_id: str, db: Database) -> Handle:
    """A campaign scheduled two hours ahead: the durable wait, then the send."""
    start_at = utcnow() + timedelta(hours=2)
    async with db.write() as conn:
        await conn.execute(
            update(Campaign).where(col(Campaign.id) == campaign_id)
            .values(start_at=start_at, status="scheduled")
        )  # fmt: skip
    handle = await client.start_workflow(
        CampaignWorkflow.run,
        CampaignRun(CampaignInput(campaign_id, "demo", start_at.isoformat())),
        id=f"campaign-{campaign_id}",
        task_queue=queue,
    )
    await handle.result()
    return handle


async def _ab_test(client: Client, queue: str, db: Database) -> WorkflowHandle[Any, Any]:
    async with db.session() as session:
        version = (await session.execute(select(func.min(Campaign.template_version_id)))).scalar()
        assert version is not None
        test = await create_ab_test(
            session=session, tenant_id="demo", name="history", segment={},
            variants=[VariantSpec("A", version), VariantSpec("B", version)], metric="click",
            test_fraction=0.5, threshold=0.95, min_sent_per_variant=10, window_s=3600,
            default_variant="A",
        )  # fmt: skip
    return await client.start_workflow(
        AbTestWorkflow.run,
        AbTestInput(
            test.id,
            "demo",
            ["A", "B"],
            [v["campaign_id"] for v in test.variants],
            test.window_s,
            tag_search_attributes=False,
        ),  # fmt: skip
        id=test.workflow_id,
        task_queue=queue,
    )


async def ab_default(client: Client, queue: str, _: str, db: Database) -> WorkflowHandle[Any, Any]:
    """No engagement: the window, one extension, then the default variant rolled out."""
    handle = await _ab_test(client, queue, db)
    await handle.result()
    return handle


async def ab_chosen_by_hand(
    client: Client, queue: str, _: str, db: Database
) -> WorkflowHandle[Any, Any]:
    handle = await _ab_test(client, queue, db)
    while (await handle.query(AbTestWorkflow.progress)).status != "waiting":
        await asyncio.sleep(0.1)
    await handle.signal(AbTestWorkflow.choose_winner, "B")
    await handle.result()
    return handle


# --- journeys ---------------------------------------------------------------------------------

JourneyHandle = WorkflowHandle[JourneyWorkflow, JourneyEnd]


async def _journey(env: WorkflowEnvironment, settings: Settings, db: Database, key: str,
                   trigger: str, contact_index: int = 0) -> JourneyHandle:  # fmt: skip
    async with db.read() as conn:
        contact_ids = list((await conn.execute(
            select(col(ConsentRecord.contact_id)).where(col(ConsentRecord.status) == "granted")
            .order_by(col(ConsentRecord.contact_id)))).scalars())  # fmt: skip
    control = JourneyControl(env.client, settings)
    event_id = len(contact_ids) + contact_index  # any id: only de-duplication reads it
    workflow_id = await control.trigger(
        JourneyInput("demo", contact_ids[contact_index], key, trigger, event_id), trigger
    )
    return env.client.get_workflow_handle_for(JourneyWorkflow.run, workflow_id)


async def _finish(env: WorkflowEnvironment, handle: JourneyHandle) -> JourneyHandle:
    await env.sleep(timedelta(days=7))  # signal-with-start runs do not skip time on their own
    await handle.result()
    return handle


async def welcome_completed(env: WorkflowEnvironment, settings: Settings,
                            db: Database) -> JourneyHandle:  # fmt: skip
    return await _finish(env, await _journey(env, settings, db, "welcome", "signed.up"))


async def cart_exited(env: WorkflowEnvironment, settings: Settings, db: Database) -> JourneyHandle:
    handle = await _journey(env, settings, db, "cart_abandonment", "cart.abandoned")
    await env.sleep(timedelta(minutes=20))
    await handle.signal(JourneyWorkflow.event, JourneySignal("order.completed", 10_000))
    return await _finish(env, handle)


async def consent_stopped(env: WorkflowEnvironment, settings: Settings,
                          db: Database) -> JourneyHandle:  # fmt: skip
    handle = await _journey(env, settings, db, "welcome", "signed.up")
    await env.sleep(timedelta(hours=1))
    await handle.signal(JourneyWorkflow.revoke_consent)
    return await _finish(env, handle)


async def milestone_throttled(env: WorkflowEnvironment, settings: Settings,
                              db: Database) -> JourneyHandle:  # fmt: skip
    async with db.write() as conn:
        await conn.execute(update(Tenant).values(daily_email_limit=1))
    await _journey(env, settings, db, "welcome", "signed.up")
    while True:  # the welcome email is the day's one: then the birthday email must wait
        async with db.read() as conn:
            if await conn.scalar(select(func.count()).where(col(Send.status) == "sent")):
                break
        await asyncio.sleep(0.05)
    handle = await _journey(env, settings, db, "milestone", "milestone.birthday")
    await env.sleep(timedelta(days=1))
    async with db.write() as conn:
        await conn.execute(update(Tenant).values(daily_email_limit=5))
    return await _finish(env, handle)


async def features_daily(env: WorkflowEnvironment, settings: Settings,
                         db: Database) -> WorkflowHandle[Any, Any]:  # fmt: skip
    """Two pages of derived features, then the daily events (one lapse starts a journey)."""
    async with db.write() as conn:
        contact_id = await conn.scalar(select(func.min(ConsentRecord.contact_id)))
        await conn.execute(update(Contact).where(col(Contact.id) == contact_id)
                           .values(last_open_at=utcnow() - timedelta(days=45)))  # fmt: skip
        await conn.execute(insert(Event).values(
            tenant_id="demo", contact_id=contact_id, kind="track", type="email.opened",
            properties={}, message_id="history-open", occurred_at=utcnow() - timedelta(days=45),
            received_at=utcnow()))  # fmt: skip
    handle = await env.client.start_workflow(
        DailyFeaturesWorkflow.run, FeaturesRun(page_size=12), id="daily-features-history",
        task_queue=settings.temporal_task_queue,
    )  # fmt: skip
    await handle.result()
    return handle


async def outbound_dead_lettered_then_delivered(
    env: WorkflowEnvironment, settings: Settings, db: Database
) -> WorkflowHandle[Any, Any]:
    """Three events in batches of two to a receiver that refuses its first 15 requests: the
    first batch spends its retries and is dead-lettered, the second is delivered, then idle."""
    answered: list[int] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            answered.append(500 if len(answered) < 15 else 200)
            self.send_response(answered[-1])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint_id = "whe_0123456789abcdef"
    async with db.session() as session:
        session.add(WebhookEndpoint(
            id=endpoint_id, tenant_id="demo", url=f"http://127.0.0.1:{server.server_address[1]}/",
            event_types=["*"], batch_size=2, created_by="history"))  # fmt: skip
    async with db.write() as conn:
        contact_ids = list((await conn.execute(select(col(Contact.id)).limit(3))).scalars())
        await publish(conn, [
            engagement_event(tenant_id="demo", send_id=n + 1, contact_id=contact_id or 0,
                             metric="open", occurred_at=utcnow())
            for n, contact_id in enumerate(contact_ids)])  # fmt: skip
    await OutboundRelay(env.client, db, settings).poll_once()
    await env.sleep(timedelta(days=1))  # signal-with-start runs do not skip time on their own
    handle = env.client.get_workflow_handle_for(
        OutboundWebhookWorkflow.run, outbound_workflow_id("demo", endpoint_id)
    )
    await handle.result()
    server.shutdown()
    return handle


async def erasure_done(
    env: WorkflowEnvironment, settings: Settings, db: Database
) -> WorkflowHandle[Any, Any]:
    """One person erased: records blanked, cached profiles forgotten, the erasure done."""
    async with db.write() as conn:
        contact_id = int(await conn.scalar(select(func.min(Contact.id))) or 0)
        erasure, _ = await request_erasure(
            conn, tenant_id="demo", contact_id=contact_id, requested_by="history"
        )
    handle = await env.client.start_workflow(
        ErasureWorkflow.run, ErasureInput(erasure.id, "demo", contact_id),
        id=erasure_workflow_id("demo", contact_id), task_queue=settings.temporal_task_queue,
    )  # fmt: skip
    await handle.result()
    return handle


JourneyScenario = Callable[
    [WorkflowEnvironment, Settings, Database], Awaitable[WorkflowHandle[Any, Any]]
]
JOURNEY_SCENARIOS: dict[str, JourneyScenario] = {
    "journey_welcome_completed": welcome_completed,
    "journey_cart_exited_on_purchase": cart_exited,
    "journey_consent_stopped": consent_stopped,
    "journey_milestone_throttled": milestone_throttled,
    "features_daily": features_daily,
    "outbound_dead_lettered_then_delivered": outbound_dead_lettered_then_delivered,
    "erasure_done": erasure_done,
}


Scenario = Callable[[Client, str, str, Database], Awaitable[WorkflowHandle[Any, Any]]]
# name: (scenario, settings overrides, whether the LLM tier writes content that needs review)
SCENARIOS: dict[str, tuple[Scenario, dict[str, int], bool]] = {
    "campaign_completed": (completed, {}, False),
    "campaign_paused_revoked_resumed": (paused_revoked_resumed, {}, False),
    "campaign_cancelled": (cancelled, {}, False),
    "campaign_cancelled_through_temporal": (cancelled_through_temporal, {}, False),
    "campaign_continued_as_new": (continued_as_new, {"chunks_per_run": 2}, False),
    "campaign_reviewed": (reviewed, {}, True),
    "campaign_send_time_rounds": (send_time_rounds, {}, False),
    "campaign_scheduled_start": (scheduled_start, {}, False),
    "ab_test_default": (ab_default, {}, False),
    "ab_test_chosen_by_hand": (ab_chosen_by_hand, {}, False),
}


def _llm(stub: StubLlm) -> dict[str, object]:
    stub.openai.answer = needs_review_answer
    return {"llm_base_url": f"{stub.url}/v1", "openai_api_key": "sk-history",
            "openai_model": "gpt-4o-mini"}  # fmt: skip


async def main(names: list[str]) -> None:
    unknown = set(names) - set(SCENARIOS) - set(JOURNEY_SCENARIOS)
    if unknown:
        raise SystemExit(
            f"no such scenario: {', '.join(sorted(unknown))}; pick from "
            f"{list(SCENARIOS) + list(JOURNEY_SCENARIOS)}"
        )
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=shutil.which("temporal-test-server")
    )
    work = Path(tempfile.mkdtemp(prefix="tailor-histories-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller, _ = start_sink(work / "outbox", "127.0.0.1", port)
    try:
        for name, (scenario, overrides, llm) in SCENARIOS.items():
            if names and name not in names or not names and (OUT / f"{name}.json").exists():
                continue
            url = f"sqlite+aiosqlite:///{work / (name + '.db')}"
            await migrate(url)
            db = Database(url)
            seeded = await seed_demo(db, contacts=120)
            async with db.write() as conn:
                await conn.execute(
                    update(Tenant).values(brand_policy={"banned_phrases": ["cheap"]})
                )
            with running_stub() as stub:
                settings = Settings(
                    database_url=url, home=work, smtp_port=port, chunk_size=50, chunk_concurrency=2,
                    smtp_connections=2, temporal_search_attributes=False,
                    **overrides, **(_llm(stub) if llm else {}),  # type: ignore[arg-type]
                )  # fmt: skip
                queue = f"history-{uuid.uuid4().hex[:8]}"
                async with build_worker(env.client, db, settings, queue):
                    campaign_id = await _new_campaign(db, seeded.template_version_id)
                    handle = await scenario(env.client, queue, campaign_id, db)
                    history = await handle.fetch_history()
            (OUT / f"{name}.json").write_text(history.to_json())
            print(f"wrote {OUT / (name + '.json')}: {len(history.events)} events")
            await db.dispose()
        for name, journey in JOURNEY_SCENARIOS.items():
            if names and name not in names or not names and (OUT / f"{name}.json").exists():
                continue
            url = f"sqlite+aiosqlite:///{work / (name + '.db')}"
            await migrate(url)
            db = Database(url)
            await seed_demo(db, contacts=20)
            async with db.session() as session:
                await install_builtins(session=session, tenant_id="demo")
            queue = f"history-{uuid.uuid4().hex[:8]}"
            settings = Settings(
                database_url=url, smtp_port=port, temporal_search_attributes=False,
                temporal_task_queue=queue, rag_enabled=False,
            )  # fmt: skip
            async with build_worker(env.client, db, settings, queue):
                journey_history = await (await journey(env, settings, db)).fetch_history()
            (OUT / f"{name}.json").write_text(journey_history.to_json())
            print(f"wrote {OUT / (name + '.json')}: {len(journey_history.events)} events")
            await db.dispose()
    finally:
        controller.stop()
        await env.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
