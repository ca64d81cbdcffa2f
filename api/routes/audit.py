"""The tenant's audit log: who called what, when, about which ids, and how it ended."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import SessionDep, TenantDep
from api.schemas.audit import AuditEntryPublic, AuditQuery
from api.schemas.base import Page
from tailor.errors import InvalidInput
from tailor.store.audit import AuditFilter, audit_page

router = APIRouter(prefix="/v1/audit", tags=["audit"])


def _before_id(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not cursor.isdigit() or len(cursor) > 18:
        raise InvalidInput("cursor", "not a cursor this list returned; pass next_cursor as is")
    return int(cursor)


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
    # One more than asked says whether there is a next page without a count.
    found = await audit_page(
        session=session,
        tenant_id=tenant.id,
        filters=filters,
        before_id=_before_id(query.cursor),
        limit=query.limit + 1,
    )
    items = [AuditEntryPublic.model_validate(e, from_attributes=True) for e in found]
    more = len(items) > query.limit
    items = items[: query.limit]
    return Page[AuditEntryPublic](
        items=items, next_cursor=str(items[-1].id) if more else None, limit=query.limit
    )
