"""Sends: list a campaign's sends, and explain one ("why this email")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import SessionDep, TenantDep
from tailor.models import Send
from tailor.store.campaigns import get_campaign
from tailor.store.sends import campaign_sends, get_send

router = APIRouter(tags=["sends"])


def _public(send: Send) -> dict[str, Any]:
    return {
        "id": send.id,
        "campaign_id": send.campaign_id,
        "contact_id": send.contact_id,
        "status": send.status,
        "generator": send.generator,
        "message_id": send.message_id,
        "error": send.error,
        "sent_at": send.sent_at,
    }


@router.get("/v1/campaigns/{campaign_id}/sends")
async def list_sends(
    campaign_id: str,
    session: SessionDep,
    tenant: TenantDep,
    after: Annotated[int, Query(ge=0, description="Keyset cursor: the last send id you have.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    await get_campaign(session=session, campaign_id=campaign_id, tenant_id=tenant.id)
    sends = await campaign_sends(session=session, campaign_id=campaign_id, after=after, limit=limit)
    data = [_public(send) for send in sends]
    return {"data": data, "count": len(data), "next_after": data[-1]["id"] if data else None}


@router.get("/v1/sends/{send_id}/explain")
async def explain(send_id: int, session: SessionDep, tenant: TenantDep) -> dict[str, Any]:
    """The plan, tier, model, prompt version, scores and verdicts behind one email."""
    send = await get_send(session=session, send_id=send_id, tenant_id=tenant.id)
    return {**_public(send), "explain": send.explain}
