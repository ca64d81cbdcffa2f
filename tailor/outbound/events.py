"""The events a tenant can receive, and how each source of them becomes one.

Every event type has Tailor's name (``email.opened``) and the name Segment's email spec gives the
same fact (``Email Opened``), used by Segment-format endpoints:

    type                 Segment event           published by
    email.delivered      Email Delivered         an ESP's delivery report
    email.bounced        Email Bounced           an ESP's bounce report (hard or soft)
    email.complained     Email Marked as Spam    an ESP's spam complaint
    email.unsubscribed   Unsubscribed            an ESP's unsubscribe, or Tailor's one-click link
    email.opened         Email Opened            the first (human) open of an email
    email.clicked        Email Link Clicked      the first (human) click
    email.converted      Email Converted         the first conversion recorded against an email

An event's id is derived from what it reports (the ESP's event id, the send and the metric), so
the same fact published twice, retried or replayed keeps one id: receivers deduplicate on it,
and Segment on ``messageId``. An event carries ids and short facts only, never an address: the
contact is named by Tailor's id and, at delivery, by the tenant's own user id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

EventType = Literal[
    "email.delivered",
    "email.bounced",
    "email.complained",
    "email.unsubscribed",
    "email.opened",
    "email.clicked",
    "email.converted",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
#: Subscribing to it means every type, including ones added later.
ALL = "*"
#: Sent only by ``POST /v1/webhook-endpoints/{id}/test``, whatever the endpoint subscribes to.
TEST = "webhook.test"

SEGMENT_NAMES: dict[str, str] = {
    "email.delivered": "Email Delivered",
    "email.bounced": "Email Bounced",
    "email.complained": "Email Marked as Spam",
    "email.unsubscribed": "Unsubscribed",
    "email.opened": "Email Opened",
    "email.clicked": "Email Link Clicked",
    "email.converted": "Email Converted",
    TEST: "Webhook Test",
}

_ENGAGEMENT = {"open": "email.opened", "click": "email.clicked", "conversion": "email.converted"}
# ESP event kinds (``tailor.delivery.webhooks.events.EventKind`` values) that are published.
# Deferrals are the provider still trying; ESP opens and clicks are not counted as human.
_ESP: dict[str, tuple[str, dict[str, str]]] = {
    "delivered": ("email.delivered", {}),
    "bounce_hard": ("email.bounced", {"bounce_type": "hard"}),
    "bounce_soft": ("email.bounced", {"bounce_type": "soft"}),
    "complaint": ("email.complained", {}),
    "unsubscribe": ("email.unsubscribed", {}),
}


@dataclass(frozen=True, slots=True)
class OutboundEvent:
    """One fact to publish to the tenant's endpoints that subscribe to its type."""

    tenant_id: str
    type: str
    event_id: str
    occurred_at: datetime
    contact_id: int | None = None
    send_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


def event_id(tenant_id: str, source: str) -> str:
    """A stable id for the fact ``source`` names (``evt_`` and 32 hex characters)."""
    return "evt_" + hashlib.sha256(f"{tenant_id}\n{source}".encode()).hexdigest()[:32]


def subscribed(event_types: list[str], event_type: str) -> bool:
    return event_type in event_types or ALL in event_types


def engagement_event(
    *, tenant_id: str, send_id: int, contact_id: int, metric: str, occurred_at: datetime
) -> OutboundEvent:
    """The first open, click or conversion of an email."""
    return OutboundEvent(
        tenant_id, _ENGAGEMENT[metric], event_id(tenant_id, f"engagement:{send_id}:{metric}"),
        occurred_at, contact_id, send_id,
    )  # fmt: skip


def esp_event(
    *,
    tenant_id: str,
    send_id: int,
    contact_id: int,
    kind: str,
    provider: str,
    provider_event_id: str,
    occurred_at: datetime,
) -> OutboundEvent | None:
    """An ESP's report about an email (None: a kind that is not published). The provider's
    reason text is not passed on: bounce diagnostics quote addresses."""
    published = _ESP.get(kind)
    if published is None:
        return None
    event_type, data = published
    source = f"esp:{provider}:{provider_event_id}"
    return OutboundEvent(
        tenant_id, event_type, event_id(tenant_id, source), occurred_at, contact_id, send_id,
        {**data, "provider": provider},
    )  # fmt: skip


def unsubscribe_event(
    *, tenant_id: str, campaign_id: str, contact_id: int, occurred_at: datetime
) -> OutboundEvent:
    """A recipient used the one-click unsubscribe link of a campaign's email."""
    source = f"unsubscribe:{campaign_id}:{contact_id}"
    return OutboundEvent(
        tenant_id, "email.unsubscribed", event_id(tenant_id, source), occurred_at, contact_id,
        None, {"campaign_id": campaign_id, "source": "unsubscribe-link"},
    )  # fmt: skip
