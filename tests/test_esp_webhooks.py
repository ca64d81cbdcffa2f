"""ESP event webhooks: each provider's requests signed for real in the test (ECDSA P-256 for
SendGrid, HMAC-SHA256 for Mailgun, RSA + a self-signed X.509 certificate for SNS/SES), then
accepted, or refused when forged, tampered, replayed, stale or unsigned; and the out-of-order rule.
Pure: no database, no network (the SNS certificate fetcher is a dict)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from tailor.delivery.webhooks import mailgun, sendgrid, ses, sns
from tailor.delivery.webhooks.events import EventKind, advance
from tailor.delivery.webhooks.refusal import WebhookRefused
from tailor.delivery.webhooks.replay import MemoryReplayGuard
from tailor.errors import InvalidInput

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def refused(reason: str) -> Any:
    return pytest.raises(WebhookRefused, match=reason)


# --- SendGrid ---------------------------------------------------------------------------------

SG_EVENTS = [
    {"email": "ann@example.com", "timestamp": 1772452700, "event": "delivered",
     "sg_event_id": "ev-1", "smtp-id": "<m1@tailor.test>", "tailor_send_id": "12",
     "response": "250 OK"},
    {"email": "bob@example.com", "timestamp": 1772452710, "event": "bounce", "type": "bounce",
     "sg_event_id": "ev-2", "reason": "550 5.1.1 no such user"},
    {"email": "cy@example.com", "timestamp": 1772452720, "event": "bounce", "type": "blocked",
     "sg_event_id": "ev-3", "reason": "421 try later"},
    {"email": "di@example.com", "timestamp": 1772452730, "event": "spamreport",
     "sg_event_id": "ev-4"},
    {"email": "ed@example.com", "timestamp": 1772452740, "event": "click",
     "sg_event_id": "ev-5", "url": "https://shop.test/p/1"},
    {"email": "fi@example.com", "timestamp": 1772452750, "event": "processed",
     "sg_event_id": "ev-6"},
]  # fmt: skip


def sg_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sg_setting(key: ec.EllipticCurvePrivateKey) -> str:
    """The public key as SendGrid's settings page shows it: base64 DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sg_sign(key: ec.EllipticCurvePrivateKey, body: bytes, at: datetime = NOW) -> dict[str, str]:
    timestamp = str(int(at.timestamp()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


def test_sendgrid_signed_batch_is_read_as_normalised_events() -> None:
    key = sg_key()
    body = json.dumps(SG_EVENTS).encode()
    public = sendgrid.load_public_key(sg_setting(key))
    # Header names in any case (ASGI lower-cases them).
    headers = {k.lower(): v for k, v in sg_sign(key, body).items()}
    events = sendgrid.receive(headers, body, public, now=NOW)
    assert [e.kind for e in events] == [
        EventKind.DELIVERED,
        EventKind.BOUNCE_HARD,
        EventKind.BOUNCE_SOFT,
        EventKind.COMPLAINT,
        EventKind.CLICK,
    ]  # "processed" is not an outcome: skipped
    first = events[0]
    assert (first.provider, first.provider_event_id, first.recipient) == (
        "sendgrid",
        "ev-1",
        "ann@example.com",
    )
    assert first.message_id == "m1@tailor.test" and first.send_id == "12"
    assert first.occurred_at == datetime.fromtimestamp(1772452700, UTC)
    assert events[1].reason == "550 5.1.1 no such user"
    assert events[4].url == "https://shop.test/p/1" and events[0].url is None


def test_sendgrid_refuses_forged_tampered_stale_and_unsigned_requests() -> None:
    key = sg_key()
    public = sendgrid.load_public_key(sg_setting(key))
    body = json.dumps(SG_EVENTS).encode()
    with refused("bad signature"):  # signed by someone else's key
        sendgrid.verify(sg_sign(sg_key(), body), body, public, now=NOW)
    with refused("bad signature"):  # one byte changed after signing
        sendgrid.verify(sg_sign(key, body), body.replace(b"bounce", b"bounck", 1), public, now=NOW)
    with refused("bad signature"):  # a genuine signature, its timestamp moved forward
        headers = sg_sign(key, body, NOW - timedelta(minutes=10))
        headers["X-Twilio-Email-Event-Webhook-Timestamp"] = str(int(NOW.timestamp()))
        sendgrid.verify(headers, body, public, now=NOW)
    with refused("too old"):
        sendgrid.verify(sg_sign(key, body, NOW - timedelta(minutes=6)), body, public, now=NOW)
    with refused("future"):
        sendgrid.verify(sg_sign(key, body, NOW + timedelta(minutes=6)), body, public, now=NOW)
    for missing in sg_sign(key, body):
        headers = sg_sign(key, body)
        del headers[missing]
        with refused(f"missing {missing}"):
            sendgrid.verify(headers, body, public, now=NOW)
    with refused("bad signature"):
        sendgrid.verify(
            {**sg_sign(key, body), "X-Twilio-Email-Event-Webhook-Signature": "not base64!"},
            body,
            public,
            now=NOW,
        )
    # Four minutes old is still inside the window.
    sendgrid.verify(sg_sign(key, body, NOW - timedelta(minutes=4)), body, public, now=NOW)


def test_sendgrid_key_setting_must_be_a_p256_key() -> None:
    rsa_der = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="P-256"):
        sendgrid.load_public_key(base64.b64encode(rsa_der).decode())
    with pytest.raises(ValueError, match="base64 DER"):
        sendgrid.load_public_key("not a key")


def test_sendgrid_signed_but_malformed_batch_names_the_event() -> None:
    with pytest.raises(InvalidInput) as caught:
        sendgrid.parse(json.dumps([SG_EVENTS[0], {"event": "delivered", "email": "x@y"}]).encode())
    assert caught.value.field == "events[1].sg_event_id"
    with pytest.raises(InvalidInput):
        sendgrid.parse(b'{"not": "a list"}')


# --- Mailgun ----------------------------------------------------------------------------------

MG_KEY = "key-signing-0123456789"


def mg_body(
    event_data: dict[str, Any], *, key: str = MG_KEY, token: str = "tok-1", at: datetime = NOW
) -> bytes:
    timestamp = str(int(at.timestamp()))
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    block = {"timestamp": timestamp, "token": token, "signature": signature}
    return json.dumps({"signature": block, "event-data": event_data}).encode()


MG_FAILED = {
    "id": "mg-ev-1",
    "event": "failed",
    "severity": "permanent",
    "timestamp": 1772452700.25,
    "recipient": "ann@example.com",
    "message": {"headers": {"message-id": "m1@tailor.test"}},
    "user-variables": {"tailor_send_id": "12"},
    "delivery-status": {"description": "", "message": "550 5.1.1 mailbox unavailable"},
}


async def test_mailgun_signed_event_is_read_once() -> None:
    guard = MemoryReplayGuard()
    event = await mailgun.receive(mg_body(MG_FAILED), MG_KEY, guard, now=NOW)
    assert event is not None
    assert (event.provider, event.provider_event_id, event.kind) == (
        "mailgun",
        "mg-ev-1",
        EventKind.BOUNCE_HARD,
    )
    assert event.message_id == "m1@tailor.test" and event.send_id == "12"
    assert event.reason == "550 5.1.1 mailbox unavailable"
    assert event.occurred_at == datetime.fromtimestamp(1772452700.25, UTC)
    soft = await mailgun.receive(
        mg_body({**MG_FAILED, "severity": "temporary"}, token="tok-2"), MG_KEY, guard, now=NOW
    )
    assert soft is not None and soft.kind is EventKind.BOUNCE_SOFT
    accepted = {**MG_FAILED, "event": "accepted"}
    assert await mailgun.receive(mg_body(accepted, token="tok-3"), MG_KEY, guard, now=NOW) is None


async def test_mailgun_refuses_replayed_forged_stale_and_unsigned_requests() -> None:
    guard = MemoryReplayGuard()
    body = mg_body(MG_FAILED)
    await mailgun.receive(body, MG_KEY, guard, now=NOW)
    with refused("already used"):  # the same request again
        await mailgun.receive(body, MG_KEY, guard, now=NOW)
    with refused("bad signature"):
        await mailgun.receive(mg_body(MG_FAILED, key="another", token="t2"), MG_KEY, guard, now=NOW)
    tampered = json.loads(mg_body(MG_FAILED, token="t3"))
    tampered["signature"]["token"] = "t4"  # a fresh token under an old signature
    with refused("bad signature"):
        await mailgun.receive(json.dumps(tampered).encode(), MG_KEY, guard, now=NOW)
    stale = mg_body(MG_FAILED, token="t5", at=NOW - timedelta(minutes=6))
    with refused("too old"):
        await mailgun.receive(stale, MG_KEY, guard, now=NOW)
    unsigned = json.dumps({"event-data": MG_FAILED}).encode()
    for body in (unsigned, b"not json", b"[]"):
        with refused("missing signature"):
            await mailgun.receive(body, MG_KEY, guard, now=NOW)
    # Forged and stale requests used no token: the genuine one with t2 still goes through.
    assert await mailgun.receive(mg_body(MG_FAILED, token="t2"), MG_KEY, guard, now=NOW)


async def test_memory_replay_guard_forgets_a_token_after_its_ttl() -> None:
    clock = [100.0]
    guard = MemoryReplayGuard(clock=lambda: clock[0])
    ttl = timedelta(minutes=10)
    assert not await guard.seen("a", ttl=ttl)
    assert await guard.seen("a", ttl=ttl)
    clock[0] += 601
    assert not await guard.seen("a", ttl=ttl)


# --- Amazon SES through SNS -------------------------------------------------------------------

TOPIC = "arn:aws:sns:us-east-1:123456789012:tailor-ses-events"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem"
SUBSCRIBE = (
    "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
    "&TopicArn=arn:aws:sns:us-east-1:123456789012:tailor-ses-events&Token=2336412f37"
)


class Signer:
    """An RSA key and its self-signed certificate, standing in for SNS's."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        self.pem = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(NOW + timedelta(days=30))
            .sign(self.key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )

    def sign(self, fields: dict[str, Any], version: str = "2") -> bytes:
        algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
        signed = sns.canonical_string(fields)
        signature = self.key.sign(signed, padding.PKCS1v15(), algorithm)
        return json.dumps(
            {
                **fields,
                "SignatureVersion": version,
                "Signature": base64.b64encode(signature).decode(),
                "SigningCertURL": fields.get("SigningCertURL", CERT_URL),
            }
        ).encode()


class Fetcher:
    def __init__(self, pem: bytes) -> None:
        self.pem = pem
        self.fetched: list[str] = []

    async def __call__(self, url: str) -> bytes:
        self.fetched.append(url)
        return self.pem


SES_BOUNCE = {
    "notificationType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "timestamp": "2026-03-02T11:59:30.000Z",
        "bouncedRecipients": [
            {"emailAddress": "ann@example.com", "diagnosticCode": "smtp; 550 5.1.1 unknown"},
            {"emailAddress": "bob@example.com"},
        ],
    },
    "mail": {
        "messageId": "0100018e-ses-id",
        "timestamp": "2026-03-02T11:59:00.000Z",
        "destination": ["ann@example.com", "bob@example.com"],
        "headers": [{"name": "Message-ID", "value": "<m1@tailor.test>"}],
        "tags": {"tailor_send_id": ["12"]},
    },
}


def notification(message: dict[str, Any], **extra: str) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Message": json.dumps(message),
        "Timestamp": "2026-03-02T11:59:58.123Z",
        **extra,
    }


@pytest.mark.parametrize("version", ["1", "2"])
async def test_ses_notification_signed_v1_or_v2_is_read_as_events(version: str) -> None:
    signer = Signer()
    fetch = Fetcher(signer.pem)
    cache = sns.CertificateCache(fetch)
    for subject in ({}, {"Subject": "Amazon SES Email Event Notification"}):
        body = signer.sign(notification(SES_BOUNCE, **subject), version)
        message = await sns.verify(body, topics={TOPIC}, certificates=cache, now=NOW)
        assert message.is_notification and message.subscribe_url is None
        events = ses.parse(message)
        assert [(e.recipient, e.kind) for e in events] == [
            ("ann@example.com", EventKind.BOUNCE_HARD),
            ("bob@example.com", EventKind.BOUNCE_HARD),
        ]
        assert events[0].reason == "smtp; 550 5.1.1 unknown" and events[1].reason == "General"
        assert events[0].message_id == "m1@tailor.test" and events[0].send_id == "12"
        assert events[0].occurred_at == datetime(2026, 3, 2, 11, 59, 30, tzinfo=UTC)
        assert events[0].provider_event_id != events[1].provider_event_id
    assert fetch.fetched == [CERT_URL]  # fetched once, then cached


async def test_ses_refuses_forged_tampered_stale_and_foreign_topic_messages() -> None:
    signer = Signer()
    fetch = Fetcher(signer.pem)
    cache = sns.CertificateCache(fetch)
    fields = notification(SES_BOUNCE)

    async def check(body: bytes, **kw: Any) -> sns.SnsMessage:
        return await sns.verify(body, topics={TOPIC}, certificates=cache, now=NOW, **kw)

    with refused("bad signature"):  # signed by another key, our certificate served
        await check(Signer().sign(fields))
    tampered = json.loads(signer.sign(fields))
    tampered["Message"] = tampered["Message"].replace("Permanent", "Transient")
    with refused("bad signature"):
        await check(json.dumps(tampered).encode())
    downgraded = json.loads(signer.sign(fields, "2"))
    downgraded["SignatureVersion"] = "1"
    with refused("bad signature"):
        await check(json.dumps(downgraded).encode())
    with refused("too old"):
        await check(signer.sign({**fields, "Timestamp": "2026-03-02T11:54:00Z"}))
    # A receiver that accepts SNS's retries passes a longer window.
    old = await check(
        signer.sign({**fields, "Timestamp": "2026-03-02T11:30:00Z"}), max_age=timedelta(hours=1)
    )
    assert old.timestamp == datetime(2026, 3, 2, 11, 30, tzinfo=UTC)
    with refused("topic not allowed"):
        await check(signer.sign({**fields, "TopicArn": TOPIC + "-other"}))
    for missing in ("Signature", "SignatureVersion", "SigningCertURL"):
        body = json.loads(signer.sign(fields))
        del body[missing]
        with pytest.raises(WebhookRefused):
            await check(json.dumps(body).encode())
    for body in (b"not json", b"[]", json.dumps({**fields, "Type": "Other"}).encode()):
        with refused("not an SNS message"):
            await check(body)


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
        "https://user@sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com:8443/x.pem",
        "https://sns.us-east-1.amazonaws.com/x.pem?u=https://evil.example/y.pem",
        "https://sns.us-east-1.amazonaws.com/x.pem#frag",
        "https://sns.us-east-1.amazonaws.com/x.txt",
        "https://sns.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com\\@evil.example/x.pem",
        "https://SNS.us-east-1.amazonaws.com/x.pem\n",
    ],
)
async def test_ses_certificate_url_off_the_allow_list_is_refused_without_fetching(
    url: str,
) -> None:
    signer = Signer()
    fetch = Fetcher(signer.pem)
    body = signer.sign({**notification(SES_BOUNCE), "SigningCertURL": url})
    with refused("certificate URL not allowed"):
        await sns.verify(body, topics={TOPIC}, certificates=sns.CertificateCache(fetch), now=NOW)
    with refused("certificate URL not allowed"):  # nor through the cache directly
        await sns.CertificateCache(fetch).key(url, now=NOW)
    assert fetch.fetched == []


async def test_ses_expired_or_unreadable_certificate_is_refused() -> None:
    signer = Signer()
    body = signer.sign(notification(SES_BOUNCE))
    with refused("unreadable"):
        await sns.verify(
            body, topics={TOPIC}, certificates=sns.CertificateCache(Fetcher(b"junk")), now=NOW
        )
    later = NOW + timedelta(days=60)
    late_body = signer.sign({**notification(SES_BOUNCE), "Timestamp": later.isoformat()})
    with refused("expired"):
        await sns.verify(
            late_body,
            topics={TOPIC},
            certificates=sns.CertificateCache(Fetcher(signer.pem)),
            now=later,
        )


async def test_sns_subscription_confirmation_returns_its_url_to_visit() -> None:
    signer = Signer()
    cache = sns.CertificateCache(Fetcher(signer.pem))
    fields = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37",
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe to the topic ...",
        "SubscribeURL": SUBSCRIBE,
        "Timestamp": "2026-03-02T11:59:58Z",
    }
    message = await sns.verify(
        signer.sign(fields, "1"), topics={TOPIC}, certificates=cache, now=NOW
    )
    assert message.type == "SubscriptionConfirmation" and not message.is_notification
    assert message.subscribe_url == SUBSCRIBE
    # The Token and SubscribeURL are signed: swapping them breaks the signature.
    swapped = json.loads(signer.sign(fields))
    swapped["SubscribeURL"] = SUBSCRIBE.replace("2336412f37", "other")
    with refused("bad signature"):
        await sns.verify(json.dumps(swapped).encode(), topics={TOPIC}, certificates=cache, now=NOW)
    for url in (
        "https://evil.example/?Action=ConfirmSubscription",
        SUBSCRIBE.replace("https", "http"),
    ):
        with refused("subscribe URL not allowed"):
            await sns.verify(
                signer.sign({**fields, "SubscribeURL": url}),
                topics={TOPIC},
                certificates=cache,
                now=NOW,
            )


def ses_event(event_type: str, detail_key: str, detail: dict[str, Any]) -> sns.SnsMessage:
    mail = {
        "messageId": "0100-ses",
        "timestamp": "2026-03-02T11:00:00Z",
        "destination": ["ann@example.com"],
        "commonHeaders": {"messageId": "<m2@tailor.test>"},
    }
    document = {"eventType": event_type, "mail": mail, detail_key: detail}
    return sns.SnsMessage(
        type="Notification",
        message_id="sns-1",
        topic_arn=TOPIC,
        message=json.dumps(document),
        timestamp=NOW,
    )


def test_ses_event_types_map_to_kinds() -> None:
    at = "2026-03-02T11:10:00Z"
    cases: list[tuple[str, str, dict[str, Any], EventKind]] = [
        ("Delivery", "delivery", {"timestamp": at, "recipients": ["ann@example.com"]},
         EventKind.DELIVERED),
        ("DeliveryDelay", "deliveryDelay",
         {"timestamp": at, "delayType": "MailboxFull",
          "delayedRecipients": [{"emailAddress": "ann@example.com"}]}, EventKind.DEFERRED),
        ("Bounce", "bounce", {"bounceType": "Transient", "timestamp": at,
                              "bouncedRecipients": [{"emailAddress": "ann@example.com"}]},
         EventKind.BOUNCE_SOFT),
        ("Complaint", "complaint", {"timestamp": at,
                                    "complainedRecipients": [{"emailAddress": "ann@example.com"}]},
         EventKind.COMPLAINT),
        ("Open", "open", {"timestamp": at}, EventKind.OPEN),
        ("Click", "click", {"timestamp": at, "link": "https://shop.test/p/1"}, EventKind.CLICK),
        ("Reject", "reject", {"reason": "Bad content"}, EventKind.BOUNCE_SOFT),
    ]  # fmt: skip
    for event_type, key, detail, kind in cases:
        (event,) = ses.parse(ses_event(event_type, key, detail))
        assert (event.kind, event.recipient, event.message_id) == (
            kind,
            "ann@example.com",
            "m2@tailor.test",
        ), event_type
        assert event.provider_event_id.startswith("0100-ses:")
    (click,) = ses.parse(ses_event("Click", "click", {"timestamp": at, "link": "https://a.test"}))
    assert click.url == "https://a.test"
    (reject,) = ses.parse(ses_event("Reject", "reject", {"reason": "Bad content"}))
    assert reject.reason == "Bad content"
    assert reject.occurred_at == datetime(2026, 3, 2, 11, tzinfo=UTC)  # falls back to mail's time
    assert ses.parse(ses_event("Send", "send", {})) == []


# --- The out-of-order rule --------------------------------------------------------------------


def test_a_late_lesser_event_never_undoes_a_bounce_or_complaint() -> None:
    state = None
    for kind in (EventKind.DEFERRED, EventKind.DELIVERED, EventKind.OPEN, EventKind.CLICK):
        state = advance(state, kind)
    assert state is EventKind.CLICK
    assert advance(EventKind.CLICK, EventKind.DELIVERED) is EventKind.CLICK
    assert advance(EventKind.CLICK, EventKind.COMPLAINT) is EventKind.COMPLAINT
    for late in (EventKind.DELIVERED, EventKind.DEFERRED, EventKind.OPEN, EventKind.BOUNCE_SOFT):
        assert advance(EventKind.BOUNCE_HARD, late) is EventKind.BOUNCE_HARD
        assert advance(EventKind.COMPLAINT, late) is EventKind.COMPLAINT
    assert advance(EventKind.BOUNCE_HARD, EventKind.COMPLAINT) is EventKind.COMPLAINT
    # A soft bounce is temporary: the retry's delivery wins, a later deferral does not.
    assert advance(EventKind.BOUNCE_SOFT, EventKind.DELIVERED) is EventKind.DELIVERED
    assert advance(EventKind.DELIVERED, EventKind.BOUNCE_SOFT) is EventKind.DELIVERED
    assert advance(EventKind.DEFERRED, EventKind.BOUNCE_SOFT) is EventKind.BOUNCE_SOFT
    assert advance(None, EventKind.BOUNCE_SOFT) is EventKind.BOUNCE_SOFT


def test_providers_report_who_opened_and_clicked() -> None:
    """What each provider says of the reader of an open or a click, for telling people from
    machines: SendGrid's useragent, ip and MPP flag, Mailgun's client-info, SES's userAgent."""
    iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15"
    base = {"email": "ann@example.com", "timestamp": 1772452700, "tailor_send_id": "12"}
    (sg_open, sg_click, sg_delivered) = sendgrid.parse(json.dumps([
        {**base, "event": "open", "sg_event_id": "o", "useragent": "Mozilla/5.0",
         "ip": "17.58.1.2", "sg_machine_open": True},
        {**base, "event": "click", "sg_event_id": "c", "useragent": iphone, "ip": "198.51.100.7",
         "url": "https://shop.test/p/1"},
        {**base, "event": "delivered", "sg_event_id": "d", "ip": "192.0.2.1"},
    ]).encode())  # fmt: skip
    assert (sg_open.user_agent, sg_open.ip, sg_open.machine) == ("Mozilla/5.0", "17.58.1.2", True)
    assert (sg_click.user_agent, sg_click.machine) == (iphone, False)
    assert (sg_delivered.user_agent, sg_delivered.ip) == (None, None)  # not a reader's

    info = {"client-type": "mobile browser", "user-agent": iphone, "bot": ""}
    opened = {"id": "mg-o", "event": "opened", "timestamp": 1772452700.0,
              "recipient": "ann@example.com", "ip": "198.51.100.7",
              "client-info": info}  # fmt: skip
    mg_person = mailgun.parse_event(opened)
    mg_bot = mailgun.parse_event({**opened, "client-info": {"user-agent": "x", "bot": "google"}})
    assert mg_person is not None and mg_bot is not None
    assert (mg_person.user_agent, mg_person.ip, mg_person.machine) == (
        iphone,
        "198.51.100.7",
        False,
    )
    assert mg_bot.machine is True

    detail = {"timestamp": "2026-03-02T11:10:00Z", "userAgent": iphone, "ipAddress": "198.51.100.7"}
    (ses_open,) = ses.parse(ses_event("Open", "open", detail))
    assert (ses_open.user_agent, ses_open.ip, ses_open.machine) == (iphone, "198.51.100.7", False)
    (ses_bare,) = ses.parse(ses_event("Open", "open", {"timestamp": "2026-03-02T11:10:00Z"}))
    assert ses_bare.user_agent is None
