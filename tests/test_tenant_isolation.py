"""The other side of every tenant boundary: with a key of another shop, every route that takes
an id is called with this shop's real ids. Each answers as for an id that does not exist
(404, the same message shape, no tenant named), lists show none of it, and nothing changes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from tailor.db import Database
from tailor.demo.seed import seed_demo
from tailor.models import Campaign, ConsentRecord, ReviewItem, WebhookEndpoint, utcnow
from tailor.store.journeys import install_builtins
from tests.conftest import Sink, key_headers, other_tenant_headers, settings_for, task_queue
from worker import build_worker

CONSENT = {"status": "granted", "source": "x", "method": "x", "wording_version": "x"}
VERSION = {"subject": "s", "body": "b", "cta_text": "c", "cta_url": "https://x.example"}
# Valid bodies, so that a refusal is the boundary's and not the body's.
BODIES: dict[str, dict[str, Any]] = {
    "/v1/contacts/{contact_id}/consent": CONSENT,
    "/v1/templates/{template_id}/versions": VERSION,
    "/v1/reviews/{review_id}/approve": {"reviewer": "x", "note": "x"},
    "/v1/reviews/{review_id}/reject": {"reviewer": "x", "note": "x"},
    "/v1/ab-tests/{test_id}/winner": {"variant": "A"},
    "/v1/webhook-endpoints/{endpoint_id}": {"status": "disabled"},
    "/v1/webhook-endpoints/{endpoint_id}/rotate-secret": {},
    "/v1/webhook-endpoints/{endpoint_id}/dead-letters/replay": {},
}


@pytest.fixture
async def shop(
    time_skipping_env: WorkflowEnvironment, db: Database, sink: Sink
) -> AsyncIterator[tuple[httpx.AsyncClient, Database, dict[str, str]]]:
    seeded = await seed_demo(db, contacts=10)
    settings = settings_for(db, sink, temporal_task_queue=task_queue())
    app = create_app(settings, temporal_client=time_skipping_env.client)
    worker = build_worker(time_skipping_env.client, db, settings, settings.temporal_task_queue)
    async with worker, app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = await key_headers(db, "demo", "admin")
        async with httpx.AsyncClient(
            transport=transport, base_url="http://tailor", headers=headers
        ) as http:
            ids = await _demo_objects(http, db, seeded.template_version_id)
            yield http, db, ids


async def _demo_objects(http: httpx.AsyncClient, db: Database, version_id: int) -> dict[str, str]:
    """One of each thing the demo shop owns, by path parameter name."""
    started = (
        await http.post("/v1/campaigns", json={"name": "Mine", "template_version_id": version_id})
    ).json()
    async with asyncio.timeout(60):
        while (await http.get(f"/v1/campaigns/{started['id']}")).json()["status"] == "running":
            await asyncio.sleep(0.1)
    sends = (await http.get(f"/v1/campaigns/{started['id']}/sends")).json()
    send = (sends.get("items") or sends.get("data"))[0]
    template_id = (await http.post("/v1/templates", json={"name": "Mine", **VERSION})).json()["id"]
    async with db.session() as session:
        review = ReviewItem(
            tenant_id="demo", campaign_id=started["id"], cluster_key="k", provider="openai",
            model="m", prompt_version="v1", reason="low quality", created_at=utcnow(),
        )  # fmt: skip
        session.add(review)
        await session.flush()
        review_id = review.id
    keys = (await http.get("/v1/keys")).json()["items"]
    hook = {"url": "https://hooks.demo.example/tailor", "event_types": ["*"]}
    endpoint = (await http.post("/v1/webhook-endpoints", json=hook)).json()
    async with db.session() as session:  # the built-in journeys: one to report on
        await install_builtins(session=session, tenant_id="demo")
    return {
        "contact_id": str(send["contact_id"]),
        "campaign_id": started["id"],
        "send_id": str(send["id"]),
        "template_id": str(template_id),
        "review_id": str(review_id),
        "key_id": keys[0]["id"],
        "sku": "SKU-0001",
        "test_id": "abt_0000000000000000",
        "dead_letter_id": "1",
        "endpoint_id": endpoint["id"],
        "journey_key": "welcome",
    }


async def test_another_shops_key_finds_nothing_of_this_one_and_changes_nothing(
    shop: tuple[httpx.AsyncClient, Database, dict[str, str]],
) -> None:
    http, db, ids = shop
    acme = await other_tenant_headers(db, "acme")
    before = await _state(db)
    paths = (await http.get("/openapi.json")).json()["paths"]
    checked: list[str] = []
    for path, operations in paths.items():
        names = re.findall(r"\{(\w+)\}", path)
        # Unsubscribe pages, the open pixel and the click redirect carry their own signature
        # (tests/test_tracking_api.py refuses another tenant's).
        if not names or path.startswith(("/v1/unsubscribe/", "/t/")):
            continue
        url = path
        for name in names:
            assert name in ids, f"no demo id for {{{name}}}: add one to _demo_objects"
            url = url.replace(f"{{{name}}}", ids[name])
        for method in operations:
            body = BODIES.get(path) if method.upper() in ("POST", "PUT", "PATCH") else None
            answer = await http.request(method.upper(), url, json=body, headers=acme)
            assert answer.status_code == 404, (method, path, answer.status_code, answer.text)
            message = answer.json()["message"]
            assert "demo" not in message and "acme" not in message, message
            checked.append(f"{method.upper()} {path}")
    assert len(checked) >= 15, checked
    assert await _state(db) == before, "a refused call changed something"

    # Lists of the other shop hold none of this one's things.
    # (Its audit log does name these ids: as the targets of its own refused attempts.)
    lists = ("/v1/keys", "/v1/reviews", "/v1/journeys/runs", "/v1/dead-letters",
             "/v1/webhook-endpoints")  # fmt: skip
    for path in lists:
        listed = await http.get(path, headers=acme)
        assert listed.status_code == 200, (path, listed.text)
        text = listed.text
        for value in (ids["campaign_id"], ids["key_id"], ids["endpoint_id"]):
            assert value not in text, (path, value)


async def _state(db: Database) -> tuple[Any, ...]:
    async with db.read_session() as session:
        campaigns = (await session.execute(select(Campaign.id, Campaign.status))).all()  # type: ignore[call-overload]
        consent = (await session.execute(select(ConsentRecord.id))).all()  # type: ignore[call-overload]
        reviews = (await session.execute(select(ReviewItem.id, ReviewItem.status))).all()  # type: ignore[call-overload]
        endpoints = (
            await session.execute(
                select(WebhookEndpoint.id, WebhookEndpoint.status, WebhookEndpoint.secret_version)  # type: ignore[call-overload]
            )
        ).all()
    return (sorted(campaigns), len(consent), sorted(reviews), sorted(endpoints))
