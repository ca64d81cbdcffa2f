"""Segment-compatible ingestion (/v1/track, /v1/identify, /v1/batch) through the real app, on
SQLite and PostgreSQL: events stored once, contacts resolved, real-time features updated."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import col

from api.main import create_app
from tailor.config import Settings
from tailor.db import Database
from tailor.demo.data import DEMO_TENANT
from tailor.models import Contact, Event, Tenant
from tailor.store.events import StoredEvent, normalise_event_name
from tailor.store.tenants import upsert_tenant
from tests.conftest import key_headers


@dataclass
class Triggers:
    """Stands in for trigger processing; notes what it got and whether it was committed."""

    db: Database
    calls: list[tuple[str, list[StoredEvent]]] = field(default_factory=list)
    committed: list[bool] = field(default_factory=list)

    async def on_events(self, tenant_id: str, events: Sequence[StoredEvent]) -> None:
        self.calls.append((tenant_id, list(events)))
        ids = [e.id for e in events]
        async with self.db.read() as conn:  # another connection: sees only committed rows
            found = await conn.scalar(
                select(func.count()).select_from(Event).where(col(Event.id).in_(ids))
            )
        self.committed.append(found == len(ids))


@dataclass
class Api:
    http: httpx.AsyncClient
    db: Database
    triggers: Triggers
    ingest_key: str  # the secret of an ingest-only key, as Segment's write key

    async def track(self, event: str, user: str = "u-1", **fields: Any) -> dict[str, Any]:
        return await self.ok("/v1/track", {"userId": user, "event": event, **fields})

    async def ok(self, path: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        response = await self.http.post(path, json=body, **kwargs)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def contact(self, email: str) -> Contact:
        async with self.db.read_session() as session:
            rows = await session.execute(select(Contact).where(col(Contact.email) == email))
            return rows.scalar_one()

    async def events(self) -> list[Event]:
        async with self.db.read_session() as session:
            rows = await session.execute(select(Event).order_by(col(Event.id)))
            return list(rows.scalars())

    async def contact_count(self) -> int:
        async with self.db.read() as conn:
            return int(await conn.scalar(select(func.count()).select_from(Contact)) or 0)


@pytest.fixture
async def api(db: Database) -> AsyncIterator[Api]:
    async with db.session() as session:
        await upsert_tenant(session=session, tenant=Tenant.model_validate(DEMO_TENANT))
    app = create_app(Settings(database_url=db.url, rag_enabled=False))
    async with app.router.lifespan_context(app):
        triggers = Triggers(db)
        app.state.triggers = triggers
        transport = httpx.ASGITransport(app=app)
        headers = await key_headers(db, "demo", "ingest")
        async with httpx.AsyncClient(
            transport=transport, base_url="http://tailor", headers=headers
        ) as client:
            yield Api(client, db, triggers, headers["Authorization"].removeprefix("Bearer "))


async def identify(api: Api, user: str, email: str, **traits: Any) -> dict[str, Any]:
    return await api.ok("/v1/identify", {"userId": user, "traits": {"email": email, **traits}})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    "name", ["Order Completed", "order_completed", "Order-Completed", "  ORDER   completed "]
)
def test_event_names_are_normalised(name: str) -> None:
    assert normalise_event_name(name) == "order.completed"


async def test_identify_creates_the_contact_links_the_user_and_sets_traits(api: Api) -> None:
    before = await api.contact_count()
    traits = {
        "firstName": "Ada",
        "last_name": "Lovelace",
        "birthday": "1990-05-17",
        "timezone": "Europe/Paris",
        "language": "fr-FR",
    }
    answer = await identify(api, "u-1", "Ada@Example.com", **traits)
    assert answer == {"success": True, "accepted": 1, "duplicates": 0, "ignored": 0}
    ada = await api.contact("ada@example.com")
    assert await api.contact_count() == before + 1
    assert (ada.external_id, ada.first_name, ada.last_name) == ("u-1", "Ada", "Lovelace")
    assert (ada.birthday, ada.timezone, ada.locale) == ("05-17", "Europe/Paris", "fr-FR")

    # By userId alone; a time zone that does not exist is not applied.
    body = {"userId": "u-1", "traits": {"birthday": "12-24", "timezone": "Mars/Olympus"}}
    await api.ok("/v1/identify", body)
    ada = await api.contact("ada@example.com")
    assert (ada.birthday, ada.timezone) == ("12-24", "Europe/Paris")

    await api.track("Email Opened")
    events = await api.events()
    assert [e.type for e in events] == ["identify", "identify", "email.opened"]
    assert {e.contact_id for e in events} == {ada.id}
    assert events[0].properties["firstName"] == "Ada"  # traits are kept, as sent


async def test_identify_links_an_existing_contact(api: Api) -> None:
    contact = {"email": "grace@example.com", "first_name": "Grace"}
    marketer = await key_headers(api.db, "demo", "marketer")
    created = await api.ok("/v1/contacts", {"contacts": [contact]}, headers=marketer)
    before = await api.contact_count()
    await identify(api, "u-grace", "Grace@example.com", lastName="Hopper")
    grace = await api.contact("grace@example.com")
    assert await api.contact_count() == before
    assert grace.id == created["data"][0]["id"]
    assert (grace.external_id, grace.first_name, grace.last_name) == ("u-grace", "Grace", "Hopper")


async def test_track_updates_opens_clicks_cart_and_orders(api: Api) -> None:
    await identify(api, "u-1", "ada@example.com")
    await api.track("Email Opened", timestamp="2025-03-01T10:00:00+01:00")
    await api.track("email_clicked", timestamp="2025-03-01T10:05:00Z")
    await api.track("Product Added", properties={"sku": "SKU-A"})
    await api.track("Product Added", properties={"product_id": 42})
    await api.track("Product Added", properties={"sku": "SKU-A"})  # already in the cart
    ada = await api.contact("ada@example.com")
    assert ada.last_open_at == at("2025-03-01T09:00:00+00:00")
    assert ada.last_click_at == at("2025-03-01T10:05:00+00:00")
    assert ada.cart_items == ["SKU-A", "42"]

    await api.track("Product Removed", properties={"sku": "SKU-A"})
    assert (await api.contact("ada@example.com")).cart_items == ["42"]
    products = [{"sku": "SKU-B", "price": 10}, {"product_id": "SKU-C"}]
    await api.track("Cart Updated", properties={"products": products})
    assert (await api.contact("ada@example.com")).cart_items == ["SKU-B", "SKU-C"]
    await api.track("Cart Abandoned", properties={"products": [{"sku": "SKU-D"}]})
    assert (await api.contact("ada@example.com")).cart_items == ["SKU-D"]

    await api.track("Order Completed", timestamp="2025-03-02T12:00:00Z")
    ada = await api.contact("ada@example.com")
    assert (ada.cart_items, ada.order_count) == ([], 1)
    assert ada.last_purchase_at == at("2025-03-02T12:00:00+00:00")


async def test_an_older_event_arriving_late_moves_nothing_back(api: Api) -> None:
    await identify(api, "u-1", "ada@example.com")
    await api.track("Email Opened", timestamp="2025-03-02T08:00:00Z")
    await api.track("Email Opened", timestamp="2025-03-01T08:00:00Z")  # late, older
    assert (await api.contact("ada@example.com")).last_open_at == at("2025-03-02T08:00:00Z")
    await api.track("Email Opened", timestamp="2025-03-03T08:00:00Z")
    assert (await api.contact("ada@example.com")).last_open_at == at("2025-03-03T08:00:00Z")


async def test_batch_ignores_duplicates_within_and_across_requests(api: Api) -> None:
    body = {
        "batch": [
            {"type": "identify", "userId": "u-3", "traits": {"email": "lin@example.com"}},
            {"type": "track", "userId": "u-3", "event": "Order Completed", "messageId": "m-1"},
            {"type": "track", "userId": "u-3", "event": "Order Completed", "messageId": "m-1"},
            {"type": "track", "userId": "u-3", "event": "Email Opened", "messageId": "m-2"},
        ]
    }
    assert await api.ok("/v1/batch", body) == {
        "success": True,
        "accepted": 3,
        "duplicates": 1,
        "ignored": 0,
    }
    lin = await api.contact("lin@example.com")
    assert lin.order_count == 1 and lin.last_open_at is not None
    events = await api.events()
    # The identify earlier in the batch resolves the tracks after it.
    assert [(e.type, e.contact_id) for e in events] == [
        ("identify", lin.id),
        ("order.completed", lin.id),
        ("email.opened", lin.id),
    ]

    assert await api.ok("/v1/batch", body) == {
        "success": True,
        "accepted": 0,
        "duplicates": 4,
        "ignored": 0,
    }
    single = {"userId": "u-3", "event": "Order Completed", "messageId": "m-1"}
    assert (await api.ok("/v1/track", single))["duplicates"] == 1
    assert (await api.contact("lin@example.com")).order_count == 1
    assert len(await api.events()) == 3


async def test_without_message_id_an_identical_redelivery_is_a_duplicate(api: Api) -> None:
    await identify(api, "u-1", "ada@example.com")
    order: dict[str, Any] = {"properties": {"order_id": "o-1"}, "timestamp": "2025-03-02T12:00:00Z"}
    assert (await api.track("Order Completed", **order))["accepted"] == 1
    assert (await api.track("Order Completed", **order))["duplicates"] == 1
    assert (await api.contact("ada@example.com")).order_count == 1
    other = {**order, "properties": {"order_id": "o-2"}}
    assert (await api.track("Order Completed", **other))["accepted"] == 1
    assert (await api.contact("ada@example.com")).order_count == 2


async def test_a_malformed_batch_item_fails_the_request_and_stores_nothing(api: Api) -> None:
    contacts = await api.contact_count()
    good = {"type": "identify", "userId": "u-9", "traits": {"email": "new@example.com"}}
    track = {"type": "track", "userId": "u-9", "event": "Email Opened"}
    cases: list[tuple[str, dict[str, Any]]] = [
        ("batch.1.event", {"type": "track", "userId": "u-9"}),
        ("batch.1.event", {**track, "event": "x" * 101}),
        ("batch.1.userId", {"type": "track", "event": "Email Opened"}),
        ("batch.1.timestamp", {**track, "timestamp": "2025-03-01T10:00:00"}),  # no offset
        ("batch.1.messageId", {**track, "messageId": "m" * 201}),
        ("batch.1.type", {"type": "pageview", "userId": "u-9", "name": "Home"}),
        ("batch.1.traits.email", {**good, "traits": {"email": "nope"}}),
    ]
    for field_name, item in cases:
        response = await api.http.post("/v1/batch", json={"batch": [good, item]})
        assert response.status_code == 422, item
        assert [d["field"] for d in response.json()["detail"]] == [field_name], response.text
    too_few_or_many: list[dict[str, Any]] = [{"batch": []}, {"batch": [good] * 1001}]
    for body in too_few_or_many:
        response = await api.http.post("/v1/batch", json=body)
        assert response.status_code == 422 and response.json()["detail"][0]["field"] == "batch"
    assert await api.events() == []
    assert await api.contact_count() == contacts
    assert api.triggers.calls == []


async def test_a_webhook_destination_can_post_every_call_type_to_one_url(api: Api) -> None:
    """A CDP's webhook destination posts each call, whatever its type, to one URL: track and
    identify are used, page, screen, group and alias are accepted and ignored."""
    calls: list[dict[str, Any]] = [
        {"type": "identify", "userId": "u-5", "traits": {"email": "wh@example.com"}},
        {"type": "page", "userId": "u-5", "name": "Home", "properties": {"path": "/"}},
        {"type": "screen", "userId": "u-5", "name": "Cart"},
        {"type": "group", "userId": "u-5", "groupId": "g-1"},
        {"type": "alias", "userId": "u-5", "previousId": "anon-5"},
        {"type": "track", "userId": "u-5", "event": "Email Opened"},
    ]
    answers = [await api.ok("/v1/events", call) for call in calls]
    assert [(a["accepted"], a["ignored"]) for a in answers] == [
        (1, 0), (0, 1), (0, 1), (0, 1), (0, 1), (1, 0)]  # fmt: skip
    assert [e.type for e in await api.events()] == ["identify", "email.opened"]
    assert (await api.contact("wh@example.com")).last_open_at is not None
    mixed = await api.ok("/v1/batch", {"batch": calls[1:3]})
    assert (mixed["accepted"], mixed["ignored"]) == (0, 2)


async def test_the_tenant_is_the_ingest_keys_given_as_basic_username_else_401(api: Api) -> None:
    body = {"anonymousId": "anon-1", "event": "Email Opened"}
    assert (await api.ok("/v1/track", body, auth=(api.ingest_key, "")))["accepted"] == 1
    events = await api.events()
    assert [(e.tenant_id, e.anonymous_id) for e in events] == [("demo", "anon-1")]

    anonymous = httpx.Headers({"Authorization": ""})
    missing = await api.http.post("/v1/track", json=body, headers=anonymous)
    assert missing.status_code == 401 and "Bearer" in missing.json()["message"]
    # The tenant's name is no credential, with or without a password.
    for user, password in (("demo", ""), ("demo", "wrongpassword"), ("acme", "")):
        refused = await api.http.post("/v1/track", json=body, auth=(user, password))
        assert refused.status_code == 401, (user, password)
        assert user not in refused.json()["message"]
    # An ingest key sends events and nothing else, even as Basic or Bearer.
    basic_read = await api.http.get("/v1/contacts/1", auth=(api.ingest_key, ""))
    assert basic_read.status_code == 401
    bearer_read = await api.http.get("/v1/contacts/1")
    assert bearer_read.status_code == 403 and "ingest" in bearer_read.json()["message"]
    assert len(await api.events()) == 1


async def test_an_unknown_user_is_stored_without_a_contact(api: Api) -> None:
    assert (await api.track("Email Opened", user="stranger"))["accepted"] == 1
    [event] = await api.events()
    assert (event.contact_id, event.user_id, event.type) == (None, "stranger", "email.opened")
    assert api.triggers.calls[0][1][0].contact_id is None


async def test_a_segment_shaped_track_call_is_accepted(api: Api) -> None:
    await identify(api, "AiUGstSDIg", "ada@example.com")
    # A track call as Segment's HTTP API delivers it, with the fields Tailor ignores.
    segment = {
        "anonymousId": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
        "channel": "client",
        "context": {
            "ip": "108.0.78.21",
            "library": {"name": "analytics-ios", "version": "4.1.8"},
            "device": {"type": "ios", "model": "iPhone15,2", "manufacturer": "Apple"},
            "os": {"name": "iOS", "version": "17.2"},
            "locale": "nl-NL",
            "timezone": "Europe/Amsterdam",
            "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X)",
        },
        "event": "Product Added",
        "integrations": {"All": True, "Mixpanel": False},
        "messageId": "ajs-f8ca1e4de5024d9430b3928bd8ac6b96",
        "originalTimestamp": "2025-03-01T19:11:01.152Z",
        "properties": {"sku": "SKU-7", "price": 19.99, "quantity": 1},
        "receivedAt": "2025-03-01T19:11:01.266Z",
        "sentAt": "2025-03-01T19:11:01.169Z",
        "timestamp": "2025-03-01T19:11:01.249Z",
        "type": "track",
        "userId": "AiUGstSDIg",
        "version": 2,
        "writeKey": "demo",
    }
    answer = await api.ok("/v1/track", segment, auth=(api.ingest_key, ""))
    assert answer == {"success": True, "accepted": 1, "duplicates": 0, "ignored": 0}
    ada = await api.contact("ada@example.com")
    assert (ada.cart_items, ada.device, ada.timezone) == (["SKU-7"], "mobile", "Europe/Amsterdam")
    event = (await api.events())[-1]
    assert (event.type, event.contact_id, event.message_id) == (
        "product.added",
        ada.id,
        "ajs-f8ca1e4de5024d9430b3928bd8ac6b96",
    )
    assert event.occurred_at == at("2025-03-01T19:11:01.249Z")
    assert event.properties == {"sku": "SKU-7", "price": 19.99, "quantity": 1}
    # Device and timezone are kept per event (the daily job derives the usual ones); the rest
    # of the context (IP, user agent) is not stored.
    assert (event.device, event.timezone) == ("mobile", "Europe/Amsterdam")


async def test_concurrent_deliveries_of_one_event_store_it_once(api: Api) -> None:
    await identify(api, "u-1", "ada@example.com")
    body = {"userId": "u-1", "event": "Order Completed", "messageId": "order-77"}
    answers = await asyncio.gather(*(api.ok("/v1/track", body) for _ in range(2)))
    assert sorted((a["accepted"], a["duplicates"]) for a in answers) == [(0, 1), (1, 0)]
    assert (await api.contact("ada@example.com")).order_count == 1

    # Two first identifies of one new person (different messages): one contact.
    calls = [
        {"userId": "u-2", "traits": {"email": "bo@example.com"}, "messageId": f"id-{i}"}
        for i in range(2)
    ]
    answers = await asyncio.gather(*(api.ok("/v1/identify", c) for c in calls))
    assert [a["accepted"] for a in answers] == [1, 1]
    assert (await api.contact("bo@example.com")).external_id == "u-2"


async def test_trigger_processing_gets_only_new_events_after_commit(api: Api) -> None:
    await identify(api, "u-1", "ada@example.com")
    ada = await api.contact("ada@example.com")
    body = {
        "batch": [
            {"type": "track", "userId": "u-1", "event": "Cart Abandoned", "messageId": "c-1"},
            {"type": "track", "userId": "u-1", "event": "Cart Abandoned", "messageId": "c-1"},
        ]
    }
    await api.ok("/v1/batch", body)
    await api.ok("/v1/batch", body)  # nothing new: nothing to process
    assert len(api.triggers.calls) == 2 and all(api.triggers.committed)
    tenant_id, [event] = api.triggers.calls[1]
    assert (tenant_id, event.name, event.contact_id, event.message_id) == (
        "demo",
        "cart.abandoned",
        ada.id,
        "c-1",
    )
