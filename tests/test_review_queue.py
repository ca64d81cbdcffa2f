"""The human review queue: LLM content below the quality bar or off-brand holds its recipients
until a person approves it (as written or edited) or rejects it; undecided content expires to
the rules tier. Real Temporal (time-skipping), real API, real clients against the LLM stub."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from tailor.db import Database
from tailor.devtools.llm_stub import StubLlm, needs_review_answer
from tailor.devtools.smtp_sink import read_outbox
from tailor.models import Tenant
from tailor.payloads import CampaignOutcome
from tests.conftest import (
    Sink,
    key_headers,
    llm_settings,
    seeded_campaign,
    settings_for,
    start_campaign,
    start_time_skipping,
)
from tests.conftest import task_queue as new_queue
from worker import build_worker
from workflows.campaign import CampaignWorkflow


@dataclass
class Review:
    http: httpx.AsyncClient
    db: Database
    sink: Sink
    stub: StubLlm
    handle: WorkflowHandle[CampaignWorkflow, CampaignOutcome]
    campaign_id: str
    consenting: int

    async def rows(self, sql: str) -> list[Any]:
        async with self.db.read() as conn:
            return list((await conn.exec_driver_sql(sql)).all())

    async def awaiting_review(self) -> None:
        async with asyncio.timeout(60):
            while True:
                progress = await self.handle.query(CampaignWorkflow.progress)
                if progress.status == "awaiting_review" and progress.open_reviews:
                    return
                await asyncio.sleep(0.1)

    async def pending(self) -> list[dict[str, Any]]:
        answer = await self.http.get(
            "/v1/reviews", params={"status": "pending", "campaign_id": self.campaign_id},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        data: list[dict[str, Any]] = answer.json()["items"]
        return data


@pytest.fixture(scope="module")
async def review_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of its own: these tests skip 48 hours of review timeout, which
    the shared server, after some other modules' workflows, stopped doing (conftest)."""
    env = await start_time_skipping()
    yield env
    await env.shutdown()


@pytest.fixture
async def review(
    review_env: WorkflowEnvironment, sqlite_db: Database, sink: Sink, stub: StubLlm
) -> AsyncIterator[Review]:
    time_skipping_env = review_env
    stub.openai.answer = needs_review_answer
    campaign_id, consenting = await seeded_campaign(sqlite_db, 40)
    async with sqlite_db.write() as conn:
        await conn.execute(update(Tenant).values(brand_policy={"banned_phrases": ["cheap"]}))
    queue = new_queue()
    settings = settings_for(sqlite_db, sink, temporal_task_queue=queue, **llm_settings(stub))
    app = create_app(settings, temporal_client=time_skipping_env.client)
    worker = build_worker(time_skipping_env.client, sqlite_db, settings, queue)
    async with worker, app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = await key_headers(sqlite_db, "demo", "reviewer")
        async with httpx.AsyncClient(
            transport=transport, base_url="http://tailor", headers=headers
        ) as http:
            handle = await start_campaign(time_skipping_env.client, campaign_id, queue)
            yield Review(http, sqlite_db, sink, stub, handle, campaign_id, consenting)


async def test_flagged_content_waits_for_a_person_then_goes_out_as_decided(
    review: Review,
) -> None:
    await review.awaiting_review()
    assert read_outbox(review.sink.maildir, review.campaign_id) == [], "nothing sent unreviewed"
    campaign = (await review.http.get(f"/v1/campaigns/{review.campaign_id}")).json()
    assert campaign["counts"]["held"] == review.consenting
    assert campaign["progress"]["status"] == "awaiting_review"

    pending = await review.pending()
    assert sum(item["held_recipients"] for item in pending) == review.consenting
    reasons = " ".join(item["reason"] for item in pending)
    assert "quality 0.60" in reasons and "banned phrase 'cheap'" in reasons
    people = await review.rows("SELECT email, first_name FROM contact")
    listing = json.dumps(pending)
    assert not any(email in listing or name in listing for email, name in people), "no PII"
    # Each flagged cluster cost its two attempts, and later chunks waited instead of retrying.
    calls = [r for r in review.stub.requests if r.provider == "openai"]
    assert len(calls) == 2 * len(pending)

    quality = next(item for item in pending if item["reason"].startswith("needs review: quality"))
    brand = next(item for item in pending if "cheap" in item["reason"])
    approve = f"/v1/reviews/{quality['id']}/approve"
    body = "Hi {{first_name}}, we picked a few things we think you will like this week, " * 2
    for bad, expected in [
        ({"body": body + "See https://shop.example/x"}, "link"),
        ({"body": body + "Now only $1.23."}, "price $1.23 is not a catalog price"),
        ({"body": body + "Questions? Write to ada.lovelace@example.com"}, "EMAIL_ADDRESS"),
        ({"subject": "{{last_name}}, for you"}, "unknown placeholder {{last_name}}"),
    ]:
        refused = await review.http.post(approve, json={"reviewer": "maria", "edits": bad})
        assert refused.status_code == 422 and expected in refused.json()["message"], refused.text
    assert len(await review.pending()) == len(pending), "a refused edit decides nothing"

    edits = {"subject": "{{first_name}}, picked by our team", "body": body}
    approved = await review.http.post(
        approve, json={"reviewer": "maria", "note": "tone fixed", "edits": edits}
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["signalled"] is True
    assert approved.json()["review"]["final_content"]["subject"] == edits["subject"]
    rejected = await review.http.post(
        f"/v1/reviews/{brand['id']}/reject", json={"reviewer": "maria"}
    )
    assert rejected.status_code == 200, rejected.text
    again = await review.http.post(approve, json={"reviewer": "sam"})
    assert again.status_code == 409 and "already approved" in again.json()["message"]
    missing = await review.http.post("/v1/reviews/999999/reject", json={"reviewer": "sam"})
    assert missing.status_code == 404

    # The rest nobody decides: after the review timeout they expire to the rules tier.
    outcome = await review.handle.result()
    assert outcome.status == "completed" and outcome.sent == review.consenting
    statuses = dict(await review.rows("SELECT id, status FROM review_item"))
    assert statuses.pop(quality["id"]) == "approved"
    assert statuses.pop(brand["id"]) == "rejected"
    assert set(statuses.values()) == {"expired"}

    sends = await review.rows(
        "SELECT s.review_id, s.generator, s.explain, c.email, c.first_name FROM send s "
        "JOIN contact c ON c.id = s.contact_id WHERE s.status = 'sent'"
    )
    emails = {e.to: e.full() for e in read_outbox(review.sink.maildir, review.campaign_id)}
    assert len(emails) == review.consenting, "each held recipient got exactly one email"
    for review_id, generator, explain, email, first_name in sends:
        why = json.loads(explain) if isinstance(explain, str) else explain
        assert why["review"]["id"] == review_id
        subject = str(emails[email]["Subject"])
        if review_id == quality["id"]:
            assert generator == "openai" and why["review"]["edited"] is True
            assert subject == f"{first_name or 'there'}, picked by our team"
        else:
            assert generator == "rules", "rejected and expired content never goes out"
            assert why["review"]["status"] in ("rejected", "expired")
            assert "picked by our team" not in subject and "Picks for you" not in subject
    for message in emails.values():
        text = message.get_body(("plain",))
        assert text is not None and "cheap" not in text.get_content()


async def test_cancelling_a_campaign_in_review_sends_nothing_and_clears_the_queue(
    review: Review,
) -> None:
    await review.awaiting_review()
    # Reviewers decide held emails; cancelling the campaign is a marketer's call.
    cancel = f"/v1/campaigns/{review.campaign_id}/cancel"
    assert (await review.http.post(cancel)).status_code == 403
    marketer = await key_headers(review.db, "demo", "marketer")
    cancel_response = await review.http.post(cancel, headers=marketer)
    assert cancel_response.status_code == 200, cancel_response.text
    outcome = await review.handle.result()
    assert outcome.status == "cancelled" and outcome.sent == 0
    assert read_outbox(review.sink.maildir, review.campaign_id) == []
    assert await review.pending() == []
    notes = await review.rows("SELECT DISTINCT status, note FROM review_item")
    assert notes == [("expired", "campaign cancelled")]
