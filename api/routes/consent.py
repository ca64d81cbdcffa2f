"""The consent ledger for an auditor: a tenant's rows for a period, with their hash chains."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.deps import DatabaseDep, SessionDep, TenantDep
from api.schemas.consent import (
    LapsingConsentList,
    LapsingConsentPublic,
    LapsingQuery,
    LedgerExportPublic,
    LedgerQuery,
)
from tailor.consent.ledger_export import export_document
from tailor.models import utcnow
from tailor.store.consent import lapsing_consent, ledger_pages

router = APIRouter(prefix="/v1/consent", tags=["consent"])


@router.get(
    "/ledger",
    response_model=None,
    responses={200: {"model": LedgerExportPublic, "description": "The export, streamed."}},
)
async def export_ledger(
    query: Annotated[LedgerQuery, Query()], db: DatabaseDep, tenant: TenantDep
) -> StreamingResponse:
    """The tenant's consent ledger recorded in `[since, until)` (all of it without them), each
    row with its place in the contact's hash chain. `tailor consent verify --file` checks a
    saved export with no access to Tailor; docs/compliance.md gives the hash's form."""
    exported_at = utcnow()

    async def document() -> AsyncIterator[str]:
        # Its own read connection, held while the body streams (the request's session is not).
        async with db.read() as conn:
            pages = ledger_pages(conn, tenant_id=tenant.id, since=query.since, until=query.until)
            async for text in export_document(
                pages, tenant_id=tenant.id, since=query.since, until=query.until,
                exported_at=exported_at,
            ):  # fmt: skip
                yield text

    name = f"consent-ledger-{tenant.id}-{exported_at:%Y%m%dT%H%M%SZ}.json"
    return StreamingResponse(
        document(),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/lapsing", response_model=LapsingConsentList)
async def lapsing(
    query: Annotated[LapsingQuery, Query()], session: SessionDep, tenant: TenantDep
) -> LapsingConsentList:
    """Contacts whose consent is implied (CASL: a purchase, 2 years; an inquiry, 6 months) and
    lapses within `within_days`, soonest first: ask them for express consent before then.
    Lapsed ones are suppressed at send time and recorded in the ledger by the daily job."""
    found = await lapsing_consent(
        await session.connection(), tenant_id=tenant.id,
        before=utcnow() + timedelta(days=query.within_days), limit=query.limit,
    )  # fmt: skip
    data = [LapsingConsentPublic.model_validate(f, from_attributes=True) for f in found]
    return LapsingConsentList(data=data, count=len(data))
