"""One open, click or conversion of a sent email, recorded once and passed on: the A/B
``Engagement`` row (the first of each kind per email), the person's features, and an
``email.opened``/``email.clicked``/``email.converted`` event their journeys react to.

Both the engagement API and the tracker go through here, so a tracked click and a reported
one change exactly the same things.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from tailor.journeys.triggers import TriggerAgent
from tailor.models import Send
from tailor.outbound import engagement_event, publish
from tailor.profiles.cache import FeatureCache
from tailor.store.ab_tests import record_engagement
from tailor.store.events import apply_system_event_features, record_system_event

EVENT_NAMES = {
    "open": "email.opened",
    "click": "email.clicked",
    "conversion": "email.converted",
}


async def engage(
    session: AsyncSession,
    *,
    triggers: TriggerAgent,
    features: FeatureCache | None,
    tenant_id: str,
    send: Send,
    metric: str,
    occurred_at: datetime,
) -> bool:
    """Record ``metric`` for a delivered send and commit; False when it was already recorded
    (only the first of each kind counts, and a repeat changes nothing)."""
    conn = await session.connection()
    first = await record_engagement(
        conn, tenant_id=tenant_id, send=send, metric=metric, occurred_at=occurred_at
    )
    name = EVENT_NAMES[metric]
    stored = None
    if first:
        stored = await record_system_event(
            session=session, tenant_id=tenant_id, contact_id=send.contact_id, name=name,
            message_id=f"engagement:{send.id}:{metric}", occurred_at=occurred_at,
        )  # fmt: skip
        await apply_system_event_features(
            session=session, contact_id=send.contact_id, name=name, occurred_at=occurred_at
        )
        await publish(conn, [engagement_event(
            tenant_id=tenant_id, send_id=send.id or 0, contact_id=send.contact_id, metric=metric,
            occurred_at=occurred_at)])  # fmt: skip  # the tenant's webhooks, same transaction
    # Commit first: the journeys started below must find the event and features stored.
    await session.commit()
    if features is not None and first:
        await features.invalidate([send.contact_id])
    if stored is not None:
        await triggers.on_events(tenant_id, [stored])
    return first
