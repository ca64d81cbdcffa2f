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
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import func, select, update
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tailor.config import Settings  # noqa: E402
from tailor.db import Database, migrate  # noqa: E402
from tailor.devtools.llm_stub import StubLlm, needs_review_answer, running_stub  # noqa: E402
from tailor.models import ReviewItem, ReviewStatus, Tenant  # noqa: E402
from tailor.payloads import CampaignInput, CampaignOutcome, CampaignRun  # noqa: E402
from tailor.seed import seed_demo  # noqa: E402
from tailor.smtp_sink import start_sink  # noqa: E402
from tailor.store.campaigns import create_campaign  # noqa: E402
from tailor.store.reviews import decide  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows.campaign import CampaignWorkflow  # noqa: E402

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


Scenario = Callable[[Client, str, str, Database], Awaitable[Handle]]
# name: (scenario, settings overrides, whether the LLM tier writes content that needs review)
SCENARIOS: dict[str, tuple[Scenario, dict[str, int], bool]] = {
    "campaign_completed": (completed, {}, False),
    "campaign_paused_revoked_resumed": (paused_revoked_resumed, {}, False),
    "campaign_cancelled": (cancelled, {}, False),
    "campaign_cancelled_through_temporal": (cancelled_through_temporal, {}, False),
    "campaign_continued_as_new": (continued_as_new, {"chunks_per_run": 2}, False),
    "campaign_reviewed": (reviewed, {}, True),
}


def _llm(stub: StubLlm) -> dict[str, object]:
    stub.openai.answer = needs_review_answer
    return {"llm_base_url": f"{stub.url}/v1", "openai_api_key": "sk-history",
            "openai_model": "gpt-4o-mini"}  # fmt: skip


async def main(names: list[str]) -> None:
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        raise SystemExit(
            f"no such scenario: {', '.join(sorted(unknown))}; pick from {list(SCENARIOS)}"
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
                    database_url=url, smtp_port=port, chunk_size=50, chunk_concurrency=2,
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
    finally:
        controller.stop()
        await env.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
