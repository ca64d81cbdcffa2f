"""Mailgun webhooks: verify the signature block, refuse a token seen before, read ``event-data``.

Mailgun posts JSON ``{"signature": {"timestamp", "token", "signature"}, "event-data": {...}}``,
where ``signature`` is the hex HMAC-SHA256 of ``timestamp + token`` under the webhook signing key.
The signature does not cover ``event-data``, so the single-use token (``replay.py``) and the
freshness window are what stop a captured signature from carrying other events.

Event types mapped (others, like ``accepted``, ``rejected`` and ``stored``, are skipped):
``delivered``, ``failed`` (``severity: permanent`` hard, otherwise soft), ``complained``,
``unsubscribed``, ``opened``, ``clicked`` (with the reader's ``client-info`` and ``ip``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any

from tailor.delivery.webhooks.events import (
    EspEvent,
    EventKind,
    bare_message_id,
    event_time,
    required_text,
    short_reason,
)
from tailor.delivery.webhooks.refusal import MAX_AGE, MAX_SKEW, WebhookRefused, require_fresh_epoch
from tailor.delivery.webhooks.replay import ReplayGuard
from tailor.errors import InvalidInput

PROVIDER = "mailgun"

KINDS = {
    "delivered": EventKind.DELIVERED,
    "complained": EventKind.COMPLAINT,
    "unsubscribed": EventKind.UNSUBSCRIBE,
    "opened": EventKind.OPEN,
    "clicked": EventKind.CLICK,
}


def verify_signature(
    block: Any, signing_key: str, *, now: datetime | None = None, max_age: timedelta = MAX_AGE
) -> str:
    """The block's token when its HMAC is right and it is recent; ``WebhookRefused`` otherwise."""
    if not isinstance(block, dict):
        raise WebhookRefused("missing signature")
    timestamp, token, signature = (_text(block, k) for k in ("timestamp", "token", "signature"))
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest(), signature.lower()):
        raise WebhookRefused("bad signature")
    require_fresh_epoch(timestamp, now=now, max_age=max_age)
    return token


def _text(block: dict[str, Any], key: str) -> str:
    value = block.get(key)
    if not isinstance(value, str) or not value:
        raise WebhookRefused("missing signature")
    return value


async def receive(
    body: bytes,
    signing_key: str,
    guard: ReplayGuard,
    *,
    now: datetime | None = None,
    max_age: timedelta = MAX_AGE,
) -> EspEvent | None:
    """The request's event (None for a type not mapped) once it is proved genuine and new."""
    try:
        document = json.loads(body)
    except ValueError as error:
        raise WebhookRefused("missing signature") from error
    if not isinstance(document, dict):
        raise WebhookRefused("missing signature")
    token = verify_signature(document.get("signature"), signing_key, now=now, max_age=max_age)
    # Checked after the signature, so forged requests cannot fill the guard with tokens.
    if await guard.seen(token, ttl=max_age + MAX_SKEW):
        raise WebhookRefused("token already used")
    return parse_event(document.get("event-data"))


def parse_event(data: Any) -> EspEvent | None:
    field = "event-data"
    if not isinstance(data, dict):
        raise InvalidInput(field, "expected an object")
    name = data.get("event")
    if name == "failed":
        permanent = data.get("severity") == "permanent"
        kind = EventKind.BOUNCE_HARD if permanent else EventKind.BOUNCE_SOFT
    elif isinstance(name, str) and name in KINDS:
        kind = KINDS[name]
    else:
        return None
    event_id = required_text(data, "id", f"{field}.id")
    recipient = required_text(data, "recipient", f"{field}.recipient")
    occurred_at = event_time(data.get("timestamp"), f"{field}.timestamp")
    message = data.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    message_id = headers.get("message-id") if isinstance(headers, dict) else None
    variables = data.get("user-variables")
    send_id = variables.get("tailor_send_id") if isinstance(variables, dict) else None
    status = data.get("delivery-status")
    status = status if isinstance(status, dict) else {}
    url = data.get("url")
    return EspEvent(
        provider=PROVIDER,
        provider_event_id=event_id,
        kind=kind,
        recipient=recipient,
        occurred_at=occurred_at,
        message_id=bare_message_id(message_id),
        send_id=send_id if isinstance(send_id, str) else None,
        reason=short_reason(status.get("description"), status.get("message"), data.get("reason")),
        url=url if kind is EventKind.CLICK and isinstance(url, str) else None,
        **_reader(data) if kind in (EventKind.OPEN, EventKind.CLICK) else {},
    )


def _reader(data: dict[str, Any]) -> dict[str, Any]:
    """Who opened or clicked, as Mailgun saw it: ``client-info`` (its ``user-agent``, and a
    non-empty ``bot`` when Mailgun recognised one) and ``ip``."""
    info = data.get("client-info")
    info = info if isinstance(info, dict) else {}
    agent, ip, bot = info.get("user-agent"), data.get("ip"), info.get("bot")
    return {
        "user_agent": agent if isinstance(agent, str) else None,
        "ip": ip if isinstance(ip, str) else None,
        "machine": isinstance(bot, str) and bool(bot.strip()),
    }
