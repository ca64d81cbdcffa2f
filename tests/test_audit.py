"""The audit log: one entry per mutating call, whatever its outcome, readable by the tenant's
admins only, append-only in the database, and free of request bodies and personal data."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError

import api.audit
import api.routes.templates
from api.main import create_app
from tailor.accounts.keys import issue_key
from tailor.config import Settings
from tailor.db import Database
from tailor.demo.data import DEMO_TENANT
from tailor.models import AuditEntry, Role, Tenant
from tailor.store.tenants import upsert_tenant

TEMPLATE = {
    "name": "Spring",
    "subject": "Hello {{ first_name }}",
    "body": "New arrivals in {{ top_category }}.",
    "cta_text": "Shop",
    "cta_url": "https://shop.example/new",
}


@dataclass
class Key:
    id: str
    headers: dict[str, str]


async def new_key(db: Database, tenant_id: str, role: Role) -> Key:
    async with db.session() as session:
        issued = await issue_key(
            session=session, tenant_id=tenant_id, role=role, name="t", created_by="tests"
        )
    return Key(issued.key.id, {"Authorization": f"Bearer {issued.secret}"})


@pytest.fixture
async def http(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with db.session() as session:
        for tenant_id in ("demo", "other"):
            tenant = Tenant.model_validate({**DEMO_TENANT, "id": tenant_id})
            await upsert_tenant(session=session, tenant=tenant)
    app = create_app(Settings(database_url=db.url, redis_url=None, rag_enabled=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor") as client:
            yield client


async def entries(db: Database) -> list[AuditEntry]:
    async with db.read_session() as session:
        found = await session.execute(select(AuditEntry).order_by(AuditEntry.id))  # type: ignore[arg-type]
        return list(found.scalars())


async def test_a_mutating_call_leaves_exactly_one_entry_saying_who_what_and_how(
    db: Database, http: httpx.AsyncClient
) -> None:
    marketer = await new_key(db, "demo", Role.MARKETER)
    created = await http.post("/v1/templates", json=TEMPLATE, headers=marketer.headers)
    assert created.status_code == 201
    template_id = created.json()["id"]
    version = await http.post(
        f"/v1/templates/{template_id}/versions",
        json={k: v for k, v in TEMPLATE.items() if k != "name"},
        headers=marketer.headers,
    )
    assert version.status_code == 201

    first, second = await entries(db)
    assert (first.tenant_id, first.actor, first.actor_kind, first.role) == (
        "demo", marketer.id, "key", "marketer"
    )  # fmt: skip
    assert (first.method, first.route, first.status_code, first.outcome) == (
        "POST", "/v1/templates", 201, "ok"
    )  # fmt: skip
    assert first.targets == {
        "template_id": str(template_id),
        "template_version_id": str(created.json()["versions"][0]["id"]),
    }
    assert first.request_id == created.headers["X-Request-ID"]
    # The route's template, with the path's id and the created version as targets.
    assert second.route == "/v1/templates/{template_id}/versions"
    assert second.targets == {
        "template_id": str(template_id),
        "template_version_id": str(version.json()["id"]),
    }
    assert second.request_id == version.headers["X-Request-ID"] != first.request_id


async def test_refused_and_anonymous_calls_are_on_the_trail_reads_are_not(
    db: Database, http: httpx.AsyncClient
) -> None:
    analyst = await new_key(db, "demo", Role.ANALYST)
    forbidden = await http.post("/v1/templates", json=TEMPLATE, headers=analyst.headers)
    assert forbidden.status_code == 403
    assert (await http.post("/v1/templates", json=TEMPLATE)).status_code == 401
    bad_key = {"Authorization": "Bearer tlr_000000000000_" + "x" * 43}
    assert (await http.put("/v1/tenant/delivery", json={}, headers=bad_key)).status_code == 401
    # Reads, with or without a key, leave nothing.
    assert (await http.get("/v1/tenant/delivery", headers=analyst.headers)).status_code == 200
    assert (await http.get("/v1/tenant/delivery")).status_code == 401
    # Neither do public routes nor paths that are not routes.
    await http.post("/v1/unsubscribe/not-a-token")
    await http.post("/v1/nowhere", headers=analyst.headers)

    refused, no_key, wrong_key = await entries(db)
    assert (refused.tenant_id, refused.actor, refused.role) == ("demo", analyst.id, "analyst")
    assert (refused.status_code, refused.outcome) == (403, "refused")
    for anonymous, route in ((no_key, "/v1/templates"), (wrong_key, "/v1/tenant/delivery")):
        assert (anonymous.tenant_id, anonymous.actor, anonymous.role) == (None, "anonymous", "none")
        assert (anonymous.route, anonymous.status_code, anonymous.outcome) == (
            route, 401, "refused"
        )  # fmt: skip


async def test_accepted_events_are_kept_as_events_only_refused_ones_reach_the_trail(
    db: Database, http: httpx.AsyncClient
) -> None:
    ingest = await new_key(db, "demo", Role.INGEST)
    event = {"anonymousId": "anon-1", "event": "Email Opened"}
    accepted = await http.post("/v1/track", json=event, headers=ingest.headers)
    assert accepted.status_code == 200
    assert await entries(db) == []
    refused = await http.post("/v1/track", json=event, auth=("demo", "guess"))
    assert refused.status_code == 401
    [entry] = await entries(db)
    assert (entry.route, entry.actor, entry.outcome) == ("/v1/track", "anonymous", "refused")


async def test_invalid_input_is_recorded_as_refused(db: Database, http: httpx.AsyncClient) -> None:
    admin = await new_key(db, "demo", Role.ADMIN)
    answer = await http.post("/v1/templates", json={"name": "x"}, headers=admin.headers)
    assert answer.status_code == 422
    (entry,) = await entries(db)
    assert (entry.actor, entry.status_code, entry.outcome) == (admin.id, 422, "refused")


async def test_nothing_of_a_contacts_upsert_body_reaches_the_audit_table(
    db: Database, http: httpx.AsyncClient
) -> None:
    marketer = await new_key(db, "demo", Role.MARKETER)
    people = [
        {"email": "zelda.quartermain@example.org", "first_name": "Zelda", "last_name": "Quartm"},
        {"email": "Olwen.Brightwater@Example.org", "first_name": "Olwen", "last_name": "Brightw"},
    ]
    answer = await http.post("/v1/contacts", json={"contacts": people}, headers=marketer.headers)
    assert answer.status_code == 200
    # A refused body must not leak either.
    refused = [{**people[0], "email": "not an address zelda.quartermain"}]
    assert (await http.post("/v1/contacts", json={"contacts": refused},
                            headers=marketer.headers)).status_code == 422  # fmt: skip

    ok, invalid = await entries(db)
    assert ok.detail == {"contacts": 2, "created": 2}
    assert invalid.outcome == "refused"
    async with db.read() as conn:
        rows = (await conn.execute(select(AuditEntry.__table__))).all()  # type: ignore[attr-defined]
    dump = repr(rows).lower()
    for secret in ("zelda", "quartm", "olwen", "brightw", "example.org"):
        assert secret not in dump


async def test_the_audit_log_is_for_the_tenants_admins_filtered_and_paged(
    db: Database, http: httpx.AsyncClient
) -> None:
    admin = await new_key(db, "demo", Role.ADMIN)
    marketer = await new_key(db, "demo", Role.MARKETER)
    analyst = await new_key(db, "demo", Role.ANALYST)
    ids = []
    for n in range(3):
        created = await http.post(
            "/v1/templates", json={**TEMPLATE, "name": f"T{n}"}, headers=marketer.headers
        )
        ids.append(created.json()["id"])
    await http.post("/v1/templates", json=TEMPLATE, headers=analyst.headers)  # 403
    await http.put("/v1/tenant/delivery", json={"send_rate_per_s": 5}, headers=admin.headers)

    # Only admins read it; the other tenant's admin sees none of this tenant's entries.
    assert (await http.get("/v1/audit", headers=marketer.headers)).status_code == 403
    assert (await http.get("/v1/audit", headers=analyst.headers)).status_code == 403
    other = await new_key(db, "other", Role.ADMIN)
    assert (await http.get("/v1/audit", headers=other.headers)).json()["items"] == []

    async def audit(**params: Any) -> dict[str, Any]:
        answer = await http.get("/v1/audit", params=params, headers=admin.headers)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    everything = (await audit())["items"]
    assert [e["route"] for e in everything] == ["/v1/tenant/delivery"] + ["/v1/templates"] * 4
    assert [e["actor"] for e in everything] == [admin.id, analyst.id] + [marketer.id] * 3

    # Pages of two, newest first, each entry once.
    seen, cursor, pages = [], None, 0
    while True:
        page = await audit(limit=2, **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= 2
        seen += [e["id"] for e in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == [e["id"] for e in everything]

    assert [e["actor"] for e in (await audit(outcome="refused"))["items"]] == [analyst.id]
    assert len((await audit(actor=marketer.id))["items"]) == 3
    assert len((await audit(route="/v1/tenant/delivery"))["items"]) == 1
    assert [e["targets"]["template_id"] for e in (await audit(target=str(ids[1])))["items"]] == [
        str(ids[1])
    ]
    oldest = everything[-1]["at"]
    assert len((await audit(since=oldest))["items"]) == 5
    assert (await audit(until=oldest))["items"] == []
    # The filters read by the log are not themselves on it; bad ones are named.
    bad = await http.get("/v1/audit", params={"cursor": "abc"}, headers=admin.headers)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "cursor"
    bad = await http.get("/v1/audit", params={"outcome": "maybe"}, headers=admin.headers)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "outcome"
    assert len((await audit())["items"]) == 5


async def test_the_database_refuses_to_change_or_delete_an_entry(
    db: Database, http: httpx.AsyncClient
) -> None:
    await http.post("/v1/templates", json=TEMPLATE)
    for statement in (update(AuditEntry).values(actor="someone else"), delete(AuditEntry)):
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.write() as conn:
                await conn.execute(statement)
    (entry,) = await entries(db)
    assert entry.actor == "anonymous"


async def test_a_failed_audit_write_is_logged_without_data_and_the_call_still_succeeds(
    db: Database,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(_db: Database, _entry: AuditEntry) -> None:
        raise RuntimeError("disk full writing zelda@example.org")

    monkeypatch.setattr(api.audit, "record", broken)
    marketer = await new_key(db, "demo", Role.MARKETER)
    with caplog.at_level(logging.ERROR, logger="api.audit"):
        answer = await http.post("/v1/templates", json=TEMPLATE, headers=marketer.headers)
    assert answer.status_code == 201
    (message,) = [r.getMessage() for r in caplog.records if r.name == "api.audit"]
    assert answer.headers["X-Request-ID"] in message and "RuntimeError" in message
    assert "zelda" not in message


async def test_a_call_that_crashes_is_recorded_as_failed(
    db: Database, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def crash(**_: Any) -> None:
        raise RuntimeError("the store fell over")

    monkeypatch.setattr(api.routes.templates, "create_template", crash)
    marketer = await new_key(db, "demo", Role.MARKETER)
    with pytest.raises(RuntimeError):  # the test client re-raises what the server answers 500
        await http.post("/v1/templates", json=TEMPLATE, headers=marketer.headers)
    (entry,) = await entries(db)
    assert (entry.actor, entry.route, entry.status_code, entry.outcome) == (
        marketer.id, "/v1/templates", 500, "failed"
    )  # fmt: skip
