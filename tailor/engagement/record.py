"""One open, click or conversion of a sent email, recorded once and passed on: the A/B
``Engagement`` row (the first of each kind per email), the person's features, and an
``email.opened``/``email.clicked``/``email.converted`` event their journeys react to.

Both the engagement API and the tracker go through here, so a tracked click and a reported
one change exactly the same things.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from tailor.engagement.attribution import Attributed
from tailor.journeys.triggers import TriggerAgent
from tailor.models import Send
from tailor.outbound import engagement_event, publish
from tailor.profiles.cache import FeatureCache
from tailor.store.events import apply_system_event_features, record_system_event
from tailor.store.rollups import count_firsts, mark_cohorts

COHORT_METRICS = frozenset({"open", "click"})  # orders mark theirs in attribution
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
    assert send.id is not None, "engagement of a stored send"
    conn = await session.connection()
    # The first of each kind per email is recorded and counted in the report rollups at once.
    first = bool(await count_firsts(conn, firsts=[(metric, send.id, occurred_at)]))
    if metric in COHORT_METRICS:
        await mark_cohorts(conn, marks=[(send.contact_id, metric, occurred_at)])
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


async def credit_conversions(
    session: AsyncSession,
    *,
    triggers: TriggerAgent,
    features: FeatureCache | None,
    tenant_id: str,
    attributed: Sequence[Attributed],
) -> None:
    """Pass attributed orders on as each email's conversion (``engage``): the A/B metric, the
    person's features and an ``email.converted`` event. Call after the orders are committed."""
    for credit in attributed:
        send = await session.get(Send, credit.send_id)
        if send is not None:
            await engage(
                session, triggers=triggers, features=features, tenant_id=tenant_id, send=send,
                metric="conversion", occurred_at=credit.at,
            )  # fmt: skip
