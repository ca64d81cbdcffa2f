"""Segment-compatible event ingestion: ``track``, ``identify`` and ``batch`` as Segment's HTTP
API takes them, so a CDP can point at Tailor unchanged. The tenant is the ``X-Tailor-Tenant``
header or, as Segment sends its write key, the HTTP Basic username.

Properties and traits are stored (the store holds the PII) and never logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api.deps import FeatureCacheDep, SessionDep, TriggersDep
from api.schemas.events import (
    BatchIn,
    EngagementIn,
    EngagementRecorded,
    EventsAccepted,
    IdentifyIn,
    SegmentCall,
    TrackIn,
)
from tailor.journeys.triggers import TriggerAgent
from tailor.models import Campaign, Contact, Send, Tenant, utcnow
from tailor.profiles.cache import FeatureCache
from tailor.profiles.features import apply_event
from tailor.store.ab_tests import record_engagement
from tailor.store.campaigns import DELIVERED
from tailor.store.events import IncomingEvent, record_events, record_system_event

router = APIRouter(prefix="/v1", tags=["events"])

_basic = HTTPBasic(
    auto_error=False,
    description="Username: the tenant id (where Segment puts its write key); no password.",
)


async def get_event_tenant(
    session: SessionDep,
    credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
    x_tailor_tenant: Annotated[
        str | None, Header(description="Tenant id; or use HTTP Basic auth.")
    ] = None,
) -> Tenant:
    """The header's tenant, else the Basic auth username's."""
    tenant_id = x_tailor_tenant or (credentials.username if credentials else None)
    if not tenant_id:
        raise HTTPException(
            401,
            "no tenant: send the X-Tailor-Tenant header, or HTTP Basic auth with the tenant id "
            "as the username (Segment's write key)",
            headers={"WWW-Authenticate": 'Basic realm="tailor"'},
        )
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise HTTPException(
            404, f"tenant {tenant_id!r} not found (X-Tailor-Tenant header or Basic auth username)"
        )
    return tenant


EventTenantDep = Annotated[Tenant, Depends(get_event_tenant)]


@router.post("/track", response_model=EventsAccepted)
async def track(
    body: TrackIn,
    session: SessionDep,
    tenant: EventTenantDep,
    triggers: TriggersDep,
    features: FeatureCacheDep,
) -> EventsAccepted:
    """Record what a person did, e.g. `Order Completed`; a repeated messageId is ignored."""
    return await _ingest(session, triggers, features, tenant.id, [body])


@router.post("/identify", response_model=EventsAccepted)
async def identify(
    body: IdentifyIn,
    session: SessionDep,
    tenant: EventTenantDep,
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
    tenant: EventTenantDep,
    triggers: TriggersDep,
    features: FeatureCacheDep,
) -> EventsAccepted:
    """Up to 1,000 calls, in order; one malformed call stores none."""
    return await _ingest(session, triggers, features, tenant.id, body.batch)


@router.post("/events", response_model=EventsAccepted)
async def webhook(
    body: SegmentCall,
    session: SessionDep,
    tenant: EventTenantDep,
    triggers: TriggersDep,
    features: FeatureCacheDep,
) -> EventsAccepted:
    """One call of any type, as a CDP's webhook destination posts each: point it here."""
    return await _ingest(session, triggers, features, tenant.id, [body])


async def _ingest(
    session: AsyncSession,
    triggers: TriggerAgent,
    features: FeatureCache | None,
    tenant_id: str,
    calls: Sequence[SegmentCall],
) -> EventsAccepted:
    used = [call for call in calls if call.type in ("track", "identify")]
    stored, duplicates = await record_events(
        session=session, tenant_id=tenant_id, events=[_incoming(call) for call in used]
    )
    # Commit first: what trigger processing starts must find the events and features stored.
    await session.commit()
    # Then drop the cached profiles the features changed, before journeys started below read them.
    if features is not None:
        await features.invalidate(e.contact_id for e in stored if e.contact_id is not None)
    if stored:
        await triggers.on_events(tenant_id, stored)
    return EventsAccepted(
        accepted=len(stored), duplicates=duplicates, ignored=len(calls) - len(used)
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


_ENGAGEMENT_EVENTS = {
    "open": "email.opened",
    "click": "email.clicked",
    "conversion": "email.converted",
}


@router.post("/events/engagement", response_model=EngagementRecorded)
async def engagement(
    body: EngagementIn,
    session: SessionDep,
    tenant: EventTenantDep,
    triggers: TriggersDep,
    features: FeatureCacheDep,
) -> EngagementRecorded:
    """An open, click or conversion of an email Tailor sent, by its Message-ID or by campaign
    and contact. Only the first of each kind per email counts (A/B decisions read these); it
    also updates the person's features and reaches their journeys as an event."""
    where = (
        [col(Send.message_id) == body.message_id]
        if body.message_id is not None
        else [col(Send.campaign_id) == body.campaign_id, col(Send.contact_id) == body.contact_id]
    )
    send = (
        await session.execute(
            select(Send)
            .join(Campaign, col(Campaign.id) == col(Send.campaign_id))
            .where(*where, col(Campaign.tenant_id) == tenant.id)
            .order_by(col(Send.id).desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if send is None:
        raise HTTPException(404, "no email of this tenant matches; check message_id or campaign_id")
    if send.status not in DELIVERED:
        raise HTTPException(409, f"that email was not delivered (it is {send.status})")
    occurred_at = body.occurred_at or utcnow()
    conn = await session.connection()
    first = await record_engagement(
        conn, tenant_id=tenant.id, send=send, metric=body.type, occurred_at=occurred_at
    )
    name = _ENGAGEMENT_EVENTS[body.type]
    stored = None
    if first:
        stored = await record_system_event(
            session=session, tenant_id=tenant.id, contact_id=send.contact_id, name=name,
            message_id=f"engagement:{send.id}:{body.type}", occurred_at=occurred_at,
        )  # fmt: skip
        contact = await session.get(Contact, send.contact_id)
        if contact is not None and apply_event(
            contact, name=name, properties={}, context={}, occurred_at=occurred_at
        ):
            contact.updated_at = utcnow()
    await session.commit()
    if features is not None and first:
        await features.invalidate([send.contact_id])
    if stored is not None:
        await triggers.on_events(tenant.id, [stored])
    return EngagementRecorded(
        recorded=first, campaign_id=send.campaign_id, contact_id=send.contact_id, type=body.type
    )
