"""The bodies a batch of events is posted as: Tailor's JSON, or a Segment batch.

Tailor's format (``"format": "tailor"``)::

    {"endpoint_id": "whe_...",
     "events": [{"id": "evt_...", "type": "email.opened",
                 "occurred_at": "2026-12-01T09:00:00.000Z",
                 "data": {"contact_id": 42, "user_id": "u-42", "send_id": 7,
                          "campaign_id": "cmp_..."}}]}

Segment's (``"format": "segment"``) is the body of Segment's HTTP API ``/v1/batch`` (RudderStack
and Jitsu accept it too): each event a ``track`` call named by Segment's email spec
(``tailor.outbound.events``), with ``messageId`` the event id (Segment deduplicates on it),
``userId`` the tenant's own user id for the contact (Segment's ``userId`` that created it, or
linked by ``identify``) or, for contacts without one, ``anonymousId`` ``tailor-contact-<id>``.

Either way the contact is named by ids only: no address or name leaves Tailor this way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tailor import __version__
from tailor.outbound.events import SEGMENT_NAMES
from tailor.store.outbound import QueuedEvent

# Segment's HTTP API refuses a batch over 500 KB or a call over 32 KB (400 Bad Request).
SEGMENT_MAX_BATCH_BYTES = 500 * 1024
SEGMENT_MAX_CALL_BYTES = 32 * 1024
_LIBRARY = {"name": "tailor", "version": __version__}


def timestamp(at: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``, as Segment writes them."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _facts(event: QueuedEvent) -> dict[str, Any]:
    extra = {k: v for k, v in event.data.items() if k != "campaign_id"}
    return {"campaign_id": event.campaign_id or event.data.get("campaign_id"), **extra}


def tailor_event(event: QueuedEvent) -> dict[str, Any]:
    return {
        "id": event.event_id,
        "type": event.event_type,
        "occurred_at": timestamp(event.occurred_at),
        "data": {
            "contact_id": event.contact_id,
            "user_id": event.user_id,
            "send_id": event.send_id,
            **_facts(event),
        },
    }


def tailor_body(endpoint_id: str, events: Sequence[QueuedEvent]) -> bytes:
    return _dumps({"endpoint_id": endpoint_id, "events": [tailor_event(e) for e in events]})


def segment_track(event: QueuedEvent) -> dict[str, Any]:
    """One Segment ``track`` call (see Segment's HTTP API and its email spec)."""
    properties: dict[str, Any] = {k: v for k, v in _facts(event).items() if v is not None}
    if event.send_id is not None:
        properties["email_id"] = str(event.send_id)
    if event.contact_id is not None:
        properties["tailor_contact_id"] = event.contact_id
    call: dict[str, Any] = {
        "type": "track",
        "event": SEGMENT_NAMES[event.event_type],
        "messageId": event.event_id,
        "timestamp": timestamp(event.occurred_at),
        "properties": properties,
        "context": {"library": _LIBRARY},
    }
    if event.user_id:
        call["userId"] = event.user_id
    else:
        call["anonymousId"] = (
            f"tailor-contact-{event.contact_id}" if event.contact_id is not None else "tailor"
        )
    return call


def segment_body(events: Sequence[QueuedEvent], *, sent_at: datetime) -> bytes:
    return _dumps({"batch": [segment_track(e) for e in events], "sentAt": timestamp(sent_at)})
