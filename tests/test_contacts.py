"""Contacts over HTTP: an upsert changes only the fields it names, and the consent ledger and
review decisions record the caller's key as who did it, never a name the body states."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from api.main import create_app
from tailor.accounts.keys import issue_key
from tailor.config import Settings
from tailor.db import Database
from tailor.demo.seed import seed_demo
from tailor.models import ConsentRecord, Contact, ReviewItem, Role
from tailor.store.reviews import open_review
from tests.conftest import free_port, seeded_campaign


@dataclass
class Client:
    http: httpx.AsyncClient
    headers: dict[str, str]
    key_id: str


def app_settings(db: Database) -> Settings:
    """The API alone: no Redis, and a Temporal address nothing listens on (answers at once)."""
    return Settings(
        database_url=db.url,
        redis_url=None,
        rag_enabled=False,
        temporal_address=f"127.0.0.1:{free_port()}",
    )


async def new_key(db: Database, role: Role = Role.ADMIN) -> tuple[dict[str, str], str]:
    """(headers, key id) of a new key of the demo tenant."""
    async with db.session() as session:
        issued = await issue_key(
            session=session, tenant_id="demo", role=role, name="test", created_by="tests"
        )
    return {"Authorization": f"Bearer {issued.secret}"}, issued.key.id


@pytest.fixture
async def client(db: Database) -> AsyncIterator[Client]:
    await seed_demo(db, contacts=0)
    headers, key_id = await new_key(db)
    app = create_app(app_settings(db))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor") as http:
            yield Client(http, headers, key_id)


async def upsert(client: Client, *contacts: dict[str, Any]) -> httpx.Response:
    return await client.http.post(
        "/v1/contacts", json={"contacts": list(contacts)}, headers=client.headers
    )


async def stored(db: Database, email: str) -> Contact:
    async with db.session() as session:
        found = (
            await session.execute(select(Contact).where(col(Contact.email) == email))
        ).scalar_one()
        return found


CONSENT = {
    "status": "granted",
    "source": "signup-form",
    "method": "double-opt-in",
    "wording_version": "newsletter-v2",
}


async def test_an_upsert_naming_one_field_keeps_the_others(client: Client, db: Database) -> None:
    full = {
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "timezone": "Europe/London",
        "locale": "en-GB",
        "device": "mobile",
        "engagement_score": 90,
        "preferred_categories": ["books"],
        "cart_items": ["sku-1"],
    }
    assert (await upsert(client, full)).json()["created"] == 1

    answer = await upsert(client, {"email": "ADA@example.com", "first_name": "Augusta"})

    assert answer.status_code == 200, answer.text
    assert answer.json()["updated"] == 1
    contact = await stored(db, "ada@example.com")
    assert contact.first_name == "Augusta"
    assert (contact.last_name, contact.timezone, contact.locale, contact.device) == (
        "Lovelace", "Europe/London", "en-GB", "mobile",
    )  # fmt: skip
    assert contact.engagement_score == 90
    assert (contact.preferred_categories, contact.cart_items) == (["books"], ["sku-1"])


async def test_an_explicit_null_clears_a_name(client: Client, db: Database) -> None:
    await upsert(client, {"email": "bo@example.com", "first_name": "Bo", "last_name": "Li"})

    await upsert(client, {"email": "bo@example.com", "last_name": None})

    contact = await stored(db, "bo@example.com")
    assert (contact.first_name, contact.last_name) == ("Bo", None)


async def test_a_new_contact_gets_the_defaults(client: Client, db: Database) -> None:
    await upsert(client, {"email": "new@example.com", "first_name": "Nu"})

    contact = await stored(db, "new@example.com")
    assert (contact.timezone, contact.locale, contact.device) == ("UTC", "en", "desktop")
    assert (contact.engagement_score, contact.preferred_categories) == (50, [])


async def test_the_consent_ledger_names_the_callers_key_not_the_body(
    client: Client, db: Database
) -> None:
    created = await upsert(client, {"email": "cy@example.com"})
    contact_id = created.json()["data"][0]["id"]

    answer = await client.http.post(
        f"/v1/contacts/{contact_id}/consent",
        json={**CONSENT, "recorded_by": "the-recipient"},
        headers=client.headers,
    )

    assert answer.status_code == 200, answer.text
    record = answer.json()["record"]
    assert record["recorded_by"] == client.key_id
    # The stated name is kept only as a labelled note after the source.
    assert record["source"] == "signup-form (note: the-recipient)"
    async with db.read() as conn:
        rows = (await conn.execute(select(col(ConsentRecord.recorded_by)))).scalars().all()
    assert rows == [client.key_id]


async def test_consent_in_an_upsert_names_the_callers_key(client: Client, db: Database) -> None:
    await upsert(client, {"email": "di@example.com", "consent": {**CONSENT, "recorded_by": "x"}})
    await upsert(client, {"email": "ed@example.com", "consent": CONSENT})

    async with db.read() as conn:
        rows = (
            await conn.execute(select(col(ConsentRecord.recorded_by), col(ConsentRecord.source)))
        ).all()
    assert sorted(rows) == [
        (client.key_id, "signup-form"),
        (client.key_id, "signup-form (note: x)"),
    ]


async def test_a_long_stated_name_is_cut_to_fit_the_source_column(client: Client) -> None:
    created = await upsert(client, {"email": "fa@example.com"})
    contact_id = created.json()["data"][0]["id"]

    answer = await client.http.post(
        f"/v1/contacts/{contact_id}/consent",
        json={**CONSENT, "source": "s" * 90, "recorded_by": "n" * 200},
        headers=client.headers,
    )

    assert answer.status_code == 200, answer.text
    source = answer.json()["record"]["source"]
    assert len(source) <= 100
    assert source.startswith("s" * 90)


async def _pending_review(db: Database) -> int:
    campaign_id, _ = await seeded_campaign(db, contacts=0)
    async with db.writer.begin() as conn:
        review = await open_review(
            conn, tenant_id="demo", campaign_id=campaign_id, cluster_key="k1", cluster={},
            provider="openai", model="m", prompt_version="v1",
            content={"subject": "Hi", "preheader": "", "body": "A body of text.",
                     "cta_text": "Shop"},
            evaluation={}, reason="low quality",
        )  # fmt: skip
    return review.id


@pytest.mark.parametrize("decision", ["approve", "reject"])
async def test_a_review_decision_names_the_callers_key(
    client: Client, db: Database, decision: str
) -> None:
    review_id = await _pending_review(db)
    headers, reviewer_key = await new_key(db, Role.REVIEWER)

    answer = await client.http.post(
        f"/v1/reviews/{review_id}/{decision}",
        json={"reviewer": "the-ceo", "note": "fine by me"},
        headers=headers,
    )

    assert answer.status_code == 200, answer.text
    review = answer.json()["review"]
    assert review["decided_by"] == reviewer_key
    assert review["note"] == "fine by me (note: the-ceo)"
    async with db.read() as conn:
        decided_by = (await conn.execute(select(col(ReviewItem.decided_by)))).scalar_one()
    assert decided_by == reviewer_key


async def test_a_review_decision_needs_no_reviewer_field(client: Client, db: Database) -> None:
    review_id = await _pending_review(db)

    answer = await client.http.post(
        f"/v1/reviews/{review_id}/reject", json={}, headers=client.headers
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["review"]["decided_by"] == client.key_id
    assert answer.json()["review"]["note"] is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timezone", "Mars/Olympus_Mons"),  # sends are timed by it: refused here, not at send
        ("cart_items", ["x" * 65]),  # longer than any SKU the catalog takes
        ("preferred_categories", ["books\r\nBcc: x@evil.example"]),
        ("browse_items", [""]),
    ],
)
async def test_a_profile_value_the_rest_of_tailor_cannot_use_is_refused_by_name(
    client: Client, db: Database, field: str, value: Any
) -> None:
    answer = await upsert(client, {"email": "tz@example.com", field: value})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["field"].startswith(f"contacts.0.{field}")
    async with db.read_session() as session:
        found = await session.execute(select(Contact).where(col(Contact.email) == "tz@example.com"))
        assert found.first() is None
