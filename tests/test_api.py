"""The HTTP API against a real store and real Temporal (time-skipping server) with a worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from tailor.db import Database
from tailor.demo.seed import seed_demo
from tailor.devtools.smtp_sink import read_outbox
from tailor.models import Contact, LlmUsage, utcnow
from tailor.sending.unsubscribe import unsubscribe_token
from tests.conftest import Sink, key_headers, other_tenant_headers, settings_for, task_queue
from worker import build_worker


class Api:
    def __init__(self, client: httpx.AsyncClient, db: Database, sink: Sink) -> None:
        self.http = client
        self.db = db
        self.sink = sink

    async def campaign_done(self, campaign_id: str, timeout: float = 60) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                body: dict[str, Any] = (await self.http.get(f"/v1/campaigns/{campaign_id}")).json()
                if body["status"] not in ("running", "paused"):
                    return body
                await asyncio.sleep(0.1)


@pytest.fixture
async def api(
    time_skipping_env: WorkflowEnvironment, db: Database, sink: Sink
) -> AsyncIterator[Api]:
    await seed_demo(db, contacts=40)
    settings = settings_for(db, sink, temporal_task_queue=task_queue())
    app = create_app(settings, temporal_client=time_skipping_env.client)
    worker = build_worker(time_skipping_env.client, db, settings, settings.temporal_task_queue)
    async with worker, app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = await key_headers(db, "demo", "admin")
        async with httpx.AsyncClient(
            transport=transport, base_url="http://tailor", headers=headers
        ) as client:
            yield Api(client, db, sink)


def _contact(email: str, **extra: Any) -> dict[str, Any]:
    return {
        "email": email,
        "first_name": "Ada",
        "preferred_categories": ["books"],
        "consent": {
            "status": "granted",
            "source": "signup-form",
            "method": "double-opt-in",
            "wording_version": "newsletter-v2",
        },
        **extra,
    }


async def _contact_count(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(Contact))).scalar_one())


async def test_bulk_upsert_creates_then_updates_and_records_consent(api: Api) -> None:
    body = {"contacts": [_contact("new.one@example.com"), _contact("New.Two@Example.com")]}
    first = await api.http.post("/v1/contacts", json=body)
    assert first.status_code == 200, first.text
    assert first.json()["created"] == 2
    again = await api.http.post("/v1/contacts", json=body)
    assert again.json()["created"] == 0 and again.json()["updated"] == 2

    contact_id = first.json()["data"][1]["id"]
    read = (await api.http.get(f"/v1/contacts/{contact_id}")).json()
    assert read["email"] == "new.two@example.com"
    assert read["consent"] == "granted"
    assert len(read["consent_history"]) == 2  # append-only: the second upsert added a row


async def test_bad_contacts_name_the_field_and_write_nothing(api: Api) -> None:
    before = await _contact_count(api.db)
    bad_email = {"contacts": [_contact("ok@example.com"), _contact("not-an-email")]}
    response = await api.http.post("/v1/contacts", json=bad_email)
    assert response.status_code == 422
    assert "contacts.1.email" in response.json()["message"]

    duplicate = {"contacts": [_contact("a@example.com"), _contact("A@example.com")]}
    response = await api.http.post("/v1/contacts", json=duplicate)
    assert response.status_code == 422 and "duplicates" in response.json()["message"]

    too_many = {"contacts": [_contact(f"c{i}@example.com") for i in range(10_001)]}
    response = await api.http.post("/v1/contacts", json=too_many)
    assert response.status_code == 422 and "contacts" in response.json()["message"]

    bad_score = {"contacts": [_contact("s@example.com", engagement_score=101)]}
    response = await api.http.post("/v1/contacts", json=bad_score)
    assert response.status_code == 422
    assert "contacts.0.engagement_score" in response.json()["message"]
    assert await _contact_count(api.db) == before


async def test_unknown_ids_and_tenants_are_404(api: Api) -> None:
    assert (await api.http.get("/v1/contacts/999999")).status_code == 404
    assert (await api.http.get("/v1/campaigns/cmp_nope")).status_code == 404
    assert (await api.http.get("/v1/templates/999")).status_code == 404
    # Another shop's key finds nothing of this one's, answered as if it did not exist.
    acme = await other_tenant_headers(api.db)
    other = await api.http.get("/v1/contacts/1", headers=acme)
    mine = await api.http.get("/v1/contacts/999999")
    assert other.status_code == 404 and other.json() == {"message": "contact 1 not found"}
    assert mine.json() == {"message": "contact 999999 not found"}
    anonymous = await api.http.get("/v1/contacts/1", headers={"Authorization": ""})
    assert anonymous.status_code == 401 and "Bearer" in anonymous.json()["message"]
    forged = await api.http.get(
        "/v1/contacts/1", headers={"X-Tailor-Tenant": "demo", "Authorization": "Bearer tlr_x"}
    )
    assert forged.status_code == 401


async def test_templates_are_versioned_and_validated(api: Api) -> None:
    template = {
        "name": "welcome",
        "subject": "Hi {{ first_name or 'there' }}",
        "body": "{{ intro }}",
        "cta_text": "Shop",
        "cta_url": "https://shop.example.com",
    }
    created = await api.http.post("/v1/templates", json=template)
    assert created.status_code == 201, created.text
    template_id = created.json()["id"]
    assert [v["version"] for v in created.json()["versions"]] == [1]

    conflict = await api.http.post("/v1/templates", json=template)
    assert conflict.status_code == 409

    broken = {**template, "body": "{% if intro %}unclosed"}
    response = await api.http.post(
        f"/v1/templates/{template_id}/versions",
        json={k: v for k, v in broken.items() if k != "name"},
    )
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "body"
    plain_http = {**template, "name": "insecure", "cta_url": "http://shop.example.com"}
    response = await api.http.post("/v1/templates", json=plain_http)
    assert response.status_code == 422 and "https:// or mailto:" in response.json()["message"]

    v2 = {**template, "subject": "Welcome, {{ first_name or 'friend' }}"}
    del v2["name"]
    response = await api.http.post(f"/v1/templates/{template_id}/versions", json=v2)
    assert response.status_code == 201 and response.json()["version"] == 2
    read = (await api.http.get(f"/v1/templates/{template_id}")).json()
    assert [v["subject"] for v in read["versions"]] == [template["subject"], v2["subject"]]


async def _template_version(api: Api) -> int:
    async with api.db.read() as conn:
        return int(
            (await conn.exec_driver_sql("SELECT max(id) FROM template_version")).scalar_one()
        )


async def test_campaign_runs_to_completion_through_the_api(api: Api) -> None:
    version_id = await _template_version(api)
    bad = await api.http.post(
        "/v1/campaigns",
        json={"name": "x", "template_version_id": 999, "segment": {}},
    )
    assert bad.status_code == 422 and "template_version_id" in bad.json()["message"]
    bad_segment = await api.http.post(
        "/v1/campaigns",
        json={
            "name": "x",
            "template_version_id": version_id,
            "segment": {"engagement_min": 90, "engagement_max": 10},
        },
    )
    assert bad_segment.status_code == 422 and "segment" in bad_segment.json()["message"]

    response = await api.http.post(
        "/v1/campaigns",
        json={"name": "Autumn", "template_version_id": version_id, "segment": {}},
    )
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["workflow_id"] == f"campaign-{started['id']}"
    assert started["temporal_ui_url"].endswith(f"/workflows/campaign-{started['id']}")

    done = await api.campaign_done(started["id"])
    assert done["status"] == "completed"
    sent = done["counts"]["sent"] + done["counts"]["dispatched"]
    assert sent + done["counts"]["suppressed"] == 40
    assert len(read_outbox(api.sink.maildir, started["id"])) == sent
    assert done["generation"]["by_generator"] == {"rules": done["counts"]["sent"]}
    assert done["generation"]["llm_calls"] == 0 and done["generation"]["cost_usd"] == 0

    listed = (await api.http.get(f"/v1/campaigns/{started['id']}/sends?limit=200")).json()
    assert len(listed["items"]) == 40 and listed["next_cursor"] is None
    sent_one = next(s for s in listed["items"] if s["status"] == "sent")
    why = (await api.http.get(f"/v1/sends/{sent_one['id']}/explain")).json()
    assert why["explain"]["generator"] == {"tier": "rules"}
    assert why["explain"]["plan"][-1] == "deliver:smtp" and why["explain"]["rules"]
    assert "consent" in why["explain"]["guardrail"]
    contact = (await api.http.get(f"/v1/contacts/{sent_one['contact_id']}")).json()
    assert contact["email"] not in str(why["explain"])
    other = await api.http.get(
        f"/v1/sends/{sent_one['id']}/explain", headers=await other_tenant_headers(api.db)
    )
    assert other.status_code == 404

    unknown_prompt = await api.http.post(
        "/v1/campaigns",
        json={"name": "x", "template_version_id": version_id, "prompt_version": "v999"},
    )
    assert unknown_prompt.status_code == 422
    assert "personalization_v3" in unknown_prompt.json()["message"]

    again = await api.http.post(f"/v1/campaigns/{started['id']}/pause")
    assert again.status_code == 409


async def test_revocation_through_the_api_signals_running_campaigns(api: Api) -> None:
    version_id = await _template_version(api)
    api.sink.controller.stop()  # hold delivery so the campaign stays running
    started = (
        await api.http.post(
            "/v1/campaigns",
            json={"name": "Held", "template_version_id": version_id},
        )
    ).json()
    paused = await api.http.post(f"/v1/campaigns/{started['id']}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"

    revoked = await api.http.post(
        "/v1/contacts/3/consent",
        json={
            "status": "revoked",
            "source": "preference-center",
            "method": "web-form",
            "wording_version": "prefs-v1",
        },
    )
    assert revoked.status_code == 200, revoked.text
    assert started["id"] in revoked.json()["signalled_campaigns"]
    contact = (await api.http.get("/v1/contacts/3")).json()
    assert contact["consent"] == "revoked"
    assert [r["status"] for r in contact["consent_history"]][-1] == "revoked"

    cancelled = await api.http.post(f"/v1/campaigns/{started['id']}/cancel")
    assert cancelled.status_code == 200
    done = await api.campaign_done(started["id"])
    assert done["status"] == "cancelled"


async def test_one_click_unsubscribe_revokes_consent(api: Api) -> None:
    version_id = await _template_version(api)
    started = (
        await api.http.post("/v1/campaigns", json={"name": "U", "template_version_id": version_id})
    ).json()
    await api.campaign_done(started["id"])
    secret = settings_for(api.db, api.sink).unsubscribe_secret
    token = unsubscribe_token(secret, started["id"], 5)
    page = await api.http.get(f"/v1/unsubscribe/{token}")
    assert page.status_code == 200 and '<form method="post"' in page.text
    assert (await api.http.get("/v1/contacts/5")).json()["consent"] != "revoked"

    response = await api.http.post(
        f"/v1/unsubscribe/{token}",
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert (await api.http.get("/v1/contacts/5")).json()["consent"] == "revoked"
    forged = token[:-4] + "0000"
    assert (await api.http.post(f"/v1/unsubscribe/{forged}")).status_code == 404


async def test_healthz(api: Api) -> None:
    response = await api.http.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_llm_usage_by_day_against_the_budget(api: Api) -> None:
    today = utcnow().date()
    async with api.db.write() as conn:
        await conn.execute(insert(LlmUsage), [
            {"tenant_id": "demo", "provider": "openai", "model": "gpt-4o-mini",
             "prompt_version": "personalization_v3", "cache_hit": hit, "input_tokens": 700,
             "output_tokens": 180, "cost_usd": cost, "day": day.isoformat(),
             "created_at": utcnow()}
            for day, hit, cost in [(today, False, 0.25), (today, True, 0.0),
                                   (today - timedelta(days=1), False, 0.5)]
        ])  # fmt: skip
    body = (await api.http.get("/v1/usage/llm")).json()
    assert [(d["day"], d["calls"], d["cache_hits"]) for d in body["data"]] == [
        ((today - timedelta(days=1)).isoformat(), 1, 0),
        (today.isoformat(), 1, 1),
    ]
    assert body["total_cost_usd"] == 0.75 and body["spent_today_usd"] == 0.25
    assert body["daily_budget_usd"] == 20.0 and body["throttled_today"] is False
    only_today = await api.http.get(f"/v1/usage/llm?since={today}")
    assert only_today.json()["total_cost_usd"] == 0.25
    backwards = await api.http.get(f"/v1/usage/llm?since={today}&until={today - timedelta(days=3)}")
    assert backwards.status_code == 422 and "since" in backwards.json()["message"]


async def _campaign(api: Api, version_id: int) -> dict[str, Any]:
    response = await api.http.post(
        "/v1/campaigns",
        json={"name": "Loyalty", "template_version_id": version_id, "segment": {}},
    )
    assert response.status_code == 202, response.text
    return await api.campaign_done(response.json()["id"])


async def test_a_template_that_cannot_render_falls_back_to_the_tenant_default(api: Api) -> None:
    default = (await api.http.get("/v1/templates/default")).json()
    assert default["template_version_id"] == await _template_version(api), "seeded default"
    broken = {
        "name": "loyalty",
        "subject": "Your {{ loyalty_tier }} rewards",  # no such variable: fails to render
        "body": "Points: {{ points }}",
        "cta_text": "Redeem",
        "cta_url": "https://shop.example.com/rewards",
    }
    created = await api.http.post("/v1/templates", json=broken)
    assert created.status_code == 201, created.text
    version_id = created.json()["versions"][0]["id"]

    done = await _campaign(api, version_id)
    assert done["status"] == "completed"
    assert done["counts"]["sent"] + done["counts"]["suppressed"] == 40
    sends = (await api.http.get(f"/v1/campaigns/{done['id']}/sends")).json()
    first_sent = next(s for s in sends["items"] if s["status"] == "sent")
    why = (await api.http.get(f"/v1/sends/{first_sent['id']}/explain")).json()
    assert any(rule.startswith("template:tenant-default") for rule in why["explain"]["rules"])
    assert "loyalty_tier" in " ".join(why["explain"]["rules"]), "the reason is recorded"
    for email in read_outbox(api.sink.maildir, done["id"]):
        assert "rewards" not in str(email.full()["Subject"])

    unknown = await api.http.put("/v1/templates/default", json={"template_version_id": 999999})
    assert unknown.status_code == 422 and "template_version_id" in unknown.json()["message"]
    cleared = await api.http.put("/v1/templates/default", json={"template_version_id": None})
    assert cleared.status_code == 200
    # Without a default the campaign stops rather than send anyone a broken email.
    failed = await _campaign(api, version_id)
    assert failed["status"] == "failed" and failed["counts"]["sent"] == 0
