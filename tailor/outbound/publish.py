"""Publishing: the one call other code makes, inside the transaction that records the fact.

``publish(conn, events)`` writes an outbox row per event and subscribed endpoint, on the
caller's connection: the rows commit with the open, bounce or unsubscribe they report, or roll
back with it, so a committed event is never missing from the outbox and a rolled-back one never
reaches anyone. Nothing here talks to the network or to Temporal; the worker's relay notices the
new rows (``tailor.temporal.outbound``) and wakes the endpoints' workflows.

Its cost when a tenant has no endpoint is one indexed read; with endpoints, one multi-row INSERT.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncConnection

from tailor.models import DeliveryStatus, utcnow
from tailor.outbound.events import OutboundEvent, subscribed
from tailor.store.outbound import Subscription, queue, subscriptions


async def publish(conn: AsyncConnection, events: Iterable[OutboundEvent | None]) -> int:
    """Queue ``events`` (None entries, kinds nobody publishes, are skipped) for every active
    endpoint of their tenant that takes their type; returns the rows queued."""
    wanted = [event for event in events if event is not None]
    if not wanted:
        return 0
    endpoints: dict[str, list[Subscription]] = defaultdict(list)
    for subscription in await subscriptions(conn, tenant_ids={e.tenant_id for e in wanted}):
        endpoints[subscription.tenant_id].append(subscription)
    if not endpoints:
        return 0
    now = utcnow()
    rows = [
        {
            "tenant_id": event.tenant_id,
            "endpoint_id": endpoint.endpoint_id,
            "event_id": event.event_id,
            "event_type": event.type,
            "contact_id": event.contact_id,
            "send_id": event.send_id,
            "data": event.data,
            "occurred_at": event.occurred_at,
            "created_at": now,
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
        }
        for event in wanted
        for endpoint in endpoints[event.tenant_id]
        if subscribed(endpoint.event_types, event.type)
    ]
    await queue(conn, rows=rows)
    return len(rows)
