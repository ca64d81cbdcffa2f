"""Idempotency-Key on creates: a retry after a lost response gets the first answer and creates
nothing new (one campaign, one workflow, one email per contact); the same key with another body
is refused; a key whose request is still running answers 409; failed requests give their key
back; keys are forgotten after 24 hours."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from tailor.config import Settings
from tailor.db import Database
from tailor.demo.seed import SeededTenant, seed_demo
from tailor.devtools.smtp_sink import read_outbox
from tailor.models import AbTest, AuditEntry, Campaign, Contact, IdempotentRequest, utcnow
from tests.conftest import Sink, key_headers, settings_for, task_queue
from worker import build_worker

KEY = "Idempotency-Key"


def _contacts(*emails: str) -> dict[str, Any]:
    return {"contacts": [{"email": e, "first_name": "Ada"} for e in emails]}


async def _count(db: Database, table: Any) -> int:
    async with db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


@asynccontextmanager
async def _client(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None, **app_args: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, **app_args)
    async with app.router.lifespan_context(app):
        transport = transport or httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor") as http:
            yield http


@pytest.fixture
async def contacts_api(db: Database) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """An API without Temporal (bulk contacts need none) and a marketer's key."""
    await seed_demo(db, contacts=0)
    headers = await key_headers(db, "demo", "marketer")
    async with _client(Settings(database_url=db.url, redis_url=None)) as http:
        yield http, headers


# --- bulk contacts (no Temporal) -----------------------------------------------------------


async def test_a_repeated_bulk_upsert_replays_the_first_answer(
    db: Database, contacts_api: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    http, headers = contacts_api
    headers = {**headers, KEY: str(uuid.uuid4())}
    body = _contacts("one@example.com", "two@example.com")
    first = await http.post("/v1/contacts", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["created"] == 2 and "Idempotent-Replayed" not in first.headers
    # The same object serialised differently (key order, spacing) is the same request.
    reordered = (
        b'{"contacts":[{"first_name":"Ada","email":"one@example.com"},'
        b' {"first_name": "Ada", "email": "two@example.com"}]}'
    )
    again = await http.post(
        "/v1/contacts", content=reordered, headers={**headers, "Content-Type": "application/json"}
    )
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()  # created: 2 again, not "updated: 2"
    assert await _count(db, Contact) == 2
    async with db.read_session() as session:
        trail = list((await session.execute(select(AuditEntry))).scalars())
    assert [e.detail.get("idempotent_replay", False) for e in trail] == [False, True]

    # Without the key the request is simply made again.
    plain = await http.post(
        "/v1/contacts", json=body, headers={"Authorization": headers["Authorization"]}
    )
    assert plain.json()["updated"] == 2 and "Idempotent-Replayed" not in plain.headers


async def test_the_same_key_with_another_body_is_refused(
    db: Database, contacts_api: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    http, headers = contacts_api
    headers = {**headers, KEY: "order-42"}
    assert (
        await http.post("/v1/contacts", json=_contacts("a@example.com"), headers=headers)
    ).is_success
    other = await http.post("/v1/contacts", json=_contacts("b@example.com"), headers=headers)
    assert other.status_code == 422
    assert other.json()["detail"] == [
        {"field": KEY, "message": other.json()["message"].removeprefix(f"{KEY}: ")}
    ]
    assert "different request body" in other.json()["message"]
    assert await _count(db, Contact) == 1


async def test_keys_belong_to_their_tenant(
    db: Database, contacts_api: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    http, demo = contacts_api
    await seed_demo(db, contacts=0, tenant_id="acme")
    acme = await key_headers(db, "acme", "marketer")
    body = _contacts("shared@example.com")
    for headers in (demo, acme):
        response = await http.post("/v1/contacts", json=body, headers={**headers, KEY: "k1"})
        assert response.json()["created"] == 1 and "Idempotent-Replayed" not in response.headers


async def test_a_key_still_in_flight_answers_409_until_abandoned(
    db: Database, contacts_api: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    http, headers = contacts_api
    body = _contacts("slow@example.com")
    first = await http.post("/v1/contacts", json=body, headers={**headers, KEY: "first"})
    assert first.status_code == 200
    # The claim of a request still being answered: its key, body digest, and no response yet.
    async with db.session() as session:
        row = (await session.execute(select(IdempotentRequest))).scalar_one()
        running = IdempotentRequest(
            tenant_id="demo",
            idempotency_key="running",
            route=row.route,
            body_sha256=row.body_sha256,
            created_at=utcnow(),
        )
        session.add(running)
    busy = await http.post("/v1/contacts", json=body, headers={**headers, KEY: "running"})
    assert busy.status_code == 409 and "in progress" in busy.json()["message"]

    # Its process died: after 10 minutes the claim is taken over and the request made.
    async with db.session() as session:
        abandoned = await session.get(IdempotentRequest, running.id)
        assert abandoned is not None
        abandoned.created_at = utcnow() - timedelta(minutes=11)
    retried = await http.post("/v1/contacts", json=body, headers={**headers, KEY: "running"})
    assert retried.status_code == 200 and "Idempotent-Replayed" not in retried.headers


async def test_a_failed_request_gives_its_key_back(
    db: Database, contacts_api: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    http, headers = contacts_api
    headers = {**headers, KEY: "retry-me"}
    bad = await http.post("/v1/contacts", json=_contacts("not-an-email"), headers=headers)
    assert bad.status_code == 422 and "contacts.0.email" in bad.json()["message"]
    fixed = await http.post("/v1/contacts", json=_contacts("fixed@example.com"), headers=headers)
    assert fixed.status_code == 200 and fixed.json()["created"] == 1
    assert await _count(db, IdempotentRequest) == 1


async def test_keys_are_forgotten_after_24_hours(
    db: Database, contacts_api: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    http, headers = contacts_api
    body = _contacts("old@example.com")
    await http.post("/v1/contacts", json=body, headers={**headers, KEY: "yesterday"})
    await http.post("/v1/contacts", json=_contacts("x@example.com"), headers={**headers, KEY: "x"})
    async with db.session() as session:
        for claim in (await session.execute(select(IdempotentRequest))).scalars():
            claim.created_at = utcnow() - timedelta(hours=25)
    again = await http.post("/v1/contacts", json=body, headers={**headers, KEY: "yesterday"})
    assert again.status_code == 200 and "Idempotent-Replayed" not in again.headers
    assert again.json()["updated"] == 1  # made again, not replayed
    assert await _count(db, IdempotentRequest) == 1  # the other stale claim was swept too


@pytest.mark.parametrize(
    ("key", "message"),
    [("k" * 201, "at most 200 characters"), ("caf\u00e9", "printable ASCII"), ("", "1 to 200")],
)
async def test_malformed_keys_are_refused(
    contacts_api: tuple[httpx.AsyncClient, dict[str, str]], key: str, message: str
) -> None:
    http, headers = contacts_api
    raw = [(k.encode(), v.encode()) for k, v in headers.items()] + [(KEY.encode(), key.encode())]
    response = await http.post("/v1/contacts", json=_contacts("k@example.com"), headers=raw)
    assert response.status_code == 422 and KEY in response.json()["message"]
    assert message in response.json()["message"]


async def test_openapi_documents_the_header_on_the_creates(
    contacts_api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, _ = contacts_api
    paths = (await http.get("/openapi.json")).json()["paths"]
    for path in ("/v1/campaigns", "/v1/ab-tests", "/v1/contacts"):
        names = [p["name"] for p in paths[path]["post"].get("parameters", [])]
        assert KEY in names, path
    assert KEY not in [p["name"] for p in paths["/v1/templates"]["post"].get("parameters", [])]


# --- campaigns and A/B tests (real Temporal) -----------------------------------------------


class DropResponses(httpx.AsyncBaseTransport):
    """The request reaches the server and is answered, then the connection drops before the
    client reads the answer (a load balancer timeout, a flaky network)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.dropped: list[httpx.Response] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.dropped.append(response)
        raise httpx.ReadError("connection reset by peer", request=request)


@pytest.fixture
async def temporal_api(
    time_skipping_env: WorkflowEnvironment, db: Database, sink: Sink
) -> AsyncIterator[tuple[Any, SeededTenant, dict[str, str]]]:
    """An app with a worker on the time-skipping server (as in tests/test_api.py)."""
    seeded = await seed_demo(db, contacts=12)
    headers = await key_headers(db, "demo", "marketer")
    settings = settings_for(db, sink, temporal_task_queue=task_queue())
    app = create_app(settings, temporal_client=time_skipping_env.client)
    worker = build_worker(time_skipping_env.client, db, settings, settings.temporal_task_queue)
    async with worker, app.router.lifespan_context(app):
        yield app, seeded, headers


async def test_a_campaign_retried_after_a_dropped_response_starts_once(
    db: Database,
    sink: Sink,
    time_skipping_env: WorkflowEnvironment,
    temporal_api: tuple[Any, SeededTenant, dict[str, str]],
) -> None:
    app, seeded, headers = temporal_api
    headers = {**headers, KEY: str(uuid.uuid4())}
    body = {"name": "Spring", "template_version_id": seeded.template_version_id}
    flaky = DropResponses(httpx.ASGITransport(app=app))
    async with httpx.AsyncClient(transport=flaky, base_url="http://tailor") as http:
        with pytest.raises(httpx.ReadError):
            await http.post("/v1/campaigns", json=body, headers=headers)
    [lost] = flaky.dropped
    assert lost.status_code == 202

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tailor"
    ) as http:
        retry = await http.post("/v1/campaigns", json=body, headers=headers)
        assert retry.status_code == 202 and retry.headers["Idempotent-Replayed"] == "true"
        assert retry.json() == lost.json()
        assert await _count(db, Campaign) == 1

        other = await http.post("/v1/campaigns", json={**body, "name": "Summer"}, headers=headers)
        assert other.status_code == 422 and KEY in other.json()["message"]

        campaign_id = retry.json()["id"]
        async with asyncio.timeout(60):
            while (await http.get(f"/v1/campaigns/{campaign_id}", headers=headers)).json()[
                "status"
            ] in ("scheduled", "running"):
                await asyncio.sleep(0.1)
    # One workflow, so each consenting contact got one email, not two.
    handle = time_skipping_env.client.get_workflow_handle(retry.json()["workflow_id"])
    assert (await handle.describe()).status is not None
    assert await _count(db, Campaign) == 1
    assert len(read_outbox(sink.maildir)) == seeded.consenting


async def test_an_ab_test_sent_twice_is_created_once(
    db: Database, temporal_api: tuple[Any, SeededTenant, dict[str, str]]
) -> None:
    app, seeded, headers = temporal_api
    headers = {**headers, KEY: "ab-1"}
    version = seeded.template_version_id
    body = {
        "name": "Subject test",
        "variants": [
            {"key": "A", "template_version_id": version},
            {"key": "B", "template_version_id": version},
        ],
        "metric": "click",
        "window_hours": 48,
    }
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tailor"
    ) as http:
        first = await http.post("/v1/ab-tests", json=body, headers=headers)
        assert first.status_code == 202, first.text
        again = await http.post("/v1/ab-tests", json=body, headers=headers)
        assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
        assert await _count(db, AbTest) == 1
        cancel = await http.post(f"/v1/ab-tests/{first.json()['id']}/cancel", headers=headers)
        assert cancel.status_code == 202
