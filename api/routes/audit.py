"""The tenant's audit log: who called what, when, about which ids, and how it ended."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import SessionDep, TenantDep
from api.paging import after_id, id_cursor, page
from api.schemas.audit import AuditEntryPublic, AuditQuery
from api.schemas.base import Page
from tailor.store.audit import AuditFilter, audit_page

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", response_model=Page[AuditEntryPublic])
async def list_audit(
    query: Annotated[AuditQuery, Query()], session: SessionDep, tenant: TenantDep
) -> Page[AuditEntryPublic]:
    """Newest first. Every POST, PUT, PATCH and DELETE is here, refused and failed ones too;
    calls without valid credentials belong to no tenant and are not listed."""
    filters = AuditFilter(
        actor=query.actor,
        route=query.route,
        outcome=query.outcome,
        since=query.since,
        until=query.until,
        target=query.target,
    )
    found = await audit_page(
        session=session,
        tenant_id=tenant.id,
        filters=filters,
        before_id=after_id(query.cursor),
        limit=query.limit + 1,
    )
    return page(
        found,
        limit=query.limit,
        item=lambda e: AuditEntryPublic.model_validate(e, from_attributes=True),
        cursor=lambda e: id_cursor(e.id or 0),
    )
