"""Segment-compatible event ingestion: ``track``, ``identify`` and ``batch`` as Segment's HTTP
API takes them, so a CDP can point at Tailor unchanged. The tenant is the API key's: a Bearer
key, or an ingest key as the HTTP Basic username, where Segment sends its write key.

Properties and traits are stored (the store holds the PII) and never logged.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, HTTPException

from api.deps import FeatureCacheDep, SessionDep, TenantDep, TriggersDep
from api.openapi import problems
from api.schemas.events import (
    BatchIn,
    EngagementIn,
    EngagementRecorded,
    EventsAccepted,
    IdentifyIn,
    SegmentCall,
    TrackIn,
)
from tailor.engagement.attribution import attribute_orders
from tailor.engagement.record import credit_conversions, engage
from tailor.journeys.triggers import TriggerAgent
from tailor.models import utcnow
from tailor.profiles.cache import FeatureCache
from tailor.store.campaigns import DELIVERED
from tailor.store.events import IncomingEvent, record_events
from tailor.store.sends import find_send

router = APIRouter(prefix="/v1", tags=["events"])


@router.post("/track", response_model=EventsAccepted)
async def track(
    body: TrackIn,
    session: SessionDep,
    tenant: TenantDep,
    triggers: TriggersDep,
    features: FeatureCacheDep,
) -> EventsAccepted:
    """Record what a person did, e.g. `Order Completed`; a repeated messageId is ignored."""
    return await _ingest(session, triggers, features, tenant.id, [body])


@router.post("/identify", response_model=EventsAccepted)
async def identify(
    body: IdentifyIn,
    session: SessionDep,
    tenant: TenantDep,
    triggers: TriggersDep,
    features: FeatureCacheDep,
) -> EventsAccepted:
    """Record who a person is. With an email trait, the contact is created if new and linked
    to the userId."""
    return await _ingest(session, triggers, features, tenant.id, [body])


@router.post("/batch", response_model=EventsAccepted)
async def batch(
    body: BatchIn,
    session: SessionDep,
    tenant: TenantDep,
    triggers: TriggersDep,
    features: FeatureCacheDep,
) -> EventsAccepted:
    """Up to 1,000 calls, in order; one malformed call stores none."""
    return await _ingest(session, triggers, features, tenant.id, body.batch)


@router.post("/events", response_model=EventsAccepted)
async def webhook(
    body: SegmentCall,
    session: SessionDep,
    tenant: TenantDep,
    triggers: TriggersDep,
    features: FeatureCacheDep,
) -> EventsAccepted:
    """One call of any type, as a CDP's webhook destination posts each: point it here."""
    return await _ingest(session, triggers, features, tenant.id, [body])


async def _ingest(
    session: SessionDep,
    triggers: TriggerAgent,
    features: FeatureCache | None,
    tenant_id: str,
    calls: Sequence[SegmentCall],
) -> EventsAccepted:
    used = [call for call in calls if call.type in ("track", "identify")]
    recorded = await record_events(
        session=session, tenant_id=tenant_id, events=[_incoming(call) for call in used]
    )
    stored = recorded.stored
    attributed = await attribute_orders(
        await session.connection(), tenant_id=tenant_id, events=stored
    )
    # Commit first: what trigger processing starts must find the events and features stored.
    await session.commit()
    # Then drop the cached profiles the features changed, before journeys started below read them.
    if features is not None:
        await features.invalidate(e.contact_id for e in stored if e.contact_id is not None)
    if stored:
        await triggers.on_events(tenant_id, stored)
    await credit_conversions(
        session, triggers=triggers, features=features, tenant_id=tenant_id, attributed=attributed
    )
    return EventsAccepted(
        accepted=len(stored), duplicates=recorded.duplicates, ignored=len(calls) - len(used)
    )


def _incoming(call: SegmentCall) -> IncomingEvent:
    identify = call.type == "identify"
    return IncomingEvent(
        kind="identify" if identify else "track",
        user_id=call.user_id,
        anonymous_id=call.anonymous_id,
        properties=call.traits.model_dump(exclude_unset=True) if identify else call.properties,
        context=call.context,
        timestamp=call.occurred_at,
        message_id=call.message_id,
        event=None if identify else call.event,
    )


@router.post("/events/engagement", response_model=EngagementRecorded, responses=problems(404, 409))
async def engagement(
    body: EngagementIn,
    session: SessionDep,
    tenant: TenantDep,
    triggers: TriggersDep,
    features: FeatureCacheDep,
) -> EngagementRecorded:
    """An open, click or conversion of an email Tailor sent, by its Message-ID or by campaign
    and contact. Only the first of each kind per email counts (A/B decisions read these); it
    also updates the person's features and reaches their journeys as an event."""
    send = await find_send(
        session=session,
        tenant_id=tenant.id,
        message_id=body.message_id,
        campaign_id=body.campaign_id,
        contact_id=body.contact_id,
    )
    if send is None:
        raise HTTPException(404, "no email of this tenant matches; check message_id or campaign_id")
    if send.status not in DELIVERED:
        raise HTTPException(409, f"that email was not delivered (it is {send.status})")
    first = await engage(
        session,
        triggers=triggers,
        features=features,
        tenant_id=tenant.id,
        send=send,
        metric=body.type,
        occurred_at=body.occurred_at or utcnow(),
    )
    return EngagementRecorded(
        recorded=first, campaign_id=send.campaign_id, contact_id=send.contact_id, type=body.type
    )
