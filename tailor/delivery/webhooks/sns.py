"""Amazon SNS HTTP(S) deliveries: prove a message came from SNS, for an allowed topic, recently.

SNS signs a canonical string ("Name\\nvalue\\n" for each field, in this order, skipping a
Notification's absent Subject) with RSA PKCS#1 v1.5: SignatureVersion 1 over SHA-1, 2 over
SHA-256. The key is in an X.509 certificate at ``SigningCertURL``, which the message itself
names, so the URL is the attack surface: only ``https://sns.<region>.amazonaws.com/<path>.pem``
is fetched (one regex over the whole URL: no userinfo, port, query or look-alike host can pass),
through an injected fetcher, and the key is cached per URL.

Checks run cheapest and most local first (shape, topic, URL) so a forged request costs no fetch.
A SubscriptionConfirmation is verified like any message; its ``SubscribeURL`` (held to the same
host rule) is returned for the caller to GET. An UnsubscribeConfirmation is returned too, but the
caller should not visit its URL (that would subscribe again).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tailor.delivery.webhooks.refusal import MAX_AGE, WebhookRefused, require_fresh

_HOST = r"https://sns\.[a-z]{2}(?:-[a-z]+)+-[0-9]+\.amazonaws\.com/"
CERT_URL = re.compile(_HOST + r"[A-Za-z0-9_./-]*\.pem")
SUBSCRIBE_URL = re.compile(_HOST + r"[A-Za-z0-9_.~/?&=%:+-]*")

NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
CONFIRMATIONS = ("SubscriptionConfirmation", "UnsubscribeConfirmation")
HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
CACHE_LIMIT = 32  # certificates; SNS rotates them rarely and uses one per region

Fetcher = Callable[[str], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class SnsMessage:
    """A verified SNS message. ``subscribe_url`` is set for the two confirmation types."""

    type: str
    message_id: str
    topic_arn: str
    message: str
    timestamp: datetime
    subscribe_url: str | None = None

    @property
    def is_notification(self) -> bool:
        return self.type == "Notification"


def canonical_string(fields: dict[str, Any]) -> bytes:
    """What SNS signed, for this message's type (see the module's docstring)."""
    names = NOTIFICATION_FIELDS if fields.get("Type") == "Notification" else CONFIRMATION_FIELDS
    lines = []
    for name in names:
        value = fields.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise WebhookRefused(f"missing {name}")
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode()


class CertificateCache:
    """Signing keys by certificate URL, fetched once through ``fetch`` (which may raise: the
    caller answers 5xx so SNS retries, since a fetch failure proves nothing about the sender)."""

    def __init__(self, fetch: Fetcher) -> None:
        self._fetch = fetch
        self._keys: dict[str, rsa.RSAPublicKey] = {}

    async def key(self, url: str, *, now: datetime) -> rsa.RSAPublicKey:
        if not CERT_URL.fullmatch(url):  # again here, so no caller can skip it
            raise WebhookRefused("certificate URL not allowed")
        key = self._keys.get(url)
        if key is None:
            key = _public_key(await self._fetch(url), now=now)
            if len(self._keys) >= CACHE_LIMIT:
                self._keys.pop(next(iter(self._keys)))
            self._keys[url] = key
        return key


def _public_key(pem: bytes, *, now: datetime) -> rsa.RSAPublicKey:
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as error:
        raise WebhookRefused("signing certificate unreadable") from error
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise WebhookRefused("signing certificate expired")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookRefused("signing certificate is not RSA")
    return key


async def verify(
    body: bytes,
    *,
    topics: Collection[str],
    certificates: CertificateCache,
    now: datetime | None = None,
    max_age: timedelta = MAX_AGE,
) -> SnsMessage:
    """The message when SNS signed it for one of ``topics`` within ``max_age``; ``WebhookRefused``
    otherwise. SNS retries a failed delivery for up to an hour, so a receiver that wants those
    retries passes a longer ``max_age`` (the provider event id keeps them from counting twice)."""
    now = now or datetime.now(UTC)
    try:
        fields = json.loads(body)
    except ValueError as error:
        raise WebhookRefused("not an SNS message") from error
    if not isinstance(fields, dict):
        raise WebhookRefused("not an SNS message")
    kind = fields.get("Type")
    if kind != "Notification" and kind not in CONFIRMATIONS:
        raise WebhookRefused("not an SNS message")
    topic = fields.get("TopicArn")
    if not isinstance(topic, str) or topic not in topics:
        raise WebhookRefused("topic not allowed")
    cert_url, version = fields.get("SigningCertURL"), fields.get("SignatureVersion")
    if not isinstance(cert_url, str) or not CERT_URL.fullmatch(cert_url):
        raise WebhookRefused("certificate URL not allowed")
    if not isinstance(version, str) or version not in HASHES:
        raise WebhookRefused("unknown signature version")
    subscribe_url = fields.get("SubscribeURL") if kind in CONFIRMATIONS else None
    if kind in CONFIRMATIONS and (
        not isinstance(subscribe_url, str) or not SUBSCRIBE_URL.fullmatch(subscribe_url)
    ):
        raise WebhookRefused("subscribe URL not allowed")
    signed = canonical_string(fields)
    try:
        sent_at = datetime.fromisoformat(str(fields.get("Timestamp")))
    except ValueError as error:
        raise WebhookRefused("bad timestamp") from error
    if sent_at.tzinfo is None:
        raise WebhookRefused("bad timestamp")
    # Refuse stale messages before fetching anything for them.
    require_fresh(sent_at, now=now, max_age=max_age)
    try:
        signature = base64.b64decode(str(fields.get("Signature")), validate=True)
    except (binascii.Error, ValueError) as error:
        raise WebhookRefused("bad signature") from error
    key = await certificates.key(cert_url, now=now)
    try:
        key.verify(signature, signed, padding.PKCS1v15(), HASHES[version]())
    except InvalidSignature as error:
        raise WebhookRefused("bad signature") from error
    return SnsMessage(
        type=kind,
        message_id=str(fields["MessageId"]),
        topic_arn=topic,
        message=str(fields["Message"]),
        timestamp=sent_at.astimezone(UTC),
        subscribe_url=subscribe_url,
    )
