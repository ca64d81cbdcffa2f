"""The tenant's settings: read by anyone of the tenant, changed by its admins field by field,
each field checked, and every change on the audit log by the names of the fields."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from api.main import create_app
from tailor.config import Settings
from tailor.db import Database
from tailor.demo.data import DEMO_TENANT
from tailor.models import AuditEntry, Role, Tenant
from tailor.store.tenants import upsert_tenant
from tests.conftest import key_headers

URL = "/v1/tenant/settings"


@pytest.fixture
async def http(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with db.session() as session:
        await upsert_tenant(session=session, tenant=Tenant.model_validate(DEMO_TENANT))
    settings = Settings(database_url=db.url, redis_url=None, llm_daily_budget_usd=7.5)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor") as client:
            yield client


async def test_anyone_of_the_tenant_reads_the_settings_with_defaults_filled_in(
    db: Database, http: httpx.AsyncClient
) -> None:
    answer = await http.get(URL, headers=await key_headers(db, "demo", Role.ANALYST))
    assert answer.status_code == 200
    assert answer.json() == {
        "postal_address": DEMO_TENANT["postal_address"],
        "from_name": DEMO_TENANT["from_name"],
        "from_email": DEMO_TENANT["from_email"],
        "timezone": "UTC",
        "brand_policy": {
            "banned_phrases": [],
            "required_disclaimer": None,
            "max_subject_length": 80,
            "tone": "friendly",
        },
        "daily_email_limit": 3,
        "llm_daily_budget_usd": None,
        "effective_llm_daily_budget_usd": 7.5,
        "tracking_enabled": True,
        "attribution_click_hours": 120,
        "attribution_open_hours": 24,
        "pause_complaint_rate": 0.003,
        "pause_bounce_rate": 0.05,
        "pause_min_sent": 1000,
    }
    ingest = await key_headers(db, "demo", Role.INGEST)
    assert (await http.get(URL, headers=ingest)).status_code == 403


async def test_an_admin_changes_only_the_fields_named(
    db: Database, http: httpx.AsyncClient
) -> None:
    admin = await key_headers(db, "demo", Role.ADMIN)
    before = (await http.get(URL, headers=admin)).json()
    policy = {"banned_phrases": ["cheap"], "required_disclaimer": "Terms apply."}
    change: dict[str, Any] = {
        "timezone": "Europe/Paris",
        "tracking_enabled": False,
        "daily_email_limit": 50,
        "llm_daily_budget_usd": 0,
        "brand_policy": policy,
        "attribution_click_hours": 72,
        "attribution_open_hours": 0,
        "pause_complaint_rate": 0.001,
        "pause_min_sent": 500,
    }
    answer = await http.patch(URL, json=change, headers=admin)
    assert answer.status_code == 200, answer.text
    after = (await http.get(URL, headers=admin)).json()
    assert after == answer.json()
    assert after == {
        **before,
        **change,
        "effective_llm_daily_budget_usd": 0,
        "brand_policy": {**before["brand_policy"], **policy},
    }

    # The brand policy merges key by key; a null budget returns to the server's default.
    answer = await http.patch(
        URL, json={"brand_policy": {"tone": "formal"}, "llm_daily_budget_usd": None}, headers=admin
    )
    body = answer.json()
    assert body["brand_policy"]["tone"] == "formal"
    assert body["brand_policy"]["banned_phrases"] == ["cheap"]
    assert (body["llm_daily_budget_usd"], body["effective_llm_daily_budget_usd"]) == (None, 7.5)

    # Only admins change them.
    marketer = await key_headers(db, "demo", Role.MARKETER)
    refused = await http.patch(URL, json={"tracking_enabled": True}, headers=marketer)
    assert refused.status_code == 403
    assert (await http.get(URL, headers=admin)).json()["tracking_enabled"] is False


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"timezone": "../../etc/passwd"}, "timezone"),
    ({"daily_email_limit": 0}, "daily_email_limit"),
    ({"daily_email_limit": 51}, "daily_email_limit"),
    ({"llm_daily_budget_usd": -1}, "llm_daily_budget_usd"),
    ({"from_email": "not-an-address"}, "from_email"),
    ({"from_name": "Shop\r\nBcc: everyone@example.com"}, "from_name"),
    ({"from_name": None}, "from_name"),
    ({"postal_address": "   "}, "postal_address"),
    ({"tracking_enabled": "maybe"}, "tracking_enabled"),
    ({"attribution_click_hours": 0}, "attribution_click_hours"),
    ({"attribution_open_hours": None}, "attribution_open_hours"),
    ({"pause_complaint_rate": 0}, "pause_complaint_rate"),
    ({"pause_bounce_rate": 1.5}, "pause_bounce_rate"),
    ({"pause_min_sent": 0}, "pause_min_sent"),
    ({"brand_policy": {"max_subject_length": 5}}, "brand_policy.max_subject_length"),
    ({"brand_policy": {"tone": "shouty"}}, "brand_policy.tone"),
    ({"brand_policy": {"tone": None}}, "brand_policy.tone"),
    ({"brand_policy": {"colour": "red"}}, "brand_policy.colour"),
    ({"website": "https://elsewhere.example"}, "website"),
]


async def test_an_invalid_field_is_named_and_nothing_changes(
    db: Database, http: httpx.AsyncClient
) -> None:
    admin = await key_headers(db, "demo", Role.ADMIN)
    before = (await http.get(URL, headers=admin)).json()
    for change, field in INVALID:
        # A valid field next to the invalid one is not written either.
        answer = await http.patch(URL, json={"timezone": "Asia/Tokyo", **change}, headers=admin)
        assert answer.status_code == 422, (change, answer.text)
        assert [d["field"] for d in answer.json()["detail"]] == [field], change
        assert field in answer.json()["message"]
    assert (await http.get(URL, headers=admin)).json() == before
    # Each refusal is on the audit log, with nothing of what was sent.
    async with db.read_session() as session:
        found = list((await session.execute(select(AuditEntry))).scalars())
    assert [(e.outcome, e.detail) for e in found] == [("refused", {})] * len(INVALID)


async def test_a_change_is_on_the_audit_log_by_field_names_only(
    db: Database, http: httpx.AsyncClient
) -> None:
    admin = await key_headers(db, "demo", Role.ADMIN)
    address = "Kleine Gasse 7, 8001 Zürich, Switzerland"
    change = {
        "postal_address": address,
        "from_name": DEMO_TENANT["from_name"],  # the same as before: not a change
        "brand_policy": {"tone": "formal", "max_subject_length": 80},  # 80 is the default
    }
    assert (await http.patch(URL, json=change, headers=admin)).status_code == 200

    async with db.read_session() as session:
        (entry,) = (await session.execute(select(AuditEntry))).scalars()
    assert (entry.method, entry.route, entry.outcome) == ("PATCH", URL, "ok")
    assert entry.detail == {"changed": ["brand_policy.tone", "postal_address"]}
    assert "Zürich" not in repr(entry.model_dump())
    listed = (await http.get("/v1/audit", headers=admin)).json()["items"]
    assert [e["detail"]["changed"] for e in listed] == [["brand_policy.tone", "postal_address"]]
