"""Amazon SES events, as SNS delivers them (``sns.py`` verifies the envelope first).

SES publishes two shapes into the SNS ``Message``: identity notifications (``notificationType``:
Bounce, Complaint, Delivery) and configuration-set events (``eventType``: also DeliveryDelay,
Open, Click, Reject, ...). Both share ``mail`` (SES's ``messageId``, ``headers``,
``commonHeaders``, ``tags``) and a per-type object. One notification may name several recipients
(a bounce lists each one), so it becomes one ``EspEvent`` per recipient.

Mapping: Bounce ``Permanent`` → bounce_hard, ``Transient`` / ``Undetermined`` → bounce_soft;
Complaint → complaint; Delivery → delivered; DeliveryDelay → deferred; Open, Click; Reject (SES
refused to send, e.g. a virus: the address is not at fault) → bounce_soft with the reason. Other
types (Send, Rendering Failure, Subscription) are skipped.

The event id is ``mail.messageId:kind:recipient:event timestamp`` (plus the link of a click):
stable when SNS retries or SES publishes the same event twice under a new SNS MessageId.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tailor.delivery.webhooks.events import EspEvent, EventKind, bare_message_id, short_reason
from tailor.delivery.webhooks.sns import SnsMessage
from tailor.errors import InvalidInput

PROVIDER = "ses"
FIELD = "Message"

# type → (key of its object, kind, key of its recipient list or None for mail.destination)
TYPES: dict[str, tuple[str, EventKind, str | None]] = {
    "Bounce": ("bounce", EventKind.BOUNCE_HARD, "bouncedRecipients"),
    "Complaint": ("complaint", EventKind.COMPLAINT, "complainedRecipients"),
    "Delivery": ("delivery", EventKind.DELIVERED, "recipients"),
    "DeliveryDelay": ("deliveryDelay", EventKind.DEFERRED, "delayedRecipients"),
    "Open": ("open", EventKind.OPEN, None),
    "Click": ("click", EventKind.CLICK, None),
    "Reject": ("reject", EventKind.BOUNCE_SOFT, None),
}


def parse(message: SnsMessage) -> list[EspEvent]:
    """The SES events in a verified SNS notification; empty for a type not mapped."""
    try:
        document = json.loads(message.message)
    except ValueError as error:
        raise InvalidInput(FIELD, "not JSON") from error
    if not isinstance(document, dict):
        raise InvalidInput(FIELD, "expected an object")
    name = document.get("eventType") or document.get("notificationType")
    if not isinstance(name, str) or name not in TYPES:
        return []
    key, kind, recipients_key = TYPES[name]
    mail = _object(document, "mail")
    detail = _object(document, key, required=False)
    if name == "Bounce" and detail.get("bounceType") != "Permanent":
        kind = EventKind.BOUNCE_SOFT
    ses_id = mail.get("messageId")
    if not isinstance(ses_id, str) or not ses_id:
        raise InvalidInput(f"{FIELD}.mail.messageId", "missing")
    occurred_at = _time(detail.get("timestamp") or mail.get("timestamp"), message.timestamp)
    url = detail.get("link") if kind is EventKind.CLICK else None
    url = url if isinstance(url, str) else None
    agent, ip = detail.get("userAgent"), detail.get("ipAddress")  # of an Open or a Click
    events = []
    for recipient, reason in _recipients(mail, detail, recipients_key):
        parts = [ses_id, kind.value, recipient, occurred_at.isoformat()]
        events.append(
            EspEvent(
                provider=PROVIDER,
                provider_event_id=":".join(parts + ([url] if url else [])),
                kind=kind,
                recipient=recipient,
                occurred_at=occurred_at,
                message_id=_message_id(mail),
                send_id=_send_id(mail),
                reason=short_reason(
                    reason,
                    detail.get("smtpResponse"),
                    detail.get("reason"),
                    detail.get("bounceSubType"),
                    detail.get("complaintFeedbackType"),
                    detail.get("delayType"),
                ),
                url=url,
                user_agent=agent if isinstance(agent, str) else None,
                ip=ip if isinstance(ip, str) else None,
            )
        )
    return events


def _object(document: dict[str, Any], key: str, *, required: bool = True) -> dict[str, Any]:
    value = document.get(key)
    if isinstance(value, dict):
        return value
    if required or value is not None:
        raise InvalidInput(f"{FIELD}.{key}", "expected an object")
    return {}


def _recipients(
    mail: dict[str, Any], detail: dict[str, Any], key: str | None
) -> list[tuple[str, object]]:
    """(address, its diagnosis) for each recipient the event is about."""
    listed = detail.get(key) if key else mail.get("destination")
    if not isinstance(listed, list):
        raise InvalidInput(f"{FIELD}.{key or 'mail.destination'}", "expected a list")
    found: list[tuple[str, object]] = []
    for entry in listed:
        if isinstance(entry, str):  # Delivery and mail.destination list plain addresses
            found.append((entry, None))
        elif isinstance(entry, dict) and isinstance(entry.get("emailAddress"), str):
            found.append((entry["emailAddress"], entry.get("diagnosticCode")))
    return found


def _time(value: object, fallback: datetime) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    return fallback


def _message_id(mail: dict[str, Any]) -> str | None:
    """Our Message-ID: from the raw headers when SES includes them, else ``commonHeaders``."""
    headers = mail.get("headers")
    if isinstance(headers, list):
        for header in headers:
            if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
                return bare_message_id(header.get("value"))
    common = mail.get("commonHeaders")
    return bare_message_id(common.get("messageId")) if isinstance(common, dict) else None


def _send_id(mail: dict[str, Any]) -> str | None:
    tags = mail.get("tags")
    values = tags.get("tailor_send_id") if isinstance(tags, dict) else None
    first = values[0] if isinstance(values, list) and values else None
    return first if isinstance(first, str) else None
