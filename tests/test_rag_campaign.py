"""Retrieval inside a campaign: each cluster's exemplars reach the LLM prompt and shape the
rules tier, and every send's "why this email" lists them with the hops that found them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment

from rag.corpus import load
from tailor.db import Database
from tailor.devtools.llm_stub import StubLlm
from tailor.devtools.smtp_sink import read_outbox
from tests.conftest import (
    Sink,
    llm_settings,
    run_campaign,
    seeded_campaign,
    settings_for,
    task_queue,
)
from worker import build_worker


async def _whys(db: Database, campaign_id: str) -> list[dict[str, Any]]:
    async with db.read() as conn:
        rows = (await conn.exec_driver_sql(
            f"SELECT explain FROM send WHERE campaign_id = '{campaign_id}' AND status = 'sent'"
        )).all()  # fmt: skip
    return [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]


async def test_rules_tier_emails_use_and_explain_retrieved_exemplars(
    time_skipping_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink, tmp_path: Path
) -> None:
    campaign_id, consenting = await seeded_campaign(sqlite_db, 60)
    settings = settings_for(sqlite_db, sink, rag_enabled=True, home=tmp_path / "home")
    queue = task_queue()
    async with build_worker(time_skipping_env.client, sqlite_db, settings, queue):
        outcome = await run_campaign(time_skipping_env.client, campaign_id, queue)
    assert outcome.sent == consenting
    corpus = {e.id: e for e in load()}
    ctas = {str(e.full()["To"]): e.full() for e in read_outbox(sink.maildir, campaign_id)}
    assert len(ctas) == consenting
    whys = await _whys(sqlite_db, campaign_id)
    for why in whys:
        retrieved = why["retrieved_exemplars"]
        assert retrieved["exemplars"] and retrieved["hops"][0]["reason"]
        assert all(e in corpus for e in retrieved["exemplars"])
        used = [r for r in why["rules"] if r.startswith("exemplar:")]
        assert used == [f"exemplar:{retrieved['exemplars'][0]}:cta"]
    # Cart clusters get cart-abandonment exemplars; the email carries the exemplar's CTA.
    carts = [w for w in whys if "cart:remind" in w["rules"]]
    assert carts
    for why in carts:
        top = corpus[why["retrieved_exemplars"]["exemplars"][0]]
        assert top.goal == "cart_abandonment"
    bodies = [m.get_body(("plain",)).get_content() for m in ctas.values()]  # type: ignore[union-attr]
    cart_ctas = {corpus[w["retrieved_exemplars"]["exemplars"][0]].cta for w in carts}
    assert any(cta in body for cta in cart_ctas for body in bodies)


async def test_exemplars_reach_the_prompt_as_data(
    time_skipping_env: WorkflowEnvironment,
    sqlite_db: Database,
    sink: Sink,
    stub: StubLlm,
    tmp_path: Path,
) -> None:
    campaign_id, consenting = await seeded_campaign(sqlite_db, 40)
    settings = settings_for(
        sqlite_db, sink, rag_enabled=True, home=tmp_path / "home", **llm_settings(stub)
    )
    queue = task_queue()
    async with build_worker(time_skipping_env.client, sqlite_db, settings, queue):
        outcome = await run_campaign(time_skipping_env.client, campaign_id, queue)
    assert outcome.sent == consenting
    whys = await _whys(sqlite_db, campaign_id)
    corpus = {e.id: e for e in load()}
    prompts = stub.prompts()
    assert "never their products" in prompts, "the model is told how to use them"
    generated = [w for w in whys if w["generator"].get("source") == "generated"]
    assert generated
    for why in generated:
        for exemplar_id in why["retrieved_exemplars"]["exemplars"]:
            subject = json.dumps(corpus[exemplar_id].subject)[1:-1]
            assert subject in prompts, f"{exemplar_id} was retrieved but not in any prompt"
    # Fenced: the exemplars sit inside the audience data, not among the instructions.
    first = stub.requests[0].body["messages"][-1]["content"]
    assert first.index('"exemplars"') > first.index("<audience_data>")
