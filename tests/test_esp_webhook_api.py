"""ESP event webhooks through the API, on SQLite and PostgreSQL: requests signed for real (ECDSA
for SendGrid, HMAC for Mailgun, RSA + an X.509 certificate made here for SNS/SES), stored once
each, moving sends' provider state up only, and suppressing or revoking addresses in the consent
ledger so the next campaign's claim skips them; forged, unsigned, stale and replayed requests are
401 and record nothing."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select
from sqlmodel import col

from api.main import create_app
from tailor.config import Settings
from tailor.db import Database
from tailor.delivery.webhooks import sns
from tailor.delivery.webhooks.fetch import SnsHttp
from tailor.delivery.webhooks.replay import RedisReplayGuard
from tailor.models import ConsentRecord, ConsentStatus, Contact, EspEvent, Send
from tailor.store.consent import current_consent
from tailor.store.sends import Accepted, claim_for_dispatch, ensure_send_rows, mark_sent
from tailor.store.tracking import engaged
from tailor.tracking.tokens import sign_open
from tests.conftest import seeded_campaign
from tests.test_esp_webhooks import MG_KEY, mg_body, sg_key, sg_setting, sg_sign

TOPIC = "arn:aws:sns:us-east-1:123456789012:tailor-ses-events"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem"
SUBSCRIBE = (
    "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC}&Token=2336412f37"
)


@dataclass
class Mailing:
    """A campaign's sends to consenting contacts, in contact order."""

    campaign_id: str
    sends: list[Send]

    def event(
        self, index: int, name: str, event_id: str, *, by: str = "send_id", **extra: Any
    ) -> dict[str, Any]:
        """A SendGrid event about the index-th send, naming it by send id or Message-ID."""
        send = self.sends[index]
        item: dict[str, Any] = {
            "email": f"contact{send.contact_id}@example.com",
            "timestamp": int(datetime.now(UTC).timestamp()) - 60 + len(event_id),
            "event": name,
            "sg_event_id": event_id,
            **extra,
        }
        if by == "send_id":
            item["tailor_send_id"] = str(send.id)
        else:
            item["smtp-id"] = send.message_id
        return item


async def mailing(db: Database, contacts: int = 8) -> Mailing:
    campaign_id, _ = await seeded_campaign(db, contacts=contacts)
    async with db.write() as conn:
        found = await conn.execute(select(Contact.id).order_by(col(Contact.id)))  # type: ignore[call-overload]
        ids: list[int] = list(found.scalars())
        consent = await current_consent(conn, contact_ids=ids)
        granted = [i for i in ids if consent.get(i) == ConsentStatus.GRANTED]
        await ensure_send_rows(
            conn, campaign_id=campaign_id, contact_ids=granted, domain="tailor.test"
        )
    async with db.read_session() as session:
        rows = await session.execute(
            select(Send).where(col(Send.campaign_id) == campaign_id).order_by(col(Send.id))
        )
        sends = list(rows.scalars())
    assert len(sends) >= 4
    return Mailing(campaign_id, sends)


@asynccontextmanager
async def api(db: Database, **overrides: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    values: dict[str, Any] = {
        "database_url": db.url,
        "temporal_search_attributes": False,
        "redis_url": None,
        "mailgun_webhook_signing_key": MG_KEY,
        "sns_topic_arns": [TOPIC],
    }
    values.update(overrides)
    app = create_app(Settings(**values))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client, app


async def stored(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(EspEvent))).scalar_one())


async def states(db: Database, m: Mailing) -> list[str | None]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(Send.esp_state)  # type: ignore[call-overload]
            .where(col(Send.campaign_id) == m.campaign_id)
            .order_by(col(Send.id))
        )
        return list(rows.scalars())


async def consent_of(db: Database, m: Mailing) -> list[str | None]:
    async with db.read() as conn:
        found = await current_consent(conn, contact_ids=[s.contact_id for s in m.sends])
    return [found.get(s.contact_id) for s in m.sends]


async def post_sendgrid(
    client: httpx.AsyncClient, key: ec.EllipticCurvePrivateKey, items: list[dict[str, Any]]
) -> httpx.Response:
    body = json.dumps(items).encode()
    headers = {**sg_sign(key, body, datetime.now(UTC)), "Content-Type": "application/json"}
    return await client.post("/v1/webhooks/sendgrid", content=body, headers=headers)


async def test_sendgrid_batch_is_stored_once_and_suppresses_bounces_and_complaints(
    db: Database,
) -> None:
    m = await mailing(db)
    key = sg_key()
    batch = [
        m.event(0, "delivered", "sg-1"),
        m.event(1, "bounce", "sg-2", by="message_id", type="bounce", reason="550 5.1.1 unknown"),
        m.event(2, "spamreport", "sg-3"),
        m.event(1, "delivered", "sg-4-later"),  # after the bounce: must not revive the address
        m.event(3, "processed", "sg-5"),  # not an outcome: ignored
        m.event(0, "delivered", "sg-1"),  # the same event twice in one batch
    ]
    async with api(db, sendgrid_webhook_public_key=sg_setting(key)) as (client, _):
        response = await post_sendgrid(client, key, batch)
        assert response.status_code == 200, response.text
        assert response.json() == {"accepted": 4, "duplicates": 1, "ignored": 1}
        again = await post_sendgrid(client, key, batch)  # SendGrid retries whole batches
        assert again.json() == {"accepted": 0, "duplicates": 5, "ignored": 1}
    assert await stored(db) == 4
    assert (await states(db, m))[:4] == ["delivered", "bounce_hard", "complaint", None]
    assert (await consent_of(db, m))[:4] == ["granted", "suppressed", "suppressed", "granted"]
    async with db.read_session() as session:
        rows = (
            await session.execute(
                select(ConsentRecord).where(col(ConsentRecord.status) == "suppressed")
            )
        ).scalars()
        ledger = sorted((r.contact_id, r.source, r.method, r.recorded_by) for r in rows)
    assert ledger == [  # once each, though the batch came twice
        (m.sends[1].contact_id, "esp:sendgrid", "bounce", "esp:sendgrid"),
        (m.sends[2].contact_id, "esp:sendgrid", "complaint", "esp:sendgrid"),
    ]
    # The next campaign to these people: its claim skips the suppressed addresses.
    next_id, _ = await seeded_campaign(db, contacts=8)
    async with db.write() as conn:
        contact_ids = [s.contact_id for s in m.sends]
        await ensure_send_rows(
            conn, campaign_id=next_id, contact_ids=contact_ids, domain="tailor.test"
        )
        pairs = await conn.execute(
            select(Send.id, Send.contact_id).where(col(Send.campaign_id) == next_id)  # type: ignore[call-overload]
        )
        contact_of: dict[int, int] = dict(pairs.all())
        claimed = await claim_for_dispatch(conn, send_ids=list(contact_of), provider="smtp")
    mailed = {contact_of[i] for i in claimed}
    assert mailed == set(contact_ids) - {m.sends[1].contact_id, m.sends[2].contact_id}


async def test_forged_unsigned_and_stale_sendgrid_requests_are_401_and_record_nothing(
    db: Database,
) -> None:
    m = await mailing(db)
    key = sg_key()
    batch = [m.event(1, "bounce", "sg-x", type="bounce")]
    body = json.dumps(batch).encode()
    now = datetime.now(UTC)
    attempts = {
        "forged": sg_sign(sg_key(), body, now),
        "unsigned": {},
        "stale": sg_sign(key, body, now - timedelta(minutes=6)),
        "tampered": sg_sign(key, body.replace(b"bounce", b"deferred"), now),
    }
    async with api(db, sendgrid_webhook_public_key=sg_setting(key)) as (client, _):
        for name, headers in attempts.items():
            response = await client.post("/v1/webhooks/sendgrid", content=body, headers=headers)
            assert response.status_code == 401, name
            assert response.json()["message"].startswith("webhook refused"), name
        signed_garbage = b'[{"event": "bounce"}]'
        response = await client.post(
            "/v1/webhooks/sendgrid",
            content=signed_garbage,
            headers=sg_sign(key, signed_garbage, now),
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["field"] == "events[0].sg_event_id"
        # Batches may be larger than the API's 1 MB default (up to the batch limit, 5 MB).
        big = json.dumps([{**batch[0], "pad": "x" * 1000} for _ in range(1500)]).encode()
        response = await client.post("/v1/webhooks/sendgrid", content=big)
        assert response.status_code == 401  # read and refused for its signature, not its size
    assert await stored(db) == 0
    assert (await consent_of(db, m))[1] == "granted"
    async with api(db) as (client, _):  # no key configured: the route is off
        response = await client.post("/v1/webhooks/sendgrid", content=body)
        assert response.status_code == 404


async def test_soft_bounces_in_a_row_suppress_at_the_limit_and_a_delivery_resets_them(
    db: Database,
) -> None:
    m = await mailing(db)
    key = sg_key()
    soft = {"type": "blocked", "reason": "421 try later"}

    async def soft_bounces() -> int:
        async with db.read() as conn:
            found = await conn.execute(
                select(Contact.soft_bounces).where(col(Contact.id) == m.sends[0].contact_id)  # type: ignore[call-overload]
            )
            return int(found.scalar_one())

    async with api(db, sendgrid_webhook_public_key=sg_setting(key), soft_bounce_limit=3) as (
        client,
        _,
    ):
        await post_sendgrid(client, key, [m.event(0, "bounce", "a1", **soft)])
        await post_sendgrid(client, key, [m.event(0, "bounce", "a22", **soft)])
        assert await soft_bounces() == 2
        await post_sendgrid(client, key, [m.event(0, "delivered", "a333")])
        assert await soft_bounces() == 0
        assert (await consent_of(db, m))[0] == "granted"
        response = await post_sendgrid(
            client, key, [m.event(0, "bounce", f"b{'x' * n}", **soft) for n in range(3)]
        )
        assert response.json()["accepted"] == 3
    assert await soft_bounces() == 3
    assert (await consent_of(db, m))[0] == "suppressed"
    assert (await states(db, m))[0] == "delivered"  # a soft bounce ranks below a delivery


async def test_mailgun_event_is_taken_once_and_a_replayed_token_is_401(db: Database) -> None:
    m = await mailing(db)
    send = m.sends[1]
    failed = {
        "id": "mg-ev-1",
        "event": "failed",
        "severity": "permanent",
        "timestamp": datetime.now(UTC).timestamp(),
        "recipient": "someone@example.com",
        "message": {"headers": {"message-id": send.message_id.strip("<>")}},
        "delivery-status": {"message": "550 5.1.1 mailbox unavailable"},
    }
    unsubscribed = {
        **failed,
        "id": "mg-ev-2",
        "event": "unsubscribed",
        "user-variables": {"tailor_send_id": str(m.sends[2].id)},
        "message": {},
    }
    now = datetime.now(UTC)
    async with api(db) as (client, _):
        body = mg_body(failed, token="tok-1", at=now)
        first = await client.post("/v1/webhooks/mailgun", content=body)
        assert first.json() == {"accepted": 1, "duplicates": 0, "ignored": 0}
        replayed = await client.post("/v1/webhooks/mailgun", content=body)
        assert replayed.status_code == 401 and "already used" in replayed.json()["message"]
        forged = mg_body(unsubscribed, key="not-the-key", token="tok-2", at=now)
        assert (await client.post("/v1/webhooks/mailgun", content=forged)).status_code == 401
        assert await stored(db) == 1
        ok = mg_body(unsubscribed, token="tok-3", at=now)
        assert (await client.post("/v1/webhooks/mailgun", content=ok)).json()["accepted"] == 1
    assert (await consent_of(db, m))[1:3] == ["suppressed", "revoked"]
    assert (await states(db, m))[1:3] == ["bounce_hard", "unsubscribe"]


# --- SES through SNS ---------------------------------------------------------------------------


class SnsSigner:
    """An RSA key and a certificate for it, valid now, standing in for SNS's."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        self.pem = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .sign(self.key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )

    def sign(self, fields: dict[str, Any]) -> bytes:
        fields = {"Timestamp": datetime.now(UTC).isoformat(), "TopicArn": TOPIC, **fields}
        signature = self.key.sign(sns.canonical_string(fields), padding.PKCS1v15(), hashes.SHA256())
        return json.dumps(
            {
                **fields,
                "SignatureVersion": "2",
                "Signature": base64.b64encode(signature).decode(),
                "SigningCertURL": CERT_URL,
            }
        ).encode()


def sns_http(pem: bytes, visited: list[str], *, cert_status: int = 200) -> SnsHttp:
    def handle(request: httpx.Request) -> httpx.Response:
        visited.append(str(request.url))
        if str(request.url) == CERT_URL:
            return httpx.Response(cert_status, content=pem)
        return httpx.Response(200, text="<ConfirmSubscriptionResponse/>")

    return SnsHttp(httpx.AsyncClient(transport=httpx.MockTransport(handle)))


def ses_bounce(send: Send, bounce_type: str = "Permanent") -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bouncedRecipients": [{"emailAddress": "x@example.com", "diagnosticCode": "550"}],
            "timestamp": datetime.now(UTC).isoformat(),
        },
        "mail": {
            "messageId": "0100-ses-1",
            "destination": ["x@example.com"],
            "headers": [{"name": "Message-ID", "value": send.message_id}],
        },
    }


async def test_ses_through_sns_confirms_the_subscription_and_suppresses_a_hard_bounce(
    db: Database,
) -> None:
    m = await mailing(db)
    signer = SnsSigner()
    visited: list[str] = []
    notification: Callable[[dict[str, Any]], dict[str, Any]] = lambda message: {  # noqa: E731
        "Type": "Notification",
        "MessageId": "22b80b92",
        "Message": json.dumps(message),
    }
    async with api(db) as (client, app):
        app.state.webhooks.sns_http = sns_http(signer.pem, visited)
        confirmation = signer.sign(
            {
                "Type": "SubscriptionConfirmation",
                "MessageId": "165545c9",
                "Token": "2336412f37",
                "Message": "You have chosen to subscribe to the topic ...",
                "SubscribeURL": SUBSCRIBE,
            }
        )
        response = await client.post("/v1/webhooks/ses", content=confirmation)
        assert response.status_code == 200, response.text
        assert visited == [CERT_URL, SUBSCRIBE]  # the certificate, then the confirmation
        body = signer.sign(notification(ses_bounce(m.sends[1])))
        response = await client.post("/v1/webhooks/ses", content=body)
        assert response.json() == {"accepted": 1, "duplicates": 0, "ignored": 0}
        assert visited == [CERT_URL, SUBSCRIBE]  # the certificate is cached
        # SNS redelivers: stored once.
        assert (await client.post("/v1/webhooks/ses", content=body)).json()["duplicates"] == 1
        # Another topic, or a signature by another key: 401.
        foreign = signer.sign({**notification(ses_bounce(m.sends[2])), "TopicArn": "arn:other"})
        forged = SnsSigner().sign(notification(ses_bounce(m.sends[2])))
        for refused in (foreign, forged):
            assert (await client.post("/v1/webhooks/ses", content=refused)).status_code == 401
    assert await stored(db) == 1
    assert (await consent_of(db, m))[1:3] == ["suppressed", "granted"]


async def test_ses_certificate_that_cannot_be_fetched_is_503_and_records_nothing(
    db: Database,
) -> None:
    m = await mailing(db)
    signer = SnsSigner()
    body = signer.sign(
        {"Type": "Notification", "MessageId": "m-1", "Message": json.dumps(ses_bounce(m.sends[1]))}
    )
    async with api(db) as (client, app):
        app.state.webhooks.sns_http = sns_http(signer.pem, [], cert_status=500)
        response = await client.post("/v1/webhooks/ses", content=body)
        assert response.status_code == 503
    async with api(db, sns_topic_arns=[]) as (client, app):  # no topics: the route is off
        app.state.webhooks.sns_http = sns_http(signer.pem, [])
        assert (await client.post("/v1/webhooks/ses", content=body)).status_code == 404
    assert await stored(db) == 0


async def test_redis_replay_guard_is_shared_and_single_use() -> None:
    """Two API processes' guards on one Redis: a token either one has seen is refused by both."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    first = RedisReplayGuard.from_url("redis://127.0.0.1:6379/0", prefix=prefix)
    second = RedisReplayGuard.from_url("redis://127.0.0.1:6379/0", prefix=prefix)
    try:
        assert not await first.seen("tok-1", ttl=timedelta(seconds=5))
        assert await second.seen("tok-1", ttl=timedelta(seconds=5))
        assert not await second.seen("tok-2", ttl=timedelta(seconds=5))
    finally:
        await first.close()
        await second.close()


# --- Opens and clicks into engagement ---------------------------------------------------------

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15"
TRACKING_SECRET = "esp-engagement-test"


async def engagements(db: Database, m: Mailing) -> set[tuple[int, str]]:
    async with db.read() as conn:
        return await engaged(conn, send_ids=[s.id or 0 for s in m.sends], metrics=["open", "click"])


async def test_people_s_opens_and_clicks_reported_by_providers_are_engaged_once(
    db: Database,
) -> None:
    """A person's open or click reported by the provider counts like the pixel's, once per send
    whoever reports it first; an MPP prefetch, a bot and a scanner on delivery do not."""
    m = await mailing(db)
    ids = [s.id or 0 for s in m.sends]
    async with db.write() as conn:  # delivered an hour ago
        await claim_for_dispatch(conn, send_ids=ids, provider="sendgrid")
        accepted = [Accepted(i, f"sg-{i}", "rules", {}) for i in ids]
        await mark_sent(conn, accepted=accepted, at=datetime.now(UTC) - timedelta(hours=1))
    key = sg_key()
    async with api(db, sendgrid_webhook_public_key=sg_setting(key),
                   tracking_secret=TRACKING_SECRET) as (client, app):  # fmt: skip
        # The reader of email 0 opens it: the pixel sees it first.
        pixel = f"/t/o/{sign_open(TRACKING_SECRET, 'demo', 1, ids[0])}"
        assert (await client.get(pixel, headers={"User-Agent": IPHONE})).status_code == 200
        await app.state.tracker.drain(now=True)
        assert await engagements(db, m) == {(ids[0], "open")}

        batch = [
            m.event(0, "open", "o-0", useragent=IPHONE, ip="198.51.100.7"),  # the same open
            m.event(0, "click", "c-0", useragent=IPHONE, url="https://shop.test/p/1"),
            m.event(1, "open", "o-1", useragent="Mozilla/5.0", sg_machine_open=True),
            m.event(2, "click", "c-2", useragent="Barracuda Sentinel (EE)"),
            m.event(3, "open", "o-3a", useragent=IPHONE),
            m.event(3, "open", "o-3b", useragent=IPHONE),  # opened again: one engagement
            m.event(3, "delivered", "d-3"),
        ]
        response = await post_sendgrid(client, key, batch)
        assert response.json() == {"accepted": 7, "duplicates": 0, "ignored": 0}
        await app.state.tracker.drain(now=True)
        assert await engagements(db, m) == {
            (ids[0], "open"), (ids[0], "click"), (ids[3], "open"),
        }  # fmt: skip

        # Mailgun's report of email 4's open by a person, and one by a bot of email 5.
        reader: dict[str, Any] = {"client-info": {"user-agent": IPHONE, "bot": ""},
                                  "ip": "198.51.100.7"}  # fmt: skip
        for n, (send, info) in enumerate(
            [(m.sends[4], reader), (m.sends[5], {"client-info": {"bot": "google"}})]
        ):
            event = {"id": f"mg-open-{n}", "event": "opened",
                     "timestamp": datetime.now(UTC).timestamp(), "recipient": "x@example.com",
                     "user-variables": {"tailor_send_id": str(send.id)}, **info}  # fmt: skip
            body = mg_body(event, token=f"tok-open-{n}", at=datetime.now(UTC))
            assert (await client.post("/v1/webhooks/mailgun", content=body)).status_code == 200
        await app.state.tracker.drain(now=True)
    assert await engagements(db, m) == {
        (ids[0], "open"), (ids[0], "click"), (ids[3], "open"), (ids[4], "open"),
    }  # fmt: skip
    async with db.read_session() as session:
        person = await session.get(Contact, m.sends[3].contact_id)
    assert person is not None and person.last_open_at is not None  # features, as the pixel's
