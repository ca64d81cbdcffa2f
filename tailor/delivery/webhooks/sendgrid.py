"""SendGrid's Signed Event Webhook: verify, then turn the posted array into ``EspEvent`` s.

SendGrid signs ``timestamp header + raw body`` with ECDSA P-256 / SHA-256 and sends the DER
signature base64-encoded; the public key is shown in its settings as base64 DER
SubjectPublicKeyInfo. The body must be verified byte for byte as received, before any parsing.

Event types mapped (others, like ``processed``, ``dropped`` and ``group_resubscribe``, are
skipped): ``delivered``, ``deferred``, ``bounce`` (``type: blocked`` is a soft bounce, anything
else hard), ``spamreport``, ``unsubscribe`` / ``group_unsubscribe``, ``open``, ``click``.
Custom args arrive as top-level keys, so ``tailor_send_id`` is read from the event itself.
Opens and clicks carry the reader's ``useragent`` and ``ip``, and opens ``sg_machine_open``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from tailor.delivery.webhooks.events import (
    EspEvent,
    EventKind,
    bare_message_id,
    event_time,
    required_text,
    short_reason,
)
from tailor.delivery.webhooks.refusal import (
    MAX_AGE,
    WebhookRefused,
    require_fresh_epoch,
    require_header,
)
from tailor.errors import InvalidInput

PROVIDER = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

KINDS = {
    "delivered": EventKind.DELIVERED,
    "deferred": EventKind.DEFERRED,
    "spamreport": EventKind.COMPLAINT,
    "unsubscribe": EventKind.UNSUBSCRIBE,
    "group_unsubscribe": EventKind.UNSUBSCRIBE,
    "open": EventKind.OPEN,
    "click": EventKind.CLICK,
}


def load_public_key(setting: str) -> ec.EllipticCurvePublicKey:
    """The verification key from its settings form; ValueError when it is not a P-256 key."""
    try:
        key = load_der_public_key(base64.b64decode(setting.strip(), validate=True))
    except (ValueError, binascii.Error) as error:
        raise ValueError("the SendGrid verification key is not base64 DER") from error
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the SendGrid verification key is not an ECDSA P-256 key")
    return key


def verify(
    headers: Mapping[str, str],
    body: bytes,
    key: ec.EllipticCurvePublicKey,
    *,
    now: datetime | None = None,
    max_age: timedelta = MAX_AGE,
) -> None:
    """Raise ``WebhookRefused`` unless ``body`` is signed by ``key`` and recent."""
    signature_b64 = require_header(headers, SIGNATURE_HEADER)
    timestamp = require_header(headers, TIMESTAMP_HEADER)
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key.verify(signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature) as error:
        raise WebhookRefused("bad signature") from error
    # Only a signed timestamp is worth reading: checking it first would let anyone probe our clock.
    require_fresh_epoch(timestamp, now=now, max_age=max_age)


def receive(
    headers: Mapping[str, str],
    body: bytes,
    key: ec.EllipticCurvePublicKey,
    *,
    now: datetime | None = None,
    max_age: timedelta = MAX_AGE,
) -> list[EspEvent]:
    verify(headers, body, key, now=now, max_age=max_age)
    return parse(body)


def parse(body: bytes) -> list[EspEvent]:
    """The events of a verified body, in order; unmapped event types are skipped."""
    try:
        items = json.loads(body)
    except ValueError as error:
        raise InvalidInput("body", "not JSON") from error
    if not isinstance(items, list):
        raise InvalidInput("body", "expected a JSON array of events")
    events = []
    for index, item in enumerate(items):
        event = _event(item, f"events[{index}]")
        if event is not None:
            events.append(event)
    return events


def _event(item: Any, field: str) -> EspEvent | None:
    if not isinstance(item, dict):
        raise InvalidInput(field, "expected an object")
    name = item.get("event")
    if name == "bounce":
        kind = EventKind.BOUNCE_SOFT if item.get("type") == "blocked" else EventKind.BOUNCE_HARD
    elif isinstance(name, str) and name in KINDS:
        kind = KINDS[name]
    else:
        return None
    event_id = required_text(item, "sg_event_id", f"{field}.sg_event_id")
    recipient = required_text(item, "email", f"{field}.email")
    occurred_at = event_time(item.get("timestamp"), f"{field}.timestamp")
    send_id = item.get("tailor_send_id")
    url = item.get("url")
    return EspEvent(
        provider=PROVIDER,
        provider_event_id=event_id,
        kind=kind,
        recipient=recipient,
        occurred_at=occurred_at,
        message_id=bare_message_id(item.get("smtp-id")),
        send_id=str(send_id) if isinstance(send_id, str | int) else None,
        reason=short_reason(item.get("reason"), item.get("response"), item.get("status")),
        url=url if kind is EventKind.CLICK and isinstance(url, str) else None,
        **_reader(item) if kind in (EventKind.OPEN, EventKind.CLICK) else {},
    )


def _reader(item: dict[str, Any]) -> dict[str, Any]:
    """Who opened or clicked, as SendGrid saw it: ``useragent``, ``ip``, and on opens
    ``sg_machine_open`` (true: an Apple Mail Privacy Protection prefetch)."""
    agent, ip = item.get("useragent"), item.get("ip")
    return {
        "user_agent": agent if isinstance(agent, str) else None,
        "ip": ip if isinstance(ip, str) else None,
        "machine": item.get("sg_machine_open") is True,
    }
