"""Outbound webhooks: a tenant's own URLs receive the email events Tailor sees.

    publish(conn, events) ──► outbox rows (same transaction) ──► relay (worker) wakes
    OutboundWebhookWorkflow per endpoint ──► batches: next_batch ─► deliver (signed POST,
    retried with backoff by Temporal) ─► after the retry budget, dead_letter ──► replay (API)

- ``events``: the event types, their Segment names, and builders for each source.
- ``publish``: the call sources make inside their transaction.
- ``formats``: Tailor's JSON body and Segment's batch body.
- ``signing``: ``Tailor-Signature`` (HMAC-SHA256 with a timestamp), endpoint secrets derived
  from the server's, and sealed Segment write keys.
- ``urls``: which URLs may receive events (https, public addresses only, checked at connect).
- ``delivery``: the service the workflow's activities call, and the API's test probe.
- ``endpoints``: registering, changing, rotating and replaying (the API's service).
"""

from tailor.outbound.events import (
    OutboundEvent,
    engagement_event,
    esp_event,
    unsubscribe_event,
)
from tailor.outbound.publish import publish

__all__ = ["OutboundEvent", "engagement_event", "esp_event", "publish", "unsubscribe_event"]
