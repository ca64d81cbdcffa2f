"""Sends: list a campaign's sends, and explain one ("why this email")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import SessionDep, TenantDep
from api.paging import Cursor, Limit, after_id, id_cursor, page
from api.schemas.base import Page, RowId, TextId
from api.schemas.sends import SendPublic
from tailor.models import Send
from tailor.store.campaigns import get_campaign
from tailor.store.sends import campaign_sends, get_send

router = APIRouter(tags=["sends"])


@router.get("/v1/campaigns/{campaign_id}/sends", response_model=Page[SendPublic])
async def list_sends(
    campaign_id: TextId,
    session: SessionDep,
    tenant: TenantDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[SendPublic]:
    """The campaign's sends, newest first."""
    after = after_id(cursor)  # a bad cursor is a 422 whichever campaign it names
    await get_campaign(session=session, campaign_id=campaign_id, tenant_id=tenant.id)  # or 404
    sends = await campaign_sends(session=session, tenant_id=tenant.id, campaign_id=campaign_id,
                                 after=after, limit=limit + 1)  # fmt: skip
    return page(sends, limit=limit, item=SendPublic.model_validate,
                cursor=lambda s: id_cursor(s.id or 0))  # fmt: skip


@router.get("/v1/sends/{send_id}/explain")
async def explain(send_id: RowId, session: SessionDep, tenant: TenantDep) -> dict[str, Any]:
    """The plan, tier, model, prompt version, scores and verdicts behind one email."""
    send: Send = await get_send(session=session, send_id=send_id, tenant_id=tenant.id)
    return {**SendPublic.model_validate(send).model_dump(), "explain": send.explain}
