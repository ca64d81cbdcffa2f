"""Outbound webhooks: a tenant's endpoints get its email events, signed, in order, retried by
Temporal, dead-lettered when the retries run out and replayed on request; Segment-format endpoints
get what Segment's HTTP API takes. Receivers are real HTTP servers on loopback; signatures are
checked the way the README tells receivers to check them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlmodel import col
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from tailor.config import Settings
from tailor.db import Database
from tailor.delivery.webhooks.events import EspEvent, EventKind
from tailor.delivery.webhooks.ingest import ingest
from tailor.errors import InvalidInput
from tailor.models import Contact, OutboundDelivery, Send, WebhookEndpoint, utcnow
from tailor.outbound import engagement_event, publish
from tailor.outbound.delivery import Poster, ReceiverFailed, signing_secrets
from tailor.outbound.events import EVENT_TYPES, SEGMENT_NAMES
from tailor.outbound.formats import segment_body, tailor_body
from tailor.outbound.signing import endpoint_secret, seal, signature_header, unseal, verify
from tailor.outbound.urls import check_url
from tailor.payloads import OutboundOutcome, OutboundRun
from tailor.store.outbound import QueuedEvent, prune
from tailor.store.sends import ensure_send_rows
from tailor.temporal.outbound import OutboundRelay
from tests.conftest import key_headers, other_tenant_headers, seeded_campaign, task_queue
from worker import build_worker
from workflows.outbound import OutboundWebhookWorkflow, outbound_workflow_id

SERVER_SECRET = "test-outbound-secret"


# --- a receiver -----------------------------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on loopback that records every request and answers ``fail_status`` to the
    first ``fail_first`` of them (or to all, with ``down``), 200 to the rest."""

    port: int = 0
    fail_first: int = 0
    down: bool = False
    fail_status: int = 500
    requests: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.requests if r.status == 200]

    def accepted_events(self) -> list[dict[str, Any]]:
        return [event for r in self.accepted for event in r.json()["events"]]

    def answer(self) -> int:
        failing = self.down or len(self.requests) < self.fail_first
        return self.fail_status if failing else 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                status = state.answer()
                state.requests.append(Received(dict(self.headers.items()), body, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def readme_verify() -> Callable[[str, str, bytes], bool]:
    """The receiver's check exactly as the README shows it."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    found = re.search(r"```python\n(import hashlib, hmac, time\n.*?)```", readme, re.S)
    assert found, "the README's signature check is gone"
    namespace: dict[str, Any] = {}
    exec(found.group(1), namespace)  # noqa: S102 - our own README's snippet
    verify_fn: Callable[[str, str, bytes], bool] = namespace["verify"]
    return verify_fn


def receiver_verifies(secret: str, received: Received, *, now: float | None = None) -> bool:
    """The documented scheme, written from its description (with a clock to set)."""
    header = received.headers["Tailor-Signature"]
    parts = [p.split("=", 1) for p in header.split(",")]
    timestamp = next(v for k, v in parts if k == "t")
    if abs((now or time.time()) - int(timestamp)) > 300:
        return False
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + received.body, hashlib.sha256
    ).hexdigest()
    return any(hmac.compare_digest(expected, v) for k, v in parts if k == "v1")


# --- signing, formats, URLs (no store) ------------------------------------------------------------

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def _events() -> list[QueuedEvent]:
    return [
        QueuedEvent(1, "evt_" + "a" * 32, "email.opened", NOW, 42, 7, {}, "u-42", "cmp_1"),
        QueuedEvent(
            2,
            "evt_" + "b" * 32,
            "email.bounced",
            NOW,
            43,
            8,
            {"bounce_type": "hard", "provider": "sendgrid"},
            None,
            "cmp_1",
        ),  # fmt: skip
        QueuedEvent(
            3,
            "evt_" + "c" * 32,
            "email.unsubscribed",
            NOW,
            44,
            None,
            {"campaign_id": "cmp_2", "source": "unsubscribe-link"},
        ),  # fmt: skip
    ]


def test_a_receiver_verifies_a_signature_with_the_documented_scheme_alone() -> None:
    secret = endpoint_secret(SERVER_SECRET, "whe_0123456789abcdef", 1)
    assert secret.startswith("whsec_") and secret != endpoint_secret(
        SERVER_SECRET, "whe_0123456789abcdef", 2
    )
    body = tailor_body("whe_0123456789abcdef", _events())
    now = int(time.time())
    signed = Received({"Tailor-Signature": signature_header([secret], now, body)}, body, 200)
    assert receiver_verifies(secret, signed) and verify(
        secret, signed.headers["Tailor-Signature"], body, now=time.time()
    )
    tampered = Received(signed.headers, body.replace(b"opened", b"clicked"), 200)
    other_key = endpoint_secret("another-server", "whe_0123456789abcdef", 1)
    assert not receiver_verifies(secret, tampered)
    assert not receiver_verifies(other_key, signed)
    # A captured request replayed ten minutes later is refused on its timestamp.
    assert not receiver_verifies(secret, signed, now=now + 600)
    assert not verify(secret, signed.headers["Tailor-Signature"], body, now=now + 600)


def test_after_a_rotation_both_secrets_sign_until_the_grace_period_ends() -> None:
    endpoint = WebhookEndpoint(id="whe_0123456789abcdef", tenant_id="demo", url="https://x.test",
                               event_types=["*"], created_by="t", secret_version=2,
                               previous_secret_expires_at=NOW + timedelta(hours=24))  # fmt: skip
    old = endpoint_secret(SERVER_SECRET, endpoint.id, 1)
    new = endpoint_secret(SERVER_SECRET, endpoint.id, 2)
    assert signing_secrets(SERVER_SECRET, endpoint, NOW) == [new, old]
    assert signing_secrets(SERVER_SECRET, endpoint, NOW + timedelta(hours=25)) == [new]
    body = b'{"events":[]}'
    header = signature_header(signing_secrets(SERVER_SECRET, endpoint, NOW), 1_800_000_000, body)
    for secret in (old, new):
        assert verify(secret, header, body, now=1_800_000_000)


def test_segment_batches_are_what_segments_http_api_takes() -> None:
    """Segment's HTTP API: each call a track with an event name, userId or anonymousId, a unique
    messageId, an ISO 8601 timestamp and properties; 32 KB a call, 500 KB a batch."""
    body = segment_body(_events(), sent_at=NOW)
    batch = json.loads(body)
    assert set(batch) == {"batch", "sentAt"} and len(body) < 500 * 1024
    calls = batch["batch"]
    assert [c["event"] for c in calls] == ["Email Opened", "Email Bounced", "Unsubscribed"]
    for call in calls:
        assert call["type"] == "track" and isinstance(call["properties"], dict)
        assert bool(call.get("userId")) != bool(call.get("anonymousId"))
        assert datetime.fromisoformat(call["timestamp"]).tzinfo is not None
        assert len(json.dumps(call).encode()) < 32 * 1024
    assert len({c["messageId"] for c in calls}) == 3
    assert calls[0]["userId"] == "u-42" and calls[1]["anonymousId"] == "tailor-contact-43"
    assert calls[0]["properties"] == {"campaign_id": "cmp_1", "email_id": "7",
                                      "tailor_contact_id": 42}  # fmt: skip
    assert calls[1]["properties"]["bounce_type"] == "hard"
    assert calls[2]["properties"]["campaign_id"] == "cmp_2"
    # Every published type has a Segment name from its email spec (or ours, for conversions).
    assert set(EVENT_TYPES) <= set(SEGMENT_NAMES)


def test_tailor_format_names_the_contact_by_ids_only() -> None:
    events = json.loads(tailor_body("whe_x", _events()))["events"]
    assert events[0] == {
        "id": "evt_" + "a" * 32, "type": "email.opened", "occurred_at": "2026-12-01T09:30:00.000Z",
        "data": {"contact_id": 42, "user_id": "u-42", "send_id": 7, "campaign_id": "cmp_1"},
    }  # fmt: skip
    assert "@" not in json.dumps(events)


def test_write_keys_are_sealed_to_their_endpoint() -> None:
    sealed = seal(SERVER_SECRET, "wk_live_123", "whe_a")
    assert "wk_live_123" not in sealed
    assert unseal(SERVER_SECRET, sealed, "whe_a") == "wk_live_123"
    for secret, endpoint in ((SERVER_SECRET, "whe_b"), ("rotated", "whe_a")):
        with pytest.raises(Exception, match="does not open"):
            unseal(secret, sealed, endpoint)


@pytest.mark.parametrize(
    ("url", "allow_private", "problem"),
    [
        ("https://hooks.shop.example/tailor?x=1", False, None),
        ("http://hooks.shop.example/tailor", False, "https"),
        ("http://127.0.0.1:9000/hooks", True, None),
        ("http://hooks.shop.example/tailor", True, "https"),  # plain http only to loopback
        ("https://127.0.0.1/hooks", False, "private"),
        ("https://10.1.2.3/hooks", False, "private"),
        ("https://169.254.169.254/latest", False, "private"),
        ("https://[::1]/hooks", False, "private"),
        ("https://localhost/hooks", False, "private"),
        ("https://user:pw@hooks.shop.example/", False, "credentials"),
        ("ftp://hooks.shop.example/", False, "https"),
        ("https://hooks.shop.example/#frag", False, "fragment"),
        ("https://" + "a" * 2050 + ".example/", False, "2048"),
    ],
)
def test_only_https_urls_on_public_addresses_are_taken(
    url: str, allow_private: bool, problem: str | None
) -> None:
    if problem is None:
        assert check_url(url, allow_private=allow_private) == url
    else:
        with pytest.raises(InvalidInput, match=problem):
            check_url(url, allow_private=allow_private)


async def test_a_host_resolving_to_a_private_address_is_refused_at_connect_time(
    receiver: Receiver,
) -> None:
    """The name is checked where the socket connects: a host that resolves to loopback (DNS
    rebinding, an internal name) gets nothing, and no retry will change that."""

    async def loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    endpoint = WebhookEndpoint(id="whe_0123456789abcdef", tenant_id="demo",
                               url=f"http://hooks.shop.example:{receiver.port}/hooks",
                               event_types=["*"], created_by="t")  # fmt: skip
    guarded = Poster(server_secret=SERVER_SECRET, allow_private=False, timeout_s=2,
                     resolver=loopback)  # fmt: skip
    with pytest.raises(ReceiverFailed, match="private address") as refused:
        await guarded.post(endpoint, _events(), attempt=1)
    assert refused.value.permanent and not receiver.requests
    await guarded.close()
    # Allowed (development): it connects to the address it resolved, under the URL's host name.
    allowed = Poster(server_secret=SERVER_SECRET, allow_private=True, timeout_s=2,
                     resolver=loopback)  # fmt: skip
    assert await allowed.post(endpoint, _events(), attempt=1) == 200
    await allowed.close()
    assert receiver.requests[0].headers["Host"] == f"hooks.shop.example:{receiver.port}"


# --- publishing, in the caller's transaction (both backends) -------------------------------------


async def _endpoint(
    db: Database, tenant_id: str, url: str, event_types: list[str], **values: Any
) -> str:
    endpoint_id = f"whe_{hashlib.sha256(url.encode() + tenant_id.encode()).hexdigest()[:16]}"
    async with db.session() as session:
        endpoint = WebhookEndpoint(
            id=endpoint_id, tenant_id=tenant_id, url=url, event_types=event_types,
            created_by="tests", **values,
        )  # fmt: skip
        session.add(endpoint)
    return endpoint_id


@dataclass
class Mailing:
    campaign_id: str
    sends: list[Send]


async def mailing(db: Database, contacts: int = 10) -> Mailing:
    campaign_id, _ = await seeded_campaign(db, contacts=contacts)
    async with db.write() as conn:
        found = await conn.execute(select(col(Contact.id)).order_by(col(Contact.id)))
        ids = [i for i in found.scalars() if i is not None]
        await ensure_send_rows(conn, campaign_id=campaign_id, contact_ids=ids, domain="t.test")
        await conn.execute(update(Send).values(status="sent"))
        await conn.execute(
            update(Contact).where(col(Contact.id) == ids[0]).values(external_id="u-first")
        )
    async with db.read_session() as session:
        rows = await session.execute(select(Send).order_by(col(Send.id)))
        return Mailing(campaign_id, list(rows.scalars()))


async def _queued(db: Database) -> list[OutboundDelivery]:
    async with db.read_session() as session:
        rows = await session.execute(select(OutboundDelivery).order_by(col(OutboundDelivery.id)))
        return list(rows.scalars())


def _opened(send: Send, metric: str = "open") -> Any:
    return engagement_event(tenant_id="demo", send_id=send.id or 0, contact_id=send.contact_id,
                            metric=metric, occurred_at=NOW)  # fmt: skip


async def test_events_are_queued_for_the_tenants_subscribed_endpoints_only(db: Database) -> None:
    m = await mailing(db)
    await other_tenant_headers(db, "acme")
    everything = await _endpoint(db, "demo", "https://all.demo.example/", ["*"])
    opens = await _endpoint(db, "demo", "https://opens.demo.example/", ["email.opened"])
    await _endpoint(db, "demo", "https://paused.demo.example/", ["*"], status="disabled")
    await _endpoint(db, "acme", "https://acme.example/", ["*"])
    async with db.write() as conn:
        queued = await publish(conn, [_opened(m.sends[0]), None, _opened(m.sends[1], "click")])
    assert queued == 3
    rows = await _queued(db)
    assert sorted((r.endpoint_id, r.event_type) for r in rows) == sorted(
        [(everything, "email.opened"), (everything, "email.clicked"), (opens, "email.opened")]
    )
    assert {r.tenant_id for r in rows} == {"demo"}  # acme's endpoint got nothing of demo's
    # A transaction that rolls back takes its outbox rows with it.
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await publish(conn, [_opened(m.sends[2])])
            raise RuntimeError("the caller's transaction fails")
    assert len(await _queued(db)) == 3


async def test_esp_reports_and_engagement_are_published_where_they_are_recorded(
    db: Database,
) -> None:
    m = await mailing(db)
    await _endpoint(db, "demo", "https://all.demo.example/", ["*"])
    now = datetime.now(UTC)
    reports = [
        EspEvent("sendgrid", "sg-1", EventKind.DELIVERED, "x@y", now, send_id=str(m.sends[0].id)),
        EspEvent(
            "sendgrid",
            "sg-2",
            EventKind.BOUNCE_HARD,
            "x@y",
            now,
            send_id=str(m.sends[1].id),
            reason="550 5.1.1 <someone@example.com> unknown",
        ),  # fmt: skip
        EspEvent("sendgrid", "sg-3", EventKind.DEFERRED, "x@y", now, send_id=str(m.sends[2].id)),
        EspEvent("sendgrid", "sg-4", EventKind.COMPLAINT, "x@y", now, send_id=str(m.sends[3].id)),
    ]
    await ingest(db, reports, soft_bounce_limit=3)
    await ingest(db, reports, soft_bounce_limit=3)  # the provider retries: published once
    rows = await _queued(db)
    assert [r.event_type for r in rows] == ["email.delivered", "email.bounced", "email.complained"]
    assert rows[1].data == {"bounce_type": "hard", "provider": "sendgrid"}  # no reason text
    async with api(db) as (client, _):
        headers = await key_headers(db, "demo", "ingest")
        for _ in range(2):  # only the first open of an email counts
            opened = {"type": "open", "message_id": m.sends[0].message_id}
            answer = await client.post("/v1/events/engagement", headers=headers, json=opened)
            assert answer.status_code == 200, answer.text
    rows = await _queued(db)
    assert [r.event_type for r in rows][3:] == ["email.opened"]
    assert rows[3].send_id == m.sends[0].id and rows[3].contact_id == m.sends[0].contact_id


# --- delivery through Temporal -------------------------------------------------------------------


def outbound_settings(db: Database, queue: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db.url, "temporal_search_attributes": False, "rag_enabled": False,
        "redis_url": None, "temporal_task_queue": queue, "outbound_secret": SERVER_SECRET,
        "outbound_allow_private_urls": True, "outbound_timeout_s": 2.0,
    }  # fmt: skip
    values.update(overrides)
    return Settings(**values)


async def _drain(
    env: WorkflowEnvironment, db: Database, settings: Settings
) -> list[OutboundOutcome]:
    """Let the relay wake every endpoint with work, and wait for each workflow to finish."""
    relay = OutboundRelay(env.client, db, settings)
    relay._swept_at = float("-inf")  # a sweep now, as on a worker's start
    await relay.poll_once()
    # Signal-with-start runs do not skip time on their own: skip past every retry (a batch's
    # budget is about 5.4 hours) and the idle linger.
    await env.sleep(timedelta(days=1))
    async with db.read() as conn:
        ids = (await conn.execute(select(WebhookEndpoint.tenant_id, WebhookEndpoint.id))).all()  # type: ignore[call-overload]
    outcomes = []
    for tenant_id, endpoint_id in ids:
        handle: WorkflowHandle[Any, OutboundOutcome] = env.client.get_workflow_handle_for(
            OutboundWebhookWorkflow.run, outbound_workflow_id(tenant_id, endpoint_id)
        )
        try:
            outcomes.append(await handle.result())
        except RPCError as error:  # never started: nothing was queued for it
            assert error.status == RPCStatusCode.NOT_FOUND
    return outcomes


async def test_a_receiver_failing_three_times_gets_every_event_exactly_once_in_order(
    db: Database, receiver: Receiver, isolated_time_skipping_env: WorkflowEnvironment
) -> None:
    env = isolated_time_skipping_env
    m = await mailing(db)
    endpoint = await _endpoint(db, "demo", receiver.url, ["email.opened", "email.clicked"],
                               batch_size=4)  # fmt: skip
    async with db.write() as conn:
        await publish(conn, [_opened(s) for s in m.sends[:6]])
        await publish(conn, [_opened(m.sends[0], "click")])
    receiver.fail_first = 3
    queue = task_queue()
    settings = outbound_settings(db, queue)
    async with build_worker(env.client, db, settings, queue):
        [outcome] = await _drain(env, db, settings)
    assert outcome == OutboundOutcome("idle", 7, 0)
    assert [r.status for r in receiver.requests] == [500, 500, 500, 200, 200]
    events = receiver.accepted_events()
    rows = await _queued(db)
    assert [e["id"] for e in events] == [r.event_id for r in rows]  # each once, queue order
    assert events[0]["data"]["user_id"] == "u-first" and events[-1]["type"] == "email.clicked"
    secret, check = endpoint_secret(SERVER_SECRET, endpoint, 1), readme_verify()
    for request in receiver.requests:
        assert check(secret, request.headers["Tailor-Signature"], request.body)
        assert not check(secret, request.headers["Tailor-Signature"], request.body + b" ")
    attempts = [r.headers["Tailor-Delivery-Attempt"] for r in receiver.requests]
    assert attempts == ["1", "2", "3", "4", "1"]
    assert {r.status for r in rows} == {"delivered"} and rows[0].attempts == 4


@asynccontextmanager
async def api(db: Database, **overrides: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    values: dict[str, Any] = {
        "database_url": db.url, "temporal_search_attributes": False, "redis_url": None,
        "rag_enabled": False, "outbound_secret": SERVER_SECRET, "outbound_allow_private_urls": True,
        "temporal_address": "127.0.0.1:9",
    }  # fmt: skip
    values.update(overrides)
    app = create_app(Settings(**values))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client, app


async def test_a_receiver_that_is_down_gets_dead_letters_then_a_replay_delivers_them(
    db: Database, receiver: Receiver, isolated_time_skipping_env: WorkflowEnvironment
) -> None:
    env = isolated_time_skipping_env
    m = await mailing(db)
    queue = task_queue()
    settings = outbound_settings(db, queue)
    async with api(db) as (client, _):
        admin = await key_headers(db, "demo", "admin")
        created = await client.post("/v1/webhook-endpoints", headers=admin, json={
            "url": receiver.url, "event_types": ["email.opened"], "batch_size": 2})  # fmt: skip
        assert created.status_code == 201, created.text
        endpoint = created.json()
        async with db.write() as conn:
            await publish(conn, [_opened(s) for s in m.sends[:3]])
        receiver.down = True
        async with build_worker(env.client, db, settings, queue):
            [outcome] = await _drain(env, db, settings)
        assert outcome == OutboundOutcome("idle", 0, 3)
        assert len(receiver.requests) == 2 * 15  # every attempt of both batches
        url = f"/v1/webhook-endpoints/{endpoint['id']}"
        dead = (await client.get(f"{url}/dead-letters", headers=admin)).json()["items"]
        assert len(dead) == 3 and {d["last_error"] for d in dead} == {"HTTP 500 from the endpoint"}
        shown = (await client.get(url, headers=admin)).json()
        assert shown["failing_batches"] == 2 and shown["pending"] == 0
        assert shown["last_error"] == "HTTP 500 from the endpoint" and shown["status"] == "active"

        receiver.down, receiver.requests = False, []
        one = {"ids": [dead[-1]["id"], 999]}  # by id (an id that is no dead letter: skipped)
        replayed = await client.post(f"{url}/dead-letters/replay", headers=admin, json=one)
        assert replayed.json() == {"replayed": 1, "remaining": 0}
        replayed = await client.post(f"{url}/dead-letters/replay", headers=admin, json={})
        assert replayed.json() == {"replayed": 2, "remaining": 0}
        async with build_worker(env.client, db, settings, queue):
            [outcome] = await _drain(env, db, settings)
        assert outcome == OutboundOutcome("idle", 3, 0)
        ids = [e["id"] for e in receiver.accepted_events()]
        assert sorted(ids) == sorted(d["event_id"] for d in dead)  # same ids: receivers dedupe
        assert (await client.get(f"{url}/dead-letters", headers=admin)).json()["items"] == []
        assert (await client.get(url, headers=admin)).json()["failing_batches"] == 0


async def test_an_endpoint_failing_batch_after_batch_is_disabled_and_its_queue_dead_lettered(
    db: Database, receiver: Receiver, isolated_time_skipping_env: WorkflowEnvironment
) -> None:
    env = isolated_time_skipping_env
    m = await mailing(db)
    endpoint = await _endpoint(db, "demo", receiver.url, ["*"], batch_size=1)
    async with db.write() as conn:
        await publish(conn, [_opened(s) for s in m.sends[:5]])
    receiver.down, receiver.fail_status = True, 503
    queue = task_queue()
    settings = outbound_settings(db, queue, outbound_disable_after=2)
    async with build_worker(env.client, db, settings, queue):
        [outcome] = await _drain(env, db, settings)
    assert outcome == OutboundOutcome("disabled", 0, 5)
    assert len(receiver.requests) == 2 * 15  # two batches tried; the rest never posted
    async with db.read_session() as session:
        disabled = await session.get(WebhookEndpoint, endpoint)
    assert disabled is not None and disabled.status == "disabled"
    assert disabled.disabled_reason == (
        "disabled after 2 failed batches in a row (last: HTTP 503 from the endpoint)"
    )
    async with db.write() as conn:  # nothing more is queued for it
        assert await publish(conn, [_opened(m.sends[6])]) == 0
    assert {r.status for r in await _queued(db)} == {"dead"}


async def test_a_long_queue_continues_as_new_and_keeps_its_totals(
    db: Database, receiver: Receiver, isolated_time_skipping_env: WorkflowEnvironment
) -> None:
    env = isolated_time_skipping_env
    m = await mailing(db)
    endpoint = await _endpoint(db, "demo", receiver.url, ["*"], batch_size=2)
    async with db.write() as conn:
        await publish(conn, [_opened(s) for s in m.sends[:9]])
    queue = task_queue()
    settings = outbound_settings(db, queue)
    async with build_worker(env.client, db, settings, queue):
        handle = await env.client.start_workflow(
            OutboundWebhookWorkflow.run, OutboundRun("demo", endpoint, batches_per_run=2),
            id=outbound_workflow_id("demo", endpoint), task_queue=queue,
        )  # fmt: skip
        assert await handle.result() == OutboundOutcome("idle", 9, 0)
        first = env.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
        history = await first.fetch_history()
    assert history.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
    assert len(receiver.accepted) == 5


async def test_the_relay_wakes_an_endpoint_within_a_poll_of_its_new_rows(
    db: Database, receiver: Receiver, isolated_time_skipping_env: WorkflowEnvironment
) -> None:
    env = isolated_time_skipping_env
    m = await mailing(db)
    endpoint = await _endpoint(db, "demo", receiver.url, ["*"])
    queue = task_queue()
    settings = outbound_settings(db, queue, outbound_sweep_s=3600)
    relay = OutboundRelay(env.client, db, settings, clock=lambda: 0.0)  # one sweep, at start
    async with build_worker(env.client, db, settings, queue):
        assert await relay.poll_once() == 0  # nothing queued yet
        async with db.write() as conn:
            await publish(conn, [_opened(m.sends[0])])
        assert await relay.poll_once() == 1  # the new row, seen without a sweep
        assert await relay.poll_once() == 0  # and only once
        await env.sleep(timedelta(minutes=10))
        handle = env.client.get_workflow_handle(
            outbound_workflow_id("demo", endpoint), result_type=OutboundOutcome
        )
        assert await handle.result() == OutboundOutcome("idle", 1, 0)
    assert len(receiver.accepted_events()) == 1


async def test_settled_rows_are_pruned_after_the_retention_and_dead_letters_kept(
    db: Database,
) -> None:
    m = await mailing(db)
    kept = await _endpoint(db, "demo", "https://kept.example/", ["*"])
    gone = await _endpoint(db, "demo", "https://gone.example/", ["*"])
    async with db.write() as conn:
        await publish(conn, [_opened(s) for s in m.sends[:3]])
    rows = await _queued(db)
    async with db.write() as conn:
        old = utcnow() - timedelta(days=8)
        by_endpoint = {e: [r.id for r in rows if r.endpoint_id == e] for e in (kept, gone)}
        statuses = ["delivered", "dead", "pending"]
        for row_id, status in zip(by_endpoint[kept], statuses, strict=True):
            await conn.execute(update(OutboundDelivery).where(col(OutboundDelivery.id) == row_id)
                               .values(status=status, created_at=old))  # fmt: skip
        await conn.execute(update(OutboundDelivery).where(col(OutboundDelivery.endpoint_id) == gone)
                           .values(created_at=old))  # fmt: skip
        await conn.execute(update(WebhookEndpoint).where(col(WebhookEndpoint.id) == gone)
                           .values(status="deleted"))  # fmt: skip
    async with db.write() as conn:
        assert await prune(conn, before=utcnow() - timedelta(days=7), limit=100) == 4
    assert sorted(r.status for r in await _queued(db)) == ["dead", "pending"]


# --- the API ------------------------------------------------------------------------------------


async def test_endpoints_through_the_api_secret_shown_once_rotation_and_a_test_event(
    db: Database, receiver: Receiver
) -> None:
    await seeded_campaign(db, contacts=2)
    async with api(db) as (client, _):
        admin = await key_headers(db, "demo", "admin")
        created = await client.post("/v1/webhook-endpoints", headers=admin, json={
            "url": receiver.url, "event_types": ["email.opened", "*"], "format": "segment",
            "segment_write_key": "wk_live_abc", "description": "CDP"})  # fmt: skip
        assert created.status_code == 201, created.text
        endpoint = created.json()
        secret = endpoint["secret"]
        assert endpoint["event_types"] == ["*"] and endpoint["has_segment_write_key"]
        url = f"/v1/webhook-endpoints/{endpoint['id']}"
        listed = (await client.get("/v1/webhook-endpoints", headers=admin)).json()["items"]
        assert [e["id"] for e in listed] == [endpoint["id"]]
        assert secret not in str(listed) and "wk_live_abc" not in str(listed)
        async with db.read() as conn:
            stored = str((await conn.execute(select(WebhookEndpoint))).all())
        assert secret not in stored and "wk_live_abc" not in stored

        tested = (await client.post(f"{url}/test", headers=admin)).json()
        assert tested["delivered"] and tested["status_code"] == 200
        [probe] = receiver.requests
        assert receiver_verifies(secret, probe)
        basic = "Basic " + base64.b64encode(b"wk_live_abc:").decode()  # Segment's write key auth
        assert probe.headers["Authorization"] == basic
        assert probe.json()["batch"][0]["event"] == "Webhook Test"

        rotated = (await client.post(f"{url}/rotate-secret", headers=admin, json={})).json()
        assert rotated["secret"] != secret and rotated["secret_version"] == 2
        await client.post(f"{url}/test", headers=admin)
        after = receiver.requests[-1]
        assert receiver_verifies(rotated["secret"], after) and receiver_verifies(secret, after)
        await client.post(f"{url}/rotate-secret", headers=admin,
                          json={"expire_previous_in_hours": 0})  # fmt: skip
        await client.post(f"{url}/test", headers=admin)
        assert not receiver_verifies(rotated["secret"], receiver.requests[-1])

        change = {"format": "tailor", "event_types": ["email.bounced"], "status": "disabled"}
        changed = await client.patch(url, headers=admin, json=change)
        assert changed.status_code == 200, changed.text
        body = changed.json()
        assert (body["format"], body["status"], body["has_segment_write_key"]) == (
            "tailor", "disabled", False)  # fmt: skip
        assert body["disabled_reason"].startswith("disabled by ")
        replay = await client.post(f"{url}/dead-letters/replay", headers=admin, json={})
        assert replay.status_code == 409 and "enable it first" in replay.json()["message"]

        receiver.down = True
        await client.patch(url, headers=admin, json={"status": "active"})
        failed = (await client.post(f"{url}/test", headers=admin)).json()
        assert failed == {**failed, "delivered": False, "status_code": 500,
                          "error": "HTTP 500 from the endpoint"}  # fmt: skip

        assert (await client.delete(url, headers=admin)).status_code == 204
        assert (await client.get(url, headers=admin)).status_code == 404
        assert (await client.get("/v1/webhook-endpoints", headers=admin)).json()["items"] == []


BAD_ENDPOINTS: list[tuple[dict[str, Any], str]] = [
    ({"url": "http://hooks.example/", "event_types": ["*"]}, "url"),
    ({"url": "https://10.0.0.1/", "event_types": ["*"]}, "url"),
    ({"url": "https://hooks.example/", "event_types": ["email.sent"]}, "event_types.0"),
    ({"url": "https://hooks.example/", "event_types": []}, "event_types"),
    (
        {"url": "https://hooks.example/", "event_types": ["*"], "segment_write_key": "k"},
        "segment_write_key",
    ),  # fmt: skip
    ({"url": "https://hooks.example/", "event_types": ["*"], "batch_size": 501}, "batch_size"),
    ({"url": "https://hooks.example/", "event_types": ["*"], "secret": "mine"}, "secret"),
]


async def test_bad_endpoints_are_422_naming_the_field_and_nothing_is_stored(db: Database) -> None:
    await seeded_campaign(db, contacts=1)
    async with api(db, outbound_allow_private_urls=False) as (client, _):
        admin = await key_headers(db, "demo", "admin")
        for body, field in BAD_ENDPOINTS:
            answer = await client.post("/v1/webhook-endpoints", headers=admin, json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert field in [d["field"] for d in answer.json()["detail"]], (body, answer.text)
        good = {"url": "https://hooks.example/", "event_types": ["*"]}
        endpoint = (await client.post("/v1/webhook-endpoints", headers=admin, json=good)).json()
        url = f"/v1/webhook-endpoints/{endpoint['id']}"
        for change, field in (({"url": None}, "url"), ({"url": "https://[::1]/"}, "url"),
                              ({"status": "deleted"}, "status")):  # fmt: skip
            answer = await client.patch(url, headers=admin, json=change)
            assert answer.status_code == 422 and answer.json()["detail"][0]["field"] == field
    async with db.read() as conn:
        stored = (await conn.execute(select(WebhookEndpoint.url, WebhookEndpoint.status))).all()  # type: ignore[call-overload]
    assert [tuple(row) for row in stored] == [("https://hooks.example/", "active")]


async def test_another_tenants_endpoint_looks_like_a_missing_one(
    db: Database, receiver: Receiver
) -> None:
    await seeded_campaign(db, contacts=1)
    async with api(db) as (client, _):
        admin = await key_headers(db, "demo", "admin")
        mine = (await client.post("/v1/webhook-endpoints", headers=admin, json={
            "url": receiver.url, "event_types": ["*"]})).json()  # fmt: skip
        acme = await other_tenant_headers(db, "acme")
        missing = "whe_0000000000000000"
        for endpoint_id in (mine["id"], missing):
            url = f"/v1/webhook-endpoints/{endpoint_id}"
            answers = [
                await client.get(url, headers=acme),
                await client.patch(url, headers=acme, json={"status": "disabled"}),
                await client.post(f"{url}/rotate-secret", headers=acme, json={}),
                await client.post(f"{url}/test", headers=acme),
                await client.get(f"{url}/dead-letters", headers=acme),
                await client.post(f"{url}/dead-letters/replay", headers=acme, json={}),
                await client.delete(url, headers=acme),
            ]
            assert [a.status_code for a in answers] == [404] * 7
            assert answers[0].json()["message"] == f"webhook endpoint {endpoint_id} not found"
        assert (await client.get("/v1/webhook-endpoints", headers=acme)).json()["items"] == []
        assert not receiver.requests  # acme's test call reached nobody
        ours = (await client.get(f"/v1/webhook-endpoints/{mine['id']}", headers=admin)).json()
        assert ours["status"] == "active" and ours["secret_version"] == 1
