"""A person erased (GDPR Art. 17) and their data exported (Art. 15/20), as a compliance officer
would check it: after the erasure workflow, their address, name and user id are nowhere in
the store (every table, searched whole), in Redis, in the vector store or in any workflow
history; imported again, the address stays suppressed; and the export before held it all.

One person, with everything a person leaves: an upsert answered under an idempotency key,
events and traits under their user id, an email sent by a campaign (its why, its links, a
cached profile in Redis, retrieval on), a provider's bounce text quoting the address.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy import select, text
from sqlmodel import SQLModel, col
from temporalio.testing import WorkflowEnvironment

import tailor.models  # noqa: F401  (every table on SQLModel.metadata)
from api.main import create_app
from rag.index import shared_index
from tailor.config import Settings
from tailor.db import Database
from tailor.models import EspEvent, Send, utcnow
from tailor.profiles.cache import FeatureCache
from tailor.store.profiles import contacts_by_id
from tests.conftest import (
    Sink,
    key_headers,
    other_tenant_headers,
    seeded_campaign,
    settings_for,
    start_campaign,
    task_queue,
)
from worker import build_worker

ADDRESS = "zelda.quartermain@example.org"
# What identifies her, searched for (lower-cased) in everything Tailor keeps.
TRACES = (ADDRESS, "quartermain", "zelda", "user-zq-77", "anon-zq-77", "1990-07-14", "07-14")
REDIS_URL = "redis://127.0.0.1:6379/0"


def _found(blob: str) -> list[str]:
    lowered = blob.lower()
    return [t for t in TRACES if t in lowered]


async def _tables_mentioning(db: Database) -> dict[str, list[str]]:
    """Every table of the schema, every row, as text: where any of her traces is."""
    found: dict[str, list[str]] = {}
    async with db.read() as conn:
        for table in SQLModel.metadata.sorted_tables:
            rows = (await conn.execute(select(table))).all()
            for row in rows:
                hits = _found(json.dumps([str(v) for v in row]))
                if hits:
                    found.setdefault(table.name, []).extend(hits)
    return found


async def _redis_mentioning(prefix: str) -> list[str]:
    client = Redis(host="127.0.0.1", port=6379)
    try:
        found: list[str] = []
        async for key in client.scan_iter(match=f"{prefix}:*"):
            kind = await client.type(key)
            value = await client.get(key) if kind == b"string" else b""
            found += _found(key.decode() + (value or b"").decode(errors="replace"))
        return found
    finally:
        await client.aclose()


async def test_an_erased_person_is_nowhere_and_stays_suppressed(
    db: Database, time_skipping_env: WorkflowEnvironment, sink: Sink, tmp_path: Path
) -> None:
    """On SQLite with the in-process cache, and on PostgreSQL with Redis."""
    env = time_skipping_env
    prefix = f"erasure-test-{task_queue()}"
    redis = {} if db.sqlite else {"redis_url": REDIS_URL, "redis_key_prefix": prefix}
    campaign_id, _ = await seeded_campaign(db, 12)
    queue = task_queue()
    settings = settings_for(
        db, sink, temporal_task_queue=queue, rag_enabled=True, home=tmp_path / "home",
        **redis,
    )  # fmt: skip
    app = create_app(settings, temporal_client=env.client)
    marketer = await key_headers(db, "demo", "marketer")
    async with (
        build_worker(env.client, db, settings, queue),
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                          timeout=60) as http,
    ):  # fmt: skip
        person = await _everything_a_person_leaves(http, marketer, db)
        outcome = await (await start_campaign(env.client, campaign_id, queue)).result()
        assert outcome.sent >= 1
        await _a_bounce_quoting_the_address(db, person)
        if not db.sqlite:
            await _her_profile_cached(settings, db, person)

        # Before: the export holds it all, and so do the store and Redis.
        exported = await http.get(f"/v1/contacts/{person}/export", headers=marketer)
        assert exported.status_code == 200, exported.text
        data = exported.json()["data"]
        assert data["contact"]["email"] == ADDRESS
        assert data["contact"]["external_id"] == "user-zq-77"
        assert {e["type"] for e in data["events"]} >= {"product.viewed", "identify"}
        assert [s["campaign_id"] for s in data["emails"]] == [campaign_id]
        assert data["consent"][0]["status"] == "granted"
        assert await _tables_mentioning(db)
        assert db.sqlite or await _redis_mentioning(prefix)

        # The other side of the boundary: another tenant cannot erase or read her.
        acme = await other_tenant_headers(db, "acme", "admin")
        assert (await http.delete(f"/v1/contacts/{person}", headers=acme)).status_code == 404
        assert (await http.get(f"/v1/contacts/{person}/export", headers=acme)).status_code == 404
        analyst = await key_headers(db, "demo", "analyst")
        assert (await http.delete(f"/v1/contacts/{person}", headers=analyst)).status_code == 403

        # Asked twice at once (a double click): one erasure.
        asked, twice = await asyncio.gather(
            http.delete(f"/v1/contacts/{person}", headers=marketer),
            http.delete(f"/v1/contacts/{person}", headers=marketer),
        )
        assert asked.status_code == twice.status_code == 202, (asked.text, twice.text)
        erasure = asked.json()
        assert twice.json()["id"] == erasure["id"]
        assert erasure["status"] == "requested" and erasure["workflow_id"]
        result = await env.client.get_workflow_handle(erasure["workflow_id"]).result()
        assert result["counts"]["contact"] == 1

        done = await http.get(f"/v1/contacts/{person}/erasure", headers=marketer)
        assert done.json()["status"] == "done" and done.json()["completed_at"]
        again = await http.delete(f"/v1/contacts/{person}", headers=marketer)
        assert again.status_code == 200 and again.json()["id"] == erasure["id"]

        # After: nowhere in the store, Redis, the vector store or Temporal's histories.
        assert await _tables_mentioning(db) == {}
        assert await _redis_mentioning(prefix) == []
        index = shared_index(url=None, path=settings.home / "qdrant",
                             model=settings.embedding_model)  # fmt: skip
        assert index is not None
        payloads = list(index.store.payloads())
        assert payloads and not _found(json.dumps(payloads))
        for workflow_id in (f"campaign-{campaign_id}", erasure["workflow_id"]):
            history = await env.client.get_workflow_handle(workflow_id).fetch_history()
            assert not _found(history.to_json()), workflow_id

        # What is left says nothing about who she was, and sends to her stopped for good.
        left = (await http.get(f"/v1/contacts/{person}/export", headers=marketer)).json()
        assert left["data"]["contact"]["email"] == f"erased-{person}@erased.invalid"
        assert left["data"]["consent"][-1]["method"] == "erasure"
        assert left["data"]["consent"][-1]["status"] == "revoked"

        # Imported again, with consent: suppressed, until a deliberate consent change.
        back = await http.post(
            "/v1/contacts",
            json={"contacts": [{"email": ADDRESS, "consent": _GRANT}]},
            headers=marketer,
        )
        assert back.status_code == 200, back.text
        new_id = back.json()["data"][0]["id"]
        assert new_id != person
        contact = (await http.get(f"/v1/contacts/{new_id}", headers=marketer)).json()
        assert contact["consent"] == "suppressed"
        assert contact["consent_history"][-1]["method"] == "erasure"


_GRANT = {"status": "granted", "source": "signup-form", "method": "double-opt-in",
          "wording_version": "newsletter-v2"}  # fmt: skip


async def _everything_a_person_leaves(
    http: httpx.AsyncClient, headers: dict[str, str], db: Database
) -> int:
    made = await http.post(
        "/v1/contacts",
        json={"contacts": [{
            "email": ADDRESS, "first_name": "Zelda", "last_name": "Quartermain",
            "external_id": "user-zq-77", "preferred_categories": ["kitchen"],
            "consent": _GRANT,
        }]},
        headers={**headers, "Idempotency-Key": "zq-upsert-1"},
    )  # fmt: skip
    assert made.status_code == 200, made.text
    person = int(made.json()["data"][0]["id"])
    async with db.write() as conn:  # a birthday, as a CRM sync would set it
        await conn.execute(text(f"UPDATE contact SET birthday = '07-14' WHERE id = {person}"))
    batch: list[dict[str, Any]] = [
        {"type": "track", "anonymousId": "anon-zq-77", "event": "Page Browsed",  # signed out
         "properties": {"search": "zelda's kitchen"}},
        {"type": "identify", "userId": "user-zq-77", "anonymousId": "anon-zq-77",
         "traits": {"email": ADDRESS, "firstName": "Zelda", "birthday": "1990-07-14"}},
        {"type": "track", "userId": "user-zq-77", "event": "Product Viewed",
         "properties": {"sku": "KIT-001", "viewer_email": ADDRESS, "note": "Zelda's pick"}},
    ]  # fmt: skip
    for call in batch:
        kind = call["type"]
        sent = await http.post(f"/v1/{kind}", json=call, headers=headers)
        assert sent.status_code in (200, 202), sent.text
    return person


async def _a_bounce_quoting_the_address(db: Database, person: int) -> None:
    async with db.write() as conn:
        send_id = await conn.scalar(select(col(Send.id)).where(col(Send.contact_id) == person))
        assert send_id is not None
        for matched in (send_id, None):
            await conn.execute(
                EspEvent.__table__.insert().values(  # type: ignore[attr-defined]
                    provider="sendgrid",
                    provider_event_id=f"evt-{matched}",
                    tenant_id="demo" if matched else None,
                    send_id=matched,
                    kind="bounced",
                    reason=f"550 5.1.1 <{ADDRESS}>: mailbox unavailable",
                    occurred_at=utcnow(),
                    received_at=utcnow(),
                )  # fmt: skip
            )


async def _her_profile_cached(settings: Settings, db: Database, person: int) -> None:
    """Her profile in Redis as a send reads it through, once the identify's hold on the entry
    (a 60 s tombstone) has passed."""
    cache = FeatureCache.from_settings(settings)
    assert cache is not None
    try:
        client = Redis(host="127.0.0.1", port=6379)
        await client.delete(cache.key(person))
        await client.aclose()
        async with db.read_session() as session:
            await cache.put_many(await contacts_by_id(session=session, contact_ids=[person]))
    finally:
        await cache.close()
