"""Every list route: one page shape (``items``, ``next_cursor``), newest first, keyset paging that
returns each item exactly once, filters, bad cursors refused with 422, and one tenant's items
never in another's lists. On SQLite and PostgreSQL; no Temporal (lists only read the store)."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from api.main import create_app
from tailor.config import Settings
from tailor.db import Database
from tailor.demo.seed import seed_demo
from tailor.models import (
    AbTest,
    Campaign,
    ConsentRecord,
    ConsentStatus,
    Contact,
    DeadLetter,
    Event,
    JourneyDefinition,
    JourneyRun,
    ReviewItem,
    Send,
    Template,
    TemplateVersion,
)
from tailor.store.consent import current_consent, record_consent
from tailor.store.journeys import install_builtins
from tests.conftest import key_headers

BASE = datetime(2025, 3, 1, 9, 0, 0, 123457, tzinfo=UTC)  # microseconds must survive the cursor
MANY = 125


@pytest.fixture
async def http(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=db.url, rag_enabled=False, redis_url=None))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor") as client:
            yield client


async def walk(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    """Every item of a list, following ``next_cursor``; each page but the last is full."""
    limit = int(params.setdefault("limit", 50))
    items: list[dict[str, Any]] = []
    for _ in range(100):
        answer = await http.get(path, params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert set(page) == {"items", "next_cursor"}
        items += page["items"]
        if page["next_cursor"] is None:
            assert len(page["items"]) <= limit
            return items
        assert len(page["items"]) == limit
        params["cursor"] = page["next_cursor"]
    raise AssertionError(f"{path} never reached its last page")


def ids(items: list[dict[str, Any]]) -> list[Any]:
    return [item["id"] for item in items]


async def _campaigns(db: Database, tenant_id: str, version_id: int) -> list[Campaign]:
    """MANY campaigns, three to each creation time (the id breaks ties), statuses in turn."""
    statuses = ["running", "completed", "paused", "cancelled", "scheduled"]
    rows = [
        Campaign(
            id=f"cmp_{secrets.token_hex(8)}", tenant_id=tenant_id, name=f"Campaign {i}",
            template_version_id=version_id, segment={}, status=statuses[i % 5],
            workflow_id=f"campaign-{i}", created_at=BASE + timedelta(seconds=i // 3),
        )
        for i in range(MANY)
    ]  # fmt: skip
    async with db.session() as session:
        session.add_all(rows)
    return sorted(rows, key=lambda c: (c.created_at, c.id), reverse=True)


async def test_campaigns_page_newest_first_each_once_and_filter(
    db: Database, http: httpx.AsyncClient
) -> None:
    seeded = await seed_demo(db, contacts=0)
    expected = await _campaigns(db, "demo", seeded.template_version_id)
    headers = await key_headers(db, "demo", "analyst")

    listed = await walk(http, "/v1/campaigns", headers)
    assert ids(listed) == [c.id for c in expected]
    assert set(listed[0]) == {"id", "name", "kind", "status", "template_version_id",
                              "start_at", "created_at", "completed_at"}  # fmt: skip
    assert listed[0]["name"] == expected[0].name and listed[0]["kind"] == "batch"

    completed = await walk(http, "/v1/campaigns", headers, status="completed", limit=7)
    assert ids(completed) == [c.id for c in expected if c.status == "completed"]

    start, end = BASE + timedelta(seconds=10), BASE + timedelta(seconds=20)
    window = await walk(http, "/v1/campaigns", headers, limit=4,
                        created_after=start.isoformat().replace("+00:00", "Z"),
                        created_before=end.isoformat())  # fmt: skip
    assert ids(window) == [c.id for c in expected if start <= c.created_at < end]
    assert len(window) == 30

    naive = await http.get("/v1/campaigns", params={"created_after": "2025-03-01T09:00:00"},
                           headers=headers)  # fmt: skip
    assert naive.status_code == 422 and "created_after" in naive.json()["message"]
    backwards = await http.get(
        "/v1/campaigns", headers=headers,
        params={"created_after": end.isoformat(), "created_before": start.isoformat()},
    )  # fmt: skip
    assert backwards.status_code == 422 and "created_before" in backwards.json()["message"]
    unknown = await http.get("/v1/campaigns", params={"status": "exploded"}, headers=headers)
    assert unknown.status_code == 422
    for edge in ("9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00"):
        answer = await http.get("/v1/campaigns", params={"created_before": edge}, headers=headers)
        assert answer.status_code == 422 and "created_before" in answer.json()["message"]


async def test_contacts_page_with_consent_from_the_newest_ledger_row(
    db: Database, http: httpx.AsyncClient
) -> None:
    await seed_demo(db, contacts=130)
    async with db.session() as session:
        contacts = list(
            (await session.execute(select(Contact).where(col(Contact.tenant_id) == "demo")))
            .scalars()
        )  # fmt: skip
        granted = (
            await session.execute(select(ConsentRecord.contact_id).distinct())
        ).scalars().all()  # fmt: skip
        revoked, regranted, suppressed = granted[0], granted[1], granted[2]

        async def record(contact_id: int, status: ConsentStatus) -> None:
            await record_consent(session=session, tenant_id="demo", contact_id=contact_id,
                                 status=status, source="test", method="test",
                                 wording_version="v1", recorded_by="tests")  # fmt: skip

        await record(revoked, ConsentStatus.REVOKED)
        await record(regranted, ConsentStatus.REVOKED)
        await record(suppressed, ConsentStatus.SUPPRESSED)
        await record(regranted, ConsentStatus.GRANTED)  # the newest row decides
    headers = await key_headers(db, "demo", "reviewer")

    listed = await walk(http, "/v1/contacts", headers)
    assert ids(listed) == sorted((c.id or 0 for c in contacts), reverse=True)
    assert set(listed[0]) == {"id", "email", "first_name", "last_name", "consent", "created_at"}
    by_id = {item["id"]: item for item in listed}
    async with db.read() as conn:
        current = await current_consent(conn, contact_ids=by_id)
    assert {i: item["consent"] for i, item in by_id.items()} == {
        i: current.get(i, "none") for i in by_id
    }
    assert (by_id[revoked]["consent"], by_id[regranted]["consent"],
            by_id[suppressed]["consent"]) == ("revoked", "granted", "suppressed")  # fmt: skip
    assert any(item["consent"] == "none" for item in listed), "the seed leaves some unconsented"

    for state in ("granted", "revoked", "suppressed", "none"):
        filtered = await walk(http, "/v1/contacts", headers, consent=state, limit=20)
        assert ids(filtered) == [item["id"] for item in listed if item["consent"] == state]

    someone = contacts[17]
    found = await walk(http, "/v1/contacts", headers, email=f"  {someone.email.upper()} ")
    assert ids(found) == [someone.id]
    assert found[0]["email"] == someone.email
    partial = await walk(http, "/v1/contacts", headers, email=someone.email[:-1])
    assert partial == []
    for bad in ({"consent": "maybe"}, {"email": "ada\x00@example.com"}, {"email": ""}):
        assert (await http.get("/v1/contacts", params=bad, headers=headers)).status_code == 422


async def test_templates_and_ab_tests_page_and_filter(
    db: Database, http: httpx.AsyncClient
) -> None:
    seeded = await seed_demo(db, contacts=0)
    async with db.session() as session:
        templates = [Template(tenant_id="demo", name=f"Template {i}") for i in range(MANY)]
        session.add_all(templates)
        await session.flush()
        session.add_all(
            TemplateVersion(template_id=t.id or 0, version=v, subject="s", body="b",
                            cta_text="Go", cta_url="https://shop.example.com")
            for t in templates[::2] for v in (1, 2)
        )  # fmt: skip
        statuses = ["testing", "rolling_out", "completed", "cancelled"]
        tests = [
            AbTest(id=f"ab_{secrets.token_hex(6)}", tenant_id="demo", name=f"Test {i}",
                   metric="click", test_fraction=0.1, threshold=0.95, min_sent_per_variant=10,
                   window_s=3600, default_variant="A",
                   variants=[{"key": "A", "template_version_id": seeded.template_version_id,
                              "campaign_id": "x"}, {"key": "B", "template_version_id": 1,
                                                     "campaign_id": "y"}],
                   status=statuses[i % 4], workflow_id=f"abtest-{i}",
                   created_at=BASE + timedelta(minutes=i // 2))
            for i in range(MANY)
        ]  # fmt: skip
        session.add_all(tests)
    headers = await key_headers(db, "demo", "marketer")

    listed = await walk(http, "/v1/templates", headers)
    version_ids: dict[int, list[int]] = {}
    async with db.session() as session:
        for version in (await session.execute(select(TemplateVersion))).scalars():
            version_ids.setdefault(version.template_id, []).append(version.id or 0)
    versions = {t: (max(v), len(v)) for t, v in version_ids.items()}
    assert len(listed) == MANY + 1  # and the seed's own
    assert ids(listed) == sorted(ids(listed), reverse=True)
    assert {(t["id"], t["latest_version_id"], t["versions"]) for t in listed} == {
        (t["id"], *versions.get(t["id"], (None, 0))) for t in listed
    }

    newest_first = sorted(tests, key=lambda t: (t.created_at, t.id), reverse=True)
    everything = await walk(http, "/v1/ab-tests", headers)
    assert ids(everything) == [t.id for t in newest_first]
    assert everything[0]["variants"] == ["A", "B"]
    rolling = await walk(http, "/v1/ab-tests", headers, status="rolling_out", limit=9)
    assert ids(rolling) == [t.id for t in newest_first if t.status == "rolling_out"]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


LISTS = ("/v1/campaigns", "/v1/contacts", "/v1/templates", "/v1/ab-tests", "/v1/products",
         "/v1/journeys/runs", "/v1/reviews", "/v1/dead-letters")  # fmt: skip
NOT_CURSORS = [
    "not-a-cursor",
    "%%%",
    "eyJ",  # a base64 fragment of nothing
    _b64(b"\xff\xfe"),
    _b64(json.dumps({"id": 3}).encode()),
    _b64(json.dumps([True]).encode()),
    _b64(json.dumps([-4]).encode()),
    _b64(json.dumps(["2025-03-01", "cmp_1"]).encode()),  # no offset
    _b64(json.dumps(["yesterday", "cmp_1"]).encode()),
    _b64(json.dumps(["9999-12-31T23:00:00-05:00", "cmp_1"]).encode()),  # past the calendar
    "A" * 600,
]


async def test_a_malformed_cursor_is_422_naming_it(db: Database, http: httpx.AsyncClient) -> None:
    await seed_demo(db, contacts=1)
    headers = await key_headers(db, "demo", "admin")
    for path in LISTS:
        for cursor in NOT_CURSORS:
            answer = await http.get(path, params={"cursor": cursor}, headers=headers)
            assert answer.status_code == 422, (path, cursor, answer.text)
            body = answer.json()
            assert body["detail"][0]["field"] == "cursor" and "cursor" in body["message"]


async def test_a_cursor_of_one_list_shape_is_refused_by_the_other(
    db: Database, http: httpx.AsyncClient
) -> None:
    seeded = await seed_demo(db, contacts=60)
    await _campaigns(db, "demo", seeded.template_version_id)
    headers = await key_headers(db, "demo", "admin")
    by_time = (await http.get("/v1/campaigns", headers=headers)).json()["next_cursor"]
    by_id = (await http.get("/v1/contacts", headers=headers)).json()["next_cursor"]
    assert by_time and by_id
    assert (await http.get("/v1/contacts", params={"cursor": by_time},
                           headers=headers)).status_code == 422  # fmt: skip
    assert (await http.get("/v1/campaigns", params={"cursor": by_id},
                           headers=headers)).status_code == 422  # fmt: skip
    for limit in (0, 201):
        answer = await http.get("/v1/contacts", params={"limit": limit}, headers=headers)
        assert answer.status_code == 422 and "limit" in answer.json()["message"]


async def test_another_tenants_key_sees_none_of_them(db: Database, http: httpx.AsyncClient) -> None:
    seeded = await seed_demo(db, contacts=60)
    other = await seed_demo(db, contacts=3, tenant_id="acme")
    campaigns = await _campaigns(db, "demo", seeded.template_version_id)
    demo, acme = await key_headers(db, "demo", "admin"), await key_headers(db, "acme", "admin")

    assert await walk(http, "/v1/campaigns", acme) == []
    assert await walk(http, "/v1/ab-tests", acme) == []
    acme_contacts = await walk(http, "/v1/contacts", acme)
    demo_contacts = await walk(http, "/v1/contacts", demo)
    assert len(acme_contacts) == 3 and not set(ids(acme_contacts)) & set(ids(demo_contacts))
    acme_templates = await walk(http, "/v1/templates", acme)
    assert [t["latest_version_id"] for t in acme_templates] == [other.template_version_id]
    # Another tenant's cursor only says where to resume: the list is still the caller's own.
    cursor = (await http.get("/v1/campaigns", headers=demo)).json()["next_cursor"]
    assert await walk(http, "/v1/campaigns", acme, cursor=cursor) == []
    assert (
        await http.get(f"/v1/campaigns/{campaigns[0].id}/sends", headers=acme)
    ).status_code == 404
    ingest = await key_headers(db, "demo", "ingest")
    assert (await http.get("/v1/contacts", headers=ingest)).status_code == 403


async def test_the_older_lists_share_the_page_shape(db: Database, http: httpx.AsyncClient) -> None:
    """Sends, reviews, dead letters and journey runs: newest first, each once, tenant's own."""
    seeded = await seed_demo(db, contacts=7)
    await seed_demo(db, contacts=1, tenant_id="acme")
    (campaign, *_) = await _campaigns(db, "demo", seeded.template_version_id)
    async with db.session() as session:
        await install_builtins(session=session, tenant_id="demo")
        definition = (await session.execute(select(JourneyDefinition))).scalars().first()
        assert definition is not None
        people = (
            await session.execute(select(Contact.id).where(col(Contact.tenant_id) == "demo"))
        ).scalars().all()  # fmt: skip
        sends = [Send(campaign_id=campaign.id, contact_id=p, message_id=f"<m{p}@t>")
                 for p in people]  # fmt: skip
        reviews = [
            ReviewItem(tenant_id="demo", campaign_id=campaign.id, cluster_key=f"k{i}",
                       provider="openai", model="m", prompt_version="v", reason="quality")
            for i in range(7)
        ]  # fmt: skip
        events = [Event(tenant_id="demo", contact_id=p, type="signed.up", message_id=f"e{p}")
                  for p in people]  # fmt: skip
        runs = [
            JourneyRun(id=f"run-{secrets.token_hex(4)}", tenant_id="demo", contact_id=p,
                       journey_key="welcome", definition_id=definition.id or 0,
                       workflow_id=f"journey-{p}", started_at=BASE + timedelta(seconds=i // 2))
            for i, p in enumerate(people)
        ]  # fmt: skip
        session.add_all([*sends, *reviews, *events, *runs])
        await session.flush()
        letters = [DeadLetter(tenant_id="demo", event_id=e.id or 0, error="boom") for e in events]
        session.add_all(letters)
        await session.flush()
        by_id = {
            "sends": sorted((s.id or 0 for s in sends), reverse=True),
            "reviews": sorted((r.id or 0 for r in reviews), reverse=True),
            "dead-letters": sorted((d.id or 0 for d in letters), reverse=True),
            "runs": [r.id for r in sorted(runs, key=lambda r: (r.started_at, r.id),
                                          reverse=True)],
        }  # fmt: skip
    demo, acme = await key_headers(db, "demo", "analyst"), await key_headers(db, "acme", "admin")
    paths = {
        "sends": f"/v1/campaigns/{campaign.id}/sends",
        "reviews": "/v1/reviews",
        "dead-letters": "/v1/dead-letters",
        "runs": "/v1/journeys/runs",
    }
    for name, path in paths.items():
        assert ids(await walk(http, path, demo, limit=3)) == by_id[name], name
        if name != "sends":  # another tenant's campaign is a 404 (above)
            assert await walk(http, path, acme, limit=3) == [], name
    open_letters = await walk(http, "/v1/dead-letters", demo, status="replayed")
    assert open_letters == []
    first_person = await walk(http, "/v1/journeys/runs", demo, contact_id=people[0])
    assert ids(first_person) == [runs[0].id]
